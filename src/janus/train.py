"""HyperLoRA training on a frozen causal LM: one process or many (``torchrun``), resumable.

:func:`train` composes the parts in :mod:`janus.training` for a HyperLoRA run. Per optimiser
step (:func:`janus.training.loop.run_loop`): ``model.current_rho`` takes each micro-batch's ρ
(the very values its prompts show), the loss is the causal LM loss on target tokens only plus
``lambda_sep`` times the bounded gate-separation term
(:class:`janus.training.losses.TargetTokenObjective`), AdamW updates the adapter (A, B,
hypernets, the new tokens' rows) after gradient accumulation and clipping, and a linear
warm-up then linear decay to a tenth sets the learning rate
(:func:`janus.training.schedules.warmup_decay_schedule`). Callbacks log, validate and save.

This module owns what is specific to a HyperLoRA run: its configuration and presets, the
checks made before anything is loaded, the model (frozen base, special tokens, adapters), what
a checkpoint holds besides the trainer state (the adapter directory), and the run directory's
policy (never overwrite, resume only with the same configuration). The training examples,
with a refinement corpus mixed in, come from :mod:`janus.training.data`.

Resume is exact: a checkpoint holds the adapter, the optimiser and scheduler state, the RNG
states and the data position (:mod:`janus.training.checkpoints`), all in safetensors + JSON
(nothing unpickled), so a run killed mid-way and resumed ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file

from janus.base_model import locate_base_model
from janus.checkpoint import STATE_FILE, resize_for_tokenizer, save_hyperlora_adapter
from janus.decoding import ActionConstraint
from janus.examples import (
    REQUIRED_COLUMNS,
    DecisionStepDataset,
    add_special_tokens,
    resolve_decision_steps,
)
from janus.hyperlora import (
    HyperLoRAConfig,
    InjectionSummary,
    inject_hyperlora,
    load_adapter_state_dict,
)
from janus.prompt import PROMPT_FORMAT_VERSION, SPECIAL_TOKENS
from janus.schema import rho_is_valid
from janus.training.checkpoints import CheckpointCallback, resume_latest
from janus.training.data import training_batches
from janus.training.distributed import DistInfo, barrier, init_distributed, wrap_model
from janus.training.loop import (
    Callback,
    LoopSettings,
    autocast,
    jsonl_logger,
    periodic,
    run_loop,
)
from janus.training.losses import TargetTokenObjective
from janus.training.schedules import warmup_decay_schedule
from janus.training.state import TrainState, seed_everything
from janus.training.validation import ValidationCallback, evaluate_model

ADAPTER_DIR = "adapter"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "train_config.json"
DATA_FILE = "data.json"
SUMMARY_FILE = "summary.txt"
RESUMABLE_CHANGES = frozenset({"max_steps", "save_every", "eval_every", "keep_last", "log_every"})
"""Options a ``--resume`` may change; any other difference from the saved config is refused."""


@dataclass
class TrainConfig:
    """Every knob of a run. Defaults are GPU-sized; presets adapt them to a CPU."""

    data: str = "prepared"
    base_model: str = "janus-tiny"
    out: str = "runs/janus"
    adapter: HyperLoRAConfig = field(default_factory=HyperLoRAConfig)
    # optimisation
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 100
    max_steps: int = 3000
    batch_size: int = 16
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    lambda_sep: float = 0.1
    sep_margin: float = 0.25
    # data
    k: int = 8
    include_failures: bool = False
    max_length: int = 512
    seed: int = 0
    # continued training (``janus refine``): start from an adapter, mix in a second corpus
    init_adapter: str | None = None
    extra_data: str | None = None
    extra_fraction: float = 0.5
    extra_decider: str | None = "janus"
    extra_include_failures: bool = True
    # runtime
    bf16: bool = False
    gradient_checkpointing: bool = False
    save_every: int = 500
    eval_every: int = 250
    keep_last: int = 2
    eval_examples: int = 512
    eval_decode_examples: int = 128
    log_every: int = 10

    def to_json(self) -> dict[str, Any]:
        """JSON-native values, the adapter's nested under ``"adapter"`` (train_config.json)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**values, "adapter": self.adapter.to_dict()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        adapter = values.get("adapter", {})
        if not isinstance(adapter, HyperLoRAConfig):
            adapter = HyperLoRAConfig.from_dict(adapter)
        return cls(**{**values, "adapter": adapter})


ADAPTER_OPTIONS = frozenset(f.name for f in dataclasses.fields(HyperLoRAConfig))
"""Flat option names (``rank``, ``alpha``, ...) that :func:`nest_options` moves into ``adapter``."""


def nest_options(options: dict[str, Any]) -> dict[str, Any]:
    """Flat options as the command line gives them → :meth:`TrainConfig.to_json`'s shape.

    ``{"rank": 8, "lr": 1e-3}`` becomes ``{"adapter": {"rank": 8}, "lr": 1e-3}``; a nested
    ``"adapter"`` mapping is merged with the flat adapter keys.
    """
    nested = {k: v for k, v in options.items() if k not in ADAPTER_OPTIONS}
    adapter = {k: v for k, v in options.items() if k in ADAPTER_OPTIONS}
    if adapter or "adapter" in options:
        nested["adapter"] = {**dict(options.get("adapter") or {}), **adapter}
    return nested


PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on 2 CPU cores with janus-tiny: small rank, big learning rate, short schedule.
    # 600 steps measured better than 1200 (held-out slope 0.75 vs 0.54; benchmarks/RESULTS.md).
    "cpu-demo": {
        "adapter": {"rank": 8, "alpha": 16.0, "hyper_hidden": 32, "dropout": 0.0},
        "lr": 3e-3,
        "warmup": 30,
        "max_steps": 600,
        "batch_size": 32,
        "save_every": 200,
        "eval_every": 200,
        "eval_examples": 256,
        "eval_decode_examples": 64,
    },
    # About an hour on 2 CPU cores with SmolLM2-135M (~140-token prompts): bf16 (a frozen bf16
    # base with autocast trains 2x faster than fp32 on a CPU with AVX512-BF16), a short
    # schedule at a LoRA-sized learning rate, light validation. See benchmarks/RESULTS.md.
    "cpu-real": {
        "adapter": {"rank": 8, "alpha": 16.0, "hyper_hidden": 32, "dropout": 0.0},
        "lr": 2e-3,
        "warmup": 40,
        "max_steps": 800,
        "batch_size": 16,
        "bf16": True,
        "save_every": 200,
        "eval_every": 200,
        "eval_examples": 128,
        "eval_decode_examples": 32,
    },
    # The specification's sizes, for a GPU and a real base model.
    "gpu": {},
}


def apply_preset(config: TrainConfig, preset: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Preset values first, explicit options last (an option given by the user always wins).

    ``overrides`` may be flat (``{"rank": 3}``, as the command line gives them): adapter
    fields are routed into ``config.adapter`` by :func:`nest_options`. ``None`` means unset.
    """
    values = config.to_json()
    layers = []
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        layers.append(PRESETS[preset])
    layers.append(nest_options({k: v for k, v in overrides.items() if v is not None}))
    for layer in layers:
        adapter = {**values["adapter"], **layer.get("adapter", {})}
        values.update(layer)
        values["adapter"] = adapter
    return TrainConfig.from_json(values)


# ------------------------------------------------------------------------- input checks


def validate_inputs(config: TrainConfig) -> Path:
    """Everything cheap that can be wrong, checked before any model is loaded."""
    for name in ("max_steps", "batch_size", "grad_accum", "save_every", "eval_every"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if config.warmup < 0:
        raise ValueError(f"--warmup must be at least 0, got {config.warmup}")
    if config.keep_last < 1:
        raise ValueError("--keep-last must be at least 1")
    if not (config.lr > 0 and math.isfinite(config.lr)):
        raise ValueError(f"--lr must be a positive number, got {config.lr}")
    if config.extra_data is not None:
        resolve_decision_steps(config.extra_data)
        if not 0.0 < config.extra_fraction < 1.0:
            raise ValueError(f"--extra-fraction must be in (0, 1), got {config.extra_fraction}")
    if config.init_adapter is not None:
        state_file = Path(config.init_adapter) / STATE_FILE
        if not state_file.is_file():
            raise FileNotFoundError(f"init adapter {config.init_adapter}: no {STATE_FILE} in it")
    path = resolve_decision_steps(config.data)
    names = set(pq.read_schema(path).names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    table = pq.read_table(path, columns=["rho_train", "split"])
    splits = set(table.column("split").to_pylist())
    for split in ("train", "val"):
        if split not in splits:
            raise ValueError(
                f"{path}: split {split!r} has no rows (splits present: {sorted(splits)})"
            )
    rho = table.column("rho_train").to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~rho_is_valid(rho)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{path}: row {row}, field 'rho_train': {rho[row]!r} is not in [0, 1] nor -1.0 "
            f"({int(bad.sum())} bad rows)"
        )
    locate_base_model(config.base_model)
    return path


# --------------------------------------------------------------------------------- model


def build_model(config: TrainConfig, device: torch.device):
    """Tokenizer + frozen base with the special tokens and HyperLoRA adapters injected."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load a tokenizer from {config.base_model}: {error}") from None
    if tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer of {config.base_model} has no EOS token; set one first")
    token_ids = add_special_tokens(tokenizer)
    # With bf16 the frozen base is stored in bf16 too (the adapters stay fp32): autocast would
    # otherwise cast every base weight again on every forward and backward.
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=dtype)
    resize_for_tokenizer(model, tokenizer)
    summary = inject_hyperlora(model, config.adapter, fuse=True, trainable_token_ids=token_ids)
    if config.gradient_checkpointing:
        # transformers 5 renamed the method and its keyword; keep working with 4.x too.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.to(device)
    return model, tokenizer, summary


def _base_reference(config: TrainConfig) -> str:
    """A local base is recorded by absolute path, so the adapter loads from any directory."""
    return str(locate_base_model(config.base_model))


def _extra_config(config: TrainConfig) -> dict[str, Any]:
    return {
        "special_tokens": list(SPECIAL_TOKENS),
        "prompt_format_version": PROMPT_FORMAT_VERSION,
        "k": config.k,
        "train_config": config.to_json(),
    }


def save_adapter(model: Any, tokenizer: Any, config: TrainConfig, directory: Path) -> None:
    """The adapter directory of a run (final or in a checkpoint), with what made it."""
    save_hyperlora_adapter(
        model,
        tokenizer,
        directory,
        base_model_name_or_path=_base_reference(config),
        extra_config=_extra_config(config),
    )


# ------------------------------------------------------------------------------- the run


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    run_dir: Path
    adapter_dir: Path
    steps: int
    final_metrics: dict[str, Any]
    best_step: int | None


def check_run_directory(run_dir: Path, config: TrainConfig, resume: bool) -> None:
    """A new run needs an empty ``--out``; a resumed one the same config (bar a few options)."""
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise FileExistsError(f"{run_dir} is not empty: pass --resume or choose a new --out")
    config_path = run_dir / CONFIG_FILE
    if resume and config_path.is_file():
        saved = json.loads(config_path.read_text())
        now = config.to_json()
        diff = {k for k in saved if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)}
        if diff:
            raise ValueError(f"--resume with a different config: {sorted(diff)} changed")


def start_run_directory(run_dir: Path, config: TrainConfig, row_counts: dict[str, int]) -> None:
    """Create the run directory with what the run is: its config and its data's row counts."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2))
    (run_dir / DATA_FILE).write_text(json.dumps(row_counts, indent=2))


def _loop_settings(config: TrainConfig, progress: bool) -> LoopSettings:
    """What the shared training loop (janus-tiny pretraining runs it too) reads of the config."""
    return LoopSettings(
        max_steps=config.max_steps,
        grad_accum=config.grad_accum,
        max_grad_norm=config.max_grad_norm,
        bf16=config.bf16,
        progress=progress,
    )


def _finish_run(
    model: Any,
    tokenizer: Any,
    config: TrainConfig,
    summary: InjectionSummary,
    run_dir: Path,
    dist: DistInfo,
) -> Path:
    """Write the final adapter and the injection summary (on the main process), then wait:
    the adapter is complete for every process that returns. Returns the adapter's path."""
    adapter_dir = run_dir / ADAPTER_DIR
    if dist.is_main:
        save_adapter(model, tokenizer, config, adapter_dir)
        (run_dir / SUMMARY_FILE).write_text(str(summary) + "\n")
    barrier(dist)
    return adapter_dir


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train a HyperLoRA adapter (see the module docstring). ``callbacks`` run after each
    step's logging, validation and checkpoint (a test stops a run part-way with one)."""
    data_path = validate_inputs(config)
    dist = init_distributed()
    run_dir = Path(config.out)
    if dist.is_main:
        check_run_directory(run_dir, config, resume)
    seed_everything(config.seed)
    model, tokenizer, summary = build_model(config, dist.device)
    if config.init_adapter is not None:
        load_adapter_state_dict(model, load_file(str(Path(config.init_adapter) / STATE_FILE)))
    stream, row_counts = training_batches(config, tokenizer, dist)
    validation = ValidationCallback(
        validator(config, data_path, model, tokenizer), run_dir / METRICS_FILE
    )
    if dist.is_main:  # only once the base and the data have loaded: a failed start leaves nothing
        start_run_directory(run_dir, config, row_counts)
    optimizer, scheduler = optimiser(config, model)
    state = TrainState()
    if resume:
        state = resume_latest(run_dir, optimizer, scheduler, load_adapter(model))
    checkpoints = CheckpointCallback(
        run_dir, optimizer, scheduler, adapter_writer(model, tokenizer, config), config.keep_last
    )
    wrapped = wrap_model(model, dist)
    run_loop(
        model=wrapped,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=stream(state),
        objective=TargetTokenObjective(
            wrapped, dist, routed=model, lambda_sep=config.lambda_sep, sep_margin=config.sep_margin
        ),
        state=state,
        settings=_loop_settings(config, progress),
        dist=dist,
        callbacks=[
            jsonl_logger(run_dir / METRICS_FILE, config.log_every, dist),
            periodic(config.eval_every, validation, dist),
            periodic(config.save_every, checkpoints, dist),
            *callbacks,
        ],
    )
    adapter_dir = _finish_run(model, tokenizer, config, summary, run_dir, dist)
    return TrainResult(run_dir, adapter_dir, state.step, validation.last, state.best_step)


def optimiser(
    config: TrainConfig, model: torch.nn.Module
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over the trainable parameters (the adapter's), and the schedule: a linear
    warm-up over ``warmup`` steps, then a linear decay to a tenth at ``max_steps``."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = warmup_decay_schedule(
        optimizer, warmup=config.warmup, total=config.max_steps, decay="linear"
    )
    return optimizer, scheduler


def validator(config: TrainConfig, data: Path, model: Any, tokenizer: Any) -> Callable[[], dict]:
    """The run's validation: loss and greedy actions on a fixed, seeded sample of val, with
    the numerics the model trains with (bf16 autocast or not)."""
    wanted = max(config.eval_examples, config.eval_decode_examples)
    # A seeded sample of val, drawn before tokenising: only the sample is encoded.
    dataset = DecisionStepDataset(
        data,
        "val",
        tokenizer,
        k=config.k,
        include_failures=config.include_failures,
        select=lambda n: np.random.default_rng(config.seed + 1).permutation(n)[:wanted].tolist(),
    )
    order = list(range(len(dataset)))
    constraint = ActionConstraint(tokenizer, model.get_output_embeddings().weight.shape[0])

    def validate() -> dict[str, Any]:
        with autocast(next(model.parameters()).device, config.bf16):
            return evaluate_model(
                model,
                tokenizer,
                dataset,
                order[: config.eval_examples],
                order[: config.eval_decode_examples],
                config.batch_size,
                constraint,
            )

    return validate


def adapter_writer(model: Any, tokenizer: Any, config: TrainConfig) -> Callable[[Path], None]:
    """What a checkpoint holds besides the trainer state: the adapter directory."""
    return lambda directory: save_adapter(model, tokenizer, config, directory / ADAPTER_DIR)


def load_adapter(model: Any) -> Callable[[Path], None]:
    """Inverse of :func:`adapter_writer`: the checkpoint's adapter weights into ``model``."""
    return lambda directory: load_adapter_state_dict(
        model, load_file(str(directory / ADAPTER_DIR / STATE_FILE))
    )
