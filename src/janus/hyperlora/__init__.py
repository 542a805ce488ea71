"""HyperLoRA: one frozen causal LM, LoRA adapters whose rank components a hypernetwork gates by ρ.

Per adapted layer: ``W(ρ) = W_base + (α/r) · B · diag(g(ρ)) · A``, one ρ per example::

    summary = inject_hyperlora(model, rank=16, alpha=32)  # freezes the base, adds the adapters
    with rho_context(model, [0.2, 0.8]):
        logits = model(input_ids).logits

=================  ===================================================================
``config``         :class:`HyperLoRAConfig`, the only place adapter defaults live (no torch)
``layer``          :class:`RhoHyperNet`, :class:`HyperLoRALinear`, trainable token rows
``model``          injection, ρ routing (``model.current_rho``), merge/unmerge, state dicts
``fusion``         opt-in speed-ups: shared q/k/v and gate/up GEMM, gate cache
=================  ===================================================================

Saving and loading live in :mod:`janus.checkpoint`, PEFT export in :mod:`janus.export`. The
torch-backed names load on first use, so ``from janus.hyperlora.config import HyperLoRAConfig``
stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from janus.hyperlora.config import (
    ACTIVATIONS,
    ALL_LINEAR,
    DEFAULT_TARGETS,
    REGEX_PREFIX,
    HyperLoRAConfig,
    TargetModules,
    check_target_modules,
    target_modules_from_text,
    target_modules_to_text,
)

if TYPE_CHECKING:
    from janus.hyperlora.fusion import SHARED_INPUT_GROUPS, GateCache, SharedInputGEMM, set_fusion
    from janus.hyperlora.layer import (
        HyperLoRALinear,
        RhoHyperNet,
        RhoLike,
        TiedTokenHead,
        TrainableTokenEmbedding,
    )
    from janus.hyperlora.model import (
        InjectionSummary,
        adapter_parameters,
        adapter_state_dict,
        hyperlora_gates,
        inject_hyperlora,
        is_injected,
        is_merged,
        iter_hyperlora_layers,
        load_adapter_state_dict,
        merge_at_rho,
        normalise_rho,
        output_head,
        rho_context,
        set_rho,
        unmerge,
    )

__all__ = [
    "ACTIVATIONS",
    "ALL_LINEAR",
    "DEFAULT_TARGETS",
    "REGEX_PREFIX",
    "SHARED_INPUT_GROUPS",
    "GateCache",
    "HyperLoRAConfig",
    "HyperLoRALinear",
    "InjectionSummary",
    "RhoHyperNet",
    "RhoLike",
    "SharedInputGEMM",
    "TargetModules",
    "TiedTokenHead",
    "TrainableTokenEmbedding",
    "adapter_parameters",
    "adapter_state_dict",
    "check_target_modules",
    "hyperlora_gates",
    "inject_hyperlora",
    "is_injected",
    "is_merged",
    "iter_hyperlora_layers",
    "load_adapter_state_dict",
    "merge_at_rho",
    "normalise_rho",
    "output_head",
    "rho_context",
    "set_fusion",
    "set_rho",
    "target_modules_from_text",
    "target_modules_to_text",
    "unmerge",
]


_MISSING = object()


def __getattr__(name: str) -> Any:
    """The torch-backed public names, imported on first use."""
    if name in __all__:
        for module in ("model", "layer", "fusion"):
            value = getattr(importlib.import_module(f"{__name__}.{module}"), name, _MISSING)
            if value is not _MISSING:
                globals()[name] = value  # later look-ups skip this function
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
