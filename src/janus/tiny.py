"""janus-tiny: the offline default base, built and pretrained locally.

No model hub is reachable offline, and a frozen *random* transformer is a poor base for
LoRA (there is nothing for a low-rank update to steer). janus-tiny stands in for "a
pretrained LLM that knows the format but not the dial": a small Llama-architecture model with
a locally built tokenizer, pretrained on the prepared corpus with the ρ line made
uninformative. It is then frozen and HyperLoRA learns the dial, as it would on Qwen or Llama.

- :func:`build_tokenizer`: a byte-level BPE trained deterministically on a fixed synthetic
  corpus of canonical prompts; digits split one by one (like real LLM tokenizers); the nine
  prompt tokens plus ``<s> </s> <pad> <unk>`` are special; BOS is added like Llama does.
- :data:`PRESETS`: ``tiny`` (≈1M parameters, tests and the CPU demo), ``small`` (≈10M).
- :func:`pretrain_tiny_base`: short, deterministic, cached pretraining → a normal model
  directory that ``AutoModelForCausalLM`` / ``AutoTokenizer`` load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import janus
from janus.atomic import atomic_directory
from janus.examples import (
    IGNORE_INDEX,
    DecisionStepDataset,
    ExampleCollator,
    LengthBucketedBatchSampler,
    add_special_tokens,
    resolve_decision_steps,
)
from janus.prompt import (
    DEFAULT_K,
    IMPASSE_RHO,
    PROMPT_FORMAT_VERSION,
    ROLES,
    SPECIAL_TOKENS,
    PromptState,
    build_prompt,
    build_target,
)
from janus.runtime import torch_threads

logger = logging.getLogger(__name__)

BASE_INFO_FILE = "janus_base.json"
BASE_INFO_FORMAT = 1
BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
MAX_POSITIONS = 512

TOKENIZER_CORPUS_SIZE = 600
TOKENIZER_CORPUS_SEED = 20240531
TOKENIZER_VOCAB_SIZE = 512


# ---------------------------------------------------------------------------- tokenizer


def tokenizer_corpus(
    n: int = TOKENIZER_CORPUS_SIZE, seed: int = TOKENIZER_CORPUS_SEED
) -> list[str]:
    """A fixed synthetic corpus of prompt + target texts rendered from random states.

    Rendered with the canonical prompt itself, so the merges cover exactly the words the
    prompt uses. ``random.Random`` with a fixed seed: the same texts on every machine.
    """
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        max_turns = rng.choice((10, 12, 16, 20, 24, 30))
        turn = rng.randint(1, max_turns)
        history = tuple((rng.choice(ROLES), rng.random()) for _ in range(rng.randint(0, turn)))
        state = PromptState(
            turn=turn,
            max_turns=max_turns,
            reservation_norm=rng.random(),
            last_offer_norm=history[-1][1] if history else None,
            history=history,
        )
        rho = rng.choice((None, IMPASSE_RHO, rng.random(), rng.random()))
        k = rng.choice((0, 4, 8, 8, 12))
        target = (
            build_target("ACCEPT") if rng.random() < 0.3 else build_target("OFFER", rng.random())
        )
        # Version 1 (no side on the reservation line): version 2 adds no word that the
        # history's ``role:price`` entries do not already show, so the tokenizer (and every
        # janus-tiny base built with it) is the same for both formats.
        texts.append(build_prompt(state, rho, k, version=1) + target)
    return texts


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The janus-tiny tokenizer: byte-level BPE, digits one by one, prompt tokens special.

    Byte-level, so every string round-trips exactly (decode(encode(x)) == x). Trained on
    :func:`tokenizer_corpus` with a fixed seed; the BPE trainer breaks ties deterministically,
    so every build produces the same vocabulary and merges (the test checks it). BOS is added
    in front of every encoded text by a template post-processor, as Llama's tokenizer does.
    """
    special = [UNK, BOS, EOS, PAD, *SPECIAL_TOKENS]
    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1", special_tokens=[(BOS, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=list(SPECIAL_TOKENS),
        model_max_length=MAX_POSITIONS,
    )
    add_special_tokens(tokenizer)  # no-op by construction; checks every token has its own id
    return tokenizer


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """sha256 of the serialised backend tokenizer (vocabulary, merges, special tokens)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


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

    Why ρ-blind: the base must learn the prompt format and the *average* policy of the
    corpus, but not the dial — learning the dial is HyperLoRA's job, and a base that already
    reads ρ would leave it nothing to show. So the ``<RHO>`` line of every example shows a ρ
    drawn at random per example from a generator seeded with ``seed``, independent of the
    outcome (``rho_mode="blind"``; −1.0 / ``<RHO_FAIL>`` with probability 0.1, else uniform on
    {0.00, …, 1.00}). We show a random value rather than no value so that the base sees the
    same kind of ``<RHO>`` line that HyperLoRA training later shows it. Impasse rows are
    included (their ρ text is just as random): they are valid examples of the average policy.

    Full-parameter causal-LM training, loss on target tokens (and EOS) only; AdamW, linear
    warm-up then cosine decay to 10 %, gradient clipping at 1.0. Deterministic on CPU for a
    seed. ``preset`` is a name in :data:`PRESETS` or a :class:`TinyPreset` (tests use a
    micro one); ``None`` for ``max_steps``/``batch_size``/``lr`` takes the preset's default.
    ``device`` may name an accelerator (faster for ``small``; bit-exact determinism is only
    promised on CPU, and the device is not part of the recipe). ``num_threads`` sets torch's
    CPU threads for the run (restored afterwards); ``None`` leaves them. On a busy 2-core
    machine 1 thread is far faster than 2 for this model size (2 OpenMP threads wait on each
    other whenever another process holds a core); the result is the same up to float noise.

    Cached: if ``out_dir`` already holds a base made with the same recipe (preset, steps,
    seed, data fingerprint, prompt format, janus version, …) it is returned untouched; a
    different recipe is an error unless ``overwrite=True`` (which always retrains). A directory
    that is neither empty nor a janus-tiny base is never replaced, ``overwrite`` or not. The
    directory is written atomically (temporary directory + rename) and holds the model,
    the tokenizer (special tokens included) and ``janus_base.json`` (recipe and results).
    """
    out_dir = Path(out_dir)
    spec = get_preset(preset) if isinstance(preset, str) else preset
    max_steps = spec.max_steps if max_steps is None else max_steps
    batch_size = spec.batch_size if batch_size is None else batch_size
    lr = spec.lr if lr is None else lr
    if max_steps < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(
            f"need max_steps >= 1, batch_size >= 1, lr > 0; got {max_steps}, {batch_size}, {lr}"
        )

    tokenizer = build_tokenizer()
    recipe = {
        "preset": asdict(spec),
        "max_steps": max_steps,
        "batch_size": batch_size,
        "lr": lr,
        "warmup_fraction": warmup_fraction,
        "weight_decay": weight_decay,
        "seed": seed,
        "k": k,
        "rho_mode": "blind",
        "prompt_format_version": PROMPT_FORMAT_VERSION,
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "data": data_fingerprint(prepared_dir),
        "janus_version": janus.__version__,
    }
    recipe = json.loads(json.dumps(recipe))  # the form it takes on disk, for comparison

    if out_dir.exists():
        if not out_dir.is_dir() or not _is_replaceable(out_dir):
            raise FileExistsError(f"{out_dir} exists and is not a janus-tiny base; not touching it")
        info = read_base_info(out_dir)
        if info is not None and not overwrite:
            recorded = info.get("recipe", {})
            if recorded == recipe:
                _say(f"janus-tiny base in {out_dir} matches this recipe: reusing it", progress)
                return out_dir
            differing = sorted(
                k for k in recipe.keys() | recorded.keys() if recipe.get(k) != recorded.get(k)
            )
            raise FileExistsError(
                f"{out_dir} holds a janus-tiny base made with a different recipe "
                f"(differs in: {', '.join(differing)}); pass overwrite=True to retrain"
            )

    train = DecisionStepDataset(
        prepared_dir, "train", tokenizer, k=k, include_failures=True, rho_mode="blind", seed=seed
    )
    eval_set, eval_split = _eval_dataset(prepared_dir, tokenizer, k, seed, eval_examples, train)
    too_long = max(train.lengths)
    if too_long > MAX_POSITIONS:
        raise ValueError(f"an example has {too_long} tokens, over janus-tiny's {MAX_POSITIONS}")

    model = build_model(spec, tokenizer, seed).to(device)
    collate = ExampleCollator(tokenizer.pad_token_id)
    _say(
        f"pretraining janus-tiny ({spec.name}, {_count_parameters(model) / 1e6:.2f}M parameters) "
        f"on {len(train)} examples for {max_steps} steps of {batch_size}",
        progress,
    )
    with torch_threads(num_threads):
        eval_initial = evaluate_loss(model, eval_set, collate)
        results = _train(
            model,
            train,
            collate,
            max_steps,
            batch_size,
            lr,
            seed,
            warmup_fraction,
            weight_decay,
            progress,
        )
        eval_final = evaluate_loss(model, eval_set, collate)
    results.update(
        eval_split=eval_split,
        eval_examples=len(eval_set),
        eval_loss_initial=eval_initial,
        eval_loss_final=eval_final,
        uniform_loss=math.log(len(tokenizer)),
        train_examples=len(train),
        parameters=_count_parameters(model),
        device=str(device),
        torch_threads=torch.get_num_threads() if num_threads is None else num_threads,
    )
    _say(
        f"janus-tiny: {eval_split} loss {results['eval_loss_initial']:.3f} → "
        f"{results['eval_loss_final']:.3f} (uniform {results['uniform_loss']:.3f}), "
        f"{results['tokens_per_second']:.0f} tokens/s",
        progress,
    )
    info = {
        "format": BASE_INFO_FORMAT,
        "kind": "janus-tiny",
        "recipe": recipe,
        "results": results,
        "special_token_ids": add_special_tokens(tokenizer),
    }
    _save_atomically(model.to("cpu"), tokenizer, info, out_dir)
    return out_dir


def _eval_dataset(
    prepared_dir: str | Path,
    tokenizer: Any,
    k: int,
    seed: int,
    limit: int,
    train: DecisionStepDataset,
) -> tuple[list[Any], str]:
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
        return list(val), "val"
    except ValueError:
        return list(train)[:limit], "train"


def _train(
    model: LlamaForCausalLM,
    train: DecisionStepDataset,
    collate: ExampleCollator,
    max_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    warmup_fraction: float,
    weight_decay: float,
    progress: bool,
) -> dict[str, Any]:
    """The optimisation loop; returns loss and speed figures."""
    sampler = LengthBucketedBatchSampler(train.lengths, min(batch_size, len(train)), seed=seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay
    )
    warmup = max(1, round(warmup_fraction * max_steps))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress_frac = (step - warmup) / max(1, max_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress_frac))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    device = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    tokens = 0
    start = time.perf_counter()
    bar = tqdm(total=max_steps, desc="janus-tiny", unit="step", disable=not progress)
    step, epoch = 0, 0
    while step < max_steps:
        sampler.set_epoch(epoch)
        for indices in sampler:
            batch = _to(collate([train[i] for i in indices]), device)
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                labels=batch["labels"],
            )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(out.loss.item())
            tokens += int(batch["attention_mask"].sum())
            elapsed = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(
                loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", tok_s=f"{tokens / elapsed:.0f}"
            )
            if step >= max_steps:
                break
        epoch += 1
    bar.close()
    model.eval()
    elapsed = time.perf_counter() - start
    tail = losses[-max(1, min(20, len(losses) // 5)) :]
    return {
        "steps": step,
        "epochs_started": epoch,
        "train_loss_first": losses[0],
        "train_loss_final": sum(tail) / len(tail),
        "tokens": tokens,
        "wall_seconds": round(elapsed, 2),
        "tokens_per_second": tokens / elapsed if elapsed > 0 else float("nan"),
    }


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module, examples: list[Any], collate: ExampleCollator, batch_size: int = 64
) -> float:
    """Mean cross-entropy per target token (EOS included) over ``examples``."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    ordered = sorted(examples, key=len)
    for start in range(0, len(ordered), batch_size):
        batch = _to(collate(ordered[start : start + batch_size]), device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        total += float(
            torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
        )
        count += int((labels != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / max(count, 1)


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


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: tensor.to(device) for name, tensor in batch.items()}


def _count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def _say(message: str, progress: bool) -> None:
    logger.info(message)
    if progress:
        tqdm.write(message, file=sys.stderr)
