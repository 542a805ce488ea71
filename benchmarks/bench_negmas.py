"""A NegMAS tournament with Janus: batched decisions (threads + DecisionBatcher) vs one by one.

    python benchmarks/bench_negmas.py --run demo/refined-filtered [--negotiations 1000]
        [--unbatched 100] [--njobs 128] [--threads 1]

NegMAS's own ``cartesian_tournament``: Janus at 5 ρ against 5 of NegMAS's built-in
negotiators, each on ``negotiations / 50`` scenarios of Janus's domain in both roles
(``price_scenarios``), 20 actions per negotiation (``one_offer_per_step=True``). Batched:
``executor="thread"`` with ``--njobs`` threads and one shared ``DecisionBatcher`` (every
pending Janus decision of the running negotiations in one forward pass). Unbatched:
``njobs=-1``, one forward pass per decision, on the first ``--unbatched`` scenarios' share
of the same negotiations (the two are compared negotiation by negotiation). Without
``--run``, a random janus-tiny with a fresh adapter is built (as bench_evaluate.py does).
Target: 1,000 negotiations with janus-tiny in under 2 minutes on 2 cores, batched.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from negmas.sao import negotiators as builtin
from negmas.tournaments.neg import cartesian_tournament

from janus.agent import JanusAgent
from janus.integrations.negmas import janus_competitors, price_scenarios
from janus.integrations.negmas.tournament import tournament_kwargs

RHOS = (0.1, 0.3, 0.5, 0.7, 0.9)
OPPONENTS = (
    "BoulwareTBNegotiator",
    "LinearTBNegotiator",
    "ConcederTBNegotiator",
    "MiCRONegotiator",
    "NaiveTitForTatNegotiator",
)


def play(agent, n_scenarios: int, batched: bool, njobs: int, seed: int):
    scenarios = price_scenarios(n_scenarios, seed=seed)
    competitors = janus_competitors(agent, RHOS, batched=batched)
    start = time.perf_counter()
    results = cartesian_tournament(
        **competitors,
        opponents=[getattr(builtin, name) for name in OPPONENTS],
        scenarios=scenarios,
        **tournament_kwargs(),
        executor="thread",
        njobs=njobs if batched else -1,
    )
    seconds = time.perf_counter() - start
    batcher = competitors["competitor_params"][0]["batcher"]
    return results, seconds, (batcher.batch_sizes if batcher else None)


def outcomes(results) -> dict:
    """Negotiation → agreement, keyed by who played which side of which scenario."""
    table = {}
    for _, d in results.details.iterrows():
        key = (tuple(d["partners"]), tuple(round(float(v), 9) for v in d["reserved_values"]))
        table[key] = None if d["agreement"] is None else tuple(d["agreement"])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--negotiations", type=int, default=1000)
    parser.add_argument("--unbatched", type=int, default=None, help="default: all of them")
    parser.add_argument("--njobs", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    per_scenario = 2 * len(RHOS) * len(OPPONENTS)
    if args.negotiations % per_scenario:
        parser.error(f"--negotiations must be a multiple of {per_scenario}")
    unbatched = args.negotiations if args.unbatched is None else args.unbatched
    if unbatched % per_scenario or not 0 <= unbatched <= args.negotiations:
        parser.error(f"--unbatched must be a multiple of {per_scenario} up to --negotiations")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.run is None:
            from bench_evaluate import build_fresh_run

            run = build_fresh_run(Path(tmp))
        else:
            run = args.run
        agent = JanusAgent.from_pretrained(run)
        batched, b_seconds, sizes = play(
            agent, args.negotiations // per_scenario, True, args.njobs, args.seed
        )
        rows = [("batched (threads + DecisionBatcher)", len(batched.details), b_seconds)]
        same = None
        if unbatched:
            single, s_seconds, _ = play(agent, unbatched // per_scenario, False, 0, args.seed)
            rows.append(("one decision at a time (njobs=-1)", len(single.details), s_seconds))
            mine, theirs = outcomes(batched), outcomes(single)
            same = sum(mine.get(k, "missing") == v for k, v in theirs.items()), len(theirs)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at the end; torch threads {args.threads}"
    )
    print(f"run: {args.run or 'random janus-tiny'}; rho {RHOS}; opponents {', '.join(OPPONENTS)}")
    print("\n| mode | negotiations | seconds | negotiations/s |")
    print("|:--|--:|--:|--:|")
    for name, n, seconds in rows:
        print(f"| {name} | {n} | {seconds:.1f} | {n / seconds:.2f} |")
    if len(rows) == 2:
        ratio = (rows[0][1] / rows[0][2]) / (rows[1][1] / rows[1][2])
        print(f"\nspeed-up (negotiations/s) {ratio:.1f}x; identical outcomes {same[0]}/{same[1]}")
    print(
        f"forward passes (batched): {len(sizes)} for {sum(sizes)} decisions, "
        f"mean batch {sum(sizes) / max(1, len(sizes)):.1f}, largest {max(sizes, default=0)}"
    )
    print(f"target (1,000 negotiations batched in < 120 s): {b_seconds:.1f} s")


if __name__ == "__main__":
    main()
