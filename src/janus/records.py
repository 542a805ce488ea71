"""One JSONL line in plain Python: decode it and check its structure (the slow path).

pyarrow parses well-formed blocks against :func:`janus.schema.input_schema` at C++ speed, but
it cannot say *which* line of a block is broken. When it fails, each line of that block goes
through :func:`parse_line`, which names the first structural problem of the line — malformed
JSON, a missing field, a wrong JSON type, a non-finite number — as
:class:`~janus.errors.Invalid`. Everything else (values, ranges, the trajectory) is checked on
the parsed table by :mod:`janus.checks`, the same code whichever path parsed the line.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from janus.errors import Invalid
from janus.schema import RECORD_FIELDS, FieldSpec

__all__ = ["guess_trajectory_id", "parse_line"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_TID_PATTERN = re.compile(r'"trajectory_id"\s*:\s*"((?:[^"\\]|\\.)*)"')
_KEY = re.compile(r'"(\w+)"\s*:')
_HISTORY_KEYS = {"role", "price"}


def guess_trajectory_id(raw: str) -> str | None:
    """The trajectory id of a line that is not valid JSON, if it can still be read."""
    match = _TID_PATTERN.search(raw)
    if match is None:
        return None
    try:
        return json.loads(f'"{match.group(1)}"')
    except ValueError:
        return None


def parse_line(data: bytes) -> dict[str, Any]:
    """Decode one line and check its structure; raise :class:`Invalid` naming the field.

    The error carries the line's trajectory id when it can be read, so that a bad line is
    blamed on its own trajectory.
    """
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError:
        tid = guess_trajectory_id(data.decode("utf-8", "replace"))
        raise Invalid(None, "malformed line (not UTF-8)", "malformed_json", tid) from None
    record = _decode(raw)
    try:
        check_structure(record)
    except Invalid as err:
        tid = record.get("trajectory_id")
        err.trajectory_id = tid if type(tid) is str else None
        raise
    return record


def _decode(raw: str) -> dict[str, Any]:
    try:
        record = _decoder.decode(raw)
    except ValueError as exc:
        text = str(exc)
        tid = guess_trajectory_id(raw)
        if text.startswith("non-finite"):
            name = text.rsplit(" ", 1)[-1]
            match = re.search(r'"(\w+)"\s*:\s*' + re.escape(name), raw)
            field = match.group(1) if match else None
            raise Invalid(field, f"{name} is not a number", "non_finite", tid) from None
        pos = getattr(exc, "pos", None)
        field = _field_before(raw, pos) if pos is not None else None
        raise Invalid(field, f"malformed JSON ({text})", "malformed_json", tid) from None
    if type(record) is not dict:
        raise Invalid(
            None, f"a record must be a JSON object, got {type(record).__name__}", "malformed_json"
        )
    return record


def _field_before(raw: str, pos: int) -> str | None:
    """The last top-level key that starts before ``pos`` (where a JSON parse failed)."""
    keys = [m.group(1) for m in _KEY.finditer(raw, 0, pos)]
    top = [k for k in keys if k not in _HISTORY_KEYS] or keys
    return top[-1] if top else None


def check_structure(record: dict[str, Any]) -> None:
    """Per field, in record order: present (unless optional), not null (unless nullable), of
    its JSON type, a 64-bit integer, a finite number. Raises :class:`Invalid`."""
    for spec in RECORD_FIELDS:
        name = spec.name
        if name not in record:
            if spec.required:
                raise Invalid(name, "missing", "missing_field")
            continue
        value = record[name]
        if value is None:
            if spec.nullable or not spec.required:
                continue
            raise Invalid(name, "is null", "missing_field")
        _check_value(spec, value)


def _check_value(spec: FieldSpec, value: Any) -> None:
    name, kind = spec.name, spec.kind
    if not _kind_ok(kind, value):
        raise Invalid(name, f"must be {kind}, got {type(value).__name__}", "bad_type")
    if kind == "int" and not -(2**63) <= value < 2**63:
        raise Invalid(name, f"{value} is outside the 64-bit integer range", "bad_value")
    if kind == "float" and not math.isfinite(value):
        raise Invalid(name, f"{value!r} is not a finite number", "non_finite")
    if kind == "history":
        for entry in value:
            if type(entry) is not dict or "role" not in entry or "price" not in entry:
                raise Invalid(name, "entries must be {role, price} objects", "bad_type")
            if type(entry["role"]) is not str or type(entry["price"]) not in (float, int):
                raise Invalid(name, "entries must be {role: str, price: number}", "bad_type")
            if not math.isfinite(entry["price"]):
                raise Invalid(name, "holds a non-finite price", "non_finite")


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return type(value) is int
    if kind == "float":
        return type(value) in (float, int)
    if kind == "str":
        return type(value) is str
    return type(value) is list
