"""Janus in NegMAS's own tournament tools (``negmas.tournaments.neg.cartesian_tournament``).

Three helpers, so that a tournament is ten lines (README, "Janus in NegMAS"):

- :func:`price_scenarios`: NegMAS scenarios drawn from Janus's domain (one integer price
  issue, reservations as ``janus generate`` draws them), reservations kept in ``info``;
- :func:`janus_competitors`: ``competitors`` / ``competitor_params`` / ``competitor_names``
  for Janus at several ρ, sharing one agent and one :class:`~.negotiator.DecisionBatcher`
  (run the tournament with ``executor="thread"`` and many ``njobs`` so that concurrent
  negotiations' decisions share forward passes; ``njobs=-1`` plays one decision at a time);
- :func:`pair_table`: per competitor × opponent, agreement rate, mean achieved ρ and mean
  utility, from the tournament's ``details``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from negmas.inout import Scenario as NegmasScenario
from negmas.outcomes import make_os

from janus.domain import DomainConfig, Role, sample_scenario
from janus.integrations.negmas.mapping import price_issue, scenario_ufuns
from janus.integrations.negmas.negotiator import DecisionBatcher, JanusNegotiator
from janus.prompt import canonical_rho

__all__ = ["SharedAgent", "janus_competitors", "pair_table", "price_scenarios", "tournament_kwargs"]


def price_scenarios(
    n: int, *, seed: int = 0, domain: DomainConfig | None = None
) -> list[NegmasScenario]:
    """``n`` NegMAS scenarios of Janus's domain: first ufun the buyer's, second the seller's.

    ``info`` holds ``buyer_max`` and ``seller_min``, which :func:`pair_table` uses to place
    agreements in the ZOPA.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    domain = domain or DomainConfig()
    issue = price_issue(domain.price_range)
    space = make_os([issue], name="price")
    rng = random.Random(seed)
    scenarios = []
    for i in range(n):
        s = sample_scenario(domain, rng, Role.BUYER)
        scenarios.append(
            NegmasScenario(
                outcome_space=space,
                ufuns=scenario_ufuns(issue, s),
                name=f"price-{seed}-{i}",
                info={"buyer_max": s.buyer_max, "seller_min": s.seller_min},
            )
        )
    return scenarios


class SharedAgent:
    """One agent shared by a tournament's negotiators, as a competitor parameter.

    ``cartesian_tournament`` serialises every run's parameters to hash a run id; a bare
    agent would be pickled, model and all, once per negotiation. This handle serialises to
    its label (``to_dict``, which NegMAS's ``serialize`` uses) and hands out the agent's seats.
    """

    def __init__(self, agent: Any) -> None:
        self.agent = agent

    def seat(self, rho: float, **kwargs: Any) -> Any:
        return self.agent.seat(rho, **kwargs)

    def to_dict(self, **_: Any) -> dict[str, Any]:
        return {"agent": str(getattr(self.agent, "label", type(self.agent).__name__))}


def janus_competitors(
    agent: Any, rhos: Sequence[float], *, batched: bool = True, calibrated: bool = True
) -> dict[str, list[Any]]:
    """Keyword arguments of ``cartesian_tournament`` for Janus at each ρ of ``rhos``.

    All the competitors share ``agent`` (one model in memory) and, when ``batched``, one
    :class:`DecisionBatcher` (use ``executor="thread"``). Names are ``janus@ρ``.
    """
    values = [canonical_rho(r) for r in rhos]
    if not values or len(set(values)) != len(values):
        raise ValueError(f"rhos must be distinct values in [0, 1], got {list(rhos)!r}")
    batcher = DecisionBatcher() if batched else None
    shared = SharedAgent(agent)
    params = [
        {"agent": shared, "rho": rho, "calibrated": calibrated, "batcher": batcher}
        for rho in values
    ]
    return {
        "competitors": [JanusNegotiator] * len(values),
        "competitor_params": params,
        "competitor_names": [f"janus@{rho:.2f}" for rho in values],
    }


def tournament_kwargs(max_turns: int = 20) -> dict[str, Any]:
    """The protocol Janus was trained on, as ``cartesian_tournament`` keywords: ``max_turns``
    actions (one per step), no wall-clock limit, nothing written, no plots."""
    return {
        "n_steps": max_turns,
        "mechanism_params": {"one_offer_per_step": True},
        "rotate_ufuns": True,
        "save_stats": False,
        "save_scenario_figs": False,
        "path": None,
        "verbosity": 0,
    }


def pair_table(results: Any, scenarios: Sequence[NegmasScenario]) -> list[dict[str, Any]]:
    """Per (negotiator, partner): negotiations, agreement rate, mean achieved ρ (agreements;
    0 = the seller's reservation, 1 = the buyer's), mean NegMAS utility (the reserved value
    for no agreement, as NegMAS scores it), sorted by name.

    Reads the tournament's ``details``: the agreement and which ufun each side held (its
    reserved value identifies the scenario's side, since rotation swaps the ufuns).
    """
    by_rv = {}
    for s in scenarios:
        buyer, seller = s.ufuns
        key = (round(float(buyer.reserved_value), 12), round(float(seller.reserved_value), 12))
        by_rv[key] = s.info
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for _, d in results.details.iterrows():
        rvs = [round(float(v), 12) for v in d["reserved_values"]]
        info = by_rv.get((rvs[0], rvs[1])) or by_rv.get((rvs[1], rvs[0]))
        names = list(d["partners"])
        for me, other, utility in zip(names, names[::-1], d["utilities"], strict=True):
            row = rows.setdefault(
                (me, other),
                {
                    "negotiator": me,
                    "partner": other,
                    "n": 0,
                    "agreements": 0,
                    "rho_sum": 0.0,
                    "utility_sum": 0.0,
                },
            )
            row["n"] += 1
            row["utility_sum"] += float(utility)
            if d["agreement"] is not None and info is not None:
                price = float(d["agreement"][0])
                width = info["buyer_max"] - info["seller_min"]
                row["agreements"] += 1
                row["rho_sum"] += (price - info["seller_min"]) / width
    table = []
    for key in sorted(rows):
        r = rows[key]
        table.append(
            {
                "negotiator": r["negotiator"],
                "partner": r["partner"],
                "negotiations": r["n"],
                "agreement_rate": r["agreements"] / r["n"],
                "achieved_rho": r["rho_sum"] / r["agreements"] if r["agreements"] else None,
                "utility": r["utility_sum"] / r["n"],
            }
        )
    return table
