"""The episode dataset: JSONL, one object per decision step, written atomically, read validated.

The record (version :data:`~janus.schema.SCHEMA_VERSION`) is defined in :mod:`janus.schema`
and documented field by field in ``docs/DATA.md``: every line is one decision of one
trajectory; the lines of a trajectory are contiguous and in step order, and every line
carries the trajectory's outcome (ρ on every record, −1.0 for an impasse).

Writing (:class:`DatasetWriter`)
    - never appends (docs/ARCHITECTURE.md, defect 10): an existing file is a
      :class:`FileExistsError` unless ``overwrite=True``, and then it is replaced only when
      the new file is complete;
    - writes a temporary file in the target directory and renames it on :meth:`close`, so the
      final path never holds a half-written file; on an error the temporary file is removed;
    - writes whole trajectories per ``write`` call, unbuffered: a hard kill leaves the temporary
      file ending on a trajectory boundary.

Reading (:class:`DatasetReader`, :func:`iter_trajectories`)
    Streams the trajectories that pass THE validator (:mod:`janus.validation`, the one
    ``janus prepare`` uses), stopping at the first problem with a one-line
    :class:`DataValidationError` naming the file, the line and the field (or, with
    ``skip_invalid=True``, skipping the bad trajectories and counting them by reason).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from janus.episode import EpisodeResult
from janus.errors import DataValidationError, OutputError
from janus.records import serialize_trajectory, trajectory_records
from janus.schema import RECORD_FIELDS, REQUIRED_FIELDS, SCHEMA_VERSION, FieldSpec

__all__ = [
    "RECORD_FIELDS",
    "REQUIRED_FIELDS",
    "SCHEMA_VERSION",
    "DataValidationError",
    "DatasetReader",
    "DatasetWriter",
    "FieldSpec",
    "OutputError",
    "Trajectory",
    "check_output_file",
    "iter_trajectories",
    "serialize_trajectory",
    "trajectory_records",
]

_OPTIONAL_FIELDS = tuple(f.name for f in RECORD_FIELDS if not f.required)


# ---------------------------------------------------------------------------------- writing


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a file descriptor (the one place the writer touches the disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def check_output_file(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Validate an output *file* path before any work starts; create missing parent folders.

    Raises :class:`FileExistsError` (exists and not ``overwrite``), :class:`IsADirectoryError`,
    :class:`NotADirectoryError` (a parent is a file) or :class:`PermissionError`, each with a
    one-line message.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(
            f"{target} is a directory; give a file path such as {target / 'episodes.jsonl'}"
        )
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pass --overwrite (overwrite=True) to replace it "
            "(datasets are never appended to)"
        )
    parent = target.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise NotADirectoryError(f"cannot create {target}: {ancestor} is not a directory")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise PermissionError(f"cannot create the folder {parent}: permission denied") from None
    except OSError as exc:
        raise OutputError(f"cannot create the folder {parent}: {exc.strerror}", exc.errno) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to {parent}: permission denied")
    return target


class DatasetWriter:
    """Writes episodes as JSONL, one record per decision step, atomically.

    Use as a context manager: a clean exit renames the temporary file onto ``path``; an
    exception removes it. ``include_impasse=False`` (the default) drops impasses;
    ``True`` keeps them with ``rho_outcome = −1.0``.

    >>> with DatasetWriter("episodes.jsonl") as writer:                # doctest: +SKIP
    ...     writer.write(result, trajectory_id="run-0", buyer_strategy="linear",
    ...                  seller_strategy="fair", seed=7)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        include_impasse: bool = False,
    ) -> None:
        self.path = check_output_file(path, overwrite=overwrite)
        self.overwrite = overwrite
        self.include_impasse = include_impasse
        self.trajectories_written = 0
        self.records_written = 0
        self.closed = False
        self.temp_path = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            self._fd: int | None = os.open(
                self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
            )
        except PermissionError:
            raise PermissionError(
                f"cannot write to {self.path.parent}: permission denied"
            ) from None
        except OSError as exc:
            raise OutputError(
                f"cannot create a file in {self.path.parent}: {exc.strerror}", exc.errno
            ) from None

    # -- writing --------------------------------------------------------------------------------
    def write(
        self,
        result: EpisodeResult,
        *,
        trajectory_id: str,
        buyer_strategy: str,
        seller_strategy: str,
        seed: int,
        episode: int | None = None,
        source: str | None = None,
        round: int | None = None,
    ) -> bool:
        """Write one episode's records in one write; return whether it was written (an impasse
        is dropped unless ``include_impasse``). ``source`` and ``round`` are the optional
        provenance fields (omitted when ``None``)."""
        if not result.outcome.agreement and not self.include_impasse:
            return False
        text = serialize_trajectory(
            result,
            trajectory_id=trajectory_id,
            buyer_strategy=buyer_strategy,
            seller_strategy=seller_strategy,
            seed=seed,
            episode=episode,
            source=source,
            round=round,
        )
        self.write_serialized(text, trajectories=1, records=len(result.steps))
        return True

    def write_serialized(self, data: str | bytes, *, trajectories: int, records: int) -> None:
        """Write already serialised, complete trajectories (from :func:`serialize_trajectory`)
        in one unbuffered write. On an error the temporary file is removed and
        :class:`OutputError` says why (e.g. a full disk)."""
        if self._fd is None:
            raise ValueError(f"the writer for {self.path} is closed")
        payload = data.encode() if isinstance(data, str) else data
        try:
            _write_all(self._fd, payload)
        except OSError as exc:
            self.abort()
            reason = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
            raise OutputError(
                f"cannot write {self.path}: {reason}; nothing was written there", exc.errno
            ) from None
        self.trajectories_written += trajectories
        self.records_written += records

    # -- finishing ------------------------------------------------------------------------------
    def close(self) -> Path:
        """Flush to disk and move the file into place; return the final path."""
        if self.closed:
            return self.path
        if self._fd is None:
            raise ValueError(f"the writer for {self.path} was aborted")
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            if self.overwrite:
                os.replace(self.temp_path, self.path)
            else:
                self._link_no_clobber()
            _fsync_dir(self.path.parent)
        except FileExistsError:
            self.abort()
            raise FileExistsError(
                f"{self.path} appeared while it was being written; nothing was replaced"
            ) from None
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot finish {self.path}: {exc.strerror}", exc.errno) from None
        self.closed = True
        return self.path

    def _link_no_clobber(self) -> None:
        try:
            os.link(self.temp_path, self.path)  # fails if the path exists: never clobbers
        except FileExistsError:
            raise
        except OSError:  # hard links not supported here: check, then rename
            if self.path.exists():
                raise FileExistsError(str(self.path)) from None
            os.rename(self.temp_path, self.path)
            return
        os.unlink(self.temp_path)

    def abort(self) -> None:
        """Drop everything written so far; the final path is left untouched."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Trajectory:
    """One validated trajectory: its records (dicts, in step order) and first line number.

    A record holds every field of :data:`~janus.schema.RECORD_FIELDS` the line holds (an
    optional field that is absent is absent here too); unknown fields are not kept.
    """

    trajectory_id: str
    records: tuple[dict[str, Any], ...]
    first_line: int

    @property
    def agreement(self) -> bool:
        return self.records[0]["outcome"] == "agreement"

    @property
    def rho(self) -> float:
        return float(self.records[0]["rho_outcome"])

    @property
    def final_price(self) -> float | None:
        return self.records[0]["final_price"]

    def __len__(self) -> int:
        return len(self.records)


class DatasetReader:
    """Streams the validated trajectories of a JSONL dataset, in file order.

    With ``skip_invalid=False`` the first problem raises :class:`DataValidationError` (one line:
    file, line, field). With ``skip_invalid=True`` bad trajectories are skipped; ``skipped``
    counts them by reason and ``skipped_lines`` counts the lines dropped with them. Memory is
    one block of the file plus 8 bytes per trajectory id seen (to catch a reappearing id, which
    is how two runs appended into one file show up).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        skip_invalid: bool = False,
        block_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.skip_invalid = skip_invalid
        self.block_bytes = block_bytes
        self.trajectories_read = 0
        self._validator: Any = None

    @property
    def skipped(self) -> Counter[str]:
        return self._validator.skipped if self._validator is not None else Counter()

    @property
    def skipped_lines(self) -> int:
        return self._validator.skipped_lines if self._validator is not None else 0

    @property
    def lines_read(self) -> int:
        return self._validator.lines_read if self._validator is not None else 0

    def __iter__(self) -> Iterator[Trajectory]:
        from janus.validation import Validator, validated_chunks  # pyarrow: only when reading

        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such dataset file")
        self._validator = Validator(self.path, skip_invalid=self.skip_invalid)
        options = {} if self.block_bytes is None else {"block_bytes": self.block_bytes}
        for chunk, _ in validated_chunks(self.path, self._validator, **options):
            if chunk is not None:
                yield from self._trajectories(chunk)

    def _trajectories(self, chunk: Any) -> Iterator[Trajectory]:
        rows = chunk.table.to_pylist()
        runs = chunk.runs
        for r in chunk.valid_run.nonzero()[0]:
            start = int(runs.starts[r])
            stop = start + int(runs.lengths[r])
            records = tuple(_present(row) for row in rows[start:stop])
            self.trajectories_read += 1
            yield Trajectory(runs.ids[r], records, int(runs.lines[start]))


def _present(row: dict[str, Any]) -> dict[str, Any]:
    """A parsed row without the optional fields its line did not have."""
    for name in _OPTIONAL_FIELDS:
        if row[name] is None:
            del row[name]
    return row


def iter_trajectories(
    path: str | os.PathLike[str], *, skip_invalid: bool = False
) -> Iterator[Trajectory]:
    """Stream the validated trajectories of a dataset (see :class:`DatasetReader`)."""
    return iter(DatasetReader(path, skip_invalid=skip_invalid))
