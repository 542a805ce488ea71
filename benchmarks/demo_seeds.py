"""The demo's headline figures over seeds: mean ± sd and a 95% interval across seeds.

Runs ``janus demo`` (janus-tiny) once per seed, each in its own work directory (corpus,
base, training, refinement and evaluation all follow the seed), then aggregates the held-out
calibration, agreement per ρ*, and the Standard configuration against the scripts and the
base. A figure that moves from run to run is reported as mean ± sd over the seeds with the
Student-t 95% interval of the mean; each seed's own bootstrap interval is in its report.

    python benchmarks/demo_seeds.py --seeds 0 1 2 --root work-seeds --out benchmarks/seeds.json

``--reuse`` aggregates existing reports without running anything.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from janus.evaluation import EvaluationSummary, load_summary

# Two-sided 97.5% quantiles of Student's t for small samples (df = n − 1).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306}


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def headline(summary: EvaluationSummary) -> dict[str, float]:
    """The figures issue 12 sets goals on, from one report's summary."""
    held = summary.calibration
    raw = summary.calibration_raw.held_out if summary.calibration_raw else None
    configurations = summary.configurations
    standard = configurations["standard"]
    scripts = [c.all for c in configurations.values() if c.kind == "scripted"]
    best_script = max(scripts, key=lambda m: _or_nan(m.utility)) if scripts else None
    habits = summary.habits.get("janus")
    figures = {
        "held_out_mae": held.mae,
        "held_out_slope": held.slope,
        "held_out_spearman": held.spearman,
        "held_out_violations": held.monotonicity_violations,
        "held_out_agreement": held.agreement_rate,
        "raw_held_out_mae": raw.mae if raw else math.nan,
        "raw_held_out_slope": raw.slope if raw else math.nan,
        "standard_utility": standard.all.utility,
        "standard_agreement": standard.all.agreement_rate,
        "standard_minus_base": standard.vs_base.utility_diff if standard.vs_base else math.nan,
        "best_script_utility": best_script.utility if best_script else math.nan,
        "walked_away_sweep": habits.walked_away if habits else math.nan,
        "worse_counters_janus": habits.worse_counters if habits else math.nan,
        "invalid_actions": summary.invalid_actions,
        "outside_zopa": summary.agreements_outside_zopa,
    }
    for point in held.curve:
        figures[f"agreement_at_{point.rho:.1f}"] = point.agreement_rate
    return {key: _or_nan(value) for key, value in figures.items()}


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in per_seed[0]:
        values = [s[key] for s in per_seed if s[key] is not None and not math.isnan(s[key])]
        if not values:
            continue
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else math.nan
        half = T_975.get(len(values) - 1, 1.96) * sd / math.sqrt(len(values))
        out[key] = {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path("work-seeds"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/seeds.json"))
    parser.add_argument("--reuse", action="store_true", help="only aggregate existing reports")
    args = parser.parse_args()

    from janus.demo import run_demo

    per_seed, seconds = [], {}
    for seed in args.seeds:
        report = args.root / f"seed-{seed}" / "report"
        if not args.reuse:
            start = time.perf_counter()
            run_demo(workdir=args.root / f"seed-{seed}", out=report, seed=seed, progress=False)
            seconds[seed] = time.perf_counter() - start
        per_seed.append(headline(load_summary(report)))
    result = {"seeds": args.seeds, "seconds": seconds, "per_seed": per_seed}
    result["aggregate"] = aggregate(per_seed)
    args.out.write_text(json.dumps(result, indent=2))
    for key, a in result["aggregate"].items():
        print(
            f"{key:28s} {a['mean']:8.3f} ± {a['sd']:.3f}   95% CI [{a['ci_low']:.3f}, "
            f"{a['ci_high']:.3f}]   per seed: " + ", ".join(f"{s[key]:.3f}" for s in per_seed)
        )
    if seconds:
        print("demo minutes per seed: " + ", ".join(f"{v / 60:.1f}" for v in seconds.values()))


if __name__ == "__main__":
    main()
