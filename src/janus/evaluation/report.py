"""Writing a report directory: ``episodes.csv``, ``summary.json``, ``report.md``, plots.

Everything is written into a temporary directory beside the target and renamed into place
at the end (:mod:`janus.atomic`), so a report directory is either complete or absent —
never half-written.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from janus.atomic import atomic_directory as shared_atomic_directory
from janus.evaluation.harness import SCRIPTED_PREFIX, EpisodeRecord

__all__ = [
    "CSV_COLUMNS",
    "EPISODES_FILE",
    "REPORT_FILE",
    "SUMMARY_FILE",
    "atomic_directory",
    "check_out_dir",
    "headline_table",
    "json_ready",
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
    "rule_accept_better",
    "rule_accept_last_turn",
    "repeated_offers",
    "worse_counters",
    "walked_away",
    "offers",
)


# ------------------------------------------------------------------------------ files


def json_ready(value: Any) -> Any:
    """A copy that strict JSON accepts: ``nan``/``inf`` become ``null``, numpy scalars and
    tuples become plain values."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def write_summary_json(summary: dict[str, Any], path: Path) -> Path:
    text = json.dumps(json_ready(summary), indent=2, ensure_ascii=False, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")
    return Path(path)


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
        r.rule_accept_better,
        r.rule_accept_last_turn,
        r.repeated_offers,
        r.worse_counters,
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


# ----------------------------------------------------------------------------- tables


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        text = f"{value:.{digits}f}"
        return text.lstrip("-") if float(text) == 0.0 else text  # never "-0.000"
    return str(value)


def _with_ci(value: Any, ci: Sequence[Any] | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if not ci or any(c is None or (isinstance(c, float) and math.isnan(c)) for c in ci):
        return _f(value, digits)
    return f"{_f(value, digits)} [{_f(ci[0], digits)}, {_f(ci[1], digits)}]"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A Markdown pipe table, padded so that it also reads well as plain text."""
    cells = [list(headers), *[list(map(str, r)) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.ljust(w) if a == "l" else cell.rjust(w)
            for cell, w, a in zip(row, widths, align, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(
            ":" + "-" * (w + 1) if a == "l" else "-" * (w + 1) + ":"
            for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


_SUBSET_NAMES = {"held_out": "held-out", "in_pool": "in-pool", "all": "all"}


def main_calibration(summary: dict[str, Any]) -> dict[str, Any]:
    """The played dial's calibration blocks by subset (calibrated when the agent had a map)."""
    held = summary.get("calibration") if summary.get("headline_set") == "held_out" else None
    return {
        "held_out": held,
        "in_pool": summary.get("calibration_in_pool"),
        "all": summary.get("calibration_all"),
    }


def _calibration_table(summary: dict[str, Any]) -> str | None:
    blocks = main_calibration(summary)
    present = [(k, b) for k, b in blocks.items() if b]
    if not present:
        return None
    rows = [
        ["MAE over the grid [95% CI]", *(_with_ci(b["mae"], b["mae_ci"]) for _, b in present)],
        ["per-episode MAE", *(_f(b["per_episode_mae"]) for _, b in present)],
        ["Spearman (ρ*, mean achieved)", *(_f(b["spearman"]) for _, b in present)],
        ["slope [95% CI]", *(_with_ci(b["slope"], b["slope_ci"]) for _, b in present)],
        ["intercept", *(_f(b["intercept"]) for _, b in present)],
        ["monotonicity violations", *(_f(b["monotonicity_violations"]) for _, b in present)],
        ["agreement rate", *(_f(b["agreement_rate"]) for _, b in present)],
        ["agreed / episodes", *(f"{b['agreements']}/{b['episodes']}" for _, b in present)],
    ]
    head = summary.get("headline_set", "held_out")
    headers = [
        "calibration",
        *(_SUBSET_NAMES[k] + (" (headline)" if k == head else "") for k, _ in present),
    ]
    return _table(headers, rows)


def _ablation_table(summary: dict[str, Any]) -> str | None:
    ablations = summary.get("ablations") or {}
    if len(ablations) < 2:
        return None
    head = summary.get("headline_set", "held_out")
    rows = []
    for channels, subsets in ablations.items():
        b = subsets.get(head) or {}
        a = subsets.get("all") or {}
        rows.append(
            [
                channels,
                _with_ci(b.get("mae"), b.get("mae_ci")),
                _f(b.get("spearman")),
                _with_ci(b.get("slope"), b.get("slope_ci")),
                _f(b.get("agreement_rate")),
                _f(a.get("mae")),
                _f(a.get("slope")),
            ]
        )
    name = _SUBSET_NAMES[head]
    headers = [
        "channels",
        f"MAE ({name})",
        f"Spearman ({name})",
        f"slope ({name})",
        f"agreement ({name})",
        "MAE (all)",
        "slope (all)",
    ]
    return _table(headers, rows)


def _configuration_table(summary: dict[str, Any], detail: bool = True) -> str | None:
    configurations = summary.get("configurations") or {}
    if not configurations:
        return None
    rows = []
    for name, c in configurations.items():
        rho = c.get("rho")
        row = [
            name,
            "–" if not rho else f"{rho['buyer']:.1f}/{rho['seller']:.1f}",
            _with_ci(c["agreement_rate"], c["agreement_rate_ci"], 2),
            _with_ci(c["utility"], c["utility_ci"]),
            _f(c["utility_agreed"]),
            f"{c['win_rate']:.2f}/{c['tie_rate']:.2f}/{c['loss_rate']:.2f}",
            _f(c["turns"], 1),
            str(c["invalid_actions"]),
            f"{c['safety_clamped_offers']}/{c['safety_refused_accepts']}",
        ]
        if detail:
            row[4:4] = [
                _f(c["held_out"].get("utility")),
                _f(c["in_pool"].get("utility")),
            ]
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
    return _table(headers, rows, "ll" + "r" * (len(headers) - 2))


def headline_table(summary: dict[str, Any]) -> str:
    """The few lines ``janus evaluate`` prints: calibration (held-out headline, in-pool, all),
    the ablations, one row per configuration, and the validity counters."""
    parts = []
    calibration = _calibration_table(summary)
    if calibration:
        parts.append(calibration)
    ablation = _ablation_table(summary)
    if ablation:
        parts.append(ablation)
    configurations = _configuration_table(summary, detail=False)
    if configurations:
        parts.append(configurations)
    parts.append(
        f"episodes: {summary['run']['episodes']}   "
        f"invalid actions: {summary['invalid_actions']}   "
        f"agreements outside the ZOPA: {summary['agreements_outside_zopa']}   "
        f"safety interventions (clamped offers / refused accepts): "
        f"{summary['safety']['clamped_offers']} / {summary['safety']['refused_accepts']}"
    )
    return "\n\n".join(parts)


def _curve_table(summary: dict[str, Any]) -> str | None:
    both = main_calibration(summary)
    present = [(k, both[k]) for k in ("held_out", "in_pool", "all") if both.get(k)]
    if not present:
        return None
    grid = present[0][1]["grid"]
    rows = []
    for g, rho in enumerate(grid):
        row = [f"{rho:.2f}"]
        for _, block in present:
            p = block["curve"][g]
            row += [
                _with_ci(p["mean_achieved"], [p["ci_low"], p["ci_high"]]),
                f"{_f(p['agreement_rate'], 2)} ({p['agreements']}/{p['episodes']})",
            ]
        rows.append(row)
    headers = ["ρ*"]
    for key, _ in present:
        headers += [
            f"achieved ρ, {_SUBSET_NAMES[key]} [95% CI]",
            f"agreement, {_SUBSET_NAMES[key]}",
        ]
    return _table(headers, rows)


def _opponent_table(summary: dict[str, Any]) -> str | None:
    configurations = summary.get("configurations") or {}
    model = [n for n, c in configurations.items() if c["kind"] != "scripted"]
    scripted = [n for n, c in configurations.items() if c["kind"] == "scripted"]
    if not configurations:
        return None
    held = set(summary["run"].get("held_out_opponents", []))
    rows = []
    for opponent in summary["run"]["opponents"]:
        row = [opponent + (" *" if opponent in held else "")]
        for name in model:
            m = configurations[name]["by_opponent"].get(opponent, {})
            row.append(f"{_f(m.get('utility'))} ({_f(m.get('agreement_rate'), 2)})")
        if scripted:
            best = max(
                scripted,
                key=lambda n: configurations[n]["by_opponent"].get(opponent, {}).get("utility", -1),
            )
            m = configurations[best]["by_opponent"].get(opponent, {})
            row.append(f"{_f(m.get('utility'))} ({best.removeprefix(SCRIPTED_PREFIX)})")
        rows.append(row)
    headers = ["opponent (* held out)", *model, *(["best script"] if scripted else [])]
    return _table(headers, rows)


def _vs_base_table(summary: dict[str, Any]) -> str | None:
    rows = [
        [name, str(c["vs_base"]["pairs"]),
         _with_ci(c["vs_base"]["utility_diff"], c["vs_base"]["utility_diff_ci"])]
        for name, c in (summary.get("configurations") or {}).items()
        if c.get("vs_base")
    ]  # fmt: skip
    if not rows:
        return None
    return _table(["configuration", "paired episodes", "utility − base [95% CI]"], rows)


def _raw_vs_calibrated_table(summary: dict[str, Any]) -> str | None:
    raw = summary.get("calibration_raw")
    if not raw or not summary.get("calibrated"):
        return None
    mapped = main_calibration(summary)
    rows = []
    for subset in ("held_out", "in_pool", "all"):
        r, m = raw.get(subset), mapped.get(subset)
        if not r or not m:
            continue
        for label, b in (("raw dial", r), ("calibrated", m)):
            rows.append(
                [
                    _SUBSET_NAMES[subset],
                    label,
                    _with_ci(b["mae"], b["mae_ci"]),
                    _with_ci(b["slope"], b["slope_ci"]),
                    _f(b["spearman"]),
                    _f(b["monotonicity_violations"]),
                    _f(b["agreement_rate"]),
                ]
            )
    headers = ["opponents", "dial", "MAE [95% CI]", "slope [95% CI]", "Spearman", "viol.", "agr."]
    return _table(headers, rows, "ll" + "r" * 5)


def _habits_table(summary: dict[str, Any]) -> str | None:
    configurations = summary.get("configurations") or {}
    rows = [
        [
            name,
            str(c.get("rule_accept_better", 0)),
            str(c.get("rule_accept_last_turn", 0)),
            f"{c.get('repeated_offers', 0)} ({_f(c.get('repeated_offer_rate'), 2)})",
            str(c.get("worse_counters", 0)),
            str(c.get("walked_away", 0)),
        ]
        for name, c in configurations.items()
    ]
    if not rows:
        return None
    headers = [
        "configuration",
        "accept_better",
        "accept_last_turn",
        "repeated offers (rate)",
        "worse counters",
        "walked away",
    ]
    return _table(headers, rows, "l" + "r" * 5)


def _habits_by_opponent_table(summary: dict[str, Any]) -> str | None:
    standard = (summary.get("configurations") or {}).get("standard")
    if not standard:
        return None
    held = set(summary["run"].get("held_out_opponents", []))
    rows = []
    for opponent, m in standard["by_opponent"].items():
        rows.append(
            [
                opponent + (" *" if opponent in held else ""),
                _f(m.get("agreement_rate"), 2),
                str(m.get("rule_accept_better", 0) + m.get("rule_accept_last_turn", 0)),
                f"{m.get('repeated_offers', 0)} ({_f(m.get('repeated_offer_rate'), 2)})",
                str(m.get("worse_counters", 0)),
                str(m.get("walked_away", 0)),
                str(m.get("invalid_actions", 0)),
            ]
        )
    headers = [
        "opponent (* held out)",
        "agreement",
        "rule accepts",
        "repeated offers (rate)",
        "worse counters",
        "walked away",
        "invalid",
    ]
    return _table(headers, rows, "l" + "r" * 6)


#: The original work's Table 3 (in-pool opponents, Qwen2-7B): own utility, agreement rate.
PUBLISHED_TABLE_3: dict[str, tuple[float, float]] = {
    "base": (0.210, 0.847),
    "standard": (0.553, 0.903),
    "extreme": (0.447, 0.963),
    "flipped": (-0.043, 0.970),
    "neutral": (0.463, 0.988),
}


def _protocol_table(summary: dict[str, Any]) -> str | None:
    configurations = summary.get("configurations") or {}
    names = [n for n in PUBLISHED_TABLE_3 if n in configurations]
    if not names:
        return None
    rows = []
    for name in names:
        c = configurations[name]
        rho = c.get("rho") or {}
        # The own utility a deal exactly at ρ* gives: a buyer keeps 1 − ρ*, a seller ρ*.
        requested = (1 - rho["buyer"] + rho["seller"]) / 2 if rho else math.nan
        cells = [name]
        for subset in ("in_pool", "held_out"):
            m = c.get(subset) or {}
            utility = m.get("utility")
            shortfall = None if utility is None else requested - utility
            cells += [
                _f(utility),
                _f(m.get("agreement_rate"), 2),
                _f(m.get("turns"), 1),
                _f(shortfall),
            ]
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
    return _table(headers, rows, "l" + "r" * 10)


def _held_out_line(run: dict[str, Any]) -> str:
    check = run.get("held_out_check") or {}
    if not check.get("checked"):
        return "- held-out check: training data not found, not checked"
    leaked = check.get("seen_in_training") or []
    if leaked:
        return (
            f"- **held-out check failed**: {', '.join(leaked)} played in the training data "
            f"(`{check['training_data']}`)"
        )
    return (
        f"- held-out check: no held-out opponent in the training data (`{check['training_data']}`)"
    )


def render_report(summary: dict[str, Any], plots: dict[str, Path] | None = None) -> str:
    """``report.md``: every table of the summary, with the plots inlined."""
    run = summary["run"]
    plots = plots or {}
    lines = [
        "# Janus evaluation report",
        "",
        f"- adapter: `{run.get('adapter') or '–'}`; agent: {run.get('agent') or '–'}; "
        f"base model: `{run.get('base_model') or '–'}`",
        f"- {run['episodes']} episodes, seed {run['seed']}; {run['episodes_per_cell']} per "
        f"opponent × role × configuration, {run['sweep_episodes_per_cell']} per sweep cell; "
        "episodes paired across configurations (same scenario, first mover and opponent seed)",
        f"- opponents ({len(run['opponents'])}): held out ({len(run['held_out_opponents'])}): "
        f"{', '.join(run['held_out_opponents']) or '–'}; in pool "
        f"({len(run['in_pool_opponents'])}): {', '.join(run['in_pool_opponents']) or '–'}",
        f"- domain: price range {run['domain']['price_range']}, ZOPA width "
        f"{run['domain']['zopa_width']}, {run['domain']['max_turns']} turns; safety "
        f"{'on' if run.get('safety', True) else 'off'}",
        _held_out_line(run),
        f"- 95% intervals: percentile bootstrap, {run['bootstrap_resamples']} seeded resamples",
        "",
    ]

    def section(title: str, body: str | None, note: str = "") -> None:
        if body:
            lines.extend([f"## {title}", "", *([note, ""] if note else []), body, ""])

    section(
        "Calibration",
        _calibration_table(summary),
        "Achieved ρ = (price − SellerMin)/(BuyerMax − SellerMin) per agreement. MAE over the grid "
        "= mean over ρ* of |mean achieved − ρ*|; per-episode MAE includes the spread between "
        "opponents; slope/intercept: least squares of achieved on ρ* over agreed episodes. "
        "Means pool the agreed episodes of every opponent and both roles (the design gives "
        "each opponent × role cell the same number of episodes).",
    )
    if "calibration" in plots:
        lines.extend([f"![calibration]({plots['calibration'].name})", ""])
    section(
        "Raw dial and calibrated dial",
        _raw_vs_calibrated_table(summary),
        "The same sweep episodes played on the raw dial and through the adapter's calibration "
        "map (fitted on an in-pool sweep of other episodes; the held-out opponents chose "
        "nothing). The channel ablations below are raw.",
    )
    section("Calibration curve", _curve_table(summary))
    section(
        "Channel ablations",
        _ablation_table(summary),
        f"text: the prompt shows ρ*, the gates get {run.get('ablation_fixed_rho', 0.5)}; "
        f"weights: the gates get ρ*, the prompt shows {run.get('ablation_fixed_rho', 0.5)}.",
    )
    section(
        "Configurations (all opponents)",
        _configuration_table(summary),
        "Utility: normalised surplus of Janus's seat, impasse = 0 (utility (agreed): over "
        "agreements only). W/T/L against the opponent's utility (tie within 1e-6; an impasse "
        "is a tie at 0). Safety c/r: clamped offers / refused accepts. ρ b/s: requested ρ "
        "as buyer / as seller (base: told the Standard values).",
    )
    section("Paired difference with the base model", _vs_base_table(summary))
    section(
        "The original work's protocol",
        _protocol_table(summary),
        "The five configurations with own utility (impasse = 0), agreement, turns and the "
        "shortfall (the own utility a deal exactly at ρ* gives, minus the achieved one), "
        "in-pool and held-out, beside the original's Table 3 (in-pool opponents, Qwen2-7B, "
        "its own domain and opponents: a reference point, not a paired comparison).",
    )
    section(
        "Acceptance rules and bargaining habits",
        _habits_table(summary),
        "Acceptance-rule interventions (the model's counter turned into an ACCEPT), offers "
        "equal to the seat's previous offer, counters worse for the seat than the standing "
        "offer, and impasses with an offer inside the reservation once on the table.",
    )
    section("Habits of Standard by opponent", _habits_by_opponent_table(summary))
    section(
        "Utility by opponent",
        _opponent_table(summary),
        "Mean utility (agreement rate); best script: the scripted strategy that did best in "
        "Janus's seat against that opponent.",
    )
    if "utility" in plots:
        lines.extend([f"![utility]({plots['utility'].name})", ""])
    if "concession" in plots:
        lines.extend(
            [
                "## Concession curves",
                "",
                "Mean position of Janus's own offers in the ZOPA per turn (0 = SellerMin, "
                "1 = BuyerMax), text + weights, all opponents.",
                "",
                f"![concession]({plots['concession'].name})",
                "",
            ]
        )
    safety = summary["safety"]
    lines.extend(
        [
            "## Validity",
            "",
            f"- invalid actions: {summary['invalid_actions']} "
            f"(by kind: {summary['invalid_actions_by_kind']})",
            f"- agreements outside the ZOPA: {summary['agreements_outside_zopa']} "
            f"(by kind: {summary['agreements_outside_zopa_by_kind']})",
            f"- safety: {safety['clamped_offers']} clamped offers, "
            f"{safety['refused_accepts']} refused accepts",
            "- held-out opponents are never used to choose anything: not checkpoints, not the "
            "calibration map, not acceptance rules, not refinement opponents or mix ratios",
            "",
        ]
    )
    return "\n".join(lines)
