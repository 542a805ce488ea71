"""Calibration of a run's checkpoints on the same sweep episodes: is the dial still forming?

    python benchmarks/calibration_by_step.py --run runs/smollm2-cpu-real \
        [--preset cpu-real] [--sweep-episodes-per-cell 2] [--threads 2]

Every checkpoint under ``RUN/checkpoints`` (``step-N/adapter``) plays the ρ* sweep only (no
configurations, no ablations) of the evaluation preset, with the same seed, so all of them
face the same paired episodes (a prefix of the preset's own cells). Prints one Markdown row
per checkpoint: held-out calibration MAE with its 95% CI, Spearman, slope, intercept,
agreement rate, and the mean achieved ρ per requested ρ*.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from janus.evaluation import apply_evaluation_preset, evaluate
from janus.evaluation.tables import fmt, with_ci


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--preset", default="cpu-real")
    parser.add_argument("--sweep-episodes-per-cell", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    checkpoints = sorted(
        (args.run / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1])
    )
    if not checkpoints:
        raise SystemExit(f"{args.run}/checkpoints holds no step-N checkpoint")
    print(
        "| checkpoint | episodes | MAE [95% CI] | Spearman | slope | intercept | agreement "
        "| mean achieved per ρ* | seconds |"
    )
    print("|:--|--:|--:|--:|--:|--:|--:|:--|--:|")
    with tempfile.TemporaryDirectory(prefix="janus-by-step-") as tmp:
        for checkpoint in checkpoints:
            config = apply_evaluation_preset(
                args.preset,
                {
                    "run": checkpoint,
                    "out": Path(tmp) / checkpoint.name,
                    "configurations": (),
                    "sweep_episodes_per_cell": args.sweep_episodes_per_cell,
                    "threads": args.threads,
                    "seed": args.seed,
                    "plots": False,
                    "progress": False,
                },
            )
            start = time.perf_counter()
            summary = evaluate(config).summary
            seconds = time.perf_counter() - start
            block = summary.calibration
            curve = " ".join(fmt(p.mean_achieved, 2) for p in block.curve)
            print(
                f"| {checkpoint.name} | {summary.run.episodes} | "
                f"{with_ci(block.mae, block.mae_ci)} | {fmt(block.spearman)} | "
                f"{fmt(block.slope)} | {fmt(block.intercept)} | {fmt(block.agreement_rate)} | "
                f"{curve} | {seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
