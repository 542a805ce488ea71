"""Janus as a NegMAS SAO negotiator, and batched decisions across concurrent negotiations.

:class:`PolicyNegotiator` puts any Janus negotiator (anything with ``act(observation)``: a
:class:`~janus.agent.JanusSeat`, a scripted strategy) into an ``SAOMechanism``: at every call
it maps NegMAS's state to the Janus observation (:mod:`.mapping`), asks the policy, and turns
the action into an SAO response (ACCEPT the standing offer, or REJECT with a counter-offer on
the issue's grid, never rounded across the reservation). :class:`JanusNegotiator` is the
user-facing one: a trained run (a :class:`~janus.agent.JanusAgent`) at a requested ρ, its seat
made when the negotiation tells it its side.

One forward pass per decision is the slow way to play many negotiations. Two batched ways
give the same decisions (the agent's batched and one-by-one answers are equal, tested):

- :func:`janus.integrations.negmas.lockstep.run_negotiations` steps many mechanisms together
  and answers every pending Janus decision of a round in one ``act_batch`` (it hands each
  negotiator its answer with :meth:`PolicyNegotiator.give`);
- a :class:`DecisionBatcher` shared by negotiators running in threads (NegMAS's
  ``cartesian_tournament(executor="thread")``) collects their decisions until every running
  Janus negotiation is waiting for one, then answers them in one ``act_batch``.

An action NegMAS cannot express is not replaced: ACCEPT with nothing on the table (NegMAS has
no "pass") ends the negotiation and is recorded in :attr:`PolicyNegotiator.invalid`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from negmas.sao import ResponseType, SAOCallNegotiator, SAOResponse

from janus.domain import Action, Observation, Offer
from janus.episode import validate_action
from janus.integrations.negmas.mapping import (
    PriceSide,
    max_turns_of,
    observation,
    read_side,
    snap_price,
)
from janus.prompt import canonical_rho

__all__ = ["DecisionBatcher", "JanusNegotiator", "PolicyNegotiator", "answer_all"]

#: One decision at a time without a batcher: an agent routes ρ through model state
#: (``rho_context``), so two threads must never run it at once.
_UNBATCHED = threading.Lock()


def answer_all(requests: Sequence[tuple[Any, Observation]]) -> list[Action]:
    """Actions for ``(policy, observation)`` pairs: one ``act_batch`` per shared batch
    policy (a :class:`~janus.agent.JanusAgent`), ``act`` for the others."""
    actions: list[Action | None] = [None] * len(requests)
    groups: dict[int, tuple[Any, list[int]]] = {}
    for i, (policy, obs) in enumerate(requests):
        batch_policy = getattr(policy, "batch_policy", None)
        if batch_policy is None:
            actions[i] = policy.act(obs)
        else:
            groups.setdefault(id(batch_policy), (batch_policy, []))[1].append(i)
    for batch_policy, rows in groups.values():
        answers = batch_policy.act_batch(
            [requests[i][0] for i in rows], [requests[i][1] for i in rows]
        )
        for i, answer in zip(rows, answers, strict=True):
            actions[i] = answer
    return actions  # type: ignore[return-value]


class PolicyNegotiator(SAOCallNegotiator):
    """A Janus negotiator (``policy.act(observation) -> Action``) in an SAO mechanism.

    ``trace`` holds every ``(observation, action)`` the policy was asked and gave, ``invalid``
    the ``(turn, reason)`` of actions NegMAS could not play. With a ``batcher``, decisions go
    through it (threads); without, each one is answered on its own (one thread at a time)
    unless a lockstep driver handed it over first (:meth:`give`). One negotiator plays one
    negotiation, as NegMAS's tournaments make them.
    """

    def __init__(self, policy: Any = None, *, batcher: DecisionBatcher | None = None, **kwargs):
        super().__init__(**kwargs)
        self.policy = policy
        self.batcher = batcher
        self.side: PriceSide | None = None
        self.max_turns: int | None = None
        self.history: list[Offer] = []
        self.trace: list[tuple[Observation, Action]] = []
        self.invalid: list[tuple[int, str]] = []
        self._given: tuple[Observation, Action] | None = None

    # ------------------------------------------------------------------ negotiation

    def make_policy(self, side: PriceSide) -> Any:
        """The policy for this negotiation, once the side is known (subclasses build one)."""
        if self.policy is None:
            raise ValueError(f"{self.name}: no policy to play")
        return self.policy

    def on_negotiation_start(self, state) -> None:
        super().on_negotiation_start(state)
        self.history, self.trace, self.invalid = [], [], []
        if self.batcher is not None:
            self.batcher.enter()

    def on_negotiation_end(self, state) -> None:
        super().on_negotiation_end(state)
        if self.batcher is not None:
            self.batcher.leave()

    def _prepare(self) -> PriceSide:
        if self.side is None:
            if self.ufun is None:
                raise ValueError(f"{self.name}: a Janus negotiator needs a utility function")
            self.side = read_side(self.ufun, self.nmi.outcome_space)
            self.max_turns = max_turns_of(self.nmi)
            self.policy = self.make_policy(self.side)
        return self.side

    def _history_at(self, state) -> list[Offer]:
        """The offers so far, the opponent's latest (``state.current_offer``) included."""
        side = self._prepare()
        history = list(self.history)
        offer = state.current_offer
        mine_last = not history or history[-1].role is side.role
        if offer is not None and state.current_proposer != self.id and mine_last:
            history.append(Offer(side.role.opponent, float(offer[0]), len(history) + 1))
        return history

    def next_observation(self, state) -> Observation:
        """The observation this negotiator decides on in ``state`` (its turn)."""
        side = self._prepare()
        obs = observation(side, self._history_at(state), int(self.max_turns or 0))
        if self.nmi.one_offer_per_step and obs.turn != state.step + 1:
            raise RuntimeError(
                f"{self.name}: turn {obs.turn} from the offers disagrees with NegMAS step "
                f"{state.step} (a step should be one action)"
            )
        return obs

    def give(self, obs: Observation, action: Action) -> None:
        """Hand over the answer to ``obs`` computed in a batch (used at the next call only)."""
        self._given = (obs, action)

    def __call__(self, state, dest: str | None = None) -> SAOResponse:
        obs = self.next_observation(state)
        given, self._given = self._given, None
        if given is not None and given[0] == obs:
            action = given[1]
        elif self.batcher is not None:
            action = self.batcher.decide(self.policy, obs)
        else:
            with _UNBATCHED:
                action = self.policy.act(obs)
        return self._respond(state, obs, action)

    def _respond(self, state, obs: Observation, action: Action) -> SAOResponse:
        self.trace.append((obs, action))
        error = validate_action(action, obs)
        if error is not None:
            self.invalid.append((obs.turn, error))
            return SAOResponse(ResponseType.END_NEGOTIATION, None)
        self.history = list(obs.history)
        if action.is_accept:
            return SAOResponse(ResponseType.ACCEPT_OFFER, state.current_offer)
        side = self._prepare()
        price = snap_price(float(action.price), side)
        self.history.append(Offer(side.role, price, obs.turn))
        return SAOResponse(ResponseType.REJECT_OFFER, (int(price) if side.integer else price,))


class JanusNegotiator(PolicyNegotiator):
    """A trained Janus run playing at a requested ρ in a NegMAS SAO negotiation.

    ``agent`` is a :class:`~janus.agent.JanusAgent` (``JanusAgent.from_pretrained(run)``),
    shared by every negotiator of a tournament; ``rho`` the request (the adapter's
    calibration map applies unless ``calibrated=False``). The side, the reservation and the
    price range come from the negotiation (:mod:`.mapping`); after it, :attr:`seat` holds the
    seat with its safety and acceptance-rule counters. Give the negotiators of concurrent
    negotiations one :class:`DecisionBatcher` (threads) or run the mechanisms with
    :func:`~janus.integrations.negmas.lockstep.run_negotiations` to batch their decisions.
    """

    def __init__(
        self,
        agent: Any = None,
        rho: float = 0.5,
        *,
        calibrated: bool = True,
        batcher: DecisionBatcher | None = None,
        **kwargs,
    ) -> None:
        if agent is None or not hasattr(agent, "seat"):
            raise ValueError("JanusNegotiator needs agent= (a JanusAgent)")
        rho_value = canonical_rho(rho)
        if not 0.0 <= rho_value <= 1.0:
            raise ValueError(f"rho must be in [0, 1], got {rho!r}")
        kwargs.setdefault("name", f"janus@{rho_value:.2f}")
        super().__init__(None, batcher=batcher, **kwargs)
        self.agent = agent
        self.rho = rho_value
        self.calibrated = calibrated

    def make_policy(self, side: PriceSide) -> Any:
        return self.agent.seat(self.rho, role=side.role.value, calibrated=self.calibrated)

    @property
    def seat(self) -> Any:
        return self.policy


class _Request:
    __slots__ = ("action", "done", "error", "observation", "policy", "taken")

    def __init__(self, policy: Any, obs: Observation) -> None:
        self.policy, self.observation = policy, obs
        self.action: Action | None = None
        self.error: BaseException | None = None
        self.taken = False
        self.done = threading.Event()


class DecisionBatcher:
    """One ``act_batch`` for the pending decisions of Janus negotiations running in threads.

    Negotiators sharing a batcher register while their negotiation runs; a decision waits
    until every registered negotiation is waiting for one (or ``max_wait`` seconds pass),
    then the thread that completes the set (or a negotiation that ends and so completes it)
    answers them all at once. The answers are the ones each decision would get alone; only
    the number of forward passes changes. ``batch_sizes`` records every batch, for benchmarks.

    Each waiting decision sleeps on its own event: waking every waiting thread at every new
    request (a condition's ``notify_all``) costs a hundred threads' GIL hand-offs per request.
    """

    def __init__(self, *, max_wait: float = 1.0) -> None:
        if not max_wait > 0:
            raise ValueError(f"max_wait must be positive, got {max_wait}")
        self.max_wait = max_wait
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()
        self._model = threading.Lock()
        self._queue: list[_Request] = []
        self._active = 0

    def to_dict(self, **_: Any) -> dict[str, Any]:
        """What NegMAS's ``serialize`` records of a batcher (it holds locks, not data)."""
        return {"max_wait": self.max_wait}

    def enter(self) -> None:
        with self._lock:
            self._active += 1

    def leave(self) -> None:
        with self._lock:
            self._active = max(0, self._active - 1)
            batch = self._take(complete_only=True)
        if batch:
            with contextlib.suppress(Exception):  # each waiting decision has the error
                self._answer(batch)

    def decide(self, policy: Any, obs: Observation) -> Action:
        request = _Request(policy, obs)
        with self._lock:
            self._queue.append(request)
            batch = self._take(complete_only=True)
        while not batch:
            if request.done.wait(timeout=self.max_wait):
                return self._result(request)
            with self._lock:  # waited long enough: answer whoever is waiting now
                batch = [] if request.taken else self._take(complete_only=False)
        self._answer(batch)
        return self._result(request)

    def _take(self, *, complete_only: bool) -> list[_Request]:
        """The queue, emptied, if it holds every registered decision (caller holds the lock)."""
        if not self._queue or (complete_only and len(self._queue) < self._active):
            return []
        batch, self._queue = self._queue, []
        for r in batch:
            r.taken = True
        return batch

    def _answer(self, batch: list[_Request]) -> None:
        try:
            with self._model:
                actions = answer_all([(r.policy, r.observation) for r in batch])
                self.batch_sizes.append(len(batch))
        except BaseException as error:  # every waiting thread must learn of it
            for r in batch:
                r.error = error
                r.done.set()
            raise
        for r, action in zip(batch, actions, strict=True):
            r.action = action
            r.done.set()

    @staticmethod
    def _result(request: _Request) -> Action:
        if request.error is not None:
            raise request.error
        assert request.action is not None
        return request.action
