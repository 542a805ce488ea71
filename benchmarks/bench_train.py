"""Training throughput and model FLOP utilisation of the cpu-demo preset, side by side.

Measured in one process on the same batches:
- the machine's matmul FLOP/s (square fp32 matmuls, same thread count) — the reference;
- a HyperLoRA training step (forward + backward + AdamW, the trainer's own loss code);
- a bare frozen-base forward + backward on the same batches (what any adapter must pay).
FLOPs of a step are counted by ``torch.utils.flop_counter.FlopCounterMode`` (measured, not a
6·N·T estimate). Utilisation = achieved step FLOP/s / matmul FLOP/s.

    python benchmarks/bench_train.py [--base DIR] [--steps 20] [--preset cpu-demo]

Without ``--base`` a random janus-tiny (tiny preset) is built: speed does not depend on the
weights' values.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from janus.checkpoint import resize_for_tokenizer
from janus.examples import DecisionStepDataset, ExampleCollator, LengthBucketedBatchSampler
from janus.generate import generate
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--preset", default="cpu-demo", choices=sorted(PRESETS))
    args = parser.parse_args()

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
        {},
    )
    model, tokenizer, summary = build_model(config, torch.device("cpu"))
    dataset = DecisionStepDataset(work / "prepared", "train", tokenizer, k=config.k)
    sampler = LengthBucketedBatchSampler(dataset.lengths, config.batch_size, seed=0)
    collate = ExampleCollator(tokenizer.pad_token_id)
    batches = [collate([dataset[i] for i in b]) for b in list(sampler)[: args.steps + 3]]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)

    def hyperlora_step(batch) -> None:
        model.current_rho = batch["rho"]
        loss_sum, counts = _forward_loss(model, batch)
        (loss_sum.sum() / counts.sum()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    from transformers import AutoModelForCausalLM

    bare = AutoModelForCausalLM.from_pretrained(base)
    resize_for_tokenizer(bare, tokenizer)
    bare.requires_grad_(False)

    def frozen_step(batch) -> None:
        # The bare base, frozen, with the same loss: gradients must still flow back through
        # every layer (as they must to reach adapters), so the input embeddings require grad.
        embeds = bare.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
        logits = bare(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            ignore_index=-100,
        )
        loss.backward()

    def timed(step, warmup: int = 3) -> tuple[float, float]:
        for batch in batches[:warmup]:
            step(batch)
        times = []
        tokens = 0
        for batch in batches[warmup:]:
            start = time.perf_counter()
            step(batch)
            times.append(time.perf_counter() - start)
            tokens += int(batch["attention_mask"].sum())
        return sum(times), tokens

    with FlopCounterMode(display=False) as counter:
        hyperlora_step(batches[0])
    step_flops = counter.get_total_flops()
    tokens0 = int(batches[0]["attention_mask"].sum())
    flops_per_token = step_flops / tokens0

    peak = matmul_flops_per_second()
    seconds, tokens = timed(hyperlora_step)
    bare_seconds, bare_tokens = timed(frozen_step)
    achieved = flops_per_token * tokens / seconds

    print(
        f"preset {args.preset}: batch {config.batch_size}, rank {config.rank}, threads "
        f"{torch.get_num_threads()}, base params {summary.total_parameters:,}, "
        f"trainable {summary.trainable_parameters:,}"
    )
    print(f"matmul reference      : {peak / 1e9:8.2f} GFLOP/s (fp32 1024x1024)")
    print(
        f"HyperLoRA train step  : {tokens / seconds:8.0f} tokens/s, "
        f"{achieved / 1e9:6.2f} GFLOP/s, {flops_per_token / 1e6:.2f} MFLOP/token (counted)"
    )
    print(f"bare frozen fwd+bwd   : {bare_tokens / bare_seconds:8.0f} tokens/s")
    print(f"model FLOP utilisation: {achieved / peak:8.1%}")
    print(
        f"HyperLoRA step / bare frozen fwd+bwd time per token: "
        f"{(seconds / tokens) / (bare_seconds / bare_tokens):.2f}x"
    )


if __name__ == "__main__":
    main()
