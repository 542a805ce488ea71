"""Data pipeline throughput: `janus generate` (episodes/s) and `janus prepare` (rows/s, memory).

Prints each figure next to the research code's on the same work (generation 650–800
episodes/s; preparation about 11,000 rows/s, peaking at 1.9 GB for 257k rows) and the ratio.
Every timed step runs in a fresh child process, so peak memory (max RSS) is that step's own.

    python benchmarks/bench_data.py                      # 20,000 episodes, then 4x for memory
    python benchmarks/bench_data.py --episodes 10000 --scale 1 --repeat 1   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESEARCH_GEN_EPS = (650.0, 800.0)
RESEARCH_PREP_ROWS = 11_000.0
RESEARCH_PREP_PEAK_GB = 1.9
TARGET_GEN_EPS = 7_000.0
TARGET_PREP_ROWS = 150_000.0

_CHILD = r"""
import json, resource, sys, time

def cpu():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

kind, args = sys.argv[1], json.loads(sys.argv[2])
if kind == "baseline":
    import janus.generate, janus.prepare  # noqa: F401  (imports only: the RSS floor)
    out = {}
elif kind == "generate":
    from janus.generate import generate
    c, t = cpu(), time.perf_counter()
    s = generate(progress=False, **args)
    out = {"seconds": time.perf_counter() - t, "cpu_seconds": cpu() - c, "episodes": s.episodes,
           "records": s.records_written, "agreement_rate": s.agreement_rate}
else:
    from janus.prepare import prepare
    c, t = cpu(), time.perf_counter()
    s = prepare(**args)
    out = {"seconds": time.perf_counter() - t, "cpu_seconds": cpu() - c, "rows": s.total_rows,
           "trajectories": s.total_trajectories}
out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(kind: str, **kwargs) -> dict:
    """Run one step in a fresh interpreter; return its JSON report (incl. its own max RSS)."""
    args = json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()})
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, args], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        sys.exit(f"{kind} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_of(repeat: int, kind: str, **kwargs) -> dict:
    runs = [child(kind, **kwargs) for _ in range(repeat)]
    return min(runs, key=lambda r: r["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for timings")
    parser.add_argument(
        "--scale", type=int, default=4, help="also prepare a corpus this many times larger"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    opts = parser.parse_args()

    work = Path(opts.workdir or tempfile.mkdtemp(prefix="janus-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(
        f"# Janus data pipeline benchmark — {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(f"# workdir {work}; timings are the best of {opts.repeat} runs, each in a fresh process")
    base = child("baseline")["max_rss_mb"]
    print(f"interpreter + janus imports (RSS floor): {base:.0f} MB\n")

    print(f"## generate: {opts.episodes:,} episodes (default pool, impasses kept)")
    paths = {}
    gen = {}
    for workers in (1, 2):
        path = work / f"episodes-w{workers}.jsonl"
        paths[workers] = path
        gen[workers] = best_of(
            opts.repeat,
            "generate",
            out=path,
            episodes=opts.episodes,
            seed=opts.seed,
            workers=workers,
            include_impasse=True,
            overwrite=True,
        )
    same = paths[1].read_bytes() == paths[2].read_bytes()
    low, high = RESEARCH_GEN_EPS
    for workers, r in gen.items():
        eps = r["episodes"] / r["seconds"]
        print(
            f"  workers={workers}: {eps:>9,.0f} episodes/s  ({r['seconds']:.2f} s, "
            f"{r['records']:,} records; {r['episodes'] / r['cpu_seconds']:,.0f} per CPU-second)  "
            f"x{eps / high:.1f}–x{eps / low:.1f} the research code"
        )
    eps2 = gen[2]["episodes"] / gen[2]["seconds"]
    print(
        f"  target >= {TARGET_GEN_EPS:,.0f} episodes/s with 2 workers: "
        f"{'MET' if eps2 >= TARGET_GEN_EPS else 'MISSED'}; 1 and 2 workers byte-identical: "
        f"{same}; file {paths[1].stat().st_size / 1e6:.0f} MB"
    )

    print(f"\n## prepare: {gen[1]['records']:,} rows (k = 8, 5% val, 5% test)")
    prep = best_of(
        opts.repeat, "prepare", source=paths[1], out_dir=work / "prepared", overwrite=True
    )
    rows_s = prep["rows"] / prep["seconds"]
    per_cpu = prep["rows"] / prep["cpu_seconds"]
    print(
        f"  {rows_s:>9,.0f} rows/s ({prep['seconds']:.2f} s; {per_cpu:,.0f} per CPU-second)  "
        f"x{rows_s / RESEARCH_PREP_ROWS:.1f} the research code; "
        f"peak RSS {prep['max_rss_mb']:.0f} MB "
        f"(research: {RESEARCH_PREP_PEAK_GB:.1f} GB for 257k rows)"
    )
    print(
        f"  target >= {TARGET_PREP_ROWS:,.0f} rows/s: "
        f"{'MET' if rows_s >= TARGET_PREP_ROWS else 'MISSED'} (stretch 1,000,000)"
    )

    if opts.scale > 1:
        big = work / "episodes-big.jsonl"
        n = opts.episodes * opts.scale
        child(
            "generate",
            out=big,
            episodes=n,
            seed=opts.seed + 1,
            workers=2,
            include_impasse=True,
            overwrite=True,
        )
        r = child("prepare", source=big, out_dir=work / "prepared-big", overwrite=True)
        big_rows = r["rows"] / r["seconds"]
        print(f"\n## memory vs corpus size: prepare {r['rows']:,} rows ({opts.scale}x)")
        print(
            f"  {big_rows:>9,.0f} rows/s ({r['seconds']:.2f} s); peak RSS {r['max_rss_mb']:.0f} MB "
            f"vs {prep['max_rss_mb']:.0f} MB at 1x (floor {base:.0f} MB): "
            f"{'flat' if r['max_rss_mb'] < 1.25 * prep['max_rss_mb'] else 'GROWS'}"
        )
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"\n# total child CPU time {usage.ru_utime + usage.ru_stime:.1f} s; "
        f"load average now {os.getloadavg()[0]:.1f}"
    )
    print(f"# started {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()
