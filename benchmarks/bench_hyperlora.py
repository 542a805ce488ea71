"""HyperLoRA cost, side by side: training step vs PEFT LoRA, inference vs the bare base.

    python benchmarks/bench_hyperlora.py [--hidden 256 --layers 4 --batch 8 --seq 128]

One tiny random Llama, one batch, every variant timed round-robin (so a load spike from a
neighbour hits them all alike, the order reversed every other round) after a warm-up; the
median of the repeats is reported. One CPU thread by default: on a shared machine the ratios
are far steadier than with threads that wait on each other.
Targets: training step <= 1.10x PEFT LoRA (same rank and targets); merged-at-ρ = base within
noise; unmerged HyperLoRA inference <= 1.15x base.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from janus.hyperlora import DEFAULT_TARGETS, inject_hyperlora, merge_at_rho, set_rho


def build_base(args: argparse.Namespace) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 8 // 3,
        num_hidden_layers=args.layers,
        num_attention_heads=max(args.hidden // 64, 1),
        num_key_value_heads=max(args.hidden // 128, 1),
        max_position_embeddings=max(args.seq, 128),
    )
    return LlamaForCausalLM(config).to(args.device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(
    variants: dict[str, Callable[[], None]], repeats: int, warmup: int, device: str
) -> dict[str, float]:
    """Median seconds per call of each variant, timed round-robin."""
    for _ in range(warmup):
        for run in variants.values():
            run()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(repeats):
        order = list(variants.items())
        for name, run in order if round_index % 2 == 0 else reversed(order):
            start = time.perf_counter()
            run()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = build_base(args).eval()
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), device=args.device)
    rho = torch.linspace(0, 1, args.batch, device=args.device)
    lora_kwargs = {"r": args.rank, "lora_alpha": 2 * args.rank, "target_modules": DEFAULT_TARGETS}

    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(lora_dropout=0.05, **lora_kwargs))
    hyper = copy.deepcopy(base)
    inject_hyperlora(hyper, rank=args.rank, alpha=2 * args.rank, dropout=0.05, fuse=True)
    with torch.no_grad():  # non-zero B, as after training (costs are the same either way)
        for name, param in hyper.named_parameters():
            if name.endswith("lora_B"):
                param.normal_(std=0.01)
    set_rho(hyper, rho)
    merged = merge_at_rho(copy.deepcopy(hyper), 0.5, keep_original=False)

    def train_step(model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=ids).loss.backward()

        return run

    def infer(model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                model(input_ids=ids)

        return run

    peft_model.train()
    hyper.train()
    train = measure(
        {"peft_lora": train_step(peft_model), "hyperlora": train_step(hyper)},
        args.repeats,
        args.warmup,
        args.device,
    )
    peft_model.eval()
    hyper.eval()
    infer_times = measure(
        {
            "base": infer(base),
            "hyperlora_unmerged": infer(hyper),
            "merged_at_rho": infer(merged),
            "peft_lora": infer(peft_model),
        },
        args.repeats,
        args.warmup,
        args.device,
    )

    print(
        f"tiny Llama hidden={args.hidden} layers={args.layers} vocab={args.vocab}, "
        f"batch {args.batch} x {args.seq} tokens, rank {args.rank}, targets q,k,v,o,gate,up,down; "
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"median of {args.repeats} after {args.warmup} warm-up"
    )
    print("training step (forward + backward):")
    for name, seconds in train.items():
        print(f"  {name:20s} {seconds * 1e3:8.2f} ms")
    ratio = train["hyperlora"] / train["peft_lora"]
    print(f"  hyperlora / peft_lora = {ratio:.3f}  (target <= 1.10)")
    print("inference forward:")
    for name, seconds in infer_times.items():
        print(f"  {name:20s} {seconds * 1e3:8.2f} ms")
    unmerged = infer_times["hyperlora_unmerged"] / infer_times["base"]
    merged_ratio = infer_times["merged_at_rho"] / infer_times["base"]
    peft_ratio = infer_times["peft_lora"] / infer_times["base"]
    print(f"  hyperlora_unmerged / base = {unmerged:.3f}  (target <= 1.15)")
    print(f"  merged_at_rho / base      = {merged_ratio:.3f}  (target: 1 within noise)")
    print(f"  peft_lora / base          = {peft_ratio:.3f}  (reference)")


if __name__ == "__main__":
    main()
