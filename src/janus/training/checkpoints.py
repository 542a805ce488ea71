"""Checkpoints: what an exact resume needs, written atomically, rotated, found again.

A checkpoint is a directory ``checkpoints/step-NNNNNNN/`` holding whatever the caller's
``write_model`` puts there (HyperLoRA: an adapter directory) plus the trainer state:
``trainer_state.safetensors`` (optimiser moments, RNG byte states) and ``trainer_state.json``
(format version, :class:`~janus.training.state.TrainState`, optimiser hyper-parameters,
scheduler state, integer RNG states). JSON + safetensors only, so loading one never runs
pickled code. The JSON is written last and marks the checkpoint complete; the directory is
swapped in by :func:`janus.atomic.atomic_directory`, so a crash mid-save leaves the previous
checkpoints intact and no half-written one that :func:`latest_checkpoint` could pick.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from janus.atomic import atomic_directory
from janus.training.loop import StepReport
from janus.training.state import RngState, TrainState

CHECKPOINTS_DIR = "checkpoints"
BEST_FILE = "best.json"
TRAINER_TENSORS = "trainer_state.safetensors"
TRAINER_JSON = "trainer_state.json"
TRAINER_STATE_FORMAT = 2
"""Format 2: a typed ``state`` and library schedulers. Format 1 (a ``progress`` mapping and a
hand-written schedule) cannot be resumed: its scheduler state fits no scheduler used now."""


def save_trainer_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
) -> None:
    """Optimiser, scheduler, RNG and progress into ``directory`` (safetensors + JSON)."""
    rng = RngState.capture()
    opt = optimizer.state_dict()
    tensors = dict(rng.tensors())
    for index, param_state in opt["state"].items():
        for key, value in param_state.items():
            tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
    meta = {
        "format": TRAINER_STATE_FORMAT,
        "state": state.to_json(),
        "param_groups": opt["param_groups"],
        "scheduler": scheduler.state_dict(),
        "rng": rng.to_json(),
    }
    save_file(tensors, str(directory / TRAINER_TENSORS))
    (directory / TRAINER_JSON).write_text(json.dumps(meta, indent=1))


def load_trainer_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> TrainState:
    """Inverse of :func:`save_trainer_state`: restores optimiser, scheduler and RNG in place
    and returns the progress. A checkpoint of another format is refused by name."""
    meta: dict[str, Any] = json.loads((directory / TRAINER_JSON).read_text())
    found = meta.get("format", 1)
    if found != TRAINER_STATE_FORMAT:
        raise ValueError(
            f"{directory}: trainer state format {found}, this janus resumes format "
            f"{TRAINER_STATE_FORMAT} only; finish the run with the janus that started it"
        )
    tensors = load_file(str(directory / TRAINER_TENSORS))
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    RngState.from_saved(meta["rng"], tensors).restore()
    return TrainState.from_json(meta["state"])


def checkpoint_step(path: Path) -> int:
    """The step a ``step-NNNNNNN`` directory was saved at."""
    return int(path.name.split("-")[1])


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first (a crashed save's temp dir is not one)."""
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if (p / TRAINER_JSON).is_file()]
    return sorted(done, key=checkpoint_step)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def save_checkpoint(
    run_dir: Path,
    state: TrainState,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    write_model: Callable[[Path], None],
    keep_last: int,
) -> Path:
    """Atomically write ``checkpoints/step-N`` (``write_model`` fills in the weights), then
    keep only the last ``keep_last`` checkpoints plus the best one by validation loss."""
    target = run_dir / CHECKPOINTS_DIR / f"step-{state.step:07d}"

    def write(tmp: Path) -> None:
        write_model(tmp)
        save_trainer_state(tmp, optimizer, scheduler, state)

    atomic_directory(
        target,
        write,
        replaceable=lambda path: (path / TRAINER_JSON).is_file(),
        what="checkpoint",
    )
    rotate_checkpoints(run_dir, keep_last, state.best_step)
    return target


def rotate_checkpoints(run_dir: Path, keep_last: int, protected_step: int | None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints and the ``protected_step`` one."""
    done = complete_checkpoints(run_dir)
    keep = {p.name for p in done[-keep_last:]}
    for path in done:
        if path.name not in keep and checkpoint_step(path) != protected_step:
            shutil.rmtree(path, ignore_errors=True)


def resume_latest(
    run_dir: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    load_model: Callable[[Path], None],
) -> TrainState:
    """Restore the run's latest checkpoint, if any: ``load_model`` reads the weights back,
    then optimiser, scheduler and RNG; returns its state (a fresh one if there is none)."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return TrainState()
    load_model(checkpoint)
    return load_trainer_state(checkpoint, optimizer, scheduler)


class CheckpointCallback:
    """The loop callback that saves a checkpoint (run it through ``loop.periodic``).

    After each save, ``best.json`` names the best step by validation loss so far (if any
    validation ran), the checkpoint rotation keeps.
    """

    def __init__(
        self,
        run_dir: Path,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        write_model: Callable[[Path], None],
        keep_last: int,
    ) -> None:
        self.run_dir = run_dir
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.write_model = write_model
        self.keep_last = keep_last

    def __call__(self, state: TrainState, report: StepReport) -> None:
        save_checkpoint(
            self.run_dir, state, self.optimizer, self.scheduler, self.write_model, self.keep_last
        )
        if state.best_step is not None:
            best = {"step": state.best_step, "val_loss": state.best_val_loss}
            (self.run_dir / BEST_FILE).write_text(json.dumps(best))
