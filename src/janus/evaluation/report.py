"""Writing a report directory: ``episodes.csv``, ``summary.json``, ``report.md``, plots.

The Markdown's tables come from :mod:`janus.evaluation.tables`, the figures from
:mod:`janus.evaluation.plots`; both read the typed summary. Everything is written into a
temporary directory beside the target and renamed into place at the end
(:mod:`janus.atomic`), so a report directory is either complete or absent — never
half-written.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from janus.atomic import atomic_directory as shared_atomic_directory
from janus.evaluation.harness import EpisodeRecord
from janus.evaluation.summary_types import EvaluationSummary, RunInfo
from janus.evaluation.tables import (
    ablation_table,
    calibration_table,
    configuration_table,
    curve_table,
    habits_by_opponent_table,
    habits_table,
    opponent_table,
    protocol_table,
    raw_vs_calibrated_table,
    vs_base_table,
)
from janus.rules import RULE_COUNTERS

__all__ = [
    "CSV_COLUMNS",
    "EPISODES_FILE",
    "REPORT_FILE",
    "SUMMARY_FILE",
    "atomic_directory",
    "check_out_dir",
    "render_report",
    "write_episodes_csv",
    "write_summary_json",
]

EPISODES_FILE = "episodes.csv"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"

CSV_COLUMNS = (
    "configuration",
    "kind",
    "channels",
    "requested_rho",
    "janus_role",
    "opponent",
    "held_out",
    "episode_index",
    "seed",
    "first_mover",
    "buyer_max",
    "seller_min",
    "zopa_width",
    "outcome",
    "final_price",
    "achieved_rho",
    "in_zopa",
    "janus_utility",
    "opponent_utility",
    "result",
    "turns",
    "decisions",
    "invalid_actions",
    "opponent_invalid_actions",
    "safety_clamped_offers",
    "safety_refused_accepts",
    "calibrated",
    "dial_rho",
    "outside_reachable",
    *RULE_COUNTERS,
    "repeated_offers",
    "worse_counters",
    "retreats",
    "walked_away",
    "offers",
)


# ------------------------------------------------------------------------------ files


def write_summary_json(summary: EvaluationSummary, path: Path) -> Path:
    """``summary.json``: strict JSON, ``null`` for undefined statistics."""
    return summary.write(path)


def _csv_row(r: EpisodeRecord) -> list[Any]:
    def num(value: float | None) -> Any:
        return "" if value is None else repr(float(value))

    return [
        r.configuration,
        r.kind,
        r.channels,
        "" if r.requested_rho is None else f"{r.requested_rho:.2f}",
        r.janus_role,
        r.opponent,
        int(r.held_out),
        r.episode_index,
        r.seed,
        r.first_mover,
        num(r.buyer_max),
        num(r.seller_min),
        num(r.zopa_width),
        "agreement" if r.agreement else "impasse",
        num(r.final_price),
        num(r.achieved_rho),
        "" if not r.agreement else int(not r.outside_zopa),
        num(r.janus_utility),
        num(r.opponent_utility),
        r.result,
        r.turns,
        r.decisions,
        r.invalid_actions,
        r.opponent_invalid_actions,
        r.safety_clamped_offers,
        r.safety_refused_accepts,
        int(r.calibrated),
        "" if r.dial_rho is None else f"{r.dial_rho:.2f}",
        r.outside_reachable,
        *(getattr(r, counter) for counter in RULE_COUNTERS),
        r.repeated_offers,
        r.worse_counters,
        r.retreats,
        int(r.walked_away),
        r.offers_json(),
    ]


def write_episodes_csv(records: Sequence[EpisodeRecord], path: Path) -> Path:
    """One row per episode (columns: :data:`CSV_COLUMNS`; empty cells for impasse prices)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for record in records:
            writer.writerow(_csv_row(record))
    return Path(path)


def _is_report_dir(path: Path) -> bool:
    return path.is_dir() and (not any(path.iterdir()) or (path / SUMMARY_FILE).is_file())


def check_out_dir(path: Path, overwrite: bool) -> Path:
    """Refuse early (before any episode is played) an output that cannot be written."""
    path = Path(path).expanduser()
    if path.exists():
        if not _is_report_dir(path):
            raise FileExistsError(
                f"refusing to write a report over {path}: it is not an empty directory nor a "
                f"report directory (no {SUMMARY_FILE})"
            )
        if any(path.iterdir()) and not overwrite:
            raise FileExistsError(f"{path} already holds a report; pass overwrite=True")
    return path


def atomic_directory(target: Path, write: Callable[[Path], None], *, overwrite: bool) -> Path:
    """Write a report directory through ``write(tmp)`` and swap it in whole
    (:func:`janus.atomic.atomic_directory`): a failure leaves ``target`` as it was, and only
    an empty directory or an earlier report (with ``overwrite``) is ever replaced."""
    target = check_out_dir(Path(target), overwrite)
    return shared_atomic_directory(
        target, write, replaceable=_is_report_dir, what="report directory"
    )


# ----------------------------------------------------------------------------- report


def _held_out_line(run: RunInfo) -> str:
    check = run.context.held_out_check
    if not check.checked:
        return "- held-out check: training data not found, not checked"
    if check.seen_in_training:
        return (
            f"- **held-out check failed**: {', '.join(check.seen_in_training)} played in the "
            f"training data (`{check.training_data}`)"
        )
    return f"- held-out check: no held-out opponent in the training data (`{check.training_data}`)"


def _header(run: RunInfo) -> list[str]:
    """What was evaluated, how many episodes, against whom, on which domain."""
    context, domain = run.context, run.domain
    return [
        "# Janus evaluation report",
        "",
        f"- adapter: `{context.adapter or '–'}`; agent: {context.agent or '–'}; "
        f"base model: `{context.base_model or '–'}`",
        f"- played with rules {', '.join(context.rules) or 'none'}; price decoding "
        f"{context.price_decoding or 'greedy'}; temperature {context.temperature or 0:g}",
        f"- {run.episodes} episodes, seed {run.seed}; {run.episodes_per_cell} per "
        f"opponent × role × configuration, {run.sweep_episodes_per_cell} per sweep cell; "
        "episodes paired across configurations (same scenario, first mover and opponent seed)",
        f"- opponents ({len(run.opponents)}): held out ({len(run.held_out_opponents)}): "
        f"{', '.join(run.held_out_opponents) or '–'}; in pool "
        f"({len(run.in_pool_opponents)}): {', '.join(run.in_pool_opponents) or '–'}",
        f"- domain: price range {list(domain.price_range)}, BuyerMax ~ "
        f"N({domain.buyer_max_mean:g}, {domain.buyer_max_std:g}), ZOPA width "
        f"{domain.zopa_width}, {domain.max_turns} turns; safety "
        f"{'off' if context.safety is False else 'on'}",
        _held_out_line(run),
        f"- 95% intervals: percentile bootstrap, {run.bootstrap_resamples} seeded resamples",
        "",
    ]


def _validity(summary: EvaluationSummary) -> list[str]:
    safety = summary.safety
    return [
        "## Validity",
        "",
        f"- invalid actions: {summary.invalid_actions} "
        f"(by kind: {summary.invalid_actions_by_kind})",
        f"- agreements outside the ZOPA: {summary.agreements_outside_zopa} "
        f"(by kind: {summary.agreements_outside_zopa_by_kind})",
        f"- safety: {safety.clamped_offers} clamped offers, "
        f"{safety.refused_accepts} refused accepts",
        "- held-out opponents are never used to choose anything: not checkpoints, not the "
        "calibration map, not acceptance rules, not refinement opponents or mix ratios",
        "",
    ]


Table = Callable[[EvaluationSummary], "str | None"]

#: The report's sections in order: title, table (``None``: a figure-only section), note
#: (``{fixed_rho}`` is the ablations' fixed ρ) and the figure inlined after the table.
SECTIONS: tuple[tuple[str, Table | None, str, str | None], ...] = (
    (
        "Calibration",
        calibration_table,
        "Achieved ρ = (price − SellerMin)/(BuyerMax − SellerMin) per agreement. MAE over the grid "
        "= mean over ρ* of |mean achieved − ρ*|; per-episode MAE includes the spread between "
        "opponents; slope/intercept: least squares of achieved on ρ* over agreed episodes. "
        "Means pool the agreed episodes of every opponent and both roles (the design gives "
        "each opponent × role cell the same number of episodes).",
        "calibration",
    ),
    (
        "Raw dial and calibrated dial",
        raw_vs_calibrated_table,
        "The same sweep episodes played on the raw dial and through the adapter's calibration "
        "map (fitted on an in-pool sweep of other episodes; the held-out opponents chose "
        "nothing). The channel ablations below are raw.",
        None,
    ),
    ("Calibration curve", curve_table, "", None),
    (
        "Channel ablations",
        ablation_table,
        "text: the prompt shows ρ*, the gates get {fixed_rho}; "
        "weights: the gates get ρ*, the prompt shows {fixed_rho}.",
        None,
    ),
    (
        "Configurations (all opponents)",
        configuration_table,
        "Utility: normalised surplus of Janus's seat, impasse = 0 (utility (agreed): over "
        "agreements only). W/T/L against the opponent's utility (tie within 1e-6; an impasse "
        "is a tie at 0). Safety c/r: clamped offers / refused accepts. ρ b/s: requested ρ "
        "as buyer / as seller (base: told the Standard values).",
        None,
    ),
    ("Paired difference with the base model", vs_base_table, "", None),
    (
        "The original work's protocol",
        protocol_table,
        "The five configurations with own utility (impasse = 0), agreement, turns and the "
        "shortfall (the own utility a deal exactly at ρ* gives, minus the achieved one), "
        "in-pool and held-out, beside the original's Table 3 (in-pool opponents, Qwen2-7B, "
        "its own domain and opponents: a reference point, not a paired comparison).",
        None,
    ),
    (
        "Acceptance rules and bargaining habits",
        habits_table,
        "Rule interventions (acceptance rules turn the model's counter into an ACCEPT; "
        "no_retreat, concede_on_stall, reciprocate and fresh_offer move it; firm_opening "
        "counts openings decided at the firm end of the dial), offers "
        "equal to the seat's previous offer, counters worse for the seat than the standing "
        "offer, and impasses with an offer inside the reservation once on the table.",
        None,
    ),
    ("Habits of Standard by opponent", habits_by_opponent_table, "", None),
    (
        "Utility by opponent",
        opponent_table,
        "Mean utility (agreement rate); best script: the scripted strategy that did best in "
        "Janus's seat against that opponent.",
        "utility",
    ),
    (
        "Concession curves",
        None,
        "Mean position of Janus's own offers in the ZOPA per turn (0 = SellerMin, "
        "1 = BuyerMax), text + weights, all opponents.",
        "concession",
    ),
)


def render_report(summary: EvaluationSummary, plots: dict[str, Path] | None = None) -> str:
    """``report.md``: every table of the summary (:data:`SECTIONS`), with the plots inlined."""
    plots = plots or {}
    lines = _header(summary.run)
    for title, table, note, figure in SECTIONS:
        note = note.format(fixed_rho=summary.run.ablation_fixed_rho)
        body = table(summary) if table is not None else None
        if table is None and figure not in plots:
            continue
        if body or table is None:
            lines.extend([f"## {title}", "", *([note, ""] if note else [])])
            lines.extend([body, ""] if body else [])
        if figure in plots:
            lines.extend([f"![{figure}]({plots[figure].name})", ""])
    lines.extend(_validity(summary))
    return "\n".join(lines)
