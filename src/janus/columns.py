"""Typed numpy views of a parsed block of records, and its trajectories ("runs").

A block is an Arrow table in :func:`janus.schema.input_schema`. The checks
(:mod:`janus.checks`) and the features (:mod:`janus.features`) both work on these views,
built once per block: numbers with their nulls filled (a null is reported by its own check
first), the enum fields as boolean masks, the history flattened, and the runs of consecutive
rows that share a trajectory id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Columns", "Runs", "split_hash"]

INT_FIELDS = ("schema_version", "step", "turn", "max_turns", "turns_remaining", "seed", "round")
FLOAT_FIELDS = (
    "reservation_price",
    "reservation_norm",
    "price_low",
    "price_high",
    "last_offer_price",
    "offer_price",
    "final_price",
    "rho_outcome",
)


def split_hash(trajectory_id: str) -> int:
    """The 64-bit hash of a trajectory id: its split, and the reappearing-id check."""
    digest = hashlib.blake2b(trajectory_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def column(table: pa.Table, name: str) -> pa.Array:
    """One column as a single array."""
    chunked = table.column(name)
    return chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)


def nulls_of(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.zeros(len(array), dtype=bool)
    return array.is_null().to_numpy(zero_copy_only=False)


def ints_of(array: pa.Array) -> np.ndarray:
    if array.null_count:
        array = pc.fill_null(array, 0)
    return array.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def floats_of(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def equals(array: pa.Array, value: str) -> np.ndarray:
    return pc.fill_null(pc.equal(array, value), False).to_numpy(zero_copy_only=False)


def filled_ids(table: pa.Table) -> pa.Array:
    """Trajectory ids, a null one taking the id before it: a line that names no trajectory
    belongs to the trajectory in flight."""
    tid = column(table, "trajectory_id")
    return pc.fill_null_forward(tid) if tid.null_count else tid


@dataclass
class Runs:
    """The trajectories of a block: maximal runs of consecutive rows with one id."""

    lines: np.ndarray  # 1-based file line of each row
    run: np.ndarray  # row -> its run
    starts: np.ndarray  # run -> its first row
    lengths: np.ndarray  # run -> its number of rows
    pos: np.ndarray  # row -> its index in its run
    is_start: np.ndarray
    is_last: np.ndarray
    ids: list[str | None]  # run -> its trajectory id
    hashes: np.ndarray  # run -> split_hash of its id (0 without one)

    @classmethod
    def of(cls, table: pa.Table, lines: np.ndarray) -> Runs:
        n = table.num_rows
        tid = filled_ids(table)
        new_run = np.ones(n, dtype=bool)
        if n > 1:
            differs = pc.not_equal(tid.slice(1), tid.slice(0, n - 1))
            new_run[1:] = pc.fill_null(differs, True).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(new_run)
        run = np.cumsum(new_run) - 1
        lengths = np.diff(np.append(starts, n))
        pos = np.arange(n) - starts[run]
        is_last = np.zeros(n, dtype=bool)
        is_last[starts + lengths - 1] = True
        ids = tid.take(pa.array(starts)).to_pylist()
        hashes = np.array([split_hash(x) if x is not None else 0 for x in ids], dtype=np.uint64)
        return cls(lines, run, starts, lengths, pos, pos == 0, is_last, ids, hashes)


@dataclass
class Columns:
    """The fields of a block as arrays. ``ints``/``floats`` are keyed by record field name."""

    arrays: dict[str, pa.Array]
    nulls: dict[str, np.ndarray]
    ints: dict[str, np.ndarray]
    floats: dict[str, np.ndarray]
    buyer: np.ndarray
    seller: np.ndarray
    is_offer: np.ndarray
    is_accept: np.ndarray
    agreement: np.ndarray
    impasse: np.ndarray
    first_buyer: np.ndarray
    first_seller: np.ndarray
    history: History

    @classmethod
    def of(cls, table: pa.Table) -> Columns:
        arrays = {name: column(table, name) for name in table.schema.names}
        return cls(
            arrays=arrays,
            nulls={name: nulls_of(array) for name, array in arrays.items()},
            ints={name: ints_of(arrays[name]) for name in INT_FIELDS},
            floats={name: floats_of(arrays[name]) for name in FLOAT_FIELDS},
            buyer=equals(arrays["role"], "buyer"),
            seller=equals(arrays["role"], "seller"),
            is_offer=equals(arrays["action"], "OFFER"),
            is_accept=equals(arrays["action"], "ACCEPT"),
            agreement=equals(arrays["outcome"], "agreement"),
            impasse=equals(arrays["outcome"], "impasse"),
            first_buyer=equals(arrays["first_mover"], "buyer"),
            first_seller=equals(arrays["first_mover"], "seller"),
            history=History.of(arrays["history"]),
        )

    def value(self, name: str, row: int) -> object:
        """One field of one row as Python (for error messages)."""
        return self.arrays[name][int(row)].as_py()


@dataclass
class History:
    """The ``history`` lists flattened: one entry per offer, ``parent`` = its row."""

    length: np.ndarray  # row -> its number of entries
    ends: np.ndarray  # row -> end of its entries in the flat arrays
    parent: np.ndarray
    role: pa.Array
    role_null: np.ndarray
    price: np.ndarray
    price_null: np.ndarray
    entry_null: np.ndarray
    buyer: np.ndarray
    seller: np.ndarray

    @classmethod
    def of(cls, history: pa.Array) -> History:
        length = ints_of(pc.list_value_length(history))
        flat = pc.list_flatten(history)
        role = flat.field("role")
        price = flat.field("price")
        return cls(
            length=length,
            ends=np.cumsum(length),
            parent=pc.list_parent_indices(history).to_numpy(zero_copy_only=False),
            role=role,
            role_null=nulls_of(role),
            price=floats_of(price),
            price_null=nulls_of(price),
            entry_null=flat.is_null().to_numpy(zero_copy_only=False),
            buyer=equals(role, "buyer"),
            seller=equals(role, "seller"),
        )

    def rows_where(self, entry_mask: np.ndarray, n: int) -> np.ndarray:
        """Rows with at least one entry in ``entry_mask``."""
        rows = np.zeros(n, dtype=bool)
        rows[self.parent[entry_mask]] = True
        return rows


def side_reservations(c: Columns, runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    """Per run, the buyer's and the seller's reservation as each side's own first record
    shows (a run of one row shows only its mover's)."""
    res = c.floats["reservation_price"]
    n = len(res)
    second = np.minimum(runs.starts + 1, n - 1)
    start_buyer = c.buyer[runs.starts]
    buyer = np.where(start_buyer, res[runs.starts], res[second])
    seller = np.where(start_buyer, res[second], res[runs.starts])
    return buyer, seller


def same_as_previous(values: np.ndarray, nulls: np.ndarray) -> np.ndarray:
    """out[i] = values[i] == values[i − 1], nulls equal to each other only; out[0] = True."""
    out = np.ones(len(values), dtype=bool)
    if len(values) > 1:
        both = nulls[1:] & nulls[:-1]
        one = nulls[1:] ^ nulls[:-1]
        out[1:] = ((values[1:] == values[:-1]) | both) & ~one
    return out


def strings_same_as_previous(array: pa.Array) -> np.ndarray:
    """:func:`same_as_previous` for a string column."""
    out = np.ones(len(array), dtype=bool)
    if len(array) > 1:
        now, before = array.slice(1), array.slice(0, len(array) - 1)
        same = pc.or_kleene(pc.equal(now, before), pc.and_(now.is_null(), before.is_null()))
        out[1:] = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    return out


def previous(values: np.ndarray) -> np.ndarray:
    """out[i] = values[i − 1]; out[0] = NaN."""
    out = np.full(len(values), np.nan)
    out[1:] = values[:-1]
    return out
