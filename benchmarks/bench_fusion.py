"""The fusion of janus.hyperlora.fusion on its own: fused vs plain HyperLoRA, same weights.

    python benchmarks/bench_fusion.py [--hidden 256 --layers 4 --batch 8 --seq 128]

One tiny random Llama with HyperLoRA on q,k,v,o,gate,up,down (dropout 0, as in the CPU
presets: under training-mode dropout the shared GEMM steps aside). Timed round-robin after a
warm-up, median of the repeats (``bench_hyperlora.measure``), one CPU thread by default:
* training step (forward + backward): plain vs shared q/k/v and gate/up GEMM (the gate cache
  is inactive with autograd on);
* greedy generation of ``--new-tokens`` tokens with the KV cache at fixed ρ: plain, shared
  GEMM only, gate cache only, both (what ``fuse=True`` gives).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch

from bench_hyperlora import build_base, measure
from janus.hyperlora import inject_hyperlora, set_fusion, set_rho

VARIANTS = {
    "plain": {"shared_input": False, "gate_cache": False},
    "shared_gemm": {"shared_input": True, "gate_cache": False},
    "gate_cache": {"shared_input": False, "gate_cache": True},
    "fused": {"shared_input": True, "gate_cache": True},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def build_variants(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    """One injected model (non-zero B, as after training), copied once per fusion variant."""
    base = build_base(args)
    inject_hyperlora(base, rank=args.rank, alpha=2 * args.rank, dropout=0.0)
    with torch.no_grad():
        for name, param in base.named_parameters():
            if name.endswith("lora_B"):
                param.normal_(std=0.01)
    models = {}
    for name, switches in VARIANTS.items():
        models[name] = copy.deepcopy(base)
        set_fusion(models[name], **switches)
    return models


def report(title: str, seconds: dict[str, float]) -> None:
    print(title)
    for name, value in seconds.items():
        print(f"  {name:12s} {value * 1e3:8.2f} ms  ({value / seconds['plain']:.3f}x plain)")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    models = build_variants(args)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), device=args.device)
    prompt = ids[:, : min(32, args.seq)]
    rho = torch.linspace(0, 1, args.batch, device=args.device)

    def train_step(model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=ids).loss.backward()

        return run

    def generate(model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=0,
            )

        return run

    for model in models.values():
        set_rho(model, rho)
        model.generation_config.eos_token_id = None
        model.train()
    trained = {name: train_step(models[name]) for name in ("plain", "shared_gemm")}
    train = measure(trained, args.repeats, args.warmup, args.device)
    for model in models.values():
        model.eval()
    generated = {name: generate(model) for name, model in models.items()}
    decode = measure(generated, args.repeats, args.warmup, args.device)

    print(
        f"tiny Llama hidden={args.hidden} layers={args.layers} vocab={args.vocab}, rank "
        f"{args.rank}, targets q,k,v,o,gate,up,down, dropout 0; device {args.device}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} "
        f"after {args.warmup} warm-up"
    )
    report(f"training step (forward + backward), batch {args.batch} x {args.seq} tokens:", train)
    report(
        f"greedy generation, batch {args.batch}, {prompt.shape[1]}-token prompt, "
        f"{args.new_tokens} new tokens:",
        decode,
    )


if __name__ == "__main__":
    main()
