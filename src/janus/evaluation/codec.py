"""Typed JSON records: frozen dataclasses that write themselves as JSON and read themselves
back, checked field by field.

Why a codec and not hand-written ``to_dict``/``from_dict`` pairs: the fields of a record and
their type hints are the only description of its JSON, so adding a field is adding one line
to its record, and the reader can never forget a field the writer writes.

The rules, in one place:

- a field is written under its own name, in declaration order;
- a flat field (a record, ``field(metadata=FLAT)``) has its fields written inline, in the
  parent's object;
- an omitted field (``field(default=None, metadata=OMIT_NONE)``) is written only when it is
  not ``None``, and reads ``None`` when absent;
- every other field is required on reading: a missing one, or one of the wrong type, is a
  one-line :class:`FormatError` naming the file and the field's path
  (``configurations[standard].by_opponent[fair].utility``);
- values are ``int``, ``float``, ``str``, ``bool``, ``X | None``, ``tuple[T, ...]``,
  ``dict[str, T]``, records, :class:`Interval` (written as ``[low, high]``) and ``Any``
  (free JSON: provenance the evaluation only passes on);
- an undefined statistic is ``None`` (JSON ``null``): a record turns ``nan``/``inf`` into
  ``None``, numpy scalars into Python numbers and lists into tuples when it is built, so a
  record built from numbers equals the record read back from its own JSON.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Self

__all__ = ["FLAT", "OMIT_NONE", "FormatError", "Interval", "Record", "decode", "encode", "plain"]


class FormatError(ValueError):
    """A JSON document that does not hold the record it should (one line: file and field)."""


#: Field metadata: a record field whose own fields are written inline in the parent's object.
FLAT: Mapping[str, Any] = {"flat": True}
#: Field metadata: left out of the JSON when ``None`` (and read as ``None`` when absent).
OMIT_NONE: Mapping[str, Any] = {"omit_none": True}


def plain(value: Any) -> Any:
    """``value`` with ``nan``/``inf`` as ``None``, numpy scalars as Python numbers and every
    list as a tuple (records are left as they are: they are plain already)."""
    if value is None or isinstance(value, bool | str | Record):
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, list | tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "item"):  # a numpy scalar
        return plain(value.item())
    return value


@dataclass(frozen=True, kw_only=True)
class Record:
    """Base of every typed JSON record (subclasses are ``@dataclass(frozen=True, kw_only=True)``).

    Frozen: a summary is a result, not a workspace. Mapping fields hold plain dicts, which
    ``frozen`` cannot lock; nothing in Janus writes into them.
    """

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            normal = plain(value)
            if normal is not value:
                object.__setattr__(self, f.name, normal)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (strict JSON: no ``NaN``)."""
        return encode(self)

    @classmethod
    def from_json(cls, data: Any, *, source: str = "<json>") -> Self:
        """Read a record from parsed JSON; ``source`` (a file name) opens every error."""
        return decode(cls, data, _Where(source))

    def compact_json(self) -> dict[str, Any] | None:
        """A shorter JSON form for this value, or ``None`` to write every field."""
        return None

    @classmethod
    def from_compact_json(cls, data: Mapping[str, Any]) -> Self | None:
        """The value :meth:`compact_json` wrote as ``data``, or ``None`` if it is not one."""
        return None


@dataclass(frozen=True, kw_only=True)
class Interval(Record):
    """A confidence interval (95% percentile bootstrap in the evaluation); written as
    ``[low, high]``. ``None`` bounds: undefined (no data)."""

    low: float | None
    high: float | None

    @classmethod
    def of(cls, pair: Any) -> Interval:
        low, high = pair
        return cls(low=low, high=high)

    @property
    def defined(self) -> bool:
        return self.low is not None and self.high is not None

    def __contains__(self, value: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= value <= self.high

    def __iter__(self) -> Iterator[float | None]:
        return iter((self.low, self.high))


# -------------------------------------------------------------------------------- writing


def encode(value: Any) -> Any:
    """A record (or a value inside one) as JSON."""
    if isinstance(value, Interval):
        return [value.low, value.high]
    if isinstance(value, Record):
        compact = value.compact_json()
        if compact is not None:
            return compact
        out: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("flat"):
                out.update(encode(item))
            elif item is not None or not f.metadata.get("omit_none"):
                out[f.name] = encode(item)
        return out
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    return plain(value)


# -------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Where:
    source: str
    path: str = ""

    def field(self, name: str) -> _Where:
        return _Where(self.source, f"{self.path}.{name}" if self.path else name)

    def item(self, key: object) -> _Where:
        return _Where(self.source, f"{self.path}[{key}]")

    def error(self, message: str) -> FormatError:
        return FormatError(f"{self.source}: {message}")

    def wrong(self, expected: str, value: Any) -> FormatError:
        shown = repr(value) if len(repr(value)) <= 40 else type(value).__name__
        return self.error(f"field {self.path or '(top)'} should be {expected}, not {shown}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_SCALARS: dict[type, tuple[str, Any]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    str: ("a string", lambda v: isinstance(v, str)),
}


def decode(tp: Any, data: Any, where: _Where) -> Any:
    """``data`` (parsed JSON) read as type ``tp``; a :class:`FormatError` where it is not."""
    if tp is Any:
        return plain(data)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if data is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return decode(inner, data, where)
    if origin is tuple:
        if not isinstance(data, list):
            raise where.wrong("a list", data)
        return tuple(decode(args[0], v, where.item(i)) for i, v in enumerate(data))
    if origin is dict:
        if not isinstance(data, dict):
            raise where.wrong("an object", data)
        return {k: decode(args[1], v, where.item(k)) for k, v in data.items()}
    if isinstance(tp, type) and issubclass(tp, Record):
        return _decode_record(tp, data, where)
    if tp in _SCALARS:
        expected, accepts = _SCALARS[tp]
        if not accepts(data):
            raise where.wrong(expected, data)
        return float(data) if tp is float else data
    raise TypeError(f"the codec cannot read type {tp!r} ({where.path})")  # a bug, not bad data


def _decode_record(cls: type[Record], data: Any, where: _Where) -> Record:
    if cls is Interval:
        if not (isinstance(data, list) and len(data) == 2):
            raise where.wrong("an interval [low, high]", data)
        low, high = (decode(float | None, v, where.item(i)) for i, v in enumerate(data))
        return Interval(low=low, high=high)
    if not isinstance(data, dict):
        raise where.wrong("an object", data)
    compact = cls.from_compact_json(data)
    if compact is not None:
        return compact
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.metadata.get("flat"):
            values[f.name] = decode(hints[f.name], data, where)
        elif f.name in data:
            values[f.name] = decode(hints[f.name], data[f.name], where.field(f.name))
        elif f.metadata.get("omit_none"):
            values[f.name] = None
        else:
            raise where.error(f"missing field {where.field(f.name).path}")
    return cls(**values)
