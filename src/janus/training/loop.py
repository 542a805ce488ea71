"""The one training loop: HyperLoRA training and janus-tiny pretraining both run it.

Per optimiser step: draw ``grad_accum`` micro-batches, let the :class:`Objective` turn each
into a loss (under autocast, DDP syncing gradients on the last one only), back-propagate,
clip, step the optimiser and the scheduler, advance the :class:`TrainState` (step and data
position), update the progress bar, then call the callbacks in order. Everything a run does
besides optimising — logging, validation, checkpoints, a test stopping it — is a callback,
so the loop has no special cases.

The data come from :func:`batch_stream`: an endless sequence of (epoch, batch index, batch)
that starts at a saved position, which is what makes a resumed run draw exactly the batches
an uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from janus.examples import LengthBucketedBatchSampler
from janus.training.distributed import DistInfo, barrier, gradient_sync
from janus.training.state import TrainState

Batch = dict[str, torch.Tensor]
Positioned = tuple[int, int, Batch]
"""(epoch, batch index within the epoch, batch)."""


class Objective(Protocol):
    """How a window of micro-batches becomes gradients.

    ``begin`` sees the whole window first (for normalisers that span it, such as its token
    count over every process); ``loss`` is called once per micro-batch, in order, and the loop
    back-propagates what it returns; ``end`` returns what the step logs.
    """

    def begin(self, window: Sequence[Batch]) -> None: ...

    def loss(self, batch: Batch, last: bool) -> torch.Tensor: ...

    def end(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class LoopSettings:
    """How the loop optimises; what it runs on comes as arguments of :func:`run_loop`."""

    max_steps: int
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    bf16: bool = False
    progress: bool = True
    desc: str = "train"


@dataclass(frozen=True)
class StepReport:
    """What one optimiser step did, handed to every callback."""

    step: int
    metrics: dict[str, float]
    lr: float
    tokens: int
    tokens_per_s: float
    last: bool

    def due(self, every: int) -> bool:
        """True every ``every`` steps and at the last step: when periodic work runs."""
        return self.step % every == 0 or self.last


Callback = Callable[[TrainState, StepReport], None]


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when asked, else nothing (validation uses it too)."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def batch_stream(
    sampler: LengthBucketedBatchSampler,
    make_batch: Callable[[list[int]], Batch],
    epoch: int = 0,
    start: int = 0,
) -> Iterator[Positioned]:
    """Batches forever, epoch after epoch, from batch ``start`` of ``epoch`` on."""
    while True:
        sampler.set_epoch(epoch, start)
        for offset, indices in enumerate(sampler):
            yield epoch, start + offset, make_batch(indices)
        epoch, start = epoch + 1, 0


def run_loop(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batches: Iterator[Positioned],
    objective: Objective,
    state: TrainState,
    settings: LoopSettings,
    dist: DistInfo | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainState:
    """Optimise until ``state.step`` reaches ``settings.max_steps``; returns ``state``.

    ``model`` is what the forward runs through (DDP-wrapped under ``torchrun``); the
    parameters clipped and stepped are the optimiser's. ``state`` says where to start (a
    resumed run's saved state) and is advanced in place.
    """
    dist = dist or DistInfo()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    bar = tqdm(
        total=settings.max_steps,
        initial=state.step,
        desc=settings.desc,
        unit="step",
        disable=not (settings.progress and dist.is_main),
        dynamic_ncols=True,
    )
    model.train()
    tokens_seen = 0
    started = time.perf_counter()
    try:
        while state.step < settings.max_steps:
            window = [next(batches) for _ in range(settings.grad_accum)]
            metrics = _accumulate(model, objective, [b for _, _, b in window], settings, dist)
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.epoch, state.batch = window[-1][0], window[-1][1] + 1
            tokens = sum(int(b["attention_mask"].sum()) for _, _, b in window) * dist.world_size
            tokens_seen += tokens
            report = StepReport(
                step=state.step,
                metrics=metrics,
                lr=scheduler.get_last_lr()[0],
                tokens=tokens,
                tokens_per_s=tokens_seen / max(time.perf_counter() - started, 1e-9),
                last=state.step == settings.max_steps,
            )
            _show(bar, report)
            for callback in callbacks:
                callback(state, report)
    finally:
        bar.close()
    return state


def _show(bar: tqdm, report: StepReport) -> None:
    bar.update(1)
    loss = report.metrics.get("train_loss", float("nan"))
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{report.lr:.2e}", tok_s=f"{report.tokens_per_s:.0f}")


def _accumulate(
    model: torch.nn.Module,
    objective: Objective,
    window: list[Batch],
    settings: LoopSettings,
    dist: DistInfo,
) -> dict[str, float]:
    """Forward and backward every micro-batch of a window; gradients sum in ``.grad``."""
    objective.begin(window)
    for index, batch in enumerate(window):
        last = index == len(window) - 1
        with gradient_sync(model, dist, last), autocast(dist.device, settings.bf16):
            loss = objective.loss(batch, last)
        loss.backward()
    return objective.end()


# ---------------------------------------------------------------------------- callbacks


def periodic(every: int, action: Callback, dist: DistInfo, *, main_only: bool = True) -> Callback:
    """Run ``action`` every ``every`` steps and at the last one; with ``main_only``, on rank
    0 alone while the other processes wait for it (it writes what they may read next)."""

    def callback(state: TrainState, report: StepReport) -> None:
        if not report.due(every):
            return
        if dist.is_main or not main_only:
            action(state, report)
        if main_only:
            barrier(dist)

    return callback


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One JSON line appended to ``path`` (the metrics log: one line per event)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def jsonl_logger(path: Path, every: int, dist: DistInfo) -> Callback:
    """Log step, the objective's metrics, learning rate and speed to ``path`` (rank 0)."""

    def log(state: TrainState, report: StepReport) -> None:
        if dist.is_main and report.due(every):
            record = {"step": report.step, **report.metrics, "lr": report.lr}
            append_jsonl(path, {**record, "tokens_per_s": report.tokens_per_s})

    return log
