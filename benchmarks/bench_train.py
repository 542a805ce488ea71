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
import importlib
import statistics
import tempfile
import time
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
from janus.train import PRESETS, TrainConfig, _forward_loss, apply_preset, build_model


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


def main() -> None:  # noqa: C901 - a linear sequence of measurements
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
    args = parser.parse_args()
    if args.full_logits:
        # The module itself: the attribute ``janus.train`` is the trainer function.
        trainer_module = importlib.import_module("janus.train")
        trainer_module.accepts_logits_to_keep = lambda model: False

    work = Path(tempfile.mkdtemp(prefix="janus-bench-train-"))
    generate(work / "episodes.jsonl", episodes=2000, seed=0, progress=False)
    prepare(work / "episodes.jsonl", work / "prepared")
    base = args.base
    if base is None:
        base = work / "base"
        tokenizer = build_tokenizer()
        build_tiny("tiny", tokenizer).save_pretrained(base)
        tokenizer.save_pretrained(base)

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
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)

    def autocast():
        if not config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)

    def hyperlora_step(batch) -> None:
        model.current_rho = batch["rho"]
        with autocast():
            loss_sum, counts = _forward_loss(model, batch)
        (loss_sum.sum() / counts.sum()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    from transformers import AutoModelForCausalLM

    bare = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.bfloat16 if config.bf16 else torch.float32
    )
    resize_for_tokenizer(bare, tokenizer)
    bare.requires_grad_(False)
    # The same LM-head input layout as the adapter's head wrapper (a contiguous slice).
    head = bare.get_output_embeddings()
    bare.set_output_embeddings(ContiguousHead(head))

    class FrozenWithInputGrad(torch.nn.Module):
        """The bare base, frozen, with the trainer's loss: gradients must still flow back
        through every layer (as they must to reach adapters), so the input embeddings
        require grad. Same LM-head slicing as the trainer (``logits_to_keep``)."""

        def __init__(self) -> None:
            super().__init__()
            self.base = bare

        def forward(self, input_ids, attention_mask, logits_to_keep: int = 0):
            embeds = self.base.get_input_embeddings()(input_ids).detach().requires_grad_(True)
            return self.base(
                inputs_embeds=embeds, attention_mask=attention_mask, logits_to_keep=logits_to_keep
            )

    frozen = FrozenWithInputGrad()

    def frozen_step(batch) -> None:
        with autocast():
            loss_sum, counts = _forward_loss(frozen, batch)
        (loss_sum.sum() / counts.sum()).backward()

    steps = {"hyperlora": hyperlora_step, "frozen": frozen_step}
    if args.peft:
        from peft import LoraConfig, get_peft_model

        lora_base = AutoModelForCausalLM.from_pretrained(
            base, dtype=torch.bfloat16 if config.bf16 else torch.float32
        )
        resize_for_tokenizer(lora_base, tokenizer)
        lora_base.set_output_embeddings(ContiguousHead(lora_base.get_output_embeddings()))
        peft_model = get_peft_model(
            lora_base,
            LoraConfig(
                r=config.adapter.rank,
                lora_alpha=config.adapter.alpha,
                lora_dropout=0.0,
                target_modules=_peft_targets(config.adapter.target_modules),
            ),
        )
        peft_inner = peft_model.base_model.model  # the HF model: takes logits_to_keep
        peft_params = [p for p in peft_model.parameters() if p.requires_grad]
        peft_optimizer = torch.optim.AdamW(peft_params, lr=config.lr)

        def peft_step(batch) -> None:
            with autocast():
                loss_sum, counts = _forward_loss(peft_inner, batch)
            (loss_sum.sum() / counts.sum()).backward()
            peft_optimizer.step()
            peft_optimizer.zero_grad(set_to_none=True)

        steps["peft_lora"] = peft_step

    def timed_round_robin(warmup: int = 3) -> dict[str, tuple[float, int]]:
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

    with FlopCounterMode(display=False) as counter:
        hyperlora_step(batches[0])
    step_flops = counter.get_total_flops()
    tokens0 = int(batches[0]["attention_mask"].sum())
    flops_per_token = step_flops / tokens0

    peak = matmul_flops_per_second()
    results = timed_round_robin()
    seconds, tokens = results["hyperlora"]
    bare_seconds, bare_tokens = results["frozen"]
    achieved = flops_per_token * tokens / seconds

    print(
        f"preset {args.preset}: batch {config.batch_size}, rank {config.adapter.rank}, threads "
        f"{torch.get_num_threads()}, bf16 {config.bf16}, full logits {args.full_logits}, "
        f"fusion {not args.no_fusion}, base params {summary.total_parameters:,}, "
        f"trainable {summary.trainable_parameters:,}; {len(batches) - 3} timed batches"
    )
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
