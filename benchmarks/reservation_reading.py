"""Does the policy read its own reservation? The first offer against the reservation, measured.

    python benchmarks/reservation_reading.py --report reports/demo
    python benchmarks/reservation_reading.py --workdir work            # controlled probe

Every scripted negotiator anchors its opening on its reservation (``R ± margin · w``), so
across the paired scenarios its first offer follows its reservation closely. A dial whose
first offer does not follow it is choosing a *price level* for ρ, not a position in the
zone of agreement: the same request then lands far apart in scenarios whose zones differ,
and the safety rule, not the policy, keeps the offer on the right side of the reservation.

``--report`` reads a report's ``episodes.csv``: per configuration and Janus's role, the
Pearson correlation between Janus's reservation and its first (and last) offer, how many
distinct first offers it made, and the share of all its offers taken by its 8 most frequent
prices (a policy that reads the numbers it is shown spreads its prices; one that does not
repeats a few).

``--workdir`` (a ``janus demo`` work directory) is the controlled version: the bare base, the
trained adapter's checkpoints and the refined adapter decide the *first move* of an episode
(no history, turn 1 of 20) at ρ 0, 0.5 and 1, for a grid of reservations, raw dial, no rules
and no safety clamp, so nothing but the reservation changes between the prompts.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path

#: The seats the report table shows: Janus's, the bare base, and two scripts for reference.
SHOWN = ("sweep-raw", "sweep", "standard", "base", "script:boulware", "script:tit_for_tat")
RESERVATIONS = {
    "seller": [300.0 + 25.0 * i for i in range(17)],
    "buyer": [600.0 + 25.0 * i for i in range(17)],
}
PROBE_RHOS = (0.0, 0.5, 1.0)


def correlation(xs: list[float], ys: list[float]) -> float:
    """Pearson's r, NaN when either side is constant (a policy that ignores ``xs`` entirely)."""
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:
        return math.nan


def own_reservation(row: dict[str, str]) -> float:
    return float(row["seller_min"] if row["janus_role"] == "seller" else row["buyer_max"])


def report_table(report: Path) -> list[str]:
    """One line per (configuration, role): how Janus's offers depend on its reservation."""
    with (report / "episodes.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    firsts: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    prices: dict[tuple[str, str], Counter[float]] = defaultdict(Counter)
    for row in rows:
        config, role = row["configuration"], row["janus_role"]
        if config not in SHOWN:
            continue
        own = [price for side, price, _ in json.loads(row["offers"]) if side == role]
        if not own:
            continue
        firsts[(config, role)].append((own_reservation(row), own[0], own[-1]))
        prices[(config, role)].update(round(p, 2) for p in own)
    lines = [
        "| seat | role | episodes | corr(R, first offer) | corr(R, last offer) "
        "| distinct first offers | share of offers at its 8 commonest prices |",
        "|:--|:--|--:|--:|--:|--:|--:|",
    ]
    for (config, role), values in sorted(firsts.items()):
        res, first, last = (list(v) for v in zip(*values, strict=True))
        counts = prices[(config, role)]
        top = sum(c for _, c in counts.most_common(8)) / sum(counts.values())
        lines.append(
            f"| {config} | {role} | {len(values)} | {correlation(res, first):+.2f} "
            f"| {correlation(res, last):+.2f} | {len(set(first))} | {top:.2f} |"
        )
    return lines


def probe_agents(workdir: Path) -> dict[str, object]:
    """The policies of a demo work directory, each with no rules, no clamp and no map."""
    from janus.agent import JanusAgent

    base = workdir / "janus-tiny"
    agents: dict[str, object] = {
        "bare base": JanusAgent.from_base(base, rules="none", safety=False)
    }
    checkpoints = sorted((workdir / "run" / "checkpoints").glob("step-*/adapter"))
    adapters = [(c.parent.name, c) for c in checkpoints]
    adapters += [
        ("trained", workdir / "run" / "adapter"),
        ("refined", workdir / "refined" / "adapter"),
    ]
    for name, adapter in adapters:
        if adapter.is_dir():
            agents[name] = JanusAgent.from_pretrained(
                adapter, base, rules="none", safety=False, raw=True, dtype="float32"
            )
    return agents


def probe_table(workdir: Path) -> list[str]:
    """The first move at each reservation of a grid: its correlation with the reservation."""
    import torch

    from janus.domain import Observation, PriceRange, Role

    torch.set_num_threads(1)
    lines = [
        "| policy | role | ρ | corr(R, first offer) | first offers at R = grid[0], grid[4], … |",
        "|:--|:--|--:|--:|:--|",
    ]
    for name, agent in probe_agents(workdir).items():
        for role in (Role.SELLER, Role.BUYER):
            grid = RESERVATIONS[role.value]
            for rho in PROBE_RHOS:
                offers = []
                for reservation in grid:
                    observation = Observation(
                        role=role,
                        reservation=reservation,
                        price_range=PriceRange(),
                        turn=1,
                        max_turns=20,
                        standing_offer=None,
                        history=(),
                    )
                    action = agent.act(observation, rho)
                    offers.append(math.nan if action.price is None else action.price)
                shown = ", ".join(f"{p:.0f}" for p in offers[::4])
                lines.append(
                    f"| {name} | {role.value} | {rho:.1f} | {correlation(grid, offers):+.2f} "
                    f"| {shown} |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--report", type=Path, help="a report directory (episodes.csv)")
    source.add_argument("--workdir", type=Path, help="a janus demo work directory")
    args = parser.parse_args()
    if args.report is not None:
        print(f"report {args.report}")
        lines = report_table(args.report)
    else:
        seller, buyer = RESERVATIONS["seller"], RESERVATIONS["buyer"]
        print(
            f"reservations: seller {seller[0]:.0f}–{seller[-1]:.0f}, "
            f"buyer {buyer[0]:.0f}–{buyer[-1]:.0f}, step 25"
        )
        lines = probe_table(args.workdir)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
