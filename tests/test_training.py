"""The parts of the training loop: schedules, state, checkpoints, accumulation, callbacks."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from janus.examples import DecisionStepDataset, ExampleCollator
from janus.tiny import TinyPreset, build_model
from janus.tiny_tokenizer import build_tokenizer
from janus.training.checkpoints import (
    TRAINER_JSON,
    latest_checkpoint,
    load_trainer_state,
    save_checkpoint,
)
from janus.training.distributed import DistInfo
from janus.training.loop import LoopSettings, StepReport, periodic, run_loop
from janus.training.losses import TargetTokenObjective
from janus.training.schedules import warmup_decay_schedule
from janus.training.state import RngState, TrainState
from janus.training.validation import mean_token_loss

MICRO = TinyPreset("micro", 32, 2, 2, 64, max_steps=6, batch_size=8, lr=3e-3)


def reference_factor(step: int, warmup: int, total: int, decay: str, floor: float = 0.1) -> float:
    """The schedule written out in closed form (the trainer's lambdas before torch's)."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    if decay == "linear":
        return floor + (1 - floor) * max(0.0, 1.0 - t)
    return floor + (1 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def optimizer_for(parameter: torch.nn.Parameter, lr: float = 3e-3) -> torch.optim.Optimizer:
    return torch.optim.AdamW([parameter], lr=lr, weight_decay=0.01)


# ------------------------------------------------------------------------------ schedules


@pytest.mark.parametrize("decay", ["linear", "cosine"])
@pytest.mark.parametrize(("warmup", "total"), [(0, 5), (1, 6), (2, 8), (30, 600), (9, 4)])
def test_schedule_follows_the_closed_form(decay: str, warmup: int, total: int) -> None:
    optimizer = optimizer_for(torch.nn.Parameter(torch.zeros(2)))
    scheduler = warmup_decay_schedule(optimizer, warmup=warmup, total=total, decay=decay)
    for step in range(total + 1):
        expected = 3e-3 * reference_factor(step, warmup, total, decay)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12, abs=0)
        optimizer.step()
        scheduler.step()


def test_schedule_state_resumes_through_json() -> None:
    first = optimizer_for(torch.nn.Parameter(torch.zeros(2)))
    schedule = warmup_decay_schedule(first, warmup=3, total=20, decay="cosine")
    for _ in range(5):
        first.step()
        schedule.step()
    saved = json.loads(json.dumps(schedule.state_dict()))
    groups = json.loads(json.dumps(first.state_dict()["param_groups"]))

    second = optimizer_for(torch.nn.Parameter(torch.zeros(2)))
    resumed = warmup_decay_schedule(second, warmup=3, total=20, decay="cosine")
    second.load_state_dict({"state": {}, "param_groups": groups})
    resumed.load_state_dict(saved)
    for _ in range(15):
        assert second.param_groups[0]["lr"] == first.param_groups[0]["lr"]
        for optimizer, scheduler in ((first, schedule), (second, resumed)):
            optimizer.step()
            scheduler.step()


def test_schedule_refuses_bad_settings() -> None:
    optimizer = optimizer_for(torch.nn.Parameter(torch.zeros(2)))
    with pytest.raises(ValueError, match="decay"):
        warmup_decay_schedule(optimizer, warmup=1, total=4, decay="step")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="warmup"):
        warmup_decay_schedule(optimizer, warmup=-1, total=4, decay="linear")


# ---------------------------------------------------------------------------------- state


def test_train_state_round_trips_and_refuses_unknown_fields() -> None:
    state = TrainState(step=7, epoch=2, batch=3)
    assert state.record_validation(4, 1.5) and state.record_validation(7, 1.2)
    assert not state.record_validation(8, 1.3)
    assert (state.best_step, state.best_val_loss) == (7, 1.2)
    assert TrainState.from_json(json.loads(json.dumps(state.to_json()))) == state
    with pytest.raises(ValueError, match="fields"):
        TrainState.from_json({**state.to_json(), "lr": 0.1})
    with pytest.raises(ValueError, match="fields"):
        TrainState.from_json({"step": 1})


def test_rng_state_restores_every_generator() -> None:
    def draws() -> tuple:
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    draws()
    saved = RngState.capture()
    as_json = json.loads(json.dumps(saved.to_json()))
    expected = draws()
    draws()  # move every generator on
    RngState.from_saved(as_json, saved.tensors()).restore()
    assert draws() == expected


# ---------------------------------------------------------------------------- checkpoints


def _stepped(parameter: torch.nn.Parameter, steps: int):
    optimizer = optimizer_for(parameter)
    scheduler = warmup_decay_schedule(optimizer, warmup=2, total=10, decay="linear")
    for _ in range(steps):
        parameter.grad = torch.ones_like(parameter)
        optimizer.step()
        scheduler.step()
    return optimizer, scheduler


def test_a_checkpoint_restores_optimiser_scheduler_and_rng_exactly(tmp_path: Path) -> None:
    live = torch.nn.Parameter(torch.arange(4.0))
    optimizer, scheduler = _stepped(live, 3)
    state = TrainState(step=3, epoch=1, batch=5)
    weights: dict[str, torch.Tensor] = {}
    saved = save_checkpoint(
        tmp_path, state, optimizer, scheduler, lambda d: weights.update(p=live.detach().clone()), 2
    )
    assert saved == latest_checkpoint(tmp_path) and saved.name == "step-0000003"
    after = torch.rand(2)  # what the generator gives next in the uninterrupted run

    restored = torch.nn.Parameter(weights["p"].clone())
    fresh_optimizer, fresh_scheduler = _stepped(restored, 0)
    torch.manual_seed(123)
    assert load_trainer_state(saved, fresh_optimizer, fresh_scheduler) == state
    assert torch.equal(torch.rand(2), after)
    for parameter, opt, sched in (
        (live, optimizer, scheduler),
        (restored, fresh_optimizer, fresh_scheduler),
    ):
        parameter.grad = torch.full_like(parameter, 0.5)
        opt.step()
        sched.step()
    assert torch.equal(live, restored)
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()


def test_rotation_keeps_the_last_checkpoints_and_the_best(tmp_path: Path) -> None:
    optimizer, scheduler = _stepped(torch.nn.Parameter(torch.zeros(2)), 1)
    for step in range(1, 6):
        state = TrainState(step=step, best_step=2, best_val_loss=0.5)
        save_checkpoint(tmp_path, state, optimizer, scheduler, lambda d: None, keep_last=2)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-0000002", "step-0000004", "step-0000005"]
    # A directory without trainer state (not ours, or written by hand) is never the latest.
    (tmp_path / "checkpoints" / "step-0000009").mkdir()
    assert latest_checkpoint(tmp_path).name == "step-0000005"


def test_a_checkpoint_of_the_old_format_is_refused_by_name(tmp_path: Path) -> None:
    optimizer, scheduler = _stepped(torch.nn.Parameter(torch.zeros(2)), 1)
    path = save_checkpoint(tmp_path, TrainState(step=1), optimizer, scheduler, lambda d: None, 1)
    meta = json.loads((path / TRAINER_JSON).read_text())
    del meta["format"]
    (path / TRAINER_JSON).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="trainer state format 1"):
        load_trainer_state(path, optimizer, scheduler)


# ---------------------------------------------------------------------- the loop and loss


@pytest.fixture(scope="module")
def micro_setup(synthetic_decision_steps: Path):
    tokenizer = build_tokenizer()
    examples = list(DecisionStepDataset(synthetic_decision_steps, "train", tokenizer, limit=8))
    return tokenizer, examples, ExampleCollator(tokenizer.pad_token_id)


def _one_step(tokenizer, window: list[dict], callbacks=()) -> tuple[dict, list[StepReport]]:
    model = build_model(MICRO, tokenizer, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    reports: list[StepReport] = []
    run_loop(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=iter([(0, i, batch) for i, batch in enumerate(window)]),
        objective=TargetTokenObjective(model, DistInfo()),
        state=TrainState(),
        settings=LoopSettings(max_steps=1, grad_accum=len(window), progress=False),
        callbacks=[lambda state, report: reports.append(report), *callbacks],
    )
    return {n: p.detach().clone() for n, p in model.named_parameters()}, reports


def test_accumulated_micro_batches_equal_one_batch_of_all_their_tokens(micro_setup) -> None:
    """Each target token weighs the same however the window is cut: micro-batches of 3 and 5
    examples take the same step as one batch of 8, and the logged loss is their mean token
    loss (weighting each micro-batch's mean alike would not: they hold different counts)."""
    tokenizer, examples, collate = micro_setup
    whole, whole_reports = _one_step(tokenizer, [collate(examples)])
    parts, part_reports = _one_step(tokenizer, [collate(examples[:3]), collate(examples[3:])])
    moved = 0
    initial = build_model(MICRO, tokenizer, seed=0)
    for name, value in whole.items():
        torch.testing.assert_close(parts[name], value, atol=2e-6, rtol=1e-5, msg=name)
        moved += int(not torch.equal(value, initial.get_parameter(name)))
    assert moved > 0
    reference = mean_token_loss(initial, examples, collate)
    for reports in (whole_reports, part_reports):
        assert reports[0].metrics["train_loss"] == pytest.approx(reference, rel=1e-5)
        assert reports[0].last and reports[0].step == 1


def test_periodic_callbacks_run_every_n_steps_and_at_the_last(micro_setup) -> None:
    tokenizer, examples, collate = micro_setup
    window = [collate(examples[i : i + 2]) for i in range(0, 8, 2)]
    model = build_model(MICRO, tokenizer, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    seen: list[tuple[int, int, int]] = []
    state = run_loop(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=iter([(i // 3, i % 3, batch) for i, batch in enumerate(window)]),
        objective=TargetTokenObjective(model, DistInfo()),
        state=TrainState(),
        settings=LoopSettings(max_steps=4, progress=False),
        callbacks=[periodic(3, lambda s, r: seen.append((s.step, s.epoch, s.batch)), DistInfo())],
    )
    assert seen == [(3, 0, 3), (4, 1, 1)]  # every 3rd step and the last; the next batch named
    assert (state.step, state.epoch, state.batch) == (4, 1, 1)


def test_the_separation_term_needs_the_adapter_model() -> None:
    with pytest.raises(ValueError, match="routed"):
        TargetTokenObjective(torch.nn.Linear(2, 2), DistInfo(), lambda_sep=0.1)
