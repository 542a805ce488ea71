"""The evaluation harness: playing the planned episodes in batched lockstep.

All episodes go through :func:`janus.episode.run_episodes` in large chunks, so every pending
decision of every Janus seat of a chunk (all configurations, all ρ*, all channels) is
answered by one ``act_batch`` call per round. Which episodes are played, and why they are
paired, is :mod:`janus.evaluation.plan`; its names are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from tqdm.auto import tqdm

from janus.domain import Role
from janus.episode import EpisodeResult, Match, Negotiator, run_episodes
from janus.evaluation.plan import (
    BASE,
    CHANNELS,
    DEFAULT_CONFIGURATIONS,
    DEFAULT_RHO_GRID,
    JANUS_CONFIGURATIONS,
    SCRIPTED_PREFIX,
    SWEEP,
    SWEEP_RAW,
    TIE_TOLERANCE,
    EpisodeSpec,
    EvaluationConfig,
    EvaluationPlan,
    cell_seed,
    first_mover,
    make_plan,
    plan_episodes,
)
from janus.integrations.negmas import is_negmas_name
from janus.rules import RULE_COUNTERS

__all__ = [
    "BASE",
    "CHANNELS",
    "DEFAULT_CONFIGURATIONS",
    "DEFAULT_RHO_GRID",
    "JANUS_CONFIGURATIONS",
    "SCRIPTED_PREFIX",
    "SWEEP",
    "SWEEP_RAW",
    "TIE_TOLERANCE",
    "EpisodeRecord",
    "EpisodeSpec",
    "EvaluationConfig",
    "EvaluationPlan",
    "build_match",
    "build_seat",
    "cell_seed",
    "first_mover",
    "make_plan",
    "plan_episodes",
    "play_episodes",
    "record_episode",
]


def _seat_seed(spec: EpisodeSpec) -> int:
    digest = hashlib.blake2b(f"janus-eval-seat:{spec.seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def build_seat(
    spec: EpisodeSpec, agent: Any = None, base_agent: Any = None, fixed_rho: float = 0.5
) -> Negotiator:
    """A fresh negotiator for Janus's seat of ``spec`` (a seat of an agent, or a strategy)."""
    from janus.strategies import create_strategy

    if spec.kind == "janus":
        if agent is None:
            raise ValueError("a Janus configuration needs an agent")
        seat = agent.seat(
            spec.requested_rho,
            channels=spec.channels,
            fixed_rho=fixed_rho,
            name=f"janus[{spec.configuration}:{spec.channels}:{spec.requested_rho:.2f}]",
            calibrated=spec.calibrated,
            role=spec.janus_role.value,
        )
    elif spec.kind == "base":
        if base_agent is None:
            raise ValueError("the base configuration needs a base agent")
        seat = base_agent.seat(spec.requested_rho, name=f"base[{spec.requested_rho:.2f}]")
    elif spec.kind == "scripted":
        seat = create_strategy(spec.janus_strategy, _seat_seed(spec))
    else:
        raise ValueError(f"unknown episode kind {spec.kind!r}")
    return seat


def build_match(
    spec: EpisodeSpec, agent: Any = None, base_agent: Any = None, fixed_rho: float = 0.5
) -> tuple[Match, Negotiator]:
    """A fresh match for ``spec``: ``(match, the seat playing for Janus)``.

    The opponent is ``create_strategy(opponent, spec.seed)``, so every configuration meets
    the same opponent behaviour on the same scenario.
    """
    from janus.strategies import create_strategy

    seat = build_seat(spec, agent, base_agent, fixed_rho)
    opponent = create_strategy(spec.opponent, spec.seed)
    if spec.janus_role is Role.BUYER:
        match = Match(seat, opponent, spec.scenario, spec.seed)
    else:
        match = Match(opponent, seat, spec.scenario, spec.seed)
    return match, seat


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """One played episode from Janus's seat's point of view: one row of ``episodes.csv``.

    ``result`` compares the two sides' normalised utilities: ``win``/``loss`` when they differ
    by more than 1e-6, else ``tie``; an impasse gives both sides 0, so it is a tie.
    ``achieved_rho`` and ``final_price`` are ``None`` for an impasse. ``offers`` is the full
    trace ``(role, price, turn)``.
    """

    configuration: str
    kind: str
    channels: str
    requested_rho: float | None
    janus_role: str
    opponent: str
    held_out: bool
    episode_index: int
    seed: int
    first_mover: str
    buyer_max: float
    seller_min: float
    agreement: bool
    final_price: float | None
    achieved_rho: float | None
    janus_utility: float
    opponent_utility: float
    result: str
    turns: int
    decisions: int
    invalid_actions: int
    opponent_invalid_actions: int
    safety_clamped_offers: int
    safety_refused_accepts: int
    offers: tuple[tuple[str, float, int], ...]
    calibrated: bool = False
    dial_rho: float | None = None
    outside_reachable: int = 0
    rule_accept_better: int = 0
    rule_accept_last_turn: int = 0
    rule_accept_final_turn: int = 0
    rule_concede_on_stall: int = 0
    rule_reciprocate: int = 0
    rule_no_retreat: int = 0
    rule_fresh_offer: int = 0
    rule_firm_opening: int = 0
    repeated_offers: int = 0
    worse_counters: int = 0
    retreats: int = 0
    walked_away: bool = False

    @property
    def zopa_width(self) -> float:
        return self.buyer_max - self.seller_min

    @property
    def outside_zopa(self) -> bool:
        """An agreement at a price outside [SellerMin, BuyerMax] (someone lost money)."""
        p = self.final_price
        return self.agreement and p is not None and not self.seller_min <= p <= self.buyer_max

    @property
    def strategy(self) -> str:
        return self.configuration.removeprefix(SCRIPTED_PREFIX)

    def offers_json(self) -> str:
        return json.dumps([[r, round(p, 4), t] for r, p, t in self.offers], separators=(",", ":"))


class OfferHabits(NamedTuple):
    """How one seat bargained in one episode (see :func:`offer_habits`)."""

    repeated: int
    worse: int
    retreats: int
    walked_away: bool


def offer_habits(result: EpisodeResult, role: Role) -> OfferHabits:
    """How the seat of ``role`` bargained in ``result``.

    - a *repeated offer* equals the seat's own previous offer (nothing conceded: opponents
      that answer concessions stall);
    - a *worse counter* rejects a standing offer with a counter that is worse for the seat
      itself than that offer (surplus given away for nothing);
    - a *retreat* is better for the seat than its own previous offer (it takes back a
      concession: opponents that mirror concessions read it as hardening);
    - *walked away*: the episode ended in impasse although the seat had, at some decision,
      a standing offer inside its reservation on the table.
    """
    repeated = worse = retreats = 0
    acceptable_seen = False
    previous: float | None = None
    for step in result.steps:
        if step.role is not role:
            continue
        obs = step.observation
        standing = obs.standing_offer
        if standing is not None and obs.is_acceptable(standing):
            acceptable_seen = True
        price = step.action.price
        if not step.valid or step.action.is_accept or price is None:
            continue
        if previous is not None and abs(price - previous) < 1e-9:
            repeated += 1
        elif previous is not None and obs.better_or_equal(price, previous):
            retreats += 1
        if standing is not None and obs.better_or_equal(standing, price) and standing != price:
            worse += 1
        previous = price
    walked_away = acceptable_seen and not result.outcome.agreement
    return OfferHabits(repeated, worse, retreats, walked_away)


def record_episode(spec: EpisodeSpec, result: EpisodeResult, seat: Any) -> EpisodeRecord:
    """Turn a played episode into its record (safety counts come from ``seat.stats``)."""
    role = spec.janus_role
    habits = offer_habits(result, role)
    outcome = result.outcome
    mine, theirs = outcome.utility(role), outcome.utility(role.opponent)
    if mine - theirs > TIE_TOLERANCE:
        verdict = "win"
    elif theirs - mine > TIE_TOLERANCE:
        verdict = "loss"
    else:
        verdict = "tie"
    stats = getattr(seat, "stats", None)
    return EpisodeRecord(
        configuration=spec.configuration,
        kind=spec.kind,
        channels=spec.channels,
        requested_rho=spec.requested_rho,
        janus_role=role.value,
        opponent=spec.opponent,
        held_out=spec.held_out,
        episode_index=spec.index,
        seed=spec.seed,
        first_mover=spec.scenario.first_mover.value,
        buyer_max=spec.scenario.buyer_max,
        seller_min=spec.scenario.seller_min,
        agreement=outcome.agreement,
        final_price=outcome.final_price,
        achieved_rho=outcome.rho if outcome.agreement else None,
        janus_utility=mine,
        opponent_utility=theirs,
        result=verdict,
        turns=outcome.turns,
        decisions=sum(1 for s in result.steps if s.role is role),
        invalid_actions=result.invalid_actions(role),
        opponent_invalid_actions=result.invalid_actions(role.opponent),
        safety_clamped_offers=int(getattr(stats, "safety_clamped_offers", 0) or 0),
        safety_refused_accepts=int(getattr(stats, "safety_refused_accepts", 0) or 0),
        offers=tuple((o.role.value, float(o.price), o.turn) for o in result.offers),
        calibrated=getattr(seat, "calibration", None) is not None,
        dial_rho=getattr(seat, "dial_rho", None),
        outside_reachable=int(getattr(stats, "outside_reachable", 0) or 0),
        **{counter: int(getattr(stats, counter, 0) or 0) for counter in RULE_COUNTERS},
        repeated_offers=habits.repeated,
        worse_counters=habits.worse,
        retreats=habits.retreats,
        walked_away=habits.walked_away,
    )


def uses_negmas(spec: EpisodeSpec) -> bool:
    """Whether a NegMAS negotiator plays in ``spec`` (then it is played in NegMAS)."""
    return is_negmas_name(spec.opponent) or is_negmas_name(spec.janus_strategy or "")


def _play_chunk(
    chunk: Sequence[EpisodeSpec], agent: Any, base_agent: Any, fixed_rho: float, on_finished
) -> list[EpisodeRecord]:
    """Records of ``chunk`` in its order: Janus's own loop, or NegMAS's ``SAOMechanism`` for
    the episodes with a NegMAS negotiator (both batched, see their modules)."""
    records: list[EpisodeRecord | None] = [None] * len(chunk)
    plain = [i for i, spec in enumerate(chunk) if not uses_negmas(spec)]
    if plain:
        built = [build_match(chunk[i], agent, base_agent, fixed_rho) for i in plain]
        results = run_episodes([m for m, _ in built], on_finished=on_finished)
        for i, (_, seat), result in zip(plain, built, results, strict=True):
            records[i] = record_episode(chunk[i], result, seat)
    others = [i for i, spec in enumerate(chunk) if uses_negmas(spec)]
    if others:
        from janus.integrations.negmas.evaluation import play_specs

        played = play_specs(
            [chunk[i] for i in others], agent, base_agent, fixed_rho, on_finished=on_finished
        )
        for i, record in zip(others, played, strict=True):
            records[i] = record
    return records  # type: ignore[return-value]


def play_episodes(
    specs: Sequence[EpisodeSpec],
    agent: Any = None,
    base_agent: Any = None,
    *,
    fixed_rho: float = 0.5,
    batch_size: int = 1024,
    progress: bool = True,
) -> list[EpisodeRecord]:
    """Play every spec through :func:`run_episodes`, ``batch_size`` episodes per call.

    Within a call, every pending decision of the seats of one agent (whatever their
    configuration, ρ or channels) goes through one ``act_batch`` per round.
    """
    records: list[EpisodeRecord] = []
    with tqdm(
        total=len(specs), desc="evaluate", unit="episode", disable=not progress, leave=False
    ) as bar:
        for start in range(0, len(specs), batch_size):
            chunk = specs[start : start + batch_size]
            records.extend(_play_chunk(chunk, agent, base_agent, fixed_rho, bar.update))
            agreed = sum(r.agreement for r in records)
            bar.set_postfix(agreement=f"{agreed / len(records):.2f}")
    return records
