"""THE episode loop: the rules of alternating offers, used by generation and evaluation alike.

The rules live in one class, :class:`EpisodeState` (whose turn it is, what it may see, what an
action does). Two drivers step it: :func:`run_episode` plays one match turn by turn (dataset
generation), :func:`run_episodes` plays many matches in lockstep so that a learned agent can
answer all of its pending decisions in one batched forward pass (evaluation).

Agents follow a small contract, in the spirit of Gymnasium's ``Env``: anything with a ``name``
and an ``act(observation) -> Action`` method is a :class:`Negotiator`. Two optional attributes
change how the loop treats it:

- ``strict`` (default ``True``): an invalid action from a strict agent is a bug in that agent and
  raises :class:`InvalidActionError`. A learned agent sets ``strict = False``: its invalid actions
  are recorded in the trace (the turn passes with no offer) and counted, never silently replaced.
- ``batch_policy``: an object with ``act_batch(seats, observations) -> list[Action]``. In
  :func:`run_episodes`, all pending decisions of seats sharing one batch policy go through a
  single ``act_batch`` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from janus.domain import Action, ActionKind, Observation, Offer, Outcome, Role, Scenario


class InvalidActionError(RuntimeError):
    """A strict (scripted) agent broke the rules: that is a bug, never a data point."""


@runtime_checkable
class Negotiator(Protocol):
    """The agent contract: a name and a policy over observations."""

    name: str

    def act(self, observation: Observation) -> Action: ...


class BatchPolicy(Protocol):
    """Answers the pending decisions of many seats at once (one forward pass for a model)."""

    def act_batch(
        self, seats: Sequence[Negotiator], observations: Sequence[Observation]
    ) -> list[Action]: ...


@dataclass(frozen=True, slots=True)
class Step:
    """One decision: what the mover saw, what it did, and whether the rules allowed it."""

    turn: int
    role: Role
    observation: Observation
    action: Action
    valid: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """Who plays whom on which scenario; ``seed`` is recorded with the result for replay."""

    buyer: Negotiator
    seller: Negotiator
    scenario: Scenario
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class EpisodeResult:
    """A complete trace: every decision, every offer, and the outcome."""

    scenario: Scenario
    buyer_name: str
    seller_name: str
    steps: tuple[Step, ...]
    offers: tuple[Offer, ...]
    outcome: Outcome
    seed: int | None = None

    def invalid_actions(self, role: Role | None = None) -> int:
        return sum(1 for s in self.steps if not s.valid and (role is None or s.role is role))


def validate_action(action: Action, observation: Observation) -> str | None:
    """Return why an action breaks the rules, or ``None`` if it is allowed."""
    if action.kind is ActionKind.ACCEPT:
        if observation.standing_offer is None:
            return "ACCEPT with no standing offer"
        return None
    if action.kind is ActionKind.OFFER:
        price = action.price
        if price is None or not math.isfinite(price):
            return f"OFFER with a non-finite price {price!r}"
        if not observation.price_range.contains(price):
            pr = observation.price_range
            return f"OFFER {price:.2f} outside the public range [{pr.low:g}, {pr.high:g}]"
        return None
    return f"unknown action kind {action.kind!r}"


class EpisodeState:
    """The rules of one episode, stepped one decision at a time.

    The standing offer a side may accept is the opponent's latest offer, provided the side has
    not made a newer offer since (its own offer supersedes the one it did not take).
    """

    __slots__ = ("_history", "_steps", "done", "match", "outcome", "turn")

    def __init__(self, match: Match) -> None:
        self.match = match
        self.turn = 1
        self.done = False
        self.outcome: Outcome | None = None
        self._history: tuple[Offer, ...] = ()
        self._steps: list[Step] = []

    @property
    def mover_role(self) -> Role:
        first = self.match.scenario.first_mover
        return first if self.turn % 2 == 1 else first.opponent

    @property
    def mover(self) -> Negotiator:
        return self.match.buyer if self.mover_role is Role.BUYER else self.match.seller

    def observe(self) -> Observation:
        """What the side to move may see: its own reservation, never the opponent's."""
        scenario = self.match.scenario
        role = self.mover_role
        history = self._history
        standing = history[-1].price if history and history[-1].role is not role else None
        return Observation(
            role=role,
            reservation=scenario.reservation(role),
            price_range=scenario.price_range,
            turn=self.turn,
            max_turns=scenario.max_turns,
            standing_offer=standing,
            history=history,
        )

    def apply(self, observation: Observation, action: Action) -> None:
        """Play the mover's action, validating it first."""
        if self.done:
            raise RuntimeError("the episode is over")
        error = validate_action(action, observation)
        mover = self.mover
        if error is not None and getattr(mover, "strict", True):
            raise InvalidActionError(
                f"{mover.name} ({observation.role}) at turn {self.turn}: {error}"
            )
        self._steps.append(
            Step(self.turn, observation.role, observation, action, error is None, error)
        )
        scenario = self.match.scenario
        if error is None and action.kind is ActionKind.ACCEPT:
            self._finish(Outcome.agreed(scenario, observation.standing_offer, self.turn))
            return
        if error is None:
            self._history = (*self._history, Offer(observation.role, action.price, self.turn))
        if self.turn >= scenario.max_turns:
            self._finish(Outcome.impasse(self.turn))
        else:
            self.turn += 1

    def _finish(self, outcome: Outcome) -> None:
        self.done = True
        self.outcome = outcome

    def result(self) -> EpisodeResult:
        if not self.done or self.outcome is None:
            raise RuntimeError("the episode is not over yet")
        m = self.match
        return EpisodeResult(
            scenario=m.scenario,
            buyer_name=m.buyer.name,
            seller_name=m.seller.name,
            steps=tuple(self._steps),
            offers=self._history,
            outcome=self.outcome,
            seed=m.seed,
        )


def run_episode(match: Match) -> EpisodeResult:
    """Play one match to the end, one decision at a time."""
    state = EpisodeState(match)
    while not state.done:
        observation = state.observe()
        state.apply(observation, state.mover.act(observation))
    return state.result()


def run_episodes(
    matches: Sequence[Match], on_finished: Callable[[int], None] | None = None
) -> list[EpisodeResult]:
    """Play many matches in lockstep; results come back in the order of ``matches``.

    At every round, the pending decisions of all seats that share a ``batch_policy`` are
    answered by one ``act_batch`` call; other seats act one by one. Every match follows exactly
    the rules of :func:`run_episode`, so a batched evaluation and a sequential one agree.
    ``on_finished(n)`` is told after every round how many matches it ended (a progress bar
    that moves while a long lockstep call runs).
    """
    states = [EpisodeState(m) for m in matches]
    active = states
    while active:
        pending = [(state, state.observe()) for state in active]
        groups: dict[int, tuple[Any, list[int]]] = {}
        actions: list[Action | None] = [None] * len(pending)
        for i, (state, observation) in enumerate(pending):
            policy = getattr(state.mover, "batch_policy", None)
            if policy is None:
                actions[i] = state.mover.act(observation)
            else:
                groups.setdefault(id(policy), (policy, []))[1].append(i)
        for policy, indices in groups.values():
            seats = [pending[i][0].mover for i in indices]
            answers = policy.act_batch(seats, [pending[i][1] for i in indices])
            if len(answers) != len(indices):
                raise RuntimeError(
                    f"act_batch returned {len(answers)} actions for {len(indices)} decisions"
                )
            for i, answer in zip(indices, answers, strict=True):
                actions[i] = answer
        for (state, observation), action in zip(pending, actions, strict=True):
            state.apply(observation, action)
        still = [state for state in active if not state.done]
        if on_finished is not None and len(still) < len(active):
            on_finished(len(active) - len(still))
        active = still
    return [state.result() for state in states]
