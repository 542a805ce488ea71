"""``janus demo``: the whole pipeline on the offline default, end to end, on a CPU.

generate → prepare → janus-tiny base → HyperLoRA training (cpu-demo preset) → evaluation
against held-out and in-pool opponents → headline table. Each stage is the same library call
as its own CLI command; the demo only chooses sizes. ``fast=True`` is a smoke run of the same
stages with tiny sizes, used by the tests.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoSizes:
    """How big each stage is; the full demo must finish in about 15 minutes on 2 cores."""

    episodes: int
    base_steps: int | None
    train_overrides: dict[str, Any]
    eval_episodes_per_cell: int
    eval_sweep_episodes_per_cell: int
    eval_opponents: tuple[str, ...] | None = None
    eval_grid: tuple[float, ...] | None = None
    eval_baselines: bool = True
    eval_ablations: bool = True


FULL = DemoSizes(
    episodes=20_000,
    base_steps=None,  # the tiny preset's default
    train_overrides={},
    eval_episodes_per_cell=2,
    eval_sweep_episodes_per_cell=2,
)

FAST = DemoSizes(
    episodes=300,
    base_steps=4,
    train_overrides={
        "max_steps": 4,
        "batch_size": 8,
        "save_every": 4,
        "eval_every": 4,
        "eval_examples": 16,
        "eval_decode_examples": 4,
    },
    eval_episodes_per_cell=1,
    eval_sweep_episodes_per_cell=1,
    eval_opponents=("linear", "boulware", "conceder_fast", "micro_coarse"),
    eval_grid=(0.0, 0.5, 1.0),
    eval_baselines=False,
    eval_ablations=False,
)


@dataclass
class DemoResult:
    report_dir: Path
    summary: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    *,
    workdir: Path = Path("demo"),
    out: Path = Path("reports/demo"),
    fast: bool = False,
    seed: int = 0,
    say: Callable[[str], None] = print,
    progress: bool = True,
) -> DemoResult:
    """Run every stage; intermediate artefacts live in ``workdir`` (the base is reused)."""
    from janus.evaluate import EvaluationConfig, evaluate
    from janus.generate import generate
    from janus.prepare import prepare
    from janus.tiny import pretrain_tiny_base
    from janus.train import TrainConfig, apply_preset, train

    sizes = FAST if fast else FULL
    workdir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def stage(name: str, func: Callable[[], Any]) -> Any:
        say(f"== {name}")
        start = time.perf_counter()
        value = func()
        seconds[name] = time.perf_counter() - start
        say(f"   {name}: {seconds[name]:.1f} s")
        return value

    episodes = workdir / "episodes.jsonl"
    prepared = workdir / "prepared"
    base = workdir / "janus-tiny"
    run_dir = workdir / "run"

    stage(
        "generate",
        lambda: say(
            generate(
                episodes,
                episodes=sizes.episodes,
                seed=seed,
                workers=2,
                overwrite=True,
                progress=progress,
            ).format()
        ),
    )
    stage(
        "prepare",
        lambda: say(prepare(episodes, prepared, overwrite=True, progress=progress).format()),
    )
    stage(
        "base",
        lambda: pretrain_tiny_base(
            prepared,
            base,
            "tiny",
            max_steps=sizes.base_steps,
            seed=seed,
            progress=progress,
            overwrite=fast,
        ),
    )
    if run_dir.exists():
        shutil.rmtree(run_dir)
    overrides = {
        "data": str(prepared),
        "base_model": str(base),
        "out": str(run_dir),
        "seed": seed,
        **sizes.train_overrides,
    }
    config = apply_preset(TrainConfig(), "cpu-demo", overrides)
    stage("train", lambda: train(config, progress=progress))
    evaluation = EvaluationConfig(
        run=run_dir,
        out=out,
        opponents=sizes.eval_opponents,
        episodes_per_cell=sizes.eval_episodes_per_cell,
        sweep_episodes_per_cell=sizes.eval_sweep_episodes_per_cell,
        scripted_baselines=sizes.eval_baselines,
        ablations=sizes.eval_ablations,
        seed=seed,
        overwrite=True,
        progress=progress,
        **({"rho_grid": sizes.eval_grid} if sizes.eval_grid else {}),
    )
    result = stage("evaluate", lambda: evaluate(evaluation))
    return DemoResult(report_dir=Path(out), summary=result.summary, seconds=seconds)
