"""``janus prepare``: JSONL episodes → Parquet training tables, validated, labelled and split.

``prepare(episodes.jsonl, out_dir)`` writes the three files of :mod:`janus.schema`
(``decision_steps.parquet``, ``trajectory_outcomes.parquet``, ``prepare_meta.json``). The
input is checked by THE validator (:mod:`janus.validation`), chunk by chunk in bounded
memory; each chunk's features (:mod:`janus.features`) become one Parquet row group. Outputs
are written to a hidden temporary folder and moved into place at the very end, so a failure
writes nothing.

Splits are per trajectory, from a stable hash (:func:`assign_split`): a trajectory never
straddles splits, and changing ``val_fraction`` never moves a test one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import janus
from janus.atomic import fsync_tree
from janus.blocks import DEFAULT_BLOCK_BYTES
from janus.columns import split_hash
from janus.errors import DataValidationError, OutputError
from janus.features import Tables, tables_of
from janus.schema import (
    DECISION_STEPS_FILE,
    DICTIONARY_COLUMNS,
    META_FILE,
    OUTPUT_FILES,
    PROVENANCE_FIELDS,
    SCHEMA_VERSION,
    SPLITS,
    TRAJECTORY_OUTCOMES_FILE,
    decision_steps_schema,
    trajectory_outcomes_schema,
)
from janus.validation import Chunk, Validator, validated_chunks

__all__ = [
    "DECISION_STEPS_FILE",
    "DECISION_STEPS_SCHEMA",
    "META_FILE",
    "TRAJECTORY_OUTCOMES_FILE",
    "TRAJECTORY_OUTCOMES_SCHEMA",
    "DataValidationError",
    "OutputError",
    "PrepareSummary",
    "assign_split",
    "prepare",
    "split_hash",
]

DECISION_STEPS_SCHEMA = decision_steps_schema()
"""Columns of ``decision_steps.parquet`` (scripted data); the first fourteen feed the trainer."""
TRAJECTORY_OUTCOMES_SCHEMA = trajectory_outcomes_schema()
"""Columns of ``trajectory_outcomes.parquet`` (scripted data)."""


def assign_split(trajectory_id: str, val_fraction: float, test_fraction: float) -> str:
    """train / val / test for one trajectory: ``u = blake2b(id, 8 bytes) / 2**64``; test if
    ``u < test_fraction``, val if ``u < test_fraction + val_fraction``, else train."""
    u = split_hash(trajectory_id) / 2.0**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


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

    def count(self, tables: Tables) -> None:
        for code, name in enumerate(SPLITS):
            in_split = tables.split == code
            self.trajectories[name] += int(in_split.sum())
            self.rows[name] += int(tables.lengths[in_split].sum())
        self.agreements += int(tables.agreement.sum())
        self.impasses += int((~tables.agreement).sum())

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


# ------------------------------------------------------------------------------ options


def _check_options(k: int, val_fraction: float, test_fraction: float, block_bytes: int) -> None:
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


def _check_source(source: Path) -> int:
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file")
    if not source.is_file():
        raise IsADirectoryError(f"{source} is not a file")
    size = source.stat().st_size
    if size == 0:
        raise DataValidationError(source, None, None, "the file is empty: no decision steps")
    return size


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


# --------------------------------------------------------------------------- provenance


def _carries_provenance(chunk: Chunk) -> bool:
    nulls = chunk.columns.nulls
    present = np.zeros(len(chunk.runs.lines), dtype=bool)
    for name in PROVENANCE_FIELDS:
        present |= ~nulls[name]
    return bool(present[chunk.valid_run[chunk.runs.run]].any())


class _TableWriters:
    """The two Parquet writers, without the provenance columns until a valid record carries
    one (a refinement corpus carries them from its first line; a scripted one never does).

    When the first such record appears after some row groups were written, :meth:`widen`
    rewrites those groups with null provenance columns, one at a time, and goes on with the
    wider schema: the files are what they would be had the schema been known from the start,
    without reading the input twice to find out.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.provenance = False
        self.steps = _parquet_writer(folder / DECISION_STEPS_FILE, decision_steps_schema())
        self.outcomes = _parquet_writer(
            folder / TRAJECTORY_OUTCOMES_FILE, trajectory_outcomes_schema()
        )

    def write(self, tables: Tables) -> None:
        self.steps.write_table(tables.steps, row_group_size=max(tables.steps.num_rows, 1))
        self.outcomes.write_table(tables.outcomes, row_group_size=max(tables.outcomes.num_rows, 1))

    def widen(self) -> None:
        self.steps = self._widened(self.steps, DECISION_STEPS_FILE, decision_steps_schema(True))
        self.outcomes = self._widened(
            self.outcomes, TRAJECTORY_OUTCOMES_FILE, trajectory_outcomes_schema(True)
        )
        self.provenance = True

    def _widened(self, writer: pq.ParquetWriter, name: str, schema: Any) -> pq.ParquetWriter:
        writer.close()
        path, old = self.folder / name, self.folder / f".{name}.narrow"
        os.replace(path, old)
        wide = _parquet_writer(path, schema)
        source = pq.ParquetFile(old)
        for group in range(source.num_row_groups):
            table = source.read_row_group(group)
            for column in schema:
                if column.name not in table.schema.names:
                    table = table.append_column(column, pa.nulls(table.num_rows, column.type))
            wide.write_table(table, row_group_size=max(table.num_rows, 1))
        source.close()
        old.unlink()
        return wide

    def close(self) -> None:
        self.steps.close()
        self.outcomes.close()


# ------------------------------------------------------------------------------- output


def _parquet_writer(path: Path, schema: Any) -> pq.ParquetWriter:
    dictionary = [name for name in DICTIONARY_COLUMNS if name in schema.names]
    return pq.ParquetWriter(path, schema, use_dictionary=dictionary)


def _make_parents(folder: Path, created: list[Path]) -> None:
    """mkdir -p, appending each folder it creates to ``created`` (outermost first)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _make_temp_dir(temp_dir: Path, out: Path, created: list[Path]) -> None:
    try:
        _make_parents(out.parent, created)
        temp_dir.mkdir()
    except PermissionError:
        raise PermissionError(f"cannot write to {out.parent}: permission denied") from None
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}", exc.errno) from None


def _install(temp_dir: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished, synced outputs into place: the whole folder at once when it is
    new; else the old meta file goes first and the new one comes last, so a set of tables
    is never marked complete while it is being swapped."""
    fsync_tree(temp_dir)
    if not out_dir.exists():
        os.rename(temp_dir, out_dir)
        return
    if not overwrite:
        present = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
        if present:
            raise FileExistsError(f"{out_dir} gained {', '.join(present)} while preparing")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(out_dir / META_FILE)
    for name in OUTPUT_FILES:
        os.replace(temp_dir / name, out_dir / name)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _as_output_error(exc: BaseException, out: Path) -> BaseException:
    """A plain OSError while writing, as a one-line :class:`OutputError`."""
    if isinstance(exc, OSError) and not isinstance(
        exc, FileExistsError | NotADirectoryError | PermissionError | OutputError
    ):
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or exc)
        error = OutputError(f"cannot write {out}: {reason}; nothing was written there", exc.errno)
        error.__cause__ = exc
        return error
    return exc


def _write_tables(
    source: Path,
    folder: Path,
    summary: PrepareSummary,
    *,
    skip_invalid: bool,
    block_bytes: int,
    bar: Any,
) -> None:
    """Validate ``source`` chunk by chunk; write each chunk's rows as one row group."""
    validator = Validator(source, skip_invalid=skip_invalid)
    writers = _TableWriters(folder)
    try:
        for chunk, nbytes in validated_chunks(source, validator, block_bytes=block_bytes):
            if chunk is not None:
                if not writers.provenance and _carries_provenance(chunk):
                    writers.widen()
                tables = tables_of(
                    chunk,
                    k=summary.k,
                    val_fraction=summary.val_fraction,
                    test_fraction=summary.test_fraction,
                    provenance=writers.provenance,
                )
                summary.count(tables)
                writers.write(tables)
            if bar is not None:
                bar.update(nbytes)
    finally:
        writers.close()
    summary.skipped = validator.skipped
    summary.skipped_lines = validator.skipped_lines
    summary.lines_read = validator.lines_read


def _nothing_left(summary: PrepareSummary, source: Path) -> DataValidationError:
    if summary.skipped:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(summary.skipped.items()))
        message = (
            f"no valid trajectory left after skipping {summary.skipped_trajectories} "
            f"invalid ones ({reasons})"
        )
    else:
        message = "the file holds no decision steps"
    return DataValidationError(source, None, None, message)


def _progress_bar(size: int) -> Any:
    """A tqdm bar over the ``size`` bytes of the source (tqdm is imported only when asked for)."""
    from tqdm import tqdm

    return tqdm(total=size, unit="B", unit_scale=True, desc="prepare")


def _write_outputs(
    source: Path,
    folder: Path,
    summary: PrepareSummary,
    *,
    size: int,
    started: float,
    skip_invalid: bool,
    block_bytes: int,
    bar: Any,
) -> None:
    """Fill ``folder`` with the two tables, then the meta file that marks them complete.

    A source with no valid step left is an error here, before the meta file exists.
    """
    _write_tables(
        source, folder, summary, skip_invalid=skip_invalid, block_bytes=block_bytes, bar=bar
    )
    if summary.total_rows == 0:
        raise _nothing_left(summary, source)
    summary.seconds = time.perf_counter() - started
    meta = json.dumps(summary.to_meta(size), indent=2) + "\n"
    (folder / META_FILE).write_text(meta, encoding="utf-8")


def _remove_partial(temp_dir: Path, created: list[Path]) -> None:
    """After a failure, remove the temporary folder and the parent folders made for it, so a
    failed prepare writes nothing."""
    shutil.rmtree(temp_dir, ignore_errors=True)
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _write_atomically(
    source: Path,
    out: Path,
    summary: PrepareSummary,
    *,
    size: int,
    started: float,
    skip_invalid: bool,
    block_bytes: int,
    overwrite: bool,
    progress: bool,
) -> None:
    """Write the outputs into a hidden folder beside ``out``, then move them into place.

    On any failure nothing is left behind, and a plain OSError becomes a one-line
    :class:`OutputError`.
    """
    temp_dir = out.parent / f".{out.name}.prepare-{os.getpid()}-{time.time_ns() % 10**9}.tmp"
    bar = _progress_bar(size) if progress else None
    created: list[Path] = []  # parent folders made here, removed again on failure
    try:
        _make_temp_dir(temp_dir, out, created)
        _write_outputs(
            source,
            temp_dir,
            summary,
            size=size,
            started=started,
            skip_invalid=skip_invalid,
            block_bytes=block_bytes,
            bar=bar,
        )
        _install(temp_dir, out, overwrite)
    except BaseException as exc:
        _remove_partial(temp_dir, created)
        error = _as_output_error(exc, out)
        if error is exc:
            raise
        raise error from exc
    finally:
        if bar is not None:
            bar.close()


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

    Raises :class:`~janus.errors.DataValidationError` (a ``ValueError``) naming file, line and
    field on the first invalid record, or when no valid trajectory is left; nothing is written
    then. Returns a :class:`PrepareSummary`.
    """
    source = Path(source)
    out = Path(out_dir)
    _check_options(k, val_fraction, test_fraction, block_bytes)
    size = _check_source(source)
    _check_out_dir(out, overwrite)
    started = time.perf_counter()
    summary = PrepareSummary(
        out_dir=out,
        source=source,
        k=k,
        val_fraction=float(val_fraction),
        test_fraction=float(test_fraction),
    )
    _write_atomically(
        source,
        out,
        summary,
        size=size,
        started=started,
        skip_invalid=skip_invalid,
        block_bytes=block_bytes,
        overwrite=overwrite,
        progress=progress,
    )
    summary.seconds = time.perf_counter() - started
    return summary
