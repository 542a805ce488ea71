"""HyperLoRA training on a frozen causal LM: one process or many (``torchrun``), resumable.

Per optimiser step: ``model.current_rho`` takes the batch's ρ (the very values its prompts
show), the loss is the causal LM loss on target tokens only plus ``lambda_sep`` times a bounded
gate-separation term, AdamW updates the adapter (A, B, hypernets, the new tokens' rows) after
gradient accumulation and clipping, and a linear warm-up/decay schedule sets the learning rate.

Two flaws of the research trainer are fixed in :func:`gate_separation_loss`: each pair of
examples is weighted by its own |Δρ| (not a batch mean times a batch mean), and the term is a
hinge, so once two gates are as far apart as their ρ distance asks it stops pushing them to
saturate at 0 and 1.

Resume is exact: a checkpoint holds the adapter, the optimiser and scheduler state, the RNG
states and the data position (epoch, batch), all in safetensors + JSON (nothing unpickled), so
a run killed mid-way and resumed ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as torch_dist
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from janus.atomic import atomic_directory
from janus.base_model import locate_base_model
from janus.checkpoint import resize_for_tokenizer, save_hyperlora_adapter
from janus.decoding import ActionConstraint, accepts_logits_to_keep, constrained_decode
from janus.examples import (
    IGNORE_INDEX,
    REQUIRED_COLUMNS,
    DecisionStepDataset,
    ExampleCollator,
    LengthBucketedBatchSampler,
    add_special_tokens,
    resolve_decision_steps,
)
from janus.hyperlora import (
    HyperLoRAConfig,
    adapter_parameters,
    hyperlora_gates,
    inject_hyperlora,
    load_adapter_state_dict,
    rho_context,
    set_rho,
)
from janus.prompt import PROMPT_FORMAT_VERSION, SPECIAL_TOKENS, parse_action
from janus.schema import rho_is_valid

ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "train_config.json"
BEST_FILE = "best.json"
DATA_FILE = "data.json"
TRAINER_TENSORS = "trainer_state.safetensors"
TRAINER_JSON = "trainer_state.json"


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


# ------------------------------------------------------------------------------------ losses


def gate_separation_loss(gates: torch.Tensor, rho: torch.Tensor, margin: float) -> torch.Tensor:
    """Bounded, pair-weighted push apart of the gates of different ρ.

    For every pair (i, j) of distinct non-impasse ρ: the RMS distance between the gate vectors
    (in [0, 1] for sigmoid gates) should reach ``margin · |Δρ|``; a shortfall costs
    ``|Δρ| · (margin · |Δρ| − distance)``, averaged with weights |Δρ|. Pairs already far enough
    cost nothing, so the term is bounded by ``margin`` and never rewards saturation.
    ``gates`` holds one row per entry of ``rho``.
    """
    keep = rho >= 0
    g = gates[keep]
    r = rho[keep].to(g.dtype)
    if g.shape[0] < 2:
        return gates.sum() * 0.0
    diff = g[:, None, :] - g[None, :, :]
    distance = (diff.pow(2).mean(-1) + 1e-12).sqrt()
    delta = (r[:, None] - r[None, :]).abs()
    upper = torch.triu(torch.ones_like(delta, dtype=torch.bool), diagonal=1)
    weight = delta * upper
    shortfall = torch.relu(margin * delta - distance)
    return (weight * shortfall).sum() / weight.sum().clamp_min(1e-12)


def separation_term(model: torch.nn.Module, rho: torch.Tensor, margin: float) -> torch.Tensor:
    """Gate separation over the distinct ρ of a batch (gates depend on ρ alone)."""
    unique = torch.unique(rho[rho >= 0].detach().float().cpu())
    if unique.numel() < 2:
        return next(iter(adapter_parameters(model).values())).sum() * 0.0
    device = next(model.parameters()).device
    gates = hyperlora_gates(model, unique.to(device))
    return gate_separation_loss(gates, unique.to(device), margin)


# ----------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    """Where this process sits: rank 0 alone saves, logs and evaluates."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available()
    if world <= 1:
        return DistInfo(device=torch.device("cuda" if use_cuda else "cpu"))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


# ---------------------------------------------------------------------------- validation


def validate_inputs(config: TrainConfig) -> Path:
    """Everything cheap that can be wrong, checked before any model is loaded."""
    for name in ("max_steps", "batch_size", "grad_accum", "save_every", "eval_every"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if config.keep_last < 1:
        raise ValueError("--keep-last must be at least 1")
    if not (config.lr > 0 and math.isfinite(config.lr)):
        raise ValueError(f"--lr must be a positive number, got {config.lr}")
    if config.extra_data is not None:
        resolve_decision_steps(config.extra_data)
        if not 0.0 < config.extra_fraction < 1.0:
            raise ValueError(f"--extra-fraction must be in (0, 1), got {config.extra_fraction}")
    if config.init_adapter is not None:
        from janus.checkpoint import STATE_FILE

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


# ------------------------------------------------------------------------- trainer state


def _python_rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_json(data: list) -> tuple:
    return (data[0], tuple(data[1]), data[2])


def save_trainer_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: dict[str, Any],
) -> None:
    """Optimiser, scheduler, RNG and data position as safetensors + JSON (no pickle)."""
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    for index, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
    meta = {
        "param_groups": opt["param_groups"],
        "scheduler": scheduler.state_dict(),
        "rng_python": _python_rng_to_json(random.getstate()),
        "progress": progress,
    }
    save_file(tensors, str(directory / TRAINER_TENSORS))
    (directory / TRAINER_JSON).write_text(json.dumps(meta, indent=1))


def load_trainer_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Inverse of :func:`save_trainer_state`; returns the saved progress record."""
    tensors = load_file(str(directory / TRAINER_TENSORS))
    meta = json.loads((directory / TRAINER_JSON).read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    random.setstate(_python_rng_from_json(meta["rng_python"]))
    return meta["progress"]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run (temp dirs of a crashed save are ignored)."""
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if (p / TRAINER_JSON).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


# -------------------------------------------------------------------------------- helpers


def _lr_lambda(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        remaining = max(total - warmup, 1)
        return max(0.0, 1.0 - (step - warmup) / remaining) * 0.9 + 0.1

    return factor


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rho_bucket(rho: float) -> str:
    if rho < 0:
        return "impasse"
    tenth = min(int(rho * 10), 9)
    return f"{tenth / 10:.1f}-{(tenth + 1) / 10:.1f}"


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    run_dir: Path
    adapter_dir: Path
    steps: int
    final_metrics: dict[str, Any]
    best_step: int | None


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


# ------------------------------------------------------------------------------ evaluation


def _forward_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed target-token loss per example and target-token count per example.

    Only the positions from the earliest target token on go through the LM head
    (``logits_to_keep``): targets are the last ~10 of ~140 tokens, and on SmolLM2 the
    49k-word head costs about a fifth of the forward pass when applied everywhere.
    """
    labels = batch["labels"]
    width = labels.shape[1]
    targeted = (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero()
    start = int(targeted[0]) if targeted.numel() else width - 1  # first logit that is scored
    keep = width - start
    kwargs = {"logits_to_keep": keep} if accepts_logits_to_keep(model) else {}
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs
    ).logits
    # logits[:, j] is the prediction made at position start + j, for the token after it.
    logits = logits[:, -keep:][:, :-1].float()
    shifted = labels[:, start + 1 :]
    token_loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        shifted.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shifted.shape)
    counts = (shifted != IGNORE_INDEX).sum(-1)
    return token_loss.sum(-1), counts


@torch.no_grad()
def evaluate_model(
    model,
    tokenizer,
    dataset: DecisionStepDataset,
    indices: list[int],
    decode_indices: list[int],
    batch_size: int,
    device: torch.device,
    constraint: ActionConstraint | None,
) -> dict[str, Any]:
    """Validation loss (overall and per ρ bucket, per example) plus greedy action metrics."""
    was_training = model.training
    model.eval()
    collate = ExampleCollator(tokenizer.pad_token_id)
    total_loss = 0.0
    total_tokens = 0
    bucket_sum: dict[str, float] = {}
    bucket_n: dict[str, int] = {}
    ordered = sorted(indices, key=lambda i: len(dataset[i]))
    for start in range(0, len(ordered), batch_size):
        examples = [dataset[i] for i in ordered[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(examples).items()}
        with rho_context(model, batch["rho"]):
            loss_sum, counts = _forward_loss(model, batch)
        total_loss += float(loss_sum.sum())
        total_tokens += int(counts.sum())
        per_example = (loss_sum / counts.clamp_min(1)).tolist()
        for example, value in zip(examples, per_example, strict=True):
            bucket = _rho_bucket(example.rho)
            bucket_sum[bucket] = bucket_sum.get(bucket, 0.0) + value
            bucket_n[bucket] = bucket_n.get(bucket, 0) + 1
    metrics: dict[str, Any] = {
        "val_loss": total_loss / max(total_tokens, 1),
        "val_loss_by_rho": {b: bucket_sum[b] / bucket_n[b] for b in sorted(bucket_sum)},
    }
    if constraint is not None and decode_indices:
        metrics.update(
            _action_metrics(model, tokenizer, dataset, decode_indices, batch_size, constraint)
        )
    model.train(was_training)
    return metrics


def _action_metrics(model, tokenizer, dataset, indices, batch_size, constraint) -> dict[str, Any]:
    correct = 0
    errors: list[float] = []
    for start in range(0, len(indices), batch_size):
        chunk = [dataset[i] for i in indices[start : start + batch_size]]
        prompts = [e.prompt_ids.tolist() for e in chunk]
        rhos = torch.tensor([e.rho for e in chunk], dtype=torch.float32)
        outputs = constrained_decode(
            model,
            constraint,
            prompts,
            pad_id=tokenizer.pad_token_id,
            rho_scope=rho_context(model, rhos),
        )
        for example, text in zip(chunk, outputs, strict=True):
            target_ids = example.input_ids[example.prompt_length :].tolist()
            target = parse_action(tokenizer.decode(target_ids, skip_special_tokens=True))
            predicted = parse_action(text)
            correct += predicted.kind == target.kind
            if predicted.kind == target.kind == "OFFER":
                errors.append(abs(predicted.price_norm - target.price_norm))
    return {
        "action_accuracy": correct / len(indices),
        "price_mae": float(np.mean(errors)) if errors else None,
        "decoded": len(indices),
    }


# ------------------------------------------------------------------------------ training


def _batches(
    sampler: LengthBucketedBatchSampler, epoch: int, start: int
) -> Iterator[tuple[int, int, list[int]]]:
    """(epoch, batch index, this rank's indices), forever, starting at a saved position."""
    while True:
        sampler.set_epoch(epoch, start)
        for offset, indices in enumerate(sampler):
            yield epoch, start + offset, indices
        epoch, start = epoch + 1, 0


def _filter_long(dataset: DecisionStepDataset, max_length: int) -> list[int]:
    keep = [i for i, n in enumerate(dataset.lengths) if n <= max_length]
    if not keep:
        raise ValueError(f"every example of split {dataset.split!r} exceeds --max-length")
    return keep


def training_view(
    config: TrainConfig, tokenizer: Any
) -> tuple[torch.utils.data.Dataset, list[int], dict[str, int]]:
    """The training examples, their lengths (for the bucketed sampler) and row counts.

    With ``extra_data`` (a refinement corpus), the epoch holds all of its rows decided by
    ``extra_decider`` plus a seeded sample of the scripted rows sized so that the extra rows
    make ``extra_fraction`` of the epoch (all scripted rows when there are too few).
    """
    scripted = DecisionStepDataset(
        config.data, "train", tokenizer, k=config.k, include_failures=config.include_failures
    )
    keep = _filter_long(scripted, config.max_length)
    counts = {"scripted_rows": len(keep), "extra_rows": 0}
    if config.extra_data is None:
        lengths = [scripted.lengths[i] for i in keep]
        return torch.utils.data.Subset(scripted, keep), lengths, counts
    extra = DecisionStepDataset(
        config.extra_data,
        "train",
        tokenizer,
        k=config.k,
        include_failures=config.extra_include_failures,
        decider=config.extra_decider,
    )
    extra_keep = _filter_long(extra, config.max_length)
    f = config.extra_fraction
    wanted = round(len(extra_keep) * (1 - f) / f)
    if wanted < len(keep):
        rng = np.random.default_rng(config.seed + 2)
        keep = sorted(rng.choice(np.asarray(keep), size=wanted, replace=False).tolist())
    counts = {"scripted_rows": len(keep), "extra_rows": len(extra_keep)}
    lengths = [scripted.lengths[i] for i in keep] + [extra.lengths[i] for i in extra_keep]
    view = torch.utils.data.ConcatDataset(
        [torch.utils.data.Subset(scripted, keep), torch.utils.data.Subset(extra, extra_keep)]
    )
    return view, lengths, counts


def train(  # noqa: C901 - splitting the loop into named parts is issue 11 item 3 (open)
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a HyperLoRA adapter; see the module docstring. ``stop_after`` simulates a crash
    after that many optimiser steps (tests use it to check that resume is exact)."""
    data_path = validate_inputs(config)
    dist = init_distributed()
    run_dir = Path(config.out)
    config_path = run_dir / CONFIG_FILE
    if dist.is_main:
        if run_dir.exists() and any(run_dir.iterdir()) and not resume:
            raise FileExistsError(f"{run_dir} is not empty: pass --resume or choose a new --out")
        if resume and config_path.is_file():
            saved = json.loads(config_path.read_text())
            ignore = {"max_steps", "save_every", "eval_every", "keep_last", "log_every"}
            diff = {k for k in saved if k not in ignore and saved.get(k) != config.to_json().get(k)}
            if diff:
                raise ValueError(f"--resume with a different config: {sorted(diff)} changed")

    _seed_everything(config.seed)
    model, tokenizer, summary = build_model(config, dist.device)
    if config.init_adapter is not None:
        from janus.checkpoint import STATE_FILE

        load_adapter_state_dict(model, load_file(str(Path(config.init_adapter) / STATE_FILE)))
    train_view, train_lengths, row_counts = training_view(config, tokenizer)
    val_set = DecisionStepDataset(
        data_path, "val", tokenizer, k=config.k, include_failures=config.include_failures
    )
    sampler = LengthBucketedBatchSampler(
        train_lengths,
        config.batch_size,
        seed=config.seed,
        num_replicas=dist.world_size,
        rank=dist.rank,
    )
    eval_rng = np.random.default_rng(config.seed + 1)
    val_order = eval_rng.permutation(len(val_set)).tolist()
    val_indices = val_order[: config.eval_examples]
    decode_indices = val_order[: config.eval_decode_examples]
    constraint = ActionConstraint(tokenizer, model.get_output_embeddings().weight.shape[0])
    if dist.is_main:
        # Written only once the base and the data have loaded: a failed start leaves nothing.
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path.write_text(json.dumps(config.to_json(), indent=2))
        (run_dir / DATA_FILE).write_text(json.dumps(row_counts, indent=2))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config.warmup, config.max_steps)
    )
    state = {"step": 0, "epoch": 0, "batch": 0, "best_step": None, "best_val_loss": None}
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        from janus.checkpoint import STATE_FILE

        load_adapter_state_dict(model, load_file(str(checkpoint / ADAPTER_DIR / STATE_FILE)))
        state.update(load_trainer_state(checkpoint, optimizer, scheduler))

    wrapped = model
    if dist.enabled:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None
        )
    collate = ExampleCollator(tokenizer.pad_token_id)
    autocast = (
        torch.autocast(device_type=dist.device.type, dtype=torch.bfloat16)
        if config.bf16
        else contextlib.nullcontext()
    )
    batches = _batches(sampler, state["epoch"], state["batch"])
    metrics_path = run_dir / METRICS_FILE
    bar = tqdm(
        total=config.max_steps,
        initial=state["step"],
        desc="train",
        disable=not (progress and dist.is_main),
        dynamic_ncols=True,
    )
    model.train()
    tokens_seen = 0
    window_start = time.perf_counter()
    last_metrics: dict[str, Any] = {}
    while state["step"] < config.max_steps:
        window = [next(batches) for _ in range(config.grad_accum)]
        micro = [collate([train_view[i] for i in indices]) for _, _, indices in window]
        local_tokens = sum(int((m["labels"][:, 1:] != IGNORE_INDEX).sum()) for m in micro)
        global_tokens = torch.tensor(float(local_tokens))
        all_rho = torch.cat([m["rho"] for m in micro])
        if dist.enabled:
            torch_dist.all_reduce(global_tokens)
            gathered = [torch.empty_like(all_rho) for _ in range(dist.world_size)]
            torch_dist.all_gather(gathered, all_rho)
            all_rho = torch.cat(gathered)
        lm_total = 0.0
        sep_value = 0.0
        for index, batch in enumerate(micro):
            batch = {k: v.to(dist.device) for k, v in batch.items()}
            set_rho(model, batch["rho"])
            last = index == len(micro) - 1
            sync = contextlib.nullcontext() if (last or not dist.enabled) else wrapped.no_sync()
            with sync, autocast:
                loss_sum, _ = _forward_loss(wrapped, batch)
                # Σ token losses / global token count, times world size because DDP averages.
                loss = loss_sum.sum() / global_tokens.item() * dist.world_size
                if config.lambda_sep > 0 and last:
                    sep = separation_term(model, all_rho, config.sep_margin)
                    loss = loss + config.lambda_sep * sep
                    sep_value = sep.item()
            loss.backward()
            lm_total += loss_sum.detach().sum().item() / global_tokens.item()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["epoch"], state["batch"] = window[-1][0], window[-1][1] + 1
        tokens_seen += sum(int(m["attention_mask"].sum()) for m in micro) * dist.world_size
        elapsed = time.perf_counter() - window_start
        if dist.enabled:
            lm_tensor = torch.tensor(lm_total)
            torch_dist.all_reduce(lm_tensor)
            lm_total = float(lm_tensor)
        bar.update(1)
        bar.set_postfix(
            loss=f"{lm_total:.4f}",
            lr=f"{scheduler.get_last_lr()[0]:.2e}",
            tok_s=f"{tokens_seen / max(elapsed, 1e-9):.0f}",
        )
        step = state["step"]
        if dist.is_main and (step % config.log_every == 0 or step == config.max_steps):
            _append_jsonl(
                metrics_path,
                {
                    "step": step,
                    "train_loss": lm_total,
                    "sep_loss": sep_value,
                    "lr": scheduler.get_last_lr()[0],
                    "tokens_per_s": tokens_seen / max(elapsed, 1e-9),
                },
            )
        if step % config.eval_every == 0 or step == config.max_steps:
            if dist.is_main:
                with autocast:  # validate with the numerics the model trains with
                    last_metrics = evaluate_model(
                        model,
                        tokenizer,
                        val_set,
                        val_indices,
                        decode_indices,
                        config.batch_size,
                        dist.device,
                        constraint,
                    )
                last_metrics["step"] = step
                _append_jsonl(metrics_path, last_metrics)
                best = state["best_val_loss"]
                if best is None or last_metrics["val_loss"] < best:
                    state["best_val_loss"] = last_metrics["val_loss"]
                    state["best_step"] = step
            if dist.enabled:
                torch_dist.barrier()
        if step % config.save_every == 0 or step == config.max_steps:
            if dist.is_main:
                _save_checkpoint(model, tokenizer, optimizer, scheduler, config, run_dir, state)
            if dist.enabled:
                torch_dist.barrier()
        if stop_after is not None and step >= stop_after:
            bar.close()
            raise KeyboardInterrupt(f"stopped after step {step} (stop_after)")
    bar.close()
    adapter_dir = run_dir / ADAPTER_DIR
    if dist.is_main:
        save_hyperlora_adapter(
            model,
            tokenizer,
            adapter_dir,
            base_model_name_or_path=_base_reference(config),
            extra_config=_extra_config(config),
        )
        (run_dir / "summary.txt").write_text(str(summary) + "\n")
    if dist.enabled:
        torch_dist.barrier()
    return TrainResult(run_dir, adapter_dir, state["step"], last_metrics, state["best_step"])


def _save_checkpoint(model, tokenizer, optimizer, scheduler, config, run_dir, state) -> None:
    """Atomically write ``checkpoints/step-N`` and prune to the last K (the best is kept)."""
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"step-{state['step']:07d}"

    def write(tmp: Path) -> None:
        save_hyperlora_adapter(
            model,
            tokenizer,
            tmp / ADAPTER_DIR,
            base_model_name_or_path=_base_reference(config),
            extra_config=_extra_config(config),
        )
        save_trainer_state(tmp, optimizer, scheduler, dict(state))

    atomic_directory(
        target,
        write,
        replaceable=lambda path: (path / TRAINER_JSON).is_file(),
        what="checkpoint",
    )
    if state["best_step"] is not None:
        (run_dir / BEST_FILE).write_text(
            json.dumps({"step": state["best_step"], "val_loss": state["best_val_loss"]})
        )
    done = sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    best_name = f"step-{state['best_step']:07d}" if state["best_step"] is not None else None
    keep = {p.name for p in done[-config.keep_last :]} | ({best_name} if best_name else set())
    for path in done:
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
