"""THE checks of a Janus dataset, vectorised over a block of whole trajectories.

Each check is a boolean mask over the rows (the line it fails on) with a field, a reason
(:data:`janus.schema.REASONS`) and a message. :func:`find_problems` returns them in the order
documented in ``docs/DATA.md`` section 2; the first failing line of a file is the lowest row
flagged by any check, ties going to the earlier check — exactly the line a record-by-record
reader would stop at. Record checks come first (fields, enums, the clock, prices, ρ, the
history), then trajectory checks row by row, then the checks of a trajectory's end (on its
last line).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc

from janus.columns import (
    Columns,
    Runs,
    previous,
    same_as_previous,
    side_reservations,
    strings_same_as_previous,
)
from janus.errors import Invalid
from janus.schema import (
    CONSTANT_FIELDS,
    IMPASSE_RHO,
    RECORD_FIELDS,
    RHO_TOLERANCE,
    SCHEMA_VERSION,
    rho_is_valid,
)

__all__ = ["Check", "find_problems"]

_INT32_MAX = 2**31 - 1  # ``round`` is an int32 column of the prepared tables


@dataclass
class Check:
    """One failed check: the rows it fails on (``mask``) and how to describe row ``i``."""

    field: str | None
    reason: str
    mask: np.ndarray
    message: Callable[[int], str]


class _Checks(list[Check]):
    def add(
        self, field: str | None, reason: str, mask: np.ndarray, message: Callable[[int], str]
    ) -> None:
        if mask.any():
            self.append(Check(field, reason, mask, message))


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null" if value is None else "nan"
    return repr(value)


def find_problems(
    c: Columns, runs: Runs, seen: np.ndarray, parse_errors: Sequence[tuple[int, Invalid]] = ()
) -> list[Check]:
    """Every failed check of a block, in check order.

    ``seen`` holds the hashes of the trajectory ids of earlier blocks (a reappearing id);
    ``parse_errors`` the rows whose line could not be parsed (:mod:`janus.records`), which
    fail before any other check of theirs.
    """
    out = _Checks()
    n = len(runs.lines)
    for row, err in parse_errors:
        mask = np.zeros(n, dtype=bool)
        mask[row] = True
        out.add(err.field, err.reason, mask, lambda i, text=err.message: text)
    with np.errstate(invalid="ignore", divide="ignore"):
        _check_fields(c, out)
        _check_enums(c, out)
        _check_clock(c, out)
        _check_prices(c, out)
        _check_rho(c, out)
        _check_recorded_history(c, out)
        _check_contiguity(c, runs, seen, out)
        _check_sequence(c, runs, out)
        _check_constants(c, runs, out)
        _check_moves(c, runs, out)
        _check_history_against_offers(c, runs, out)
        _check_ending(c, runs, out)
    return out


# ------------------------------------------------------------------------- record checks


def _check_fields(c: Columns, out: _Checks) -> None:
    """Per field, in record order: missing or null, then not finite."""
    h = c.history
    n = len(h.length)
    for spec in RECORD_FIELDS:
        name = spec.name
        if spec.required and not spec.nullable:
            out.add(name, "missing_field", c.nulls[name], lambda i: "missing or null")
        if spec.kind == "float":
            values = c.floats[name]
            out.add(
                name,
                "non_finite",
                ~c.nulls[name] & ~np.isfinite(values),
                lambda i, values=values: f"{_fmt(values[i])} is not a finite number",
            )
        if spec.kind == "history":
            bad = h.rows_where(h.entry_null | h.role_null | h.price_null, n)
            out.add(name, "bad_type", bad, lambda i: "entries must be {role: str, price: number}")
            infinite = h.rows_where(~h.price_null & ~np.isfinite(h.price), n)
            out.add(name, "non_finite", infinite, lambda i: "holds a non-finite price")


def _check_enums(c: Columns, out: _Checks) -> None:
    """The schema version, the enum fields, the provenance fields' values."""
    version = c.ints["schema_version"]
    out.add(
        "schema_version",
        "schema_version",
        version != SCHEMA_VERSION,
        lambda i: f"unsupported schema version {version[i]} (this Janus reads {SCHEMA_VERSION})",
    )
    for name, ok, allowed in (
        ("role", c.buyer | c.seller, "['buyer', 'seller']"),
        ("action", c.is_offer | c.is_accept, "['ACCEPT', 'OFFER']"),
        ("outcome", c.agreement | c.impasse, "['agreement', 'impasse']"),
        ("first_mover", c.first_buyer | c.first_seller, "['buyer', 'seller']"),
    ):
        out.add(
            name,
            "bad_value",
            ~ok & ~c.nulls[name],
            lambda i, name=name, allowed=allowed: f"{c.value(name, i)!r} is not one of {allowed}",
        )
    h = c.history
    bad_role = h.rows_where(~(h.buyer | h.seller) & ~h.role_null, len(h.length))
    out.add(
        "history",
        "bad_value",
        bad_role,
        lambda i: "a history role is not one of ['buyer', 'seller']",
    )
    empty = pc.fill_null(pc.equal(pc.utf8_length(c.arrays["source"]), 0), False)
    out.add(
        "source",
        "bad_value",
        empty.to_numpy(zero_copy_only=False),
        lambda i: "must be a non-empty string",
    )
    rounds = c.ints["round"]
    out.add(
        "round",
        "bad_value",
        ~c.nulls["round"] & ((rounds < 0) | (rounds > _INT32_MAX)),
        lambda i: f"must be a non-negative 32-bit integer, got {rounds[i]}",
    )


def _check_clock(c: Columns, out: _Checks) -> None:
    step, turn, max_turns = c.ints["step"], c.ints["turn"], c.ints["max_turns"]
    remaining = c.ints["turns_remaining"]
    out.add(
        "max_turns", "bad_value", max_turns < 2, lambda i: f"must be at least 2, got {max_turns[i]}"
    )
    out.add("step", "turn_order", step < 0, lambda i: f"must be >= 0, got {step[i]}")
    out.add(
        "turn",
        "turn_order",
        turn != step + 1,
        lambda i: f"turn {turn[i]} is not step + 1 = {step[i] + 1}",
    )
    out.add(
        "turn",
        "turn_order",
        turn > max_turns,
        lambda i: f"turn {turn[i]} is past max_turns {max_turns[i]}",
    )
    out.add(
        "turns_remaining",
        "turn_order",
        ~c.nulls["turns_remaining"] & (remaining != max_turns - turn),
        lambda i: f"{remaining[i]} is not max_turns − turn = {max_turns[i] - turn[i]}",
    )


def _check_prices(c: Columns, out: _Checks) -> None:
    """The price range, the reservation, the offer, the last offer and the history's prices."""
    f = c.floats
    low, high = f["price_low"], f["price_high"]
    res, offer, last = f["reservation_price"], f["offer_price"], f["last_offer_price"]
    offer_null, last_null = c.nulls["offer_price"], c.nulls["last_offer_price"]

    def outside(values: np.ndarray) -> np.ndarray:
        return ~((low <= values) & (values <= high))

    def where(values: np.ndarray) -> Callable[[int], str]:
        return lambda i: f"{values[i]} is outside [{low[i]}, {high[i]}]"

    out.add(
        "price_high",
        "price_range",
        ~(low < high),
        lambda i: f"price range [{low[i]}, {high[i]}] is empty",
    )
    out.add("reservation_price", "price_range", outside(res), where(res))
    expected = (res - low) / (high - low)
    norm = f["reservation_norm"]
    out.add(
        "reservation_norm",
        "bad_value",
        ~(np.abs(norm - expected) <= RHO_TOLERANCE),
        lambda i: f"{norm[i]} is not the normalised reservation {expected[i]!r}",
    )
    out.add(
        "offer_price", "missing_field", c.is_offer & offer_null, lambda i: "is null for an OFFER"
    )
    out.add("offer_price", "price_range", c.is_offer & ~offer_null & outside(offer), where(offer))
    out.add(
        "offer_price",
        "bad_value",
        c.is_accept & ~offer_null,
        lambda i: "must be null for an ACCEPT",
    )
    h = c.history
    out.add(
        "action",
        "bad_value",
        c.is_accept & offer_null & (h.length == 0) & ~c.nulls["history"],
        lambda i: "ACCEPT with no standing offer",
    )
    out.add("last_offer_price", "price_range", ~last_null & outside(last), where(last))
    h_low, h_high = low[h.parent], high[h.parent]
    bad = h.rows_where(~((h_low <= h.price) & (h.price <= h_high)), len(low))
    out.add("history", "price_range", bad, lambda i: "holds a price outside the price range")


def _check_rho(c: Columns, out: _Checks) -> None:
    """The final price against the outcome, and ρ: in [0, 1] on an agreement, −1.0 else."""
    f = c.floats
    low, high = f["price_low"], f["price_high"]
    final, rho = f["final_price"], f["rho_outcome"]
    final_null = c.nulls["final_price"]
    impasse_label = rho == IMPASSE_RHO
    out.add(
        "final_price",
        "missing_field",
        c.agreement & final_null,
        lambda i: "is null for an agreement",
    )
    out.add(
        "final_price",
        "price_range",
        c.agreement & ~final_null & ~((low <= final) & (final <= high)),
        lambda i: f"{final[i]} is outside [{low[i]}, {high[i]}]",
    )
    out.add(
        "rho_outcome",
        "rho_range",
        c.agreement & (~rho_is_valid(rho) | impasse_label),
        lambda i: f"ρ = {_fmt(rho[i])} is outside [0, 1] for an agreement",
    )
    out.add(
        "final_price",
        "bad_value",
        c.impasse & ~final_null,
        lambda i: "must be null for an impasse",
    )
    out.add(
        "rho_outcome",
        "rho_range",
        c.impasse & ~impasse_label,
        lambda i: f"ρ = {_fmt(rho[i])} for an impasse (must be -1.0)",
    )


def _check_recorded_history(c: Columns, out: _Checks) -> None:
    """The history holds one offer per step before this one, and ends with the last offer."""
    h = c.history
    step = c.ints["step"]
    out.add(
        "history",
        "history",
        (h.length != step) & ~c.nulls["history"],
        lambda i: f"holds {h.length[i]} offers at step {step[i]} (expected {step[i]})",
    )
    last, last_null = c.floats["last_offer_price"], c.nulls["last_offer_price"]
    has = h.length > 0
    last_entry = np.full(len(step), np.nan)
    last_entry[has] = h.price[h.ends[has] - 1]
    out.add(
        "last_offer_price",
        "history",
        (has & (last_null | (last != last_entry))) | (~has & ~last_null),
        lambda i: (
            f"{_fmt(c.value('last_offer_price', i))} is not the last offer of the history "
            f"({_fmt(last_entry[i]) if has[i] else 'None'})"
        ),
    )


# --------------------------------------------------------------------- trajectory checks


def _check_contiguity(c: Columns, runs: Runs, seen: np.ndarray, out: _Checks) -> None:
    """A trajectory id that reappears after another trajectory (two runs in one file)."""
    again = np.isin(runs.hashes, seen)
    order = np.argsort(runs.hashes, kind="stable")
    ordered = runs.hashes[order]
    again[order[1:]] |= ordered[1:] == ordered[:-1]
    mask = np.zeros(len(runs.lines), dtype=bool)
    mask[runs.starts[again]] = True
    out.add(
        "trajectory_id",
        "duplicate_trajectory",
        mask,
        lambda i: (
            f"trajectory {c.value('trajectory_id', i)!r} reappears after other trajectories "
            "(two runs appended into one file?)"
        ),
    )


def _check_sequence(c: Columns, runs: Runs, out: _Checks) -> None:
    """Nothing after the ACCEPT; steps 0, 1, 2, … in order."""
    lines, pos, step = runs.lines, runs.pos, c.ints["step"]
    after_accept = np.zeros(len(lines), dtype=bool)
    after_accept[1:] = c.is_accept[:-1]
    out.add(
        "step",
        "turn_order",
        ~runs.is_start & after_accept,
        lambda i: f"the trajectory continues after its ACCEPT on line {lines[i - 1]}",
    )
    out.add(
        "step",
        "turn_order",
        step != pos,
        lambda i: f"step {step[i]} where step {pos[i]} was expected",
    )


def _check_constants(c: Columns, runs: Runs, out: _Checks) -> None:
    """The per-trajectory fields hold the value of the trajectory's first line."""
    first = runs.starts[runs.run]
    for name in CONSTANT_FIELDS:
        if name in c.floats:
            same = same_as_previous(c.floats[name], c.nulls[name])
        elif name in c.ints:
            same = same_as_previous(c.ints[name], c.nulls[name])
        else:
            same = strings_same_as_previous(c.arrays[name])
        out.add(
            name,
            "rho_not_constant" if name == "rho_outcome" else "not_constant",
            ~runs.is_start & ~same,
            lambda i, name=name: (
                f"{_fmt(c.value(name, i))} differs from {_fmt(c.value(name, first[i]))} "
                f"on line {runs.lines[first[i]]} of the same trajectory"
            ),
        )


def _check_moves(c: Columns, runs: Runs, out: _Checks) -> None:
    """Roles alternate from the first mover; a side's reservation never changes; the last
    offer is the previous step's offer."""
    pos = runs.pos
    first_buyer = c.first_buyer[runs.starts[runs.run]]
    expect_buyer = np.where(pos % 2 == 0, first_buyer, ~first_buyer)
    out.add(
        "role",
        "turn_order",
        c.buyer != expect_buyer,
        lambda i: (
            f"{c.value('role', i)!r} moves at step {pos[i]}, but "
            f"{'buyer' if expect_buyer[i] else 'seller'!r} should "
            "(turns alternate from first_mover)"
        ),
    )
    res = c.floats["reservation_price"]
    res_before = np.full(len(res), np.nan)
    res_before[2:] = res[:-2]
    out.add(
        "reservation_price",
        "not_constant",
        (pos >= 2) & (res != res_before),
        lambda i: (
            f"the {c.value('role', i)}'s reservation changes from {res_before[i]} to {res[i]}"
        ),
    )
    offer, offer_null = c.floats["offer_price"], c.nulls["offer_price"]
    last, last_null = c.floats["last_offer_price"], c.nulls["last_offer_price"]
    before, before_null = previous(offer), np.ones(len(offer), dtype=bool)
    before_null[1:] = offer_null[:-1]
    mismatch = (last_null != before_null) | (~last_null & (last != before))
    out.add(
        "last_offer_price",
        "history",
        ~runs.is_start & mismatch,
        lambda i: (
            f"{_fmt(c.value('last_offer_price', i))} is not the previous step's offer "
            f"{_fmt(c.value('offer_price', i - 1))}"
        ),
    )


def _check_history_against_offers(c: Columns, runs: Runs, out: _Checks) -> None:
    """Each history entry is the offer (role and price) of an earlier step of the trajectory."""
    h = c.history
    n = len(runs.lines)
    offer, offer_null = c.floats["offer_price"], c.nulls["offer_price"]
    entry = np.arange(len(h.parent)) - (h.ends - h.length)[h.parent]
    source = np.clip(runs.starts[runs.run[h.parent]] + entry, 0, max(n - 1, 0))
    ok = (
        (h.price == offer[source])
        & ~offer_null[source]
        & (h.buyer == c.buyer[source])
        & (h.seller == c.seller[source])
        & (source < h.parent)
    )
    bad = h.rows_where(~ok, n)
    out.add("history", "history", bad, lambda i: "does not match the offers made before this step")


def _check_ending(c: Columns, runs: Runs, out: _Checks) -> None:
    """On a trajectory's last line: the outcome matches the last action, the final price is
    the accepted offer, ρ is the final price's, and an impasse reaches ``max_turns``."""
    last, agreement, impasse = runs.is_last, c.agreement, c.impasse
    final, rho = c.floats["final_price"], c.floats["rho_outcome"]
    max_turns, turn = c.ints["max_turns"], c.ints["turn"]
    accepted = previous(c.floats["offer_price"])
    out.add(
        "outcome",
        "outcome",
        last & agreement & ~c.is_accept,
        lambda i: "the trajectory is an agreement but ends without an ACCEPT",
    )
    out.add(
        "final_price",
        "outcome",
        last & c.is_accept & agreement & (final != accepted),
        lambda i: f"{final[i]} is not the accepted offer {accepted[i]}",
    )
    buyer_run, seller_run = side_reservations(c, runs)
    buyer, seller = buyer_run[runs.run], seller_run[runs.run]
    both_sides = (runs.lengths >= 2)[runs.run]
    out.add(
        "reservation_price",
        "bad_value",
        last & agreement & both_sides & ~(seller < buyer),
        lambda i: f"seller reservation {seller[i]} is not below the buyer's {buyer[i]}",
    )
    expected = (final - seller) / (buyer - seller)
    out.add(
        "rho_outcome",
        "rho_mismatch",
        last & agreement & both_sides & ~(np.abs(expected - rho) <= RHO_TOLERANCE),
        lambda i: f"ρ = {rho[i]} but the final price and reservations give {expected[i]!r}",
    )
    out.add(
        "outcome",
        "outcome",
        last & impasse & c.is_accept,
        lambda i: "the trajectory ends with an ACCEPT but is marked impasse",
    )
    out.add(
        "turn",
        "turn_order",
        last & impasse & (runs.lengths[runs.run] != max_turns),
        lambda i: (
            f"an impasse must reach max_turns {max_turns[i]}, but the trajectory "
            f"ends at turn {turn[i]}"
        ),
    )
