"""Janus: continuously steerable negotiation agents.

One frozen causal language model, one small hypernetwork per adapted layer that turns the
requested outcome ρ into the gates of a LoRA adapter: a dial instead of a persona.

The public API is importable from here (``from janus import inject_hyperlora, JanusAgent``),
but lazily (PEP 562): a name's module is imported on first use, so ``import janus`` and
``janus --help`` never pay for torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it (or re-exports it). One table: __getattr__,
# __all__ and __dir__ are derived from it.
_LAZY: dict[str, str] = {
    # the method: ρ-conditioned adapters
    "HyperLoRAConfig": "janus.hyperlora",
    "HyperLoRALinear": "janus.hyperlora",
    "RhoHyperNet": "janus.hyperlora",
    "inject_hyperlora": "janus.hyperlora",
    "rho_context": "janus.hyperlora",
    "set_rho": "janus.hyperlora",
    "merge_at_rho": "janus.hyperlora",
    # adapter files
    "save_hyperlora_adapter": "janus.checkpoint",
    "load_hyperlora": "janus.checkpoint",
    "export_peft": "janus.export",
    "export_adapter": "janus.export",
    # the agent
    "JanusAgent": "janus.agent",
    "ObservationError": "janus.observation",
    "check_observation": "janus.observation",
    # the domain and the episode loop
    "Role": "janus.domain",
    "Action": "janus.domain",
    "Observation": "janus.domain",
    "Outcome": "janus.domain",
    "DomainConfig": "janus.domain",
    "compute_rho": "janus.domain",
    "Match": "janus.episode",
    "run_episode": "janus.episode",
    "run_episodes": "janus.episode",
    "create_strategy": "janus.strategies",
    # the canonical prompt
    "PromptState": "janus.prompt",
    "build_prompt": "janus.prompt",
    "parse_action": "janus.prompt",
    # data
    "DatasetWriter": "janus.dataset",
    "DatasetReader": "janus.dataset",
    "DataValidationError": "janus.dataset",
    # training
    "TrainConfig": "janus.train",
    "TrainResult": "janus.train",
    "RefineConfig": "janus.refine",
    "CalibrationMap": "janus.calibration",
    # evaluation
    "EvaluationConfig": "janus.evaluation",
    "EvaluationResult": "janus.evaluation",
    "EvaluationSummary": "janus.evaluation",
    "evaluate": "janus.evaluation",
    "load_summary": "janus.evaluation",
    "headline_table": "janus.evaluation",
    "compare_reports": "janus.evaluation",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use, then keep the value here."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
