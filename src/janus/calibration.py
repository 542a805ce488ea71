"""The calibration map: from the ρ a user asks for to the dial value that lands there.

A trained dial is monotone but not the identity: asked for ρ* = 0.1 it may land at 0.25 on
average. After training, an in-pool sweep (never the held-out opponents) measures the mean
achieved ρ at every grid value of the raw dial, per role; an isotonic regression (scipy)
makes that curve monotone, and the agent plays the curve's inverse: to land at ρ*, it feeds
the dial the raw value whose fitted outcome is ρ*.

The curve only covers what the dial can reach: ``[f(0), f(1)]`` per role. A request outside
that range is played at the nearest end and *said* (``inverse`` returns ``inside=False``; the
agent counts it and ``janus play`` prints it), never clipped silently.

The map is a small JSON file (``calibration.json``) next to the adapter's weights.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_FILE = "calibration.json"
FORMAT = "janus-calibration"
FORMAT_VERSION = 1
ROLES = ("buyer", "seller")


@dataclass(frozen=True)
class RoleCurve:
    """One role's fitted curve: ``fitted[i]`` is the expected achieved ρ at ``grid[i]``."""

    grid: tuple[float, ...]
    fitted: tuple[float, ...]
    raw_means: tuple[float, ...]
    episodes: tuple[int, ...]
    agreements: tuple[int, ...]

    @property
    def reachable(self) -> tuple[float, float]:
        return self.fitted[0], self.fitted[-1]

    def forward(self, rho: float) -> float:
        """The expected achieved ρ when the dial is set to ``rho`` (linear between points)."""
        return float(np.interp(rho, self.grid, self.fitted))

    def inverse(self, target: float) -> tuple[float, bool]:
        """The dial value whose expected outcome is ``target``, and whether it is reachable.

        Where the fitted curve is flat at the target (isotonic regression pools adjacent
        points), the middle of the flat run is returned: every dial value there predicts the
        same outcome, and the middle is the least sensitive to the fit's noise.
        """
        low, high = self.reachable
        if target < low:
            return self.grid[0], math.isclose(target, low, abs_tol=1e-9)
        if target > high:
            return self.grid[-1], math.isclose(target, high, abs_tol=1e-9)
        fitted = np.asarray(self.fitted)
        grid = np.asarray(self.grid)
        flat = np.flatnonzero(np.isclose(fitted, target, atol=1e-12))
        if flat.size:
            return float((grid[flat[0]] + grid[flat[-1]]) / 2), True
        upper = int(np.searchsorted(fitted, target, side="right"))
        lower = upper - 1
        span = fitted[upper] - fitted[lower]
        weight = (target - fitted[lower]) / span
        return float(grid[lower] + weight * (grid[upper] - grid[lower])), True


@dataclass(frozen=True)
class CalibrationMap:
    """Per-role fitted curves plus where they came from (opponents, seed, episodes)."""

    curves: Mapping[str, RoleCurve]
    opponents: tuple[str, ...]
    seed: int
    details: Mapping[str, Any] = field(default_factory=dict)

    def curve(self, role: str) -> RoleCurve:
        try:
            return self.curves[str(role)]
        except KeyError:
            raise ValueError(f"the calibration map has no curve for role {role!r}") from None

    def inverse(self, rho: float, role: str) -> tuple[float, bool]:
        return self.curve(role).inverse(float(rho))

    def reachable(self, role: str) -> tuple[float, float]:
        return self.curve(role).reachable

    # ------------------------------------------------------------------------ storage

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "opponents": list(self.opponents),
            "seed": self.seed,
            "details": dict(self.details),
            "curves": {
                role: {
                    "grid": list(c.grid),
                    "fitted": list(c.fitted),
                    "raw_means": [None if math.isnan(v) else v for v in c.raw_means],
                    "episodes": list(c.episodes),
                    "agreements": list(c.agreements),
                    "reachable": list(c.reachable),
                }
                for role, c in self.curves.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "calibration map") -> CalibrationMap:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{where}: not a {FORMAT} v{FORMAT_VERSION} file "
                f"(format={data.get('format')!r}, version={data.get('format_version')!r})"
            )
        curves = {}
        for role, c in data["curves"].items():
            grid = tuple(float(v) for v in c["grid"])
            fitted = tuple(float(v) for v in c["fitted"])
            if len(grid) < 2 or len(fitted) != len(grid):
                raise ValueError(f"{where}: curve {role!r} needs >= 2 points, one per grid value")
            if any(b < a for a, b in itertools.pairwise(fitted)):
                raise ValueError(f"{where}: curve {role!r} is not monotone")
            curves[role] = RoleCurve(
                grid=grid,
                fitted=fitted,
                raw_means=tuple(math.nan if v is None else float(v) for v in c["raw_means"]),
                episodes=tuple(int(v) for v in c["episodes"]),
                agreements=tuple(int(v) for v in c["agreements"]),
            )
        return cls(
            curves=curves,
            opponents=tuple(data.get("opponents", ())),
            seed=int(data.get("seed", 0)),
            details=dict(data.get("details", {})),
        )

    def save(self, directory: str | Path) -> Path:
        """Write ``calibration.json`` atomically (temp file, then rename)."""
        path = Path(directory) / CALIBRATION_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> CalibrationMap | None:
        """The map saved in ``directory``, or ``None`` when it has none."""
        path = Path(directory) / CALIBRATION_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        return cls.from_json(data, str(path))


def fit_role_curve(
    grid: Sequence[float],
    requested: Iterable[float],
    achieved: Iterable[float | None],
) -> RoleCurve:
    """Fit one role's curve from sweep episodes (``achieved`` is ``None`` for an impasse).

    The isotonic fit weighs each grid point by its number of agreements; a grid point with
    none takes its neighbours' value (linear interpolation of the fitted points), so the
    map never rests on an empty cell.
    """
    from scipy.optimize import isotonic_regression

    grid = tuple(float(g) for g in grid)
    sums = dict.fromkeys(grid, 0.0)
    episodes = dict.fromkeys(grid, 0)
    agreements = dict.fromkeys(grid, 0)
    for rho, got in zip(requested, achieved, strict=True):
        key = min(grid, key=lambda g, r=float(rho): abs(g - r))
        episodes[key] += 1
        if got is not None and not math.isnan(got):
            sums[key] += float(got)
            agreements[key] += 1
    means = np.array([sums[g] / agreements[g] if agreements[g] else math.nan for g in grid])
    known = ~np.isnan(means)
    if known.sum() < 2:
        raise ValueError("cannot fit a calibration curve: fewer than 2 grid points have deals")
    weights = np.array([agreements[g] for g in grid], dtype=np.float64)
    fit = isotonic_regression(means[known], weights=weights[known], increasing=True).x
    fitted = np.interp(np.asarray(grid), np.asarray(grid)[known], fit)
    return RoleCurve(
        grid=grid,
        fitted=tuple(float(v) for v in fitted),
        raw_means=tuple(float(v) for v in means),
        episodes=tuple(episodes[g] for g in grid),
        agreements=tuple(agreements[g] for g in grid),
    )


def fit_calibration_map(
    rows: Iterable[tuple[str, float, float | None]],
    grid: Sequence[float],
    *,
    opponents: Sequence[str],
    seed: int,
    details: Mapping[str, Any] | None = None,
) -> CalibrationMap:
    """A map from ``(role, requested ρ, achieved ρ or None)`` sweep rows, one curve per role."""
    by_role: dict[str, tuple[list[float], list[float | None]]] = {r: ([], []) for r in ROLES}
    for role, requested, achieved in rows:
        by_role[str(role)][0].append(float(requested))
        by_role[str(role)][1].append(achieved)
    curves = {
        role: fit_role_curve(grid, requested, achieved)
        for role, (requested, achieved) in by_role.items()
        if requested
    }
    return CalibrationMap(
        curves=curves, opponents=tuple(opponents), seed=seed, details=dict(details or {})
    )
