"""The opt-in fusion (shared q/k/v and gate/up GEMM, gate cache) against the plain path.

A speed switch, never a different model: outputs and gradients must equal the plain ones.
"""

from __future__ import annotations

import copy

import pytest
import torch

from janus.hyperlora import adapter_parameters, iter_hyperlora_layers, rho_context, set_rho
from tiny_lm import ARCHS, injected, logits_at, token_batch


def _pair(arch: str, **overrides):
    """The same adapter twice: plain and fused (identical weights, checked)."""
    plain = injected(arch, **overrides)
    fused = injected(arch, fuse=True, **overrides)
    assert all(
        torch.equal(a, b) for a, b in zip(plain.parameters(), fused.parameters(), strict=True)
    )
    return plain, fused


def _grads(model, ids, rho) -> dict[str, torch.Tensor]:
    model.train()
    set_rho(model, rho)
    model(ids).logits.pow(2).mean().backward()
    return {name: param.grad for name, param in adapter_parameters(model).items()}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_fused_outputs_and_gradients_equal_the_plain_path(arch):
    plain, fused = _pair(arch)
    ids, rho = token_batch(), torch.tensor([0.1, 0.5, 0.9])
    expected = logits_at(plain, ids, rho)
    for _ in range(2):  # the second pass is served by the gate cache
        torch.testing.assert_close(logits_at(fused, ids, rho), expected)
    plain_grads, fused_grads = _grads(plain, ids, rho), _grads(fused, ids, rho)
    assert plain_grads.keys() == fused_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, msg=name)


def test_fusion_is_opt_in_and_groups_q_k_v_and_gate_up():
    plain, fused = _pair("llama")
    assert all(layer.shared_input is None for _, layer in iter_hyperlora_layers(plain))
    assert all(layer.gate_cache is None for _, layer in iter_hyperlora_layers(plain))
    attention, mlp = fused.model.layers[0].self_attn, fused.model.layers[0].mlp
    assert attention.q_proj.shared_input.layers == [
        attention.q_proj,
        attention.k_proj,
        attention.v_proj,
    ]
    assert mlp.gate_proj.shared_input.layers == [mlp.gate_proj, mlp.up_proj]
    assert attention.o_proj.shared_input is None  # o reads the attention output, not x


@pytest.mark.parametrize("arch", ARCHS)
def test_fused_generation_equals_plain_generation(arch):
    plain, fused = _pair(arch)
    ids = token_batch(batch=2, seq=4)
    outputs = []
    for model in (plain, fused):
        model.generation_config.eos_token_id = None
        with rho_context(model, [0.15, 0.85]):
            outputs.append(
                model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=5,
                    do_sample=False,
                    pad_token_id=0,
                )
            )
    assert torch.equal(outputs[0], outputs[1])


def test_the_gate_cache_follows_hypernet_updates_and_new_rho():
    plain, fused = _pair("llama")
    ids = token_batch(batch=2)
    for model in (plain, fused):
        set_rho(model, [0.3, 0.7])
    with torch.no_grad():
        first = fused(ids).logits
        for model in (plain, fused):  # in place, as an optimiser step would
            model.model.layers[0].self_attn.q_proj.hypernet.net[4].bias.add_(3.0)
        changed = fused(ids).logits
        assert not torch.allclose(changed, first, atol=1e-4)
        torch.testing.assert_close(changed, plain(ids).logits)
        for model in (plain, fused):
            set_rho(model, [0.7, 0.3])
        torch.testing.assert_close(fused(ids).logits, plain(ids).logits)


def test_shared_gemm_never_serves_a_stale_or_foreign_input():
    plain, fused = _pair("llama")
    reference, attention = plain.model.layers[0].self_attn, fused.model.layers[0].self_attn
    x = torch.randn(2, 5, 32)
    with rho_context(plain, 0.3), rho_context(fused, 0.3), torch.no_grad():
        attention.q_proj(x)  # caches x Aᵀ for k and v
        x.mul_(2.0)  # changed in place: k must not get the cached product of the old x
        torch.testing.assert_close(attention.k_proj(x), reference.k_proj(x))
        attention.q_proj(x)
        other = torch.randn(2, 5, 32)  # another tensor: v must not get x's product
        torch.testing.assert_close(attention.v_proj(other), reference.v_proj(other))
        attention.q_proj(x)
        for layers in (reference, attention):  # A changed after the cache was filled
            layers.k_proj.lora_A.add_(0.5)
        torch.testing.assert_close(attention.k_proj(x), reference.k_proj(x))


def test_fused_training_with_dropout_draws_each_adapter_its_own_mask():
    plain, fused = _pair("llama", dropout=0.2)
    ids, rho = token_batch(), torch.tensor([0.2, 0.4, 0.6])
    torch.manual_seed(5)
    plain_grads = _grads(plain, ids, rho)
    torch.manual_seed(5)
    fused_grads = _grads(fused, ids, rho)  # same masks in the same order: the plain path ran
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, msg=name)
    fused.eval()
    torch.testing.assert_close(logits_at(fused, ids, rho), logits_at(plain.eval(), ids, rho))


def test_a_deep_copy_of_a_fused_model_is_fused_and_independent():
    _, fused = _pair("llama")
    clone = copy.deepcopy(fused)
    mlp = clone.model.layers[0].mlp
    assert mlp.gate_proj.shared_input is mlp.up_proj.shared_input
    assert mlp.gate_proj.shared_input.layers == [mlp.gate_proj, mlp.up_proj]
    ids = token_batch()
    before = logits_at(clone, ids, 0.4)
    with torch.no_grad():
        for _, layer in iter_hyperlora_layers(fused):
            layer.lora_A.mul_(-1.0)  # the original changes; the copy must not see it
    torch.testing.assert_close(logits_at(clone, ids, 0.4), before)
    assert not torch.allclose(logits_at(fused, ids, 0.4), before, atol=1e-4)
