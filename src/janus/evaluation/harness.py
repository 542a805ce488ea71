"""The evaluation harness: which episodes are played, and playing them in batched lockstep.

Every episode is a pure function of ``(seed, opponent, Janus's role, episode index)``: that
derived seed draws the scenario (reservations, with the first mover alternating with the
index) and seeds the opponent strategy, for every configuration alike. So the ``standard``
episode 3 against ``boulware`` as buyer and the ``base`` one and the ``ρ* = 0.7`` sweep one
face the same reservations, the same first mover and the same opponent: configurations are
compared on paired episodes (docs/ARCHITECTURE.md, defect 8).

All episodes go through :func:`janus.episode.run_episodes` in large chunks, so every pending
decision of every Janus seat of a chunk (all configurations, all ρ*, all channels) is
answered by one ``act_batch`` call per round.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tqdm.auto import tqdm

from janus.domain import (
    DomainConfig,
    Role,
    Scenario,
    ZopaWidth,
    named_domain,
    sample_scenario,
)
from janus.episode import EpisodeResult, Match, Negotiator, run_episodes
from janus.integrations.negmas import is_negmas_name, require_negmas

__all__ = [
    "BASE",
    "CHANNELS",
    "DEFAULT_CONFIGURATIONS",
    "DEFAULT_RHO_GRID",
    "JANUS_CONFIGURATIONS",
    "SCRIPTED_PREFIX",
    "SWEEP",
    "SWEEP_RAW",
    "EpisodeRecord",
    "EpisodeSpec",
    "EvaluationConfig",
    "EvaluationPlan",
    "build_match",
    "build_seat",
    "cell_seed",
    "make_plan",
    "plan_episodes",
    "play_episodes",
    "record_episode",
]

#: Requested ρ of each fixed configuration: (as buyer, as seller).
JANUS_CONFIGURATIONS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "standard": (0.2, 0.8),
        "extreme": (0.0, 1.0),
        "flipped": (0.8, 0.2),
        "neutral": (0.5, 0.5),
    }
)
#: The base model without adapter, same prompt and constraint, told the Standard ρ values.
BASE = "base"
DEFAULT_CONFIGURATIONS: tuple[str, ...] = (BASE, *JANUS_CONFIGURATIONS)
#: The configuration name of the calibration sweep's episodes.
SWEEP = "sweep"
#: The same sweep played on the raw dial, beside a calibrated one (adapters with a map).
SWEEP_RAW = "sweep-raw"
#: A scripted strategy placed in Janus's seat is the configuration ``script:<name>``.
SCRIPTED_PREFIX = "script:"
CHANNELS: tuple[str, ...] = ("both", "text", "weights")
DEFAULT_RHO_GRID: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))
TIE_TOLERANCE = 1e-6
"""Two normalised utilities closer than this are a tie."""


# ------------------------------------------------------------------------------- config


@dataclass
class EvaluationConfig:
    """Everything ``janus evaluate`` can be told. Defaults are the full benchmark.

    - ``run``: a run directory (``runs/NAME``) or an adapter directory; ``base_model``
      overrides the base recorded in the adapter (also the model of the ``base``
      configuration). ``out`` defaults to ``reports/<run name>``.
    - ``opponents`` default to ``evaluation_pool() + held_out_pool()``; ``held_out`` (default
      ``held_out_pool()``) marks which of them were kept out of training: calibration is
      reported on held-out, in-pool and all opponents, the held-out one being the headline.
      An opponent (or baseline) ``negmas:<class>`` is one of NegMAS's SAO negotiators (the
      ``negmas`` extra), played in a real ``SAOMechanism`` (:mod:`janus.integrations.negmas`);
      such opponents are always held out, since no training data can contain them.
    - ``episodes_per_cell``: episodes per (opponent × Janus role × configuration);
      ``sweep_episodes_per_cell`` the same for every (ρ* × channels) point of the sweep
      (default: ``episodes_per_cell``). The first mover alternates with the episode index
      (shifted by one for every other opponent), so an even count balances it within every
      cell, and any count balances it across pairs of opponents.
    - ``configurations``: a subset of ``base, standard, extreme, flipped, neutral``;
      ``calibration`` runs the ρ* sweep over ``rho_grid``, ``ablations`` adds the text-only
      and weights-only channels (the other channel fed ``ablation_fixed_rho``);
      ``scripted_baselines`` puts every strategy of ``baseline_strategies`` (default: the
      in-pool opponents) in Janus's seat.
    - ``zopa_width`` (``"500"`` or ``"200:700"``) or a whole ``domain`` (a
      :class:`~janus.domain.DomainConfig` or a name of :data:`janus.domain.DOMAINS`); ``safety``,
      ``temperature``, ``device`` go to the agent; ``batch_size`` is the number of episodes
      played in lockstep per :func:`run_episodes` call; ``threads`` sets torch's intra-op
      threads while playing (restored after; ``None`` leaves them alone). The default is 1
      because on a shared CPU two OpenMP threads per process wait on each other whenever
      another process holds a core (benchmarks/RESULTS.md). ``dtype`` is the base weights' dtype
      (``auto``: the one the adapter trained with; ``float32``; ``bfloat16``), the same for
      the ``base`` configuration.
    - ``rules``: the agent's acceptance rules (``janus.agent.ACCEPTANCE_RULES``; ``None``:
      the defaults, ``()``: none), for Janus and the base alike. ``raw`` plays the raw dial
      even when the adapter has a calibration map; with a map (and not ``raw``) the sweep is
      played both ways, side by side.
    """

    run: str | Path | None = None
    base_model: str | None = None
    out: str | Path | None = None
    opponents: Sequence[str] | None = None
    held_out: Sequence[str] | None = None
    episodes_per_cell: int = 4
    sweep_episodes_per_cell: int | None = None
    rho_grid: Sequence[float] = DEFAULT_RHO_GRID
    configurations: Sequence[str] = DEFAULT_CONFIGURATIONS
    calibration: bool = True
    ablations: bool = True
    ablation_fixed_rho: float = 0.5
    scripted_baselines: bool = True
    baseline_strategies: Sequence[str] | None = None
    seed: int = 0
    zopa_width: str | ZopaWidth | None = None
    domain: DomainConfig | str | None = None
    safety: bool = True
    temperature: float = 0.0
    device: str = "cpu"
    batch_size: int = 1024
    threads: int | None = 1
    dtype: str = "auto"
    rules: Sequence[str] | str | None = None
    raw: bool = False
    bootstrap_resamples: int = 1000
    plots: bool = True
    overwrite: bool = False
    progress: bool = True


@dataclass(frozen=True)
class EvaluationPlan:
    """An :class:`EvaluationConfig` checked and resolved into concrete values."""

    opponents: tuple[str, ...]
    held_out: frozenset[str]
    configurations: tuple[str, ...]
    baselines: tuple[str, ...]
    channels: tuple[str, ...]
    grid: tuple[float, ...]
    episodes_per_cell: int
    sweep_episodes_per_cell: int
    fixed_rho: float
    seed: int
    domain: DomainConfig
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def in_pool(self) -> tuple[str, ...]:
        return tuple(o for o in self.opponents if o not in self.held_out)

    @property
    def held_out_opponents(self) -> tuple[str, ...]:
        return tuple(o for o in self.opponents if o in self.held_out)


def _names(values: Iterable[str], what: str) -> tuple[str, ...]:
    """Strategy names checked against the registry; ``negmas:<class>`` names a NegMAS
    negotiator (checked by the optional integration, which imports NegMAS)."""
    from janus.strategies import REGISTRY

    if isinstance(values, str):
        values = values.split(",")
    names = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    negmas = [n for n in names if is_negmas_name(n)]
    if negmas:
        require_negmas(f"{what} {', '.join(negmas)}")
        from janus.integrations.negmas.evaluation import check_names

        check_names(negmas, what)
    unknown = [n for n in names if n not in REGISTRY and not is_negmas_name(n)]
    if unknown:
        raise ValueError(
            f"unknown {what} {', '.join(map(repr, unknown))}; "
            f"valid strategies: {', '.join(REGISTRY)}"
        )
    return names


def _check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _check_rho(value: Any, what: str) -> float:
    try:
        rho = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}") from None
    if not (math.isfinite(rho) and 0.0 <= rho <= 1.0):
        raise ValueError(f"{what} must be in [0, 1], got {value!r}")
    if abs(round(rho, 2) - rho) > 1e-9:
        # The prompt shows ρ with 2 decimals and the agent rounds the tensor to match: a
        # requested 0.125 would really be a request for 0.12 (or 0.13).
        raise ValueError(f"{what} must have at most 2 decimals (the prompt shows 2), got {rho}")
    return round(rho, 2) + 0.0


def _domain(config: EvaluationConfig) -> DomainConfig:
    """The domain of ``config``: named, given whole, or the default with a ZOPA width."""
    if isinstance(config.domain, str):
        return named_domain(config.domain)
    if config.domain is not None:
        return config.domain
    if config.zopa_width is None:
        return DomainConfig()
    width = config.zopa_width
    return DomainConfig(
        zopa_width=width if isinstance(width, ZopaWidth) else ZopaWidth.parse(str(width))
    )


def make_plan(config: EvaluationConfig) -> EvaluationPlan:
    """Check an :class:`EvaluationConfig` and resolve its defaults."""
    from janus.strategies import evaluation_pool, held_out_pool

    if config.opponents is None:
        opponents = tuple(dict.fromkeys([*evaluation_pool(), *held_out_pool()]))
    else:
        opponents = _names(config.opponents, "opponent")
    if not opponents:
        raise ValueError("no opponents to evaluate against")
    held = _names(held_out_pool() if config.held_out is None else config.held_out, "held-out")
    # NegMAS's negotiators never play in Janus's training data: always held out.
    held = (*held, *(o for o in opponents if is_negmas_name(o) and o not in held))
    names = config.configurations
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    configurations = tuple(dict.fromkeys(names))
    wrong = [c for c in configurations if c not in DEFAULT_CONFIGURATIONS]
    if wrong:
        raise ValueError(
            f"unknown configuration(s) {', '.join(map(repr, wrong))}; "
            f"choose from {', '.join(DEFAULT_CONFIGURATIONS)}"
        )
    in_pool = tuple(o for o in opponents if o not in set(held))
    if not config.scripted_baselines:
        baselines: tuple[str, ...] = ()
    elif config.baseline_strategies is None:
        baselines = in_pool
    else:
        baselines = _names(config.baseline_strategies, "baseline strategy")
    episodes = _check_count(config.episodes_per_cell, "episodes_per_cell")
    sweep = config.sweep_episodes_per_cell
    sweep = episodes if sweep is None else _check_count(sweep, "sweep_episodes_per_cell")
    grid = tuple(sorted({_check_rho(v, "a ρ grid value") for v in config.rho_grid}))
    if config.calibration and len(grid) < 2:
        raise ValueError("the ρ grid needs at least 2 values for a calibration curve")
    channels = () if not config.calibration else CHANNELS if config.ablations else ("both",)
    domain = _domain(config)
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {config.seed!r}")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads must be >= 1, got {config.threads}")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    if config.bootstrap_resamples < 1:
        raise ValueError(f"bootstrap_resamples must be >= 1, got {config.bootstrap_resamples}")
    if not (configurations or channels or baselines):
        raise ValueError("nothing to evaluate: no configuration, no sweep, no baseline")
    return EvaluationPlan(
        opponents=opponents,
        held_out=frozenset(held),
        configurations=configurations,
        baselines=baselines,
        channels=channels,
        grid=grid,
        episodes_per_cell=episodes,
        sweep_episodes_per_cell=sweep,
        fixed_rho=_check_rho(config.ablation_fixed_rho, "ablation_fixed_rho"),
        seed=config.seed,
        domain=domain,
    )


# -------------------------------------------------------------------------------- specs


def cell_seed(seed: int, opponent: str, role: Role | str, index: int) -> int:
    """The 63-bit seed of episode ``index`` against ``opponent`` with Janus as ``role``.

    It draws the scenario and seeds the opponent, identically for every configuration.
    """
    text = f"janus-eval:{seed}:{opponent}:{Role(role).value}:{index}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def first_mover(index: int, opponent_position: int = 0) -> Role:
    """Balanced first mover: the buyer opens when ``index + opponent_position`` is even.

    Within a cell it alternates with the episode index; the shift by the opponent's position
    in the plan balances odd counts too (with one episode per cell, every other opponent
    opens against the buyer). Janus opens in exactly half of each opponent's pairs of
    (buyer, seller) episodes either way.
    """
    return Role.BUYER if (index + opponent_position) % 2 == 0 else Role.SELLER


@dataclass(frozen=True, slots=True)
class EpisodeSpec:
    """One episode to play: the configuration in Janus's seat and the paired scenario.

    ``kind`` is ``janus`` (the adapter), ``base`` (the base model) or ``scripted`` (a strategy
    of the pool in Janus's seat: ``janus_strategy``). ``requested_rho`` is ``None`` for a
    scripted seat.
    """

    configuration: str
    kind: str
    channels: str
    requested_rho: float | None
    janus_role: Role
    opponent: str
    held_out: bool
    index: int
    seed: int
    scenario: Scenario
    janus_strategy: str | None = None
    calibrated: bool = True


def plan_episodes(plan: EvaluationPlan, *, raw_sweep: bool = False) -> list[EpisodeSpec]:
    """Every episode of an evaluation, in a fixed order: configurations, sweep, baselines.

    With ``raw_sweep`` (an adapter with a calibration map), the sweep's "both" channel is
    played twice, calibrated (``sweep``) and on the raw dial (``sweep-raw``), and the channel
    ablations are played raw: they compare channels of the dial itself.
    """
    scenarios: dict[tuple[str, Role, int], tuple[int, Scenario]] = {}

    position = {opponent: i for i, opponent in enumerate(plan.opponents)}

    def cell(opponent: str, role: Role, index: int) -> tuple[int, Scenario]:
        key = (opponent, role, index)
        if key not in scenarios:
            seed = cell_seed(plan.seed, opponent, role, index)
            opens = first_mover(index, position[opponent])
            scenario = sample_scenario(plan.domain, random.Random(seed), opens)
            scenarios[key] = (seed, scenario)
        return scenarios[key]

    specs: list[EpisodeSpec] = []

    def add(
        name: str, kind: str, channels: str, rho_of, n: int, strategy=None, calibrated=True
    ) -> None:
        for opponent in plan.opponents:
            for role in (Role.BUYER, Role.SELLER):
                for index in range(n):
                    seed, scenario = cell(opponent, role, index)
                    specs.append(
                        EpisodeSpec(
                            configuration=name,
                            kind=kind,
                            channels=channels,
                            requested_rho=rho_of(role),
                            janus_role=role,
                            opponent=opponent,
                            held_out=opponent in plan.held_out,
                            index=index,
                            seed=seed,
                            scenario=scenario,
                            janus_strategy=strategy,
                            calibrated=calibrated,
                        )
                    )

    def fixed(name: str) -> Callable[[Role], float]:
        buyer, seller = JANUS_CONFIGURATIONS["standard" if name == BASE else name]
        return lambda role: buyer if role is Role.BUYER else seller

    for name in plan.configurations:
        kind = "base" if name == BASE else "janus"
        add(name, kind, "" if kind == "base" else "both", fixed(name), plan.episodes_per_cell)
    n_sweep = plan.sweep_episodes_per_cell
    for channels in plan.channels:
        for rho in plan.grid:
            mapped = not raw_sweep or channels == "both"
            add(SWEEP, "janus", channels, lambda _r, v=rho: v, n_sweep, calibrated=mapped)
    if raw_sweep and "both" in plan.channels:
        for rho in plan.grid:
            add(SWEEP_RAW, "janus", "both", lambda _r, v=rho: v, n_sweep, calibrated=False)
    for strategy in plan.baselines:
        name = SCRIPTED_PREFIX + strategy
        add(name, "scripted", "", lambda _r: None, plan.episodes_per_cell, strategy)
    return specs


# ---------------------------------------------------------------------------------- play


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
    repeated_offers: int = 0
    worse_counters: int = 0
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


def offer_habits(result: EpisodeResult, role: Role) -> tuple[int, int, bool]:
    """How the seat of ``role`` bargained: ``(repeated offers, worse counters, walked away)``.

    - a *repeated offer* equals the seat's own previous offer (nothing conceded: opponents
      that answer concessions stall);
    - a *worse counter* rejects a standing offer with a counter that is worse for the seat
      itself than that offer (surplus given away for nothing);
    - *walked away*: the episode ended in impasse although the seat had, at some decision,
      a standing offer inside its reservation on the table.
    """
    repeated = worse = 0
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
        if standing is not None and obs.better_or_equal(standing, price) and standing != price:
            worse += 1
        previous = price
    return repeated, worse, acceptable_seen and not result.outcome.agreement


def record_episode(spec: EpisodeSpec, result: EpisodeResult, seat: Any) -> EpisodeRecord:
    """Turn a played episode into its record (safety counts come from ``seat.stats``)."""
    role = spec.janus_role
    repeated, worse, walked_away = offer_habits(result, role)
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
        rule_accept_better=int(getattr(stats, "rule_accept_better", 0) or 0),
        rule_accept_last_turn=int(getattr(stats, "rule_accept_last_turn", 0) or 0),
        rule_accept_final_turn=int(getattr(stats, "rule_accept_final_turn", 0) or 0),
        rule_concede_on_stall=int(getattr(stats, "rule_concede_on_stall", 0) or 0),
        repeated_offers=repeated,
        worse_counters=worse,
        walked_away=walked_away,
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
