"""The strategy table: every name, its family, description, parameters and pools.

:func:`create_strategy` builds a fresh, seeded agent from a row; the pools (training,
held-out, evaluation) are read from the table's flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from janus.strategies.base import ParamValue, Strategy
from janus.strategies.policies import (
    ChargingBoul,
    Fair,
    Hardliner,
    MiCRO,
    NaiveBoulware,
    NaiveConcession,
    NoisyTimeDependent,
    RelativeTitForTat,
    SplitDifference,
    TimeDependent,
    UniformRandom,
)

# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrategySpec:
    """One registered behaviour: its name, family, one-line description, parameters and
    defaults, and its place in the default pools."""

    name: str
    family: str
    description: str
    defaults: Mapping[str, ParamValue] = field(hash=False)
    held_out: bool
    training_only: bool


# Parameter checks: name -> (predicate, what it must be)
_CHECKS: Mapping[str, tuple[Any, str]] = MappingProxyType(
    {
        "margin": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "margin_spread": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "e": (lambda v: v > 0.0, "> 0"),
        "noise": (lambda v: v >= 0.0, ">= 0"),
        "gesture": (lambda v: v >= 0.0, ">= 0"),
        "factor": (lambda v: v >= 0.0, ">= 0"),
        "tolerance": (lambda v: v >= 0.0, ">= 0"),
        "cave": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "cave_turns": (lambda v: v >= 0, ">= 0"),
        "step": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
        "floor": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
        "window": (lambda v: v >= 0.0, ">= 0"),
        "hard_tol": (lambda v: v >= 0.0, ">= 0"),
        "rate": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
        "buffer": (lambda v: v >= 0.0, ">= 0"),
        "jitter": (lambda v: v >= 0.0, ">= 0"),
        "beta": (lambda v: v > 0.0, "> 0"),
        "accept_prob": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    }
)


_Row = tuple[str, type[Strategy], str, Mapping[str, ParamValue], bool, bool]


def _row(
    name: str,
    cls: type[Strategy],
    description: str,
    *,
    held_out: bool = False,
    training_only: bool = False,
    **defaults: ParamValue,
) -> _Row:
    return (name, cls, description, MappingProxyType(defaults), held_out, training_only)


# ChargingBoul parameters shared by its variants
_CB = MappingProxyType({"window": 0.008, "hard_tol": 0.01})
_MICRO = "MiCRO: concedes a {}-of-range step only once the opponent made as many distinct offers"
_FAIR = "converges toward the midpoint of the two opening offers, closing {} of the gap per offer"

_TABLE: tuple[_Row, ...] = (
    # time-dependent (Faratin): e < 1 Boulware, e = 1 linear, e > 1 Conceder
    _row("boulware_hard", TimeDependent, "Faratin time-dependent, very firm Boulware (e = 0.2)",
         e=0.2, margin=0.35, margin_spread=0.1),
    _row("boulware", TimeDependent, "Faratin time-dependent Boulware: concedes late (e = 0.5)",
         e=0.5, margin=0.35, margin_spread=0.1),
    _row("linear", TimeDependent, "Faratin time-dependent, linear from anchor to R (e = 1)",
         e=1.0, margin=0.35, margin_spread=0.1),
    _row("conceder", TimeDependent, "Faratin time-dependent Conceder: concedes early (e = 2)",
         e=2.0, margin=0.35, margin_spread=0.1),
    _row("conceder_fast", TimeDependent, "Faratin time-dependent, fast Conceder (e = 5)",
         e=5.0, margin=0.35, margin_spread=0.1, held_out=True),
    # noisy time-dependent
    _row("noisy_boulware", NoisyTimeDependent, "Boulware (e = 0.5) with ±2%-of-range offer noise",
         e=0.5, margin=0.35, margin_spread=0.1, noise=0.02),
    _row("noisy_linear", NoisyTimeDependent, "linear (e = 1) with ±2%-of-range offer noise",
         e=1.0, margin=0.35, margin_spread=0.1, noise=0.02),
    _row("noisy_conceder", NoisyTimeDependent, "Conceder (e = 2) with ±2%-of-range offer noise",
         e=2.0, margin=0.35, margin_spread=0.1, noise=0.02),
    # reciprocal
    _row("tit_for_tat", RelativeTitForTat,
         "relative tit-for-tat: mirrors the opponent's last concession in percentage terms",
         margin=0.35, margin_spread=0.1, gesture=0.02, factor=1.0),
    _row("tit_for_tat_generous", RelativeTitForTat,
         "relative tit-for-tat that returns 1.5 times the opponent's concession",
         margin=0.35, margin_spread=0.1, gesture=0.02, factor=1.5, held_out=True),
    _row("split_difference", SplitDifference,
         "offers the midpoint of its last offer and the opponent's last offer",
         margin=0.35, margin_spread=0.1, tolerance=0.01),
    # firm
    _row("hardliner", Hardliner, "holds its opening price; caves to just short of R near the end",
         margin=0.35, margin_spread=0.1, cave=0.01, cave_turns=2),
    _row("micro_fine", MiCRO, _MICRO.format("1%"), margin=0.35, margin_spread=0.1, step=0.01),
    _row("micro", MiCRO, _MICRO.format("2%"), margin=0.35, margin_spread=0.1, step=0.02),
    _row("micro_coarse", MiCRO, _MICRO.format("4%"), margin=0.35, margin_spread=0.1, step=0.04,
         held_out=True),
    # adaptive
    _row("charging_boul", ChargingBoul,
         "ChargingBoul-style Boulware adapting to its opponent (hardliner/conceder/boulwarish)",
         margin=0.35, margin_spread=0.1, floor=0.1, e=0.5, **_CB),
    _row("charging_boul_aggressive", ChargingBoul,
         "ChargingBoul, firmer: high utility floor, small exponent",
         margin=0.35, margin_spread=0.1, floor=0.3, e=0.25, **_CB),
    _row("charging_boul_patient", ChargingBoul,
         "ChargingBoul, patient: concedes late but may go all the way to R",
         margin=0.35, margin_spread=0.1, floor=0.0, e=0.3, **_CB, held_out=True),
    # fair
    _row("fair_slow", Fair, _FAIR.format("20%"),
         margin=0.35, margin_spread=0.1, rate=0.2, tolerance=0.01),
    _row("fair", Fair, _FAIR.format("40%"),
         margin=0.35, margin_spread=0.1, rate=0.4, tolerance=0.01),
    _row("fair_fast", Fair, _FAIR.format("80%"),
         margin=0.35, margin_spread=0.1, rate=0.8, tolerance=0.01, held_out=True),
    # naive
    _row("naive_concession", NaiveConcession,
         "offers just short of its reservation from the start; accepts anything acceptable",
         buffer=0.02, jitter=0.01),
    _row("naive_boulware", NaiveBoulware,
         "a Boulware curve run backwards: starts at R and drifts away from it",
         margin=0.35, margin_spread=0.1, beta=3.0),
    # random
    _row("random_uniform", UniformRandom,
         "uniformly random rational offers, random acceptance (training only)",
         accept_prob=0.3, training_only=True),
)  # fmt: skip

_CLASSES: Mapping[str, type[Strategy]] = MappingProxyType({row[0]: row[1] for row in _TABLE})

REGISTRY: Mapping[str, StrategySpec] = MappingProxyType(
    {
        name: StrategySpec(
            name=name,
            family=cls.family,
            description=description,
            defaults=MappingProxyType(dict(defaults)),
            held_out=held_out,
            training_only=training_only,
        )
        for name, cls, description, defaults, held_out, training_only in _TABLE
    }
)


def _coerce(name: str, key: str, value: Any, default: ParamValue) -> ParamValue:
    try:
        if isinstance(default, bool | str):
            return str(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"strategy {name!r}: parameter {key!r} must be a {type(default).__name__}, "
            f"got {value!r}"
        ) from None


def create_strategy(name: str, seed: int, **params: Any) -> Strategy:
    """A fresh agent of strategy ``name`` for one seat of one episode, seeded with ``seed``.

    ``params`` override the registered defaults; an unknown name or parameter raises
    :class:`ValueError` listing the valid ones.
    """
    spec = REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(REGISTRY)}")
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for strategy {name!r}; "
            f"valid parameters: {', '.join(spec.defaults) or '(none)'}"
        )
    merged: dict[str, ParamValue] = dict(spec.defaults)
    for key, value in params.items():
        merged[key] = _coerce(name, key, value, spec.defaults[key])
    for key, value in merged.items():
        check = _CHECKS.get(key)
        if check is not None and not check[0](value):
            raise ValueError(
                f"strategy {name!r}: parameter {key!r} must be {check[1]}, got {value!r}"
            )
    return _CLASSES[name](name, int(seed), merged)


def training_pool() -> list[str]:
    """The default pool of ``janus generate``: every strategy not held out (training-only ones
    included)."""
    return [name for name, spec in REGISTRY.items() if not spec.held_out]


def held_out_pool() -> list[str]:
    """The default held-out set: opponents never seen in training, for evaluation."""
    return [name for name, spec in REGISTRY.items() if spec.held_out]


def evaluation_pool() -> list[str]:
    """In-pool evaluation opponents: not held out and not training-only."""
    return [name for name, spec in REGISTRY.items() if not spec.held_out and not spec.training_only]


def describe(name: str) -> str:
    """Name, family, description and parameters of one strategy (for ``janus strategies``)."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(REGISTRY)}")
    tags = [
        t for t, on in (("held-out", spec.held_out), ("training-only", spec.training_only)) if on
    ]
    params = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in spec.defaults.items()
    )
    head = f"{spec.name} [{spec.family}]" + (f" ({', '.join(tags)})" if tags else "")
    return f"{head}: {spec.description}\n    params: {params or '(none)'}"
