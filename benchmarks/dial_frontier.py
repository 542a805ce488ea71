"""How far can any negotiator in Janus's seat move the outcome? The dial's frontier, measured.

    python benchmarks/dial_frontier.py --report reports/demo

Reads the report's ``episodes.csv`` (``janus evaluate`` with scripted baselines: every in-pool
script placed in Janus's seat against every opponent, both roles, on the same paired
scenarios as Janus). Per opponent and role it takes the best and the worst mean achieved ρ
(agreed episodes) over the scripts in the seat: the range a negotiator that picked the best
script for each opponent would reach, an optimistic frontier (a minimum over 18 means of a
few episodes each is biased toward the extreme). Beside it, Janus's raw dial at its two ends.

The calibration targets are on the mean achieved ρ pooled over opponents and roles, so a
negotiator whose pooled reach is ``[L, H]`` cannot do better than ``|ρ* − clip(ρ*, L, H)|`` at
each grid point: the script prints that floor on the MAE over the grid and the slope a
perfectly calibrated negotiator clipped to ``[L, H]`` would have.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

GRID = tuple(round(i / 10, 1) for i in range(11))


def read_rows(report: Path) -> list[dict[str, str]]:
    path = report / "episodes.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not any(r["configuration"].startswith("script:") for r in rows):
        raise SystemExit(f"{path}: no scripted baselines (evaluate with scripted_baselines on)")
    return rows


def cell_means(rows: list[dict[str, str]], keep, first: str) -> dict[tuple[str, str, str], float]:
    """Mean achieved ρ of the agreed episodes ``keep`` selects, per (row[first], opponent,
    role)."""
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        if keep(r) and r["outcome"] == "agreement":
            values[(r[first], r["opponent"], r["janus_role"])].append(float(r["achieved_rho"]))
    return {key: statistics.fmean(v) for key, v in values.items()}


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    rows = read_rows(args.report)
    scripts = cell_means(rows, lambda r: r["configuration"].startswith("script:"), "configuration")
    ends = cell_means(  # Janus's raw dial at ρ* = 0 and 1
        rows,
        lambda r: (
            r["configuration"] == "sweep-raw"
            and r["channels"] == "both"
            and r["requested_rho"] in ("0.00", "1.00")
        ),
        "requested_rho",
    )
    held = {r["opponent"]: r["held_out"] == "1" for r in rows}
    print(f"report: {args.report}; scripts in the seat: "
          f"{len({k[0] for k in scripts})}; opponents: {len(held)}")  # fmt: skip
    print(
        "\n| opponents | role | best script (mean ρ) | worst script | Janus raw dial, good end "
        "| Janus raw dial, bad end |"
    )
    print("|:--|:--|--:|--:|--:|--:|")
    reach: dict[str, dict[str, tuple[float, float]]] = {}
    for group, members in (
        ("held-out", [o for o, h in held.items() if h]),
        ("in-pool", [o for o, h in held.items() if not h]),
    ):
        reach[group] = {}
        for role in ("buyer", "seller"):
            best, worst, good, bad = [], [], [], []
            for opp in members:
                cell = [v for (_, o, r), v in scripts.items() if o == opp and r == role]
                if not cell:
                    continue
                low, high = min(cell), max(cell)
                best.append(low if role == "buyer" else high)
                worst.append(high if role == "buyer" else low)
                good_key = ("0.00" if role == "buyer" else "1.00", opp, role)
                bad_key = ("1.00" if role == "buyer" else "0.00", opp, role)
                if good_key in ends:
                    good.append(ends[good_key])
                if bad_key in ends:
                    bad.append(ends[bad_key])
            b, w = statistics.fmean(best), statistics.fmean(worst)
            reach[group][role] = (min(b, w), max(b, w))
            print(
                f"| {group} | {role} | {b:.3f} | {w:.3f} | "
                f"{statistics.fmean(good):.3f} | {statistics.fmean(bad):.3f} |"
            )
    print()
    for group, roles in reach.items():
        low = statistics.fmean(lo for lo, _ in roles.values())
        high = statistics.fmean(hi for _, hi in roles.values())
        clipped = [min(max(g, low), high) for g in GRID]
        floor = statistics.fmean(abs(c - g) for c, g in zip(clipped, GRID, strict=True))
        print(
            f"{group}: pooled reach of the best scripts [{low:.3f}, {high:.3f}]; "
            f"floor on the grid MAE {floor:.3f}; slope of a calibrated, clipped dial "
            f"{slope(list(GRID), clipped):.2f}"
        )


if __name__ == "__main__":
    main()
