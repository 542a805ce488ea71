"""Two reports of the same episodes, compared pair by pair: what did a change of agent do?

Reports made with the same preset and seed play the same scenarios, first movers and opponent
seeds (``janus compare`` checks this too), so an agent option (an acceptance rule, a prompt
format) can be judged on paired differences. Per configuration and opponent set it prints the
mean paired difference in Janus's utility (impasse = 0) and in agreement, each with a seeded
percentile-bootstrap 95% interval, and the raw calibration MAE of each report's sweep.

Decisions are taken on the in-pool rows only: held-out opponents choose nothing.

    python benchmarks/paired_reports.py reports/rules-default reports/rules-stall
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

KEY = ("configuration", "requested_rho", "janus_role", "opponent", "episode_index")


def read_episodes(report: Path) -> dict[tuple, dict[str, str]]:
    with (report / "episodes.csv").open(newline="") as handle:
        return {tuple(row[k] for k in KEY): row for row in csv.DictReader(handle)}


def bootstrap(values: np.ndarray, seed: int = 0, resamples: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(values, (resamples, len(values))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def sweep_mae(rows: list[dict[str, str]]) -> float:
    """MAE over the grid of the mean achieved ρ of agreed sweep episodes."""
    achieved: dict[float, list[float]] = defaultdict(list)
    for row in rows:
        if row["configuration"] == "sweep" and row["outcome"] == "agreement":
            achieved[float(row["requested_rho"])].append(float(row["achieved_rho"]))
    return float(np.mean([abs(np.mean(v) - rho) for rho, v in achieved.items()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    before, after = read_episodes(args.before), read_episodes(args.after)
    shared = sorted(set(before) & set(after))
    if not shared:
        raise SystemExit("the two reports share no episode: same preset and seed?")
    for subset in ("in-pool", "held-out"):
        held = subset == "held-out"
        keys = [k for k in shared if (before[k]["held_out"] in ("1", "True")) == held]
        mae = [sweep_mae([r[k] for k in keys]) for r in (before, after)]
        print(f"{subset}: sweep MAE (raw) {mae[0]:.3f} -> {mae[1]:.3f}")
        for configuration in sorted({k[0] for k in keys}):
            pairs = [k for k in keys if k[0] == configuration]
            utility = np.array(
                [
                    float(after[k]["janus_utility"]) - float(before[k]["janus_utility"])
                    for k in pairs
                ]
            )
            agreed = np.array(
                [
                    (after[k]["outcome"] == "agreement") - (before[k]["outcome"] == "agreement")
                    for k in pairs
                ],
                dtype=float,
            )
            u_low, u_high = bootstrap(utility)
            a_low, a_high = bootstrap(agreed)
            print(
                f"  {configuration:10s} {len(pairs):5d} pairs  utility {utility.mean():+.4f} "
                f"[{u_low:+.4f}, {u_high:+.4f}]  agreement {agreed.mean():+.4f} "
                f"[{a_low:+.4f}, {a_high:+.4f}]"
            )


if __name__ == "__main__":
    main()
