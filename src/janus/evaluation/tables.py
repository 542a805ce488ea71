"""The report's tables, from the typed summary: Markdown pipe tables that also read well as
plain text (``janus evaluate`` prints a few of them, ``report.md`` holds them all).

Every table is a function of an :class:`~janus.evaluation.summary_types.EvaluationSummary`
returning the table's text, or ``None`` when the summary has nothing for it (no sweep, no
scripted baseline, ...), so that the report leaves the section out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from janus.evaluation.harness import SCRIPTED_PREFIX
from janus.evaluation.summary_types import (
    SUBSETS,
    CalibrationBlock,
    EvaluationSummary,
    Interval,
)
from janus.rules import ACCEPT_RULES, COUNTER_RULES, RULE_COUNTERS, RULE_NAMES, rule_total

__all__ = [
    "PUBLISHED_TABLE_3",
    "SUBSET_NAMES",
    "fmt",
    "headline_table",
    "markdown_table",
    "with_ci",
]

SUBSET_NAMES = {"held_out": "held-out", "in_pool": "in-pool", "all": "all"}


def fmt(value: float | int | str | None, digits: int = 3) -> str:
    """A cell: ``–`` for an undefined value, ``digits`` decimals for a float, never ``-0.000``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        text = f"{value:.{digits}f}"
        return text.lstrip("-") if float(text) == 0.0 else text
    return str(value)


def with_ci(value: float | None, ci: Interval | None, digits: int = 3) -> str:
    """``value [low, high]``, or the value alone when the interval is undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if ci is None or not ci.defined:
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(ci.low, digits)}, {fmt(ci.high, digits)}]"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A Markdown pipe table, padded so that it also reads well as plain text; ``align`` has
    one ``l`` or ``r`` per column (default: first left, the rest right)."""
    cells = [list(headers), *[list(map(str, r)) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.ljust(w) if a == "l" else cell.rjust(w)
            for cell, w, a in zip(row, widths, align, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = "|".join(
        ":" + "-" * (w + 1) if a == "l" else "-" * (w + 1) + ":"
        for w, a in zip(widths, align, strict=True)
    )
    return "\n".join([line(cells[0]), f"|{rule}|", *(line(r) for r in cells[1:])])


def _held(summary: EvaluationSummary, opponent: str) -> str:
    return opponent + (" *" if opponent in summary.run.held_out_opponents else "")


# ----------------------------------------------------------------------- calibration


def calibration_table(summary: EvaluationSummary) -> str | None:
    present = summary.played.present()
    if not present:
        return None
    rows = [
        ["MAE over the grid [95% CI]", *(with_ci(b.mae, b.mae_ci) for _, b in present)],
        ["per-episode MAE", *(fmt(b.per_episode_mae) for _, b in present)],
        ["Spearman (ρ*, mean achieved)", *(fmt(b.spearman) for _, b in present)],
        ["slope [95% CI]", *(with_ci(b.slope, b.slope_ci) for _, b in present)],
        ["intercept", *(fmt(b.intercept) for _, b in present)],
        ["monotonicity violations", *(fmt(b.monotonicity_violations) for _, b in present)],
        ["agreement rate", *(fmt(b.agreement_rate) for _, b in present)],
        ["agreed / episodes", *(f"{b.agreements}/{b.episodes}" for _, b in present)],
    ]
    head = summary.headline_set
    headers = [
        "calibration",
        *(SUBSET_NAMES[k] + (" (headline)" if k == head else "") for k, _ in present),
    ]
    return markdown_table(headers, rows)


def ablation_table(summary: EvaluationSummary) -> str | None:
    if len(summary.ablations) < 2:
        return None
    head = summary.headline_set
    rows = []
    for channels, subsets in summary.ablations.items():
        b, a = subsets.subset(head), subsets.all
        rows.append(
            [
                channels,
                with_ci(b.mae, b.mae_ci) if b else "–",
                fmt(b.spearman if b else None),
                with_ci(b.slope, b.slope_ci) if b else "–",
                fmt(b.agreement_rate if b else None),
                fmt(a.mae if a else None),
                fmt(a.slope if a else None),
            ]
        )
    name = SUBSET_NAMES[head]
    headers = [
        "channels",
        f"MAE ({name})",
        f"Spearman ({name})",
        f"slope ({name})",
        f"agreement ({name})",
        "MAE (all)",
        "slope (all)",
    ]
    return markdown_table(headers, rows)


def curve_table(summary: EvaluationSummary) -> str | None:
    present = summary.played.present()
    if not present:
        return None
    rows = []
    for g, rho in enumerate(present[0][1].grid):
        row = [f"{rho:.2f}"]
        for _, block in present:
            p = block.curve[g]
            row += [
                with_ci(p.mean_achieved, p.ci),
                f"{fmt(p.agreement_rate, 2)} ({p.agreements}/{p.episodes})",
            ]
        rows.append(row)
    headers = ["ρ*"]
    for key, _ in present:
        headers += [f"achieved ρ, {SUBSET_NAMES[key]} [95% CI]", f"agreement, {SUBSET_NAMES[key]}"]
    return markdown_table(headers, rows)


def raw_vs_calibrated_table(summary: EvaluationSummary) -> str | None:
    raw = summary.calibration_raw
    if raw is None or not summary.calibrated:
        return None
    mapped = summary.played
    rows = []
    for subset in SUBSETS:
        r, m = raw.subset(subset), mapped.subset(subset)
        if r is None or m is None:
            continue
        pair: tuple[tuple[str, CalibrationBlock], ...] = (("raw dial", r), ("calibrated", m))
        for label, b in pair:
            rows.append(
                [
                    SUBSET_NAMES[subset],
                    label,
                    with_ci(b.mae, b.mae_ci),
                    with_ci(b.slope, b.slope_ci),
                    fmt(b.spearman),
                    fmt(b.monotonicity_violations),
                    fmt(b.agreement_rate),
                ]
            )
    headers = ["opponents", "dial", "MAE [95% CI]", "slope [95% CI]", "Spearman", "viol.", "agr."]
    return markdown_table(headers, rows, "ll" + "r" * 5)


# --------------------------------------------------------------------- configurations


def configuration_table(summary: EvaluationSummary, detail: bool = True) -> str | None:
    if not summary.configurations:
        return None
    rows = []
    for name, c in summary.configurations.items():
        m = c.all
        row = [
            name,
            "–" if c.rho is None else f"{c.rho.buyer:.1f}/{c.rho.seller:.1f}",
            with_ci(m.agreement_rate, m.agreement_rate_ci, 2),
            with_ci(m.utility, m.utility_ci),
            fmt(m.utility_agreed),
            f"{m.win_rate:.2f}/{m.tie_rate:.2f}/{m.loss_rate:.2f}",
            fmt(m.turns, 1),
            str(m.invalid_actions),
            f"{m.safety_clamped_offers}/{m.safety_refused_accepts}",
        ]
        if detail:
            row[4:4] = [fmt(c.held_out.utility), fmt(c.in_pool.utility)]
        rows.append(row)
    headers = [
        "configuration",
        "ρ b/s",
        "agreement",
        "utility [95% CI]",
        "utility (agreed)",
        "W/T/L",
        "turns",
        "invalid",
        "safety c/r",
    ]
    if detail:
        headers[4:4] = ["utility held-out", "utility in-pool"]
    return markdown_table(headers, rows, "ll" + "r" * (len(headers) - 2))


def vs_base_table(summary: EvaluationSummary) -> str | None:
    rows = [
        [name, str(c.vs_base.pairs), with_ci(c.vs_base.utility_diff, c.vs_base.utility_diff_ci)]
        for name, c in summary.configurations.items()
        if c.vs_base is not None
    ]
    if not rows:
        return None
    return markdown_table(["configuration", "paired episodes", "utility − base [95% CI]"], rows)


def opponent_table(summary: EvaluationSummary) -> str | None:
    configurations = summary.configurations
    if not configurations:
        return None
    model = [n for n, c in configurations.items() if c.kind != "scripted"]
    scripted = [n for n, c in configurations.items() if c.kind == "scripted"]

    def utility(name: str, opponent: str) -> float:
        m = configurations[name].by_opponent.get(opponent)
        return -1.0 if m is None or m.utility is None else m.utility

    rows = []
    for opponent in summary.run.opponents:
        row = [_held(summary, opponent)]
        for name in model:
            m = configurations[name].by_opponent[opponent]
            row.append(f"{fmt(m.utility)} ({fmt(m.agreement_rate, 2)})")
        if scripted:
            best = max(scripted, key=lambda n: utility(n, opponent))
            m = configurations[best].by_opponent[opponent]
            row.append(f"{fmt(m.utility)} ({best.removeprefix(SCRIPTED_PREFIX)})")
        rows.append(row)
    headers = ["opponent (* held out)", *model, *(["best script"] if scripted else [])]
    return markdown_table(headers, rows)


def habits_table(summary: EvaluationSummary) -> str | None:
    rows = []
    for name, c in summary.configurations.items():
        h = c.all.habits
        rows.append(
            [
                name,
                *(str(getattr(h, counter)) for counter in RULE_COUNTERS),
                f"{h.repeated_offers} ({fmt(h.repeated_offer_rate, 2)})",
                str(h.worse_counters),
                str(h.retreats),
                str(h.walked_away),
            ]
        )
    if not rows:
        return None
    headers = [
        "configuration",
        *RULE_NAMES,
        "repeated offers (rate)",
        "worse counters",
        "retreats",
        "walked away",
    ]
    return markdown_table(headers, rows, "l" + "r" * (len(headers) - 1))


def habits_by_opponent_table(summary: EvaluationSummary) -> str | None:
    standard = summary.configurations.get("standard")
    if standard is None:
        return None
    rows = []
    for opponent, m in standard.by_opponent.items():
        h = m.habits
        rows.append(
            [
                _held(summary, opponent),
                fmt(m.agreement_rate, 2),
                str(rule_total(h, ACCEPT_RULES)),
                str(rule_total(h, COUNTER_RULES)),
                f"{h.repeated_offers} ({fmt(h.repeated_offer_rate, 2)})",
                str(h.worse_counters),
                str(h.retreats),
                str(h.walked_away),
                str(m.invalid_actions),
            ]
        )
    headers = [
        "opponent (* held out)",
        "agreement",
        "rule accepts",
        "rule concessions",
        "repeated offers (rate)",
        "worse counters",
        "retreats",
        "walked away",
        "invalid",
    ]
    return markdown_table(headers, rows, "l" + "r" * 8)


#: The original work's Table 3 (in-pool opponents, Qwen2-7B): own utility, agreement rate.
PUBLISHED_TABLE_3: dict[str, tuple[float, float]] = {
    "base": (0.210, 0.847),
    "standard": (0.553, 0.903),
    "extreme": (0.447, 0.963),
    "flipped": (-0.043, 0.970),
    "neutral": (0.463, 0.988),
}


def protocol_table(summary: EvaluationSummary) -> str | None:
    names = [n for n in PUBLISHED_TABLE_3 if n in summary.configurations]
    if not names:
        return None
    rows = []
    for name in names:
        c = summary.configurations[name]
        # The own utility a deal exactly at ρ* gives: a buyer keeps 1 − ρ*, a seller ρ*.
        requested = (1 - c.rho.buyer + c.rho.seller) / 2 if c.rho else None
        cells = [name]
        for subset in ("in_pool", "held_out"):
            m = c.subset(subset)
            shortfall = None
            if m.utility is not None and requested is not None:
                shortfall = requested - m.utility
            cells += [fmt(m.utility), fmt(m.agreement_rate, 2), fmt(m.turns, 1), fmt(shortfall)]
        published = PUBLISHED_TABLE_3[name]
        cells += [f"{published[0]:.1%}", f"{published[1]:.1%}"]
        rows.append(cells)
    headers = [
        "configuration",
        "utility in-pool",
        "agr. in-pool",
        "turns in-pool",
        "shortfall in-pool",
        "utility held-out",
        "agr. held-out",
        "turns held-out",
        "shortfall held-out",
        "original: utility",
        "original: agreement",
    ]
    return markdown_table(headers, rows, "l" + "r" * 10)


def headline_table(summary: EvaluationSummary) -> str:
    """The few lines ``janus evaluate`` prints: calibration (held-out headline, in-pool, all),
    the ablations, one row per configuration, and the validity counters."""
    parts = [
        table
        for table in (
            calibration_table(summary),
            ablation_table(summary),
            configuration_table(summary, detail=False),
        )
        if table
    ]
    parts.append(
        f"episodes: {summary.run.episodes}   "
        f"invalid actions: {summary.invalid_actions}   "
        f"agreements outside the ZOPA: {summary.agreements_outside_zopa}   "
        f"safety interventions (clamped offers / refused accepts): "
        f"{summary.safety.clamped_offers} / {summary.safety.refused_accepts}"
    )
    return "\n\n".join(parts)
