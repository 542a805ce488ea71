"""The report's figures, drawn from the summary.

Figures are built with :class:`matplotlib.figure.Figure` directly, never pyplot: PNGs are
rendered by the Agg canvas, no display is needed, and the caller's global backend and
pyplot state are left alone.

- ``calibration.png``: achieved vs requested ρ with 95% intervals and the y = x line; left,
  held-out / in-pool / all opponents; right, the channel ablations on the headline set.
- ``utility.png``: mean normalised utility per configuration with 95% intervals, and a
  configuration × opponent heat map.
- ``concession.png``: mean position of Janus's offers in the ZOPA vs turn, for several ρ*.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from janus.evaluation.summary_types import SUBSETS, CurvePoint, EvaluationSummary

__all__ = [
    "PLOT_FILES",
    "calibration_axes",
    "calibration_curve",
    "plot_calibration",
    "plot_concession",
    "plot_utility",
    "write_plots",
]

PLOT_FILES = {
    "calibration": "calibration.png",
    "utility": "utility.png",
    "concession": "concession.png",
}
SUBSET_LABELS = {"held_out": "held-out opponents", "in_pool": "in-pool opponents", "all": "all"}
CHANNEL_LABELS = {"both": "text + weights", "text": "text only", "weights": "weights only"}


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def calibration_curve(
    ax,
    curve: Sequence[CurvePoint],
    mae: float | None,
    label: str,
    color,
    offset: float = 0.0,
) -> None:
    """Mean achieved ρ per requested ρ* with its 95% interval; the legend shows the MAE."""
    x = np.array([p.rho for p in curve]) + offset
    y = np.array([_nan(p.mean_achieved) for p in curve])
    low = np.array([_nan(p.ci_low) for p in curve])
    high = np.array([_nan(p.ci_high) for p in curve])
    err = np.vstack([np.clip(y - low, 0, None), np.clip(high - y, 0, None)])
    text = f"{label} (MAE {mae:.3f})" if mae is not None else label
    ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, lw=1.5, color=color, label=text)


def calibration_axes(ax, title: str) -> None:
    """The y = x line, limits, labels and legend of a calibration panel."""
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="y = x")
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel("requested ρ*")
    ax.set_ylabel("achieved ρ (mean over agreements)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def plot_calibration(summary: EvaluationSummary, path: Path) -> Path | None:
    both = summary.ablations.get("both")
    if both is None:
        return None
    headline = summary.headline_set
    fig = Figure(figsize=(12, 5))
    left, right = fig.subplots(1, 2, sharey=True)
    colors = colormaps["tab10"]
    for i, subset in enumerate(SUBSETS):
        block = summary.played.subset(subset)
        if block is not None:
            offset = (i - 1) * 0.008
            calibration_curve(
                left, block.curve, block.mae, SUBSET_LABELS[subset], colors(i), offset
            )
    raw = summary.calibration_raw.subset(headline) if summary.calibration_raw else None
    if summary.calibrated and raw is not None:
        label = f"{SUBSET_LABELS[headline]}, raw dial"
        calibration_curve(left, raw.curve, raw.mae, label, "lightgrey", offset=0.012)
    title = "calibrated dial" if summary.calibrated else "text + weights"
    calibration_axes(left, f"Calibration ({title})")
    for i, channels in enumerate(("both", "text", "weights")):
        subsets = summary.ablations.get(channels)
        block = subsets.subset(headline) if subsets is not None else None
        if block is not None:
            label, offset = CHANNEL_LABELS[channels], (i - 1) * 0.008
            calibration_curve(right, block.curve, block.mae, label, colors(i + 3), offset)
    calibration_axes(right, f"Channel ablations ({SUBSET_LABELS[headline]})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_utility(summary: EvaluationSummary, path: Path) -> Path | None:
    configurations = summary.configurations
    if not configurations:
        return None
    names = list(configurations)
    opponents = list(summary.run.opponents)
    held = set(summary.run.held_out_opponents)
    fig = Figure(figsize=(7 + 0.45 * len(opponents), 1.5 + 0.32 * len(names)))
    bars, heat = fig.subplots(
        1,
        2,
        gridspec_kw={"width_ratios": [1, max(1.5, len(opponents) / 8)]},
    )
    y = np.arange(len(names))
    overall = [configurations[n].all for n in names]
    means = np.array([_nan(m.utility) for m in overall])
    ci = np.array([[_nan(m.utility_ci.low), _nan(m.utility_ci.high)] for m in overall])
    err = np.vstack([np.clip(means - ci[:, 0], 0, None), np.clip(ci[:, 1] - means, 0, None)])
    palette = {"janus": "tab:blue", "base": "tab:orange", "scripted": "tab:grey"}
    colors = [palette.get(configurations[n].kind, "tab:grey") for n in names]
    bars.barh(y, means, xerr=err, color=colors, capsize=2)
    bars.set_yticks(y, names, fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel("mean normalised utility (impasse = 0), 95% CI")
    bars.set_title("Utility by configuration (all opponents)")
    bars.grid(axis="x", alpha=0.3)

    grid = np.array(
        [[_nan(configurations[n].by_opponent[o].utility) for o in opponents] for n in names]
    )
    image = heat.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    heat.set_xticks(
        np.arange(len(opponents)),
        [f"{o}*" if o in held else o for o in opponents],
        rotation=70,
        ha="right",
        fontsize=7,
    )
    heat.set_yticks(y, names, fontsize=8)
    heat.set_title("Utility by opponent (* held out)")
    fig.colorbar(image, ax=heat, fraction=0.03, pad=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _pick(keys: list[str], targets=(0.0, 0.2, 0.5, 0.8, 1.0)) -> list[str]:
    values = sorted(keys, key=float)
    chosen: list[str] = []
    for t in targets:
        best = min(values, key=lambda k: abs(float(k) - t))
        if best not in chosen:
            chosen.append(best)
    return chosen


def plot_concession(summary: EvaluationSummary, path: Path) -> Path | None:
    concession = summary.concession
    if not (concession.buyer or concession.seller):
        return None
    turns = np.array(concession.turns)
    fig = Figure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    cmap = colormaps["plasma"]
    for ax, role in zip(axes, ("buyer", "seller"), strict=True):
        curves = concession.of(role)
        if curves:
            for key in _pick(list(curves)):
                values = np.array([_nan(v) for v in curves[key]])
                color = cmap(0.85 * float(key))  # plasma's bright yellow end is unreadable
                ax.plot(turns, values, marker="o", ms=3, color=color, label=f"ρ* = {key}")
                ax.axhline(float(key), color=color, ls=":", lw=1)
        ax.axhspan(0.0, 1.0, color="grey", alpha=0.08)
        ax.set_title(f"Janus as {role}")
        ax.set_xlabel("turn")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("offer position in the ZOPA (0 = SellerMin, 1 = BuyerMax)")
    fig.suptitle("Concession curves (mean of Janus's offers; dotted: ρ*; band: ZOPA)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_plots(summary: EvaluationSummary, directory: Path) -> dict[str, Path]:
    """Draw every figure that the summary has data for; returns name → path."""
    drawn: dict[str, Path] = {}
    for name, function in (
        ("calibration", plot_calibration),
        ("utility", plot_utility),
        ("concession", plot_concession),
    ):
        path = function(summary, Path(directory) / PLOT_FILES[name])
        if path is not None:
            drawn[name] = path
    return drawn
