"""Which episodes an evaluation plays: the config, its checked plan, and the paired episodes.

Every episode is a pure function of ``(seed, opponent, Janus's role, episode index)``: that
derived seed draws the scenario (reservations, with the first mover alternating with the
index) and seeds the opponent strategy, for every configuration alike. So the ``standard``
episode 3 against ``boulware`` as buyer and the ``base`` one and the ``ρ* = 0.7`` sweep one
face the same reservations, the same first mover and the same opponent: configurations are
compared on paired episodes (docs/ARCHITECTURE.md, defect 8). Playing them is
:mod:`janus.evaluation.harness`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from janus.domain import (
    DomainConfig,
    Role,
    Scenario,
    ZopaWidth,
    named_domain,
    sample_scenario,
)
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
    "TIE_TOLERANCE",
    "EpisodeSpec",
    "EvaluationConfig",
    "EvaluationPlan",
    "cell_seed",
    "first_mover",
    "make_plan",
    "plan_episodes",
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
      ``temperature``, ``price_decoding`` (``greedy`` or ``mean``: how an offer's price is
      read off the model, :func:`janus.decoding.constrained_decode`), ``device`` go to the
      agent (both agents: the base is played the same way); ``batch_size`` is the number of episodes
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
    price_decoding: str = "greedy"
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
    opponents, held = _opponents(config)
    configurations = _configurations(config.configurations)
    in_pool = tuple(o for o in opponents if o not in set(held))
    baselines = _baselines(config, in_pool)
    episodes = _check_count(config.episodes_per_cell, "episodes_per_cell")
    sweep = config.sweep_episodes_per_cell
    sweep = episodes if sweep is None else _check_count(sweep, "sweep_episodes_per_cell")
    grid = tuple(sorted({_check_rho(v, "a ρ grid value") for v in config.rho_grid}))
    if config.calibration and len(grid) < 2:
        raise ValueError("the ρ grid needs at least 2 values for a calibration curve")
    channels = () if not config.calibration else CHANNELS if config.ablations else ("both",)
    domain = _domain(config)
    _check_play_settings(config)
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


def _opponents(config: EvaluationConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The opponents and the names held out of training (NegMAS ones always among them):
    what the headline's held-out calibration is measured on."""
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
    return opponents, held


def _configurations(names: Sequence[str] | str) -> tuple[str, ...]:
    """The fixed configurations asked for (a list or the command line's comma list), each
    known, duplicates dropped."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    configurations = tuple(dict.fromkeys(names))
    wrong = [c for c in configurations if c not in DEFAULT_CONFIGURATIONS]
    if wrong:
        raise ValueError(
            f"unknown configuration(s) {', '.join(map(repr, wrong))}; "
            f"choose from {', '.join(DEFAULT_CONFIGURATIONS)}"
        )
    return configurations


def _baselines(config: EvaluationConfig, in_pool: tuple[str, ...]) -> tuple[str, ...]:
    """The scripted strategies put in Janus's seat: by default the in-pool opponents, so a
    baseline is never a held-out opponent unless asked for."""
    if not config.scripted_baselines:
        return ()
    if config.baseline_strategies is None:
        return in_pool
    return _names(config.baseline_strategies, "baseline strategy")


def _check_play_settings(config: EvaluationConfig) -> None:
    """The settings of how episodes are played and summarised, checked before any model is
    loaded."""
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {config.seed!r}")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads must be >= 1, got {config.threads}")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    if config.bootstrap_resamples < 1:
        raise ValueError(f"bootstrap_resamples must be >= 1, got {config.bootstrap_resamples}")


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
    cells = _PairedCells(plan)
    return [
        *_configuration_specs(cells),
        *_sweep_specs(cells, raw_sweep),
        *_baseline_specs(cells),
    ]


class _PairedCells:
    """The seed and scenario of every (opponent, Janus role, index) cell, drawn once: every
    configuration meets the very same ones, so they are compared on paired episodes."""

    def __init__(self, plan: EvaluationPlan) -> None:
        self.plan = plan
        self._position = {opponent: i for i, opponent in enumerate(plan.opponents)}
        self._drawn: dict[tuple[str, Role, int], tuple[int, Scenario]] = {}

    def cell(self, opponent: str, role: Role, index: int) -> tuple[int, Scenario]:
        """The cell's episode seed and scenario, drawn on first use."""
        key = (opponent, role, index)
        if key not in self._drawn:
            seed = cell_seed(self.plan.seed, opponent, role, index)
            opens = first_mover(index, self._position[opponent])
            scenario = sample_scenario(self.plan.domain, random.Random(seed), opens)
            self._drawn[key] = (seed, scenario)
        return self._drawn[key]

    def specs(
        self,
        name: str,
        kind: str,
        channels: str,
        rho_of: Callable[[Role], float | None],
        n: int,
        strategy: str | None = None,
        calibrated: bool = True,
    ) -> list[EpisodeSpec]:
        """One seat played ``n`` times per opponent and role, in the plan's opponent order."""
        specs = []
        for opponent in self.plan.opponents:
            for role in (Role.BUYER, Role.SELLER):
                for index in range(n):
                    seed, scenario = self.cell(opponent, role, index)
                    specs.append(
                        EpisodeSpec(
                            configuration=name,
                            kind=kind,
                            channels=channels,
                            requested_rho=rho_of(role),
                            janus_role=role,
                            opponent=opponent,
                            held_out=opponent in self.plan.held_out,
                            index=index,
                            seed=seed,
                            scenario=scenario,
                            janus_strategy=strategy,
                            calibrated=calibrated,
                        )
                    )
        return specs


def _fixed_rho(name: str) -> Callable[[Role], float]:
    """The requested ρ of a fixed configuration by role (the base is told Standard's)."""
    buyer, seller = JANUS_CONFIGURATIONS["standard" if name == BASE else name]
    return lambda role: buyer if role is Role.BUYER else seller


def _configuration_specs(cells: _PairedCells) -> list[EpisodeSpec]:
    """The fixed configurations' episodes (the base model sees no channel of the dial)."""
    specs = []
    for name in cells.plan.configurations:
        kind = "base" if name == BASE else "janus"
        channels = "" if kind == "base" else "both"
        specs += cells.specs(name, kind, channels, _fixed_rho(name), cells.plan.episodes_per_cell)
    return specs


def _sweep_specs(cells: _PairedCells, raw_sweep: bool) -> list[EpisodeSpec]:
    """The calibration sweep over the grid per channel, then (with a map) its raw twin."""
    plan, n_sweep = cells.plan, cells.plan.sweep_episodes_per_cell
    specs = []
    for channels in plan.channels:
        for rho in plan.grid:
            mapped = not raw_sweep or channels == "both"
            specs += cells.specs(
                SWEEP, "janus", channels, lambda _r, v=rho: v, n_sweep, calibrated=mapped
            )
    if raw_sweep and "both" in plan.channels:
        for rho in plan.grid:
            specs += cells.specs(
                SWEEP_RAW, "janus", "both", lambda _r, v=rho: v, n_sweep, calibrated=False
            )
    return specs


def _baseline_specs(cells: _PairedCells) -> list[EpisodeSpec]:
    """Each scripted baseline in Janus's seat, as configuration ``script:<name>``."""
    specs = []
    for strategy in cells.plan.baselines:
        name = SCRIPTED_PREFIX + strategy
        n = cells.plan.episodes_per_cell
        specs += cells.specs(name, "scripted", "", lambda _r: None, n, strategy)
    return specs


# ---------------------------------------------------------------------------------- play
