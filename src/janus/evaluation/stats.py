"""Statistics of the evaluation, in numpy only (no scipy): ranks, Spearman, least squares,
seeded percentile bootstrap, and the calibration block (metrics of docs/ARCHITECTURE.md).

Every function returns ``nan`` (never raises) where a statistic is undefined — an empty
sample, a constant variable — so that a report over a sparse cell still renders; the JSON
writer turns ``nan`` into ``null``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_RESAMPLES",
    "bootstrap_ci",
    "calibration_stats",
    "linear_fit",
    "mean_ci",
    "monotonicity_violations",
    "rankdata",
    "spearman",
    "subseed",
]

DEFAULT_RESAMPLES = 1000
NAN = float("nan")

ArrayLike = Sequence[float] | np.ndarray


def subseed(seed: int, *keys: Any) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys``: each statistic gets its own stream, so
    a confidence interval does not depend on which others were computed before it."""
    text = ":".join(str(k) for k in (seed, *keys))
    digest = hashlib.blake2b(f"janus-stats:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _array(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


# ------------------------------------------------------------------------------- ranks


def rankdata(values: ArrayLike) -> np.ndarray:
    """Ranks 1..n, ties given the average of the ranks they span (scipy's ``"average"``)."""
    x = _array(values)
    n = x.size
    if n == 0:
        return np.empty(0)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start of every run of equal values in the sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], n]  # exclusive
    average = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(n)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2:
        return NAN
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx <= 0.0 or syy <= 0.0:
        return NAN
    return float(np.clip((dx @ dy) / math.sqrt(sxx * syy), -1.0, 1.0))


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rank correlation: Pearson's r of the average ranks (ties handled).

    Pairs where either value is ``nan`` are dropped; ``nan`` if fewer than 2 pairs remain or
    either variable is constant.
    """
    a, b = _array(x), _array(y)
    if a.shape != b.shape:
        raise ValueError(f"x and y differ in length: {a.size} vs {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    return _pearson(rankdata(a[keep]), rankdata(b[keep]))


def linear_fit(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Least-squares ``y ≈ slope·x + intercept``; ``(nan, nan)`` if x is constant or n < 2."""
    a, b = _array(x), _array(y)
    if a.shape != b.shape:
        raise ValueError(f"x and y differ in length: {a.size} vs {b.size}")
    if a.size < 2:
        return NAN, NAN
    dx = a - a.mean()
    sxx = float(dx @ dx)
    if sxx <= 0.0:
        return NAN, NAN
    slope = float(dx @ (b - b.mean())) / sxx
    return slope, float(b.mean() - slope * a.mean())


def monotonicity_violations(means: ArrayLike) -> int:
    """How many times a curve goes down between adjacent points (strictly).

    Points whose mean is ``nan`` (no agreement at that ρ*) are skipped: the comparison is
    between consecutive *defined* points.
    """
    m = _array(means)
    m = m[~np.isnan(m)]
    return int(np.count_nonzero(np.diff(m) < 0.0))


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    values: ArrayLike,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic (default: the mean), seeded.

    ``statistic`` maps a ``[n_resamples, n]`` array of resamples to ``n_resamples`` values
    (vectorised; e.g. ``lambda a: a.mean(axis=1)``). An empty sample gives ``(nan, nan)``;
    a single value gives a zero-width interval at it.
    """
    x = _array(values)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if x.size == 0:
        return NAN, NAN
    stat = statistic if statistic is not None else (lambda a: a.mean(axis=1))
    if x.size == 1:
        value = float(stat(x.reshape(1, 1))[0])
        return value, value
    rng = np.random.default_rng(seed)
    index = rng.integers(0, x.size, size=(n_resamples, x.size))
    samples = np.asarray(stat(x[index]), dtype=np.float64)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_ci(
    values: ArrayLike,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(mean, low, high)`` with a seeded percentile bootstrap interval of the mean."""
    x = _array(values)
    if x.size == 0:
        return NAN, NAN, NAN
    low, high = bootstrap_ci(x, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return float(x.mean()), low, high


# ------------------------------------------------------------------------- calibration


def calibration_stats(
    requested: ArrayLike,
    achieved: ArrayLike,
    agreed: Sequence[bool] | np.ndarray,
    grid: ArrayLike,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The calibration block (docs/ARCHITECTURE.md, metrics) from one row per episode of a sweep.

    ``requested`` is ρ* of every episode (all on ``grid``), ``achieved`` its achieved ρ
    (ignored where ``agreed`` is false). Returns:

    - ``curve``: per grid point, episodes, agreements, agreement rate, mean achieved ρ over
      agreements and its bootstrap interval;
    - ``mae``: mean over the grid points that have agreements of |mean achieved − ρ*|, with a
      bootstrap interval (episodes resampled within each grid point); ``grid_points_used``;
    - ``per_episode_mae``: mean |achieved − ρ*| over all agreed episodes (includes the spread
      between opponents);
    - ``spearman`` between ρ* and the curve's means; ``slope``/``intercept``: least squares
      of achieved on ρ* over agreed episodes, the slope with a bootstrap interval (agreed
      episodes resampled as pairs); ``monotonicity_violations`` of the curve;
    - ``agreement_rate`` over all episodes of the sweep.
    """
    req, ach = _array(requested), _array(achieved)
    ok = np.asarray(agreed, dtype=bool).reshape(-1)
    points, on_grid = _grid_membership(req, ach, ok, grid)
    alpha = (1.0 - confidence) / 2.0
    curve = _curve(points, on_grid, ach, ok, n_resamples=n_resamples, alpha=alpha, seed=seed)
    used = ~np.isnan(curve.means)
    mae, mae_ci = _mae(curve, points, used, alpha)
    req_ok, ach_ok = req[ok], ach[ok]
    slope, intercept = linear_fit(req_ok, ach_ok)
    slope_ci = _slope_ci(req_ok, ach_ok, slope, n_resamples=n_resamples, alpha=alpha, seed=seed)
    return {
        "grid": [float(v) for v in points],
        "curve": curve.entries,
        "episodes": int(req.size),
        "agreements": int(ok.sum()),
        "agreement_rate": float(ok.mean()) if ok.size else NAN,
        "mae": mae,
        "mae_ci": mae_ci,
        "grid_points_used": int(used.sum()),
        "per_episode_mae": float(np.abs(ach_ok - req_ok).mean()) if req_ok.size else NAN,
        "spearman": spearman(points[used], curve.means[used]),
        "slope": slope,
        "slope_ci": slope_ci,
        "intercept": intercept,
        "monotonicity_violations": monotonicity_violations(curve.means),
    }


def _grid_membership(
    req: np.ndarray, ach: np.ndarray, ok: np.ndarray, grid: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """The grid and which of its points each episode requested: ``[episodes, points]``.

    A request off the grid is an error, not a silently dropped episode.
    """
    if not (req.shape == ach.shape == ok.shape):
        raise ValueError("requested, achieved and agreed must have the same length")
    points = _array(grid)
    on_grid = np.isclose(req[:, None], points[None, :], atol=1e-9)
    if req.size and not on_grid.any(axis=1).all():
        stray = sorted(set(req[~on_grid.any(axis=1)].tolist()))[:5]
        raise ValueError(f"requested ρ values {stray} are not on the grid {points.tolist()}")
    return points, on_grid


@dataclass(frozen=True)
class _Curve:
    """The calibration curve, with the bootstrap resamples of its means kept for the MAE's
    interval (``nan`` columns at grid points without an agreement)."""

    entries: list[dict[str, Any]]
    means: np.ndarray
    boot_means: np.ndarray


def _curve(
    points: np.ndarray,
    on_grid: np.ndarray,
    ach: np.ndarray,
    ok: np.ndarray,
    *,
    n_resamples: int,
    alpha: float,
    seed: int,
) -> _Curve:
    """Per grid point: counts, agreement rate, mean achieved ρ and its interval (each point
    resampled from its own seeded stream)."""
    entries: list[dict[str, Any]] = []
    means = np.full(points.size, NAN)
    boot_means = np.full((n_resamples, points.size), NAN)
    for g, target in enumerate(points):
        in_point = on_grid[:, g]
        values = ach[in_point & ok]
        n_all, n_ok = int(in_point.sum()), int(values.size)
        entry: dict[str, Any] = {
            "rho": float(target),
            "episodes": n_all,
            "agreements": n_ok,
            "agreement_rate": n_ok / n_all if n_all else NAN,
            "mean_achieved": NAN,
            "ci_low": NAN,
            "ci_high": NAN,
        }
        if n_ok:
            means[g] = float(values.mean())
            rng = np.random.default_rng(subseed(seed, "curve", g))
            resampled = values[rng.integers(0, n_ok, size=(n_resamples, n_ok))].mean(axis=1)
            boot_means[:, g] = resampled
            low, high = np.quantile(resampled, [alpha, 1.0 - alpha])
            entry.update(mean_achieved=means[g], ci_low=float(low), ci_high=float(high))
        entries.append(entry)
    return _Curve(entries=entries, means=means, boot_means=boot_means)


def _mae(
    curve: _Curve, points: np.ndarray, used: np.ndarray, alpha: float
) -> tuple[float, list[float]]:
    """The curve's MAE over the ``used`` grid points and its interval, from the per-point
    resamples (so the interval reflects episodes resampled within each point)."""
    mae = float(np.abs(curve.means[used] - points[used]).mean()) if used.any() else NAN
    if used.any():
        boot_mae = np.abs(curve.boot_means[:, used] - points[used]).mean(axis=1)
        mae_ci = [float(v) for v in np.quantile(boot_mae, [alpha, 1.0 - alpha])]
    else:
        mae_ci = [NAN, NAN]
    return mae, mae_ci


def _slope_ci(
    req_ok: np.ndarray,
    ach_ok: np.ndarray,
    slope: float,
    *,
    n_resamples: int,
    alpha: float,
    seed: int,
) -> list[float]:
    """The slope's bootstrap interval, agreed episodes resampled as (ρ*, achieved) pairs;
    resamples with a constant ρ* (no slope) are left out."""
    if req_ok.size < 2 or math.isnan(slope):
        return [NAN, NAN]
    rng = np.random.default_rng(subseed(seed, "slope"))
    index = rng.integers(0, req_ok.size, size=(n_resamples, req_ok.size))
    xs, ys = req_ok[index], ach_ok[index]
    dx = xs - xs.mean(axis=1, keepdims=True)
    sxx = (dx * dx).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slopes = (dx * (ys - ys.mean(axis=1, keepdims=True))).sum(axis=1) / sxx
    slopes = slopes[np.isfinite(slopes)]
    if not slopes.size:
        return [NAN, NAN]
    return [float(v) for v in np.quantile(slopes, [alpha, 1.0 - alpha])]
