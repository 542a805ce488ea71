"""Reading a JSONL dataset as parsed blocks of whole lines, in bounded memory.

Each block (16 MiB by default) is parsed by pyarrow's C++ JSON reader against
:func:`janus.schema.input_schema`, in a background thread (pyarrow releases the GIL) while the
previous block is being checked. Only a block that pyarrow cannot parse is read line by line
in Python (:func:`janus.records.parse_line`): each line that fails becomes a row that names
nothing but its trajectory, with its :class:`~janus.errors.Invalid` attached, so the checks
decide, in one place, which failure of the file comes first.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from janus.errors import DataValidationError, Invalid
from janus.records import parse_line
from janus.schema import input_schema

__all__ = ["Block", "BlockReader", "prefetch"]

DEFAULT_BLOCK_BYTES = 16 << 20


@dataclass
class Block:
    """Parsed lines: rows with their 1-based line numbers, the rows whose line did not parse
    (``errors``: row, failure), and whether it ends the file (or, in strict mode, the read)."""

    table: pa.Table
    lines: np.ndarray
    last: bool = False
    errors: list[tuple[int, Invalid]] = field(default_factory=list)
    nbytes: int = 0

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def then(self, other: Block) -> Block:
        """This block followed by ``other``."""
        shift = self.num_rows
        return Block(
            pa.concat_tables([self.table, other.table]),
            np.concatenate([self.lines, other.lines]),
            other.last,
            [*self.errors, *((row + shift, err) for row, err in other.errors)],
            other.nbytes,
        )

    def split(self, cut: int) -> tuple[Block, Block]:
        """(rows before ``cut``, rows from ``cut``), the second keeping ``last``."""
        head = Block(
            self.table.slice(0, cut).combine_chunks(),
            self.lines[:cut],
            False,
            [(row, err) for row, err in self.errors if row < cut],
        )
        tail = Block(
            self.table.slice(cut),
            self.lines[cut:],
            self.last,
            [(row - cut, err) for row, err in self.errors if row >= cut],
        )
        return head, tail


_READ_OPTIONS = pajson.ReadOptions(use_threads=True, block_size=1 << 20)


def _parse_options() -> pajson.ParseOptions:
    return pajson.ParseOptions(
        explicit_schema=input_schema(),
        unexpected_field_behavior="ignore",
        newlines_in_values=False,
    )


def iter_raw_blocks(path: Path, block_bytes: int) -> Iterator[tuple[memoryview, int, bool]]:
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


class BlockReader:
    """Turns the raw blocks of ``path`` into parsed :class:`Block` s.

    ``strict``: stop reading at the first line that does not parse (its block is then the
    last); otherwise every bad line becomes an error row and reading goes on.
    """

    def __init__(self, path: Path, *, strict: bool, block_bytes: int) -> None:
        self.path = path
        self.strict = strict
        self.block_bytes = block_bytes
        self.lines_read = 0

    def blocks(self) -> Iterator[Block]:
        for raw, first_line, last in iter_raw_blocks(self.path, self.block_bytes):
            if not raw:
                yield Block(input_schema().empty_table(), np.empty(0, np.int64), last)
                continue
            newlines = raw.obj.count(b"\n", 0, len(raw))
            lines_in_block = newlines + (0 if raw[-1] == 10 else 1)
            self.lines_read = first_line + lines_in_block - 1
            table = _arrow_parse(raw)
            if table is not None and table.num_rows == lines_in_block:  # no blank lines either
                lines = np.arange(first_line, first_line + table.num_rows, dtype=np.int64)
                yield Block(table, lines, last, nbytes=len(raw))
                continue
            block = self._python_block(bytes(raw), first_line, last)
            yield block
            if block.last:
                return

    def _python_block(self, raw: bytes, first_line: int, last: bool) -> Block:
        records: list[dict[str, Any]] = []
        lines: list[int] = []
        errors: list[tuple[int, Invalid]] = []
        for offset, line in enumerate(raw.split(b"\n")):
            if not line.strip():
                continue
            try:
                record = parse_line(line)
            except Invalid as err:
                errors.append((len(records), err))
                record = {"trajectory_id": err.trajectory_id}
            records.append(record)
            lines.append(first_line + offset)
            if errors and self.strict:
                last = True  # the checks will report this line, or an earlier one
                break
        return Block(self._table(records), np.array(lines, np.int64), last, errors, len(raw))

    def _table(self, records: list[dict[str, Any]]) -> pa.Table:
        try:
            return pa.Table.from_pylist(records, schema=input_schema())
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:  # pragma: no cover
            raise DataValidationError(
                self.path, None, None, f"cannot convert records: {exc}"
            ) from None


def _arrow_parse(raw: memoryview) -> pa.Table | None:
    """The block as a table, or None when pyarrow cannot parse it (then Python names the line)."""
    if not _is_utf8(raw):
        return None
    try:
        return pajson.read_json(
            pa.BufferReader(pa.py_buffer(raw)),
            read_options=_READ_OPTIONS,
            parse_options=_parse_options(),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _is_utf8(raw: memoryview) -> bool:
    data = raw.obj if len(raw) == len(raw.obj) else bytes(raw)
    if data.isascii():  # what Janus writes: checked at memory speed
        return True
    try:
        codecs.decode(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def prefetch(blocks: Iterator[Block], depth: int = 2) -> Iterator[Block]:
    """Parse the next blocks in a background thread while this one is being processed."""
    queue: Queue[tuple[Block | None, BaseException | None]] = Queue(maxsize=depth)
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

    thread = threading.Thread(target=produce, name="janus-block-reader", daemon=True)
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
