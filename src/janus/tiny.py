"""janus-tiny: the offline default base, built and pretrained locally.

No model hub is reachable offline, and a frozen *random* transformer is a poor base for
LoRA (there is nothing for a low-rank update to steer). janus-tiny stands in for "a
pretrained LLM that knows the format but not the dial": a small Llama-architecture model with
a locally built tokenizer, pretrained on the prepared corpus with the ρ line made
uninformative. It is then frozen and HyperLoRA learns the dial, as it would on Qwen or Llama.

- :func:`~janus.tiny_tokenizer.build_tokenizer` (in :mod:`janus.tiny_tokenizer`): a
  byte-level BPE trained deterministically on a fixed synthetic corpus of canonical prompts.
- :data:`PRESETS`: ``tiny`` (≈1M parameters, tests and the CPU demo), ``small`` (≈10M).
- :func:`pretrain_tiny_base`: short, deterministic, cached pretraining → a normal model
  directory that ``AutoModelForCausalLM`` / ``AutoTokenizer`` load.

Why ρ-blind: the base must learn the prompt format and the *average* policy of the corpus,
but not the dial — learning the dial is HyperLoRA's job, and a base that already reads ρ
would leave it nothing to show. So the ``<RHO>`` line of every example shows a ρ drawn at
random per example from a generator seeded with the pretraining seed, independent of the
outcome (``rho_mode="blind"``; −1.0 / ``<RHO_FAIL>`` with probability 0.1, else uniform on
{0.00, …, 1.00}). A random value rather than no value, so that the base sees the same kind of
``<RHO>`` line that HyperLoRA training later shows it. Impasse rows are included (their ρ
text is just as random): they are valid examples of the average policy.

Pretraining is full-parameter causal-LM training with the loop HyperLoRA training uses
(:mod:`janus.training`): loss on target tokens (and EOS) only, AdamW (β₂ = 0.95, weight
decay 0.01), linear warm-up then cosine decay to 10 %, gradient clipping at 1.0.

Cached: if the output directory already holds a base made with the same recipe (preset,
steps, seed, data fingerprint, prompt format, janus version, …) it is returned untouched; a
different recipe is an error unless ``overwrite=True`` (which always retrains). A directory
that is neither empty nor a janus-tiny base is never replaced, ``overwrite`` or not. The
directory is written atomically (temporary directory + rename) and holds the model, the
tokenizer (special tokens included) and ``janus_base.json`` (recipe and results).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

import janus
from janus.atomic import atomic_directory
from janus.examples import (
    DecisionStepDataset,
    ExampleCollator,
    LengthBucketedBatchSampler,
    add_special_tokens,
    resolve_decision_steps,
)
from janus.prompt import DEFAULT_K, PROMPT_FORMAT_VERSION
from janus.runtime import torch_threads
from janus.tiny_tokenizer import MAX_POSITIONS, build_tokenizer, tokenizer_fingerprint
from janus.training.distributed import DistInfo
from janus.training.loop import LoopSettings, StepReport, batch_stream, run_loop
from janus.training.losses import TargetTokenObjective
from janus.training.schedules import warmup_decay_schedule
from janus.training.state import TrainState
from janus.training.validation import mean_token_loss

logger = logging.getLogger(__name__)

BASE_INFO_FILE = "janus_base.json"
BASE_INFO_FORMAT = 1


# ------------------------------------------------------------------------------ presets


@dataclass(frozen=True)
class TinyPreset:
    """A janus-tiny size and the pretraining defaults that suit it."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_steps: int
    batch_size: int
    lr: float

    def llama_config(self, tokenizer: Any) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_heads,
            max_position_embeddings=MAX_POSITIONS,
            tie_word_embeddings=True,
            rms_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )


PRESETS: dict[str, TinyPreset] = {
    "tiny": TinyPreset("tiny", 128, 4, 4, 384, max_steps=600, batch_size=16, lr=3e-3),
    "small": TinyPreset("small", 256, 10, 8, 1024, max_steps=1500, batch_size=16, lr=1e-3),
}


def get_preset(name: str) -> TinyPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown janus-tiny preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]


def build_model(preset: str | TinyPreset, tokenizer: Any, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised janus-tiny model; initialisation seeded without touching global RNG."""
    spec = get_preset(preset) if isinstance(preset, str) else preset
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(spec.llama_config(tokenizer))
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


# --------------------------------------------------------------------------- pretraining


def data_fingerprint(prepared_dir: str | Path) -> dict[str, Any]:
    """Identify the prepared corpus cheaply: file size and sha256 of its first MiB."""
    path = resolve_decision_steps(prepared_dir)
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    return {
        "file": path.name,
        "size": path.stat().st_size,
        "sha256_first_mib": hashlib.sha256(head).hexdigest(),
    }


def read_base_info(path: str | Path) -> dict[str, Any] | None:
    """The ``janus_base.json`` of a base directory, or None if there is none."""
    info = Path(path) / BASE_INFO_FILE
    if not info.is_file():
        return None
    return json.loads(info.read_text())


def pretrain_tiny_base(
    prepared_dir: str | Path,
    out_dir: str | Path,
    preset: str | TinyPreset = "tiny",
    *,
    max_steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    k: int = DEFAULT_K,
    warmup_fraction: float = 0.05,
    weight_decay: float = 0.01,
    eval_examples: int = 256,
    progress: bool = True,
    overwrite: bool = False,
    device: str = "cpu",
    num_threads: int | None = None,
) -> Path:
    """Pretrain janus-tiny on the prepared corpus's train split with ρ hidden; return its dir.

    ρ-blind, cached and atomic (see the module docstring); deterministic on CPU for a seed.
    ``preset`` is a name in :data:`PRESETS` or a :class:`TinyPreset` (tests use a micro one);
    ``None`` for ``max_steps``/``batch_size``/``lr`` takes the preset's default. ``device``
    may name an accelerator (bit-exact determinism is only promised on CPU; the device is not
    part of the recipe). ``num_threads`` sets torch's CPU threads for the run (restored
    afterwards; on a busy 2-core machine 1 thread is far faster than 2 for this model size).
    """
    out_dir = Path(out_dir)
    spec = get_preset(preset) if isinstance(preset, str) else preset
    recipe = Recipe(
        spec,
        max_steps=spec.max_steps if max_steps is None else max_steps,
        batch_size=spec.batch_size if batch_size is None else batch_size,
        lr=spec.lr if lr is None else lr,
        warmup_fraction=warmup_fraction,
        weight_decay=weight_decay,
        seed=seed,
        k=k,
    )
    tokenizer = build_tokenizer()
    record = recipe.record(tokenizer, prepared_dir)
    if _cached(out_dir, record, overwrite, progress):
        return out_dir
    train, eval_set = _datasets(prepared_dir, tokenizer, recipe, eval_examples)
    model = build_model(spec, tokenizer, seed).to(device)
    with torch_threads(num_threads):
        results = _pretrain_and_evaluate(model, tokenizer, train, eval_set, recipe, progress)
    results.update(
        device=str(device),
        torch_threads=torch.get_num_threads() if num_threads is None else num_threads,
    )
    info = {
        "format": BASE_INFO_FORMAT,
        "kind": "janus-tiny",
        "recipe": record,
        "results": results,
        "special_token_ids": add_special_tokens(tokenizer),
    }
    _save_atomically(model.to("cpu"), tokenizer, info, out_dir)
    return out_dir


@dataclass(frozen=True)
class Recipe:
    """What a janus-tiny base is made with, besides the data (checked on creation)."""

    spec: TinyPreset
    max_steps: int
    batch_size: int
    lr: float
    warmup_fraction: float
    weight_decay: float
    seed: int
    k: int

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(
                f"need max_steps >= 1, batch_size >= 1, lr > 0; "
                f"got {self.max_steps}, {self.batch_size}, {self.lr}"
            )

    def record(self, tokenizer: Any, prepared_dir: str | Path) -> dict[str, Any]:
        """The recipe as ``janus_base.json`` records it, and as a cached base is matched."""
        values = asdict(self)
        recipe = {
            "preset": values.pop("spec"),
            **values,
            "rho_mode": "blind",
            "prompt_format_version": PROMPT_FORMAT_VERSION,
            "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
            "data": data_fingerprint(prepared_dir),
            "janus_version": janus.__version__,
        }
        return json.loads(json.dumps(recipe))  # the form it takes on disk, for comparison


def _cached(out_dir: Path, record: dict[str, Any], overwrite: bool, progress: bool) -> bool:
    """True if ``out_dir`` holds a base of this recipe (reuse it); raises if it holds something
    that may not be replaced (not a base, or a base of another recipe without ``overwrite``)."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir() or not _is_replaceable(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a janus-tiny base; not touching it")
    info = read_base_info(out_dir)
    if info is None or overwrite:
        return False
    recorded = info.get("recipe", {})
    if recorded == record:
        _say(f"janus-tiny base in {out_dir} matches this recipe: reusing it", progress)
        return True
    differing = sorted(
        k for k in record.keys() | recorded.keys() if record.get(k) != recorded.get(k)
    )
    raise FileExistsError(
        f"{out_dir} holds a janus-tiny base made with a different recipe "
        f"(differs in: {', '.join(differing)}); pass overwrite=True to retrain"
    )


def _datasets(
    prepared_dir: str | Path, tokenizer: Any, recipe: Recipe, eval_examples: int
) -> tuple[DecisionStepDataset, EvalSet]:
    """The ρ-blind train split (impasses included) and the evaluation examples."""
    train = DecisionStepDataset(
        prepared_dir,
        "train",
        tokenizer,
        k=recipe.k,
        include_failures=True,
        rho_mode="blind",
        seed=recipe.seed,
    )
    eval_set = _eval_dataset(prepared_dir, tokenizer, recipe.k, recipe.seed, eval_examples, train)
    too_long = max(train.lengths)
    if too_long > MAX_POSITIONS:
        raise ValueError(f"an example has {too_long} tokens, over janus-tiny's {MAX_POSITIONS}")
    return train, eval_set


@dataclass(frozen=True)
class EvalSet:
    """The examples pretraining is evaluated on, and the split they come from."""

    examples: list[Any]
    split: str


def _eval_dataset(
    prepared_dir: str | Path,
    tokenizer: Any,
    k: int,
    seed: int,
    limit: int,
    train: DecisionStepDataset,
) -> EvalSet:
    """Up to ``limit`` validation examples (ρ-blind too); the train split's head if no val."""
    try:
        val = DecisionStepDataset(
            prepared_dir,
            "val",
            tokenizer,
            k=k,
            include_failures=True,
            rho_mode="blind",
            seed=seed + 1,
            limit=limit,
        )
        return EvalSet(list(val), "val")
    except ValueError:
        return EvalSet(list(train)[:limit], "train")


def _pretrain_and_evaluate(
    model: LlamaForCausalLM,
    tokenizer: Any,
    train: DecisionStepDataset,
    eval_set: EvalSet,
    recipe: Recipe,
    progress: bool,
) -> dict[str, Any]:
    """Evaluate, pretrain, evaluate again; the figures ``janus_base.json`` records."""
    _say(
        f"pretraining janus-tiny ({recipe.spec.name}, {_count_parameters(model) / 1e6:.2f}M "
        f"parameters) on {len(train)} examples for {recipe.max_steps} steps of "
        f"{recipe.batch_size}",
        progress,
    )
    collate = ExampleCollator(tokenizer.pad_token_id)
    eval_initial = evaluate_loss(model, eval_set.examples, collate)
    results = _pretrain(model, train, collate, recipe, progress)
    eval_final = evaluate_loss(model, eval_set.examples, collate)
    results.update(
        eval_split=eval_set.split,
        eval_examples=len(eval_set.examples),
        eval_loss_initial=eval_initial,
        eval_loss_final=eval_final,
        uniform_loss=math.log(len(tokenizer)),
        train_examples=len(train),
        parameters=_count_parameters(model),
    )
    _say(
        f"janus-tiny: {eval_set.split} loss {eval_initial:.3f} → {eval_final:.3f} (uniform "
        f"{results['uniform_loss']:.3f}), {results['tokens_per_second']:.0f} tokens/s",
        progress,
    )
    return results


def _pretrain(
    model: LlamaForCausalLM,
    train: DecisionStepDataset,
    collate: ExampleCollator,
    recipe: Recipe,
    progress: bool,
) -> dict[str, Any]:
    """Full-parameter training with the shared loop (:mod:`janus.training.loop`); returns
    loss and speed figures. One process: janus-tiny is small enough for one device."""
    batch_size = min(recipe.batch_size, len(train))
    sampler = LengthBucketedBatchSampler(train.lengths, batch_size, seed=recipe.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, betas=(0.9, 0.95), weight_decay=recipe.weight_decay
    )
    total = recipe.max_steps
    warmup = max(1, round(recipe.warmup_fraction * total))
    scheduler = warmup_decay_schedule(optimizer, warmup=warmup, total=total, decay="cosine")
    dist = DistInfo(device=next(model.parameters()).device)
    losses: list[float] = []
    tokens: list[int] = []

    def record(state: TrainState, report: StepReport) -> None:
        losses.append(report.metrics["train_loss"])
        tokens.append(report.tokens)

    start = time.perf_counter()
    state = run_loop(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=batch_stream(sampler, lambda ids: collate([train[i] for i in ids])),
        # The LM head on every position: janus-tiny's head is small (512 words), and the
        # kept-logits path would change the float rounding of the tied embedding's gradient,
        # so that bases would no longer be bit-identical to those already built and measured.
        objective=TargetTokenObjective(model, dist, full_logits=True),
        state=TrainState(),
        settings=LoopSettings(total, progress=progress, desc="janus-tiny"),
        dist=dist,
        callbacks=[record],
    )
    model.eval()
    elapsed = time.perf_counter() - start
    tail = losses[-max(1, min(20, len(losses) // 5)) :]
    return {
        "steps": state.step,
        "epochs_started": state.epoch + 1,
        "train_loss_first": losses[0],
        "train_loss_final": sum(tail) / len(tail),
        "tokens": sum(tokens),
        "wall_seconds": round(elapsed, 2),
        "tokens_per_second": sum(tokens) / elapsed if elapsed > 0 else float("nan"),
    }


def evaluate_loss(
    model: torch.nn.Module, examples: list[Any], collate: ExampleCollator, batch_size: int = 64
) -> float:
    """Mean cross-entropy per target token (EOS included) over ``examples``: the loss
    pretraining minimises (:func:`janus.training.validation.mean_token_loss`)."""
    return mean_token_loss(model, examples, collate, batch_size)


def _save_atomically(
    model: LlamaForCausalLM, tokenizer: Any, info: dict[str, Any], out_dir: Path
) -> None:
    """Write into a sibling temporary directory, then swap it into place (janus.atomic)."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / BASE_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

    atomic_directory(out_dir, write, replaceable=_is_replaceable, what="janus-tiny base")


def _is_replaceable(path: Path) -> bool:
    """Only an empty directory or a janus-tiny base may be replaced, never unrelated files."""
    return (path / BASE_INFO_FILE).is_file() or not any(path.iterdir())


def _count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def _say(message: str, progress: bool) -> None:
    logger.info(message)
    if progress:
        tqdm.write(message, file=sys.stderr)
