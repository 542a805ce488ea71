"""The NegMAS part of an evaluation's report (``negmas.json``, a report.md section).

Pooled numbers (calibration over the NegMAS opponents, configurations, baselines) are the
ordinary summary's: in the ``negmas`` preset the NegMAS negotiators are the held-out set.
This block adds what the ordinary one does not break down: calibration per opponent, and the
opponents that acted against their own interest. A side is *irrational* in an episode when it
offers past its own reservation, or closes a deal past it (its normalised utility < 0, so the
deal is outside the ZOPA); such deals stay in every metric as played (achieved ρ < 0 or > 1),
and are listed here. This module imports no NegMAS: it reads records only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from janus.evaluation.harness import SCRIPTED_PREFIX, SWEEP, EpisodeRecord, EvaluationPlan
from janus.evaluation.summary import calibration_block
from janus.integrations.negmas import is_negmas_name

__all__ = ["NEGMAS_FILE", "irrational_offers", "negmas_summary", "render_section", "write_json"]

#: The NegMAS block of a report directory, beside ``summary.json`` (whose typed format it
#: leaves alone).
NEGMAS_FILE = "negmas.json"

#: The irrational deals listed in report.md (all of them are in summary.json).
REPORT_DEALS = 12


def _reservation(r: EpisodeRecord, role: str) -> float:
    return r.buyer_max if role == "buyer" else r.seller_min


def irrational_offers(r: EpisodeRecord, role: str) -> int:
    """Offers of ``role`` past its own reservation in one episode."""
    limit = _reservation(r, role)
    past = (lambda p: p > limit) if role == "buyer" else (lambda p: p < limit)
    return sum(1 for who, price, _ in r.offers if who == role and past(price))


def _deal(r: EpisodeRecord, side: str) -> dict[str, Any]:
    role = r.janus_role if side == "seat" else ("seller" if r.janus_role == "buyer" else "buyer")
    return {
        "configuration": r.configuration,
        "opponent": r.opponent,
        "janus_role": r.janus_role,
        "episode_index": r.episode_index,
        "seed": r.seed,
        "irrational_side": side,
        "final_price": r.final_price,
        "reservation": _reservation(r, role),
        "achieved_rho": r.achieved_rho,
    }


def _opponent_block(
    rows: Sequence[EpisodeRecord], plan: EvaluationPlan, seed: int, n_resamples: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sweep = [r for r in rows if r.configuration == SWEEP and r.channels == "both"]
    block: dict[str, Any] = {"episodes": len(rows)}
    calibration = calibration_block(sweep, plan.grid, seed=seed, n_resamples=n_resamples)
    if calibration is not None:
        block["calibration"] = {
            key: getattr(calibration, key)
            for key in ("mae", "per_episode_mae", "spearman", "slope", "agreement_rate")
        }
        block["calibration"]["agreement_by_rho"] = {
            f"{p.rho:.2f}": p.agreement_rate for p in calibration.curve
        }
    opponent_role = {"buyer": "seller", "seller": "buyer"}
    block["irrational_offers"] = sum(
        irrational_offers(r, opponent_role[r.janus_role]) for r in rows
    )
    deals = [r for r in rows if r.agreement and r.opponent_utility < 0]
    block["deals_past_own_reservation"] = len(deals)
    block["irrational_episodes"] = sum(
        1
        for r in rows
        if (r.agreement and r.opponent_utility < 0)
        or irrational_offers(r, opponent_role[r.janus_role])
    )
    block["irrational"] = block["irrational_episodes"] > 0
    return block, [_deal(r, "opponent") for r in deals]


def negmas_summary(
    records: Sequence[EpisodeRecord], plan: EvaluationPlan, *, n_resamples: int = 1000
) -> dict[str, Any] | None:
    """The ``negmas`` block of ``summary.json``; ``None`` when no NegMAS negotiator played."""
    opponents = [o for o in plan.opponents if is_negmas_name(o)]
    seats = [b for b in plan.baselines if is_negmas_name(b)]
    if not opponents and not seats:
        return None
    by_opponent, deals = {}, []
    for i, opponent in enumerate(opponents):
        rows = [r for r in records if r.opponent == opponent]
        by_opponent[opponent], found = _opponent_block(rows, plan, plan.seed + i, n_resamples)
        deals.extend(found)
    in_seat = {}
    for strategy in seats:
        rows = [r for r in records if r.configuration == SCRIPTED_PREFIX + strategy]
        bad = [r for r in rows if r.agreement and r.janus_utility < 0]
        in_seat[strategy] = {
            "episodes": len(rows),
            "irrational_offers": sum(irrational_offers(r, r.janus_role) for r in rows),
            "deals_past_own_reservation": len(bad),
        }
        deals.extend(_deal(r, "seat") for r in bad)
    return {
        "opponents": by_opponent,
        "in_janus_seat": in_seat,
        "irrational_opponents": [o for o, b in by_opponent.items() if b["irrational"]],
        "irrational_deals": deals,
        "protocol": "SAOMechanism(n_steps=max_turns, one_offer_per_step=True), integer price "
        "issue over the public range, affine utilities with reserved values at the reservations",
    }


def _f(value: Any, digits: int = 3) -> str:
    if value is None or value != value:  # None or nan
        return "–"
    return f"{value:.{digits}f}"


def _plain(value: Any) -> Any:
    """JSON-ready: NaN → null, tuples → lists (the rule of ``summary.json``)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(block: dict[str, Any] | None, directory: Path) -> Path | None:
    """``negmas.json`` in a report directory (being written atomically by the caller)."""
    if block is None:
        return None
    path = Path(directory) / NEGMAS_FILE
    path.write_text(json.dumps(_plain(block), indent=2) + "\n", encoding="utf-8")
    return path


def render_section(block: dict[str, Any] | None, summary: Any) -> str:
    """Markdown for report.md: per NegMAS opponent, then the irrational deals."""
    if not block:
        return ""
    configuration = summary.configurations.get("standard")
    standard = configuration.by_opponent if configuration is not None else {}
    lines = [
        "## NegMAS negotiators",
        "",
        f"Protocol: {block['protocol']}. Per opponent: the calibration sweep against it, the "
        "Standard configuration's utility (agreement rate), and whether it acted against its "
        "own interest (offers or deals past its own reservation; such deals are kept, not "
        "clipped).",
        "",
        "| opponent | MAE | slope | Spearman | agreement per ρ* (0 → 1) | Standard utility "
        "(agreement) | irrational offers | deals past its reservation |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, b in block["opponents"].items():
        c = b.get("calibration", {})
        agree = " ".join(_f(v, 2) for v in c.get("agreement_by_rho", {}).values()) or "–"
        m = standard.get(name)
        utility, agreement = (None, None) if m is None else (m.utility, m.agreement_rate)
        flag = " ⚠" if b["irrational"] else ""
        lines.append(
            f"| {name.removeprefix('negmas:')}{flag} | {_f(c.get('mae'))} | {_f(c.get('slope'), 2)}"
            f" | {_f(c.get('spearman'), 2)} | {agree} | {_f(utility)} "
            f"({_f(agreement, 2)}) | {b['irrational_offers']} | "
            f"{b['deals_past_own_reservation']} |"
        )
    if block["in_janus_seat"]:
        lines += [
            "",
            "NegMAS negotiators in Janus's seat: offers / deals past their own reservation: "
            + ", ".join(
                f"{k.removeprefix('negmas:')} {v['irrational_offers']} / "
                f"{v['deals_past_own_reservation']}"
                for k, v in block["in_janus_seat"].items()
            ),
        ]
    deals = block["irrational_deals"]
    if deals:
        lines += [
            "",
            f"Deals past a side's own reservation: {len(deals)} (first {REPORT_DEALS} below; "
            f"all in {NEGMAS_FILE}, `irrational_deals`).",
            "",
            "| configuration | opponent | Janus role | episode | irrational side | price | "
            "its reservation | achieved ρ |",
            "|---|---|---|---:|---|---:|---:|---:|",
        ]
        for d in deals[:REPORT_DEALS]:
            lines.append(
                f"| {d['configuration']} | {d['opponent'].removeprefix('negmas:')} | "
                f"{d['janus_role']} | {d['episode_index']} | {d['irrational_side']} | "
                f"{_f(d['final_price'], 0)} | {_f(d['reservation'], 1)} | "
                f"{_f(d['achieved_rho'], 2)} |"
            )
    return "\n".join(lines) + "\n"
