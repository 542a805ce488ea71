"""janus-tiny: tokenizer, presets, short pretraining, caching, determinism."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

import janus.tiny as tiny
from janus.examples import DecisionStepDataset, ExampleCollator
from janus.prompt import (
    PROMPT_VERSIONS,
    ROLES,
    SPECIAL_TOKENS,
    PromptState,
    build_prompt,
    build_target,
)

# A micro preset keeps each pretraining run well under a second on a busy CPU.
MICRO = tiny.TinyPreset("micro", 32, 2, 2, 64, max_steps=6, batch_size=8, lr=3e-3)
SHORT = {"preset": MICRO, "eval_examples": 32, "progress": False, "num_threads": 1}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, synthetic_decision_steps: Path) -> Path:
    out = tmp_path_factory.mktemp("bases") / "janus-tiny"
    return tiny.pretrain_tiny_base(synthetic_decision_steps, out, **SHORT)


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        turn = rng.randint(1, 40)
        history = tuple((rng.choice(ROLES), rng.random()) for _ in range(rng.randint(0, 15)))
        role = rng.choice(ROLES)
        state = PromptState(
            turn, rng.randint(turn, 60), rng.uniform(-0.2, 1.2), None, history, role
        )
        rho = rng.choice([None, -1.0, rng.random()])
        target = rng.choice([build_target("ACCEPT"), build_target("OFFER", rng.random())])
        version = rng.choice(PROMPT_VERSIONS)
        texts.append(build_prompt(state, rho, k=rng.randint(0, 12), version=version) + target)
    return texts


def test_tokenizer_round_trips_every_prompt(tokenizer) -> None:
    odd = ["", " ", "\n\n", "OFFER 1e-3", "prix: 12,50 € — ok?", "<RHO><RHO>", "\t<OUTPUT>x"]
    for text in random_texts(300, seed=11) + odd:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_tokenizer_splits_digits_and_keeps_special_tokens_whole(tokenizer) -> None:
    for token in tokenizer.get_vocab():
        if any(c.isdigit() for c in token):
            assert len(token) == 1, token  # no multi-digit (or digit+text) pieces at all
    ids = tokenizer("OFFER 0.4213", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[-6:] == ["0", ".", "4", "2", "1", "3"]
    for token in SPECIAL_TOKENS:
        assert len(tokenizer(f"a{token}b", add_special_tokens=False)["input_ids"]) == 3
        assert token in tokenizer.all_special_tokens
    assert tokenizer("a")["input_ids"][0] == tokenizer.bos_token_id
    assert None not in (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
    assert len(tokenizer) < 1000  # small vocabulary: prompt words, bytes, digits


def test_tokenizer_build_is_deterministic_across_processes(tokenizer) -> None:
    code = "import janus.tiny as t; print(t.tokenizer_fingerprint(t.build_tokenizer()))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == tiny.tokenizer_fingerprint(tokenizer)
    assert tiny.tokenizer_fingerprint(tiny.build_tokenizer()) == other


def test_preset_parameter_counts(tokenizer) -> None:
    counts = {}
    for name in ("tiny", "small"):
        with torch.device("meta"):
            model = LlamaForCausalLM(tiny.get_preset(name).llama_config(tokenizer))
        counts[name] = sum(p.numel() for p in model.parameters())
        assert model.config.tie_word_embeddings
        assert model.config.max_position_embeddings == 512
    assert 0.5e6 <= counts["tiny"] <= 2e6
    assert 5e6 <= counts["small"] <= 20e6
    with pytest.raises(ValueError, match="preset"):
        tiny.get_preset("huge")


def test_pretrained_base_loads_with_auto_classes(
    base_dir: Path, tokenizer, synthetic_decision_steps: Path
) -> None:
    threads_before = torch.get_num_threads()  # pretraining ran with 1 and restored this
    loaded_tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    assert tiny.tokenizer_fingerprint(loaded_tok) == tiny.tokenizer_fingerprint(tokenizer)
    assert set(SPECIAL_TOKENS) <= set(loaded_tok.all_special_tokens)
    assert model.get_input_embeddings().num_embeddings == len(loaded_tok)

    info = tiny.read_base_info(base_dir)
    assert info is not None
    recipe, results = info["recipe"], info["results"]
    assert recipe["preset"]["name"] == "micro" and recipe["max_steps"] == 6
    assert recipe["seed"] == 0 and recipe["rho_mode"] == "blind"
    assert recipe["data"] == tiny.data_fingerprint(synthetic_decision_steps)
    assert info["special_token_ids"] == loaded_tok.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    assert results["steps"] == 6 and results["eval_split"] == "val"
    assert results["torch_threads"] == 1 and torch.get_num_threads() == threads_before
    assert results["eval_loss_final"] < results["eval_loss_initial"]
    assert results["train_loss_final"] < results["train_loss_first"]

    # The saved weights are the trained ones: the loaded model reproduces the recorded loss.
    val = DecisionStepDataset(
        synthetic_decision_steps,
        "val",
        loaded_tok,
        include_failures=True,
        rho_mode="blind",
        seed=1,
        limit=32,
    )
    loss = tiny.evaluate_loss(model, list(val), ExampleCollator(loaded_tok.pad_token_id))
    assert loss == pytest.approx(results["eval_loss_final"], rel=1e-5)


def test_cache_reuses_a_matching_base(
    base_dir: Path, synthetic_decision_steps: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = base_dir / "model.safetensors"
    stamp = weights.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a cached base must not be retrained")

    monkeypatch.setattr(tiny, "_pretrain", no_training)
    assert tiny.pretrain_tiny_base(synthetic_decision_steps, base_dir, **SHORT) == base_dir
    assert weights.stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="max_steps"):
        tiny.pretrain_tiny_base(synthetic_decision_steps, base_dir, **{**SHORT, "max_steps": 7})
    assert weights.stat().st_mtime_ns == stamp


def test_refuses_a_foreign_directory_and_overwrite_retrains(
    synthetic_decision_steps: Path, tmp_path: Path
) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not a janus-tiny base"):
            tiny.pretrain_tiny_base(synthetic_decision_steps, foreign, **SHORT, overwrite=overwrite)
    assert (foreign / "notes.txt").read_text() == "mine"

    out = tiny.pretrain_tiny_base(synthetic_decision_steps, tmp_path / "base", **SHORT)
    retrained = tiny.pretrain_tiny_base(
        synthetic_decision_steps, out, **{**SHORT, "max_steps": 2}, overwrite=True
    )
    assert retrained == out
    assert json.loads((out / "janus_base.json").read_text())["recipe"]["max_steps"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "foreign"]  # no temp dirs


def test_pretraining_is_deterministic(
    base_dir: Path, synthetic_decision_steps: Path, tmp_path: Path
) -> None:
    again = tiny.pretrain_tiny_base(synthetic_decision_steps, tmp_path / "again", **SHORT)
    first, second = (
        load_file(base_dir / "model.safetensors"),
        load_file(again / "model.safetensors"),
    )
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    other = tiny.pretrain_tiny_base(synthetic_decision_steps, tmp_path / "other", **SHORT, seed=1)
    third = load_file(other / "model.safetensors")
    assert any(not torch.equal(first[name], third[name]) for name in first)
