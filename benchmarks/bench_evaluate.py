"""Evaluation throughput: batched lockstep play (run_episodes) vs one episode at a time.

    python benchmarks/bench_evaluate.py [--run runs/janus] [--episodes 1000] [--threads 1]

Both modes play the same paired evaluation episodes (the calibration sweep against the whole
default opponent pool, held-out opponents included) with the same JanusAgent. Without
``--run``, a random janus-tiny base and a fresh adapter (random B, so that ρ matters as in a
trained one) are built, saved and loaded through ``JanusAgent.from_pretrained``, as
``janus evaluate`` would. Greedy decoding makes the two modes play the same games; the script
checks it. Prints episodes/s of both, the ratio, and a Markdown block for RESULTS.md.
One CPU thread by default: on a shared machine, threads that wait on each other make small
batches many times slower.
Target: 1,000 janus-tiny episodes in <= 60 s batched on the 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from janus.agent import JanusAgent
from janus.episode import run_episode
from janus.evaluation import (
    EvaluationConfig,
    build_match,
    make_plan,
    plan_episodes,
    play_episodes,
    record_episode,
)


def build_fresh_run(directory: Path, seed: int = 0) -> Path:
    """A random janus-tiny base and a fresh HyperLoRA adapter on it, saved like a run."""
    from janus.checkpoint import resize_for_tokenizer, save_hyperlora_adapter
    from janus.examples import add_special_tokens
    from janus.hyperlora import inject_hyperlora, iter_hyperlora_layers
    from janus.prompt import DEFAULT_K, PROMPT_FORMAT_VERSION, SPECIAL_TOKENS
    from janus.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    base = build_model("tiny", tokenizer, seed=seed)
    base_dir = directory / "janus-tiny"
    base.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)

    token_ids = add_special_tokens(tokenizer)
    resize_for_tokenizer(base, tokenizer)
    torch.manual_seed(seed)  # A's Kaiming initialisation draws from the global generator
    inject_hyperlora(base, rank=8, alpha=16, hyper_hidden=32, trainable_token_ids=token_ids)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in iter_hyperlora_layers(base):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.5)
    extra = {
        "special_tokens": list(SPECIAL_TOKENS),
        "prompt_format_version": PROMPT_FORMAT_VERSION,
        "k": DEFAULT_K,
    }
    adapter = directory / "run" / "adapter"
    save_hyperlora_adapter(
        base, tokenizer, adapter, base_model_name_or_path=str(base_dir), extra_config=extra
    )
    return adapter


def sweep_specs(episodes: int, seed: int) -> list:
    """The first ``episodes`` of the paired calibration sweep against the default pool
    (23 opponents × 2 roles × 11 ρ* × n episodes per cell, n as large as needed)."""
    per_cell = 2
    while True:
        config = EvaluationConfig(
            configurations=[],
            ablations=False,
            scripted_baselines=False,
            sweep_episodes_per_cell=per_cell,
            seed=seed,
        )
        specs = plan_episodes(make_plan(config))
        if len(specs) >= episodes:
            return specs[:episodes]
        per_cell += 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="A trained run or adapter dir.")
    parser.add_argument("--base-model", default=None)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument(
        "--sequential-episodes",
        type=int,
        default=None,
        help="Play only the first N episodes one by one (default: all).",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run if args.run is not None else build_fresh_run(Path(tmp), args.seed)
        agent = JanusAgent.from_pretrained(run, args.base_model, device=args.device)

    specs = sweep_specs(args.episodes, args.seed)
    n_seq = min(args.sequential_episodes or len(specs), len(specs))

    calls: list[int] = []
    act_batch = agent.act_batch

    def counting(seats, observations):
        calls.append(len(seats))
        return act_batch(seats, observations)

    agent.act_batch = counting  # type: ignore[method-assign]
    start = time.perf_counter()
    batched = play_episodes(specs, agent, batch_size=len(specs), progress=True)
    t_batched = time.perf_counter() - start
    rounds, batch_decisions = len(calls), sum(calls)

    start = time.perf_counter()
    sequential = []
    for spec in specs[:n_seq]:
        match, seat = build_match(spec, agent)
        sequential.append(record_episode(spec, run_episode(match), seat))
    t_sequential = time.perf_counter() - start
    agent.act_batch = act_batch  # type: ignore[method-assign]

    same = sum(a == b for a, b in zip(batched, sequential, strict=False))
    rate_b = len(specs) / t_batched
    rate_s = n_seq / t_sequential
    decisions = sum(r.decisions for r in batched)
    agreed = sum(r.agreement for r in batched)
    where = f"{platform.processor() or platform.machine()}, {args.device}, {args.threads} thread(s)"
    model = f"trained run {args.run}" if args.run else "random janus-tiny + fresh adapter"

    print(f"episodes: {len(specs)} ({agreed} agreements, {decisions} Janus decisions)")
    print(f"batched:    {t_batched:8.2f} s  {rate_b:8.1f} episodes/s  ({rounds} act_batch calls)")
    print(f"sequential: {t_sequential:8.2f} s  {rate_s:8.1f} episodes/s  ({n_seq} episodes)")
    print(f"speed-up:   {rate_b / rate_s:.1f}x; identical outcomes: {same}/{n_seq}")
    print()
    print("```markdown")
    print("### Evaluation throughput (`benchmarks/bench_evaluate.py`)")
    print()
    print(f"{model}; {where}; {len(specs)} paired sweep episodes against the default pool.")
    print()
    print("| mode | episodes | seconds | episodes/s |")
    print("|:--|--:|--:|--:|")
    print(f"| batched (`run_episodes`) | {len(specs)} | {t_batched:.1f} | {rate_b:.1f} |")
    print(f"| sequential (`run_episode`) | {n_seq} | {t_sequential:.1f} | {rate_s:.1f} |")
    print()
    print(
        f"Speed-up {rate_b / rate_s:.1f}x; {rounds} batched calls for {batch_decisions} "
        f"decisions; identical outcomes {same}/{n_seq}."
    )
    print("```")


if __name__ == "__main__":
    main()
