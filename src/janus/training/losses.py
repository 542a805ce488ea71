"""The training losses: causal-LM loss on the decision tokens, and the gate separation term.

:func:`target_token_loss` is the one definition of "the loss of a batch" (training, validation
and janus-tiny pretraining all use it): cross-entropy on the tokens the labels keep (the
action and EOS), nothing on the prompt. :class:`TargetTokenObjective` turns it into an
accumulation window's gradient: every target token of the window, on every process, weighs
the same, and for HyperLoRA the gate separation term is added once per window.

Two flaws of the research trainer are fixed in :func:`gate_separation_loss`: each pair of
examples is weighted by its own |Δρ| (not a batch mean times a batch mean), and the term is a
hinge, so once two gates are as far apart as their ρ distance asks it stops pushing them to
saturate at 0 and 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from janus.decoding import accepts_logits_to_keep
from janus.examples import IGNORE_INDEX
from janus.hyperlora import adapter_parameters, hyperlora_gates, set_rho
from janus.training.distributed import DistInfo, all_gather_cat, all_reduce_sum

Batch = dict[str, torch.Tensor]


def target_token_loss(
    model: torch.nn.Module, batch: Batch, *, full_logits: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed target-token loss per example and target-token count per example.

    Only the positions from the earliest target token on go through the LM head
    (``logits_to_keep``): targets are the last ~10 of ~140 tokens, and on SmolLM2 the
    49k-word head costs about a fifth of the forward pass when applied everywhere.
    ``full_logits`` applies it everywhere (benchmarks measure what that costs).
    """
    labels = batch["labels"]
    width = labels.shape[1]
    targeted = (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero()
    start = int(targeted[0]) if targeted.numel() else width - 1  # first logit that is scored
    if full_logits:
        start = 0
    keep = width - start
    kwargs = {"logits_to_keep": keep} if accepts_logits_to_keep(model) else {}
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs
    ).logits
    # logits[:, j] is the prediction made at position start + j, for the token after it.
    logits = logits[:, -keep:][:, :-1].float()
    shifted = labels[:, start + 1 :]
    token_loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        shifted.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shifted.shape)
    counts = (shifted != IGNORE_INDEX).sum(-1)
    return token_loss.sum(-1), counts


def gate_separation_loss(gates: torch.Tensor, rho: torch.Tensor, margin: float) -> torch.Tensor:
    """Bounded, pair-weighted push apart of the gates of different ρ.

    For every pair (i, j) of distinct non-impasse ρ: the RMS distance between the gate vectors
    (in [0, 1] for sigmoid gates) should reach ``margin · |Δρ|``; a shortfall costs
    ``|Δρ| · (margin · |Δρ| − distance)``, averaged with weights |Δρ|. Pairs already far enough
    cost nothing, so the term is bounded by ``margin`` and never rewards saturation.
    ``gates`` holds one row per entry of ``rho``.
    """
    keep = rho >= 0
    g = gates[keep]
    r = rho[keep].to(g.dtype)
    if g.shape[0] < 2:
        return gates.sum() * 0.0
    diff = g[:, None, :] - g[None, :, :]
    distance = (diff.pow(2).mean(-1) + 1e-12).sqrt()
    delta = (r[:, None] - r[None, :]).abs()
    upper = torch.triu(torch.ones_like(delta, dtype=torch.bool), diagonal=1)
    weight = delta * upper
    shortfall = torch.relu(margin * delta - distance)
    return (weight * shortfall).sum() / weight.sum().clamp_min(1e-12)


def separation_term(model: torch.nn.Module, rho: torch.Tensor, margin: float) -> torch.Tensor:
    """Gate separation over the distinct ρ of a batch (gates depend on ρ alone)."""
    unique = torch.unique(rho[rho >= 0].detach().float().cpu())
    if unique.numel() < 2:
        return next(iter(adapter_parameters(model).values())).sum() * 0.0
    device = next(model.parameters()).device
    gates = hyperlora_gates(model, unique.to(device))
    return gate_separation_loss(gates, unique.to(device), margin)


def target_tokens(batch: Batch) -> int:
    """How many tokens of ``batch`` are scored (labels kept, after the one-token shift)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


class TargetTokenObjective:
    """The loss of an accumulation window, one micro-batch at a time (see the loop).

    Each micro-batch contributes Σ of its token losses / the window's target tokens over all
    processes, times the world size because DDP averages gradients: so every target token of
    the global window weighs the same, whatever the micro-batch or rank it sits in. With
    ``routed`` (the HyperLoRA model), ``model.current_rho`` takes each micro-batch's ρ before
    its forward, and ``lambda_sep`` times the separation term over the window's distinct ρ
    (gathered from every rank) is added once, on the last micro-batch. ``full_logits`` is
    passed on to :func:`target_token_loss`.
    """

    def __init__(
        self,
        forward: torch.nn.Module,
        dist: DistInfo,
        *,
        routed: torch.nn.Module | None = None,
        lambda_sep: float = 0.0,
        sep_margin: float = 0.25,
        full_logits: bool = False,
    ) -> None:
        if lambda_sep > 0 and routed is None:
            raise ValueError("the separation term needs the HyperLoRA model (routed=)")
        self.forward = forward
        self.dist = dist
        self.routed = routed
        self.lambda_sep = lambda_sep
        self.sep_margin = sep_margin
        self.full_logits = full_logits
        self._tokens = 1.0
        self._rho = torch.empty(0)
        self._lm = 0.0
        self._sep = 0.0

    def begin(self, window: Sequence[Batch]) -> None:
        """Window-wide normalisers: target tokens on every rank, ρ of every rank."""
        local = torch.tensor(float(sum(target_tokens(batch) for batch in window)))
        self._tokens = all_reduce_sum(local, self.dist).item()
        if self.lambda_sep > 0:
            self._rho = all_gather_cat(torch.cat([batch["rho"] for batch in window]), self.dist)
        self._lm = 0.0
        self._sep = 0.0

    def loss(self, batch: Batch, last: bool) -> torch.Tensor:
        """This micro-batch's share of the window's loss (the loop calls backward on it)."""
        batch = {name: tensor.to(self.dist.device) for name, tensor in batch.items()}
        if self.routed is not None:
            set_rho(self.routed, batch["rho"])
        loss_sum, _ = target_token_loss(self.forward, batch, full_logits=self.full_logits)
        loss = loss_sum.sum() / self._tokens * self.dist.world_size
        if self.lambda_sep > 0 and last:
            sep = separation_term(self.routed, self._rho, self.sep_margin)
            loss = loss + self.lambda_sep * sep
            self._sep = sep.item()
        self._lm += loss_sum.detach().sum().item() / self._tokens
        return loss

    def end(self) -> dict[str, float]:
        """What the window logs: the LM loss (mean over all ranks' target tokens), separation."""
        lm = all_reduce_sum(torch.tensor(self._lm, dtype=torch.float64), self.dist).item()
        return {"train_loss": lm, "sep_loss": self._sep}
