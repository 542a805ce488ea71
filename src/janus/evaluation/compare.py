"""Evaluation reports side by side: one table and one calibration plot for several runs.

The point of a comparison (janus-tiny vs SmolLM2-135M, two learning rates, two seeds) is
that only the model differs. So before anything is written, the reports' ``episodes.csv``
are checked row by row on the columns that define an episode — configuration, channels,
requested ρ*, role, opponent, index, seed, first mover, reservations — and a report that
played other episodes is refused with the first line that differs. Reports made by
``janus evaluate`` with the same preset and seed always pass.

Writes ``comparison.md`` (headline calibration per run, Janus's invalid actions and
agreements outside the ZOPA, then agreement rate and mean achieved ρ per requested ρ*),
``comparison.json`` (the same numbers) and ``calibration-compare.png``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure

from janus.atomic import atomic_directory
from janus.evaluation.plots import _calibration_axes, _curve, _nan
from janus.evaluation.report import EPISODES_FILE, SUMMARY_FILE, _f, _table, _with_ci

__all__ = [
    "COMPARISON_FILES",
    "PAIRING_COLUMNS",
    "ComparedReport",
    "compare_reports",
    "load_report",
]

#: The columns of ``episodes.csv`` that say which episode a row is (not how it went).
PAIRING_COLUMNS: tuple[str, ...] = (
    "configuration",
    "channels",
    "requested_rho",
    "janus_role",
    "opponent",
    "episode_index",
    "seed",
    "first_mover",
    "buyer_max",
    "seller_min",
)
COMPARISON_FILES = {
    "markdown": "comparison.md",
    "json": "comparison.json",
    "plot": "calibration-compare.png",
}


@dataclass(frozen=True)
class ComparedReport:
    """One report of a comparison: its label, directory, summary and episode keys."""

    label: str
    path: Path
    summary: dict[str, Any]
    episode_keys: tuple[tuple[str, ...], ...]

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The headline calibration block (held-out opponents when there are any)."""
        return self.summary.get("calibration")


def _default_label(path: Path, summary: dict[str, Any]) -> str:
    base = (summary.get("run") or {}).get("base_model")
    return Path(str(base)).name if base else path.name


def load_report(path: str | Path, label: str | None = None) -> ComparedReport:
    """Read ``summary.json`` and the pairing columns of ``episodes.csv`` of a report."""
    path = Path(path).expanduser()
    summary_file = path / SUMMARY_FILE
    episodes_file = path / EPISODES_FILE
    if not summary_file.is_file():
        raise FileNotFoundError(f"{path}: no {SUMMARY_FILE} (not a janus evaluate report)")
    if not episodes_file.is_file():
        raise FileNotFoundError(f"{path}: no {EPISODES_FILE} (not a janus evaluate report)")
    try:
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{summary_file}: not valid JSON ({error})") from None
    with episodes_file.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{episodes_file}: empty file")
        missing = [c for c in PAIRING_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{episodes_file}: missing column(s) {', '.join(missing)}")
        index = [header.index(c) for c in PAIRING_COLUMNS]
        keys = tuple(tuple(row[i] for i in index) for row in reader)
    return ComparedReport(label or _default_label(path, summary), path, summary, keys)


def check_paired(reports: Sequence[ComparedReport]) -> None:
    """Refuse reports that did not play exactly the same episodes as the first one."""
    first = reports[0]
    for other in reports[1:]:
        where = other.path / EPISODES_FILE
        pairs = zip(first.episode_keys, other.episode_keys, strict=False)  # lengths: below
        for line, (mine, theirs) in enumerate(pairs, 2):  # line 1 is the header
            if mine != theirs:
                column, expected, value = next(
                    (c, a, b)
                    for c, a, b in zip(PAIRING_COLUMNS, mine, theirs, strict=True)
                    if a != b
                )
                raise ValueError(
                    f"{where}:{line}: {column} is {value!r} where {first.path / EPISODES_FILE} "
                    f"has {expected!r}: the reports did not play the same episodes (evaluate "
                    "both with the same --preset and --seed)"
                )
        if len(first.episode_keys) != len(other.episode_keys):
            raise ValueError(
                f"{where}: {len(other.episode_keys)} episodes where {first.path / EPISODES_FILE} "
                f"has {len(first.episode_keys)}: the reports did not play the same episodes"
            )


def _janus_count(summary: dict[str, Any], key: str) -> int:
    """A count over the adapter's own episodes (``kind == janus``), not the base's."""
    return int((summary.get(f"{key}_by_kind") or {}).get("janus", 0))


def comparison_data(reports: Sequence[ComparedReport]) -> dict[str, Any]:
    """The numbers of the comparison, one entry per report (what ``comparison.json`` holds)."""
    rows = []
    for report in reports:
        block = report.calibration or {}
        run = report.summary.get("run") or {}
        rows.append(
            {
                "label": report.label,
                "report": str(report.path),
                "base_model": run.get("base_model"),
                "adapter": run.get("adapter"),
                "dtype": run.get("dtype"),
                "headline_set": report.summary.get("headline_set"),
                "mae": block.get("mae"),
                "mae_ci": block.get("mae_ci"),
                "spearman": block.get("spearman"),
                "slope": block.get("slope"),
                "slope_ci": block.get("slope_ci"),
                "agreement_rate": block.get("agreement_rate"),
                "monotonicity_violations": block.get("monotonicity_violations"),
                "invalid_actions_janus": _janus_count(report.summary, "invalid_actions"),
                "outside_zopa_janus": _janus_count(report.summary, "agreements_outside_zopa"),
                "invalid_actions_all": report.summary.get("invalid_actions"),
                "outside_zopa_all": report.summary.get("agreements_outside_zopa"),
                "curve": block.get("curve") or [],
                "seconds": (report.summary.get("timing") or {}).get("seconds"),
            }
        )
    first = reports[0].summary.get("run") or {}
    return {
        "episodes": len(reports[0].episode_keys),
        "seed": first.get("seed"),
        "opponents": first.get("opponents"),
        "held_out_opponents": first.get("held_out_opponents"),
        "rho_grid": first.get("rho_grid"),
        "reports": rows,
    }


def render_comparison(data: dict[str, Any]) -> str:
    """Markdown: the headline table, then one row per requested ρ*."""
    rows = data["reports"]
    labels = [r["label"] for r in rows]
    headline = [
        ["calibration MAE [95% CI]", *(_with_ci(r["mae"], r["mae_ci"]) for r in rows)],
        ["Spearman (ρ*, mean achieved)", *(_f(r["spearman"]) for r in rows)],
        ["slope [95% CI]", *(_with_ci(r["slope"], r["slope_ci"]) for r in rows)],
        ["monotonicity violations", *(_f(r["monotonicity_violations"]) for r in rows)],
        ["agreement rate (sweep)", *(_f(r["agreement_rate"]) for r in rows)],
        [
            "invalid actions (Janus / all)",
            *(f"{r['invalid_actions_janus']} / {r['invalid_actions_all']}" for r in rows),
        ],
        [
            "agreements outside the ZOPA (Janus / all)",
            *(f"{r['outside_zopa_janus']} / {r['outside_zopa_all']}" for r in rows),
        ],
        ["base weights dtype", *(str(r["dtype"]) for r in rows)],
        ["evaluation time (s)", *(_f(r["seconds"], 0) for r in rows)],
    ]
    grid = sorted({p["rho"] for r in rows for p in r["curve"]})
    per_rho = []
    for rho in grid:
        cells = []
        for r in rows:
            point = next((p for p in r["curve"] if p["rho"] == rho), None)
            if point is None:
                cells.append("–")
                continue
            cells.append(f"{_f(point['mean_achieved'])} ({_f(point['agreement_rate'], 2)})")
        per_rho.append([f"{rho:.1f}", *cells])
    subset = rows[0]["headline_set"] or "all"
    parts = [
        "# Comparison",
        "",
        f"{data['episodes']} episodes per report, the same paired episodes in every report "
        f"(seed {data['seed']}); calibration on the {subset.replace('_', '-')} opponents: "
        f"{', '.join(data.get('held_out_opponents') or data.get('opponents') or [])}.",
        "",
        _table(["", *labels], headline),
        "",
        "## Per requested ρ*: mean achieved ρ (agreement rate)",
        "",
        _table(["ρ*", *labels], per_rho),
        "",
        f"![calibration]({COMPARISON_FILES['plot']})",
        "",
    ]
    return "\n".join(parts)


def plot_comparison(data: dict[str, Any], path: Path) -> Path:
    """Left: achieved vs requested ρ* per report (95% CIs, y = x); right: agreement rate."""
    fig = Figure(figsize=(12, 5))
    left, right = fig.subplots(1, 2)
    colors = colormaps["tab10"]
    count = len(data["reports"])
    for i, row in enumerate(data["reports"]):
        # A row holds the report's calibration curve and MAE, as a summary's block does.
        _curve(left, row, row["label"], colors(i), offset=(i - (count - 1) / 2) * 0.01)
        right.plot(
            [p["rho"] for p in row["curve"]],
            [_nan(p["agreement_rate"]) for p in row["curve"]],
            marker="o",
            ms=4,
            color=colors(i),
            label=row["label"],
        )
    _calibration_axes(left, "Calibration on the same paired episodes")
    right.set_xlim(-0.05, 1.05)
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel("requested ρ*")
    right.set_ylabel("agreement rate")
    right.set_title("Agreement rate per requested ρ*")
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def compare_reports(
    reports: Sequence[str | Path],
    out: str | Path,
    *,
    labels: Sequence[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Check that ``reports`` played the same episodes, then write the comparison to ``out``.

    Returns the data of ``comparison.json``. Everything is checked before anything is
    written, and ``out`` is swapped in whole (an earlier comparison is replaced only with
    ``overwrite``; any other existing directory never).
    """
    if len(reports) < 2:
        raise ValueError("a comparison needs at least two reports")
    if labels is not None and len(labels) != len(reports):
        raise ValueError(f"{len(labels)} labels for {len(reports)} reports")
    loaded = [
        load_report(path, None if labels is None else labels[i]) for i, path in enumerate(reports)
    ]
    check_paired(loaded)
    target = Path(out).expanduser()
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} is not empty; pass overwrite=True (--overwrite)")
    data = comparison_data(loaded)

    def write(tmp: Path) -> None:
        (tmp / COMPARISON_FILES["json"]).write_text(
            json.dumps(data, indent=2, allow_nan=True) + "\n", encoding="utf-8"
        )
        (tmp / COMPARISON_FILES["markdown"]).write_text(render_comparison(data), encoding="utf-8")
        plot_comparison(data, tmp / COMPARISON_FILES["plot"])

    atomic_directory(
        target,
        write,
        replaceable=lambda p: not any(p.iterdir()) or (p / COMPARISON_FILES["json"]).is_file(),
        what="comparison directory",
    )
    return data
