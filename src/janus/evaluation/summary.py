"""From episode records to the typed summary (``summary.json``): calibration, ablations,
per-configuration metrics.

Definitions follow docs/ARCHITECTURE.md ("Evaluation metrics"); the records are those of
:mod:`janus.evaluation.summary_types`. Every row of the per-configuration tables is computed
over the same opponent set (the plan's opponents, both roles, the same paired episodes), and
every confidence interval is a seeded percentile bootstrap.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from janus import __version__
from janus.evaluation.harness import (
    BASE,
    JANUS_CONFIGURATIONS,
    SCRIPTED_PREFIX,
    SWEEP,
    SWEEP_RAW,
    TIE_TOLERANCE,
    EpisodeRecord,
    EvaluationPlan,
)
from janus.evaluation.stats import DEFAULT_RESAMPLES, calibration_stats, mean_ci, subseed
from janus.evaluation.summary_types import (
    FORMAT,
    FORMAT_VERSION,
    SUBSETS,
    CalibrationBlock,
    CalibrationSet,
    ConcessionCurves,
    ConfigurationSummary,
    CurvePoint,
    DomainInfo,
    EpisodeMetrics,
    EvaluationSummary,
    Habits,
    Interval,
    PairedDifference,
    RhoPair,
    RoleCalibration,
    RunContext,
    RunInfo,
    SafetyCounts,
    Timing,
    sum_counters,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SUBSETS",
    "calibration_block",
    "concession_curves",
    "episode_metrics",
    "habit_counts",
    "paired_difference",
    "summarize",
]

ROLES = ("buyer", "seller")
NAN = float("nan")


def _subset(records: Iterable[EpisodeRecord], subset: str) -> list[EpisodeRecord]:
    if subset == "held_out":
        return [r for r in records if r.held_out]
    if subset == "in_pool":
        return [r for r in records if not r.held_out]
    return list(records)


# ------------------------------------------------------------------------------ metrics


def episode_metrics(
    records: Sequence[EpisodeRecord], *, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES
) -> EpisodeMetrics:
    """Agreement rate, utilities, win/tie/loss, turns, invalid actions, safety counts.

    ``utility`` is the mean normalised utility of Janus's seat over all episodes (an impasse
    counts 0), ``utility_agreed`` over agreements only; ``win``/``tie``/``loss`` rates compare
    it with the opponent's (tie within 1e-6; an impasse is a tie at 0). Counts are totals over
    the episodes; ``invalid_action_rate`` is per decision of Janus's seat.
    """
    n = len(records)
    if n == 0:
        return EpisodeMetrics.empty()
    agreed = np.array([r.agreement for r in records], dtype=bool)
    utility = np.array([r.janus_utility for r in records])
    opponent = np.array([r.opponent_utility for r in records])
    achieved = np.array([r.achieved_rho for r in records if r.agreement], dtype=np.float64)

    def interval(values: np.ndarray, tag: str) -> tuple[float, Interval]:
        mean, low, high = mean_ci(values, n_resamples=n_resamples, seed=subseed(seed, tag))
        return mean, Interval(low=low, high=high)

    rate, rate_ci = interval(agreed.astype(np.float64), "agreement")
    u, u_ci = interval(utility, "utility")
    ua, ua_ci = interval(utility[agreed], "utility_agreed")
    counts = sum_counters(EpisodeMetrics, records)
    results = [r.result for r in records]
    return EpisodeMetrics(
        episodes=n,
        agreements=int(agreed.sum()),
        agreement_rate=rate,
        agreement_rate_ci=rate_ci,
        utility=u,
        utility_ci=u_ci,
        utility_agreed=ua,
        utility_agreed_ci=ua_ci,
        opponent_utility=float(opponent.mean()),
        achieved_rho=float(achieved.mean()) if achieved.size else None,
        win_rate=results.count("win") / n,
        tie_rate=results.count("tie") / n,
        loss_rate=results.count("loss") / n,
        turns=float(np.mean([r.turns for r in records])),
        invalid_action_rate=(
            counts["invalid_actions"] / counts["decisions"] if counts["decisions"] else None
        ),
        habits=habit_counts(records),
        **counts,
    )


def habit_counts(records: Sequence[EpisodeRecord]) -> Habits:
    """Acceptance-rule interventions and bargaining habits (see ``harness.offer_habits``)."""
    offers = sum(sum(1 for role, _, _ in r.offers if role == r.janus_role) for r in records)
    counts = sum_counters(Habits, records)
    rate = counts["repeated_offers"] / offers if offers else None
    return Habits(repeated_offer_rate=rate, **counts)


def _pair_key(r: EpisodeRecord) -> tuple[str, str, int]:
    return (r.opponent, r.janus_role, r.episode_index)


def paired_difference(
    records: Sequence[EpisodeRecord],
    reference: Sequence[EpisodeRecord],
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> PairedDifference:
    """Mean per-episode utility difference (records − reference) over paired episodes.

    Episodes pair on (opponent, Janus role, episode index): same scenario, same opponent
    seed. The interval resamples the paired differences.
    """
    ref = {_pair_key(r): r.janus_utility for r in reference}
    diffs = [r.janus_utility - ref[_pair_key(r)] for r in records if _pair_key(r) in ref]
    mean, low, high = mean_ci(diffs, n_resamples=n_resamples, seed=seed)
    return PairedDifference(
        pairs=len(diffs), utility_diff=mean, utility_diff_ci=Interval(low=low, high=high)
    )


# ---------------------------------------------------------------------------- calibration


def _role_calibration(stats: dict[str, Any]) -> RoleCalibration:
    return RoleCalibration(
        agreement_rate=stats["agreement_rate"],
        mae=stats["mae"],
        per_episode_mae=stats["per_episode_mae"],
        spearman=stats["spearman"],
        slope=stats["slope"],
        intercept=stats["intercept"],
        monotonicity_violations=stats["monotonicity_violations"],
        means=tuple(p["mean_achieved"] for p in stats["curve"]),
    )


def calibration_block(
    records: Sequence[EpisodeRecord],
    grid: Sequence[float],
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> CalibrationBlock | None:
    """:func:`calibration_stats` of sweep records, plus a per-role breakdown (``by_role``);
    ``None`` without records."""
    if not records:
        return None

    def stats(rows: Sequence[EpisodeRecord], tag: str) -> dict[str, Any]:
        return calibration_stats(
            [r.requested_rho for r in rows],
            [r.achieved_rho if r.agreement else NAN for r in rows],
            [r.agreement for r in rows],
            grid,
            n_resamples=n_resamples,
            seed=subseed(seed, tag),
        )

    s = stats(records, "all")
    by_role = {}
    for role in ROLES:
        rows = [r for r in records if r.janus_role == role]
        if rows:
            by_role[role] = _role_calibration(stats(rows, role))
    return CalibrationBlock(
        grid=s["grid"],
        curve=tuple(CurvePoint(**p) for p in s["curve"]),
        episodes=s["episodes"],
        agreements=s["agreements"],
        agreement_rate=s["agreement_rate"],
        mae=s["mae"],
        mae_ci=Interval.of(s["mae_ci"]),
        grid_points_used=s["grid_points_used"],
        per_episode_mae=s["per_episode_mae"],
        spearman=s["spearman"],
        slope=s["slope"],
        slope_ci=Interval.of(s["slope_ci"]),
        intercept=s["intercept"],
        monotonicity_violations=s["monotonicity_violations"],
        by_role=by_role,
        opponents=tuple(sorted({r.opponent for r in records})),
    )


def concession_curves(
    records: Sequence[EpisodeRecord], max_turns: int
) -> dict[str, dict[str, list[float]]]:
    """Mean position of Janus's own offers in the ZOPA, per turn, per role and ρ*.

    An offer's position is (price − SellerMin) / (BuyerMax − SellerMin), the ρ an agreement at
    that price would have: comparable across scenarios and with ρ*. ``nan`` where no offer.
    """
    sums: dict[tuple[str, float], np.ndarray] = defaultdict(lambda: np.zeros(max_turns))
    counts: dict[tuple[str, float], np.ndarray] = defaultdict(lambda: np.zeros(max_turns))
    for r in records:
        key = (r.janus_role, float(r.requested_rho))
        width = r.zopa_width
        for role, price, turn in r.offers:
            if role == r.janus_role and 1 <= turn <= max_turns:
                sums[key][turn - 1] += (price - r.seller_min) / width
                counts[key][turn - 1] += 1
    curves: dict[str, dict[str, list[float]]] = {role: {} for role in ROLES}
    for (role, rho), total in sorted(sums.items()):
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / counts[(role, rho)]
        curves[role][f"{rho:.2f}"] = [float(v) for v in mean]
    return curves


# -------------------------------------------------------------------------------- summary


def _by_kind(records: Sequence[EpisodeRecord], attribute: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for r in records:
        totals[r.kind] = totals.get(r.kind, 0) + int(getattr(r, attribute))
    return totals


def _configuration_block(
    rows: Sequence[EpisodeRecord],
    plan: EvaluationPlan,
    name: str,
    seed: int,
    n_resamples: int,
    base_rows: Sequence[EpisodeRecord] | None,
) -> ConfigurationSummary:
    def metrics(subset: Sequence[EpisodeRecord], *tag: Any) -> EpisodeMetrics:
        return episode_metrics(subset, seed=subseed(seed, name, *tag), n_resamples=n_resamples)

    kind = rows[0].kind
    strategy, rho = None, None
    if kind == "scripted":
        strategy = name.removeprefix(SCRIPTED_PREFIX)
    else:
        buyer, seller = JANUS_CONFIGURATIONS["standard" if name == BASE else name]
        rho = RhoPair(buyer=buyer, seller=seller)
    vs_base = None
    if base_rows and name != BASE:
        vs_base = paired_difference(
            rows, base_rows, seed=subseed(seed, name, "vs_base"), n_resamples=n_resamples
        )
    return ConfigurationSummary(
        kind=kind,
        strategy=strategy,
        rho=rho,
        all=metrics(rows),
        held_out=metrics(_subset(rows, "held_out"), "held_out"),
        in_pool=metrics(_subset(rows, "in_pool"), "in_pool"),
        by_role={role: metrics([r for r in rows if r.janus_role == role], role) for role in ROLES},
        vs_base=vs_base,
        by_opponent={
            opponent: metrics([r for r in rows if r.opponent == opponent], "opponent", opponent)
            for opponent in plan.opponents
        },
    )


def _configurations(
    by_config: dict[str, list[EpisodeRecord]], plan: EvaluationPlan, n_resamples: int
) -> dict[str, ConfigurationSummary]:
    """One block per played configuration: the plan's, then the scripted baselines."""
    order = [*plan.configurations, *(SCRIPTED_PREFIX + s for s in plan.baselines)]
    base_rows = by_config.get(BASE)
    seed = subseed(plan.seed, "configuration")
    return {
        name: _configuration_block(by_config[name], plan, name, seed, n_resamples, base_rows)
        for name in order
        if by_config.get(name)
    }


def _run_info(
    plan: EvaluationPlan, context: RunContext, episodes: int, n_resamples: int
) -> RunInfo:
    d = plan.domain
    return RunInfo(
        context=context,
        seed=plan.seed,
        episodes=episodes,
        episodes_per_cell=plan.episodes_per_cell,
        sweep_episodes_per_cell=plan.sweep_episodes_per_cell,
        rho_grid=tuple(plan.grid),
        opponents=tuple(plan.opponents),
        held_out_opponents=tuple(plan.held_out_opponents),
        in_pool_opponents=tuple(plan.in_pool),
        configurations=tuple(plan.configurations),
        scripted_baselines=tuple(plan.baselines),
        channels=tuple(plan.channels),
        ablation_fixed_rho=plan.fixed_rho,
        domain=DomainInfo(
            price_range=(d.price_range.low, d.price_range.high),
            buyer_max_mean=d.buyer_max_mean,
            buyer_max_std=d.buyer_max_std,
            zopa_width=str(d.zopa_width),
            max_turns=d.max_turns,
        ),
        bootstrap_resamples=n_resamples,
        confidence=0.95,
        tie_tolerance=TIE_TOLERANCE,
    )


def _calibrations(
    sweep: Sequence[EpisodeRecord],
    sweep_raw: Sequence[EpisodeRecord],
    plan: EvaluationPlan,
    n_resamples: int,
) -> tuple[CalibrationSet, CalibrationSet | None, dict[str, CalibrationSet]]:
    """The played dial's, the raw dial's (with a map) and the per-channel calibration sets."""

    def blocks(rows: Sequence[EpisodeRecord], tag: str) -> CalibrationSet:
        by_subset = {
            subset: calibration_block(
                _subset(rows, subset),
                plan.grid,
                seed=subseed(plan.seed, "calibration", tag, subset),
                n_resamples=n_resamples,
            )
            for subset in SUBSETS
        }
        return CalibrationSet(**by_subset)

    main = blocks([r for r in sweep if r.channels == "both"], "both")
    raw = blocks(sweep_raw, "raw") if sweep_raw else None
    # The ablations compare the channels of the dial itself, so they are all raw.
    ablations: dict[str, CalibrationSet] = {}
    for channels in plan.channels:
        if channels == "both":
            ablations[channels] = raw if raw is not None else main
        else:
            ablations[channels] = blocks([r for r in sweep if r.channels == channels], channels)
    return main, raw, ablations


def summarize(
    records: Sequence[EpisodeRecord],
    plan: EvaluationPlan,
    *,
    run: RunContext | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seconds: float | None = None,
) -> EvaluationSummary:
    """The whole summary (written as ``summary.json``); ``run`` says what was evaluated."""
    by_config: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for r in records:
        by_config[r.configuration].append(r)
    sweep = by_config.pop(SWEEP, [])
    sweep_raw = by_config.pop(SWEEP_RAW, [])
    main, raw, ablations = _calibrations(sweep, sweep_raw, plan, n_resamples)
    headline = "held_out" if plan.held_out_opponents else "all"

    configurations = _configurations(by_config, plan, n_resamples)
    played = [r for r in sweep if r.channels == "both"]
    n = len(records)
    timing = None
    if seconds is not None:
        timing = Timing(
            seconds=seconds, episodes_per_second=n / seconds if seconds > 0 else math.inf
        )
    return EvaluationSummary(
        janus_version=__version__,
        run=_run_info(plan, run or RunContext(), n, n_resamples),
        headline_set=headline,
        calibration=main.subset(headline),
        calibration_in_pool=main.in_pool,
        calibration_all=main.all,
        calibrated=any(r.calibrated for r in played),
        calibration_raw=raw,
        ablations=ablations,
        configurations=configurations,
        invalid_actions=sum(r.invalid_actions for r in records),
        invalid_actions_by_kind=_by_kind(records, "invalid_actions"),
        agreements_outside_zopa=sum(r.outside_zopa for r in records),
        agreements_outside_zopa_by_kind=_by_kind(records, "outside_zopa"),
        habits={
            kind: habit_counts([r for r in records if r.kind == kind])
            for kind in sorted({r.kind for r in records})
        },
        safety=SafetyCounts(
            clamped_offers=sum(r.safety_clamped_offers for r in records),
            refused_accepts=sum(r.safety_refused_accepts for r in records),
            clamped_offers_by_kind=_by_kind(records, "safety_clamped_offers"),
            refused_accepts_by_kind=_by_kind(records, "safety_refused_accepts"),
        ),
        concession=ConcessionCurves(
            channels="both",
            position="(price - SellerMin) / (BuyerMax - SellerMin) of Janus's own offers",
            turns=tuple(range(1, plan.domain.max_turns + 1)),
            **concession_curves(played, plan.domain.max_turns),
        ),
        timing=timing,
    )
