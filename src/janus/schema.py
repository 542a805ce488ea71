"""The data contract: the JSONL record, the prepared Parquet tables, their file names, and ρ.

Everything that says what a Janus dataset *is* lives here, documented field by field in
``docs/DATA.md``; the writer (:mod:`janus.dataset`), the validator (:mod:`janus.validation`)
and ``janus prepare`` (:mod:`janus.prepare`) all read it from this one place.

This module is imported by the light modules too (:mod:`janus.domain`, :mod:`janus.prompt`),
so it does not import pyarrow at import time: the Arrow schemas are built on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CONSTANT_FIELDS",
    "DECISION_STEPS_FILE",
    "IMPASSE_RHO",
    "META_FILE",
    "OUTPUT_FILES",
    "PROVENANCE_FIELDS",
    "REASONS",
    "RECORD_FIELDS",
    "REQUIRED_FIELDS",
    "SCHEMA_VERSION",
    "TRAJECTORY_OUTCOMES_FILE",
    "FieldSpec",
    "decision_steps_schema",
    "input_schema",
    "rho_is_valid",
    "trajectory_outcomes_schema",
]

SCHEMA_VERSION = 1
"""Version of the JSONL record schema (``schema_version`` on every line)."""

# ------------------------------------------------------------------------------------------ ρ

IMPASSE_RHO = -1.0
"""The label of an impasse: the only ρ allowed outside [0, 1]."""

RHO_TOLERANCE = 1e-9
"""Tolerance of recomputed values (ρ from the final price, reservation_norm) against records."""


def rho_is_valid(rho: Any) -> Any:
    """Whether ρ is in [0, 1] or exactly :data:`IMPASSE_RHO`: THE rule for every ρ in Janus.

    Elementwise for numpy arrays and torch tensors (any device), a ``bool`` for a number.
    NaN and ±∞ fail every comparison, so they are never valid.
    """
    return ((rho >= 0.0) & (rho <= 1.0)) | (rho == IMPASSE_RHO)


# ----------------------------------------------------------------------------- the record

ROLES = frozenset({"buyer", "seller"})
ACTIONS = frozenset({"OFFER", "ACCEPT"})
OUTCOMES = frozenset({"agreement", "impasse"})


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
    FieldSpec("source", "str", required=False),
    FieldSpec("round", "int", required=False),
)
"""Every field, in the order the writer emits them. Unknown extra fields are ignored."""

REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in RECORD_FIELDS if f.required)

PROVENANCE_FIELDS: tuple[str, ...] = ("source", "round")
"""Optional fields saying where a trajectory came from (e.g. ``"janus-refine"``, round 2).
``prepare`` carries them into both tables only when some input record has them."""

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
    *PROVENANCE_FIELDS,
)
"""Fields that must hold the same value on every record of a trajectory, in check order."""

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
"""Reasons a record or trajectory is rejected (the keys of ``--skip-invalid`` counts)."""

# ---------------------------------------------------------------------------- the outputs

DECISION_STEPS_FILE = "decision_steps.parquet"
TRAJECTORY_OUTCOMES_FILE = "trajectory_outcomes.parquet"
META_FILE = "prepare_meta.json"
OUTPUT_FILES = (DECISION_STEPS_FILE, TRAJECTORY_OUTCOMES_FILE, META_FILE)
SPLITS = ("train", "val", "test")

DECISION_STEPS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trajectory_id", "string"),
    ("step", "int32"),
    ("role", "string"),
    ("turn", "int32"),
    ("turns_remaining", "int32"),
    ("max_turns", "int32"),
    ("reservation_norm", "float64"),
    ("last_offer_norm", "float64"),
    ("history_roles", "list<string>"),
    ("history_prices_norm", "list<float64>"),
    ("target_action", "string"),
    ("target_price_norm", "float64"),
    ("rho_train", "float64"),
    ("split", "string"),
    # extras
    ("reservation_price", "float64"),
    ("price_low", "float64"),
    ("price_high", "float64"),
    ("last_offer_price", "float64"),
    ("target_price", "float64"),
    ("outcome", "string"),
    ("buyer_strategy", "string"),
    ("seller_strategy", "string"),
    ("first_mover", "string"),
    ("seed", "int64"),
)
"""Columns of ``decision_steps.parquet``; the first fourteen are the contract of the trainer."""

TRAINER_COLUMNS: tuple[str, ...] = tuple(name for name, _ in DECISION_STEPS_COLUMNS[:14])

TRAJECTORY_OUTCOMES_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trajectory_id", "string"),
    ("agreement", "bool"),
    ("outcome", "string"),
    ("final_price", "float64"),
    ("rho", "float64"),
    ("turns", "int32"),
    ("max_turns", "int32"),
    ("buyer_strategy", "string"),
    ("seller_strategy", "string"),
    ("first_mover", "string"),
    ("buyer_reservation", "float64"),
    ("seller_reservation", "float64"),
    ("zopa_width", "float64"),
    ("price_low", "float64"),
    ("price_high", "float64"),
    ("seed", "int64"),
    ("split", "string"),
)
"""Columns of ``trajectory_outcomes.parquet`` (reservations as the records of each side show)."""

PROVENANCE_COLUMNS: tuple[tuple[str, str], ...] = (("source", "string"), ("round", "int32"))
"""Appended (nullable) to both tables when some input record carries a provenance field."""

DICTIONARY_COLUMNS: tuple[str, ...] = (
    "role", "history_roles", "target_action", "split", "outcome", "buyer_strategy",
    "seller_strategy", "first_mover", "source",
)  # fmt: skip
"""Low-cardinality columns, dictionary-encoded in Parquet (ids and prices would only pay)."""

_RECORD_KIND_TYPES = {"int": "int64", "float": "float64", "str": "string", "history": "history"}


def _arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    if name == "history":
        return pa.list_(pa.struct([("role", pa.string()), ("price", pa.float64())]))
    if name.startswith("list<"):
        return pa.list_(_arrow_type(name[5:-1]))
    return pa.type_for_alias(name)


def _arrow_schema(columns: tuple[tuple[str, str], ...]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(name, _arrow_type(kind)) for name, kind in columns])


@cache
def input_schema() -> pa.Schema:
    """The explicit Arrow schema a JSONL block is parsed against (every record field)."""
    return _arrow_schema(tuple((f.name, _RECORD_KIND_TYPES[f.kind]) for f in RECORD_FIELDS))


@cache
def decision_steps_schema(provenance: bool = False) -> pa.Schema:
    """The schema of ``decision_steps.parquet``, with the provenance columns or without."""
    return _arrow_schema(DECISION_STEPS_COLUMNS + (PROVENANCE_COLUMNS if provenance else ()))


@cache
def trajectory_outcomes_schema(provenance: bool = False) -> pa.Schema:
    """The schema of ``trajectory_outcomes.parquet``, with the provenance columns or without."""
    return _arrow_schema(TRAJECTORY_OUTCOMES_COLUMNS + (PROVENANCE_COLUMNS if provenance else ()))
