"""Training throughput and model FLOP utilisation of a training preset, side by side.

Measured in one process on the same batches:
- the machine's matmul FLOP/s (square fp32 matmuls, same thread count) — the reference;
- a HyperLoRA training step (forward + backward + AdamW, the trainer's own loss code);
- a bare frozen-base forward + backward on the same batches (what any adapter must pay);
- with ``--peft``, a PEFT LoRA step of the same rank and targets (the usual adapter's price).
The step kinds take turns on every batch (round robin), so load changes hit them alike.
FLOPs of a step are counted by ``torch.utils.flop_counter.FlopCounterMode`` (measured, not a
6·N·T estimate). Utilisation = achieved step FLOP/s / matmul FLOP/s.

    python benchmarks/bench_train.py [--base DIR] [--steps 20] [--preset cpu-demo]
        [--batch-size N] [--bf16] [--full-logits] [--no-fusion] [--peft]

Without ``--base`` a random janus-tiny (tiny preset) is built: speed does not depend on the
weights' values.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from janus.checkpoint import resize_for_tokenizer
from janus.examples import DecisionStepDataset, ExampleCollator, LengthBucketedBatchSampler
from janus.generate import generate
from janus.hyperlora import set_fusion
from janus.prepare import prepare
from janus.tiny import build_model as build_tiny
from janus.tiny import build_tokenizer
from janus.train import PRESETS, TrainConfig, apply_preset, build_model
from janus.training.losses import target_token_loss


def matmul_flops_per_second(size: int = 1024, repeats: int = 20) -> float:
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


class ContiguousHead(torch.nn.Module):
    """The base LM head fed a contiguous input, as HyperLoRA's tied head does."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.head = head

    @property
    def weight(self) -> torch.Tensor:
        return self.head.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden.contiguous())


def _peft_targets(targets: tuple[str, ...] | str) -> list[str] | str:
    """HyperLoRA's target spec in PEFT's terms (a list of suffixes, "all-linear" or a regex)."""
    return list(targets) if isinstance(targets, tuple) else targets.removeprefix("re:")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--preset", default="cpu-demo", choices=sorted(PRESETS))
    parser.add_argument("--batch-size", type=int, default=None, help="override the preset's")
    parser.add_argument("--bf16", action="store_true", help="bf16 base + autocast, both steps")
    parser.add_argument(
        "--full-logits",
        action="store_true",
        help="LM head on every position, both steps (the trainer before logits_to_keep)",
    )
    parser.add_argument(
        "--peft", action="store_true", help="also time a PEFT LoRA step (same rank, targets)"
    )
    parser.add_argument(
        "--no-fusion",
        action="store_true",
        help="no shared x A^T GEMM for q/k/v and gate/up (the adapter before the fusion)",
    )
    return parser.parse_args()


def prepare_corpus_and_base(base: Path | None) -> tuple[Path, Path]:
    """A fresh 2,000-episode prepared corpus in a temp dir, and ``base`` (or a random tiny)."""
    work = Path(tempfile.mkdtemp(prefix="janus-bench-train-"))
    generate(work / "episodes.jsonl", episodes=2000, seed=0, progress=False)
    prepare(work / "episodes.jsonl", work / "prepared")
    if base is None:
        base = work / "base"
        tokenizer = build_tokenizer()
        build_tiny("tiny", tokenizer).save_pretrained(base)
        tokenizer.save_pretrained(base)
    return work, base


class FrozenWithInputGrad(torch.nn.Module):
    """The bare base, frozen, with the trainer's loss: gradients must still flow back through
    every layer (as they must to reach adapters), so the input embeddings require grad. Same
    LM-head slicing as the trainer (``logits_to_keep``)."""

    def __init__(self, base: torch.nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, input_ids, attention_mask, logits_to_keep: int = 0):
        embeds = self.base.get_input_embeddings()(input_ids).detach().requires_grad_(True)
        return self.base(
            inputs_embeds=embeds, attention_mask=attention_mask, logits_to_keep=logits_to_keep
        )


def load_base(base: Path, tokenizer, bf16: bool) -> torch.nn.Module:
    """The base model as a plain HF model, resized for the tokenizer, with a contiguous head
    input (the same LM-head input layout as the adapter's head wrapper)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.bfloat16 if bf16 else torch.float32
    )
    resize_for_tokenizer(model, tokenizer)
    model.set_output_embeddings(ContiguousHead(model.get_output_embeddings()))
    return model


Step = Callable[[dict], None]


def loss_step(model, optimizer, autocast, full_logits: bool, rho: bool = False) -> Step:
    """Forward, the trainer's loss (mean over target tokens), backward, optimiser step."""

    def step(batch) -> None:
        if rho:
            model.current_rho = batch["rho"]
        with autocast():
            loss_sum, counts = target_token_loss(model, batch, full_logits=full_logits)
        (loss_sum.sum() / counts.sum()).backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return step


def peft_step(config: TrainConfig, base: Path, tokenizer, autocast, full_logits: bool) -> Step:
    """A PEFT LoRA step of the adapter's rank and targets, on a fresh copy of the base."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        load_base(base, tokenizer, config.bf16),
        LoraConfig(
            r=config.adapter.rank,
            lora_alpha=config.adapter.alpha,
            lora_dropout=0.0,
            target_modules=_peft_targets(config.adapter.target_modules),
        ),
    )
    inner = peft_model.base_model.model  # the HF model: takes logits_to_keep
    params = [p for p in peft_model.parameters() if p.requires_grad]
    return loss_step(inner, torch.optim.AdamW(params, lr=config.lr), autocast, full_logits)


def timed_round_robin(steps: dict[str, Step], batches, warmup: int = 3) -> dict[str, tuple]:
    """Every step kind on every batch in turn, so load changes hit all kinds alike."""
    for batch in batches[:warmup]:
        for step in steps.values():
            step(batch)
    totals = {name: [0.0, 0] for name in steps}
    for batch in batches[warmup:]:
        for name, step in steps.items():
            start = time.perf_counter()
            step(batch)
            totals[name][0] += time.perf_counter() - start
            totals[name][1] += int(batch["attention_mask"].sum())
    return {name: (t[0], t[1]) for name, t in totals.items()}


def main() -> None:
    args = parse_args()
    work, base = prepare_corpus_and_base(args.base)
    config = apply_preset(
        TrainConfig(data=str(work / "prepared"), base_model=str(base), out=str(work / "run")),
        args.preset,
        {"batch_size": args.batch_size, "bf16": True if args.bf16 else None},
    )
    model, tokenizer, summary = build_model(config, torch.device("cpu"))
    if args.no_fusion:
        set_fusion(model, shared_input=False, gate_cache=False)
    dataset = DecisionStepDataset(work / "prepared", "train", tokenizer, k=config.k)
    sampler = LengthBucketedBatchSampler(dataset.lengths, config.batch_size, seed=0)
    collate = ExampleCollator(tokenizer.pad_token_id)
    batches = [collate([dataset[i] for i in b]) for b in list(sampler)[: args.steps + 3]]

    def autocast():
        if not config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)

    params = [p for p in model.parameters() if p.requires_grad]
    hyperlora = torch.optim.AdamW(params, lr=config.lr)
    bare = load_base(base, tokenizer, config.bf16).requires_grad_(False)
    steps = {
        "hyperlora": loss_step(model, hyperlora, autocast, args.full_logits, rho=True),
        "frozen": loss_step(FrozenWithInputGrad(bare), None, autocast, args.full_logits),
    }
    if args.peft:
        steps["peft_lora"] = peft_step(config, base, tokenizer, autocast, args.full_logits)

    with FlopCounterMode(display=False) as counter:
        steps["hyperlora"](batches[0])
    flops_per_token = counter.get_total_flops() / int(batches[0]["attention_mask"].sum())
    peak = matmul_flops_per_second()
    results = timed_round_robin(steps, batches)
    header = (
        f"preset {args.preset}: batch {config.batch_size}, rank {config.adapter.rank}, threads "
        f"{torch.get_num_threads()}, bf16 {config.bf16}, full logits {args.full_logits}, "
        f"fusion {not args.no_fusion}, base params {summary.total_parameters:,}, "
        f"trainable {summary.trainable_parameters:,}; {len(batches) - 3} timed batches"
    )
    report(header, results, flops_per_token, peak)


def report(header: str, results: dict[str, tuple], flops_per_token: float, peak: float) -> None:
    seconds, tokens = results["hyperlora"]
    bare_seconds, bare_tokens = results["frozen"]
    achieved = flops_per_token * tokens / seconds
    print(header)
    print(f"matmul reference      : {peak / 1e9:8.2f} GFLOP/s (fp32 1024x1024)")
    print(
        f"HyperLoRA train step  : {tokens / seconds:8.0f} tokens/s, "
        f"{achieved / 1e9:6.2f} GFLOP/s, {flops_per_token / 1e6:.2f} MFLOP/token (counted)"
    )
    print(f"bare frozen fwd+bwd   : {bare_tokens / bare_seconds:8.0f} tokens/s")
    if "peft_lora" in results:
        peft_seconds, peft_tokens = results["peft_lora"]
        print(f"PEFT LoRA train step  : {peft_tokens / peft_seconds:8.0f} tokens/s (same rank)")
        print(
            f"PEFT LoRA step / bare frozen fwd+bwd time per token: "
            f"{(peft_seconds / peft_tokens) / (bare_seconds / bare_tokens):.2f}x"
        )
    print(f"model FLOP utilisation: {achieved / peak:8.1%}")
    print(
        f"HyperLoRA step / bare frozen fwd+bwd time per token: "
        f"{(seconds / tokens) / (bare_seconds / bare_tokens):.2f}x"
    )


if __name__ == "__main__":
    main()
