"""The scripted strategy pool: a registry of (name, family, description, parameters, policy).

Every strategy is a :class:`Strategy`, which satisfies :class:`janus.episode.Negotiator`. A
strategy sees only what its side may know, all of it carried by the
:class:`~janus.domain.Observation`: its own reservation R, the public price range, the offer
history and the clock. None reads the opponent's reservation or the ZOPA width W.

Conventions shared by the whole pool
------------------------------------
- ``w`` is the width of the public price range (1300 with the defaults). Every price-sized
  parameter (margins, steps, noise, windows) is a *fraction of w*, so a pool tuned for the
  default range keeps its shape on any other range.
- **Anchor.** The research code anchored 21 of its 23 strategies on Ô, the opponent's exact
  reservation, rebuilt from a ZOPA width fixed at 500. Here the default anchor is
  ``S = R ∓ margin·w`` (buyer: below R, seller: above R), clipped to the public range: a
  fraction of the public range, i.e. the agent's *own guess* of how much room there is, never
  the opponent's secret. The margin is drawn once per agent from
  ``U(margin − margin_spread, margin + margin_spread)`` with the agent's seeded generator, so an
  opening offer does not give the opponent's reservation away exactly either (with one fixed
  margin for the whole pool, R = first offer ± margin·w would be the reverse of the research
  code's leak). Strategies that do something else say so in their docstring
  (Fair uses the opening offers of both sides, split-the-difference and tit-for-tat follow the
  opponent's offers once seen, the naive agents and the random agent start at R itself).
- **Time-dependent exponent (Faratin et al., 1998).** ``target(t) = S + (R − S)·(t/T)^(1/e)``,
  with t the 1-based turn and T the maximum number of turns. ``e < 1`` is Boulware (holds
  firm, concedes late), ``e = 1`` is linear, ``e > 1`` is Conceder (concedes early). The
  target reaches R exactly at t = T. (The research code wrote the exponent the other way round,
  ``τ^β``, so its β = 0.2 "very conceding" is our e = 5.)
- **Rational by construction.** Every policy ends in :meth:`Strategy.respond`: accept the
  standing offer if it is no worse than R and at least as good as the acceptance threshold
  (by default the price the strategy would offer), otherwise offer the target clamped to R and
  to the public range. On the very last turn an offer could never be answered, so every
  strategy accepts any standing offer no worse than R there (an impasse is worth nothing to
  either side). Offers are rounded to 2 dp without ever crossing R or leaving the range.
- **State lives in the agent** (docs/ARCHITECTURE.md, defect 11): an agent object plays one
  seat of one episode. :func:`create_strategy` builds a fresh one, seeded with
  ``random.Random(seed)``; reusing an agent for another episode or the other seat raises.
  There is no module-level mutable state.
"""

from janus.strategies.base import FAMILIES, Strategy
from janus.strategies.registry import (
    REGISTRY,
    StrategySpec,
    create_strategy,
    describe,
    evaluation_pool,
    held_out_pool,
    training_pool,
)

__all__ = [
    "FAMILIES",
    "REGISTRY",
    "Strategy",
    "StrategySpec",
    "create_strategy",
    "describe",
    "evaluation_pool",
    "held_out_pool",
    "training_pool",
]
