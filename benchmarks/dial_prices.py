"""The prices a trained dial decodes as ρ moves, greedy and ``--price-decoding mean`` side by side.

Two fixed decisions per role, with no rule on: Janus's opening (no offer on the table) and
its answer to an opponent's far opening (1300 to a buyer, 300 to a seller). A greedy decoder
reads each digit as the likeliest one, so where the model is split between two prices the
offer jumps by a tenth of the range; this prints where that happens and what the mean
decoding makes of it (benchmarks/RESULTS.md, "Session 10").

    python benchmarks/dial_prices.py --run demo/refined
    python benchmarks/dial_prices.py --run demo/refined --buyer-reservation 950 --step 0.1
"""

from __future__ import annotations

import argparse

from janus.agent import JanusAgent
from janus.domain import Observation, Offer, PriceRange, Role


def decisions(
    agent: JanusAgent, role: Role, reservation: float, rhos: list[float]
) -> dict[str, list[str]]:
    """The opening and the answer to a far opening at every ρ of ``rhos``."""
    prices = PriceRange()
    far = 1300.0 if role is Role.BUYER else 300.0
    other = Role.SELLER if role is Role.BUYER else Role.BUYER
    situations = {
        "opening": Observation(role, reservation, prices, 1, 20, None, ()),
        f"answer to {far:.0f}": Observation(
            role, reservation, prices, 2, 20, far, (Offer(other, far, 1),)
        ),
    }
    rows = {}
    for name, observation in situations.items():
        actions = agent.act_batch([agent.seat(r) for r in rhos], [observation] * len(rhos))
        rows[name] = ["ACC" if a.is_accept else f"{a.price:.0f}" for a in actions]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run or adapter directory")
    parser.add_argument("--buyer-reservation", type=float, default=900.0)
    parser.add_argument("--seller-reservation", type=float, default=500.0)
    parser.add_argument("--step", type=float, default=0.05, help="spacing of the ρ grid")
    args = parser.parse_args()
    count = round(1 / args.step)
    rhos = [round(i / count, 4) for i in range(count + 1)]
    agents = {
        decoding: JanusAgent.from_pretrained(
            args.run, raw=True, rules="none", price_decoding=decoding
        )
        for decoding in ("greedy", "mean")
    }
    reservations = {Role.BUYER: args.buyer_reservation, Role.SELLER: args.seller_reservation}
    print("raw dial, no rules; prices per rho " + " ".join(f"{r:g}" for r in rhos))
    for role, reservation in reservations.items():
        for decoding, agent in agents.items():
            for name, row in decisions(agent, role, reservation, rhos).items():
                label = f"{role.value} (reservation {reservation:.0f}) {name}, {decoding}"
                print(f"{label:<48} " + " ".join(f"{p:>4}" for p in row))


if __name__ == "__main__":
    main()
