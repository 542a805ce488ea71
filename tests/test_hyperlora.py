"""HyperLoRA layers, injection, ρ routing, fusion and merging on tiny random models.

Numerical references first: a fresh adapter is the base, constant gates are plain PEFT LoRA,
a merged model is the unmerged one, the fused path is the plain one.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from janus.hyperlora import (
    HyperLoRAConfig,
    HyperLoRALinear,
    RhoHyperNet,
    TiedTokenHead,
    TrainableTokenEmbedding,
    adapter_parameters,
    hyperlora_gates,
    inject_hyperlora,
    iter_hyperlora_layers,
    merge_at_rho,
    rho_context,
    set_rho,
    target_modules_from_text,
    unmerge,
)
from tiny_lm import (
    ARCHS,
    ARCHS_WITH_MISTRAL,
    VOCAB,
    build_model,
    injected,
    logits_at,
    randomise_adapter,
    targets_for,
    token_batch,
)

# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS_WITH_MISTRAL)
def test_fresh_injection_reproduces_base_exactly(arch):
    model = build_model(arch)
    ids = token_batch()
    with torch.no_grad():
        expected = model(ids).logits
    inject_hyperlora(model, target_modules=targets_for(arch))
    assert all(torch.count_nonzero(layer.lora_B) == 0 for _, layer in iter_hyperlora_layers(model))
    assert torch.equal(logits_at(model, ids, 0.7), expected)
    assert torch.equal(logits_at(model, ids, torch.tensor([0.0, 0.5, -1.0])), expected)


@pytest.mark.parametrize("arch", ARCHS)
def test_constant_gate_of_ones_equals_plain_peft_lora(arch):
    base = build_model(arch)
    peft_model = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=targets_for(arch),
            lora_dropout=0.0,
            fan_in_fan_out=arch == "gpt2",
        ),
    ).eval()
    config = HyperLoRAConfig(rank=8, alpha=16, dropout=0.0, activation="identity")
    summary = inject_hyperlora(base, config, target_modules=targets_for(arch))
    randomise_adapter(base)
    with torch.no_grad():
        for name, layer in iter_hyperlora_layers(base):
            last = layer.hypernet.net[4]
            last.weight.zero_()
            last.bias.fill_(1.0)  # identity activation: g(ρ) = 1 for every ρ
            peft_layer = peft_model.base_model.model.get_submodule(name)
            peft_layer.lora_A["default"].weight.copy_(layer.lora_A)
            peft_layer.lora_B["default"].weight.copy_(layer.lora_B)
    assert len(summary.matched) == sum(1 for _ in iter_hyperlora_layers(base)) > 0
    ids = token_batch()
    with torch.no_grad():
        expected = peft_model(ids).logits
        plain = peft_model.get_base_model()
    assert not torch.allclose(expected, build_model(arch)(ids).logits, atol=1e-3), plain
    torch.testing.assert_close(logits_at(base, ids, 0.3), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS_WITH_MISTRAL)
def test_mixed_rho_batch_equals_each_example_alone(arch):
    model = injected(arch)
    ids = token_batch()
    rhos = [0.1, 0.9, -1.0]
    batched = logits_at(model, ids, torch.tensor(rhos))
    for i, rho in enumerate(rhos):
        alone = logits_at(model, ids[i : i + 1], rho)
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-5, rtol=0)
    # ρ must matter, or the test above proves nothing.
    assert not torch.allclose(logits_at(model, ids, 0.1), logits_at(model, ids, 0.9), atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS_WITH_MISTRAL)
def test_merge_matches_unmerged_and_unmerge_restores(arch):
    model = injected(arch)
    ids = token_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for rho in (0.0, 0.37, 1.0):
        expected = logits_at(model, ids, rho)
        merged = merge_at_rho(model, rho)
        assert not any(
            isinstance(m, HyperLoRALinear | TrainableTokenEmbedding | TiedTokenHead)
            for m in merged.modules()
        )
        assert not hasattr(merged, "hyperlora_config")
        with torch.no_grad():
            torch.testing.assert_close(merged(ids).logits, expected, atol=1e-5, rtol=0)
        unmerge(model)
        after = model.state_dict()
        assert after.keys() == before.keys()
        assert all(torch.equal(after[k], before[k]) for k in before)
        assert torch.equal(logits_at(model, ids, rho), expected)


def test_merge_folds_trained_token_rows_into_tied_embedding():
    model = build_model("llama", tie=True)
    inject_hyperlora(model, dropout=0.0, trainable_token_ids=[40, 41])
    randomise_adapter(model)
    assert isinstance(model.get_input_embeddings(), TrainableTokenEmbedding)
    assert isinstance(model.get_output_embeddings(), TiedTokenHead)
    ids = torch.tensor([[5, 40, 7, 41, 9]])
    expected = logits_at(model, ids, 0.5)
    rows = model.get_input_embeddings().token_rows.detach().clone()
    merge_at_rho(model, 0.5)
    embedding = model.get_input_embeddings()
    assert type(embedding) is torch.nn.Embedding
    assert torch.equal(embedding.weight[[40, 41]], rows)
    assert model.lm_head.weight is embedding.weight
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, expected, atol=1e-5, rtol=0)
    unmerge(model)
    assert not torch.equal(model.get_input_embeddings().weight[[40, 41]], rows)


def test_merge_without_keeping_originals_cannot_unmerge():
    model = injected("llama")
    merge_at_rho(model, 0.2, keep_original=False)
    with pytest.raises(ValueError, match="keep_original=False"):
        unmerge(model)


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_with_kv_cache_equals_greedy_loop_without_cache(arch):
    model = injected(arch)
    model.generation_config.eos_token_id = None  # always produce every new token
    ids = token_batch(batch=2, seq=4)
    set_rho(model, [0.15, 0.85])
    generated = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=5,
        do_sample=False,
        use_cache=True,
        pad_token_id=0,
    )
    sequence = ids
    with torch.no_grad():
        for _ in range(5):
            logits = model(sequence, use_cache=False).logits[:, -1]
            sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, sequence)


def test_beam_search_repeats_rho_per_beam():
    model = injected("llama")
    model.generation_config.eos_token_id = None
    ids = token_batch(batch=2, seq=4)
    kwargs = {"max_new_tokens": 4, "num_beams": 3, "do_sample": False, "pad_token_id": 0}
    set_rho(model, [0.1, 0.9])
    with pytest.raises(ValueError, match=r"2 values but the batch has 6"):
        model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    with rho_context(model, [0.1, 0.9], num_beams=3):
        both = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    with rho_context(model, 0.9):
        second = model.generate(ids[1:], attention_mask=torch.ones_like(ids[1:]), **kwargs)
    assert both.shape == (2, 8)
    assert torch.equal(both[1:], second)


# --------------------------------------------------------------------------------------------
# Training: what gets gradients, what an optimiser may change
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "tie"), [("llama", True), ("llama", False), ("gpt2", True)])
def test_only_adapter_and_chosen_token_rows_train(arch, tie):
    model = build_model(arch, tie=tie)
    new_tokens = [44, 45]
    inject_hyperlora(
        model, target_modules=targets_for(arch), dropout=0.1, trainable_token_ids=new_tokens
    )
    randomise_adapter(model)
    model.train()
    adapter = adapter_parameters(model)
    base_before = {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if all(p is not q for q in adapter.values())
    }
    ids = torch.cat([token_batch(batch=2, seq=5), torch.tensor([[44, 45]] * 2)], dim=1)
    set_rho(model, [0.2, 0.8])
    loss = torch.nn.functional.cross_entropy(
        model(ids).logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1)
    )
    loss.backward()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(adapter)
    assert all(p.grad is None for name, p in model.named_parameters() if name not in adapter)
    assert all(adapter[name].grad is not None for name in adapter)
    assert any(name.endswith("token_rows") for name in adapter)

    # A careless optimiser over *all* parameters, with weight decay, still moves only the adapter.
    rows_before = {n: p.detach().clone() for n, p in adapter.items()}
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    optimiser.step()
    for name, value in base_before.items():
        assert torch.equal(dict(model.named_parameters())[name], value), name
    changed = [n for n, p in adapter.items() if not torch.equal(p, rows_before[n])]
    assert any(n.endswith("token_rows") for n in changed)
    assert any(n.endswith("lora_B") for n in changed)

    # The trained rows are what the model now embeds; the other rows are the frozen base rows.
    embedding = model.get_input_embeddings()
    with torch.no_grad():
        embedded = embedding(torch.tensor([[44, 3]]))
    assert torch.equal(embedded[0, 0], embedding.token_rows[0])
    assert torch.equal(embedded[0, 1], base_before[_embedding_weight_name(model)][3])


def _embedding_weight_name(model: torch.nn.Module) -> str:
    weight = model.get_input_embeddings().weight
    return next(name for name, p in model.named_parameters() if p is weight)


def test_hyperlora_gates_concatenates_every_layer_and_is_differentiable():
    model = injected("qwen2", rank=4)
    gates = hyperlora_gates(model, torch.tensor([0.0, 0.5, 1.0]))
    layers = list(iter_hyperlora_layers(model))
    assert gates.shape == (3, len(layers) * 4)
    assert torch.equal(gates[:, :4], layers[0][1].gate(torch.tensor([0.0, 0.5, 1.0])))
    gates.sum().backward()
    assert all(p.grad is not None for p in layers[-1][1].hypernet.parameters())
    assert hyperlora_gates(model, 0.5).shape == (1, len(layers) * 4)


# --------------------------------------------------------------------------------------------
# ρ routing and validation
# --------------------------------------------------------------------------------------------


def test_forward_without_rho_or_with_wrong_batch_size_raises():
    model = injected("llama")
    ids = token_batch(batch=3)
    with pytest.raises(RuntimeError, match=r"set_rho\(model, rho\)"):
        model(ids)
    set_rho(model, [0.1, 0.2])
    with pytest.raises(ValueError, match=r"2 values but the batch has 3"):
        model(ids)
    set_rho(model, 0.4)  # a float broadcasts to any batch size
    assert model(ids).logits.shape[0] == 3
    assert model(ids[:1]).logits.shape[0] == 1
    model.current_rho = None  # unset: the next forward must not reuse the last ρ
    with pytest.raises(RuntimeError, match="rho_context"):
        model(ids)


def test_rho_context_restores_previous_rho():
    model = injected("llama")
    ids = token_batch(batch=1)
    with rho_context(model, 0.8):
        inner = model(ids).logits
    with pytest.raises(RuntimeError):
        model(ids)
    set_rho(model, 0.2)
    outer = model(ids).logits
    with rho_context(model, 0.8):
        assert torch.equal(model(ids).logits, inner)
    assert model.current_rho == 0.2
    assert torch.equal(model(ids).logits, outer)


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), 1.5, -0.5, -1.0001, [0.5, float("nan")], [[0.2], [2.0]]],
)
def test_invalid_rho_is_refused(bad):
    model = injected("llama")
    with pytest.raises(ValueError, match="ρ must"):
        set_rho(model, bad)


def test_rho_assigned_directly_is_validated_and_shape_checked():
    model = injected("llama")
    ids = token_batch(batch=2)
    model.current_rho = 3.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model(ids)
    model.current_rho = torch.tensor([0.3, -1.0])
    direct = model(ids).logits
    assert torch.equal(direct, logits_at(model, ids, [0.3, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        set_rho(model, torch.zeros(2, 2))


def test_set_rho_on_a_model_without_adapters_raises():
    with pytest.raises(ValueError, match="no HyperLoRA layers"):
        set_rho(build_model("llama"), 0.5)


def test_bf16_base_with_fp32_adapters():
    model = build_model("llama").to(torch.bfloat16)
    ids = token_batch()
    with torch.no_grad():
        base = model(ids).logits
    inject_hyperlora(model, dropout=0.0)
    randomise_adapter(model)
    assert all(p.dtype == torch.float32 for p in adapter_parameters(model).values())
    assert model.model.layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16
    out = logits_at(model, ids, torch.tensor([0.1, 0.5, 0.9]))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert not torch.equal(out, base)
    model.train()
    set_rho(model, 0.5)
    model(ids).logits.float().sum().backward()
    assert model.model.layers[0].self_attn.q_proj.lora_B.grad.dtype == torch.float32


def test_bf16_autocast_matches_fp32_within_bf16_precision_and_keeps_fp32_grads():
    """Training and playing with ``bf16``: a bf16 base under autocast, fp32 adapters."""
    reference = injected("llama")
    fast = copy.deepcopy(reference)
    for param in fast.parameters():  # the frozen base only; adapters stay fp32
        if not param.requires_grad:
            param.data = param.data.to(torch.bfloat16)
    ids = token_batch()
    rho = torch.tensor([0.1, 0.5, 0.9])
    expected = logits_at(reference, ids, rho)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = logits_at(fast, ids, rho)
    error = (got.float() - expected).abs().max()
    # bf16 rounding is far smaller than what the adapter changes: its delta survives the cast.
    with torch.no_grad():
        base = build_model("llama")(ids).logits
    assert error < 0.1 * (expected - base).abs().max()
    fast.train()
    set_rho(fast, rho)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fast(ids).logits.float().pow(2).mean()
    loss.backward()
    layer = fast.model.layers[0].self_attn.q_proj
    assert layer.lora_A.grad.dtype == torch.float32 and layer.lora_A.grad.abs().sum() > 0
    assert layer.lora_B.grad.dtype == torch.float32 and layer.lora_B.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# Injection and the hypernetwork
# --------------------------------------------------------------------------------------------


def test_target_selection_modes():
    all_linear = build_model("llama")
    summary = inject_hyperlora(all_linear, target_modules="all-linear")
    assert "lm_head" not in summary.matched and len(summary.matched) == 14

    regex = build_model("llama")
    summary = inject_hyperlora(regex, target_modules=r"re:model\.layers\.1\.self_attn\.(q|v)_proj")
    assert summary.matched == ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]

    gpt2 = build_model("gpt2")
    summary = inject_hyperlora(gpt2, target_modules=["c_attn"])
    assert summary.matched == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    assert gpt2.transformer.h[0].attn.c_attn.fan_in_fan_out

    with pytest.raises(ValueError, match="c_attn"):
        inject_hyperlora(build_model("gpt2"))  # the default targets do not exist in GPT-2
    with pytest.raises(RuntimeError, match="already"):
        inject_hyperlora(gpt2, target_modules=["c_fc"])


def test_summary_counts_and_the_config_the_model_records():
    model = build_model("llama")
    total = sum(p.numel() for p in model.parameters())
    summary = inject_hyperlora(
        model, HyperLoRAConfig(rank=4), hyper_hidden=8, trainable_token_ids=[7, 3, 3]
    )
    adapter = sum(p.numel() for p in adapter_parameters(model).values())
    assert summary.trainable_parameters == adapter
    assert summary.total_parameters == total + adapter  # token rows are a copy: counted again
    assert "14 layers adapted" in str(summary) and "2 trainable token rows" in str(summary)
    expected = HyperLoRAConfig(rank=4, hyper_hidden=8, trainable_token_ids=(3, 7))
    assert model.hyperlora_config == summary.config == expected
    layer = model.model.layers[0].mlp.down_proj
    assert layer.rank == 4 and layer.scaling == expected.alpha / 4
    with pytest.raises(TypeError, match="no field"):
        inject_hyperlora(build_model("llama"), ranks=4)
    with pytest.raises(ValueError, match=r"\[0, 48\)"):
        inject_hyperlora(build_model("llama"), trainable_token_ids=[48])


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "softplus", "identity"])
def test_hypernet_shapes_and_activation_ranges(activation):
    torch.manual_seed(0)
    net = RhoHyperNet(rank=5, hidden=16, fourier_features=3, activation=activation)
    assert net.net[0].in_features == 7  # ρ plus sin and cos of 3 frequencies
    column = net(torch.tensor([[0.0], [0.4], [1.0]]))
    assert column.shape == (3, 5)
    assert torch.equal(net(torch.tensor([0.0, 0.4, 1.0])), column)
    torch.testing.assert_close(net(0.4), column[1:2], atol=1e-6, rtol=0)
    if activation == "sigmoid":
        assert ((column > 0) & (column < 1)).all()
    if activation == "softplus":
        assert (column > 0).all()
    if activation == "tanh":
        assert (column.abs() < 1).all()
    with pytest.raises(ValueError, match="activation"):
        RhoHyperNet(rank=2, hidden=4, fourier_features=0, activation="relu6")


def test_a_deep_copy_reads_its_own_rho():
    model = injected("llama")
    twin = copy.deepcopy(model)
    ids = token_batch(batch=1)
    set_rho(model, 0.1)
    with pytest.raises(RuntimeError, match="set_rho"):
        twin(ids)  # the copy has no ρ of its own yet; it must not borrow the original's
    set_rho(twin, 0.9)
    with torch.no_grad():
        assert torch.equal(twin(ids).logits, logits_at(model, ids, 0.9))


def test_rho_first_used_under_inference_mode_still_trains():
    model = injected("llama")
    ids = token_batch(batch=2)
    set_rho(model, 0.4)
    with torch.inference_mode():
        reference = model(ids).logits
    model(ids).logits.sum().backward()  # same ρ, now with autograd
    assert model.model.layers[0].self_attn.q_proj.lora_B.grad is not None
    assert torch.equal(model(ids).logits.detach(), reference)


# --------------------------------------------------------------------------------------------
# HyperLoRAConfig
# --------------------------------------------------------------------------------------------


def test_config_target_modules_are_explicit():
    assert HyperLoRAConfig(target_modules=["q_proj", "v_proj"]).target_modules == (
        "q_proj",
        "v_proj",
    )
    assert HyperLoRAConfig(target_modules="all-linear").target_modules == "all-linear"
    assert target_modules_from_text(" q_proj, v_proj ") == ("q_proj", "v_proj")
    assert target_modules_from_text(r"re:.*\.(q|v)_proj") == r"re:.*\.(q|v)_proj"
    assert target_modules_from_text("all-linear") == "all-linear"
    for bad in ("q_proj", r".*\.q_proj", ["q_proj", "(q|v)"], [], "re:(unclosed", "re:"):
        with pytest.raises(ValueError, match="target_modules"):
            HyperLoRAConfig(target_modules=bad)


@pytest.mark.parametrize(
    "bad",
    [{"rank": 0}, {"alpha": 0.0}, {"dropout": 1.0}, {"hyper_hidden": 0}, {"activation": "relu"}],
)
def test_config_refuses_bad_hyperparameters(bad):
    with pytest.raises(ValueError):
        HyperLoRAConfig(**bad)


def test_config_round_trips_through_json():
    config = HyperLoRAConfig(rank=4, target_modules=("c_attn",), trainable_token_ids=[9, 2])
    data = json.loads(json.dumps(config.to_dict()))
    assert data["target_modules"] == ["c_attn"] and data["trainable_token_ids"] == [2, 9]
    assert HyperLoRAConfig.from_dict({**data, "adapted_modules": ["x"], "format": "y"}) == config


def test_config_module_imports_without_torch():
    code = "import sys, janus.hyperlora.config; assert 'torch' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
