"""Validation: loss on held-back examples (overall and per ρ bucket) and greedy action metrics.

The loss is :func:`~janus.training.losses.target_token_loss`, the one training minimises,
summed over every target token and divided by their number: the figure janus-tiny
pretraining records and HyperLoRA training logs as ``val_loss``. Examples go in batches of
similar length (sorted), so little is padded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from janus.decoding import ActionConstraint, constrained_decode
from janus.examples import ExampleCollator, TrainingExample
from janus.hyperlora import rho_context
from janus.prompt import parse_action
from janus.training.loop import StepReport, append_jsonl
from janus.training.losses import target_token_loss
from janus.training.state import TrainState


def example_losses(
    model: torch.nn.Module,
    examples: Sequence[TrainingExample],
    collate: ExampleCollator,
    batch_size: int,
    *,
    route_rho: bool,
) -> Iterator[tuple[list[TrainingExample], torch.Tensor, torch.Tensor]]:
    """(examples, summed token loss per example, target tokens per example), batch by batch,
    in order of length. ``route_rho`` sets the HyperLoRA gates to each example's ρ."""
    device = next(model.parameters()).device
    ordered = sorted(examples, key=len)
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate(chunk).items()}
        scope = rho_context(model, batch["rho"]) if route_rho else contextlib.nullcontext()
        with scope:
            loss_sum, counts = target_token_loss(model, batch)
        yield chunk, loss_sum, counts


@torch.no_grad()
def mean_token_loss(
    model: torch.nn.Module,
    examples: Sequence[TrainingExample],
    collate: ExampleCollator,
    batch_size: int = 64,
    *,
    route_rho: bool = False,
) -> float:
    """Mean cross-entropy per target token over ``examples`` (the model left as it was)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for _, loss_sum, counts in example_losses(
        model, examples, collate, batch_size, route_rho=route_rho
    ):
        total += float(loss_sum.sum())
        count += int(counts.sum())
    model.train(was_training)
    return total / max(count, 1)


def rho_bucket(rho: float) -> str:
    """The tenth of [0, 1] a ρ falls in (``"0.3-0.4"``), or ``"impasse"``."""
    if rho < 0:
        return "impasse"
    tenth = min(int(rho * 10), 9)
    return f"{tenth / 10:.1f}-{(tenth + 1) / 10:.1f}"


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    tokenizer: Any,
    dataset: Sequence[TrainingExample],
    indices: list[int],
    decode_indices: list[int],
    batch_size: int,
    constraint: ActionConstraint | None,
) -> dict[str, Any]:
    """Validation loss (overall and per ρ bucket, per example) plus greedy action metrics."""
    was_training = model.training
    model.eval()
    collate = ExampleCollator(tokenizer.pad_token_id)
    total_loss = 0.0
    total_tokens = 0
    bucket_sum: dict[str, float] = {}
    bucket_n: dict[str, int] = {}
    examples = [dataset[i] for i in indices]
    for chunk, loss_sum, counts in example_losses(
        model, examples, collate, batch_size, route_rho=True
    ):
        total_loss += float(loss_sum.sum())
        total_tokens += int(counts.sum())
        per_example = (loss_sum / counts.clamp_min(1)).tolist()
        for example, value in zip(chunk, per_example, strict=True):
            bucket = rho_bucket(example.rho)
            bucket_sum[bucket] = bucket_sum.get(bucket, 0.0) + value
            bucket_n[bucket] = bucket_n.get(bucket, 0) + 1
    metrics: dict[str, Any] = {
        "val_loss": total_loss / max(total_tokens, 1),
        "val_loss_by_rho": {b: bucket_sum[b] / bucket_n[b] for b in sorted(bucket_sum)},
    }
    if constraint is not None and decode_indices:
        chunk = [dataset[i] for i in decode_indices]
        metrics.update(action_metrics(model, tokenizer, chunk, batch_size, constraint))
    model.train(was_training)
    return metrics


def action_metrics(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[TrainingExample],
    batch_size: int,
    constraint: ActionConstraint,
) -> dict[str, Any]:
    """Greedy constrained decoding of each example's prompt at its ρ, against its target:
    the share with the right kind of action, the mean price error where both offer."""
    correct = 0
    errors: list[float] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        prompts = [e.prompt_ids.tolist() for e in chunk]
        rhos = torch.tensor([e.rho for e in chunk], dtype=torch.float32)
        outputs = constrained_decode(
            model,
            constraint,
            prompts,
            pad_id=tokenizer.pad_token_id,
            rho_scope=rho_context(model, rhos),
        )
        for example, text in zip(chunk, outputs, strict=True):
            target_ids = example.input_ids[example.prompt_length :].tolist()
            target = parse_action(tokenizer.decode(target_ids, skip_special_tokens=True))
            predicted = parse_action(text)
            correct += predicted.kind == target.kind
            if predicted.kind == target.kind == "OFFER":
                errors.append(abs(predicted.price_norm - target.price_norm))
    return {
        "action_accuracy": correct / len(examples),
        "price_mae": float(np.mean(errors)) if errors else None,
        "decoded": len(examples),
    }


class ValidationCallback:
    """The loop callback that validates (run it through ``loop.periodic``).

    ``validate()`` returns the metrics; they are logged to ``log`` (one JSON line, with the
    step), the best validation loss is recorded in the state, and the last metrics are kept
    (``last``) for the run's result.
    """

    def __init__(self, validate: Callable[[], dict[str, Any]], log: Path) -> None:
        self.validate = validate
        self.log = log
        self.last: dict[str, Any] = {}

    def __call__(self, state: TrainState, report: StepReport) -> None:
        metrics = self.validate()
        metrics["step"] = report.step
        append_jsonl(self.log, metrics)
        state.record_validation(report.step, metrics["val_loss"])
        self.last = metrics
