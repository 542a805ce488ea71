"""The episode dataset: JSONL, one object per decision step, written atomically, read validated.

Schema (version :data:`SCHEMA_VERSION`, documented field by field in ``docs/DATA.md``): every
line is one decision of one trajectory; the lines of a trajectory are contiguous and in step
order, and every line carries the trajectory's outcome (ρ on every record, −1.0 for an impasse).

Writing (:class:`DatasetWriter`)
    - never appends (DESIGN.md defect 10): an existing file is a :class:`FileExistsError` unless
      ``overwrite=True``, and then it is replaced only when the new file is complete;
    - writes a temporary file in the target directory and renames it on :meth:`close`, so the
      final path never holds a half-written file; on an error the temporary file is removed;
    - writes whole trajectories per ``write`` call, unbuffered: a hard kill leaves the temporary
      file ending on a trajectory boundary.

Reading (:class:`DatasetReader`, :func:`iter_trajectories`)
    A streaming, validating reader in plain Python: it checks every record and every
    trajectory and stops at the first problem with a one-line :class:`DataValidationError`
    naming the file, the line and the field (or, with ``skip_invalid=True``, skips the bad
    trajectories and counts them by reason). It is the reference for the checks that
    :mod:`janus.prepare` runs vectorised.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from janus.domain import ActionKind, Role, compute_rho
from janus.episode import EpisodeResult

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
    "iter_trajectories",
    "serialize_trajectory",
]

SCHEMA_VERSION = 1
"""Version of the JSONL record schema (``schema_version`` on every line); see docs/DATA.md."""

RHO_TOLERANCE = 1e-9
"""Tolerance of recomputed values (ρ from the final price, reservation_norm) against records."""

ROLES = frozenset(r.value for r in Role)
ACTIONS = frozenset(a.value for a in ActionKind)
OUTCOMES = frozenset({"agreement", "impasse"})


# ----------------------------------------------------------------------------------- schema


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a record: JSON kind (``int``, ``float``, ``str``, ``history``), whether
    ``null`` is allowed, and whether the field must be present."""

    name: str
    kind: str
    nullable: bool = False
    required: bool = True


RECORD_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("schema_version", "int"),
    FieldSpec("trajectory_id", "str"),
    FieldSpec("step", "int"),
    FieldSpec("role", "str"),
    FieldSpec("turn", "int"),
    FieldSpec("max_turns", "int"),
    FieldSpec("turns_remaining", "int", required=False),
    FieldSpec("reservation_price", "float"),
    FieldSpec("reservation_norm", "float"),
    FieldSpec("price_low", "float"),
    FieldSpec("price_high", "float"),
    FieldSpec("last_offer_price", "float", nullable=True),
    FieldSpec("history", "history"),
    FieldSpec("action", "str"),
    FieldSpec("offer_price", "float", nullable=True),
    FieldSpec("outcome", "str"),
    FieldSpec("final_price", "float", nullable=True),
    FieldSpec("rho_outcome", "float"),
    FieldSpec("buyer_strategy", "str"),
    FieldSpec("seller_strategy", "str"),
    FieldSpec("first_mover", "str"),
    FieldSpec("seed", "int"),
    FieldSpec("episode", "int", required=False),
)
"""Every field, in the order the writer emits them. Unknown extra fields are ignored."""

REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in RECORD_FIELDS if f.required)

#: Fields that must hold the same value on every record of a trajectory, in check order.
CONSTANT_FIELDS: tuple[str, ...] = (
    "max_turns",
    "price_low",
    "price_high",
    "outcome",
    "final_price",
    "rho_outcome",
    "buyer_strategy",
    "seller_strategy",
    "first_mover",
    "seed",
)

#: Reasons a record or trajectory is rejected (the keys of ``--skip-invalid`` counts).
REASONS: tuple[str, ...] = (
    "malformed_json",
    "missing_field",
    "bad_type",
    "non_finite",
    "schema_version",
    "bad_value",
    "price_range",
    "turn_order",
    "history",
    "not_constant",
    "rho_range",
    "rho_not_constant",
    "rho_mismatch",
    "outcome",
    "duplicate_trajectory",
)


class DataValidationError(ValueError):
    """A record or trajectory breaks the schema. The message is one line:
    ``FILE:LINE: field 'NAME': what is wrong``. Attributes keep the parts."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        line: int | None,
        field: str | None,
        message: str,
        reason: str = "bad_value",
        trajectory_id: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        self.trajectory_id = trajectory_id
        self.detail = message
        where = self.path if line is None else f"{self.path}:{line}"
        text = f"{where}: field {field!r}: {message}" if field else f"{where}: {message}"
        super().__init__(text)


class OutputError(OSError):
    """An output could not be written (disk full, I/O error); nothing was left at its path."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


# ------------------------------------------------------------------------------ serialising


_float_repr = float.__repr__


def _num(value: float) -> str:
    """A float as JSON, exactly as ``json.dumps`` writes it (shortest round-trip repr)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot write a non-finite number ({value!r}) to a dataset")
    return _float_repr(value)


def _jstr(text: str) -> str:
    return json.dumps(str(text), ensure_ascii=True)


def serialize_trajectory(
    result: EpisodeResult,
    *,
    trajectory_id: str,
    buyer_strategy: str,
    seller_strategy: str,
    seed: int,
    episode: int | None = None,
) -> str:
    """The JSONL lines (one per decision step, each ending in a newline) of one episode.

    Byte-for-byte what ``json.dumps(record, separators=(",", ":"))`` would give for the
    records in :data:`RECORD_FIELDS` order, but assembled by hand: the history is the only part
    that grows with the step, so its text is extended rather than rebuilt for every record.
    Numbers are written with Python's shortest round-trip ``repr``, so the output is a pure
    function of the episode. Raises :class:`ValueError` for an invalid step (datasets hold
    valid trajectories only) or a non-finite number.
    """
    scenario = result.scenario
    outcome = result.outcome
    steps = result.steps
    if not steps:
        raise ValueError(f"trajectory {trajectory_id!r} has no steps")
    pr = scenario.price_range
    max_turns = int(scenario.max_turns)
    if outcome.agreement:
        ending = (
            f',"outcome":"agreement","final_price":{_num(outcome.final_price)},'
            f'"rho_outcome":{_num(outcome.rho)},'
        )
    else:
        ending = ',"outcome":"impasse","final_price":null,"rho_outcome":-1.0,'
    tail = (
        f'{ending}"buyer_strategy":{_jstr(buyer_strategy)},'
        f'"seller_strategy":{_jstr(seller_strategy)},'
        f'"first_mover":"{scenario.first_mover.value}","seed":{int(seed)}'
        + ("}\n" if episode is None else f',"episode":{int(episode)}}}\n')
    )
    head = f'{{"schema_version":{SCHEMA_VERSION},"trajectory_id":{_jstr(trajectory_id)},"step":'
    price_part = f',"price_low":{_num(pr.low)},"price_high":{_num(pr.high)},"last_offer_price":'
    clock = f',"max_turns":{max_turns},"turns_remaining":'
    # per role: the text before the turn, the text between turns_remaining and the last
    # offer (own reservation and the price range), and the start of its history entries
    parts: dict[Role, tuple[str, str, str]] = {}
    for role in (Role.BUYER, Role.SELLER):
        reservation = scenario.reservation(role)
        parts[role] = (
            f',"role":"{role.value}","turn":',
            f',"reservation_price":{_num(reservation)},'
            f'"reservation_norm":{_num(pr.norm(reservation))}{price_part}',
            f'{{"role":"{role.value}","price":',
        )
    lines: list[str] = []
    history = ""
    last = "null"
    offers = 0
    offer_kind = ActionKind.OFFER
    for index, step in enumerate(steps):
        obs = step.observation
        turn = obs.turn
        if not step.valid or turn != index + 1 or len(obs.history) != offers:
            raise ValueError(
                f"trajectory {trajectory_id!r} step {index}: "
                + (
                    f"an invalid action ({step.error}); datasets hold valid trajectories only"
                    if not step.valid
                    else "the observation does not match the actions before it"
                )
            )
        before_turn, own, entry_head = parts[obs.role]
        action = step.action
        if action.kind is offer_kind:
            value = action.price
            price = _float_repr(value) if type(value) is float else _num(value)
            lines.append(
                f"{head}{index}{before_turn}{turn}{clock}{max_turns - turn}{own}{last}"
                f',"history":[{history}],"action":"OFFER","offer_price":{price}{tail}'
            )
            history = f"{history},{entry_head}{price}}}" if offers else f"{entry_head}{price}}}"
            last = price
            offers += 1
        else:
            lines.append(
                f"{head}{index}{before_turn}{turn}{clock}{max_turns - turn}{own}{last}"
                f',"history":[{history}],"action":"ACCEPT","offer_price":null{tail}'
            )
    return "".join(lines)


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
    ) -> bool:
        """Write one episode's records in one write; return whether it was written (an impasse
        is dropped unless ``include_impasse``)."""
        if not result.outcome.agreement and not self.include_impasse:
            return False
        text = serialize_trajectory(
            result,
            trajectory_id=trajectory_id,
            buyer_strategy=buyer_strategy,
            seller_strategy=seller_strategy,
            seed=seed,
            episode=episode,
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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_TID_PATTERN = re.compile(r'"trajectory_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


def guess_trajectory_id(raw: str) -> str | None:
    """The trajectory id of a line that is not valid JSON, if it can still be read."""
    match = _TID_PATTERN.search(raw)
    if match is None:
        return None
    try:
        return json.loads(f'"{match.group(1)}"')
    except ValueError:
        return None


class _Invalid(Exception):
    """Internal: one failed check (field, message, reason)."""

    def __init__(self, field: str | None, message: str, reason: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.reason = reason
        self.trajectory_id: str | None = None


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return type(value) is int
    if kind == "float":
        return type(value) in (float, int)
    if kind == "str":
        return type(value) is str
    return type(value) is list


def parse_line(raw: str) -> dict[str, Any]:
    """Parse one line and check it on its own (types, ranges, enums). Raises ``_Invalid``."""
    try:
        record = _decoder.decode(raw)
    except ValueError as exc:
        text = str(exc)
        if text.startswith("non-finite"):
            name = text.rsplit(" ", 1)[-1]
            field = _field_of_constant(raw, name)
            raise _Invalid(field, f"{name} is not a number", "non_finite") from None
        pos = getattr(exc, "pos", None)
        field = _field_before(raw, pos) if pos is not None else None
        raise _Invalid(field, f"malformed JSON ({text})", "malformed_json") from None
    if type(record) is not dict:
        raise _Invalid(
            None, f"a record must be a JSON object, got {type(record).__name__}", "malformed_json"
        )
    try:
        check_record(record)
    except _Invalid as err:
        tid = record.get("trajectory_id")
        err.trajectory_id = tid if type(tid) is str else None
        raise
    return record


_KEY = re.compile(r'"(\w+)"\s*:')


def _field_before(raw: str, pos: int) -> str | None:
    """The last key that starts before ``pos`` (where a JSON parse failed), if any."""
    keys = [m.group(1) for m in _KEY.finditer(raw, 0, pos)]
    nested = {"role", "price"}
    top = [k for k in keys if k not in nested] or keys
    return top[-1] if top else None


def _field_of_constant(raw: str, name: str) -> str | None:
    match = re.search(r'"(\w+)"\s*:\s*' + re.escape(name), raw)
    return match.group(1) if match else None


def _in_range(value: float, low: float, high: float) -> bool:
    return low <= value <= high


def check_record(r: dict[str, Any]) -> None:
    """Record-level checks, in the order :mod:`janus.prepare` applies them. Raises ``_Invalid``."""
    for spec in RECORD_FIELDS:
        name = spec.name
        if name not in r:
            if spec.required:
                raise _Invalid(name, "missing", "missing_field")
            continue
        value = r[name]
        if value is None:
            if spec.nullable or not spec.required:
                continue
            raise _Invalid(name, "is null", "missing_field")
        if not _kind_ok(spec.kind, value):
            raise _Invalid(name, f"must be {spec.kind}, got {type(value).__name__}", "bad_type")
        if spec.kind == "int" and not -(2**63) <= value < 2**63:
            raise _Invalid(name, f"{value} is outside the 64-bit integer range", "bad_value")
        if spec.kind == "float" and not math.isfinite(value):
            raise _Invalid(name, f"{value!r} is not a finite number", "non_finite")
        if spec.kind == "history":
            for entry in value:
                if type(entry) is not dict or "role" not in entry or "price" not in entry:
                    raise _Invalid(name, "entries must be {role, price} objects", "bad_type")
                if type(entry["role"]) is not str or type(entry["price"]) not in (float, int):
                    raise _Invalid(name, "entries must be {role: str, price: number}", "bad_type")
                if not math.isfinite(entry["price"]):
                    raise _Invalid(name, "holds a non-finite price", "non_finite")
    if r["schema_version"] != SCHEMA_VERSION:
        raise _Invalid(
            "schema_version",
            f"unsupported schema version {r['schema_version']} (this Janus reads {SCHEMA_VERSION})",
            "schema_version",
        )
    for name, allowed in (
        ("role", ROLES),
        ("action", ACTIONS),
        ("outcome", OUTCOMES),
        ("first_mover", ROLES),
    ):
        if r[name] not in allowed:
            raise _Invalid(name, f"{r[name]!r} is not one of {sorted(allowed)}", "bad_value")
    for entry in r["history"]:
        if entry["role"] not in ROLES:
            raise _Invalid(
                "history", f"role {entry['role']!r} is not one of {sorted(ROLES)}", "bad_value"
            )
    step, turn, max_turns = r["step"], r["turn"], r["max_turns"]
    if max_turns < 2:
        raise _Invalid("max_turns", f"must be at least 2, got {max_turns}", "bad_value")
    if step < 0:
        raise _Invalid("step", f"must be >= 0, got {step}", "turn_order")
    if turn != step + 1:
        raise _Invalid("turn", f"turn {turn} is not step + 1 = {step + 1}", "turn_order")
    if turn > max_turns:
        raise _Invalid("turn", f"turn {turn} is past max_turns {max_turns}", "turn_order")
    remaining = r.get("turns_remaining")
    if remaining is not None and remaining != max_turns - turn:
        raise _Invalid(
            "turns_remaining",
            f"{remaining} is not max_turns − turn = {max_turns - turn}",
            "turn_order",
        )
    low, high = r["price_low"], r["price_high"]
    if not low < high:
        raise _Invalid("price_high", f"price range [{low}, {high}] is empty", "price_range")
    res = r["reservation_price"]
    if not _in_range(res, low, high):
        raise _Invalid("reservation_price", f"{res} is outside [{low}, {high}]", "price_range")
    expected = (res - low) / (high - low)
    if abs(r["reservation_norm"] - expected) > RHO_TOLERANCE:
        raise _Invalid(
            "reservation_norm",
            f"{r['reservation_norm']} is not the normalised reservation {expected!r}",
            "bad_value",
        )
    offer = r["offer_price"]
    history = r["history"]
    if r["action"] == "OFFER":
        if offer is None:
            raise _Invalid("offer_price", "is null for an OFFER", "missing_field")
        if not _in_range(offer, low, high):
            raise _Invalid("offer_price", f"{offer} is outside [{low}, {high}]", "price_range")
    else:
        if offer is not None:
            raise _Invalid("offer_price", "must be null for an ACCEPT", "bad_value")
        if not history:
            raise _Invalid("action", "ACCEPT with no standing offer", "bad_value")
    last = r["last_offer_price"]
    if last is not None and not _in_range(last, low, high):
        raise _Invalid("last_offer_price", f"{last} is outside [{low}, {high}]", "price_range")
    for entry in history:
        if not _in_range(entry["price"], low, high):
            raise _Invalid(
                "history", f"price {entry['price']} is outside [{low}, {high}]", "price_range"
            )
    final, rho = r["final_price"], r["rho_outcome"]
    if r["outcome"] == "agreement":
        if final is None:
            raise _Invalid("final_price", "is null for an agreement", "missing_field")
        if not _in_range(final, low, high):
            raise _Invalid("final_price", f"{final} is outside [{low}, {high}]", "price_range")
        if not 0.0 <= rho <= 1.0:
            raise _Invalid(
                "rho_outcome", f"ρ = {rho} is outside [0, 1] for an agreement", "rho_range"
            )
    else:
        if final is not None:
            raise _Invalid("final_price", "must be null for an impasse", "bad_value")
        if rho != -1.0:
            raise _Invalid("rho_outcome", f"ρ = {rho} for an impasse (must be -1.0)", "rho_range")
    if len(history) != step:
        raise _Invalid(
            "history", f"holds {len(history)} offers at step {step} (expected {step})", "history"
        )
    expected_last = history[-1]["price"] if history else None
    if last != expected_last:
        raise _Invalid(
            "last_offer_price",
            f"{last} is not the last offer of the history ({expected_last})",
            "history",
        )


@dataclass(frozen=True, slots=True)
class Trajectory:
    """One validated trajectory: its records (dicts, in step order) and first line number."""

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


class _TrajectoryState:
    """Incremental trajectory-level checks (the order :mod:`janus.prepare` mirrors)."""

    __slots__ = ("first", "history", "lines", "records", "reservations", "tid")

    def __init__(self, tid: str, record: dict[str, Any], line: int) -> None:
        self.tid = tid
        self.first = record
        self.records: list[dict[str, Any]] = []
        self.lines: list[int] = []
        self.history: list[dict[str, Any]] = []
        self.reservations: dict[str, float] = {}

    def add(self, r: dict[str, Any], line: int) -> None:
        pos = len(self.records)
        first = self.first
        if pos and self.records[-1]["action"] == "ACCEPT":
            raise _Invalid(
                "step",
                f"the trajectory continues after its ACCEPT on line {self.lines[-1]}",
                "turn_order",
            )
        if r["step"] != pos:
            raise _Invalid("step", f"step {r['step']} where step {pos} was expected", "turn_order")
        for name in CONSTANT_FIELDS:
            if r[name] != first[name]:
                reason = "rho_not_constant" if name == "rho_outcome" else "not_constant"
                raise _Invalid(
                    name,
                    f"{r[name]!r} differs from {first[name]!r} on line "
                    f"{self.lines[0]} of the same trajectory",
                    reason,
                )
        mover = first["first_mover"]
        expected = mover if pos % 2 == 0 else ("seller" if mover == "buyer" else "buyer")
        if r["role"] != expected:
            raise _Invalid(
                "role",
                f"{r['role']!r} moves at step {pos}, but {expected!r} should "
                "(turns alternate from first_mover)",
                "turn_order",
            )
        known = self.reservations.setdefault(r["role"], r["reservation_price"])
        if r["reservation_price"] != known:
            raise _Invalid(
                "reservation_price",
                f"the {r['role']}'s reservation changes from {known} to {r['reservation_price']}",
                "not_constant",
            )
        if pos:
            previous = self.records[-1]
            if r["last_offer_price"] != previous["offer_price"]:
                raise _Invalid(
                    "last_offer_price",
                    f"{r['last_offer_price']} is not the previous "
                    f"step's offer {previous['offer_price']}",
                    "history",
                )
        if r["history"] != self.history:
            raise _Invalid("history", "does not match the offers made before this step", "history")
        self.records.append(r)
        self.lines.append(line)
        if r["action"] == "OFFER":
            self.history.append({"role": r["role"], "price": r["offer_price"]})

    def finish(self) -> None:
        """End-of-trajectory checks; failures point at the last line."""
        last = self.records[-1]
        n = len(self.records)
        if last["outcome"] == "agreement":
            if last["action"] != "ACCEPT":
                raise _Invalid(
                    "outcome",
                    "the trajectory is an agreement but ends without an ACCEPT",
                    "outcome",
                )
            standing = self.records[-2]["offer_price"]
            if last["final_price"] != standing:
                raise _Invalid(
                    "final_price",
                    f"{last['final_price']} is not the accepted offer {standing}",
                    "outcome",
                )
            buyer = self.reservations.get("buyer")
            seller = self.reservations.get("seller")
            if buyer is not None and seller is not None:
                if not seller < buyer:
                    raise _Invalid(
                        "reservation_price",
                        f"seller reservation {seller} is not below the buyer's {buyer}",
                        "bad_value",
                    )
                rho = compute_rho(last["final_price"], buyer, seller)
                if abs(rho - last["rho_outcome"]) > RHO_TOLERANCE:
                    raise _Invalid(
                        "rho_outcome",
                        f"ρ = {last['rho_outcome']} but the final price "
                        f"and reservations give {rho!r}",
                        "rho_mismatch",
                    )
        else:
            if last["action"] == "ACCEPT":
                raise _Invalid(
                    "outcome", "the trajectory ends with an ACCEPT but is marked impasse", "outcome"
                )
            if n != last["max_turns"]:
                raise _Invalid(
                    "turn",
                    f"an impasse must reach max_turns {last['max_turns']}, but "
                    f"the trajectory ends at turn {last['turn']}",
                    "turn_order",
                )


class DatasetReader:
    """Streams the validated trajectories of a JSONL dataset, in file order.

    With ``skip_invalid=False`` the first problem raises :class:`DataValidationError` (one line:
    file, line, field). With ``skip_invalid=True`` bad trajectories are skipped; ``skipped``
    counts them by reason and ``skipped_lines`` counts the lines dropped with them. Memory is
    one trajectory plus the set of trajectory ids seen (to catch a reappearing id, which is how
    two runs appended into one file show up).
    """

    def __init__(self, path: str | os.PathLike[str], *, skip_invalid: bool = False) -> None:
        self.path = Path(path)
        self.skip_invalid = skip_invalid
        self.skipped: Counter[str] = Counter()
        self.skipped_lines = 0
        self.lines_read = 0
        self.trajectories_read = 0

    def __iter__(self) -> Iterator[Trajectory]:
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such dataset file")
        strict = not self.skip_invalid
        seen: set[str] = set()
        poisoned: set[str] = set()
        state: _TrajectoryState | None = None
        last_tid: str | None = None  # trajectory of the last line that parsed

        def poison(tid: str | None, reason: str) -> None:
            nonlocal state
            if tid is None or tid not in poisoned:
                self.skipped[reason] += 1
            if tid is None:
                return
            poisoned.add(tid)
            seen.add(tid)
            if state is not None and state.tid == tid:
                self.skipped_lines += len(state.records)
                state = None

        with open(path, "rb") as handle:
            for lineno, data in enumerate(handle, 1):
                self.lines_read = lineno
                if not data.strip():
                    continue
                raw = data.decode("utf-8", "replace")
                try:
                    try:
                        data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise _Invalid(
                            None, "malformed line (not UTF-8)", "malformed_json"
                        ) from None
                    record = parse_line(raw)
                except _Invalid as err:
                    tid = err.trajectory_id or guess_trajectory_id(raw)
                    if strict:
                        raise DataValidationError(
                            path, lineno, err.field, err.message, err.reason, tid
                        ) from None
                    self.skipped_lines += 1
                    victim = tid if tid is not None else last_tid
                    if state is not None and state.tid != victim:
                        yield from self._finish(state, poison)
                        state = None
                    poison(victim, err.reason)
                    continue
                tid = record["trajectory_id"]
                last_tid = tid
                if state is not None and state.tid != tid:
                    yield from self._finish(state, poison)
                    state = None
                if tid in poisoned:
                    self.skipped_lines += 1
                    continue
                try:
                    if state is None:
                        if tid in seen:
                            raise _Invalid(
                                "trajectory_id",
                                f"trajectory {tid!r} reappears after other trajectories "
                                "(two runs appended into one file?)",
                                "duplicate_trajectory",
                            )
                        seen.add(tid)
                        state = _TrajectoryState(tid, record, lineno)
                    state.add(record, lineno)
                except _Invalid as err:
                    if strict:
                        raise DataValidationError(
                            path, lineno, err.field, err.message, err.reason, tid
                        ) from None
                    self.skipped_lines += 1
                    poison(tid, err.reason)
            if state is not None:
                yield from self._finish(state, poison)

    def _finish(self, state: _TrajectoryState, poison: Any) -> Iterator[Trajectory]:
        try:
            state.finish()
        except _Invalid as err:
            if not self.skip_invalid:
                raise DataValidationError(
                    self.path, state.lines[-1], err.field, err.message, err.reason, state.tid
                ) from None
            poison(state.tid, err.reason)
            return
        self.trajectories_read += 1
        yield Trajectory(state.tid, tuple(state.records), state.lines[0])


def iter_trajectories(
    path: str | os.PathLike[str], *, skip_invalid: bool = False
) -> Iterator[Trajectory]:
    """Stream the validated trajectories of a dataset (see :class:`DatasetReader`)."""
    return iter(DatasetReader(path, skip_invalid=skip_invalid))
