"""An agent's door: observations checked on the way in, prices fitted to a grid on the way out.

Why this exists: inside Janus, observations come from :class:`janus.episode.EpisodeState`
and are consistent by construction. Driven from outside (NegMAS, a server, a notebook), an
agent can be handed anything, and the model answers whatever it is shown: a standing offer
with an empty history renders as ``<LAST_OFFER_NORM> NONE`` while the safety rules judge the
standing offer, a wrong role flips the safety rules, a turn outside the clock fails deep in
the prompt builder. :func:`check_observation` states the rules of the episode loop once and
names the first one an observation breaks, in one line, before any model work.

The rules, as :class:`~janus.episode.EpisodeState` makes observations:

- ``role`` is a :class:`~janus.domain.Role`, ``price_range`` a
  :class:`~janus.domain.PriceRange`, ``1 <= turn <= max_turns``, the reservation a finite
  price inside the public range;
- every offer of the history is a finite price inside the range, made at a turn before this
  one by the side whose turn it was (sides alternate: the side deciding at ``turn`` also
  moved at ``turn - 2``, ``turn - 4``, ...);
- after the first offer no turn passes without one, so the history's turns are consecutive
  and the last one is ``turn - 1``. Turns may pass without an offer only before the first
  offer: a model that answers ACCEPT with nothing on the table makes an invalid move the
  loop records and passes. Once an offer stands, every move either accepts it (the episode
  ends) or makes a valid counter (constrained decoding cannot leave the range);
- ``standing_offer`` is the latest offer's price, which is the opponent's, or ``None`` with
  an empty history.

:func:`snap_price` rounds a price to a caller's grid (an integer price issue, a currency's
cents) without crossing the reservation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

from janus.domain import Observation, Offer, PriceRange, Role


class ObservationError(ValueError):
    """An observation that the episode loop could not have produced; the message says why."""


def _real(value: object) -> bool:
    if type(value) is float:  # the common case first: the ABC check below is slow
        return math.isfinite(value)
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)  # numpy ints too


def _range_text(price_range: PriceRange) -> str:
    return f"[{price_range.low:g}, {price_range.high:g}]"


def _fail(where: str, field: str, value: object, expected: str) -> ObservationError:
    shown = value.value if isinstance(value, Role) else repr(value)
    return ObservationError(f"{where}: {field}={shown}; expected {expected}")


def _check_frame(obs: Observation, where: str) -> None:
    """Role, range, clock and reservation: the fields every other rule relies on."""
    if not isinstance(obs.role, Role):
        raise _fail(
            where,
            "role",
            obs.role,
            f"a janus.domain.Role (Role.BUYER or Role.SELLER), not a {type(obs.role).__name__}",
        )
    if not isinstance(obs.price_range, PriceRange):
        raise _fail(where, "price_range", obs.price_range, "a janus.domain.PriceRange")
    if not _integer(obs.max_turns) or obs.max_turns < 1:
        raise _fail(where, "max_turns", obs.max_turns, "an integer >= 1")
    if not _integer(obs.turn) or not 1 <= obs.turn <= obs.max_turns:
        raise _fail(where, "turn", obs.turn, f"an integer in 1..{obs.max_turns} (max_turns)")
    if not _real(obs.reservation) or not obs.price_range.contains(obs.reservation):
        raise _fail(
            where,
            "reservation",
            obs.reservation,
            f"a finite price inside the public range {_range_text(obs.price_range)}",
        )


def _mover(obs: Observation, turn: int) -> Role:
    """The side whose turn ``turn`` was, seen from the side deciding at ``obs.turn``."""
    return obs.role if (obs.turn - turn) % 2 == 0 else obs.role.opponent


def _check_offer(obs: Observation, index: int, offer: object, where: str) -> None:
    field = f"history[{index}]"
    if not isinstance(offer, Offer):
        raise _fail(where, field, offer, "a janus.domain.Offer")
    if not _real(offer.price) or not obs.price_range.contains(offer.price):
        raise _fail(
            where,
            f"{field}.price",
            offer.price,
            f"a finite price inside the public range {_range_text(obs.price_range)}",
        )
    if not _integer(offer.turn) or not 1 <= offer.turn < obs.turn:
        raise _fail(where, f"{field}.turn", offer.turn, f"an integer in 1..{obs.turn - 1}")
    mover = _mover(obs, offer.turn)
    if offer.role is not mover:
        raise _fail(
            where,
            f"{field}.role",
            offer.role,
            f"{mover.value} (turn {offer.turn} is the {mover.value}'s when the "
            f"{obs.role.value} decides at turn {obs.turn}: sides alternate)",
        )


def _check_history(obs: Observation, where: str) -> None:
    """Offers well formed, by the right side, consecutive, the last one at ``turn - 1``."""
    if not isinstance(obs.history, tuple | list):
        raise _fail(where, "history", obs.history, "a tuple of janus.domain.Offer")
    for index, offer in enumerate(obs.history):
        _check_offer(obs, index, offer, where)
        if index and offer.turn != obs.history[index - 1].turn + 1:
            raise _fail(
                where,
                f"history[{index}].turn",
                offer.turn,
                f"{obs.history[index - 1].turn + 1} (after the first offer every turn "
                "carries one: a gap means a lost offer)",
            )
    if obs.history and obs.history[-1].turn != obs.turn - 1:
        raise _fail(
            where,
            f"history[{len(obs.history) - 1}].turn",
            obs.history[-1].turn,
            f"{obs.turn - 1} (the latest offer is the previous turn's; turn={obs.turn})",
        )


def _check_standing(obs: Observation, where: str) -> None:
    standing = obs.standing_offer
    if not obs.history:
        if standing is not None:
            raise _fail(
                where,
                "standing_offer",
                standing,
                "None (the history is empty: no offer stands)",
            )
        return
    latest = obs.history[-1].price
    if standing is None or not _real(standing) or standing != latest:
        raise _fail(
            where,
            "standing_offer",
            standing,
            f"{latest!r} (the latest offer of the history, made by the {obs.role.opponent.value})",
        )


def check_price_step(price_step: float | None) -> float | None:
    """A grid step is ``None`` (no grid) or a finite positive number."""
    if price_step is None:
        return None
    if not _real(price_step) or price_step <= 0:
        raise ValueError(f"price_step={price_step!r}; expected a finite number > 0 (or None)")
    return float(price_step)


def _grid_point(price_range: PriceRange, step: float, index: int) -> float:
    # Rounded to 9 decimals so that a grid of cents gives 200.3, not 200.30000000000001.
    return round(price_range.low + index * step, 9)


def _grid_bounds(price_range: PriceRange, step: float) -> int:
    """The index of the highest grid point inside the range (the low end is index 0)."""
    return math.floor((price_range.high - price_range.low) / step + 1e-9)


def _safe_index(obs: Observation, step: float) -> int | None:
    """The grid point nearest the reservation on its acceptable side, or ``None`` if none."""
    pr, reservation = obs.price_range, obs.reservation
    position = (reservation - pr.low) / step
    if obs.role is Role.BUYER:
        index = math.floor(position + 1e-9)
        while index >= 0 and not obs.is_acceptable(_grid_point(pr, step, index)):
            index -= 1
        return index if index >= 0 else None
    index = math.ceil(position - 1e-9)
    while index <= _grid_bounds(pr, step) and not obs.is_acceptable(_grid_point(pr, step, index)):
        index += 1
    return index if index <= _grid_bounds(pr, step) else None


def check_observation(
    observation: object, *, price_step: float | None = None, where: str = "observation"
) -> None:
    """Raise :class:`ObservationError` naming the first rule ``observation`` breaks.

    ``price_step``: the caller's price grid (see :func:`snap_price`); the reservation must then
    have a grid point on its acceptable side inside the range, or no safe offer exists.
    """
    if not isinstance(observation, Observation):
        raise ObservationError(
            f"{where}: expected a janus.domain.Observation, got {type(observation).__name__}"
        )
    _check_frame(observation, where)
    _check_history(observation, where)
    _check_standing(observation, where)
    if price_step is not None and _safe_index(observation, price_step) is None:
        raise _fail(
            where,
            "reservation",
            observation.reservation,
            f"a price with a point of the grid of step {price_step:g} (from "
            f"{observation.price_range.low:g}) on its acceptable side inside the range "
            f"{_range_text(observation.price_range)}",
        )


def check_observations(
    observations: Sequence[object], *, price_step: float | None = None, seats: int | None = None
) -> None:
    """:func:`check_observation` for a batch, naming the bad one's index; ``seats``: how
    many observations are expected (one per seat)."""
    if seats is not None and seats != len(observations):
        raise ValueError(
            f"act_batch: {seats} seats and {len(observations)} observations; "
            "expected one observation per seat"
        )
    for index, observation in enumerate(observations):
        where = "observation" if len(observations) == 1 else f"observation {index}"
        check_observation(observation, price_step=price_step, where=where)


def snap_price(price: float, observation: Observation, step: float, *, safe: bool = True) -> float:
    """``price`` rounded to the nearest point ``low + k * step`` of the public range.

    The grid starts at the range's low end, so an integer price issue over [200, 1500] is
    ``step=1``. With ``safe`` (the agent's safety rules on), a rounded price that crosses the
    reservation moves to the nearest grid point on the acceptable side instead: rounding
    never turns a safe offer into a losing one. The result is always inside the range.
    """
    pr = observation.price_range
    index = math.floor((price - pr.low) / step + 0.5)
    index = min(max(index, 0), _grid_bounds(pr, step))
    snapped = _grid_point(pr, step, index)
    if safe and not observation.is_acceptable(snapped):
        safe_index = _safe_index(observation, step)
        if safe_index is None:  # check_observation(price_step=...) rules this out
            raise ValueError(f"no grid point of step {step:g} is acceptable to this side")
        snapped = _grid_point(pr, step, safe_index)
    return snapped
