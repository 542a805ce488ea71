"""Checked trajectories → the rows of ``decision_steps`` and ``trajectory_outcomes``.

Everything here is vectorised over a :class:`~janus.validation.Chunk`; the columns and their
order are those of :mod:`janus.schema`. The history window of a step is rebuilt from the
trajectory's own earlier rows (every step but a final ACCEPT is an offer), which the checks
have already matched against the recorded ``history``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from janus.columns import side_reservations
from janus.schema import IMPASSE_RHO, SPLITS, decision_steps_schema, trajectory_outcomes_schema
from janus.validation import Chunk

__all__ = ["Tables", "split_codes", "tables_of"]


@dataclass
class Tables:
    """The output rows of one chunk, and per trajectory its split code, length and outcome."""

    steps: pa.Table
    outcomes: pa.Table
    split: np.ndarray  # index into SPLITS
    lengths: np.ndarray
    agreement: np.ndarray


def split_codes(hashes: np.ndarray, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Per trajectory, the index of its split in :data:`SPLITS` (see ``assign_split``)."""
    u = hashes.astype(np.float64) / 2.0**64
    val = np.where(u < test_fraction + val_fraction, 1, 0)
    return np.where(u < test_fraction, 2, val).astype(np.int8)


def _split_strings(codes: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(list(SPLITS))).cast(pa.string())


def _history_window(chunk: Chunk, k: int) -> tuple[pa.Array, pa.Array]:
    """The roles and normalised prices of the last ``k`` offers before each step: the rows
    just before it in its trajectory."""
    c = chunk.columns
    f = c.floats
    win = np.minimum(chunk.runs.pos, k)
    offsets = np.zeros(len(win) + 1, dtype=np.int32)
    np.cumsum(win, out=offsets[1:])
    owner = np.repeat(np.arange(len(win)), win)
    source = owner - win[owner] + (np.arange(int(offsets[-1])) - offsets[owner])
    low, span = f["price_low"], f["price_high"] - f["price_low"]
    with np.errstate(invalid="ignore"):
        prices = (f["offer_price"][source] - low[owner]) / span[owner]
    roles = c.arrays["role"].take(pa.array(source))
    offsets_array = pa.array(offsets)
    return (
        pa.ListArray.from_arrays(offsets_array, roles),
        pa.ListArray.from_arrays(offsets_array, pa.array(prices)),
    )


def _steps(chunk: Chunk, split: np.ndarray, k: int, provenance: bool) -> pa.Table:
    c = chunk.columns
    a, f = c.arrays, c.floats
    low, span = f["price_low"], f["price_high"] - f["price_low"]
    with np.errstate(invalid="ignore"):
        last_norm = (f["last_offer_price"] - low) / span
        target_norm = (f["offer_price"] - low) / span
    history_roles, history_prices = _history_window(chunk, k)
    max_turns = c.ints["max_turns"].astype(np.int32)
    turn = c.ints["turn"].astype(np.int32)
    columns = [
        a["trajectory_id"],
        pa.array(c.ints["step"].astype(np.int32)),
        a["role"],
        pa.array(turn),
        pa.array(max_turns - turn),
        pa.array(max_turns),
        a["reservation_norm"],
        pa.array(last_norm, mask=c.nulls["last_offer_price"]),
        history_roles,
        history_prices,
        a["action"],
        pa.array(target_norm, mask=c.nulls["offer_price"]),
        pa.array(np.where(c.agreement, f["rho_outcome"], IMPASSE_RHO)),
        _split_strings(split[chunk.runs.run]),
        a["reservation_price"],
        a["price_low"],
        a["price_high"],
        a["last_offer_price"],
        a["offer_price"],
        a["outcome"],
        a["buyer_strategy"],
        a["seller_strategy"],
        a["first_mover"],
        a["seed"],
    ]
    if provenance:
        columns += [a["source"], a["round"].cast(pa.int32())]
    return pa.Table.from_arrays(columns, schema=decision_steps_schema(provenance))


def _outcomes(chunk: Chunk, split: np.ndarray, provenance: bool) -> pa.Table:
    c, runs = chunk.columns, chunk.runs
    a, f = c.arrays, c.floats
    starts = runs.starts
    take = pa.array(starts)
    agreement = c.agreement[starts]
    buyer, seller = side_reservations(c, runs)
    columns = [
        a["trajectory_id"].take(take),
        pa.array(agreement),
        a["outcome"].take(take),
        pa.array(f["final_price"][starts], mask=~agreement),
        pa.array(np.where(agreement, f["rho_outcome"][starts], IMPASSE_RHO)),
        pa.array(runs.lengths.astype(np.int32)),
        pa.array(c.ints["max_turns"][starts].astype(np.int32)),
        a["buyer_strategy"].take(take),
        a["seller_strategy"].take(take),
        a["first_mover"].take(take),
        pa.array(buyer),
        pa.array(seller),
        pa.array(buyer - seller),
        a["price_low"].take(take),
        a["price_high"].take(take),
        a["seed"].take(take),
        _split_strings(split),
    ]
    if provenance:
        columns += [a["source"].take(take), a["round"].take(take).cast(pa.int32())]
    return pa.Table.from_arrays(columns, schema=trajectory_outcomes_schema(provenance))


def tables_of(
    chunk: Chunk, *, k: int, val_fraction: float, test_fraction: float, provenance: bool
) -> Tables:
    """The valid trajectories of ``chunk`` as output rows (``provenance``: with the
    ``source``/``round`` columns)."""
    runs = chunk.runs
    split = split_codes(runs.hashes, val_fraction, test_fraction)
    steps = _steps(chunk, split, k, provenance)
    outcomes = _outcomes(chunk, split, provenance)
    valid = chunk.valid_run
    if not chunk.all_valid:
        steps = steps.filter(pa.array(valid[runs.run]))
        outcomes = outcomes.filter(pa.array(valid))
    agreement = chunk.columns.agreement[runs.starts]
    return Tables(steps, outcomes, split[valid], runs.lengths[valid], agreement[valid])
