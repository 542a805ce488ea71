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
from janus.evaluation.codec import encode
from janus.evaluation.plots import calibration_axes, calibration_curve
from janus.evaluation.report import EPISODES_FILE, SUMMARY_FILE
from janus.evaluation.summary_types import CalibrationBlock, EvaluationSummary, load_summary
from janus.evaluation.tables import fmt, markdown_table, with_ci

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
    summary: EvaluationSummary
    episode_keys: tuple[tuple[str, ...], ...]

    @property
    def calibration(self) -> CalibrationBlock | None:
        """The headline calibration block (held-out opponents when there are any)."""
        return self.summary.calibration


def _default_label(path: Path, summary: EvaluationSummary) -> str:
    base = summary.run.context.base_model
    return Path(base).name if base else path.name


def load_report(path: str | Path, label: str | None = None) -> ComparedReport:
    """Read ``summary.json`` (typed and version-checked) and the pairing columns of
    ``episodes.csv`` of a report."""
    path = Path(path).expanduser()
    summary_file = path / SUMMARY_FILE
    episodes_file = path / EPISODES_FILE
    if not summary_file.is_file():
        raise FileNotFoundError(f"{path}: no {SUMMARY_FILE} (not a janus evaluate report)")
    if not episodes_file.is_file():
        raise FileNotFoundError(f"{path}: no {EPISODES_FILE} (not a janus evaluate report)")
    summary = load_summary(summary_file)
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


def _row(report: ComparedReport) -> dict[str, Any]:
    """One report's entry of ``comparison.json``."""
    summary = report.summary
    block = report.calibration
    headline = {
        key: encode(getattr(block, key)) if block is not None else None
        for key in (
            "mae",
            "mae_ci",
            "spearman",
            "slope",
            "slope_ci",
            "agreement_rate",
            "monotonicity_violations",
        )
    }
    return {
        "label": report.label,
        "report": str(report.path),
        "base_model": summary.run.context.base_model,
        "adapter": summary.run.context.adapter,
        "dtype": summary.run.context.dtype,
        "headline_set": summary.headline_set,
        **headline,
        # Counts over the adapter's own episodes (kind janus), not the base's; then all.
        "invalid_actions_janus": summary.invalid_actions_by_kind.get("janus", 0),
        "outside_zopa_janus": summary.agreements_outside_zopa_by_kind.get("janus", 0),
        "invalid_actions_all": summary.invalid_actions,
        "outside_zopa_all": summary.agreements_outside_zopa,
        "curve": encode(block.curve) if block is not None else [],
        "seconds": summary.timing.seconds if summary.timing else None,
    }


def comparison_data(reports: Sequence[ComparedReport]) -> dict[str, Any]:
    """The numbers of the comparison, one entry per report (what ``comparison.json`` holds)."""
    first = reports[0].summary.run
    return {
        "episodes": len(reports[0].episode_keys),
        "seed": first.seed,
        "opponents": list(first.opponents),
        "held_out_opponents": list(first.held_out_opponents),
        "rho_grid": list(first.rho_grid),
        "reports": [_row(report) for report in reports],
    }


def _headline_rows(reports: Sequence[ComparedReport]) -> list[list[str]]:
    blocks = [r.calibration for r in reports]
    summaries = [r.summary for r in reports]

    def calibration(cell) -> list[str]:
        return [cell(b) if b is not None else "–" for b in blocks]

    return [
        ["calibration MAE [95% CI]", *calibration(lambda b: with_ci(b.mae, b.mae_ci))],
        ["Spearman (ρ*, mean achieved)", *calibration(lambda b: fmt(b.spearman))],
        ["slope [95% CI]", *calibration(lambda b: with_ci(b.slope, b.slope_ci))],
        ["monotonicity violations", *calibration(lambda b: fmt(b.monotonicity_violations))],
        ["agreement rate (sweep)", *calibration(lambda b: fmt(b.agreement_rate))],
        [
            "invalid actions (Janus / all)",
            *(
                f"{s.invalid_actions_by_kind.get('janus', 0)} / {s.invalid_actions}"
                for s in summaries
            ),
        ],
        [
            "agreements outside the ZOPA (Janus / all)",
            *(
                f"{s.agreements_outside_zopa_by_kind.get('janus', 0)} / {s.agreements_outside_zopa}"
                for s in summaries
            ),
        ],
        ["base weights dtype", *(str(s.run.context.dtype) for s in summaries)],
        [
            "evaluation time (s)",
            *(fmt(s.timing.seconds if s.timing else None, 0) for s in summaries),
        ],
    ]


def render_comparison(reports: Sequence[ComparedReport]) -> str:
    """Markdown: the headline table, then one row per requested ρ*."""
    labels = [r.label for r in reports]
    curves = [r.calibration.curve if r.calibration else () for r in reports]
    grid = sorted({p.rho for curve in curves for p in curve})
    per_rho = []
    for rho in grid:
        cells = []
        for curve in curves:
            point = next((p for p in curve if p.rho == rho), None)
            cells.append(
                "–"
                if point is None
                else f"{fmt(point.mean_achieved)} ({fmt(point.agreement_rate, 2)})"
            )
        per_rho.append([f"{rho:.1f}", *cells])
    first = reports[0].summary
    opponents = first.run.held_out_opponents or first.run.opponents
    parts = [
        "# Comparison",
        "",
        f"{len(reports[0].episode_keys)} episodes per report, the same paired episodes in "
        f"every report (seed {first.run.seed}); calibration on the "
        f"{first.headline_set.replace('_', '-')} opponents: {', '.join(opponents)}.",
        "",
        markdown_table(["", *labels], _headline_rows(reports)),
        "",
        "## Per requested ρ*: mean achieved ρ (agreement rate)",
        "",
        markdown_table(["ρ*", *labels], per_rho),
        "",
        f"![calibration]({COMPARISON_FILES['plot']})",
        "",
    ]
    return "\n".join(parts)


def plot_comparison(reports: Sequence[ComparedReport], path: Path) -> Path:
    """Left: achieved vs requested ρ* per report (95% CIs, y = x); right: agreement rate."""
    fig = Figure(figsize=(12, 5))
    left, right = fig.subplots(1, 2)
    colors = colormaps["tab10"]
    count = len(reports)
    for i, report in enumerate(reports):
        block = report.calibration
        if block is None:
            continue
        offset = (i - (count - 1) / 2) * 0.01
        calibration_curve(left, block.curve, block.mae, report.label, colors(i), offset)
        right.plot(
            [p.rho for p in block.curve],
            [float("nan") if p.agreement_rate is None else p.agreement_rate for p in block.curve],
            marker="o",
            ms=4,
            color=colors(i),
            label=report.label,
        )
    calibration_axes(left, "Calibration on the same paired episodes")
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
        (tmp / COMPARISON_FILES["markdown"]).write_text(render_comparison(loaded), encoding="utf-8")
        plot_comparison(loaded, tmp / COMPARISON_FILES["plot"])

    atomic_directory(
        target,
        write,
        replaceable=lambda p: not any(p.iterdir()) or (p / COMPARISON_FILES["json"]).is_file(),
        what="comparison directory",
    )
    return data
