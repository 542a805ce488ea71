"""Opt-in speed-ups of HyperLoRA layers; outputs and gradients equal the plain path's.

* :class:`SharedInputGEMM`: q/k/v (and gate/up) of a block read one tensor. With rank r the
  adapter's first GEMM is skinny (r output columns) and bound by reading x: stacking the
  siblings' A reads x once instead of three times, and in backward gives one GEMM for x's
  gradient instead of three.
* :class:`GateCache`: generation runs one forward per new token at the same ρ; without
  autograd, (α/r)·g(ρ) is reused instead of rerunning each layer's hypernet.

Both are switched on with ``inject_hyperlora(..., fuse=True)`` or :func:`set_fusion`.
Measured on their own by ``benchmarks/bench_fusion.py`` (figures in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from janus.hyperlora.layer import HyperLoRALinear

SHARED_INPUT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj"),
    ("gate_proj", "up_proj"),
)
"""Sibling projections that a transformer block calls one after the other on the same tensor."""


class GateCache:
    """(α/r)·g(ρ) of one layer, reused while ρ and the hypernet are unchanged.

    The key is the ρ tensor itself plus the version and storage of every hypernet parameter,
    so an optimiser step, a state load or a move to another device invalidates it. With
    autograd on, g is always recomputed (the graph needs it).
    """

    def __init__(self) -> None:
        self._entry: tuple[Tensor, tuple[tuple[int, int], ...], Tensor] | None = None

    def scaled_gate(self, layer: HyperLoRALinear, rho: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            self._entry = None
            return layer.hypernet(rho) * layer.scaling
        key = tuple((p._version, p.data_ptr()) for p in layer.hypernet.parameters())
        entry = self._entry
        if entry is not None and entry[0] is rho and entry[1] == key:
            return entry[2]
        gate = layer.hypernet(rho) * layer.scaling
        self._entry = (rho, key, gate)
        return gate

    def __deepcopy__(self, memo: dict[int, Any]) -> GateCache:
        return GateCache()  # a copy starts empty: never the original's tensors

    def __getstate__(self) -> dict[str, Any]:
        return {"_entry": None}


class SharedInputGEMM:
    """One ``x Aᵀ`` GEMM for sibling adapters that read the very same input tensor.

    The stacked result is kept for the siblings until each has taken its slice, keyed on the
    identity and version of x, the version and storage of every A, grad mode and autocast, so
    a stale or foreign input is never served: anything else is computed afresh. Inactive
    under training-mode dropout (each adapter draws its own mask).
    """

    def __init__(self, layers: Sequence[HyperLoRALinear]) -> None:
        self.layers = list(layers)
        self._entry: tuple[Any, tuple[Any, ...], Tensor, set[int]] | None = None

    def active(self) -> bool:
        return all(
            isinstance(member.dropout, nn.Identity) or not member.training for member in self.layers
        )

    def _key(self, x: Tensor) -> tuple[Any, ...]:
        version = None if x.is_inference() else x._version
        weights = tuple(
            (member.lora_A._version, member.lora_A.data_ptr()) for member in self.layers
        )
        autocast = torch.is_autocast_enabled(x.device.type)
        return (version, weights, torch.is_grad_enabled(), autocast)

    def hidden(self, layer: HyperLoRALinear, x: Tensor, x_in: Tensor) -> Tensor:
        """``x_in Aᵀ`` of ``layer`` ([..., r]), from the siblings' shared GEMM."""
        index = self.layers.index(layer)
        key = self._key(x)
        entry = self._entry
        if entry is not None and entry[0]() is x and entry[1] == key and index in entry[3]:
            entry[3].discard(index)
            stacked_hidden = entry[2]
            if not entry[3]:
                self._entry = None
        else:
            stacked = torch.cat([member.lora_A for member in self.layers], dim=0)
            stacked_hidden = F.linear(x_in, stacked)
            pending = set(range(len(self.layers))) - {index}
            self._entry = (weakref.ref(x), key, stacked_hidden, pending)
        start = sum(member.rank for member in self.layers[:index])
        return stacked_hidden[..., start : start + layer.rank]

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedInputGEMM:
        # The copy serves the copied layers (one group object for all of them, registered in
        # memo before they are copied), and never the original's cached result.
        clone = SharedInputGEMM.__new__(SharedInputGEMM)
        memo[id(self)] = clone
        clone.layers = [copy.deepcopy(layer, memo) for layer in self.layers]
        clone._entry = None
        return clone

    def __getstate__(self) -> dict[str, Any]:
        return {"layers": self.layers, "_entry": None}


def _layers(model: nn.Module) -> Iterator[tuple[str, HyperLoRALinear]]:
    for name, module in model.named_modules():
        if isinstance(module, HyperLoRALinear):
            yield name, module


def set_fusion(model: nn.Module, *, shared_input: bool, gate_cache: bool) -> int:
    """Plug the shared-input GEMM and/or the gate cache into every HyperLoRA layer, or unplug.

    Siblings are HyperLoRA layers of one parent module named as in
    :data:`SHARED_INPUT_GROUPS` with the same input width. Returns the number of
    shared-input groups formed.
    """
    by_parent: dict[str, dict[str, HyperLoRALinear]] = {}
    for name, layer in _layers(model):
        layer.shared_input = None
        layer.gate_cache = GateCache() if gate_cache else None
        parent, _, child = name.rpartition(".")
        by_parent.setdefault(parent, {})[child] = layer
    if not shared_input:
        return 0
    groups = 0
    for children in by_parent.values():
        for names in SHARED_INPUT_GROUPS:
            members = [children[n] for n in names if n in children]
            if len(members) < 2 or len({m.in_features for m in members}) != 1:
                continue
            group = SharedInputGEMM(members)
            for member in members:
                member.shared_input = group
            groups += 1
    return groups
