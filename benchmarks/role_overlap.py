"""Is Janus right about its side? Offers on the wrong side of the reservation, by prompt format.

A buyer and a seller with the same reservation see the same version-1 prompt at their opening
(no history yet to infer the side from). With the default domain their reservations rarely
meet (BuyerMax ~ N(900, 50), SellerMin = BuyerMax − [200, 700]), so the confusion hides;
``--domain overlap`` draws reservations whose buyer and seller ranges overlap widely
(``janus.domain.DOMAINS``: BuyerMax ~ N(800, 150), ZOPA width 100–400), where it cannot.

For every adapter given, the same paired episodes (Standard and Neutral configurations,
every evaluation opponent, both roles) are played raw (no calibration map) on both domains,
and per role it prints: the share of Janus's own offers the safety rule had to clamp back to
its reservation (an offer past it is an offer on the other side's side of the table), the
share of openings that were clamped, agreement and utility.

    python benchmarks/role_overlap.py demo/run-v1 demo/run-v2 --episodes-per-cell 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from janus.domain import DOMAINS, Role


def side_figures(records, role: str) -> dict[str, float]:
    """Wrong-side offers, wrong-side openings, agreement and utility of one role's episodes."""
    mine = [r for r in records if r.janus_role == role]
    offers = sum(sum(1 for o in r.offers if o[0] == role) for r in mine)
    openings = [r for r in mine if r.first_mover == role and r.offers]
    opened_wrong = 0
    for r in openings:
        reservation = r.buyer_max if role == Role.BUYER.value else r.seller_min
        opened_wrong += abs(r.offers[0][1] - reservation) < 1e-6
    return {
        "episodes": len(mine),
        "clamped_offer_share": sum(r.safety_clamped_offers for r in mine) / max(offers, 1),
        "opening_at_reservation_share": opened_wrong / max(len(openings), 1),
        "agreement": sum(r.agreement for r in mine) / max(len(mine), 1),
        "utility": sum(r.janus_utility for r in mine) / max(len(mine), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run or adapter directories")
    parser.add_argument("--episodes-per-cell", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()

    import torch

    from janus.agent import JanusAgent
    from janus.evaluation.harness import (
        EvaluationConfig,
        make_plan,
        plan_episodes,
        play_episodes,
    )

    torch.set_num_threads(1)
    figures: dict[str, dict] = {}
    for run in args.runs:
        agent = JanusAgent.from_pretrained(run, raw=True)
        for name, domain in DOMAINS.items():
            config = EvaluationConfig(
                run=run,
                domain=domain,
                configurations=("standard", "neutral"),
                calibration=False,
                ablations=False,
                scripted_baselines=False,
                episodes_per_cell=args.episodes_per_cell,
                seed=args.seed,
            )
            records = play_episodes(plan_episodes(make_plan(config)), agent, progress=False)
            key = f"{run} prompt v{agent.prompt_version} {name}"
            figures[key] = {role.value: side_figures(records, role.value) for role in Role}
            for role, f in figures[key].items():
                print(
                    f"{key:60s} {role:6s} clamped offers {f['clamped_offer_share']:.3f}  "
                    f"openings at reservation {f['opening_at_reservation_share']:.3f}  "
                    f"agreement {f['agreement']:.3f}  utility {f['utility']:.3f}  "
                    f"({f['episodes']} episodes)",
                    flush=True,
                )
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
