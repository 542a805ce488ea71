"""In-pool calibration sweeps: choosing a checkpoint and fitting its calibration map.

Both decisions are made on opponents of the *training* pool that the evaluation also
reports as in-pool, on episodes of their own seed namespace (``janus-calibrate``), never on
the held-out opponents: the headline figures of ``janus evaluate`` stay honest.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from janus.calibration import CalibrationMap, fit_calibration_map
from janus.domain import DomainConfig, Role, sample_scenario

DEFAULT_GRID: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))


def pool_without_held_out(
    opponents: Sequence[str] | None, default: Sequence[str], purpose: str
) -> tuple[str, ...]:
    """``opponents`` (or ``default``) checked: known strategies, none of them held out.

    Everything that chooses (sweeps, refinement rollouts) goes through here, so a held-out
    opponent can never influence a checkpoint, a map or a training row."""
    from janus.strategies import REGISTRY, held_out_pool

    names = tuple(default if opponents is None else opponents)
    held = set(held_out_pool())
    for name in names:
        if name not in REGISTRY:
            raise ValueError(f"unknown opponent {name!r}")
        if name in held:
            raise ValueError(f"{name} is a held-out opponent: {purpose} may not use it")
    if not names:
        raise ValueError(f"no {purpose} opponents")
    return names


def calibration_opponents(opponents: Sequence[str] | None = None) -> tuple[str, ...]:
    """The sweep's opponents: the in-pool evaluation opponents unless given."""
    from janus.strategies import evaluation_pool

    return pool_without_held_out(opponents, evaluation_pool(), "calibration")


def _seed(seed: int, opponent: str, role: Role, index: int) -> int:
    text = f"janus-calibrate:{seed}:{opponent}:{role.value}:{index}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


@dataclass(frozen=True)
class SweepResult:
    """The rows a map is fitted on, and the raw dial's calibration on them."""

    rows: tuple[tuple[str, float, float | None], ...]
    opponents: tuple[str, ...]
    grid: tuple[float, ...]
    mae: float
    agreement_rate: float
    #: The agent rules the sweep was played with: the map holds for an agent with these.
    rules: tuple[str, ...] = ()
    #: ... and the price decoding it played (``janus.decoding.PRICE_DECODINGS``).
    price_decoding: str = "greedy"
    #: ... and its base weights' dtype (``janus.agent.DTYPES``): bf16 play moves outcomes a little.
    dtype: str = "float32"

    def to_json(self) -> dict[str, Any]:
        return {"mae": self.mae, "agreement_rate": self.agreement_rate, "episodes": len(self.rows)}


def in_pool_sweep(
    agent: Any,
    *,
    episodes_per_cell: int = 2,
    grid: Sequence[float] = DEFAULT_GRID,
    opponents: Sequence[str] | None = None,
    seed: int = 0,
    domain: DomainConfig | None = None,
    batch_size: int = 1024,
    progress: bool = False,
) -> SweepResult:
    """Play the raw dial at every grid ρ against every calibration opponent, both roles."""
    from janus.evaluation.harness import play_episodes
    from janus.evaluation.stats import calibration_stats

    names = calibration_opponents(opponents)
    specs = _sweep_specs(names, grid, episodes_per_cell, seed, domain or DomainConfig())
    records = play_episodes(specs, agent, batch_size=batch_size, progress=progress)
    rows = tuple(
        (r.janus_role, float(r.requested_rho), r.achieved_rho if r.agreement else None)
        for r in records
    )
    stats = calibration_stats(
        [r.requested_rho for r in records],
        [r.achieved_rho if r.agreement else float("nan") for r in records],
        [r.agreement for r in records],
        tuple(grid),
        n_resamples=1,
        seed=seed,
    )
    return SweepResult(
        rows=rows,
        opponents=names,
        grid=tuple(float(g) for g in grid),
        mae=float(stats["mae"]),
        agreement_rate=float(stats["agreement_rate"]),
        rules=tuple(getattr(agent, "rules", ())),
        price_decoding=getattr(agent, "price_decoding", "greedy"),
        dtype=_agent_dtype(agent),
    )


def _agent_dtype(agent: Any) -> str:
    """The name of the agent's base dtype (a scripted stand-in has none: float32)."""
    from janus.agent import dtype_name

    dtype = getattr(agent, "dtype", None)
    return "float32" if dtype is None else dtype_name(dtype)


def _sweep_specs(
    names: Sequence[str],
    grid: Sequence[float],
    episodes_per_cell: int,
    seed: int,
    domain: DomainConfig,
) -> list[Any]:
    """The sweep's episodes: every grid ρ played on the same scenario of each (opponent,
    role, index) cell, so the points of the curve differ only in the request."""
    from janus.evaluation.harness import EpisodeSpec, first_mover

    specs = []
    for position, opponent in enumerate(names):
        for role in (Role.BUYER, Role.SELLER):
            for index in range(episodes_per_cell):
                episode_seed = _seed(seed, opponent, role, index)
                opens = first_mover(index, position)
                scenario = sample_scenario(domain, random.Random(episode_seed), opens)
                for rho in grid:
                    specs.append(
                        EpisodeSpec(
                            configuration="calibrate",
                            kind="janus",
                            channels="both",
                            requested_rho=float(rho),
                            janus_role=role,
                            opponent=opponent,
                            held_out=False,
                            index=index,
                            seed=episode_seed,
                            scenario=scenario,
                            calibrated=False,
                        )
                    )
    return specs


def fit_map(sweep: SweepResult, seed: int, **details: Any) -> CalibrationMap:
    """The calibration map of a sweep's rows, with where they came from."""
    return fit_calibration_map(
        sweep.rows,
        sweep.grid,
        opponents=sweep.opponents,
        seed=seed,
        details={
            "episodes": len(sweep.rows),
            "raw_mae": sweep.mae,
            "rules": list(sweep.rules),
            "price_decoding": sweep.price_decoding,
            "dtype": sweep.dtype,
            **details,
        },
    )


def calibrate_adapter(
    run_or_adapter: str | Path,
    *,
    episodes_per_cell: int = 2,
    seed: int = 0,
    opponents: Sequence[str] | None = None,
    rules: Sequence[str] | str | None = None,
    price_decoding: str = "greedy",
    dtype: str = "auto",
    progress: bool = True,
) -> tuple[CalibrationMap, Path]:
    """``janus calibrate``: fit the adapter's map on an in-pool sweep and save it beside it.

    ``rules`` (default: the agent's defaults), ``price_decoding`` and ``dtype`` (``auto``:
    the one the adapter trained with) are how the sweep plays: a map says where the dial lands
    when played that way, so an agent meant to play otherwise needs a map fitted so
    (``details`` records all three; agents then play the map's dtype by default)."""
    from janus.agent import JanusAgent, resolve_adapter_dir
    from janus.rules import check_rules
    from janus.runtime import torch_threads

    played = check_rules(rules)  # a typo is refused before the model loads
    adapter = resolve_adapter_dir(run_or_adapter)
    agent = JanusAgent.from_pretrained(
        adapter, raw=True, seed=seed, rules=played, price_decoding=price_decoding, dtype=dtype
    )
    with torch_threads(1):
        sweep = in_pool_sweep(
            agent,
            episodes_per_cell=episodes_per_cell,
            opponents=opponents,
            seed=seed,
            progress=progress,
        )
    calibration = fit_map(sweep, seed, episodes_per_cell=episodes_per_cell)
    return calibration, calibration.save(adapter)
