"""The layers: RhoHyperNet, HyperLoRALinear, and the wrappers that train new token rows.

``HyperLoRALinear.forward`` is the method's equation, per example of the batch::

    y = base(x) + (α/r) · ((dropout(x) Aᵀ) ⊙ g(ρ)) Bᵀ

Two speed-ups may be plugged into a layer (:mod:`janus.hyperlora.fusion`, opt-in): a gate
cache and a GEMM shared with sibling layers. Without them the layer computes exactly this.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from janus.hyperlora.config import HyperLoRAConfig

if TYPE_CHECKING:
    from janus.hyperlora.fusion import GateCache, SharedInputGEMM

RhoLike = float | int | Tensor | Sequence[float]
RhoSource = Callable[[torch.device, str], tuple[Tensor, bool]]
"""(device, layer name) → (ρ as float32 [N, 1], whether it broadcasts to any batch)."""

NO_RHO = (
    "HyperLoRA layer {name!r} needs ρ but none is set: call set_rho(model, rho) or use "
    "`with rho_context(model, rho): ...` before the forward pass."
)

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def rho_column(rho: RhoLike, device: torch.device, dtype: torch.dtype) -> Tensor:
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

    def __init__(self, rank: int, hidden: int, fourier_features: int, activation: str) -> None:
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

    @classmethod
    def from_config(cls, config: HyperLoRAConfig) -> RhoHyperNet:
        return cls(config.rank, config.hyper_hidden, config.fourier_features, config.activation)

    def forward(self, rho: RhoLike) -> Tensor:
        """ρ (float, [B] or [B, 1]) → g of shape [B, rank]."""
        first = self.net[0].weight
        column = rho_column(rho, first.device, first.dtype)
        if self.fourier_features:
            angles = column * self.frequencies.to(column.dtype)
            column = torch.cat([column, torch.sin(angles), torch.cos(angles)], dim=-1)
        return self.net(column)


def linear_shape(layer: nn.Module) -> tuple[int, int, bool]:
    """(in_features, out_features, fan_in_fan_out) of an nn.Linear or GPT-2's Conv1D."""
    if isinstance(layer, Conv1D):
        in_features, out_features = layer.weight.shape  # Conv1D stores W transposed: [in, out]
        return in_features, out_features, True
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features, False
    raise TypeError(f"HyperLoRA adapts nn.Linear and Conv1D layers, got {type(layer).__name__}")


class HyperLoRALinear(nn.Module):
    """A frozen linear (or Conv1D) layer plus a ρ-gated low-rank update.

    A is Kaiming-uniform and B zero, so a fresh adapter reproduces the base exactly. The
    adapter (A, B, hypernet) is kept in float32 whatever the base dtype: the input is cast up
    for the adapter path and the delta cast back to the base's output dtype, so a bf16 base
    trains fp32 adapters. ρ comes from ``rho_source`` (the injected model's ``current_rho``).
    """

    def __init__(
        self,
        base_layer: nn.Module,
        config: HyperLoRAConfig,
        *,
        rho_source: RhoSource | None = None,
        name: str = "",
    ) -> None:
        super().__init__()
        in_features, out_features, fan_in_fan_out = linear_shape(base_layer)
        device = base_layer.weight.device
        self.base_layer = base_layer
        self.in_features, self.out_features = in_features, out_features
        self.fan_in_fan_out = fan_in_fan_out
        self.rank = config.rank
        self.scaling = config.scaling
        self.lora_A = nn.Parameter(torch.empty(config.rank, in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, config.rank, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.hypernet = RhoHyperNet.from_config(config).to(device=device, dtype=torch.float32)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.module_name = name
        self.rho_source = rho_source
        self.gate_cache: GateCache | None = None  # fusion.set_fusion plugs these in
        self.shared_input: SharedInputGEMM | None = None
        self.train(base_layer.training)  # a fresh Dropout is in training mode: follow the model

    def forward(self, x: Tensor) -> Tensor:
        """``base(x) + (α/r) · ((dropout(x) Aᵀ) ⊙ g(ρ)) Bᵀ``, one ρ per example."""
        gate = self.scaled_gate(self.rho(x.shape[0]))  # (α/r)·g(ρ): [B or 1, r]
        hidden = self.down(x)  # dropout(x)·Aᵀ: [B, ..., r]
        hidden = hidden * gate.view(gate.shape[0], *([1] * (hidden.dim() - 2)), self.rank)
        return self.up(self.base_layer(x), hidden)  # base(x) + hidden·Bᵀ

    def rho(self, batch: int) -> Tensor:
        """ρ for this forward: [1, 1] (one value for the batch) or [batch, 1]."""
        if self.rho_source is None:
            raise RuntimeError(NO_RHO.format(name=self.module_name))
        rho, broadcast = self.rho_source(self.lora_A.device, self.module_name)
        if not broadcast and rho.shape[0] != batch:
            raise ValueError(
                f"ρ holds {rho.shape[0]} values but the batch has {batch} examples "
                f"(layer {self.module_name!r}): give one ρ per example, one float for the whole "
                "batch, or set_rho(model, rho, num_beams=k) for beam search"
            )
        return rho

    def gate(self, rho: RhoLike) -> Tensor:
        """g(ρ) of shape [B, rank] (without the α/r scaling), differentiable."""
        return self.hypernet(rho)

    def scaled_gate(self, rho: Tensor) -> Tensor:
        """(α/r)·g(ρ), from the gate cache when one is plugged in."""
        if self.gate_cache is not None:
            return self.gate_cache.scaled_gate(self, rho)
        return self.hypernet(rho) * self.scaling

    def down(self, x: Tensor) -> Tensor:
        """``dropout(x) Aᵀ`` ([..., r]), from the siblings' shared GEMM when one is plugged in."""
        # Under autocast the matmuls pick their own dtype: casting x up to fp32 first would
        # only add a copy of the activations (and autocast would cast it back down).
        autocast = torch.is_autocast_enabled(x.device.type)
        x_in = x if autocast else x.to(self.lora_A.dtype)
        if self.shared_input is not None and self.shared_input.active():
            return self.shared_input.hidden(self, x, x_in)
        return F.linear(self.dropout(x_in), self.lora_A)

    def up(self, result: Tensor, hidden: Tensor) -> Tensor:
        """``result + hidden Bᵀ`` in the base output's dtype."""
        autocast = torch.is_autocast_enabled(hidden.device.type)
        if autocast or result.dtype == self.lora_B.dtype:  # "+" inside the GEMM: one pass less
            flat = torch.addmm(
                result.reshape(-1, self.out_features),
                hidden.reshape(-1, self.rank),
                self.lora_B.t(),
            )
            return flat.view(result.shape)
        return result + F.linear(hidden, self.lora_B).to(result.dtype)

    def delta_weight(self, rho: float) -> Tensor:
        """(α/r) B diag(g(ρ)) A in the base weight's layout (transposed for Conv1D), float32."""
        gate = self.gate(rho)[0] * self.scaling
        delta = self.lora_B @ (gate.unsqueeze(-1) * self.lora_A)
        return delta.t() if self.fan_in_fan_out else delta

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
