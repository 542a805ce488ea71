"""HyperLoRA: one frozen causal LM, LoRA adapters whose rank components a hypernetwork gates by ρ.

Per adapted layer: ``y = base(x) + (α/r) · ((dropout(x) Aᵀ) ⊙ g(ρ)) Bᵀ`` with
``g = RhoHyperNet(ρ)``, one ρ per example of the batch. ρ reaches the layers through
``model.current_rho`` (the specification's contract), set with :func:`set_rho` or
:func:`rho_context`.

Three lines put a ρ-dial on a model::

    summary = inject_hyperlora(model)            # freezes the base, adds the adapters
    with rho_context(model, 0.7):
        logits = model(input_ids).logits

:func:`merge_at_rho` folds the adapters at one fixed ρ into a plain transformers model; saving,
loading and PEFT export live in :mod:`janus.checkpoint`. Depends on torch and transformers only.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from janus.schema import rho_is_valid

DEFAULT_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
ALL_LINEAR = "all-linear"

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}
_NO_RHO = (
    "HyperLoRA layer {name!r} needs ρ but none is set: call set_rho(model, rho) or use "
    "`with rho_context(model, rho): ...` before the forward pass."
)

RhoLike = float | int | Tensor | Sequence[float]


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
    while not hasattr(root, "hyperlora_config") and isinstance(
        getattr(root, "module", None), nn.Module
    ):
        root = root.module
    if not hasattr(root, "hyperlora_config"):
        raise ValueError(
            "this model has no HyperLoRA layers (not injected, or merged at a fixed ρ): "
            "ρ would have no effect"
        )
    return root


def set_rho(model: nn.Module, rho: RhoLike, *, num_beams: int = 1) -> None:
    """Set ``model.current_rho`` for the following forward passes (validated once, here)."""
    root = _rho_root(model)
    root.current_rho = normalise_rho(rho, num_beams)


def clear_rho(model: nn.Module) -> None:
    """Unset ρ: the next forward raises instead of reusing a value meant for another batch."""
    _rho_root(model).current_rho = None


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
        raise RuntimeError(_NO_RHO.format(name=name))
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

    Registering the root as a submodule of its own layers would make ``.modules()`` and
    ``state_dict()`` recurse; a weak reference also lets the model be freed normally. A plain
    weak reference would survive ``copy.deepcopy(model)`` pointing at the *original* model, so
    the copy would silently read the original's ρ: ``__deepcopy__`` follows the copy instead.
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
# Layers
# --------------------------------------------------------------------------------------------


def _rho_column(rho: RhoLike, device: torch.device, dtype: torch.dtype) -> Tensor:
    """ρ as a [B, 1] tensor (no range check: the hypernet is a plain function of ρ)."""
    values = torch.as_tensor(rho, dtype=dtype, device=device)
    if values.dim() == 0:
        return values.view(1, 1)
    if values.dim() == 1:
        return values.unsqueeze(-1)
    if values.dim() == 2 and values.shape[1] == 1:
        return values
    raise ValueError(
        f"ρ must be a float, a [B] or a [B, 1] tensor, got shape {tuple(values.shape)}"
    )


class RhoHyperNet(nn.Module):
    """Maps ρ to the gate vector g(ρ) ∈ R^rank of one adapted layer.

    ρ → [ρ, sin(ρ·2^i·π), cos(ρ·2^i·π) for i < fourier_features] → Linear → SiLU → Linear →
    SiLU → Linear → activation. Fourier features let a small MLP draw sharper functions of a
    scalar; the sigmoid default keeps every gate in (0, 1).
    """

    def __init__(
        self,
        rank: int,
        hidden: int = 64,
        fourier_features: int = 0,
        activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        if rank < 1 or hidden < 1 or fourier_features < 0:
            raise ValueError("rank and hidden must be positive, fourier_features non-negative")
        self.rank = rank
        self.fourier_features = fourier_features
        self.net = nn.Sequential(
            nn.Linear(1 + 2 * fourier_features, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, rank),
            _ACTIVATIONS[activation](),
        )
        frequencies = (2.0 ** torch.arange(fourier_features, dtype=torch.float32)) * math.pi
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, rho: RhoLike) -> Tensor:
        """ρ (float, [B] or [B, 1]) → g of shape [B, rank]."""
        first = self.net[0].weight
        column = _rho_column(rho, first.device, first.dtype)
        if self.fourier_features:
            angles = column * self.frequencies.to(column.dtype)
            column = torch.cat([column, torch.sin(angles), torch.cos(angles)], dim=-1)
        return self.net(column)


def _linear_shape(layer: nn.Module) -> tuple[int, int, bool]:
    """(in_features, out_features, fan_in_fan_out) of an nn.Linear or GPT-2's Conv1D."""
    if isinstance(layer, Conv1D):
        in_features, out_features = layer.weight.shape  # Conv1D stores W transposed: [in, out]
        return in_features, out_features, True
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features, False
    raise TypeError(f"HyperLoRA adapts nn.Linear and Conv1D layers, got {type(layer).__name__}")


#: Sibling projections that a transformer block calls one after the other on the same tensor.
SHARED_INPUT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj"),
    ("gate_proj", "up_proj"),
)


class _SharedInput:
    """One ``x Aᵀ`` GEMM for sibling adapters that read the very same input tensor.

    q/k/v (and gate/up) of a block are called in turn on one tensor. With rank r the adapter's
    first GEMM is skinny (r output columns) and bound by reading x: stacking the siblings' A
    reads x once instead of three times, and in backward gives one GEMM for x's gradient (and
    one addition into the base's) instead of three. The result is cached for the siblings
    until each has taken its slice, keyed on the identity and version of x, the version and
    storage of every A, grad mode and autocast, so a stale or foreign input is never served:
    anything else is computed afresh. Only used without active dropout (each adapter would
    draw its own mask).
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

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedInput:
        # The copy serves the copied layers (one group object for all of them, registered in
        # memo before they are copied), and never the original's cached result.
        import copy

        clone = _SharedInput.__new__(_SharedInput)
        memo[id(self)] = clone
        clone.layers = [copy.deepcopy(layer, memo) for layer in self.layers]
        clone._entry = None
        return clone

    def __getstate__(self) -> dict[str, Any]:
        return {"layers": self.layers, "_entry": None}


class HyperLoRALinear(nn.Module):
    """A frozen linear (or Conv1D) layer plus a ρ-gated low-rank update.

    ``y = base(x) + (α/r) · ((dropout(x) Aᵀ) ⊙ g(ρ)) Bᵀ``. A is Kaiming-uniform and B zero, so
    a fresh adapter reproduces the base exactly. The adapter (A, B, hypernet) is kept in
    float32 whatever the base dtype: the input is cast up for the adapter path and the delta
    cast back to the base's output dtype, so a bf16 base trains fp32 adapters.
    """

    def __init__(
        self,
        base_layer: nn.Module,
        *,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        hyper_hidden: int = 64,
        fourier_features: int = 0,
        activation: str = "sigmoid",
        rho_getter: Callable[[torch.device, str], tuple[Tensor, bool]] | None = None,
        name: str = "",
    ) -> None:
        super().__init__()
        in_features, out_features, fan_in_fan_out = _linear_shape(base_layer)
        device = base_layer.weight.device
        self.base_layer = base_layer
        self.in_features, self.out_features = in_features, out_features
        self.fan_in_fan_out = fan_in_fan_out
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.hypernet = RhoHyperNet(rank, hyper_hidden, fourier_features, activation).to(
            device=device, dtype=torch.float32
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.module_name = name
        self._rho_getter = rho_getter
        self._gate_cache: tuple[Tensor, tuple[tuple[int, int], ...], Tensor] | None = None
        self._shared_input: _SharedInput | None = None  # set by inject_hyperlora for siblings
        self.train(base_layer.training)  # a fresh Dropout is in training mode: follow the model

    def gate(self, rho: RhoLike) -> Tensor:
        """g(ρ) of shape [B, rank] (without the α/r scaling)."""
        return self.hypernet(rho)

    def delta_weight(self, rho: float) -> Tensor:
        """(α/r) B diag(g(ρ)) A in the base weight's layout (transposed for Conv1D), float32."""
        gate = self.gate(rho)[0] * self.scaling
        delta = self.lora_B @ (gate.unsqueeze(-1) * self.lora_A)
        return delta.t() if self.fan_in_fan_out else delta

    def _scaled_gate(self, rho: Tensor) -> Tensor:
        """(α/r) g(ρ); without autograd, reused while ρ and the hypernet are unchanged.

        Generation runs one forward per new token at the same ρ: recomputing 3 small matmuls
        per layer per step is a visible share of a decode step. The cache key is the ρ tensor
        itself plus the version and storage of every hypernet parameter, so an optimiser step,
        a state load or a move to another device invalidates it. With autograd on, g is always
        recomputed (the graph needs it).
        """
        if torch.is_grad_enabled():
            self._gate_cache = None
            return self.hypernet(rho) * self.scaling
        key = tuple((p._version, p.data_ptr()) for p in self.hypernet.parameters())
        cached = self._gate_cache
        if cached is not None and cached[0] is rho and cached[1] == key:
            return cached[2]
        gate = self.hypernet(rho) * self.scaling
        self._gate_cache = (rho, key, gate)
        return gate

    def forward(self, x: Tensor) -> Tensor:
        result = self.base_layer(x)
        if self._rho_getter is None:
            raise RuntimeError(_NO_RHO.format(name=self.module_name))
        a = self.lora_A
        rho, broadcast = self._rho_getter(a.device, self.module_name)
        if not broadcast and rho.shape[0] != x.shape[0]:
            raise ValueError(
                f"ρ holds {rho.shape[0]} values but the batch has {x.shape[0]} examples "
                f"(layer {self.module_name!r}): give one ρ per example, one float for the whole "
                "batch, or set_rho(model, rho, num_beams=k) for beam search"
            )
        gate = self._scaled_gate(rho)  # [B or 1, r], once per layer per forward
        # Under autocast the matmuls pick their own dtype: casting x up to fp32 first would
        # only add a copy of the activations (and autocast would cast it back down).
        autocast = torch.is_autocast_enabled(x.device.type)
        x_in = x if autocast else x.to(a.dtype)
        shared = self._shared_input
        if shared is not None and shared.active():
            hidden = shared.hidden(self, x, x_in)  # [B, ..., r]
        else:
            hidden = F.linear(self.dropout(x_in), a)
        hidden = hidden * gate.view(gate.shape[0], *([1] * (hidden.dim() - 2)), self.rank)
        if autocast or result.dtype == a.dtype:  # fuse "+ delta" into the GEMM: one pass less
            flat = torch.addmm(
                result.reshape(-1, self.out_features),
                hidden.reshape(-1, self.rank),
                self.lora_B.t(),
            )
            return flat.view(result.shape)
        return result + F.linear(hidden, self.lora_B).to(result.dtype)

    def extra_repr(self) -> str:
        kind = "Conv1D" if self.fan_in_fan_out else "Linear"
        return f"{kind}({self.in_features} -> {self.out_features}), rank={self.rank}"


class TrainableTokenEmbedding(nn.Module):
    """An input embedding whose rows for ``token_ids`` come from a small trainable parameter.

    The base embedding stays frozen: a gradient mask on the full weight would not do, since
    AdamW's weight decay still moves every row. Only ``token_rows`` (float32, initialised from
    the current rows) trains; it is saved with the adapter and folded back on merge.
    """

    def __init__(self, base_layer: nn.Embedding, token_ids: Sequence[int]) -> None:
        super().__init__()
        weight = base_layer.weight
        ids = torch.tensor(list(token_ids), dtype=torch.long, device=weight.device)
        slots = torch.full((weight.shape[0],), -1, dtype=torch.long, device=weight.device)
        slots[ids] = torch.arange(len(ids), device=weight.device)
        self.base_layer = base_layer
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("token_slots", slots, persistent=False)
        self.token_rows = nn.Parameter(weight.detach()[ids].to(torch.float32).clone())

    @property
    def weight(self) -> Tensor:
        """The frozen base weight, for code that reads ``get_input_embeddings().weight``."""
        return self.base_layer.weight

    @property
    def num_embeddings(self) -> int:
        return self.base_layer.weight.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.base_layer.weight.shape[1]

    def forward(self, input_ids: Tensor) -> Tensor:
        embedded = self.base_layer(input_ids)
        slots = self.token_slots[input_ids]
        rows = F.embedding(slots.clamp(min=0), self.token_rows).to(embedded.dtype)
        scale = getattr(self.base_layer, "embed_scale", None)  # scaled embeddings (e.g. Gemma)
        if scale is not None:
            rows = rows * scale.to(rows.dtype)
        return torch.where((slots >= 0).unsqueeze(-1), rows, embedded)


class TiedTokenHead(nn.Module):
    """An output head tied to the input embedding: the trained rows' logits use the trained rows.

    The other logits come from the frozen head; the columns of ``token_ids`` are recomputed from
    the embedding wrapper's ``token_rows``, so input and output stay tied as in the base model.
    The embedding is held in a tuple, not registered, so its parameter is not listed twice.
    """

    def __init__(self, base_layer: nn.Linear, embedding: TrainableTokenEmbedding) -> None:
        super().__init__()
        self.base_layer = base_layer
        self._embedding = (embedding,)

    @property
    def weight(self) -> Tensor:
        return self.base_layer.weight

    def forward(self, hidden: Tensor) -> Tensor:
        # transformers slices the hidden states for ``logits_to_keep``; a strided 3-D input
        # sends the 49k-row head through a batched matmul about half as fast as one GEMM.
        hidden = hidden.contiguous()
        logits = self.base_layer(hidden)
        embedding = self._embedding[0]
        rows = embedding.token_rows
        columns = F.linear(hidden.to(rows.dtype), rows)
        bias = getattr(self.base_layer, "bias", None)
        if bias is not None:
            columns = columns + bias[embedding.token_ids].to(columns.dtype)
        # In place: the frozen head's backward needs its input, not its output.
        return logits.index_copy_(-1, embedding.token_ids, columns.to(logits.dtype))


# --------------------------------------------------------------------------------------------
# Injection
# --------------------------------------------------------------------------------------------


@dataclass
class HyperLoRAConfig:
    """Everything needed to rebuild the adapters on a fresh base (saved in adapter_config.json)."""

    target_modules: list[str] | str
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    hyper_hidden: int = 64
    fourier_features: int = 0
    activation: str = "sigmoid"
    trainable_token_ids: list[int] = field(default_factory=list)
    adapted_modules: list[str] = field(default_factory=list)
    tied_token_head: bool = False

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HyperLoRAConfig:
        """Build from a dict that may hold other keys too (the checkpoint's whole config)."""
        if "target_modules" not in data:
            raise ValueError("HyperLoRA config has no 'target_modules'")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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


def _output_head(model: nn.Module) -> nn.Module | None:
    getter = getattr(model, "get_output_embeddings", None)
    return getter() if callable(getter) else None


def _match_targets(model: nn.Module, target_modules: Sequence[str] | str) -> list[str]:
    """Qualified names of the linear / Conv1D layers selected by ``target_modules``.

    ``"all-linear"``: every one except the output head. Another string: a regex that must
    match the whole qualified name. A list: name suffixes (``q_proj`` matches
    ``model.layers.0.self_attn.q_proj``). The output head is never adapted.
    """
    head = _output_head(model)
    candidates = [
        name
        for name, module in model.named_modules()
        if name and isinstance(module, nn.Linear | Conv1D) and module is not head
    ]
    if target_modules == ALL_LINEAR:
        matched = candidates
    elif isinstance(target_modules, str):
        pattern = re.compile(target_modules)
        matched = [n for n in candidates if pattern.fullmatch(n)]
    else:
        suffixes = list(target_modules)
        matched = [n for n in candidates if any(n == s or n.endswith("." + s) for s in suffixes)]
    if not matched:
        some = sorted({n.rsplit(".", 1)[-1] for n in candidates})[:12]
        raise ValueError(
            f"target_modules={target_modules!r} matched no linear layer of "
            f"{type(model).__name__}; its linear layers end in {some} (e.g. {candidates[:3]}); "
            "pass name suffixes, a regex on the full name, or 'all-linear'"
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
    return hasattr(model, "hyperlora_config")


def inject_hyperlora(
    model: nn.Module,
    target_modules: Sequence[str] | str = DEFAULT_TARGETS,
    rank: int = 16,
    alpha: float = 32.0,
    dropout: float = 0.05,
    hyper_hidden: int = 64,
    fourier_features: int = 0,
    activation: str = "sigmoid",
    trainable_token_ids: Sequence[int] | None = None,
) -> InjectionSummary:
    """Wrap the target layers in HyperLoRA adapters bound to ``model.current_rho``; freeze the rest.

    ``trainable_token_ids`` (the rows of newly added special tokens) become trainable through
    :class:`TrainableTokenEmbedding`, and through :class:`TiedTokenHead` when the output head
    shares the input embedding's weight. An untied head stays frozen: the new tokens are
    prompt markers the model reads, not tokens it is trained to emit. Resize the embeddings
    (see ``janus.checkpoint.resize_for_tokenizer``) before injecting, not after.
    """
    if is_injected(model) or any(isinstance(m, HyperLoRALinear) for m in model.modules()):
        raise RuntimeError("this model already has HyperLoRA layers; inject once")
    if rank < 1 or alpha <= 0 or not 0.0 <= dropout < 1.0:
        raise ValueError(
            f"need rank >= 1, alpha > 0, 0 <= dropout < 1; got {rank}, {alpha}, {dropout}"
        )
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    names = _match_targets(model, target_modules)
    token_ids = sorted({int(i) for i in trainable_token_ids or ()})
    embedding = model.get_input_embeddings() if token_ids else None
    if embedding is not None:
        vocab = embedding.weight.shape[0]
        if token_ids[0] < 0 or token_ids[-1] >= vocab:
            raise ValueError(f"trainable_token_ids must lie in [0, {vocab}), got {token_ids}")

    model.requires_grad_(False)
    get_rho = _RhoSource(model)
    for name in names:
        layer = HyperLoRALinear(
            model.get_submodule(name),
            rank=rank,
            alpha=alpha,
            dropout=dropout,
            hyper_hidden=hyper_hidden,
            fourier_features=fourier_features,
            activation=activation,
            rho_getter=get_rho,
            name=name,
        )
        _replace_module(model, name, layer)
    set_shared_input_fusion(model, True)

    tied = False
    if embedding is not None:
        head = _output_head(model)
        wrapper = TrainableTokenEmbedding(embedding, token_ids)
        _replace_module(model, _module_name(model, embedding), wrapper)
        tied = head is not None and head.weight is embedding.weight
        if tied:
            _replace_module(model, _module_name(model, head), TiedTokenHead(head, wrapper))

    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    config = HyperLoRAConfig(
        target_modules=targets,
        rank=rank,
        alpha=float(alpha),
        dropout=float(dropout),
        hyper_hidden=hyper_hidden,
        fourier_features=fourier_features,
        activation=activation,
        trainable_token_ids=token_ids,
        adapted_modules=names,
        tied_token_head=tied,
    )
    model.hyperlora_config = config
    model.current_rho = None
    parameters = list(model.parameters())  # de-duplicated: tied weights count once
    return InjectionSummary(
        matched=names,
        trainable_parameters=sum(p.numel() for p in parameters if p.requires_grad),
        total_parameters=sum(p.numel() for p in parameters),
        config=config,
    )


def set_shared_input_fusion(model: nn.Module, enabled: bool) -> int:
    """Turn on (the default) or off the shared ``x Aᵀ`` GEMM of sibling adapters.

    Siblings are HyperLoRA layers of one parent module named as in
    :data:`SHARED_INPUT_GROUPS` (q/k/v, gate/up). A speed switch only: the outputs are the
    same either way, up to float rounding. Returns the number of groups formed.
    """
    by_parent: dict[str, dict[str, HyperLoRALinear]] = {}
    for name, layer in iter_hyperlora_layers(model):
        layer._shared_input = None
        parent, _, child = name.rpartition(".")
        by_parent.setdefault(parent, {})[child] = layer
    if not enabled:
        return 0
    groups = 0
    for children in by_parent.values():
        for names in SHARED_INPUT_GROUPS:
            members = [children[n] for n in names if n in children]
            if len(members) < 2 or len({m.in_features for m in members}) != 1:
                continue
            group = _SharedInput(members)
            for member in members:
                member._shared_input = group
            groups += 1
    return groups


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
    config = getattr(model, "hyperlora_config", None)
    if config is None:
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
    model._hyperlora_merged = _MergeState(config, wrappers, originals, value)
    del model.hyperlora_config
    model.__dict__.pop("current_rho", None)
    model.__dict__.pop("_hyperlora_rho_cache", None)
    return model


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
