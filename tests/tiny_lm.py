"""Tiny random causal LMs and HyperLoRA helpers shared by the HyperLoRA and checkpoint tests."""

from __future__ import annotations

import torch
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

from janus.hyperlora import DEFAULT_TARGETS, adapter_parameters, inject_hyperlora, rho_context

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


def targets_for(arch: str) -> tuple[str, ...]:
    return ("c_attn", "c_proj", "c_fc") if arch == "gpt2" else DEFAULT_TARGETS


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


def injected(arch: str, *, tie: bool | None = None, fuse: bool = False, **overrides):
    """A tiny model of ``arch`` with a random (non-zero) adapter; no dropout unless asked."""
    model = build_model(arch, tie=tie)
    overrides = {"dropout": 0.0, "target_modules": targets_for(arch), **overrides}
    inject_hyperlora(model, fuse=fuse, **overrides)
    randomise_adapter(model)
    return model


@torch.no_grad()
def logits_at(model: torch.nn.Module, ids: torch.Tensor, rho) -> torch.Tensor:
    with rho_context(model, rho):
        return model(ids).logits
