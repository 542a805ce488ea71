"""JSONL episodes → Parquet training tables, validated, labelled and split, in bounded memory.

``prepare(episodes.jsonl, out_dir)`` writes three files:

- ``decision_steps.parquet``: one row per decision step with the prompt's features
  (:data:`DECISION_STEPS_SCHEMA`), the target and ``rho_train``;
- ``trajectory_outcomes.parquet``: one row per trajectory (:data:`TRAJECTORY_OUTCOMES_SCHEMA`);
- ``prepare_meta.json``: options, counts per split, skipped counts, source file, versions.

How it runs
    The file is read in blocks of whole lines. Each block is parsed by pyarrow's C++ JSON
    reader against an explicit schema, then validated and turned into features with
    vectorised numpy/arrow code, and written as one Parquet row group; the trajectory still in
    flight at the end of a block is carried over to the next one. Memory is bounded by the block
    size (plus 8 bytes per trajectory id, to catch a trajectory that reappears). Only when
    pyarrow cannot parse a block does a line-by-line Python pass run on it, to name the bad line
    (or, with ``skip_invalid``, to drop it).

Validation
    The checks are those of the reference reader :class:`janus.dataset.DatasetReader`, in the
    same order, so the first failure is reported at the same line and field: types, missing
    fields, NaN/∞, enums, prices in range, turns (consecutive steps, alternating roles, turn ≤
    max_turns, impasses reaching max_turns), the history against the trajectory's own earlier
    offers, ρ (constant in a trajectory, in [0, 1] and equal to the final price's ρ on an
    agreement, −1.0 on an impasse) and contiguity (a trajectory id that reappears after another
    one, the sign of two runs appended into one file). A failure raises
    :class:`~janus.dataset.DataValidationError` (``FILE:LINE: field 'NAME': why``) and nothing
    is written: outputs go to a temporary folder that is moved into place at the very end.

Splits
    Per trajectory, from a stable hash: ``u = blake2b(trajectory_id, 8 bytes) / 2**64``; test
    if ``u < test_fraction``, val if ``u < test_fraction + val_fraction``, else train. A
    trajectory never straddles splits, and changing ``val_fraction`` never moves a test one.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

import janus
from janus.dataset import (
    CONSTANT_FIELDS,
    RECORD_FIELDS,
    RHO_TOLERANCE,
    SCHEMA_VERSION,
    DataValidationError,
    OutputError,
    _Invalid,
    guess_trajectory_id,
    parse_line,
)

__all__ = [
    "DECISION_STEPS_FILE",
    "DECISION_STEPS_SCHEMA",
    "META_FILE",
    "TRAJECTORY_OUTCOMES_FILE",
    "TRAJECTORY_OUTCOMES_SCHEMA",
    "DataValidationError",
    "PrepareSummary",
    "assign_split",
    "prepare",
    "split_hash",
]

DECISION_STEPS_FILE = "decision_steps.parquet"
TRAJECTORY_OUTCOMES_FILE = "trajectory_outcomes.parquet"
META_FILE = "prepare_meta.json"
OUTPUT_FILES = (DECISION_STEPS_FILE, TRAJECTORY_OUTCOMES_FILE, META_FILE)
DEFAULT_BLOCK_BYTES = 16 << 20
_MAX_CARRY_ROWS = 10_000
SPLITS = ("train", "val", "test")

DECISION_STEPS_SCHEMA = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("step", pa.int32()),
        ("role", pa.string()),
        ("turn", pa.int32()),
        ("turns_remaining", pa.int32()),
        ("max_turns", pa.int32()),
        ("reservation_norm", pa.float64()),
        ("last_offer_norm", pa.float64()),
        ("history_roles", pa.list_(pa.string())),
        ("history_prices_norm", pa.list_(pa.float64())),
        ("target_action", pa.string()),
        ("target_price_norm", pa.float64()),
        ("rho_train", pa.float64()),
        ("split", pa.string()),
        # extras
        ("reservation_price", pa.float64()),
        ("price_low", pa.float64()),
        ("price_high", pa.float64()),
        ("last_offer_price", pa.float64()),
        ("target_price", pa.float64()),
        ("outcome", pa.string()),
        ("buyer_strategy", pa.string()),
        ("seller_strategy", pa.string()),
        ("first_mover", pa.string()),
        ("seed", pa.int64()),
    ]
)
"""Columns of ``decision_steps.parquet``; the first fourteen are the contract of the trainer."""

TRAJECTORY_OUTCOMES_SCHEMA = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("agreement", pa.bool_()),
        ("outcome", pa.string()),
        ("final_price", pa.float64()),
        ("rho", pa.float64()),
        ("turns", pa.int32()),
        ("max_turns", pa.int32()),
        ("buyer_strategy", pa.string()),
        ("seller_strategy", pa.string()),
        ("first_mover", pa.string()),
        ("buyer_reservation", pa.float64()),
        ("seller_reservation", pa.float64()),
        ("zopa_width", pa.float64()),
        ("price_low", pa.float64()),
        ("price_high", pa.float64()),
        ("seed", pa.int64()),
        ("split", pa.string()),
    ]
)
"""Columns of ``trajectory_outcomes.parquet`` (reservations as the records of each side show)."""

# low-cardinality columns: dictionary-encoded in Parquet (ids and prices would only pay for it)
_DICTIONARY_COLUMNS = [
    "role", "history_roles", "target_action", "split", "outcome", "buyer_strategy",
    "seller_strategy", "first_mover",
]  # fmt: skip

_HISTORY_TYPE = pa.list_(pa.struct([("role", pa.string()), ("price", pa.float64())]))
_ARROW_KIND = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "history": _HISTORY_TYPE,
}
INPUT_SCHEMA = pa.schema(
    [(f.name, _ARROW_KIND[f.kind]) for f in RECORD_FIELDS if f.name != "episode"]
)
"""The explicit schema the JSON blocks are parsed against (unknown fields are ignored)."""


# ------------------------------------------------------------------------------------ split


def split_hash(trajectory_id: str) -> int:
    """The 64-bit hash that places a trajectory in a split (stable across runs and machines)."""
    digest = hashlib.blake2b(trajectory_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign_split(trajectory_id: str, val_fraction: float, test_fraction: float) -> str:
    """train / val / test for one trajectory (see the module docstring)."""
    u = split_hash(trajectory_id) / 2.0**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


# ---------------------------------------------------------------------------------- summary


@dataclass
class PrepareSummary:
    """What ``prepare`` wrote; ``print(summary)`` gives a short report."""

    out_dir: Path
    source: Path
    k: int
    val_fraction: float
    test_fraction: float
    rows: Counter[str] = field(default_factory=Counter)
    trajectories: Counter[str] = field(default_factory=Counter)
    agreements: int = 0
    impasses: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_lines: int = 0
    lines_read: int = 0
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_trajectories(self) -> int:
        return sum(self.trajectories.values())

    @property
    def skipped_trajectories(self) -> int:
        return sum(self.skipped.values())

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds else 0.0

    def to_meta(self, source_size: int) -> dict[str, Any]:
        return {
            "janus_version": janus.__version__,
            "input_schema_version": SCHEMA_VERSION,
            "source": {"name": self.source.name, "path": str(self.source), "bytes": source_size},
            "k": self.k,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "split_rule": "u = blake2b(trajectory_id utf-8, digest_size=8) big-endian / 2**64; "
            "test if u < test_fraction, val if u < test_fraction + val_fraction, else train",
            "rows": {s: self.rows[s] for s in SPLITS},
            "trajectories": {s: self.trajectories[s] for s in SPLITS},
            "agreements": self.agreements,
            "impasses": self.impasses,
            "skipped_trajectories": dict(sorted(self.skipped.items())),
            "skipped_lines": self.skipped_lines,
            "files": list(OUTPUT_FILES),
        }

    def format(self) -> str:
        lines = [
            f"prepared {self.total_rows:,} decision steps of {self.total_trajectories:,} "
            f"trajectories from {self.source} into {self.out_dir} "
            f"({self.seconds:.1f} s, {self.rows_per_second:,.0f} rows/s)",
            "  "
            + ", ".join(
                f"{s}: {self.trajectories[s]:,} trajectories / {self.rows[s]:,} rows"
                for s in SPLITS
            ),
            f"  {self.agreements:,} agreements, {self.impasses:,} impasses; history window k = "
            f"{self.k}",
        ]
        if self.skipped:
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items()))
            lines.append(
                f"  skipped {self.skipped_trajectories:,} invalid trajectories "
                f"({self.skipped_lines:,} lines): {reasons}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# --------------------------------------------------------------------------------- reading


@dataclass
class _Block:
    """One parsed block: rows with their 1-based line numbers, whether it ends the file, the
    first bad line of a strict-mode block (and its number), and, in skip mode, the trajectories
    its bad lines condemn (``(id or None, reason)``, applied in file order by the consumer)."""

    table: pa.Table
    lines: np.ndarray
    last: bool
    error: _Invalid | None = None
    error_line: int = 0
    poison: list[tuple[str | None, str]] = field(default_factory=list)
    bad_lines: int = 0
    nbytes: int = 0


_READ_OPTIONS = pajson.ReadOptions(use_threads=True, block_size=1 << 20)
_PARSE_OPTIONS = pajson.ParseOptions(
    explicit_schema=INPUT_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=False
)


def _iter_raw_blocks(path: Path, block_bytes: int) -> Iterator[tuple[memoryview, int, bool]]:
    """(whole lines, line number of the first, is_last), reading ``path`` in blocks.

    Each read starts at the beginning of a line (the partial line at the end of a block is
    read again with the next block), so no block is ever copied.
    """
    line = 1
    with open(path, "rb", buffering=0) as handle:
        while True:
            data = handle.read(block_bytes)
            if not data:
                yield memoryview(b""), line, True  # closes the last trajectory
                return
            if len(data) < block_bytes:  # the end of the file
                yield memoryview(data), line, True
                return
            cut = data.rfind(b"\n")
            while cut < 0:  # a line longer than a block: read on until its end
                more = handle.read(block_bytes)
                if not more:
                    yield memoryview(data), line, True
                    return
                data += more
                cut = data.rfind(b"\n")
            handle.seek(cut + 1 - len(data), os.SEEK_CUR)
            yield memoryview(data)[: cut + 1], line, False
            line += data.count(b"\n", 0, cut + 1)


class _Reader:
    """Turns raw blocks into parsed :class:`_Block` s, falling back to Python on bad blocks.

    Runs in a background thread (pyarrow parses without the GIL), so it keeps only its own
    state: the id of the last line that parsed, to blame a line that names no trajectory.
    """

    def __init__(self, path: Path, skip_invalid: bool, block_bytes: int) -> None:
        self.path = path
        self.skip_invalid = skip_invalid
        self.block_bytes = block_bytes
        self.last_tid: str | None = None
        self.lines_read = 0

    def blocks(self) -> Iterator[_Block]:
        for raw, first_line, last in _iter_raw_blocks(self.path, self.block_bytes):
            if not raw:
                yield _Block(INPUT_SCHEMA.empty_table(), np.empty(0, np.int64), last)
                continue
            newlines = raw.obj.count(b"\n", 0, len(raw))
            lines_in_block = newlines + (0 if raw[-1] == 10 else 1)
            self.lines_read = first_line + lines_in_block - 1
            table = None
            try:
                if not _is_utf8(raw):
                    raise pa.ArrowInvalid("not UTF-8")  # let the Python pass name the line
                table = pajson.read_json(
                    pa.BufferReader(pa.py_buffer(raw)),
                    read_options=_READ_OPTIONS,
                    parse_options=_PARSE_OPTIONS,
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                table = None
            if table is not None and table.num_rows == lines_in_block:
                lines = np.arange(first_line, first_line + table.num_rows, dtype=np.int64)
                self.last_tid = table.column("trajectory_id")[-1].as_py()
                yield _Block(table, lines, last, nbytes=len(raw))
                continue
            yield self._python_block(bytes(raw), first_line, last)

    def _python_block(self, raw: bytes, first_line: int, last: bool) -> _Block:
        records: list[dict[str, Any]] = []
        lines: list[int] = []
        poison: list[tuple[str | None, str]] = []
        bad_lines = 0
        for offset, line in enumerate(raw.split(b"\n")):
            if not line.strip():
                continue
            lineno = first_line + offset
            try:
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    raise _Invalid(None, "malformed line (not UTF-8)", "malformed_json") from None
                record = parse_line(text)
            except _Invalid as err:
                tid = err.trajectory_id or guess_trajectory_id(line.decode("utf-8", "replace"))
                if not self.skip_invalid:
                    err.trajectory_id = tid
                    table = self._table(records)
                    return _Block(table, np.array(lines, np.int64), False, err, lineno)
                bad_lines += 1
                poison.append((tid if tid is not None else self.last_tid, err.reason))
                continue
            records.append(record)
            lines.append(lineno)
            self.last_tid = record["trajectory_id"]
        table = self._table(records)
        return _Block(
            table,
            np.array(lines, np.int64),
            last,
            poison=poison,
            bad_lines=bad_lines,
            nbytes=len(raw),
        )

    def _table(self, records: list[dict[str, Any]]) -> pa.Table:
        try:
            return pa.Table.from_pylist(records, schema=INPUT_SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:  # pragma: no cover
            raise DataValidationError(
                self.path, None, None, f"cannot convert records: {exc}"
            ) from None


def _is_utf8(raw: memoryview) -> bool:
    data = raw.obj if len(raw) == len(raw.obj) else bytes(raw)
    if data.isascii():  # what Janus writes: checked at memory speed
        return True
    try:
        codecs.decode(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _prefetch(blocks: Iterator[_Block], depth: int = 2) -> Iterator[_Block]:
    """Parse the next blocks in a background thread while this one is being processed."""
    queue: Queue[tuple[_Block | None, BaseException | None]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for block in blocks:
                while not stop.is_set():
                    try:
                        queue.put((block, None), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put((None, None))
        except BaseException as exc:  # handed to the consumer
            queue.put((None, exc))

    thread = threading.Thread(target=produce, name="janus-prepare-reader", daemon=True)
    thread.start()
    try:
        while True:
            block, exc = queue.get()
            if exc is not None:
                raise exc
            if block is None:
                return
            yield block
    finally:
        stop.set()
        with contextlib.suppress(Empty):
            while True:
                queue.get_nowait()
        thread.join()


class _HashSet:
    """A set of uint64 hashes as a few sorted arrays (merged like a binary counter): 8 bytes
    per element, O(log) membership tests, and no quadratic re-sorting as it grows."""

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []

    def contains(self, values: np.ndarray) -> np.ndarray:
        found = np.zeros(len(values), dtype=bool)
        for level in self.levels:
            where = np.searchsorted(level, values)
            where[where >= len(level)] = 0
            found |= level[where] == values
        return found

    def add(self, values: np.ndarray) -> None:
        new = np.unique(values)
        while self.levels and len(self.levels[-1]) <= 2 * len(new):
            new = np.union1d(self.levels.pop(), new)
        self.levels.append(new)


@dataclass
class _Check:
    field: str | None
    reason: str
    mask: np.ndarray
    message: Callable[[int], str]


def _col(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)


def _null(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.zeros(len(array), dtype=bool)
    return array.is_null().to_numpy(zero_copy_only=False)


def _ints(array: pa.Array) -> np.ndarray:
    if array.null_count:
        array = pc.fill_null(array, 0)
    return array.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _floats(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _eq(array: pa.Array, value: str) -> np.ndarray:
    return pc.fill_null(pc.equal(array, value), False).to_numpy(zero_copy_only=False)


def _same_as_previous(values: np.ndarray, nulls: np.ndarray | None = None) -> np.ndarray:
    """out[i] = values[i] == values[i − 1] (nulls equal each other); out[0] = True."""
    out = np.ones(len(values), dtype=bool)
    if len(values) > 1:
        out[1:] = values[1:] == values[:-1]
        if nulls is not None:
            both = nulls[1:] & nulls[:-1]
            one = nulls[1:] ^ nulls[:-1]
            out[1:] = (out[1:] | both) & ~one
    return out


def _strings_same_as_previous(array: pa.Array) -> np.ndarray:
    out = np.ones(len(array), dtype=bool)
    if len(array) > 1:
        eq = pc.equal(array.slice(1), array.slice(0, len(array) - 1))
        both_null = pc.and_(array.slice(1).is_null(), array.slice(0, len(array) - 1).is_null())
        out[1:] = pc.fill_null(pc.or_(eq, both_null), False).to_numpy(zero_copy_only=False)
    return out


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null" if value is None else "nan"
    return repr(value)


class _Processor:
    """Validates and featurises complete trajectories; keeps the cross-block state."""

    def __init__(
        self,
        path: Path,
        *,
        k: int,
        val_fraction: float,
        test_fraction: float,
        skip_invalid: bool,
        summary: PrepareSummary,
    ) -> None:
        self.path = path
        self.k = k
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.skip_invalid = skip_invalid
        self.summary = summary
        self.seen = _HashSet()  # hashes of the trajectory ids seen so far
        self.poisoned: dict[str, str] = {}  # skip mode: ids whose later lines are dropped

    # -- the checks -----------------------------------------------------------------------------
    def _checks(
        self,
        t: pa.Table,
        lines: np.ndarray,
        run: np.ndarray,
        starts: np.ndarray,
        hashes: np.ndarray,
    ) -> tuple[list[_Check], dict[str, Any]]:
        n = t.num_rows
        idx = np.arange(n)
        lengths = np.diff(np.append(starts, n))
        pos = idx - starts[run]
        is_start = pos == 0
        run_end = starts + lengths - 1
        is_last = np.zeros(n, dtype=bool)
        is_last[run_end] = True
        checks: list[_Check] = []
        a: dict[str, pa.Array] = {name: _col(t, name) for name in INPUT_SCHEMA.names}
        nulls = {name: _null(arr) for name, arr in a.items()}

        def add(field: str | None, reason: str, mask: np.ndarray, message: Callable[[int], str]):
            if mask.any():
                checks.append(_Check(field, reason, mask, message))

        def py(name: str, i: int) -> Any:
            return a[name][int(i)].as_py()

        # numeric views (nulls filled; nulls are reported first anyway)
        ints = {
            name: _ints(a[name])
            for name in ("schema_version", "step", "turn", "max_turns", "turns_remaining", "seed")
        }
        fl = {
            name: _floats(a[name])
            for name in (
                "reservation_price",
                "reservation_norm",
                "price_low",
                "price_high",
                "last_offer_price",
                "offer_price",
                "final_price",
                "rho_outcome",
            )
        }
        hist = a["history"]
        hist_len = _ints(pc.list_value_length(hist))
        flat = pc.list_flatten(hist)
        h_parent = pc.list_parent_indices(hist).to_numpy(zero_copy_only=False)
        h_role = flat.field("role")
        h_price_null = _null(flat.field("price"))
        h_price = _floats(flat.field("price"))

        # 1. per field, in record order: missing/null, then non-finite
        with np.errstate(invalid="ignore"):
            for spec in RECORD_FIELDS:
                name = spec.name
                if name not in a:
                    continue
                if spec.required and not spec.nullable:
                    add(name, "missing_field", nulls[name], lambda i, name=name: "missing or null")
                if spec.kind == "float":
                    bad = ~nulls[name] & ~np.isfinite(fl[name])
                    add(
                        name,
                        "non_finite",
                        bad,
                        lambda i, name=name: f"{_fmt(fl[name][i])} is not a finite number",
                    )
                if spec.kind == "history":
                    entry_bad = (
                        flat.is_null().to_numpy(zero_copy_only=False) | _null(h_role) | h_price_null
                    )
                    mask = np.zeros(n, dtype=bool)
                    mask[h_parent[entry_bad]] = True
                    add(
                        name,
                        "bad_type",
                        mask,
                        lambda i: "entries must be {role: str, price: number}",
                    )
                    entry_inf = ~h_price_null & ~np.isfinite(h_price)
                    mask = np.zeros(n, dtype=bool)
                    mask[h_parent[entry_inf]] = True
                    add(name, "non_finite", mask, lambda i: "holds a non-finite price")

        # 2. schema version, enums
        add(
            "schema_version",
            "schema_version",
            ints["schema_version"] != SCHEMA_VERSION,
            lambda i: (
                f"unsupported schema version {ints['schema_version'][i]} "
                f"(this Janus reads {SCHEMA_VERSION})"
            ),
        )
        buyer = _eq(a["role"], "buyer")
        seller = _eq(a["role"], "seller")
        is_offer = _eq(a["action"], "OFFER")
        is_accept = _eq(a["action"], "ACCEPT")
        agreement = _eq(a["outcome"], "agreement")
        impasse = _eq(a["outcome"], "impasse")
        fm_buyer = _eq(a["first_mover"], "buyer")
        fm_seller = _eq(a["first_mover"], "seller")
        for name, ok, allowed in (
            ("role", buyer | seller, "['buyer', 'seller']"),
            ("action", is_offer | is_accept, "['ACCEPT', 'OFFER']"),
            ("outcome", agreement | impasse, "['agreement', 'impasse']"),
            ("first_mover", fm_buyer | fm_seller, "['buyer', 'seller']"),
        ):
            add(
                name,
                "bad_value",
                ~ok & ~nulls[name],
                lambda i, name=name, allowed=allowed: f"{py(name, i)!r} is not one of {allowed}",
            )
        h_buyer = _eq(h_role, "buyer")
        h_seller = _eq(h_role, "seller")
        mask = np.zeros(n, dtype=bool)
        mask[h_parent[~(h_buyer | h_seller) & ~_null(h_role)]] = True
        add(
            "history",
            "bad_value",
            mask,
            lambda i: "a history role is not one of ['buyer', 'seller']",
        )

        # 3. the clock
        step, turn, max_turns = ints["step"], ints["turn"], ints["max_turns"]
        add(
            "max_turns",
            "bad_value",
            max_turns < 2,
            lambda i: f"must be at least 2, got {max_turns[i]}",
        )
        add("step", "turn_order", step < 0, lambda i: f"must be >= 0, got {step[i]}")
        add(
            "turn",
            "turn_order",
            turn != step + 1,
            lambda i: f"turn {turn[i]} is not step + 1 = {step[i] + 1}",
        )
        add(
            "turn",
            "turn_order",
            turn > max_turns,
            lambda i: f"turn {turn[i]} is past max_turns {max_turns[i]}",
        )
        remaining = ints["turns_remaining"]
        add(
            "turns_remaining",
            "turn_order",
            ~nulls["turns_remaining"] & (remaining != max_turns - turn),
            lambda i: f"{remaining[i]} is not max_turns − turn = {max_turns[i] - turn[i]}",
        )

        # 4. prices
        low, high = fl["price_low"], fl["price_high"]
        res, res_norm = fl["reservation_price"], fl["reservation_norm"]
        offer, last_offer = fl["offer_price"], fl["last_offer_price"]
        final, rho = fl["final_price"], fl["rho_outcome"]
        offer_null, last_null, final_null = (
            nulls["offer_price"],
            nulls["last_offer_price"],
            nulls["final_price"],
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            add(
                "price_high",
                "price_range",
                ~(low < high),
                lambda i: f"price range [{low[i]}, {high[i]}] is empty",
            )

            def outside(values: np.ndarray) -> np.ndarray:
                return ~((low <= values) & (values <= high))

            add(
                "reservation_price",
                "price_range",
                outside(res),
                lambda i: f"{res[i]} is outside [{low[i]}, {high[i]}]",
            )
            expected_norm = (res - low) / (high - low)
            add(
                "reservation_norm",
                "bad_value",
                ~(np.abs(res_norm - expected_norm) <= RHO_TOLERANCE),
                lambda i: f"{res_norm[i]} is not the normalised reservation {expected_norm[i]!r}",
            )
            add(
                "offer_price",
                "missing_field",
                is_offer & offer_null,
                lambda i: "is null for an OFFER",
            )
            add(
                "offer_price",
                "price_range",
                is_offer & ~offer_null & outside(offer),
                lambda i: f"{offer[i]} is outside [{low[i]}, {high[i]}]",
            )
            add(
                "offer_price",
                "bad_value",
                is_accept & ~offer_null,
                lambda i: "must be null for an ACCEPT",
            )
            add(
                "action",
                "bad_value",
                is_accept & offer_null & (hist_len == 0) & ~nulls["history"],
                lambda i: "ACCEPT with no standing offer",
            )
            add(
                "last_offer_price",
                "price_range",
                ~last_null & outside(last_offer),
                lambda i: f"{last_offer[i]} is outside [{low[i]}, {high[i]}]",
            )
            h_low, h_high = low[h_parent], high[h_parent]
            mask = np.zeros(n, dtype=bool)
            mask[h_parent[~((h_low <= h_price) & (h_price <= h_high))]] = True
            add("history", "price_range", mask, lambda i: "holds a price outside the price range")
            add(
                "final_price",
                "missing_field",
                agreement & final_null,
                lambda i: "is null for an agreement",
            )
            add(
                "final_price",
                "price_range",
                agreement & ~final_null & outside(final),
                lambda i: f"{final[i]} is outside [{low[i]}, {high[i]}]",
            )
            add(
                "rho_outcome",
                "rho_range",
                agreement & ~((rho >= 0.0) & (rho <= 1.0)),
                lambda i: f"ρ = {_fmt(rho[i])} is outside [0, 1] for an agreement",
            )
            add(
                "final_price",
                "bad_value",
                impasse & ~final_null,
                lambda i: "must be null for an impasse",
            )
            add(
                "rho_outcome",
                "rho_range",
                impasse & (rho != -1.0),
                lambda i: f"ρ = {_fmt(rho[i])} for an impasse (must be -1.0)",
            )
        add(
            "history",
            "history",
            (hist_len != step) & ~nulls["history"],
            lambda i: f"holds {hist_len[i]} offers at step {step[i]} (expected {step[i]})",
        )
        # last offer of the recorded history
        h_ends = np.cumsum(hist_len)
        has_hist = hist_len > 0
        last_hist = np.full(n, np.nan)
        last_hist[has_hist] = h_price[h_ends[has_hist] - 1]
        add(
            "last_offer_price",
            "history",
            (has_hist & (last_null | (last_offer != last_hist))) | (~has_hist & ~last_null),
            lambda i: (
                f"{_fmt(py('last_offer_price', i))} is not the last offer of the history "
                f"({_fmt(last_hist[i]) if has_hist[i] else 'None'})"
            ),
        )

        # 5. contiguity: a trajectory id that reappears after another one
        dup_run = self.seen.contains(hashes)
        order = np.argsort(hashes, kind="stable")
        sorted_h = hashes[order]
        again = np.zeros(len(starts), dtype=bool)
        again[order[1:]] = sorted_h[1:] == sorted_h[:-1]
        dup_run |= again
        mask = np.zeros(n, dtype=bool)
        mask[starts[dup_run]] = True
        add(
            "trajectory_id",
            "duplicate_trajectory",
            mask,
            lambda i: (
                f"trajectory {py('trajectory_id', i)!r} reappears after other trajectories "
                "(two runs appended into one file?)"
            ),
        )

        # 6. within a trajectory, row by row (the reader's incremental checks)
        prev_accept = np.zeros(n, dtype=bool)
        prev_accept[1:] = is_accept[:-1]
        add(
            "step",
            "turn_order",
            ~is_start & prev_accept,
            lambda i: f"the trajectory continues after its ACCEPT on line {lines[i - 1]}",
        )
        add(
            "step",
            "turn_order",
            step != pos,
            lambda i: f"step {step[i]} where step {pos[i]} was expected",
        )
        num_or_str = {
            "max_turns": (max_turns, None),
            "price_low": (low, None),
            "price_high": (high, None),
            "final_price": (final, final_null),
            "rho_outcome": (rho, None),
            "seed": (ints["seed"], None),
        }
        for name in CONSTANT_FIELDS:
            if name in num_or_str:
                values, vnull = num_or_str[name]
                same = _same_as_previous(values, vnull)
            else:
                same = _strings_same_as_previous(a[name])
            reason = "rho_not_constant" if name == "rho_outcome" else "not_constant"
            add(
                name,
                reason,
                ~is_start & ~same,
                lambda i, name=name: (
                    f"{_fmt(py(name, i))} differs from "
                    f"{_fmt(py(name, starts[run[i]]))} on line {lines[starts[run[i]]]} of the same "
                    "trajectory"
                ),
            )
        first_buyer = fm_buyer[starts[run]]
        expect_buyer = np.where(pos % 2 == 0, first_buyer, ~first_buyer)
        add(
            "role",
            "turn_order",
            buyer != expect_buyer,
            lambda i: (
                f"{py('role', i)!r} moves at step {pos[i]}, but "
                f"{'buyer' if expect_buyer[i] else 'seller'!r} should "
                "(turns alternate from first_mover)"
            ),
        )
        res_prev2 = np.full(n, np.nan)
        res_prev2[2:] = res[:-2]
        add(
            "reservation_price",
            "not_constant",
            (pos >= 2) & (res != res_prev2),
            lambda i: f"the {py('role', i)}'s reservation changes from {res_prev2[i]} to {res[i]}",
        )
        prev_offer = np.full(n, np.nan)
        prev_offer[1:] = offer[:-1]
        prev_offer_null = np.ones(n, dtype=bool)
        prev_offer_null[1:] = offer_null[:-1]
        mismatch = (last_null != prev_offer_null) | (~last_null & (last_offer != prev_offer))
        add(
            "last_offer_price",
            "history",
            ~is_start & mismatch,
            lambda i: (
                f"{_fmt(py('last_offer_price', i))} is not the previous step's offer "
                f"{_fmt(py('offer_price', i - 1))}"
            ),
        )
        # the recorded history against the trajectory's own earlier offers
        src = starts[run[h_parent]] + (np.arange(len(h_parent)) - (h_ends - hist_len)[h_parent])
        src = np.clip(src, 0, max(n - 1, 0))
        entry_ok = (
            (h_price == offer[src])
            & ~offer_null[src]
            & (h_buyer == buyer[src])
            & (h_seller == seller[src])
            & (src < np.arange(n)[h_parent] if len(h_parent) else True)
        )
        mask = np.zeros(n, dtype=bool)
        mask[h_parent[~entry_ok]] = True
        add("history", "history", mask, lambda i: "does not match the offers made before this step")

        # 7. end of trajectory (flagged on its last line)
        end_accept = is_accept & is_last
        add(
            "outcome",
            "outcome",
            is_last & agreement & ~is_accept,
            lambda i: "the trajectory is an agreement but ends without an ACCEPT",
        )
        add(
            "final_price",
            "outcome",
            end_accept & agreement & (final != prev_offer),
            lambda i: f"{final[i]} is not the accepted offer {prev_offer[i]}",
        )
        # reservations of each side, as its own records show
        second = np.minimum(starts + 1, n - 1)
        start_buyer = buyer[starts]
        buyer_res_run = np.where(start_buyer, res[starts], res[second])
        seller_res_run = np.where(start_buyer, res[second], res[starts])
        both_sides = lengths >= 2
        b_res = buyer_res_run[run]
        s_res = seller_res_run[run]
        two = both_sides[run]
        add(
            "reservation_price",
            "bad_value",
            is_last & agreement & two & ~(s_res < b_res),
            lambda i: f"seller reservation {s_res[i]} is not below the buyer's {b_res[i]}",
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            rho_check = (final - s_res) / (b_res - s_res)
            add(
                "rho_outcome",
                "rho_mismatch",
                is_last & agreement & two & ~(np.abs(rho_check - rho) <= RHO_TOLERANCE),
                lambda i: (
                    f"ρ = {rho[i]} but the final price and reservations give {rho_check[i]!r}"
                ),
            )
        add(
            "outcome",
            "outcome",
            is_last & impasse & is_accept,
            lambda i: "the trajectory ends with an ACCEPT but is marked impasse",
        )
        add(
            "turn",
            "turn_order",
            is_last & impasse & (lengths[run] != max_turns),
            lambda i: (
                f"an impasse must reach max_turns {max_turns[i]}, but the trajectory "
                f"ends at turn {turn[i]}"
            ),
        )

        derived = {
            "a": a,
            "fl": fl,
            "ints": ints,
            "pos": pos,
            "lengths": lengths,
            "buyer": buyer,
            "agreement": agreement,
            "buyer_res_run": buyer_res_run,
            "seller_res_run": seller_res_run,
            "offer_null": offer_null,
        }
        return checks, derived

    # -- one batch of complete trajectories -----------------------------------------------------
    def process(self, t: pa.Table, lines: np.ndarray) -> tuple[pa.Table, pa.Table] | None:
        """Validate ``t`` (whole trajectories) and return (decision rows, outcome rows)."""
        n = t.num_rows
        if n == 0:
            return None
        # a line without an id belongs to the trajectory in flight (as for the reader)
        tid = _filled_ids(t)
        new_run = np.ones(n, dtype=bool)
        if n > 1:
            diff = pc.not_equal(tid.slice(1), tid.slice(0, n - 1))
            new_run[1:] = pc.fill_null(diff, True).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(new_run)
        run = np.cumsum(new_run) - 1
        start_ids = tid.take(pa.array(starts)).to_pylist()
        hashes = np.array(
            [split_hash(x) if x is not None else 0 for x in start_ids], dtype=np.uint64
        )
        checks, d = self._checks(t, lines, run, starts, hashes)
        n_runs = len(starts)
        valid_run = np.ones(n_runs, dtype=bool)
        poisoned = self.poisoned
        if checks and not self.skip_invalid:
            best = None
            for order, check in enumerate(checks):
                row = int(np.argmax(check.mask))
                if best is None or (row, order) < best[:2]:
                    best = (row, order, check)
            row, _, check = best
            raise DataValidationError(
                self.path,
                int(lines[row]),
                check.field,
                check.message(row),
                check.reason,
                start_ids[run[row]],
            )
        if self.skip_invalid:
            silent = np.zeros(n_runs, dtype=bool)
            if poisoned:
                silent = np.array([x in poisoned for x in start_ids], dtype=bool)
            if checks:
                best_key = np.full(n_runs, np.iinfo(np.int64).max, dtype=np.int64)
                n_checks = len(checks)
                for order, check in enumerate(checks):
                    rows = np.flatnonzero(check.mask)
                    np.minimum.at(best_key, run[rows], rows.astype(np.int64) * n_checks + order)
                bad = best_key != np.iinfo(np.int64).max
                first_of: dict[str, int] = {}
                for r in range(n_runs):
                    first_of.setdefault(start_ids[r], r)
                for r in np.flatnonzero(bad & ~silent):
                    tid_r = start_ids[r]
                    reason = checks[int(best_key[r] % n_checks)].reason
                    if reason == "duplicate_trajectory" and not valid_run[first_of[tid_r]]:
                        pass  # the first occurrence was bad: the reader skips it silently
                    else:
                        self.summary.skipped[reason] += 1
                    valid_run[r] = False
                    if tid_r is not None:
                        poisoned.setdefault(tid_r, reason)
            valid_run &= ~silent
            self.summary.skipped_lines += int(d["lengths"][~valid_run].sum())
        self.seen.add(hashes)
        if not valid_run.any():
            return None
        return self._features(t, d, run, starts, hashes, valid_run)

    # -- features -------------------------------------------------------------------------------
    def _features(
        self,
        t: pa.Table,
        d: dict[str, Any],
        run: np.ndarray,
        starts: np.ndarray,
        hashes: np.ndarray,
        valid_run: np.ndarray,
    ) -> tuple[pa.Table, pa.Table]:
        a, fl, ints = d["a"], d["fl"], d["ints"]
        n = t.num_rows
        pos, lengths = d["pos"], d["lengths"]
        low, high = fl["price_low"], fl["price_high"]
        span = high - low
        offer, offer_null = fl["offer_price"], d["offer_null"]
        agreement_run = d["agreement"][starts]
        # splits, per trajectory
        u = hashes.astype(np.float64) / 2.0**64
        split_run = np.where(
            u < self.test_fraction, 2, np.where(u < self.test_fraction + self.val_fraction, 1, 0)
        ).astype(np.int8)
        split_dict = pa.array(list(SPLITS))
        split_rows = pa.DictionaryArray.from_arrays(pa.array(split_run[run]), split_dict)
        split_rows = split_rows.cast(pa.string())
        # history window: the last k offers before the step = the rows just before it
        win = np.minimum(pos, self.k)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(win, out=offsets[1:])
        total = int(offsets[-1])
        owner = np.repeat(np.arange(n), win)
        src = owner - win[owner] + (np.arange(total) - offsets[owner])
        with np.errstate(invalid="ignore"):
            prices_norm = (offer[src] - low[owner]) / span[owner]
            last_norm = (fl["last_offer_price"] - low) / span
            target_norm = (offer - low) / span
        roles = a["role"]
        history_roles = pa.ListArray.from_arrays(pa.array(offsets), roles.take(pa.array(src)))
        history_prices = pa.ListArray.from_arrays(pa.array(offsets), pa.array(prices_norm))
        rho_train = np.where(d["agreement"], fl["rho_outcome"], -1.0)
        max_turns = ints["max_turns"].astype(np.int32)
        turn = ints["turn"].astype(np.int32)
        last_null = _null(a["last_offer_price"])
        columns = {
            "trajectory_id": a["trajectory_id"],
            "step": pa.array(ints["step"].astype(np.int32)),
            "role": roles,
            "turn": pa.array(turn),
            "turns_remaining": pa.array(max_turns - turn),
            "max_turns": pa.array(max_turns),
            "reservation_norm": a["reservation_norm"],
            "last_offer_norm": pa.array(last_norm, mask=last_null),
            "history_roles": history_roles,
            "history_prices_norm": history_prices,
            "target_action": a["action"],
            "target_price_norm": pa.array(target_norm, mask=offer_null),
            "rho_train": pa.array(rho_train),
            "split": split_rows,
            "reservation_price": a["reservation_price"],
            "price_low": a["price_low"],
            "price_high": a["price_high"],
            "last_offer_price": a["last_offer_price"],
            "target_price": a["offer_price"],
            "outcome": a["outcome"],
            "buyer_strategy": a["buyer_strategy"],
            "seller_strategy": a["seller_strategy"],
            "first_mover": a["first_mover"],
            "seed": a["seed"],
        }
        steps = pa.Table.from_arrays(list(columns.values()), schema=DECISION_STEPS_SCHEMA)
        take = pa.array(starts)
        final = fl["final_price"][starts]
        b_res, s_res = d["buyer_res_run"], d["seller_res_run"]
        outcomes = pa.Table.from_arrays(
            [
                a["trajectory_id"].take(take),
                pa.array(agreement_run),
                a["outcome"].take(take),
                pa.array(final, mask=~agreement_run),
                pa.array(np.where(agreement_run, fl["rho_outcome"][starts], -1.0)),
                pa.array(lengths.astype(np.int32)),
                pa.array(max_turns[starts]),
                a["buyer_strategy"].take(take),
                a["seller_strategy"].take(take),
                a["first_mover"].take(take),
                pa.array(b_res),
                pa.array(s_res),
                pa.array(b_res - s_res),
                a["price_low"].take(take),
                a["price_high"].take(take),
                a["seed"].take(take),
                pa.DictionaryArray.from_arrays(pa.array(split_run), split_dict).cast(pa.string()),
            ],
            schema=TRAJECTORY_OUTCOMES_SCHEMA,
        )
        if not valid_run.all():
            steps = steps.filter(pa.array(valid_run[run]))
            outcomes = outcomes.filter(pa.array(valid_run))
            split_run = split_run[valid_run]
            lengths = lengths[valid_run]
            agreement_run = agreement_run[valid_run]
        s = self.summary
        for code, name in enumerate(SPLITS):
            in_split = split_run == code
            s.trajectories[name] += int(in_split.sum())
            s.rows[name] += int(lengths[in_split].sum())
        s.agreements += int(agreement_run.sum())
        s.impasses += int((~agreement_run).sum())
        return steps, outcomes


# ------------------------------------------------------------------------------------ output


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and not overwrite:
        present = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
        if present:
            raise FileExistsError(
                f"{out_dir} already holds {', '.join(present)}; pass --overwrite "
                "(overwrite=True) to replace them"
            )
    for ancestor in out_dir.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise NotADirectoryError(f"cannot create {out_dir}: {ancestor} is not a directory")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise PermissionError(f"cannot write to {ancestor}: permission denied")
            break


def _make_parents(folder: Path, created: list[Path]) -> None:
    """mkdir -p, appending each folder it creates to ``created`` (outermost first)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _install(temp_dir: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished outputs into place (the whole folder at once when it is new)."""
    if not out_dir.exists():
        os.rename(temp_dir, out_dir)
        return
    if not overwrite:
        present = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
        if present:
            raise FileExistsError(f"{out_dir} gained {', '.join(present)} while preparing")
    for name in OUTPUT_FILES:  # the meta file last: its presence marks a complete set
        os.replace(temp_dir / name, out_dir / name)
    shutil.rmtree(temp_dir, ignore_errors=True)


# -------------------------------------------------------------------------------------- main


def prepare(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    k: int = 8,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    skip_invalid: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> PrepareSummary:
    """``janus prepare``: validate ``source`` (JSONL) and write the Parquet tables to ``out_dir``.

    - ``k``: history window (the last k offers before each step), ≥ 1.
    - ``val_fraction``, ``test_fraction``: trajectory-level split proportions (each in [0, 1),
      sum < 1).
    - ``skip_invalid``: skip bad trajectories (and malformed lines) instead of stopping; the
      summary counts them by reason.
    - ``overwrite``: replace existing outputs in ``out_dir`` (only once the new ones are
      complete); otherwise existing outputs are a :class:`FileExistsError`.
    - ``progress``: a tqdm bar over the bytes read.

    Raises :class:`~janus.dataset.DataValidationError` (a ``ValueError``) naming file, line and
    field on the first invalid record, or when no valid trajectory is left; nothing is written
    then. Returns a :class:`PrepareSummary`.
    """
    source = Path(source)
    out = Path(out_dir)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(value, int | float) and 0.0 <= value < 1.0):
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1 (got {val_fraction + test_fraction})"
        )
    if block_bytes < 1024:
        raise ValueError(f"block_bytes must be at least 1024, got {block_bytes}")
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file")
    if not source.is_file():
        raise IsADirectoryError(f"{source} is not a file")
    size = source.stat().st_size
    if size == 0:
        raise DataValidationError(source, None, None, "the file is empty: no decision steps")
    _check_out_dir(out, overwrite)
    started = time.perf_counter()
    summary = PrepareSummary(
        out_dir=out, source=source, k=k, val_fraction=val_fraction, test_fraction=test_fraction
    )
    reader = _Reader(source, skip_invalid, block_bytes)
    processor = _Processor(
        source,
        k=k,
        val_fraction=float(val_fraction),
        test_fraction=float(test_fraction),
        skip_invalid=skip_invalid,
        summary=summary,
    )
    temp_dir = out.parent / f".{out.name}.prepare-{os.getpid()}-{time.time_ns() % 10**9}.tmp"
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=size, unit="B", unit_scale=True, desc="prepare")
    created: list[Path] = []  # parent folders made here, removed again on failure
    try:
        try:
            _make_parents(out.parent, created)
            temp_dir.mkdir()
        except PermissionError:
            raise PermissionError(f"cannot write to {out.parent}: permission denied") from None
        except OSError as exc:
            raise OutputError(f"cannot create {out}: {exc.strerror or exc}", exc.errno) from None
        with contextlib.ExitStack() as stack:
            steps_writer = stack.enter_context(
                pq.ParquetWriter(
                    temp_dir / DECISION_STEPS_FILE,
                    DECISION_STEPS_SCHEMA,
                    use_dictionary=_DICTIONARY_COLUMNS,
                )
            )
            outcomes_writer = stack.enter_context(
                pq.ParquetWriter(
                    temp_dir / TRAJECTORY_OUTCOMES_FILE,
                    TRAJECTORY_OUTCOMES_SCHEMA,
                    use_dictionary=_DICTIONARY_COLUMNS,
                )
            )
            carry: pa.Table | None = None
            carry_lines = np.empty(0, dtype=np.int64)
            poisoned = processor.poisoned
            for block in _prefetch(reader.blocks()):
                for victim, reason in block.poison:  # bad lines, in file order (skip mode)
                    if victim is None or victim not in poisoned:
                        summary.skipped[reason] += 1
                    if victim is not None:
                        poisoned.setdefault(victim, reason)
                summary.skipped_lines += block.bad_lines
                table, lines = block.table, block.lines
                if carry is not None and carry.num_rows:
                    table = pa.concat_tables([carry, table])
                    lines = np.concatenate([carry_lines, lines])
                cut = table.num_rows
                if block.error is not None:
                    cut = _last_run_start(table) if table.num_rows else 0
                elif not block.last and table.num_rows:
                    cut = _last_run_start(table)
                    if cut == 0 and table.num_rows > _MAX_CARRY_ROWS:
                        cut = table.num_rows  # one id over a whole block: corrupt, check it now
                result = processor.process(table.slice(0, cut).combine_chunks(), lines[:cut])
                if result is not None:
                    steps, outcomes = result
                    steps_writer.write_table(steps, row_group_size=max(steps.num_rows, 1))
                    outcomes_writer.write_table(outcomes, row_group_size=max(outcomes.num_rows, 1))
                error = block.error
                if error is not None:
                    raise DataValidationError(
                        source,
                        block.error_line,
                        error.field,
                        error.message,
                        error.reason,
                        error.trajectory_id,
                    )
                carry = table.slice(cut)
                carry_lines = lines[cut:]
                if bar is not None:
                    bar.update(block.nbytes)
        summary.lines_read = reader.lines_read
        if summary.total_rows == 0:
            if summary.skipped:
                reasons = ", ".join(f"{r}: {n}" for r, n in sorted(summary.skipped.items()))
                message = (
                    f"no valid trajectory left after skipping {summary.skipped_trajectories} "
                    f"invalid ones ({reasons})"
                )
            else:
                message = "the file holds no decision steps"
            raise DataValidationError(source, None, None, message)
        summary.seconds = time.perf_counter() - started
        meta = summary.to_meta(size)
        (temp_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _install(temp_dir, out, overwrite)
    except BaseException as exc:
        shutil.rmtree(temp_dir, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError) and not isinstance(
            exc, FileExistsError | NotADirectoryError | PermissionError | OutputError
        ):
            reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or exc)
            raise OutputError(
                f"cannot write {out}: {reason}; nothing was written there", exc.errno
            ) from exc
        raise
    finally:
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _filled_ids(table: pa.Table) -> pa.Array:
    tid = _col(table, "trajectory_id")
    return pc.fill_null_forward(tid) if tid.null_count else tid


def _last_run_start(table: pa.Table) -> int:
    """Row where the last trajectory of ``table`` starts (it may continue in the next block)."""
    tid = _filled_ids(table)
    n = len(tid)
    last = tid[n - 1]
    if not last.is_valid:
        return 0
    differs = pc.fill_null(pc.not_equal(tid, last), True).to_numpy(zero_copy_only=False)
    before = np.flatnonzero(differs)
    return int(before[-1]) + 1 if len(before) else 0
