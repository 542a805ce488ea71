"""Closed-loop refinement: exact relabelling, never a held-out opponent, deterministic."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from conftest import write_synthetic_prepared
from janus.calibration import CALIBRATION_FILE, CalibrationMap
from janus.dataset import iter_trajectories
from janus.domain import Role
from janus.refine import (
    JANUS_NAME,
    RefineConfig,
    check_config,
    draw_request,
    keep_episode,
    play_and_write,
    refine,
    rollout_opponents,
    rollout_specs,
)
from janus.rules import DEFAULT_RULES
from janus.strategies import held_out_pool, training_pool

SWEEP_OPPONENTS = ("linear", "boulware")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (two-step) ``janus train`` run on a random janus-tiny base."""
    from janus.hyperlora import HyperLoRAConfig
    from janus.tiny import build_model, build_tokenizer
    from janus.train import TrainConfig, train

    root = tmp_path_factory.mktemp("refine")
    corpus = write_synthetic_prepared(root / "prepared", 40, seed=1)
    tokenizer = build_tokenizer()
    build_model("tiny", tokenizer, seed=0).save_pretrained(root / "janus-tiny")
    tokenizer.save_pretrained(root / "janus-tiny")
    config = TrainConfig(
        data=str(corpus),
        base_model=str(root / "janus-tiny"),
        out=str(root / "run"),
        adapter=HyperLoRAConfig(rank=4, alpha=8.0, hyper_hidden=8, dropout=0.0),
        lr=2e-3,
        warmup=1,
        max_steps=2,
        batch_size=8,
        save_every=2,
        eval_every=2,
        eval_examples=8,
        eval_decode_examples=2,
    )
    train(config, progress=False)
    return root / "run"


def _config(run: Path, out: Path, **overrides) -> RefineConfig:
    values = dict(
        run=str(run),
        out=str(out),
        rounds=1,
        mode="hindsight",  # a random tiny adapter rarely lands within ε of its request
        episodes=24,
        steps=2,
        opponents=("linear", "hardliner", "boulware"),
        sweep_episodes=1,
        sweep_opponents=SWEEP_OPPONENTS,
        sweep_grid=(0.0, 0.5, 1.0),
        progress=False,
        train_overrides={"batch_size": 8, "eval_examples": 8, "eval_decode_examples": 2},
    )
    values.update(overrides)
    return RefineConfig(**values)


def test_the_rollout_pool_never_holds_a_held_out_opponent() -> None:
    default = rollout_opponents()
    assert default == tuple(training_pool())
    assert not set(default) & set(held_out_pool())
    for name in held_out_pool():
        with pytest.raises(ValueError, match="held-out opponent"):
            rollout_opponents(["linear", name])
        with pytest.raises(ValueError, match="held-out opponent"):
            check_config(RefineConfig(run="r", out="o", sweep_opponents=[name]))


def test_bad_options_are_refused_before_any_work() -> None:
    bads = (
        {"mode": "greedy"},
        {"mix": 1.0},
        {"rounds": -1},
        {"epsilon": 0.0},
        {"temperature": -0.5},
        {"temperature": float("nan")},
        {"dtype": "float8"},
    )
    for bad in bads:
        with pytest.raises(ValueError):
            check_config(RefineConfig(run="r", out="o", **bad))


def test_requests_weigh_the_ends_and_specs_balance_roles_and_first_movers() -> None:
    rng = random.Random(0)
    draws = [draw_request(rng) for _ in range(4000)]
    assert all(0.0 <= d <= 1.0 and round(d, 2) == d for d in draws)
    ends = sum(d < 0.2 or d > 0.8 for d in draws) / len(draws)
    assert ends > 0.5  # uniform would give 0.4; Beta(1/2, 1/2) gives about 0.59
    rollouts = rollout_specs(80, ("linear", "boulware"), seed=3, round_index=1)
    specs = [r.spec for r in rollouts]
    assert Counter(s.janus_role for s in specs) == {Role.BUYER: 40, Role.SELLER: 40}
    assert Counter(s.scenario.first_mover for s in specs) == {Role.BUYER: 40, Role.SELLER: 40}
    assert all(r.spec.requested_rho == r.target for r in rollouts)  # no dial noise
    again = rollout_specs(80, ("linear", "boulware"), seed=3, round_index=1)
    assert [(r.spec.seed, r.target) for r in rollouts] == [(r.spec.seed, r.target) for r in again]
    other = rollout_specs(80, ("linear", "boulware"), seed=3, round_index=2)
    assert [r.spec.seed for r in other] != [s.seed for s in specs]


def test_dial_noise_moves_the_dial_but_not_the_request_or_the_scenario() -> None:
    plain = rollout_specs(200, ("linear", "boulware"), seed=3, round_index=1)
    noisy = rollout_specs(200, ("linear", "boulware"), seed=3, round_index=1, dial_noise=0.2)
    assert [r.target for r in noisy] == [r.target for r in plain]
    assert [r.spec.scenario for r in noisy] == [r.spec.scenario for r in plain]
    gaps = [r.spec.requested_rho - r.target for r in noisy]
    assert all(0.0 <= r.spec.requested_rho <= 1.0 for r in noisy)
    assert all(round(r.spec.requested_rho, 2) == r.spec.requested_rho for r in noisy)
    inside = [g for r, g in zip(noisy, gaps, strict=True) if 0.3 <= r.target <= 0.7]
    assert sum(g != 0 for g in gaps) > 150  # moved, apart from a few clipped at the ends
    sd = (sum(g * g for g in inside) / len(inside)) ** 0.5
    assert 0.12 < sd < 0.28  # about the requested 0.2 where no end clips it
    again = rollout_specs(200, ("linear", "boulware"), seed=3, round_index=1, dial_noise=0.2)
    assert [r.spec.requested_rho for r in again] == [r.spec.requested_rho for r in noisy]


def test_the_filter_judges_a_game_against_its_request_not_its_dial(
    tiny_run: Path, tmp_path: Path
) -> None:
    from janus.agent import JanusAgent
    from janus.refine import Rollout

    agent = JanusAgent.from_pretrained(tiny_run, raw=True)
    plain = rollout_specs(12, ("linear",), seed=0, round_index=1)
    path = tmp_path / "reached.jsonl"
    reached = play_and_write(
        agent, plain, path, mode="hindsight", epsilon=0.05, round_index=1, progress=False
    )
    # The games written (a random tiny adapter makes some invalid ones) and what they reached.
    reached_rho = {t.trajectory_id: t.records[0]["rho_outcome"] for t in iter_trajectories(path)}
    assert len(reached_rho) == reached.written > 0
    valid = [r for r in plain if f"refine-r1-{r.spec.index:08d}" in reached_rho]
    achieved = [reached_rho[f"refine-r1-{r.spec.index:08d}"] for r in valid]
    # The same games judged against targets equal to what they reached: every deal kept ...
    hits = [Rollout(r.spec, max(a, 0.0)) for r, a in zip(valid, achieved, strict=True)]
    kept = play_and_write(
        agent,
        hits,
        tmp_path / "hits.jsonl",
        mode="filtered",
        epsilon=0.01,
        round_index=1,
        progress=False,
    )
    assert kept.written == sum(a >= 0 for a in achieved) > 0
    assert kept.mean_abs_error == pytest.approx(0.0, abs=1e-9)
    # ... and against targets 0.5 away from it: none kept, whatever the dial played.
    misses = [
        Rollout(r.spec, 0.0 if a > 0.5 else 1.0) for r, a in zip(valid, achieved, strict=True)
    ]
    missed = play_and_write(
        agent,
        misses,
        tmp_path / "misses.jsonl",
        mode="filtered",
        epsilon=0.05,
        round_index=1,
        progress=False,
    )
    assert missed.written == 0


def test_relabelling_is_exact_and_impasses_get_the_failure_label(
    tiny_run: Path, tmp_path: Path
) -> None:
    from janus.agent import JanusAgent

    agent = JanusAgent.from_pretrained(tiny_run, raw=True)
    rollouts = rollout_specs(30, ("hardliner", "linear"), seed=0, round_index=1)
    path = tmp_path / "rollouts.jsonl"
    stats = play_and_write(
        agent, rollouts, path, mode="hindsight", epsilon=0.05, round_index=1, progress=False
    )
    assert stats.episodes == 30 and stats.written + stats.dropped_invalid == 30
    by_id = {f"refine-r1-{r.spec.index:08d}": r.spec for r in rollouts}
    trajectories = list(iter_trajectories(path))  # the project's validating reader
    assert len(trajectories) == stats.written
    for trajectory in trajectories:
        spec = by_id[trajectory.trajectory_id]
        first = trajectory.records[0]
        janus_side = "buyer" if spec.janus_role is Role.BUYER else "seller"
        assert first[f"{janus_side}_strategy"] == JANUS_NAME
        assert first["seed"] == spec.seed
        assert (first["source"], first["round"]) == ("janus-refine", 1)
        for record in trajectory.records:
            if record["outcome"] == "impasse":
                assert record["rho_outcome"] == -1.0
            else:
                # The label is what the episode reached, computed from its own prices.
                bmax, smin = spec.scenario.buyer_max, spec.scenario.seller_min
                reached = (record["final_price"] - smin) / (bmax - smin)
                assert record["rho_outcome"] == pytest.approx(reached, abs=1e-12)


def test_the_filtered_mode_keeps_only_episodes_near_their_request() -> None:
    class Outcome:
        def __init__(self, agreement: bool, rho: float) -> None:
            self.agreement, self.rho = agreement, rho

    class Result:
        def __init__(self, agreement: bool, rho: float) -> None:
            self.outcome = Outcome(agreement, rho)

    assert keep_episode("filtered", 0.05, 0.5, Result(True, 0.54))
    assert not keep_episode("filtered", 0.05, 0.5, Result(True, 0.56))
    assert not keep_episode("filtered", 0.05, 0.5, Result(False, -1.0))
    assert keep_episode("hindsight", 0.05, 0.5, Result(False, -1.0))


def test_sampled_rollouts_explore_and_are_deterministic_for_a_seed(
    tiny_run: Path, tmp_path: Path
) -> None:
    from janus.refine import _play_round

    opponents = ("linear", "hardliner")

    def play(name: str, **overrides) -> str:
        config = _config(tiny_run, tmp_path / name, episodes=16, **overrides)
        path = tmp_path / f"{name}.jsonl"
        stats = _play_round(config, opponents, tiny_run / "adapter", path, 1)
        assert stats.episodes == 16
        return _digest(path)

    sampled = play("sampled", temperature=1.0)
    assert play("again", temperature=1.0) == sampled
    assert play("greedy") != sampled
    assert play("other-seed", temperature=1.0, seed=1) != sampled


def test_calibrate_fits_a_map_under_the_rules_it_is_given(tiny_run: Path, tmp_path: Path) -> None:
    from janus.calibrate import calibrate_adapter

    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_run / "adapter", adapter)
    kwargs = dict(episodes_per_cell=1, opponents=SWEEP_OPPONENTS, progress=False)
    default, _ = calibrate_adapter(adapter, **kwargs)
    assert default.details["rules"] == list(DEFAULT_RULES)
    other, path = calibrate_adapter(adapter, rules="accept_better,no_retreat", **kwargs)
    assert other.details["rules"] == ["accept_better", "no_retreat"]
    assert CalibrationMap.load(adapter).details["rules"] == ["accept_better", "no_retreat"]
    assert path.parent == adapter
    assert default.details["dtype"] == "float32"  # auto: the dtype the adapter trained with
    swept, _ = calibrate_adapter(adapter, dtype="bfloat16", **kwargs)
    assert swept.details["dtype"] == "bfloat16"
    # ... and an agent on the adapter then plays the map's dtype by default.
    from janus.agent import JanusAgent

    assert JanusAgent.from_pretrained(adapter).dtype == torch.bfloat16


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_refinement_round_is_deterministic_and_leaves_a_calibrated_adapter(
    tiny_run: Path, tmp_path: Path
) -> None:
    first = refine(_config(tiny_run, tmp_path / "a"), say=lambda _: None)
    second = refine(_config(tiny_run, tmp_path / "b"), say=lambda _: None)
    for result in (first, second):
        assert (result.adapter / CALIBRATION_FILE).is_file()
        assert (result.out / "round-1" / "prepared" / "decision_steps.parquet").is_file()
    rollouts = [r.out / "round-1" / "rollouts.jsonl" for r in (first, second)]
    assert _digest(rollouts[0]) == _digest(rollouts[1])
    weights = [
        r.out / "round-1" / "run" / "adapter" / "adapter_state.safetensors" for r in (first, second)
    ]
    assert _digest(weights[0]) == _digest(weights[1])
    assert first.chosen_round == second.chosen_round
    selection = json.loads((first.out / "selection.json").read_text())
    assert set(selection["candidates"]) == {"0", "1"}
    calibration = CalibrationMap.load(first.adapter)
    assert calibration is not None and calibration.opponents == SWEEP_OPPONENTS
    assert calibration.details["rules"] == list(DEFAULT_RULES)  # what the sweep played
    # The round trained on Janus's own rows mixed with the scripted ones.
    counts = json.loads((first.out / "round-1" / "run" / "data.json").read_text())
    assert counts["extra_rows"] > 0 and counts["scripted_rows"] > 0
    table = pq.read_table(first.out / "round-1" / "prepared" / "decision_steps.parquet")
    assert JANUS_NAME in set(table.column("buyer_strategy").to_pylist()) | set(
        table.column("seller_strategy").to_pylist()
    )
    # An existing refine directory is replaced only on request.
    with pytest.raises(FileExistsError):
        refine(_config(tiny_run, tmp_path / "a"), say=lambda _: None)


def test_a_round_tokenises_only_the_scripted_sample_it_trains_on(
    tiny_run: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from janus.examples import DecisionStepDataset
    from janus.train import TrainConfig
    from janus.training.data import training_view

    result = refine(_config(tiny_run, tmp_path / "r"), say=lambda _: None)
    own = result.out / "round-1" / "prepared"
    scripted = tiny_run.parent / "prepared"
    tokenizer = AutoTokenizer.from_pretrained(tiny_run / "adapter")
    config = TrainConfig(
        data=str(scripted), extra_data=str(own), extra_fraction=0.8, extra_decider=JANUS_NAME
    )
    view, lengths, counts = training_view(config, tokenizer)
    full = DecisionStepDataset(scripted, "train", tokenizer)
    wanted = round(counts["extra_rows"] * (1 - 0.8) / 0.8)
    assert 0 < wanted < len(full)
    assert counts["scripted_rows"] == wanted
    assert len(view) == len(lengths) == wanted + counts["extra_rows"]
    # The sample is rows of the scripted split, drawn from the seed, and the same every time.
    everything = {tuple(e.input_ids.tolist()) for e in full}
    sample = [tuple(view[i].input_ids.tolist()) for i in range(wanted)]
    assert set(sample) <= everything
    again, _, _ = training_view(config, tokenizer)
    assert [tuple(again[i].input_ids.tolist()) for i in range(wanted)] == sample
