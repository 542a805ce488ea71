"""A HyperLoRA model: injection, ρ routing, merge/unmerge and the adapter's parameters.

ρ reaches every layer through ``model.current_rho`` (the specification's contract), set with
:func:`set_rho` or :func:`rho_context`; each layer reads it through a weak reference to the
injected model, so ``.modules()`` never recurses and the model frees normally.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from janus.hyperlora.config import ALL_LINEAR, REGEX_PREFIX, HyperLoRAConfig, TargetModules
from janus.hyperlora.fusion import set_fusion
from janus.hyperlora.layer import (
    NO_RHO,
    HyperLoRALinear,
    RhoLike,
    TiedTokenHead,
    TrainableTokenEmbedding,
)
from janus.schema import rho_is_valid

# --------------------------------------------------------------------------------------------
# ρ: validation and routing
# --------------------------------------------------------------------------------------------


def normalise_rho(rho: RhoLike, num_beams: int = 1) -> float | Tensor:
    """Validate ρ and bring it to its canonical form: a python float or a float32 [B, 1] tensor.

    A float (or 0-d tensor) stands for the whole batch; anything 1-d or [B, 1] is one ρ per
    example, repeated ``num_beams`` times per example the way Hugging Face expands inputs for
    beam search (``repeat_interleave``). Every value must be finite and in [0, 1], or exactly
    −1.0 (the impasse label): a silently clamped or NaN ρ would train or steer the wrong dial.
    """
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
    if isinstance(rho, bool):
        raise TypeError("ρ must be a number or a tensor, not a bool")
    if isinstance(rho, int | float):
        _check_rho_values(torch.tensor([float(rho)]))
        return float(rho)
    values = torch.as_tensor(rho)
    shape = tuple(values.shape)
    if values.dim() == 0:
        return normalise_rho(float(values.item()))
    if not (values.is_floating_point() or values.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"ρ must hold real numbers, got dtype {values.dtype}")
    values = values.detach().to(torch.float32)
    if values.dim() == 1:
        values = values.unsqueeze(-1)
    if values.dim() != 2 or values.shape[1] != 1 or values.shape[0] == 0:
        raise ValueError(f"ρ must be a float, a [B] or a [B, 1] tensor, got shape {shape}")
    _check_rho_values(values)
    if num_beams > 1:
        values = values.repeat_interleave(num_beams, dim=0)
    return values


def _check_rho_values(values: Tensor) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"ρ must be finite, got {values.flatten().tolist()[:8]}")
    valid = rho_is_valid(values)
    if not bool(valid.all()):
        bad = values[~valid].flatten().tolist()[:8]
        raise ValueError(f"ρ must lie in [0, 1] or be exactly -1.0 (impasse), got {bad}")


def _rho_root(model: nn.Module) -> nn.Module:
    """The injected model itself, looking through wrappers such as DDP (``.module``)."""
    root = model
    while not is_injected(root) and isinstance(getattr(root, "module", None), nn.Module):
        root = root.module
    if not is_injected(root):
        raise ValueError(
            "this model has no HyperLoRA layers (not injected, or merged at a fixed ρ): "
            "ρ would have no effect"
        )
    return root


def set_rho(model: nn.Module, rho: RhoLike, *, num_beams: int = 1) -> None:
    """Set ``model.current_rho`` for the following forward passes (validated once, here)."""
    _rho_root(model).current_rho = normalise_rho(rho, num_beams)


@contextmanager
def rho_context(model: nn.Module, rho: RhoLike, *, num_beams: int = 1) -> Iterator[None]:
    """Run a block at ``rho``, then restore whatever ρ was set before (or none)."""
    root = _rho_root(model)
    previous = root.__dict__.get("current_rho")
    root.current_rho = normalise_rho(rho, num_beams)
    try:
        yield
    finally:
        root.current_rho = previous


def _resolved_rho(root: nn.Module, device: torch.device, name: str) -> tuple[Tensor, bool]:
    """``root.current_rho`` as (float32 [N, 1] tensor on ``device``, broadcasts-to-any-batch).

    Called by every layer on every forward, so the validated form is cached on the root and
    keyed on the identity (and in-place version) of the value: ``set_rho`` pays for validation
    once, and a value assigned directly to ``model.current_rho`` is still validated before use.
    """
    value = root.__dict__.get("current_rho")
    if value is None:
        raise RuntimeError(NO_RHO.format(name=name))
    # Inference tensors keep no version counter (and cannot be changed outside inference mode).
    version = value._version if isinstance(value, Tensor) and not value.is_inference() else None
    cached = root.__dict__.get("_hyperlora_rho_cache")
    if cached is not None and cached[0] is value and cached[1] == version and cached[2] == device:
        return cached[3]
    # Made outside inference mode: an inference tensor cached here would break a later
    # training forward at the same ρ ("cannot be saved for backward").
    with torch.inference_mode(False):
        canonical = normalise_rho(value)
        if isinstance(canonical, float):
            resolved = (torch.tensor([[canonical]], device=device), True)
        else:
            resolved = (canonical.to(device).clone(), False)
    root._hyperlora_rho_cache = (value, version, device, resolved)
    return resolved


class _RhoSource:
    """The ρ getter of every layer: a weak reference to the injected (root) model.

    A plain weak reference would survive ``copy.deepcopy(model)`` pointing at the *original*
    model, so the copy would silently read the original's ρ: ``__deepcopy__`` follows the copy.
    """

    def __init__(self, root: nn.Module) -> None:
        self._ref = weakref.ref(root)

    def __call__(self, device: torch.device, name: str) -> tuple[Tensor, bool]:
        model = self._ref()
        if model is None:
            raise RuntimeError(f"the model that HyperLoRA layer {name!r} was injected into is gone")
        return _resolved_rho(model, device, name)

    def __deepcopy__(self, memo: dict[int, Any]) -> _RhoSource:
        root = self._ref()
        return _RhoSource(memo.get(id(root), root))


# --------------------------------------------------------------------------------------------
# Injection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InjectionSummary:
    """What :func:`inject_hyperlora` did, readable with ``print(summary)``."""

    matched: list[str]
    trainable_parameters: int
    total_parameters: int
    config: HyperLoRAConfig

    def __str__(self) -> str:
        share = 100.0 * self.trainable_parameters / max(self.total_parameters, 1)
        shown = ", ".join(self.matched[:4]) + (", ..." if len(self.matched) > 4 else "")
        tokens = len(self.config.trainable_token_ids)
        return (
            f"HyperLoRA: {len(self.matched)} layers adapted (rank {self.config.rank}, "
            f"alpha {self.config.alpha:g}, {tokens} trainable token rows); "
            f"trainable {self.trainable_parameters:,} / {self.total_parameters:,} parameters "
            f"({share:.2f}%); layers: {shown}"
        )


def output_head(model: nn.Module) -> nn.Module | None:
    """The model's output embedding (LM head), if it has one."""
    getter = getattr(model, "get_output_embeddings", None)
    return getter() if callable(getter) else None


def _match_targets(model: nn.Module, target_modules: TargetModules) -> list[str]:
    """Qualified names of the linear / Conv1D layers that ``target_modules`` selects.

    ``"all-linear"``: every one; ``"re:<pattern>"``: those whose whole qualified name matches;
    a tuple: name suffixes (``q_proj`` matches ``model.layers.0.self_attn.q_proj``). The
    output head is never adapted.
    """
    head = output_head(model)
    candidates = [
        name
        for name, module in model.named_modules()
        if name and isinstance(module, nn.Linear | Conv1D) and module is not head
    ]
    if target_modules == ALL_LINEAR:
        matched = candidates
    elif isinstance(target_modules, str):
        pattern = re.compile(target_modules.removeprefix(REGEX_PREFIX))
        matched = [n for n in candidates if pattern.fullmatch(n)]
    else:
        matched = [
            n for n in candidates if any(n == s or n.endswith("." + s) for s in target_modules)
        ]
    if not matched:
        some = sorted({n.rsplit(".", 1)[-1] for n in candidates})[:12]
        raise ValueError(
            f"target_modules={target_modules!r} matched no linear layer of "
            f"{type(model).__name__}; its linear layers end in {some} (e.g. {candidates[:3]}); "
            "pass name suffixes, 're:<regex on the full name>', or 'all-linear'"
        )
    return matched


def _replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _module_name(model: nn.Module, target: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is target:
            return name
    raise ValueError(f"{type(target).__name__} is not a submodule of this model")


def is_injected(model: nn.Module) -> bool:
    """Whether ``model`` carries live HyperLoRA adapters (not merged)."""
    return hasattr(model, "hyperlora_config")


def inject_hyperlora(
    model: nn.Module,
    config: HyperLoRAConfig | None = None,
    *,
    fuse: bool = False,
    **overrides: Any,
) -> InjectionSummary:
    """Wrap the target layers in HyperLoRA adapters bound to ``model.current_rho``; freeze the rest.

    ``config`` defaults to ``HyperLoRAConfig()``; keyword ``overrides`` replace its fields
    (``inject_hyperlora(model, rank=16, alpha=32)``). ``fuse`` plugs in the speed-ups of
    :mod:`janus.hyperlora.fusion` (same outputs). ``config.trainable_token_ids`` become
    trainable through :class:`TrainableTokenEmbedding`, and through :class:`TiedTokenHead`
    when the output head shares the input embedding's weight; an untied head stays frozen
    (the new tokens are prompt markers the model reads, not tokens it emits). Resize the
    embeddings (``janus.checkpoint.resize_for_tokenizer``) before injecting, not after.
    """
    config = (config or HyperLoRAConfig()).replace(**overrides)
    if is_injected(model) or any(isinstance(m, HyperLoRALinear) for m in model.modules()):
        raise RuntimeError("this model already has HyperLoRA layers; inject once")
    names = _match_targets(model, config.target_modules)
    token_ids = list(config.trainable_token_ids)
    embedding = model.get_input_embeddings() if token_ids else None
    if embedding is not None and token_ids[-1] >= embedding.weight.shape[0]:
        vocab = embedding.weight.shape[0]
        raise ValueError(f"trainable_token_ids must lie in [0, {vocab}), got {token_ids}")

    model.requires_grad_(False)
    source = _RhoSource(model)
    for name in names:
        layer = HyperLoRALinear(model.get_submodule(name), config, rho_source=source, name=name)
        _replace_module(model, name, layer)
    if embedding is not None:
        head = output_head(model)
        wrapper = TrainableTokenEmbedding(embedding, token_ids)
        _replace_module(model, _module_name(model, embedding), wrapper)
        if head is not None and head.weight is embedding.weight:
            _replace_module(model, _module_name(model, head), TiedTokenHead(head, wrapper))
    if fuse:
        set_fusion(model, shared_input=True, gate_cache=True)

    model.hyperlora_config = config
    model.current_rho = None
    parameters = list(model.parameters())  # de-duplicated: tied weights count once
    return InjectionSummary(
        matched=names,
        trainable_parameters=sum(p.numel() for p in parameters if p.requires_grad),
        total_parameters=sum(p.numel() for p in parameters),
        config=config,
    )


def iter_hyperlora_layers(model: nn.Module) -> Iterator[tuple[str, HyperLoRALinear]]:
    """(qualified name, layer) of every HyperLoRA layer, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, HyperLoRALinear):
            yield name, module


def hyperlora_gates(model: nn.Module, rho: RhoLike) -> Tensor:
    """Every layer's g(ρ), concatenated: [B, n_layers * rank], differentiable.

    Used by the trainer's gate-separation loss; ρ is given here, not read from the model.
    """
    layers = [layer for _, layer in iter_hyperlora_layers(model)]
    if not layers:
        raise ValueError("this model has no HyperLoRA layers")
    canonical = normalise_rho(rho)
    return torch.cat([layer.gate(canonical) for layer in layers], dim=-1)


# --------------------------------------------------------------------------------------------
# The adapter's parameters
# --------------------------------------------------------------------------------------------


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The adapter's own parameters by qualified name: A, B, hypernets and trained token rows.

    Chosen by module type rather than ``requires_grad``, so a partly frozen adapter is still
    saved whole.
    """
    found: dict[str, nn.Parameter] = {}
    for name, module in model.named_modules():
        if isinstance(module, HyperLoRALinear):
            for param_name, param in module.named_parameters():
                if not param_name.startswith("base_layer."):
                    found[f"{name}.{param_name}"] = param
        elif isinstance(module, TrainableTokenEmbedding):
            found[f"{name}.token_rows"] = module.token_rows
    return found


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Detached CPU copies of :func:`adapter_parameters` (what a checkpoint stores)."""
    return {k: p.detach().cpu().contiguous().clone() for k, p in adapter_parameters(model).items()}


def load_adapter_state_dict(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy ``state`` into the adapter, strictly: every key, shape and value must fit."""
    params = adapter_parameters(model)
    missing = sorted(params.keys() - state.keys())
    unexpected = sorted(state.keys() - params.keys())
    if missing or unexpected:
        raise ValueError(
            f"adapter state does not fit the model: missing keys {missing[:6]}"
            f"{' ...' if len(missing) > 6 else ''}, unexpected keys {unexpected[:6]}"
            f"{' ...' if len(unexpected) > 6 else ''}"
        )
    for key, param in params.items():
        value = state[key]
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(
                f"adapter tensor {key!r} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(param.shape)}"
            )
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"adapter tensor {key!r} holds NaN or infinite values")
    with torch.no_grad():
        for key, param in params.items():
            param.copy_(state[key].to(device=param.device, dtype=param.dtype))


# --------------------------------------------------------------------------------------------
# Merge / unmerge
# --------------------------------------------------------------------------------------------


@dataclass
class _MergeState:
    """What :func:`unmerge` needs: the wrappers, the original weights and the removed attributes.

    ``originals`` holds a copy of every adapted base weight (and the replaced token rows): the
    memory of the adapted layers once more, the price of a bit-exact unmerge.
    """

    config: HyperLoRAConfig
    layers: list[tuple[str, nn.Module]]
    originals: list[Tensor] | None
    rho: float


def _wrappers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    kinds = (HyperLoRALinear, TrainableTokenEmbedding, TiedTokenHead)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]


def merge_at_rho(model: nn.Module, rho: float, *, keep_original: bool = True) -> nn.Module:
    """Fold the adapters at one fixed ρ into the base weights; return the plain model.

    Each adapted weight gets ``(α/r) B diag(g(ρ)) A`` (transposed for Conv1D), the trained
    token rows are written into the embedding, and every wrapper is swapped for its base
    module: the result is an ordinary transformers model (``save_pretrained``-able, no ρ
    needed, zero overhead). With ``keep_original`` (default) a copy of each adapted weight is
    kept so that :func:`unmerge` restores the HyperLoRA model bit-exactly; that copy costs as
    much memory as the adapted layers themselves. Pass ``keep_original=False`` to export only.
    """
    if not is_injected(model):
        raise ValueError("merge_at_rho needs a model with HyperLoRA layers (inject_hyperlora)")
    value = normalise_rho(rho)
    if not isinstance(value, float):
        raise ValueError("merge_at_rho takes a single ρ (a float), not one per example")
    wrappers = _wrappers(model)
    originals: list[Tensor] | None = [] if keep_original else None
    with torch.no_grad():
        for name, wrapper in wrappers:
            base = wrapper.base_layer
            if isinstance(wrapper, HyperLoRALinear):
                if originals is not None:
                    originals.append(base.weight.detach().clone())
                merged = base.weight.to(torch.float32) + wrapper.delta_weight(value)
                base.weight.copy_(merged.to(base.weight.dtype))
            elif isinstance(wrapper, TrainableTokenEmbedding):
                if originals is not None:
                    originals.append(base.weight[wrapper.token_ids].detach().clone())
                base.weight[wrapper.token_ids] = wrapper.token_rows.to(base.weight.dtype)
            _replace_module(model, name, base)
    model._hyperlora_merged = _MergeState(model.hyperlora_config, wrappers, originals, value)
    del model.hyperlora_config
    model.__dict__.pop("current_rho", None)
    model.__dict__.pop("_hyperlora_rho_cache", None)
    return model


def is_merged(model: nn.Module) -> bool:
    """Whether ``model`` was merged by :func:`merge_at_rho` (and may be unmerged)."""
    return "_hyperlora_merged" in model.__dict__


def unmerge(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_at_rho`: original weights back, wrappers back, ρ unset."""
    state: _MergeState | None = model.__dict__.get("_hyperlora_merged")
    if state is None:
        raise ValueError("this model was not merged by merge_at_rho")
    if state.originals is None:
        raise ValueError("merged with keep_original=False: the original weights are gone")
    originals = iter(state.originals)
    with torch.no_grad():
        for name, wrapper in state.layers:
            base = wrapper.base_layer
            if isinstance(wrapper, HyperLoRALinear):
                base.weight.copy_(next(originals))
            elif isinstance(wrapper, TrainableTokenEmbedding):
                base.weight[wrapper.token_ids] = next(originals)
            _replace_module(model, name, wrapper)
    del model._hyperlora_merged
    model.hyperlora_config = state.config
    model.current_rho = None
    return model
