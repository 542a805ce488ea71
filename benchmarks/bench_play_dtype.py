"""Batched play with a float32 base vs a bfloat16 base, side by side on the same episodes.

    python benchmarks/bench_play_dtype.py [--run demo/refined] [--episodes 1000] [--threads 1]

Both agents are the same adapter loaded through ``JanusAgent.from_pretrained`` (raw dial,
greedy), one with ``dtype="float32"``, one with ``dtype="bfloat16"``; they play the same
paired sweep episodes as ``bench_evaluate.py``. Prints seconds and episodes/s of both, the
ratio, and how far apart the outcomes are (identical episodes, agreement rates, mean |Δρ| of
the episodes both closed, calibration MAE of each against the requests). Without ``--run``,
a random janus-tiny base and a fresh adapter are built (timing only: its outcomes mean
nothing). On a CPU without AVX512-BF16/AMX, bf16 is emulated and expected to be slower:
the script prints whether this CPU has it (``janus.runtime.native_bf16``).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_evaluate import build_fresh_run, sweep_specs
from janus.agent import JanusAgent
from janus.evaluation import play_episodes
from janus.runtime import native_bf16


def grid_mae(records) -> float:
    """Mean over requested ρ of |mean achieved − requested| (agreements only)."""
    by_rho: dict[float, list[float]] = {}
    for r in records:
        if r.agreement:
            by_rho.setdefault(float(r.requested_rho), []).append(float(r.achieved_rho))
    return float(np.mean([abs(np.mean(v) - rho) for rho, v in by_rho.items()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="A trained run or adapter dir.")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    specs = sweep_specs(args.episodes, args.seed)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run if args.run is not None else build_fresh_run(Path(tmp), args.seed)
        for dtype in ("float32", "bfloat16"):
            agent = JanusAgent.from_pretrained(run, raw=True, seed=args.seed, dtype=dtype)
            start = time.perf_counter()
            records = play_episodes(specs, agent, batch_size=1024, progress=True)
            results[dtype] = (time.perf_counter() - start, records)

    (t32, r32), (t16, r16) = results["float32"], results["bfloat16"]
    same = sum(
        (a.agreement, a.final_price) == (b.agreement, b.final_price)
        for a, b in zip(r32, r16, strict=True)
    )
    both = [(a, b) for a, b in zip(r32, r16, strict=True) if a.agreement and b.agreement]
    gap = float(np.mean([abs(a.achieved_rho - b.achieved_rho) for a, b in both]))
    where = f"{platform.processor() or platform.machine()}, {args.threads} thread(s)"
    model = f"trained run {args.run}" if args.run else "random janus-tiny + fresh adapter"
    print()
    print("```markdown")
    print(f"{model}; {where}; native bf16: {native_bf16()}; {len(specs)} paired sweep episodes.")
    print()
    print("| base dtype | seconds | episodes/s | agreement | grid MAE (raw) |")
    print("|:--|--:|--:|--:|--:|")
    for name, (t, records) in results.items():
        agreement = sum(r.agreement for r in records) / len(records)
        print(
            f"| {name} | {t:.1f} | {len(records) / t:.1f} | {agreement:.3f} | "
            f"{grid_mae(records):.4f} |"
        )
    print()
    print(
        f"bf16 / fp32 speed: {t32 / t16:.2f}x; identical outcomes {same}/{len(specs)}; "
        f"mean |Δρ| where both closed ({len(both)}): {gap:.4f}."
    )
    print("```")


if __name__ == "__main__":
    main()
