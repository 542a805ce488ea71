"""HyperLoRA layers, injection, ρ routing and merging on tiny random models (nothing downloaded)."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from janus.hyperlora import (
    DEFAULT_TARGETS,
    HyperLoRAConfig,
    HyperLoRALinear,
    RhoHyperNet,
    TiedTokenHead,
    TrainableTokenEmbedding,
    adapter_parameters,
    clear_rho,
    hyperlora_gates,
    inject_hyperlora,
    iter_hyperlora_layers,
    merge_at_rho,
    rho_context,
    set_rho,
    set_shared_input_fusion,
    unmerge,
)

VOCAB = 48
ARCHS = ["llama", "qwen2", "gpt2"]
ARCHS_WITH_MISTRAL = [*ARCHS, "mistral"]
_DECODERS = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
}


def build_model(
    arch: str, *, seed: int = 0, vocab: int = VOCAB, hidden: int = 32, tie: bool | None = None
) -> PreTrainedModel:
    """A tiny random causal LM in eval mode (no dropout, so outputs are deterministic)."""
    torch.manual_seed(seed)
    if arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_embd=hidden,
            n_layer=2,
            n_head=4,
            n_positions=64,
            bos_token_id=1,
            eos_token_id=2,
            tie_word_embeddings=True if tie is None else tie,
        )
        model = GPT2LMHeadModel(config)
    else:
        config_cls, model_cls = _DECODERS[arch]
        config = config_cls(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            bos_token_id=1,
            eos_token_id=2,
            tie_word_embeddings=bool(tie),
        )
        model = model_cls(config)
    return model.eval()


def targets_for(arch: str) -> list[str]:
    return ["c_attn", "c_proj", "c_fc"] if arch == "gpt2" else list(DEFAULT_TARGETS)


def randomise_adapter(model: torch.nn.Module, seed: int = 1) -> None:
    """Give B (zero at init) and the token rows random values so the adapter does something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param_name, param in adapter_parameters(model).items():
            noise = torch.randn(param.shape, generator=generator)
            if param_name.endswith("lora_B"):
                param.copy_(0.2 * noise)
            elif param_name.endswith("token_rows"):
                param.add_(0.5 * noise)


def token_batch(batch: int = 3, seq: int = 6, seed: int = 2) -> torch.Tensor:
    return torch.randint(3, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def injected(arch: str, **kwargs) -> PreTrainedModel:
    model = build_model(arch, tie=kwargs.pop("tie", None))
    inject_hyperlora(model, targets_for(arch), dropout=kwargs.pop("dropout", 0.0), **kwargs)
    randomise_adapter(model)
    return model


@torch.no_grad()
def logits_at(model: torch.nn.Module, ids: torch.Tensor, rho) -> torch.Tensor:
    with rho_context(model, rho):
        return model(ids).logits


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS_WITH_MISTRAL)
def test_fresh_injection_reproduces_base_exactly(arch):
    model = build_model(arch)
    ids = token_batch()
    with torch.no_grad():
        expected = model(ids).logits
    inject_hyperlora(model, targets_for(arch))
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
    summary = inject_hyperlora(
        base, targets_for(arch), rank=8, alpha=16, dropout=0.0, activation="identity"
    )
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
    inject_hyperlora(model, targets_for(arch), dropout=0.1, trainable_token_ids=new_tokens)
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
    clear_rho(model)
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


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_shared_input_fusion_gives_the_unfused_outputs_and_gradients(arch):
    """q/k/v and gate/up share one x Aᵀ GEMM: a speed switch, never a different model."""
    fused = injected(arch)
    plain = copy.deepcopy(fused)
    assert set_shared_input_fusion(plain, False) == 0
    assert set_shared_input_fusion(fused, True) == 2 * fused.config.num_hidden_layers
    ids = token_batch()
    rho = torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(logits_at(fused, ids, rho), logits_at(plain, ids, rho))
    grads = []
    for model in (fused, plain):
        model.train()
        set_rho(model, rho)
        model(ids).logits.pow(2).mean().backward()
        grads.append({n: p.grad for n, p in adapter_parameters(model).items()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


def test_shared_input_fusion_never_serves_a_stale_or_foreign_input():
    model = injected("llama")
    attention = model.model.layers[0].self_attn
    assert attention.q_proj._shared_input is attention.k_proj._shared_input
    assert attention.o_proj._shared_input is None  # o reads the attention output
    x = torch.randn(2, 5, 32)

    def alone(layer, inputs):  # the layer's own, unfused result
        group, layer._shared_input = layer._shared_input, None
        try:
            return layer(inputs)
        finally:
            layer._shared_input = group

    with rho_context(model, 0.3), torch.no_grad():
        attention.q_proj(x)  # caches x Aᵀ for k and v
        x.mul_(2.0)  # changed in place: k must not get the cached product of the old x
        torch.testing.assert_close(attention.k_proj(x), alone(attention.k_proj, x))
        attention.q_proj(x)
        other = torch.randn(2, 5, 32)  # another tensor: v must not get x's product
        torch.testing.assert_close(attention.v_proj(other), alone(attention.v_proj, other))
        attention.q_proj(x)
        with torch.no_grad():
            attention.k_proj.lora_A.add_(0.5)  # A changed after the cache was filled
        torch.testing.assert_close(attention.k_proj(x), alone(attention.k_proj, x))


def test_shared_input_fusion_is_off_under_dropout_and_survives_deepcopy():
    model = injected("llama", dropout=0.2)
    group = model.model.layers[0].mlp.gate_proj._shared_input
    model.train()
    assert not group.active()  # each adapter draws its own dropout mask
    model.eval()
    assert group.active()
    clone = copy.deepcopy(model)
    mlp = clone.model.layers[0].mlp
    assert mlp.gate_proj._shared_input is mlp.up_proj._shared_input
    assert mlp.gate_proj._shared_input.layers == [mlp.gate_proj, mlp.up_proj]
    ids = token_batch()
    before = logits_at(clone, ids, 0.4)
    with torch.no_grad():
        for _, layer in iter_hyperlora_layers(model):
            layer.lora_A.mul_(-1.0)  # the original changes; the copy must not see it
    torch.testing.assert_close(logits_at(clone, ids, 0.4), before)


# --------------------------------------------------------------------------------------------
# Injection and the hypernetwork
# --------------------------------------------------------------------------------------------


def test_target_selection_modes():
    all_linear = build_model("llama")
    summary = inject_hyperlora(all_linear, "all-linear")
    assert "lm_head" not in summary.matched and len(summary.matched) == 14

    regex = build_model("llama")
    summary = inject_hyperlora(regex, r"model\.layers\.1\.self_attn\.(q|v)_proj")
    assert summary.matched == ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]

    gpt2 = build_model("gpt2")
    summary = inject_hyperlora(gpt2, ["c_attn"])
    assert summary.matched == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    assert gpt2.transformer.h[0].attn.c_attn.fan_in_fan_out

    with pytest.raises(ValueError, match="c_attn"):
        inject_hyperlora(build_model("gpt2"))  # the default targets do not exist in GPT-2
    with pytest.raises(RuntimeError, match="already"):
        inject_hyperlora(gpt2, ["c_fc"])


def test_summary_counts_and_config_round_trip():
    model = build_model("llama")
    total = sum(p.numel() for p in model.parameters())
    summary = inject_hyperlora(model, rank=4, hyper_hidden=8, trainable_token_ids=[3, 3, 7])
    adapter = sum(p.numel() for p in adapter_parameters(model).values())
    assert summary.trainable_parameters == adapter
    assert summary.total_parameters == total + adapter  # token rows are a copy: counted again
    assert "14 layers adapted" in str(summary) and "2 trainable token rows" in str(summary)
    config = model.hyperlora_config
    assert config.trainable_token_ids == [3, 7]
    assert HyperLoRAConfig.from_dict({**config.to_dict(), "unrelated": 1}) == config


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
        RhoHyperNet(rank=2, activation="relu6")


def test_cached_gates_follow_hypernet_updates_and_new_rho():
    model = injected("llama")
    ids = token_batch(batch=2)
    set_rho(model, [0.3, 0.7])
    with torch.no_grad():
        first = model(ids).logits
        assert torch.equal(model(ids).logits, first)  # served from the gate cache
    layer = model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        layer.hypernet.net[4].bias.add_(3.0)  # in place, as an optimiser step would
        changed = model(ids).logits
        assert not torch.allclose(changed, first, atol=1e-4)
        set_rho(model, [0.7, 0.3])
        swapped = model(ids).logits
    set_rho(model, [0.7, 0.3])
    with torch.enable_grad():
        torch.testing.assert_close(model(ids).logits, swapped, atol=1e-6, rtol=0)
    torch.testing.assert_close(swapped[0], logits_at(model, ids[:1], 0.7)[0], atol=1e-5, rtol=0)


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
