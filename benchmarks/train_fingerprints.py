"""Fingerprints of short, seeded training runs: did a change to the trainer change the numbers?

Runs, on the synthetic corpus the tests use (``tests/conftest.py``) and a random janus-tiny
base, a few tiny ``janus train`` runs (plain with dropout, gradient accumulation, continued
training with a second corpus, bf16) and two janus-tiny pretrainings (the tests' micro preset
and 40 steps of the tiny preset, warm-up and cosine included). Prints one JSON object: per
run, the sha256 of the weights it produced (tensor names, dtypes, shapes and bytes) and the
numbers it recorded (losses, learning rates; speeds left out). Run it before and after a
refactoring and compare: identical hashes mean identical weights. ``--demo-size`` adds a run
with the demo's step counts (janus-tiny's 600, then cpu-demo's 600; about 5 CPU-minutes).

    python benchmarks/train_fingerprints.py [--out fingerprints.json] [--demo-size]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

import janus.tiny as tiny
from janus.train import TrainConfig, apply_preset, train

TESTS = Path(__file__).resolve().parents[1] / "tests"
SPEED_KEYS = {"tokens_per_s", "tokens_per_second", "wall_seconds", "torch_threads", "device"}


def write_synthetic_prepared(directory: Path, n_trajectories: int, seed: int) -> Path:
    """The tests' synthetic prepared corpus (``tests/conftest.py``), so the runs match theirs."""
    sys.path.insert(0, str(TESTS))
    from conftest import write_synthetic_prepared as write

    return write(directory, n_trajectories, seed)


def tensor_digest(path: Path) -> str:
    """sha256 over every tensor of a safetensors file, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def run_record(run_dir: Path) -> dict[str, Any]:
    """The adapter's digest and every recorded metric except speeds."""
    metrics = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        metrics.append({k: v for k, v in record.items() if k not in SPEED_KEYS})
    return {
        "adapter_sha256": tensor_digest(run_dir / "adapter" / "adapter_state.safetensors"),
        "checkpoints": sorted(p.name for p in (run_dir / "checkpoints").iterdir()),
        "metrics": metrics,
    }


def small(corpus: Path, base: Path, out: Path, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = dict(
        data=str(corpus),
        base_model=str(base),
        out=str(out),
        rank=4,
        alpha=8.0,
        hyper_hidden=16,
        dropout=0.0,
        lr=2e-3,
        warmup=2,
        max_steps=8,
        batch_size=8,
        save_every=4,
        eval_every=4,
        eval_examples=16,
        eval_decode_examples=8,
        log_every=2,
    )
    values.update(overrides)
    return apply_preset(TrainConfig(), None, values)


def train_runs(root: Path) -> dict[str, Any]:
    corpus = write_synthetic_prepared(root / "prepared", 60, seed=3)
    extra = write_synthetic_prepared(root / "extra", 30, seed=5)
    base = root / "janus-tiny"
    tokenizer = tiny.build_tokenizer()
    tiny.build_model("tiny", tokenizer, seed=0).save_pretrained(base)
    tokenizer.save_pretrained(base)
    runs = {
        "dropout": small(corpus, base, root / "dropout", max_steps=10, lambda_sep=0.5, dropout=0.1),
        "accumulation": small(corpus, base, root / "accum", grad_accum=2, max_steps=6, warmup=3),
        "bf16": small(corpus, base, root / "bf16", max_steps=3, eval_every=3, bf16=True),
    }
    out: dict[str, Any] = {}
    for name, config in runs.items():
        train(config, progress=False)
        out[name] = run_record(Path(config.out))
    continued = small(
        corpus,
        base,
        root / "continued",
        max_steps=4,
        warmup=0,
        init_adapter=str(root / "dropout" / "adapter"),
        extra_data=str(extra),
        extra_fraction=0.4,
    )
    continued = dataclasses.replace(continued, extra_decider=None)  # None means unset above
    train(continued, progress=False)
    out["continued"] = run_record(root / "continued")
    return out


def pretrain_runs(root: Path) -> dict[str, Any]:
    corpus = write_synthetic_prepared(root / "tiny-prepared", 40, seed=0)
    micro = tiny.TinyPreset("micro", 32, 2, 2, 64, max_steps=6, batch_size=8, lr=3e-3)
    settings = {
        "micro": {"preset": micro, "eval_examples": 32},
        "tiny-40": {"preset": "tiny", "max_steps": 40, "batch_size": 16, "eval_examples": 64},
    }
    out: dict[str, Any] = {}
    for name, options in settings.items():
        base = tiny.pretrain_tiny_base(
            corpus, root / name, progress=False, num_threads=1, **options
        )
        results = tiny.read_base_info(base)["results"]
        out[name] = {
            "model_sha256": tensor_digest(base / "model.safetensors"),
            "results": {k: v for k, v in results.items() if k not in SPEED_KEYS},
        }
    return out


def demo_size_run(root: Path) -> dict[str, Any]:
    """The demo's step counts: the ``tiny`` preset's 600 pretraining steps, then the
    ``cpu-demo`` preset's 600 HyperLoRA steps, on a 200-trajectory synthetic corpus."""
    corpus = write_synthetic_prepared(root / "demo-prepared", 200, seed=7)
    base = tiny.pretrain_tiny_base(corpus, root / "demo-base", "tiny", progress=False)
    config = TrainConfig(data=str(corpus), base_model=str(base), out=str(root / "demo-run"))
    train(apply_preset(config, "cpu-demo", {}), progress=False)
    results = tiny.read_base_info(base)["results"]
    return {
        "model_sha256": tensor_digest(base / "model.safetensors"),
        "pretrain_results": {k: v for k, v in results.items() if k not in SPEED_KEYS},
        **run_record(root / "demo-run"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--demo-size", action="store_true", help="also the demo-sized run (minutes, not seconds)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="janus-fingerprints-") as tmp:
        root = Path(tmp)
        record = {"train": train_runs(root), "pretrain": pretrain_runs(root)}
        if args.demo_size:
            record["demo_size"] = demo_size_run(root)
    text = json.dumps(record, indent=1, sort_keys=True)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
