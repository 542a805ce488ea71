"""Saving, loading, refusing and exporting HyperLoRA checkpoints (tiny models, no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

import janus
import janus.checkpoint as checkpoint
from janus.checkpoint import (
    CONFIG_FILE,
    STATE_FILE,
    base_fingerprint,
    load_hyperlora,
    resize_for_tokenizer,
    save_hyperlora_adapter,
)
from janus.export import export_peft
from janus.hyperlora import (
    adapter_state_dict,
    inject_hyperlora,
    iter_hyperlora_layers,
    merge_at_rho,
    set_rho,
)
from tiny_lm import VOCAB, build_model, logits_at, randomise_adapter, targets_for, token_batch

SPECIAL = ["<RHO>", "<OUTPUT>"]
RHOS = torch.tensor([0.0, 0.6, -1.0])


def make_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over VOCAB ids, plus two added special tokens (VOCAB, VOCAB + 1)."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.add_tokens(SPECIAL, special_tokens=True)
    return tokenizer


def trained_model(arch: str, base_dir: Path, *, tie: bool | None = None, seed: int = 0):
    """Save a random base to ``base_dir``; resize, inject and 'train' it as the trainer would."""
    build_model(arch, tie=tie, seed=seed).save_pretrained(base_dir)
    tokenizer = make_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True).eval()
    resize_for_tokenizer(model, tokenizer)
    new_ids = tokenizer.convert_tokens_to_ids(SPECIAL)
    inject_hyperlora(
        model, target_modules=targets_for(arch), rank=4, dropout=0.0, trainable_token_ids=new_ids
    )
    randomise_adapter(model)
    return model, tokenizer


def inputs() -> torch.Tensor:
    """A batch that uses the added special tokens too."""
    return torch.cat([token_batch(batch=3, seq=4), torch.tensor([[VOCAB, VOCAB + 1]] * 3)], dim=1)


@pytest.fixture
def saved(tmp_path):
    """A Llama adapter saved to tmp_path/'ckpt' and its logits at RHOS."""
    model, tokenizer = trained_model("llama", tmp_path / "base")
    path = save_hyperlora_adapter(
        model, tokenizer, tmp_path / "ckpt", base_model_name_or_path=tmp_path / "base"
    )
    return path, logits_at(model, inputs(), RHOS)


def _rewrite_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Replace the state file *and* its recorded checksum: a consistent but wrong checkpoint."""
    save_file(state, str(path / STATE_FILE))
    config = json.loads((path / CONFIG_FILE).read_text())
    config["adapter_state_sha256"] = checkpoint._sha256_file(path / STATE_FILE)
    (path / CONFIG_FILE).write_text(json.dumps(config))


# --------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "tie"), [("llama", False), ("qwen2", True), ("gpt2", True)])
def test_save_then_load_gives_identical_logits(tmp_path, arch, tie):
    model, tokenizer = trained_model(arch, tmp_path / "base", tie=tie)
    expected = logits_at(model, inputs(), RHOS)
    path = save_hyperlora_adapter(
        model,
        tokenizer,
        tmp_path / "ckpt",
        base_model_name_or_path=tmp_path / "base",
        extra_config={"special_tokens": SPECIAL, "prompt_format_version": 1},
    )
    loaded, loaded_tokenizer, config = load_hyperlora(path)
    assert torch.equal(logits_at(loaded, inputs(), RHOS), expected)
    assert loaded_tokenizer.convert_tokens_to_ids(SPECIAL) == [VOCAB, VOCAB + 1]
    assert config["special_tokens"] == SPECIAL and config["prompt_format_version"] == 1
    assert config["janus_version"] == janus.__version__
    assert config["rank"] == 4 and config["trainable_token_ids"] == [VOCAB, VOCAB + 1]
    assert config["target_modules"] == list(targets_for(arch))
    assert config["adapted_modules"] == [name for name, _ in iter_hyperlora_layers(model)]
    fingerprint = config["base_fingerprint"]
    assert fingerprint["vocab_size"] == VOCAB  # the original base's, not the resized one
    assert fingerprint["num_layers"] == 2 and fingerprint["hidden_size"] == 32
    assert set(load_file(path / STATE_FILE)) == set(adapter_state_dict(model))
    assert not loaded.training and loaded.current_rho is None


def test_load_accepts_the_same_base_in_bf16(saved):
    path, expected = saved
    loaded, _, _ = load_hyperlora(path, torch_dtype=torch.bfloat16)
    assert loaded.model.layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16
    assert loaded.model.layers[0].self_attn.q_proj.lora_A.dtype == torch.float32
    torch.testing.assert_close(
        logits_at(loaded, inputs(), RHOS).float(), expected, atol=0.1, rtol=0.05
    )


def test_fingerprint_tells_random_bases_of_one_shape_apart():
    first, second = build_model("llama", seed=0), build_model("llama", seed=1)
    assert base_fingerprint(first)["weights_sha256"] != base_fingerprint(second)["weights_sha256"]
    inject_hyperlora(first)
    assert base_fingerprint(first) == base_fingerprint(build_model("llama", seed=0))


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------


def test_flipped_bytes_are_refused(saved):
    path, _ = saved
    data = bytearray((path / STATE_FILE).read_bytes())
    data[-20] ^= 0xFF
    (path / STATE_FILE).write_bytes(bytes(data))
    with pytest.raises(
        ValueError, match=r"adapter_state\.safetensors is corrupted or was modified"
    ):
        load_hyperlora(path)


def test_unreadable_state_is_refused(saved):
    path, _ = saved
    (path / STATE_FILE).write_bytes(b"\x00garbage")
    _drop_checksum(path)
    with pytest.raises(ValueError, match=r"adapter_state\.safetensors is corrupted"):
        load_hyperlora(path)


def _drop_checksum(path: Path) -> None:
    config = json.loads((path / CONFIG_FILE).read_text())
    del config["adapter_state_sha256"]
    (path / CONFIG_FILE).write_text(json.dumps(config))


def test_missing_key_is_refused_by_name(saved):
    path, _ = saved
    state = load_file(path / STATE_FILE)
    del state["model.layers.1.mlp.down_proj.lora_B"]
    _rewrite_state(path, state)
    with pytest.raises(
        ValueError, match=r"missing keys \['model\.layers\.1\.mlp\.down_proj\.lora_B'\]"
    ):
        load_hyperlora(path)


def test_unexpected_key_and_wrong_shape_are_refused(saved):
    path, _ = saved
    state = load_file(path / STATE_FILE)
    _rewrite_state(path, {**state, "model.layers.0.extra": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"unexpected keys \['model\.layers\.0\.extra'\]"):
        load_hyperlora(path)
    _rewrite_state(path, {**state, "model.embed_tokens.token_rows": torch.zeros(3, 32)})
    with pytest.raises(ValueError, match=r"token_rows.*shape \(3, 32\)"):
        load_hyperlora(path)


def test_missing_or_corrupt_files_are_named(saved):
    path, _ = saved
    (path / STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"adapter_state\.safetensors is missing"):
        load_hyperlora(path)
    (path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"adapter_config\.json is corrupted"):
        load_hyperlora(path)
    (path / CONFIG_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json is missing"):
        load_hyperlora(path)


def test_another_random_base_of_the_same_config_is_refused(saved, tmp_path):
    path, _ = saved
    build_model("llama", seed=7).save_pretrained(tmp_path / "impostor")
    with pytest.raises(ValueError, match=r"another base than .*impostor.*weights_sha256") as error:
        load_hyperlora(path, tmp_path / "impostor")
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_base_of_another_config_is_refused(saved, tmp_path):
    path, _ = saved
    build_model("llama", hidden=48).save_pretrained(tmp_path / "wider")
    with pytest.raises(ValueError, match=r"hidden_size 32 vs 48"):
        load_hyperlora(path, tmp_path / "wider")
    with pytest.raises(FileNotFoundError, match="nowhere: no such local directory"):
        load_hyperlora(path, tmp_path / "nowhere")


def test_a_pickled_state_is_never_read(saved, monkeypatch):
    path, _ = saved
    torch.save(load_file(path / STATE_FILE), path / "adapter_state.pt")
    (path / STATE_FILE).unlink()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(FileNotFoundError, match=r"adapter_state\.safetensors is missing"):
        load_hyperlora(path)


def test_a_missing_local_base_is_named_never_looked_up_on_the_hub(saved, tmp_path, monkeypatch):
    path, _ = saved
    (tmp_path / "bases").mkdir()
    monkeypatch.chdir(tmp_path)
    for missing in ("bases/x", "./x", "a/b/c"):
        with pytest.raises(FileNotFoundError, match=f"base model {missing}: no such local"):
            load_hyperlora(path, missing)


# --------------------------------------------------------------------------------------------
# Atomic saves
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["save_file", "write_json"])
def test_a_crash_mid_save_leaves_the_previous_checkpoint_intact(
    saved, tmp_path, monkeypatch, failing
):
    path, expected = saved
    before = {f.name: f.read_bytes() for f in path.iterdir()}
    model, tokenizer = trained_model("llama", tmp_path / "base")
    randomise_adapter(model, seed=9)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, failing, crash)
    with pytest.raises(OSError, match="disk full"):
        save_hyperlora_adapter(model, tokenizer, path, base_model_name_or_path=tmp_path / "base")
    assert {f.name: f.read_bytes() for f in path.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "ckpt"]  # no temp dir left
    monkeypatch.undo()
    loaded, _, _ = load_hyperlora(path)
    assert torch.equal(logits_at(loaded, inputs(), RHOS), expected)


def test_save_overwrites_a_checkpoint_but_not_an_unrelated_directory(saved, tmp_path):
    path, _ = saved
    model, tokenizer = trained_model("llama", tmp_path / "base")
    randomise_adapter(model, seed=5)
    save_hyperlora_adapter(model, tokenizer, path, base_model_name_or_path=tmp_path / "base")
    loaded, _, _ = load_hyperlora(path)
    assert torch.equal(logits_at(loaded, inputs(), RHOS), logits_at(model, inputs(), RHOS))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a Janus adapter directory"):
        save_hyperlora_adapter(model, tokenizer, tmp_path / "notes", base_model_name_or_path="x")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "tie"), [("llama", True), ("qwen2", False), ("gpt2", True)])
def test_exported_peft_adapter_reproduces_hyperlora_at_rho(tmp_path, arch, tie):
    model, tokenizer = trained_model(arch, tmp_path / "base", tie=tie)
    rho = 0.35
    expected = logits_at(model, inputs(), rho)
    export_peft(model, rho, tmp_path / "peft", tokenizer=tokenizer)
    config = json.loads((tmp_path / "peft" / CONFIG_FILE).read_text())
    assert config["peft_type"] == "LORA" and config["fan_in_fan_out"] == (arch == "gpt2")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base", local_files_only=True)
    resize_for_tokenizer(base, tokenizer)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    with torch.no_grad():
        torch.testing.assert_close(peft_model(inputs()).logits, expected, atol=1e-5, rtol=0)
    # The export is one point of the dial: another ρ gives other logits.
    assert not torch.allclose(logits_at(model, inputs(), 0.9), expected, atol=1e-4)


def test_merged_model_saves_and_reloads_as_a_plain_model(tmp_path):
    model, _ = trained_model("gpt2", tmp_path / "base")
    expected = logits_at(model, inputs(), 0.8)
    merge_at_rho(model, 0.8).save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", local_files_only=True)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(inputs()).logits, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unmerge"):
        save_hyperlora_adapter(model, None, tmp_path / "x", base_model_name_or_path="x")
    with pytest.raises(ValueError, match="no HyperLoRA layers"):
        set_rho(model, 0.5)
