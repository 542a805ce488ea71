"""One JSONL record in plain Python: built from an episode, or decoded and checked.

Writing: :func:`trajectory_records` builds the records of an episode as dicts in schema
order and :func:`serialize_trajectory` dumps them as compact JSON.

Reading (the slow path): pyarrow parses well-formed blocks against
:func:`janus.schema.input_schema` at C++ speed, but it cannot say *which* line of a block is
broken. When it fails, each line of that block goes through :func:`parse_line`, which names
the first structural problem of the line — malformed JSON, a missing field, a wrong JSON type,
a non-finite number — as :class:`~janus.errors.Invalid`. Everything else (values, ranges, the
trajectory) is checked on the parsed table by :mod:`janus.checks`, the same code whichever
path parsed the line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from janus.domain import ActionKind
from janus.episode import EpisodeResult
from janus.errors import Invalid
from janus.schema import IMPASSE_RHO, RECORD_FIELDS, SCHEMA_VERSION, FieldSpec

__all__ = ["guess_trajectory_id", "parse_line", "serialize_trajectory", "trajectory_records"]


# ------------------------------------------------------------------------------- writing


def _check_provenance(source: str | None, round: int | None) -> None:
    if source is not None and (type(source) is not str or not source):
        raise ValueError(f"source must be a non-empty string, got {source!r}")
    if round is not None and (type(round) is not int or not 0 <= round < 2**31):
        raise ValueError(f"round must be a non-negative 32-bit integer, got {round!r}")


def _outcome_fields(
    result: EpisodeResult,
    *,
    buyer_strategy: str,
    seller_strategy: str,
    seed: int,
    episode: int | None,
    source: str | None,
    round: int | None,
) -> dict[str, Any]:
    """The fields after ``offer_price``: the same on every record of the trajectory."""
    outcome = result.outcome
    agreed = outcome.agreement
    fields: dict[str, Any] = {
        "outcome": "agreement" if agreed else "impasse",
        "final_price": float(outcome.final_price) if agreed else None,
        "rho_outcome": float(outcome.rho) if agreed else IMPASSE_RHO,
        "buyer_strategy": str(buyer_strategy),
        "seller_strategy": str(seller_strategy),
        "first_mover": result.scenario.first_mover.value,
        "seed": int(seed),
    }
    for name, value in (("episode", episode), ("source", source), ("round", round)):
        if value is not None:
            fields[name] = value if name == "source" else int(value)
    return fields


def _check_step(step: Any, index: int, offers: int, trajectory_id: str) -> None:
    obs = step.observation
    if not step.valid or obs.turn != index + 1 or len(obs.history) != offers:
        problem = (
            f"an invalid action ({step.error}); datasets hold valid trajectories only"
            if not step.valid
            else "the observation does not match the actions before it"
        )
        raise ValueError(f"trajectory {trajectory_id!r} step {index}: {problem}")


@dataclass(frozen=True, slots=True)
class _RecordParts:
    """One record in three parts, so that the writer encodes what a trajectory shares once:
    the fields before ``history``, the step's own ``action``/``offer_price``, and the offer
    this step adds to the history (``None`` for an ACCEPT). The outcome fields follow."""

    head: dict[str, Any]
    action: dict[str, Any]
    offer: dict[str, Any] | None


def _record_parts(result: EpisodeResult, trajectory_id: str) -> Iterator[_RecordParts]:
    """The parts of each record of one episode, every field in schema order."""
    scenario, steps = result.scenario, result.steps
    if not steps:
        raise ValueError(f"trajectory {trajectory_id!r} has no steps")
    pr = scenario.price_range
    max_turns = int(scenario.max_turns)
    last_price: float | None = None
    offers = 0
    for index, step in enumerate(steps):
        obs = step.observation
        _check_step(step, index, offers, trajectory_id)
        role = obs.role.value
        reservation = float(scenario.reservation(obs.role))
        offer = step.action.kind is ActionKind.OFFER
        price = float(step.action.price) if offer else None
        head = {
            "schema_version": SCHEMA_VERSION,
            "trajectory_id": str(trajectory_id),
            "step": index,
            "role": role,
            "turn": obs.turn,
            "max_turns": max_turns,
            "turns_remaining": max_turns - obs.turn,
            "reservation_price": reservation,
            "reservation_norm": float(pr.norm(reservation)),
            "price_low": float(pr.low),
            "price_high": float(pr.high),
            "last_offer_price": last_price,
        }
        action = {"action": "OFFER" if offer else "ACCEPT", "offer_price": price}
        yield _RecordParts(head, action, {"role": role, "price": price} if offer else None)
        if offer:
            last_price = price
            offers += 1


def trajectory_records(
    result: EpisodeResult,
    *,
    trajectory_id: str,
    buyer_strategy: str,
    seller_strategy: str,
    seed: int,
    episode: int | None = None,
    source: str | None = None,
    round: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The records of one episode (one per decision step), fields in schema order.

    Raises :class:`ValueError` for an invalid step (datasets hold valid trajectories only) or
    a bad provenance value.
    """
    _check_provenance(source, round)
    tail = _outcome_fields(
        result,
        buyer_strategy=buyer_strategy,
        seller_strategy=seller_strategy,
        seed=seed,
        episode=episode,
        source=source,
        round=round,
    )
    history: list[dict[str, Any]] = []
    for parts in _record_parts(result, trajectory_id):
        yield {**parts.head, "history": history[:], **parts.action, **tail}
        if parts.offer is not None:
            history.append(parts.offer)


_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def serialize_trajectory(
    result: EpisodeResult,
    *,
    trajectory_id: str,
    buyer_strategy: str,
    seller_strategy: str,
    seed: int,
    episode: int | None = None,
    source: str | None = None,
    round: int | None = None,
) -> str:
    """The JSONL lines (one per decision step, each ending in a newline) of one episode.

    Compact JSON, numbers as Python's shortest round-trip ``repr``: the output is a pure
    function of the episode, and equal to ``json.dumps`` of each of
    :func:`trajectory_records` (tested). Every value goes through the JSON encoder; what the
    records of a trajectory share (the outcome fields, the history's offers) is encoded once
    and joined (speed: benchmarks/RESULTS.md). Raises
    :class:`ValueError` as :func:`trajectory_records` does, or for a non-finite number.
    """
    _check_provenance(source, round)
    tail = _outcome_fields(
        result,
        buyer_strategy=buyer_strategy,
        seller_strategy=seller_strategy,
        seed=seed,
        episode=episode,
        source=source,
        round=round,
    )
    try:
        tail_json = _encode(tail)[1:]  # '"outcome":...}'
        history: list[str] = []
        lines: list[str] = []
        for parts in _record_parts(result, trajectory_id):
            head, action = _encode(parts.head)[:-1], _encode(parts.action)[1:-1]
            lines.append(f'{head},"history":[{",".join(history)}],{action},{tail_json}\n')
            if parts.offer is not None:
                history.append(_encode(parts.offer))
    except ValueError as exc:
        if "JSON compliant" not in str(exc):
            raise
        raise ValueError(
            f"trajectory {trajectory_id!r}: cannot write a non-finite number to a dataset"
        ) from None
    return "".join(lines)


# ------------------------------------------------------------------------------- reading


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
