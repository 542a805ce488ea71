"""NegMAS's negotiators in ``janus evaluate``: as opponents, and in Janus's seat.

An episode with a NegMAS negotiator (``negmas:<class>``, as opponent or as a baseline in
Janus's seat) is played in a real ``SAOMechanism``: the paired scenario of the plan becomes
one integer price issue over the public range and two affine utility functions whose reserved
values sit at the hidden reservations (:mod:`.mapping`); the first mover is added first;
``n_steps`` is the turn limit with ``one_offer_per_step=True``. Janus's side (a seat of the
agent, of the base, or a scripted strategy) plays through :class:`.PolicyNegotiator`, all of a
chunk's mechanisms in lockstep (:func:`.run_negotiations`), so its decisions are batched as in
Janus's own loop. The negotiation's trace then becomes an ordinary
:class:`~janus.episode.EpisodeResult` (the observations rebuilt by the same rule as
:class:`~janus.episode.EpisodeState`) and an ordinary record: the same metrics, intervals and
report as the scripted opponents.

Nothing is clipped. NegMAS can end a negotiation (``END_NEGOTIATION``, or no offer): that is
an impasse at that turn, the ending side's step recorded as invalid. An *irrational* side
offers past its own reservation or closes a deal past it; :func:`negmas_summary` flags such
opponents and lists their deals.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import negmas.sao.negotiators as builtin
from negmas.gb.negotiators import GBNegotiator
from negmas.sao import SAOMechanism

from janus.domain import Action, Observation, Offer, Outcome, Role, Scenario
from janus.episode import EpisodeResult, Step
from janus.evaluation.harness import (
    EpisodeRecord,
    EpisodeSpec,
    _seat_seed,
    build_seat,
    record_episode,
)
from janus.integrations.negmas import PREFIX, is_negmas_name
from janus.integrations.negmas.lockstep import run_negotiations
from janus.integrations.negmas.mapping import price_issue, scenario_ufuns
from janus.integrations.negmas.negotiator import PolicyNegotiator
from janus.strategies import create_strategy

__all__ = ["check_names", "create_negotiator", "episode_result", "play_specs"]

ENDED = "ended the negotiation (NegMAS END_NEGOTIATION or no offer)"


def negotiator_class(name: str) -> type:
    """The NegMAS class of ``negmas:<class>`` (from ``negmas.sao.negotiators``)."""
    cls_name = name.removeprefix(PREFIX)
    cls = getattr(builtin, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, GBNegotiator)):
        known = sorted(n for n in builtin.__all__ if n.endswith("Negotiator"))
        raise ValueError(
            f"unknown NegMAS negotiator {name!r}; valid: negmas:<class> with a class of "
            f"negmas.sao.negotiators ({', '.join(known[:8])}, ...)"
        )
    return cls


def check_names(names: Sequence[str], what: str = "negotiator") -> None:
    """Refuse an unknown ``negmas:`` name before anything is played."""
    for name in names:
        try:
            negotiator_class(name)
        except ValueError as error:
            raise ValueError(f"{what}: {error}") from None


def create_negotiator(class_name: str, seed: int, **kwargs: Any) -> Any:
    """A fresh NegMAS negotiator of ``negmas:<class>``, built under a seeded global RNG."""
    random.seed(seed & 0xFFFFFFFF)
    return negotiator_class(class_name)(**kwargs)


def _side(spec: EpisodeSpec, agent: Any, base_agent: Any, fixed_rho: float) -> tuple[Any, Any]:
    """``(NegMAS negotiator, seat for the record)`` of Janus's seat."""
    strategy = spec.janus_strategy or ""
    if spec.kind == "scripted" and is_negmas_name(strategy):
        negotiator = create_negotiator(strategy, _seat_seed(spec), name="janus-seat")
        return negotiator, negotiator
    seat = build_seat(spec, agent, base_agent, fixed_rho)
    return PolicyNegotiator(seat, name="janus-seat"), seat


def _opponent(spec: EpisodeSpec) -> Any:
    if is_negmas_name(spec.opponent):
        return create_negotiator(spec.opponent, spec.seed, name="opponent")
    return PolicyNegotiator(create_strategy(spec.opponent, spec.seed), name="opponent")


def build_negotiation(
    spec: EpisodeSpec, agent: Any = None, base_agent: Any = None, fixed_rho: float = 0.5
) -> tuple[SAOMechanism, Any, Any, Any]:
    """``(mechanism, Janus-side negotiator, opponent negotiator, seat for the record)``."""
    scenario = spec.scenario
    issue = price_issue(scenario.price_range)
    buyer_ufun, seller_ufun = scenario_ufuns(issue, scenario)
    mine, seat = _side(spec, agent, base_agent, fixed_rho)
    theirs = _opponent(spec)
    mechanism = SAOMechanism(
        issues=[issue], n_steps=scenario.max_turns, one_offer_per_step=True, name=str(spec.seed)
    )
    by_role = {spec.janus_role: mine, spec.janus_role.opponent: theirs}
    ufuns = {Role.BUYER: buyer_ufun, Role.SELLER: seller_ufun}
    first = scenario.first_mover
    for role in (first, first.opponent):
        mechanism.add(by_role[role], ufun=ufuns[role])
    return mechanism, mine, theirs, seat


def _observe(scenario: Scenario, role: Role, history: tuple[Offer, ...]) -> Observation:
    standing = history[-1].price if history and history[-1].role is not role else None
    return Observation(
        role=role,
        reservation=scenario.reservation(role),
        price_range=scenario.price_range,
        turn=len(history) + 1,
        max_turns=scenario.max_turns,
        standing_offer=standing,
        history=history,
    )


def episode_result(
    spec: EpisodeSpec, mechanism: SAOMechanism, mine: Any, theirs: Any, seat: Any
) -> EpisodeResult:
    """The finished negotiation as a Janus episode: offers, steps, outcome, turns."""
    scenario = spec.scenario
    role_of = {mine.id: spec.janus_role, theirs.id: spec.janus_role.opponent}
    first = scenario.first_mover
    history: tuple[Offer, ...] = ()
    steps: list[Step] = []
    for turn, (_, negotiator_id, outcome) in enumerate(mechanism.extended_trace, start=1):
        role = role_of[negotiator_id]
        if role is not (first if turn % 2 else first.opponent):
            raise RuntimeError(f"negotiation {spec.seed}: turn {turn} out of alternation")
        obs = _observe(scenario, role, history)
        price = float(outcome[0])
        steps.append(Step(turn, role, obs, Action.offer(price), True))
        history = (*history, Offer(role, price, turn))
    state = mechanism.state
    turn = len(history) + 1
    mover = first if turn % 2 else first.opponent
    if state.agreement is not None:
        price = float(state.agreement[0])
        if not history or history[-1].price != price or history[-1].role is mover:
            raise RuntimeError(f"negotiation {spec.seed}: agreement {price} is not the offer")
        steps.append(Step(turn, mover, _observe(scenario, mover, history), Action.accept(), True))
        outcome = Outcome.agreed(scenario, price, turn)
    elif state.broken:
        own = getattr(mine if mover is spec.janus_role else theirs, "invalid", None) or []
        error = own[-1][1] if own else ENDED
        obs = _observe(scenario, mover, history)
        steps.append(Step(turn, mover, obs, Action.accept(), False, error))
        outcome = Outcome.impasse(turn)
    else:
        outcome = Outcome.impasse(len(history))
    names = {spec.janus_role: getattr(seat, "name", type(seat).__name__)}
    names[spec.janus_role.opponent] = spec.opponent
    return EpisodeResult(
        scenario=scenario,
        buyer_name=names[Role.BUYER],
        seller_name=names[Role.SELLER],
        steps=tuple(steps),
        offers=history,
        outcome=outcome,
        seed=spec.seed,
    )


def play_specs(
    specs: Sequence[EpisodeSpec],
    agent: Any = None,
    base_agent: Any = None,
    fixed_rho: float = 0.5,
    *,
    on_finished=None,
) -> list[EpisodeRecord]:
    """Play ``specs`` as NegMAS negotiations in lockstep; one record per spec, in order."""
    built = [build_negotiation(spec, agent, base_agent, fixed_rho) for spec in specs]
    run_negotiations(
        [b[0] for b in built], seeds=[spec.seed for spec in specs], on_finished=on_finished
    )
    return [
        record_episode(spec, episode_result(spec, mechanism, mine, theirs, seat), seat)
        for spec, (mechanism, mine, theirs, seat) in zip(specs, built, strict=True)
    ]
