"""From episode records to ``summary.json``: calibration, ablations, per-configuration metrics.

Definitions follow docs/ARCHITECTURE.md ("Evaluation metrics"). Every row of the per-configuration
tables is computed over the same opponent set (the plan's opponents, both roles, the same
paired episodes), and every confidence interval is a seeded percentile bootstrap.
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

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SUBSETS",
    "calibration_block",
    "concession_curves",
    "episode_metrics",
    "paired_difference",
    "summarize",
]

FORMAT = "janus-evaluation"
FORMAT_VERSION = 1
SUBSETS = ("held_out", "in_pool", "all")
ROLES = ("buyer", "seller")
NAN = float("nan")


def _subset(records: Iterable[EpisodeRecord], subset: str) -> list[EpisodeRecord]:
    if subset == "held_out":
        return [r for r in records if r.held_out]
    if subset == "in_pool":
        return [r for r in records if not r.held_out]
    return list(records)


def _ci(low: float, high: float) -> list[float]:
    return [low, high]


# ------------------------------------------------------------------------------ metrics


def episode_metrics(
    records: Sequence[EpisodeRecord], *, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES
) -> dict[str, Any]:
    """Agreement rate, utilities, win/tie/loss, turns, invalid actions, safety counts.

    ``utility`` is the mean normalised utility of Janus's seat over all episodes (an impasse
    counts 0), ``utility_agreed`` over agreements only; ``win``/``tie``/``loss`` rates compare
    it with the opponent's (tie within 1e-6; an impasse is a tie at 0). Counts are totals over
    the episodes; ``invalid_action_rate`` is per decision of Janus's seat.
    """
    n = len(records)
    if n == 0:
        return {"episodes": 0}
    agreed = np.array([r.agreement for r in records], dtype=bool)
    utility = np.array([r.janus_utility for r in records])
    opponent = np.array([r.opponent_utility for r in records])
    achieved = np.array([r.achieved_rho for r in records if r.agreement], dtype=np.float64)
    rate, rate_lo, rate_hi = mean_ci(
        agreed.astype(np.float64), n_resamples=n_resamples, seed=subseed(seed, "agreement")
    )
    u, u_lo, u_hi = mean_ci(utility, n_resamples=n_resamples, seed=subseed(seed, "utility"))
    ua, ua_lo, ua_hi = mean_ci(
        utility[agreed], n_resamples=n_resamples, seed=subseed(seed, "utility_agreed")
    )
    decisions = sum(r.decisions for r in records)
    invalid = sum(r.invalid_actions for r in records)
    results = [r.result for r in records]
    return {
        "episodes": n,
        "agreements": int(agreed.sum()),
        "agreement_rate": rate,
        "agreement_rate_ci": _ci(rate_lo, rate_hi),
        "utility": u,
        "utility_ci": _ci(u_lo, u_hi),
        "utility_agreed": ua,
        "utility_agreed_ci": _ci(ua_lo, ua_hi),
        "opponent_utility": float(opponent.mean()),
        "achieved_rho": float(achieved.mean()) if achieved.size else NAN,
        "win_rate": results.count("win") / n,
        "tie_rate": results.count("tie") / n,
        "loss_rate": results.count("loss") / n,
        "turns": float(np.mean([r.turns for r in records])),
        "decisions": decisions,
        "invalid_actions": invalid,
        "invalid_action_rate": invalid / decisions if decisions else NAN,
        "safety_clamped_offers": sum(r.safety_clamped_offers for r in records),
        "safety_refused_accepts": sum(r.safety_refused_accepts for r in records),
        "agreements_outside_zopa": sum(r.outside_zopa for r in records),
        **habit_counts(records),
    }


def habit_counts(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """Acceptance-rule interventions and bargaining habits (see ``harness.offer_habits``)."""
    offers = sum(sum(1 for role, _, _ in r.offers if role == r.janus_role) for r in records)
    repeated = sum(r.repeated_offers for r in records)
    return {
        "rule_accept_better": sum(r.rule_accept_better for r in records),
        "rule_accept_last_turn": sum(r.rule_accept_last_turn for r in records),
        "repeated_offers": repeated,
        "repeated_offer_rate": repeated / offers if offers else NAN,
        "worse_counters": sum(r.worse_counters for r in records),
        "walked_away": sum(r.walked_away for r in records),
        "outside_reachable": sum(r.outside_reachable for r in records),
    }


def _pair_key(r: EpisodeRecord) -> tuple[str, str, int]:
    return (r.opponent, r.janus_role, r.episode_index)


def paired_difference(
    records: Sequence[EpisodeRecord],
    reference: Sequence[EpisodeRecord],
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> dict[str, Any]:
    """Mean per-episode utility difference (records − reference) over paired episodes.

    Episodes pair on (opponent, Janus role, episode index): same scenario, same opponent
    seed. The interval resamples the paired differences.
    """
    ref = {_pair_key(r): r.janus_utility for r in reference}
    diffs = [r.janus_utility - ref[_pair_key(r)] for r in records if _pair_key(r) in ref]
    mean, low, high = mean_ci(diffs, n_resamples=n_resamples, seed=seed)
    return {"pairs": len(diffs), "utility_diff": mean, "utility_diff_ci": _ci(low, high)}


# ---------------------------------------------------------------------------- calibration


def calibration_block(
    records: Sequence[EpisodeRecord],
    grid: Sequence[float],
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> dict[str, Any] | None:
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

    block = stats(records, "all")
    by_role = {}
    for role in ROLES:
        rows = [r for r in records if r.janus_role == role]
        if not rows:
            continue
        s = stats(rows, role)
        by_role[role] = {
            key: s[key]
            for key in (
                "agreement_rate",
                "mae",
                "per_episode_mae",
                "spearman",
                "slope",
                "intercept",
                "monotonicity_violations",
            )
        }
        by_role[role]["means"] = [p["mean_achieved"] for p in s["curve"]]
    block["by_role"] = by_role
    block["opponents"] = sorted({r.opponent for r in records})
    return block


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
) -> dict[str, Any]:
    def metrics(subset: Sequence[EpisodeRecord], *tag: Any) -> dict[str, Any]:
        return episode_metrics(subset, seed=subseed(seed, name, *tag), n_resamples=n_resamples)

    kind = rows[0].kind
    block: dict[str, Any] = {"kind": kind}
    if kind == "scripted":
        block["strategy"] = name.removeprefix(SCRIPTED_PREFIX)
        block["rho"] = None
    else:
        buyer, seller = JANUS_CONFIGURATIONS["standard" if name == BASE else name]
        block["rho"] = {"buyer": buyer, "seller": seller}
    block.update(metrics(rows))
    for subset in ("held_out", "in_pool"):
        block[subset] = metrics(_subset(rows, subset), subset)
    block["by_role"] = {
        role: metrics([r for r in rows if r.janus_role == role], role) for role in ROLES
    }
    if base_rows and name != BASE:
        block["vs_base"] = paired_difference(
            rows, base_rows, seed=subseed(seed, name, "vs_base"), n_resamples=n_resamples
        )
    block["by_opponent"] = {
        opponent: metrics([r for r in rows if r.opponent == opponent], "opponent", opponent)
        for opponent in plan.opponents
    }
    return block


def summarize(
    records: Sequence[EpisodeRecord],
    plan: EvaluationPlan,
    *,
    run: dict[str, Any] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seconds: float | None = None,
) -> dict[str, Any]:
    """The whole ``summary.json`` (see the module docstring of :mod:`janus.evaluation`)."""
    seed = plan.seed
    by_config: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for r in records:
        by_config[r.configuration].append(r)
    sweep = by_config.pop(SWEEP, [])
    sweep_raw = by_config.pop(SWEEP_RAW, [])

    headline = "held_out" if plan.held_out_opponents else "all"

    def blocks(rows: Sequence[EpisodeRecord], tag: str) -> dict[str, Any]:
        return {
            subset: calibration_block(
                _subset(rows, subset),
                plan.grid,
                seed=subseed(seed, "calibration", tag, subset),
                n_resamples=n_resamples,
            )
            for subset in SUBSETS
        }

    main = blocks([r for r in sweep if r.channels == "both"], "both")
    raw = blocks(sweep_raw, "raw") if sweep_raw else None
    # The ablations compare the channels of the dial itself, so they are all raw.
    ablations: dict[str, dict[str, Any]] = {}
    for channels in plan.channels:
        if channels == "both":
            ablations[channels] = raw if raw is not None else main
        else:
            ablations[channels] = blocks([r for r in sweep if r.channels == channels], channels)

    order = [*plan.configurations, *(SCRIPTED_PREFIX + s for s in plan.baselines)]
    base_rows = by_config.get(BASE)
    configurations = {
        name: _configuration_block(
            by_config[name], plan, name, subseed(seed, "configuration"), n_resamples, base_rows
        )
        for name in order
        if by_config.get(name)
    }

    d = plan.domain
    n = len(records)
    summary: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "janus_version": __version__,
        "run": {
            **(run or {}),
            "seed": plan.seed,
            "episodes": n,
            "episodes_per_cell": plan.episodes_per_cell,
            "sweep_episodes_per_cell": plan.sweep_episodes_per_cell,
            "rho_grid": list(plan.grid),
            "opponents": list(plan.opponents),
            "held_out_opponents": list(plan.held_out_opponents),
            "in_pool_opponents": list(plan.in_pool),
            "configurations": list(plan.configurations),
            "scripted_baselines": list(plan.baselines),
            "channels": list(plan.channels),
            "ablation_fixed_rho": plan.fixed_rho,
            "domain": {
                "price_range": [d.price_range.low, d.price_range.high],
                "buyer_max_mean": d.buyer_max_mean,
                "buyer_max_std": d.buyer_max_std,
                "zopa_width": str(d.zopa_width),
                "max_turns": d.max_turns,
            },
            "bootstrap_resamples": n_resamples,
            "confidence": 0.95,
            "tie_tolerance": TIE_TOLERANCE,
        },
        "headline_set": headline,
        "calibration": main.get(headline),
        "calibration_in_pool": main.get("in_pool"),
        "calibration_all": main.get("all"),
        "calibrated": any(r.calibrated for r in sweep if r.channels == "both"),
        "calibration_raw": raw,
        "ablations": ablations,
        "configurations": configurations,
        "invalid_actions": sum(r.invalid_actions for r in records),
        "invalid_actions_by_kind": _by_kind(records, "invalid_actions"),
        "agreements_outside_zopa": sum(r.outside_zopa for r in records),
        "agreements_outside_zopa_by_kind": _by_kind(records, "outside_zopa"),
        "habits": {
            kind: habit_counts([r for r in records if r.kind == kind])
            for kind in sorted({r.kind for r in records})
        },
        "safety": {
            "clamped_offers": sum(r.safety_clamped_offers for r in records),
            "refused_accepts": sum(r.safety_refused_accepts for r in records),
            "clamped_offers_by_kind": _by_kind(records, "safety_clamped_offers"),
            "refused_accepts_by_kind": _by_kind(records, "safety_refused_accepts"),
        },
        "concession": {
            "channels": "both",
            "position": "(price - SellerMin) / (BuyerMax - SellerMin) of Janus's own offers",
            "turns": list(range(1, d.max_turns + 1)),
            **concession_curves([r for r in sweep if r.channels == "both"], d.max_turns),
        },
    }
    if seconds is not None:
        summary["timing"] = {
            "seconds": seconds,
            "episodes_per_second": n / seconds if seconds > 0 else math.inf,
        }
    return summary
