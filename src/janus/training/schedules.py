"""Learning-rate schedules: a linear warm-up, then a linear or cosine decay to a floor.

Built from torch's schedulers (``LinearLR``, ``CosineAnnealingLR``, ``SequentialLR``), whose
state serialises to JSON for a resume. transformers' ``get_scheduler`` was not used: its
warm-up starts at a learning rate of 0 (step ``s`` of ``w`` gets ``s / w``), while Janus's
starts at ``1 / w`` (step ``s`` gets ``(s + 1) / w``), which every trained artefact so far
was made with; ``LinearLR(start_factor=1 / w, total_iters=w − 1)`` is exactly that.

For step ``s`` (0-based, the learning rate the ``s``-th optimiser step uses) of ``total``,
with ``w`` warm-up steps and ``t = (s − w) / max(total − w, 1)``:

- warm-up (``s < w``): ``lr · (s + 1) / w``;
- ``"linear"`` decay: ``lr · (floor + (1 − floor) · (1 − t))``, then ``lr · floor``;
- ``"cosine"`` decay: ``lr · (floor + (1 − floor) · (1 + cos(π t)) / 2)``.

torch's schedulers compute these recursively (each step's value from the last one), so a
value can differ from the closed form in its last bits: far below anything a float32 weight
update can see.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

Decay = Literal["linear", "cosine"]
DECAYS: tuple[Decay, ...] = ("linear", "cosine")


def warmup_decay_schedule(
    optimizer: torch.optim.Optimizer,
    *,
    warmup: int,
    total: int,
    decay: Decay,
    floor: float = 0.1,
) -> LRScheduler:
    """The schedule above for every parameter group of ``optimizer`` (see the module)."""
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
    if warmup < 0 or total < 1:
        raise ValueError(f"need warmup >= 0 and total >= 1, got warmup={warmup}, total={total}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor}")
    length = max(total - warmup, 1)
    if decay == "linear":
        decaying: LRScheduler = LinearLR(
            optimizer, start_factor=1.0, end_factor=floor, total_iters=length
        )
    else:
        rates = {group["lr"] for group in optimizer.param_groups}
        if len(rates) != 1:
            raise ValueError(f"a cosine decay needs one learning rate for all groups, got {rates}")
        (base,) = rates
        decaying = CosineAnnealingLR(optimizer, T_max=length, eta_min=floor * base)
    if warmup == 0:
        return decaying
    warming = LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1)
    return SequentialLR(optimizer, [warming, decaying], milestones=[warmup])
