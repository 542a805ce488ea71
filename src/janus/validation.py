"""THE validator of a Janus dataset: used by ``janus prepare`` and by the dataset reader.

:func:`validated_chunks` streams a JSONL file as chunks of whole, checked trajectories.
Blocks come from :mod:`janus.blocks`; the trajectory still in flight at the end of a block is
carried to the next one, so a check always sees whole trajectories; the checks themselves
are :func:`janus.checks.find_problems`. The :class:`Validator` keeps what spans blocks: the
trajectory ids seen so far (8 bytes each), the ids already rejected, and the skip counts.

Strict (the default): the first failing line of the file raises
:class:`~janus.errors.DataValidationError` (``FILE:LINE: field 'NAME': why``). With
``skip_invalid``: a bad trajectory (or the trajectory of a bad line) is dropped whole, and
counted once, by the reason of its first failing line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from janus.blocks import DEFAULT_BLOCK_BYTES, Block, BlockReader, prefetch
from janus.checks import Check, find_problems
from janus.columns import Columns, Runs, filled_ids
from janus.errors import DataValidationError

__all__ = ["Chunk", "Validator", "validated_chunks"]

_MAX_CARRY_ROWS = 10_000
"""A trajectory longer than this that spans a whole block is corrupt: check it at once."""


@dataclass
class Chunk:
    """Checked trajectories: the rows, their views, and which runs are valid (skip mode)."""

    table: pa.Table
    columns: Columns
    runs: Runs
    valid_run: np.ndarray

    @property
    def all_valid(self) -> bool:
        return bool(self.valid_run.all())


class Validator:
    """Checks blocks of whole trajectories, in file order, against everything seen before."""

    def __init__(self, path: Path, *, skip_invalid: bool) -> None:
        self.path = path
        self.skip_invalid = skip_invalid
        self.seen = np.empty(0, dtype=np.uint64)  # sorted hashes of the ids seen so far
        self.poisoned: dict[str, str] = {}  # skip mode: rejected ids (their later lines too)
        self.skipped: Counter[str] = Counter()
        self.skipped_lines = 0
        self.lines_read = 0

    def check(self, block: Block) -> Chunk | None:
        """The block's trajectories, checked; ``None`` when none is valid. Strict mode raises
        on the block's first failing line."""
        if block.num_rows == 0:
            return None
        columns = Columns.of(block.table)
        runs = Runs.of(block.table, block.lines)
        problems = find_problems(columns, runs, self.seen, block.errors)
        if problems and not self.skip_invalid:
            raise self._first_error(problems, runs)
        valid_run = np.ones(len(runs.starts), dtype=bool)
        if self.skip_invalid:
            valid_run = self._skip(problems, runs)
        self.seen = np.union1d(self.seen, runs.hashes)
        if not valid_run.any():
            return None
        return Chunk(block.table, columns, runs, valid_run)

    def _first_error(self, problems: list[Check], runs: Runs) -> DataValidationError:
        row, _, check = min(
            ((int(np.argmax(p.mask)), order, p) for order, p in enumerate(problems)),
            key=lambda item: item[:2],
        )
        return DataValidationError(
            self.path,
            int(runs.lines[row]),
            check.field,
            check.message(row),
            check.reason,
            runs.ids[runs.run[row]],
        )

    def _skip(self, problems: list[Check], runs: Runs) -> np.ndarray:
        """Which runs are valid; counts each newly rejected trajectory by its first reason."""
        ids = runs.ids
        silent = np.array([tid in self.poisoned for tid in ids], dtype=bool)
        valid = np.ones(len(ids), dtype=bool)
        if problems:
            none = np.iinfo(np.int64).max
            first = np.full(len(ids), none, dtype=np.int64)  # row * checks + check order
            for order, problem in enumerate(problems):
                rows = np.flatnonzero(problem.mask).astype(np.int64)
                np.minimum.at(first, runs.run[rows], rows * len(problems) + order)
            first_run_of: dict[str | None, int] = {}
            for r, tid in enumerate(ids):
                first_run_of.setdefault(tid, r)
            for r in np.flatnonzero((first != none) & ~silent):
                reason = problems[int(first[r] % len(problems))].reason
                # a copy of a trajectory that was itself bad is skipped silently
                if reason != "duplicate_trajectory" or valid[first_run_of[ids[r]]]:
                    self.skipped[reason] += 1
                valid[r] = False
                if ids[r] is not None:
                    self.poisoned.setdefault(ids[r], reason)
        valid &= ~silent
        self.skipped_lines += int(runs.lengths[~valid].sum())
        return valid


def _last_run_start(table: pa.Table) -> int:
    """Row where the last trajectory of ``table`` starts (it may continue in the next block)."""
    tid = filled_ids(table)
    last = tid[len(tid) - 1]
    if not last.is_valid:
        return 0
    differs = pc.fill_null(pc.not_equal(tid, last), True).to_numpy(zero_copy_only=False)
    before = np.flatnonzero(differs)
    return int(before[-1]) + 1 if len(before) else 0


def validated_chunks(
    path: Path,
    validator: Validator,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[tuple[Chunk | None, int]]:
    """(checked chunk or ``None``, bytes read for it), block by block, in file order."""
    reader = BlockReader(path, strict=not validator.skip_invalid, block_bytes=block_bytes)
    carry: Block | None = None
    for block in prefetch(reader.blocks()):
        merged = block if carry is None or carry.num_rows == 0 else carry.then(block)
        cut = merged.num_rows
        if not merged.last and merged.num_rows:
            cut = _last_run_start(merged.table)
            if cut == 0 and merged.num_rows > _MAX_CARRY_ROWS:
                cut = merged.num_rows  # one id over a whole block: corrupt, check it now
        head, carry = merged.split(cut)
        validator.lines_read = reader.lines_read
        yield validator.check(head), block.nbytes
