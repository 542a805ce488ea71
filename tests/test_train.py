"""The trainer: separation loss, end-to-end run, exact resume, DDP equivalence, bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from conftest import write_synthetic_prepared
from janus.checkpoint import STATE_FILE, load_hyperlora
from janus.hyperlora import HyperLoRAConfig, rho_context
from janus.prompt import PROMPT_FORMAT_VERSION
from janus.tiny import build_model, build_tokenizer
from janus.train import (
    PRESETS,
    TrainConfig,
    apply_preset,
    nest_options,
    train,
    validate_inputs,
)
from janus.train import (
    build_model as build_training_model,
)
from janus.training.checkpoints import latest_checkpoint
from janus.training.losses import gate_separation_loss, target_token_loss


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_prepared(tmp_path_factory.mktemp("corpus") / "prepared", 60, seed=3)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random janus-tiny base saved as a normal model directory."""
    path = tmp_path_factory.mktemp("base") / "janus-tiny"
    tokenizer = build_tokenizer()
    model = build_model("tiny", tokenizer, seed=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def small_config(corpus: Path, base_dir: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(
        data=str(corpus),
        base_model=str(base_dir),
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
    return apply_preset(TrainConfig(), None, values)  # adapter fields go to config.adapter


class SimulatedCrash(Exception):
    """Raised by a test's callback: the run dies after a step, as a killed process would."""


def crash_after(step: int):
    """A loop callback that kills the run once ``step`` optimiser steps are done (whatever
    was not checkpointed by then is lost, as in a real crash)."""

    def callback(state, report) -> None:
        if state.step >= step:
            raise SimulatedCrash(f"crashed after step {state.step}")

    return callback


# ------------------------------------------------------------------------- separation loss


def test_separation_loss_is_zero_when_gates_are_far_enough() -> None:
    rho = torch.tensor([0.0, 1.0])
    gates = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert float(gate_separation_loss(gates, rho, margin=0.5)) == 0.0


def test_separation_loss_is_bounded_by_the_margin_and_positive_for_equal_gates() -> None:
    rho = torch.tensor([0.0, 0.3, 1.0])
    gates = torch.full((3, 8), 0.5, requires_grad=True)
    loss = gate_separation_loss(gates, rho, margin=0.25)
    assert 0.0 < loss.item() <= 0.25
    loss.backward()
    assert torch.isfinite(gates.grad).all()


def test_separation_loss_weights_each_pair_by_its_own_rho_distance() -> None:
    # Pair (0, 1) is close in ρ, pair (0, 2) far: the same gate distance costs the far pair
    # more. A batch-mean weighting (the research code) cannot tell these apart.
    rho = torch.tensor([0.0, 0.1, 0.9])
    near_collapsed = torch.tensor([[0.0], [0.0], [1.0]])  # near pair equal, far pair apart
    far_collapsed = torch.tensor([[0.0], [1.0], [0.0]])  # far pair equal, near pair apart
    low = gate_separation_loss(near_collapsed, rho, margin=1.0)
    high = gate_separation_loss(far_collapsed, rho, margin=1.0)
    assert float(high) > float(low) * 5


def test_separation_loss_ignores_impasse_rows() -> None:
    rho = torch.tensor([0.2, -1.0, -1.0])
    gates = torch.rand(3, 4)
    assert float(gate_separation_loss(gates, rho, margin=0.5)) == 0.0


# -------------------------------------------------------------------------------- training


def test_training_end_to_end_gives_a_loadable_rho_dependent_adapter(
    corpus: Path, base_dir: Path, tmp_path: Path
) -> None:
    config = small_config(corpus, base_dir, tmp_path / "run", max_steps=10, lambda_sep=0.5)
    result = train(config, progress=False)
    assert result.steps == 10
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [4, 8, 10]
    assert all(0.0 <= r["action_accuracy"] <= 1.0 for r in evals)
    assert {"val_loss_by_rho", "price_mae"} <= evals[-1].keys()
    trains = [r for r in records if "train_loss" in r]
    assert trains[-1]["train_loss"] < trains[0]["train_loss"]

    model, tokenizer, adapter_config = load_hyperlora(result.adapter_dir)
    assert adapter_config["prompt_format_version"] == PROMPT_FORMAT_VERSION
    ids = tokenizer("<RHO> 0.50\n<TURN> 3 / 20\n<OUTPUT>", return_tensors="pt").input_ids
    with torch.no_grad(), rho_context(model, 0.0):
        low = model(ids).logits
    with torch.no_grad(), rho_context(model, 1.0):
        high = model(ids).logits
    assert not torch.allclose(low, high), "the adapter ignores the numeric ρ"

    # The frozen base is untouched: compare a base weight with the original checkpoint.
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(base_dir)
    name = "model.layers.0.self_attn.q_proj"
    trained = model.get_submodule(name).base_layer.weight
    assert torch.equal(trained, original.get_submodule(name).weight)

    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["step-0000008", "step-0000010"]  # keep_last=2
    assert json.loads((tmp_path / "run" / "best.json").read_text())["step"] in (4, 8, 10)


@pytest.mark.parametrize(
    ("options", "crash", "checkpoint"),
    [
        # Dropout on: resume must also restore the RNG state.
        ({"dropout": 0.1}, 6, "step-0000004"),
        # Accumulation over big batches: 8 steps of 2 x 96 examples go round the 512-row
        # epoch several times, so the saved data position crosses epoch boundaries.
        ({"grad_accum": 2, "batch_size": 96, "save_every": 3}, 5, "step-0000003"),
    ],
)
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(
    corpus: Path, base_dir: Path, tmp_path: Path, options: dict, crash: int, checkpoint: str
) -> None:
    uninterrupted = small_config(corpus, base_dir, tmp_path / "a", **options)
    train(uninterrupted, progress=False)

    interrupted = small_config(corpus, base_dir, tmp_path / "b", **options)
    with pytest.raises(SimulatedCrash):
        train(interrupted, progress=False, callbacks=[crash_after(crash)])
    assert latest_checkpoint(tmp_path / "b").name == checkpoint
    assert not (tmp_path / "b" / "adapter").exists()  # the crash came before the end
    train(interrupted, resume=True, progress=False)

    a = load_file(str(tmp_path / "a" / "adapter" / STATE_FILE))
    b = load_file(str(tmp_path / "b" / "adapter" / STATE_FILE))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_a_changed_config(corpus: Path, base_dir: Path, tmp_path: Path) -> None:
    config = small_config(corpus, base_dir, tmp_path / "run", max_steps=4)
    train(config, progress=False)
    changed = small_config(corpus, base_dir, tmp_path / "run", max_steps=6, lr=1e-2)
    with pytest.raises(ValueError, match="lr"):
        train(changed, resume=True, progress=False)


def test_a_non_empty_run_directory_is_not_overwritten(
    corpus: Path, base_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        train(small_config(corpus, base_dir, out), progress=False)
    assert (out / "precious.txt").read_text() == "keep me"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_with_the_same_global_batch(
    corpus: Path, base_dir: Path, tmp_path: Path
) -> None:
    # Both runs use one thread per process, so matmuls reduce in the same order; what is left
    # is the order of gloo's all-reduce, far below the tolerance. A global batch of 6 over the
    # 512 rows makes batches of 5 and 6, which split 3 + 2 between the ranks: the token count,
    # the gathered ρ of the separation term and the gradients must all cope with unequal parts.
    single = small_config(corpus, base_dir, tmp_path / "single", batch_size=6, max_steps=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(single, progress=False)
    finally:
        torch.set_num_threads(threads)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "janus",
        "train",
        f"--data={corpus}",
        f"--base-model={base_dir}",
        f"--out={tmp_path / 'ddp'}",
        "--rank=4",
        "--alpha=8",
        "--hyper-hidden=16",
        "--dropout=0",
        "--lr=0.002",
        "--warmup=2",
        "--max-steps=4",
        "--batch-size=3",
        "--save-every=4",
        "--eval-every=4",
    ]
    # Options the CLI does not expose keep their TrainConfig defaults in both runs, except
    # the eval sizes, which do not touch the weights.
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a = load_file(str(tmp_path / "single" / "adapter" / STATE_FILE))
    b = load_file(str(tmp_path / "ddp" / "adapter" / STATE_FILE))
    assert a.keys() == b.keys()
    moved = 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4, msg=key)
        moved += int(not torch.equal(a[key], torch.zeros_like(a[key])))
    assert moved > 0


# ------------------------------------------------------------------------------ bad input


def test_nan_rho_is_refused_before_training(base_dir: Path, tmp_path: Path) -> None:
    prepared = write_synthetic_prepared(tmp_path / "prepared", 10)
    path = prepared / "decision_steps.parquet"
    table = pq.read_table(path)
    rho = table.column("rho_train").to_pylist()
    rho[3] = float("nan")
    index = table.schema.get_field_index("rho_train")
    pq.write_table(table.set_column(index, "rho_train", pa.array(rho, pa.float64())), path)
    with pytest.raises(ValueError, match=r"row 3, field 'rho_train'"):
        train(small_config(prepared, base_dir, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()


def test_missing_column_and_unknown_base_are_clear_errors(
    corpus: Path, base_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere: no such local directory"):
        train(small_config(corpus, tmp_path / "nowhere", tmp_path / "run"), progress=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    table = pq.read_table(corpus / "decision_steps.parquet").drop_columns(["target_action"])
    pq.write_table(table, broken / "decision_steps.parquet")
    with pytest.raises(ValueError, match="target_action"):
        train(small_config(broken, base_dir, tmp_path / "run2"), progress=False)


def test_presets_apply_and_explicit_options_win() -> None:
    config = apply_preset(TrainConfig(), "cpu-demo", {"rank": 3, "lr": None})
    assert config.adapter == HyperLoRAConfig(rank=3, alpha=16.0, hyper_hidden=32, dropout=0.0)
    assert config.lr == PRESETS["cpu-demo"]["lr"]
    assert config.lr == 3e-3  # from the preset, since the option was not given
    with pytest.raises(ValueError, match="unknown preset"):
        apply_preset(TrainConfig(), "nope", {})


def test_a_missing_relative_base_is_local_and_a_bare_org_name_a_hub_id(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bases").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="base model bases/x: no such local directory"):
        validate_inputs(small_config(corpus, Path("bases/x"), tmp_path / "run"))
    assert validate_inputs(small_config(corpus, Path("org/name"), tmp_path / "run")).is_file()


def test_train_config_nests_the_adapter_and_round_trips_through_json() -> None:
    config = apply_preset(TrainConfig(), None, {"rank": 4, "target_modules": ("q_proj",)})
    assert config.adapter == HyperLoRAConfig(rank=4, target_modules=("q_proj",))
    data = json.loads(json.dumps(config.to_json()))
    assert data["adapter"]["target_modules"] == ["q_proj"] and "rank" not in data
    assert TrainConfig.from_json(data) == config
    assert nest_options({"rank": 2, "lr": 1.0}) == {"adapter": {"rank": 2}, "lr": 1.0}
    with pytest.raises(ValueError, match="target_modules"):
        apply_preset(TrainConfig(), None, {"target_modules": "q_proj|v_proj"})


def test_a_tokenizer_without_eos_is_refused_before_training(
    corpus: Path, base_dir: Path, tmp_path: Path
) -> None:
    import shutil

    broken = tmp_path / "no-eos"
    shutil.copytree(base_dir, broken)
    config_path = broken / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token"] = None
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="no EOS token"):
        train(small_config(corpus, broken, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()  # a failed start leaves nothing behind


def test_gradient_checkpointing_gives_the_same_weights(
    corpus: Path, base_dir: Path, tmp_path: Path
) -> None:
    plain = small_config(corpus, base_dir, tmp_path / "plain", max_steps=3, eval_every=3)
    checkpointed = small_config(
        corpus, base_dir, tmp_path / "ckpt", max_steps=3, eval_every=3, gradient_checkpointing=True
    )
    train(plain, progress=False)
    train(checkpointed, progress=False)
    a = load_file(str(tmp_path / "plain" / "adapter" / STATE_FILE))
    b = load_file(str(tmp_path / "ckpt" / "adapter" / STATE_FILE))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=key)


def test_bf16_autocast_trains_with_finite_losses(
    corpus: Path, base_dir: Path, tmp_path: Path
) -> None:
    config = small_config(corpus, base_dir, tmp_path / "bf16", max_steps=2, eval_every=2, bf16=True)
    train(config, progress=False)
    records = [json.loads(line) for line in (tmp_path / "bf16" / "metrics.jsonl").open()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    state = load_file(str(tmp_path / "bf16" / "adapter" / STATE_FILE))
    assert all(v.dtype == torch.float32 for v in state.values())  # adapters stay fp32


def test_loss_on_kept_logits_equals_the_full_logits_loss(
    corpus: Path, base_dir: Path, tmp_path: Path
) -> None:
    """The LM head runs only from the first target on; loss and gradients must not change."""
    from janus.examples import DecisionStepDataset, ExampleCollator

    config = small_config(corpus, base_dir, tmp_path / "unused", dropout=0.0)
    model, tokenizer, _ = build_training_model(config, torch.device("cpu"))
    torch.manual_seed(0)
    for p in model.parameters():  # B starts at zero: perturb so gradients reach everything
        if p.requires_grad:
            p.data.add_(0.02 * torch.randn_like(p))
    data = DecisionStepDataset(corpus, "train", tokenizer, limit=6)
    # Different lengths: right padding puts the targets at different positions.
    batch = ExampleCollator(tokenizer.pad_token_id)([data[i] for i in range(6)])
    assert len({int(m.sum()) for m in batch["attention_mask"]}) > 1
    model.current_rho = batch["rho"]

    loss, counts = target_token_loss(model, batch)
    loss.sum().backward()
    fast_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    reference = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(labels.shape)
    torch.testing.assert_close(loss, reference.sum(-1))
    assert counts.tolist() == (labels != -100).sum(-1).tolist()
    reference.sum().backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(fast_grads[name], param.grad, msg=name)
