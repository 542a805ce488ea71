"""The price domain in NegMAS terms, and NegMAS's SAO state as a Janus observation.

Janus's world is one item with one price (:mod:`janus.domain`); in NegMAS that is an outcome
space of one issue, ``price``, and a utility function per side. The mapping is exact:

==========================  ==================================================================
Janus                       NegMAS
==========================  ==================================================================
public price range          the issue's ``[min_value, max_value]`` (integer issue: every whole
                            price; a continuous issue where the mechanism allows)
role                        buyer if the utility falls with the price, seller if it rises
own reservation             the price where the utility crosses ``ufun.reserved_value``: exact
                            for a utility affine in the price, interpolated between the two grid
                            prices around the crossing otherwise (so the same grid prices are
                            acceptable to both), rounded to 1e-9 of a price unit
turn (1-based)              the number of actions taken so far + 1; with
                            ``one_offer_per_step=True`` that is ``state.step + 1`` (checked)
max turns                   ``n_steps`` with ``one_offer_per_step=True`` (each step is one
                            negotiator's action), ``2 · n_steps`` without (a step is a round)
turns remaining             ``max_turns − turn`` (0 at the last turn), as in the prompt
standing offer              ``state.current_offer`` when the opponent made it, else none
history                     every offer of the negotiation, in order, with the turn it was made
==========================  ==================================================================

``relative_time`` is ``(step + 1) / (n_steps + 1)`` in NegMAS 0.16, so NegMAS's clock and
Janus's ``turn / max_turns`` differ by design; Janus reads turns, never ``relative_time``.
With ``offering_is_accepting`` (NegMAS's default) an offer counts as its proposer's
acceptance, so the other side's ACCEPT closes the deal, exactly as in Janus's loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from negmas import make_issue
from negmas.outcomes import make_os
from negmas.preferences import AffineUtilityFunction

from janus.domain import Observation, Offer, PriceRange, Role, Scenario

#: The reservation read from a utility is rounded to this many decimals of a price unit.
RESERVATION_DECIMALS = 9
#: Above this many values a discrete issue is snapped arithmetically, never listed.
_MAX_LISTED = 200_000


def price_issue(price_range: PriceRange = PriceRange(), *, integer: bool = True):
    """The one ``price`` issue over the public range: whole prices, or continuous.

    Most of NegMAS's built-in negotiators discretise a continuous issue into about ten
    levels, so an integer grid is what lets them concede smoothly.
    """
    low, high = price_range.low, price_range.high
    if integer:
        if not (float(low).is_integer() and float(high).is_integer()):
            raise ValueError(f"an integer price issue needs whole bounds, got [{low}, {high}]")
        return make_issue((int(low), int(high)), name="price")
    return make_issue((float(low), float(high)), name="price")


def price_ufuns(issue, buyer_max: float, seller_min: float):
    """``(buyer, seller)`` utility functions on ``issue``: affine in the price, 1 at the
    side's best end of the range, 0 at its worst, the reserved value at its reservation."""
    low, high = float(issue.min_value), float(issue.max_value)
    width = high - low
    space = make_os([issue])
    buyer = AffineUtilityFunction(
        [-1.0 / width],
        bias=high / width,
        outcome_space=space,
        reserved_value=(high - buyer_max) / width,
        name="buyer",
    )
    seller = AffineUtilityFunction(
        [1.0 / width],
        bias=-low / width,
        outcome_space=space,
        reserved_value=(seller_min - low) / width,
        name="seller",
    )
    return buyer, seller


def scenario_ufuns(issue, scenario: Scenario):
    """The utility functions of a Janus scenario (its hidden reservations) on ``issue``."""
    return price_ufuns(issue, scenario.buyer_max, scenario.seller_min)


@dataclass(frozen=True)
class PriceSide:
    """What one negotiator knows of the domain, read once from its issue and utility."""

    role: Role
    reservation: float
    price_range: PriceRange
    grid: np.ndarray | None  # sorted prices of a discrete issue, None if continuous
    integer: bool


def _single_issue(outcome_space):
    issues = getattr(outcome_space, "issues", None)
    if not issues or len(issues) != 1:
        raise ValueError(f"Janus plays a single price issue, got {issues!r}")
    issue = issues[0]
    if not issue.is_numeric():
        raise ValueError(f"the price issue must be numeric, got {issue}")
    return issue


def _grid(issue) -> np.ndarray | None:
    if issue.is_continuous():
        return None
    if issue.cardinality > _MAX_LISTED:
        raise ValueError(f"a discrete price issue of {issue.cardinality} values is too large")
    return np.array(sorted(float(v) for v in issue.all))


def _crossing(good: float, bad: float, u_good: float, u_bad: float, rv: float) -> float:
    """The price between ``good`` (u >= rv) and ``bad`` (u < rv) where u = rv, linearly."""
    if u_good == u_bad:
        return good
    return good + (bad - good) * (u_good - rv) / (u_good - u_bad)


def read_side(ufun, outcome_space) -> PriceSide:
    """Role and reservation price of the side with utility ``ufun`` (see the module table).

    The utility must be monotone in the price (it is checked at the range's ends only):
    Janus negotiates a price, and a utility that is not monotone in it has no reservation
    price. The reserved value ``None`` or ``-inf`` makes every price acceptable.
    """
    issue = _single_issue(outcome_space)
    low, high = float(issue.min_value), float(issue.max_value)
    price_range = PriceRange(low, high)
    grid = _grid(issue)
    u_low, u_high = float(ufun((issue.min_value,))), float(ufun((issue.max_value,)))
    if not (math.isfinite(u_low) and math.isfinite(u_high)) or u_low == u_high:
        raise ValueError(f"the utility must rise or fall with the price, got u={u_low}..{u_high}")
    role = Role.BUYER if u_low > u_high else Role.SELLER
    rv = ufun.reserved_value
    rv = -math.inf if rv is None else float(rv)
    # Walk from the side's best price toward its worst: acceptable prices come first.
    if grid is not None:
        prices = grid if role is Role.BUYER else grid[::-1]
        cast = int if issue.is_integer() else float
        reservation = _reservation_on_grid(ufun, [float(p) for p in prices], rv, cast)
    else:
        reservation = _reservation_continuous(ufun, low, high, role, rv)
    # The inversion's float error (899.9999999999999 for 900) is below 1e-9 of a price unit.
    reservation = round(reservation, RESERVATION_DECIMALS)
    return PriceSide(role, reservation, price_range, grid, bool(issue.is_integer()))


def _reservation_on_grid(ufun, prices: list[float], rv: float, cast) -> float:
    def u(i: int) -> float:
        return float(ufun((cast(prices[i]),)))

    if u(len(prices) - 1) >= rv:
        return prices[-1]  # every price acceptable
    if u(0) < rv:
        return prices[0]  # none acceptable: the best price is the least bad
    lo, hi = 0, len(prices) - 1  # u(lo) >= rv > u(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if u(mid) >= rv else (lo, mid)
    return _crossing(prices[lo], prices[hi], u(lo), u(hi), rv)


def _reservation_continuous(ufun, low: float, high: float, role: Role, rv: float) -> float:
    best, worst = (low, high) if role is Role.BUYER else (high, low)

    def u(p: float) -> float:
        return float(ufun((p,)))

    if u(worst) >= rv:
        return worst
    if u(best) < rv:
        return best
    good, bad = best, worst
    for _ in range(80):
        mid = (good + bad) / 2
        good, bad = (mid, bad) if u(mid) >= rv else (good, mid)
    return _crossing(good, bad, u(good), u(bad), rv)


def snap_price(price: float, side: PriceSide) -> float:
    """``price`` on the issue: the nearest grid price, never across the reservation.

    Rounding must not turn an acceptable offer into one past the reservation, so when the
    nearest grid price crosses it, the nearest one on the acceptable side is taken (if the
    price itself was already past it, e.g. with Janus's safety off, the nearest is kept).
    A continuous issue only clips to the range.
    """
    if side.grid is None:
        return side.price_range.clip(price)
    grid = side.grid
    i = int(np.clip(np.searchsorted(grid, price), 0, len(grid) - 1))
    candidates = [grid[j] for j in (i - 1, i) if 0 <= j < len(grid)]
    nearest = min(candidates, key=lambda g: (abs(g - price), g))

    def acceptable(p: float) -> bool:
        if side.role is Role.BUYER:
            return p <= side.reservation
        return p >= side.reservation

    if acceptable(price) and not acceptable(nearest):
        if side.role is Role.BUYER:
            inside = grid[grid <= side.reservation]
            nearest = inside[-1] if inside.size else nearest
        else:
            inside = grid[grid >= side.reservation]
            nearest = inside[0] if inside.size else nearest
    return float(nearest)


def observation(side: PriceSide, history: Sequence[Offer], max_turns: int) -> Observation:
    """The Janus observation of the side to move after ``history`` (its turn is next).

    The standing offer is the latest offer if the opponent made it, as in
    :meth:`janus.episode.EpisodeState.observe`.
    """
    standing = history[-1].price if history and history[-1].role is not side.role else None
    return Observation(
        role=side.role,
        reservation=side.reservation,
        price_range=side.price_range,
        turn=len(history) + 1,
        max_turns=max_turns,
        standing_offer=standing,
        history=tuple(history),
    )


def max_turns_of(nmi) -> int:
    """Janus's turn limit for a mechanism: ``n_steps`` actions when each step is one
    negotiator's action, two per step otherwise (a step is then a round)."""
    n_steps = nmi.n_steps
    if n_steps is None or not math.isfinite(n_steps):
        raise ValueError("Janus needs a mechanism with a finite n_steps (it counts turns)")
    return int(n_steps) if nmi.one_offer_per_step else 2 * int(n_steps)
