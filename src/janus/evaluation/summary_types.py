"""The typed ``summary.json``: what an evaluation found, as frozen records.

The report, the plots, ``janus compare`` and the benchmarks read these records by attribute;
:mod:`janus.evaluation.summary` builds them from the episode records. The JSON layout (format
version 4) is the records' fields in order, by the rules of :mod:`janus.evaluation.codec`;
the field-by-field meaning of every number is in docs/ARCHITECTURE.md ("Evaluation metrics").

Extending: a per-episode counter is one line in :class:`Habits` (``name: int = counter()``)
when :class:`~janus.evaluation.harness.EpisodeRecord` has an attribute of that name: it is then
summed into every metrics block (per configuration, subset, role and opponent) and into the
per-kind habits. Any new field changes the file: bump :data:`FORMAT_VERSION` with it, so that
an older Janus refuses the new file in one line instead of misreading it.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Self, TypeVar

from janus.evaluation.codec import FLAT, OMIT_NONE, FormatError, Interval, Record

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SUBSETS",
    "CalibrationBlock",
    "CalibrationSet",
    "ConcessionCurves",
    "ConfigurationSummary",
    "CurvePoint",
    "DomainInfo",
    "EpisodeMetrics",
    "EvaluationSummary",
    "FormatError",
    "Habits",
    "HeldOutCheck",
    "Interval",
    "PairedDifference",
    "RhoPair",
    "RoleCalibration",
    "RunContext",
    "RunInfo",
    "SafetyCounts",
    "Timing",
    "counter",
    "load_summary",
    "sum_counters",
]

FORMAT = "janus-evaluation"
FORMAT_VERSION = 7
#: The opponent sets a calibration or a metrics block is computed over.
SUBSETS = ("held_out", "in_pool", "all")
R = TypeVar("R", bound=Record)


def counter(source: str | None = None) -> Any:
    """A count summed over episodes from the episode record's attribute ``source`` (default:
    the field's own name); :func:`sum_counters` fills every such field of a record."""
    return field(metadata={"counter": source or True})


def sum_counters(cls: type[Record], records: Iterable[Any]) -> dict[str, int]:
    """The totals of ``cls``'s :func:`counter` fields over ``records`` (keyword arguments)."""
    sources = {
        f.name: f.name if f.metadata["counter"] is True else f.metadata["counter"]
        for f in fields(cls)
        if "counter" in f.metadata
    }
    totals = dict.fromkeys(sources, 0)
    for r in records:
        for name, attribute in sources.items():
            totals[name] += int(getattr(r, attribute))
    return totals


def _nothing(cls: type[R]) -> R:
    """``cls`` over no episodes: counts 0, statistics ``None``, intervals undefined, nested
    records the same (so a new field needs no line here)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        tp = hints[f.name]
        if tp is int:
            values[f.name] = 0
        elif tp is Interval:
            values[f.name] = Interval(low=None, high=None)
        elif isinstance(tp, type) and issubclass(tp, Record):
            values[f.name] = _nothing(tp)
        else:
            values[f.name] = None
    return cls(**values)


# ---------------------------------------------------------------------------- calibration


@dataclass(frozen=True, kw_only=True)
class CurvePoint(Record):
    """One requested ρ* of a calibration sweep: its episodes and the mean achieved ρ over
    its agreements (``None`` without agreements), with that mean's interval."""

    rho: float
    episodes: int
    agreements: int
    agreement_rate: float | None
    mean_achieved: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def ci(self) -> Interval:
        return Interval(low=self.ci_low, high=self.ci_high)


@dataclass(frozen=True, kw_only=True)
class RoleCalibration(Record):
    """The calibration figures of one role (``means``: the curve's mean achieved ρ per ρ*)."""

    agreement_rate: float | None
    mae: float | None
    per_episode_mae: float | None
    spearman: float | None
    slope: float | None
    intercept: float | None
    monotonicity_violations: int
    means: tuple[float | None, ...]


@dataclass(frozen=True, kw_only=True)
class CalibrationBlock(Record):
    """A sweep over one opponent set: the curve and how far it is from achieved = requested
    (:func:`janus.evaluation.stats.calibration_stats`), per role too, and which opponents."""

    grid: tuple[float, ...]
    curve: tuple[CurvePoint, ...]
    episodes: int
    agreements: int
    agreement_rate: float | None
    mae: float | None
    mae_ci: Interval
    grid_points_used: int
    per_episode_mae: float | None
    spearman: float | None
    slope: float | None
    slope_ci: Interval
    intercept: float | None
    monotonicity_violations: int
    by_role: dict[str, RoleCalibration]
    opponents: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class CalibrationSet(Record):
    """One sweep's calibration per opponent set (``None``: no such opponents)."""

    held_out: CalibrationBlock | None
    in_pool: CalibrationBlock | None
    all: CalibrationBlock | None

    def subset(self, name: str) -> CalibrationBlock | None:
        """The block of ``name``, one of :data:`SUBSETS`."""
        if name not in SUBSETS:
            raise ValueError(f"unknown opponent set {name!r}; choose from {', '.join(SUBSETS)}")
        return getattr(self, name)

    def present(self) -> list[tuple[str, CalibrationBlock]]:
        """``(subset, block)`` for the sets that have a block, in :data:`SUBSETS` order."""
        return [(name, block) for name in SUBSETS if (block := self.subset(name)) is not None]


# ------------------------------------------------------------------------------- metrics


@dataclass(frozen=True, kw_only=True)
class Habits(Record):
    """Acceptance-rule interventions and bargaining habits of Janus's seat (counts summed
    over episodes; ``repeated_offer_rate`` per own offer)."""

    rule_accept_better: int = counter()
    rule_accept_last_turn: int = counter()
    rule_accept_final_turn: int = counter()
    rule_concede_on_stall: int = counter()
    rule_reciprocate: int = counter()
    rule_no_retreat: int = counter()
    rule_fresh_offer: int = counter()
    rule_firm_opening: int = counter()
    repeated_offers: int = counter()
    repeated_offer_rate: float | None
    worse_counters: int = counter()
    retreats: int = counter()
    walked_away: int = counter()
    outside_reachable: int = counter()


@dataclass(frozen=True, kw_only=True)
class EpisodeMetrics(Record):
    """Outcomes of a set of episodes from Janus's seat: agreement, utility (impasse = 0) and
    win/tie/loss with intervals, turns, validity and safety counts, habits.

    A block of no episodes (no held-out opponents, say) has every rate ``None`` and every
    count 0, and is written as ``{"episodes": 0}``.
    """

    episodes: int
    agreements: int
    agreement_rate: float | None
    agreement_rate_ci: Interval
    utility: float | None
    utility_ci: Interval
    utility_agreed: float | None
    utility_agreed_ci: Interval
    opponent_utility: float | None
    achieved_rho: float | None
    win_rate: float | None
    tie_rate: float | None
    loss_rate: float | None
    turns: float | None
    decisions: int = counter()
    invalid_actions: int = counter()
    invalid_action_rate: float | None
    safety_clamped_offers: int = counter()
    safety_refused_accepts: int = counter()
    agreements_outside_zopa: int = counter("outside_zopa")
    habits: Habits = field(metadata=FLAT)

    @classmethod
    def empty(cls) -> EpisodeMetrics:
        return _nothing(cls)

    def compact_json(self) -> dict[str, Any] | None:
        return {"episodes": 0} if self.episodes == 0 else None

    @classmethod
    def from_compact_json(cls, data: Mapping[str, Any]) -> Self | None:
        return _nothing(cls) if data.get("episodes") == 0 else None


@dataclass(frozen=True, kw_only=True)
class PairedDifference(Record):
    """Mean utility difference with the base model over paired episodes."""

    pairs: int
    utility_diff: float | None
    utility_diff_ci: Interval


@dataclass(frozen=True, kw_only=True)
class RhoPair(Record):
    """The ρ a configuration requests as buyer and as seller."""

    buyer: float
    seller: float


@dataclass(frozen=True, kw_only=True)
class ConfigurationSummary(Record):
    """One configuration (a ρ pair for Janus, the base model, or a scripted strategy in
    Janus's seat) over the plan's opponents, then split by opponent set, role and opponent."""

    kind: str
    strategy: str | None = field(default=None, metadata=OMIT_NONE)  # scripted configurations only
    rho: RhoPair | None  # None for a scripted configuration
    all: EpisodeMetrics = field(metadata=FLAT)
    held_out: EpisodeMetrics
    in_pool: EpisodeMetrics
    by_role: dict[str, EpisodeMetrics]
    vs_base: PairedDifference | None = field(
        default=None, metadata=OMIT_NONE
    )  # when the base model was played too
    by_opponent: dict[str, EpisodeMetrics]

    def subset(self, name: str) -> EpisodeMetrics:
        """The metrics over ``name``, one of :data:`SUBSETS`."""
        if name not in SUBSETS:
            raise ValueError(f"unknown opponent set {name!r}; choose from {', '.join(SUBSETS)}")
        return getattr(self, name)


# ---------------------------------------------------------------------------- the run


@dataclass(frozen=True, kw_only=True)
class HeldOutCheck(Record):
    """Whether the held-out opponents were looked for in the training data, and found."""

    checked: bool = False
    training_data: str | None = None
    seen_in_training: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RunContext(Record):
    """What was evaluated and how it was played (from :func:`janus.evaluation.evaluate`;
    ``None``: not known to the caller of :func:`~janus.evaluation.summary.summarize`)."""

    adapter: str | None = None
    base_model: str | None = None
    agent: str | None = None
    base_agent: str | None = None
    safety: bool | None = None
    temperature: float | None = None
    price_decoding: str | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int | None = None
    threads: int | None = None
    held_out_check: HeldOutCheck = HeldOutCheck()
    rules: tuple[str, ...] = ()
    #: The calibration map's provenance (opponents, seed, reachable range, fit details).
    calibration_map: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class DomainInfo(Record):
    price_range: tuple[float, ...]
    buyer_max_mean: float
    buyer_max_std: float
    zopa_width: str
    max_turns: int


@dataclass(frozen=True, kw_only=True)
class RunInfo(Record):
    """The evaluation's context and its plan: seed, sizes, grid, opponents, configurations."""

    context: RunContext = field(metadata=FLAT)
    seed: int
    episodes: int
    episodes_per_cell: int
    sweep_episodes_per_cell: int
    rho_grid: tuple[float, ...]
    opponents: tuple[str, ...]
    held_out_opponents: tuple[str, ...]
    in_pool_opponents: tuple[str, ...]
    configurations: tuple[str, ...]
    scripted_baselines: tuple[str, ...]
    channels: tuple[str, ...]
    ablation_fixed_rho: float
    domain: DomainInfo
    bootstrap_resamples: int
    confidence: float
    tie_tolerance: float


# ------------------------------------------------------------------------ the summary


@dataclass(frozen=True, kw_only=True)
class SafetyCounts(Record):
    """Safety interventions over every episode, in total and by kind (janus/base/scripted)."""

    clamped_offers: int
    refused_accepts: int
    clamped_offers_by_kind: dict[str, int]
    refused_accepts_by_kind: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class ConcessionCurves(Record):
    """Mean position of Janus's own offers in the ZOPA per turn, per role and ρ* (the keys:
    ρ* with two decimals; ``None`` at a turn without offers)."""

    channels: str
    position: str
    turns: tuple[int, ...]
    buyer: dict[str, tuple[float | None, ...]]
    seller: dict[str, tuple[float | None, ...]]

    def of(self, role: str) -> dict[str, tuple[float | None, ...]]:
        if role not in ("buyer", "seller"):
            raise ValueError(f"unknown role {role!r}")
        return getattr(self, role)


@dataclass(frozen=True, kw_only=True)
class Timing(Record):
    seconds: float
    episodes_per_second: float | None


@dataclass(frozen=True, kw_only=True)
class EvaluationSummary(Record):
    """The whole ``summary.json``.

    ``calibration`` is the headline block (the played dial on ``headline_set``: the held-out
    opponents when there are any); ``calibration_raw`` the raw dial on the same episodes when
    the agent had a calibration map; ``ablations`` the raw dial per channel.
    """

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    janus_version: str
    run: RunInfo
    headline_set: str
    calibration: CalibrationBlock | None
    calibration_in_pool: CalibrationBlock | None
    calibration_all: CalibrationBlock | None
    calibrated: bool
    calibration_raw: CalibrationSet | None
    ablations: dict[str, CalibrationSet]
    configurations: dict[str, ConfigurationSummary]
    invalid_actions: int
    invalid_actions_by_kind: dict[str, int]
    agreements_outside_zopa: int
    agreements_outside_zopa_by_kind: dict[str, int]
    habits: dict[str, Habits]
    safety: SafetyCounts
    concession: ConcessionCurves
    timing: Timing | None = field(default=None, metadata=OMIT_NONE)

    @property
    def played(self) -> CalibrationSet:
        """The played dial's calibration by opponent set (calibrated when there was a map)."""
        held = self.calibration if self.headline_set == "held_out" else None
        return CalibrationSet(
            held_out=held, in_pool=self.calibration_in_pool, all=self.calibration_all
        )

    @classmethod
    def from_json(cls, data: Any, *, source: str = "<json>") -> Self:
        """Read a summary, refusing another format or version before reading any field."""
        if not isinstance(data, dict):
            raise FormatError(f"{source}: not a JSON object")
        if data.get("format") != FORMAT:
            raise FormatError(
                f"{source}: format is {data.get('format')!r}, not {FORMAT!r} "
                "(not a janus evaluate summary)"
            )
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise FormatError(
                f"{source}: format_version is {version!r}; this Janus reads version "
                f"{FORMAT_VERSION} (the file was written by janus {data.get('janus_version')})"
            )
        return super().from_json(data, source=source)

    def write(self, path: str | Path) -> Path:
        """Write strict JSON (``null`` for undefined statistics) to ``path``."""
        text = json.dumps(self.to_json(), indent=2, ensure_ascii=False, allow_nan=False)
        Path(path).write_text(text + "\n", encoding="utf-8")
        return Path(path)


def load_summary(path: str | Path) -> EvaluationSummary:
    """Read a ``summary.json`` (or a report directory's), checked; one-line errors."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "summary.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (not a janus evaluate report)") from None
    except json.JSONDecodeError as error:
        raise FormatError(f"{path}: not valid JSON ({error})") from None
    return EvaluationSummary.from_json(data, source=str(path))
