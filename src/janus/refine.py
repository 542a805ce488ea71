"""``janus refine``: closed-loop refinement of a trained dial on its own games.

Behaviour cloning on script-vs-script games labels every step with an outcome the opponent
co-decided, so the cloned dial regresses toward the data's mean, and a policy cloned from
many scripts never learns what each of them does at the deadline: take the deal. Each round
here fixes that with Janus's own experience:

1. **Play.** The current adapter plays batched episodes against the *training* pool (a
   held-out opponent is refused), ρ* drawn from Beta(½, ½) (extra weight at the ends), both
   roles, the first mover balanced, its acceptance rules on. Greedy by default; it can
   explore (``temperature``: sampled games; ``dial_noise``: each game played at a dial off
   its request and judged on the request). Neither measured better (RESULTS.md).
2. **Relabel.** Every episode is written as an ordinary corpus (``rollouts.jsonl``, same
   schema, ``source``/``round`` recorded, Janus's side named ``janus``) and prepared by
   ``janus prepare``, so every validation of the pipeline applies. Its label is the ρ the
   episode *reached*. By default (``mode="filtered"``, which measured better) only episodes
   that landed within ε of their request are kept, so the label is within ε of ρ*;
   ``mode="hindsight"`` keeps them all (GCSL-style relabelling; an impasse gets the failure
   label).
3. **Train.** Training continues from the current adapter on a mix of the scripted corpus
   and Janus's own decision steps (``mix``: the share of own rows).

Then the round whose adapter is best calibrated on an in-pool sweep (not the one with the
lowest validation loss) is kept, and its calibration map is fitted on that sweep.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from janus.atomic import atomic_directory
from janus.domain import DomainConfig, Role, sample_scenario

if TYPE_CHECKING:  # the map imports numpy: only when refinement runs
    from janus.calibration import CalibrationMap

MODES = ("hindsight", "filtered")
JANUS_NAME = "janus"
SOURCE = "janus-refine"
CONFIG_FILE = "refine_config.json"
SELECTION_FILE = "selection.json"


@dataclass
class RefineConfig:
    """Every knob of ``janus refine`` (defaults: what ``janus demo`` uses on a CPU).

    - ``run``: the trained run (or adapter) to start from; ``out``: the refined run's
      directory (``out/adapter`` is the result, ``out/round-N/`` keeps each round).
    - ``rounds`` (0: no round, only the calibration map), ``episodes`` per round, ``steps``
      of training per round at ``lr`` (default: a third of the run's), ``warmup`` steps.
    - ``mode``: ``hindsight`` or ``filtered`` (with ``epsilon``); ``mix``: the share of
      own rows in each round's training epoch.
    - ``temperature``: the rollouts' sampling temperature (0: greedy). Greedy rollouts kept
      by the filter are the policy's own argmax at a label within ε of the dial it was
      played at, so training on them teaches the adapter what it already does; sampled
      rollouts explore, and the filter keeps the explorations that landed.
    - ``dial_noise``: the sd of the gap between the dial a rollout plays at and its request
      (0: none). The filter judges a game against its request, so a kept game teaches "to
      land at ρ* here, do what the dial did at ρ* + noise": the policy explores within its
      own repertoire, and the history it conditions on lets the correction differ by
      opponent.
    - ``price_decoding`` and ``dtype``: how the adapter's offers are read, and the base
      weights' dtype, in rollouts and sweeps (the map is fitted, and so holds, for them;
      ``janus demo`` plays bf16 on a CPU that computes it natively).
    - ``opponents``: the rollout pool (default: the training pool; held-out ones refused).
    - ``select``: keep the round best calibrated on an in-pool sweep (``sweep_episodes``
      per cell, against ``sweep_opponents``: default the in-pool evaluation opponents, never
      held-out ones, over ``sweep_grid``); ``calibrate``: fit and save the kept adapter's map.
    """

    run: str
    out: str
    rounds: int = 2
    episodes: int = 2000
    steps: int = 200
    lr: float | None = None
    warmup: int = 10
    # filtered measured better than hindsight on the in-pool selection sweep (RESULTS.md)
    mode: str = "filtered"
    epsilon: float = 0.05
    mix: float = 0.5
    temperature: float = 0.0
    dial_noise: float = 0.0
    price_decoding: str = "greedy"
    dtype: str = "auto"
    opponents: Sequence[str] | None = None
    seed: int = 0
    select: bool = True
    calibrate: bool = True
    sweep_episodes: int = 2
    sweep_opponents: Sequence[str] | None = None
    sweep_grid: Sequence[float] = tuple(round(i / 10, 1) for i in range(11))
    batch_size: int = 1024
    threads: int | None = 1
    overwrite: bool = False
    progress: bool = True
    train_overrides: dict[str, Any] = field(default_factory=dict)


def rollout_opponents(opponents: Sequence[str] | None = None) -> tuple[str, ...]:
    """The refinement's opponents: the training pool unless given; never a held-out one."""
    from janus.calibrate import pool_without_held_out
    from janus.strategies import training_pool

    return pool_without_held_out(opponents, training_pool(), "refinement")


def check_config(config: RefineConfig) -> None:
    """Everything cheap that can be wrong, before any model is loaded."""
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
    for name in ("rounds", "episodes", "steps", "sweep_episodes", "batch_size"):
        value = getattr(config, name)
        least = 0 if name == "rounds" else 1  # 0 rounds: only the calibration map
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if not 0.0 < config.mix < 1.0:
        raise ValueError(f"mix must be in (0, 1), got {config.mix}")
    if not 0.0 < config.epsilon <= 1.0:
        raise ValueError(f"epsilon must be in (0, 1], got {config.epsilon}")
    if not (0.0 <= config.temperature <= 10.0):  # also refuses NaN
        raise ValueError(f"temperature must be in [0, 10], got {config.temperature}")
    from janus.decoding import check_price_decoding

    check_price_decoding(config.price_decoding)
    from janus.agent import resolve_dtype

    resolve_dtype(config.dtype)  # a typo is refused before any model loads
    if not (0.0 <= config.dial_noise <= 1.0):
        raise ValueError(f"dial_noise must be in [0, 1], got {config.dial_noise}")
    if config.lr is not None and not (config.lr > 0 and math.isfinite(config.lr)):
        raise ValueError(f"lr must be a positive number, got {config.lr}")
    rollout_opponents(config.opponents)
    from janus.calibrate import calibration_opponents

    calibration_opponents(config.sweep_opponents)


def draw_request(rng: random.Random) -> float:
    """ρ* ~ Beta(½, ½) on the 2-decimal grid: the ends, where the dial is weakest, get
    about twice the weight of the middle."""
    return round(rng.betavariate(0.5, 0.5), 2) + 0.0


def episode_seed(seed: int, round_index: int, index: int) -> int:
    text = f"janus-refine:{seed}:{round_index}:{index}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


@dataclass(frozen=True)
class Rollout:
    """One own game to play: ``spec.requested_rho`` is the dial Janus plays at, ``target``
    the request the filter judges the game against (the same value without dial noise)."""

    spec: Any
    target: float


def explore_dial(target: float, noise: float, rng: random.Random) -> float:
    """The dial a rollout plays at: ``target`` moved by N(0, ``noise``), on the 2-decimal grid
    and clipped to [0, 1]; ``target`` itself (and no draw) without noise."""
    if noise <= 0.0:
        return target
    return round(min(1.0, max(0.0, target + rng.gauss(0.0, noise))), 2) + 0.0


def rollout_specs(
    episodes: int,
    opponents: Sequence[str],
    *,
    seed: int,
    round_index: int,
    domain: DomainConfig | None = None,
    dial_noise: float = 0.0,
) -> list[Rollout]:
    """Episode ``i``: opponent ``i mod n``, Janus buyer on even ``i // n``, the first mover
    alternating every two episodes, ρ*, the scenario and then the dial drawn from the
    episode's seed (so dial noise changes no scenario)."""
    from janus.evaluation.harness import EpisodeSpec

    domain = domain or DomainConfig()
    rollouts = []
    for index in range(episodes):
        opponent = opponents[index % len(opponents)]
        cycle = index // len(opponents)
        role = Role.BUYER if cycle % 2 == 0 else Role.SELLER
        opens = Role.BUYER if (cycle // 2) % 2 == 0 else Role.SELLER
        s = episode_seed(seed, round_index, index)
        rng = random.Random(s)
        target = draw_request(rng)
        scenario = sample_scenario(domain, rng, opens)
        spec = EpisodeSpec(
            configuration="refine",
            kind="janus",
            channels="both",
            requested_rho=explore_dial(target, dial_noise, rng),
            janus_role=role,
            opponent=opponent,
            held_out=False,
            index=index,
            seed=s,
            scenario=scenario,
            calibrated=False,
        )
        rollouts.append(Rollout(spec, target))
    return rollouts


@dataclass
class RolloutStats:
    """What one round's rollouts gave, and what of them became training rows."""

    episodes: int = 0
    agreements: int = 0
    written: int = 0
    dropped_invalid: int = 0
    dropped_filter: int = 0
    mean_abs_error: float = math.nan

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def keep_episode(mode: str, epsilon: float, requested: float, result: Any) -> bool:
    """Whether a rollout becomes training rows under ``mode`` (hindsight keeps them all)."""
    if mode == "hindsight":
        return True
    outcome = result.outcome
    return bool(outcome.agreement and abs(outcome.rho - requested) <= epsilon + 1e-12)


def play_and_write(
    agent: Any,
    rollouts: Sequence[Rollout],
    path: Path,
    *,
    mode: str,
    epsilon: float,
    round_index: int,
    batch_size: int = 1024,
    progress: bool = True,
) -> RolloutStats:
    """Play ``rollouts`` and write the kept episodes as a JSONL corpus (atomically); the
    filter and the reported error judge each game against its target."""
    from janus.dataset import DatasetWriter
    from janus.episode import run_episodes
    from janus.evaluation.harness import build_match

    stats = RolloutStats()
    errors: list[float] = []
    with (
        DatasetWriter(path, overwrite=True, include_impasse=True) as writer,
        tqdm(total=len(rollouts), desc=f"refine round {round_index}", disable=not progress) as bar,
    ):
        for start in range(0, len(rollouts), batch_size):
            chunk = rollouts[start : start + batch_size]
            matches = [build_match(rollout.spec, agent)[0] for rollout in chunk]
            results = run_episodes(matches, on_finished=bar.update)
            for rollout, result in zip(chunk, results, strict=True):
                spec, target = rollout.spec, rollout.target
                stats.episodes += 1
                if result.outcome.agreement:
                    stats.agreements += 1
                    errors.append(abs(result.outcome.rho - target))
                if result.invalid_actions():
                    stats.dropped_invalid += 1
                    continue
                if not keep_episode(mode, epsilon, target, result):
                    stats.dropped_filter += 1
                    continue
                janus_buyer = spec.janus_role is Role.BUYER
                writer.write(
                    result,
                    trajectory_id=f"refine-r{round_index}-{spec.index:08d}",
                    buyer_strategy=JANUS_NAME if janus_buyer else spec.opponent,
                    seller_strategy=spec.opponent if janus_buyer else JANUS_NAME,
                    seed=spec.seed,
                    episode=spec.index,
                    source=SOURCE,
                    round=round_index,
                )
                stats.written += 1
    stats.mean_abs_error = sum(errors) / len(errors) if errors else math.nan
    return stats


def _read_train_config(adapter: Path) -> dict[str, Any]:
    from janus.checkpoint import read_adapter_config

    config = read_adapter_config(adapter).get("train_config")
    if not config:
        raise ValueError(f"{adapter}: no train_config recorded; refine needs a janus train run")
    return dict(config)


def _train_round(
    config: RefineConfig, base: dict[str, Any], adapter: Path, corpus: Path, out: Path, r: int
) -> Path:
    from janus.train import TrainConfig, nest_options, train

    values = {
        **base,
        "out": str(out),
        "init_adapter": str(adapter),
        "extra_data": str(corpus),
        "extra_fraction": config.mix,
        "extra_decider": JANUS_NAME,
        "max_steps": config.steps,
        "warmup": config.warmup,
        "lr": config.lr if config.lr is not None else base["lr"] / 3,
        "save_every": config.steps,
        "eval_every": config.steps,
        "seed": int(base.get("seed", 0)) + 1000 * r + config.seed,
        **config.train_overrides,
    }
    train_config = TrainConfig.from_json(nest_options(values))
    result = train(train_config, progress=config.progress)
    return Path(result.adapter_dir)


@dataclass
class RefineResult:
    out: Path
    adapter: Path
    chosen_round: int
    rounds: list[dict[str, Any]]


def refine(config: RefineConfig, say: Callable[[str], None] = print) -> RefineResult:
    """Run the rounds of ``config`` (see the module docstring); returns the kept adapter."""
    from janus.agent import resolve_adapter_dir

    check_config(config)
    opponents = rollout_opponents(config.opponents)
    start = resolve_adapter_dir(config.run)
    base = _read_train_config(start)
    out = _fresh_out_dir(config, opponents, start)

    candidates: list[tuple[int, Path]] = [(0, start)]
    rounds: list[dict[str, Any]] = []
    adapter = start
    for r in range(1, config.rounds + 1):
        adapter, stats = _run_round(config, opponents, base, adapter, out / f"round-{r}", r, say)
        candidates.append((r, adapter))
        rounds.append({"round": r, "rollouts": stats.to_json(), "adapter": str(adapter)})

    (chosen_round, chosen_adapter), sweeps = _select(config, candidates, say)
    calibration = _chosen_calibration(config, chosen_round, chosen_adapter, sweeps)
    final = _write_adapter(out, chosen_adapter, calibration)
    selection = {
        "chosen_round": chosen_round,
        "criterion": "raw calibration MAE on an in-pool sweep" if config.select else "last round",
        "candidates": {str(r): s.to_json() for r, s in sweeps.items()},
        "rounds": rounds,
    }
    (out / SELECTION_FILE).write_text(json.dumps(selection, indent=2))
    return RefineResult(out=out, adapter=final, chosen_round=chosen_round, rounds=rounds)


def _fresh_out_dir(config: RefineConfig, opponents: Sequence[str], start: Path) -> Path:
    """An empty ``out`` holding only the run's record: a non-empty one is replaced only with
    ``overwrite``, and only if it is a refine directory (never someone else's files)."""
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        if not config.overwrite:
            raise FileExistsError(f"{out} is not empty: pass --overwrite or choose a new --out")
        if not (out / CONFIG_FILE).is_file():
            raise FileExistsError(f"{out} is not a refine directory; refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    record = {**asdict(config), "opponents": list(opponents), "start_adapter": str(start)}
    (out / CONFIG_FILE).write_text(json.dumps(record, indent=2, default=str))
    return out


def _run_round(
    config: RefineConfig,
    opponents: Sequence[str],
    base: dict[str, Any],
    adapter: Path,
    folder: Path,
    r: int,
    say: Callable[[str], None],
) -> tuple[Path, RolloutStats]:
    """One round in ``folder``: play, relabel through ``janus prepare``, train on the mix;
    returns the round's adapter and what its rollouts gave."""
    from janus.prepare import prepare

    folder.mkdir()
    stats = _play_round(config, opponents, adapter, folder / "rollouts.jsonl", r)
    say(
        f"round {r}: {stats.episodes} episodes, agreement "
        f"{stats.agreements / max(stats.episodes, 1):.2f}, mean |achieved - requested| "
        f"{stats.mean_abs_error:.3f}; {stats.written} written"
    )
    if stats.written == 0:
        raise ValueError(f"round {r}: no rollout was kept (mode {config.mode!r})")
    prepare(
        folder / "rollouts.jsonl",
        folder / "prepared",
        val_fraction=0.0,
        test_fraction=0.0,
        overwrite=True,
    )
    adapter = _train_round(config, base, adapter, folder / "prepared", folder / "run", r)
    return adapter, stats


def _play_round(
    config: RefineConfig, opponents: Sequence[str], adapter: Path, path: Path, r: int
) -> RolloutStats:
    """The current adapter's raw dial against the rollout pool, written to ``path``."""
    from janus.agent import JanusAgent
    from janus.runtime import torch_threads

    agent = JanusAgent.from_pretrained(
        adapter,
        raw=True,
        temperature=config.temperature,
        seed=episode_seed(config.seed, r, -1),
        price_decoding=config.price_decoding,
        dtype=config.dtype,
    )
    rollouts = rollout_specs(
        config.episodes,
        opponents,
        seed=config.seed,
        round_index=r,
        dial_noise=config.dial_noise,
    )
    with torch_threads(config.threads):
        return play_and_write(
            agent,
            rollouts,
            path,
            mode=config.mode,
            epsilon=config.epsilon,
            round_index=r,
            batch_size=config.batch_size,
            progress=config.progress,
        )


def _chosen_calibration(
    config: RefineConfig, chosen_round: int, adapter: Path, sweeps: dict[int, Any]
) -> CalibrationMap | None:
    """The kept adapter's calibration map (``None`` without ``calibrate``), fitted on the
    selection's sweep when there was one, so its episodes are not played twice."""
    from janus.calibrate import fit_map

    if not config.calibrate:
        return None
    sweep = sweeps.get(chosen_round) or _sweep(config, adapter)
    return fit_map(sweep, config.seed, round=chosen_round)


def _write_adapter(out: Path, chosen: Path, calibration: CalibrationMap | None) -> Path:
    """``out/adapter``: a copy of the kept round's adapter with its map, written atomically."""

    def write_adapter(tmp: Path) -> None:
        shutil.copytree(chosen, tmp, dirs_exist_ok=True)
        if calibration is not None:
            calibration.save(tmp)

    return atomic_directory(out / "adapter", write_adapter, what="adapter")


def _sweep(config: RefineConfig, adapter: Path) -> Any:
    """The in-pool sweep of one adapter's raw dial (the same episodes for every adapter)."""
    from janus.agent import JanusAgent
    from janus.calibrate import in_pool_sweep
    from janus.runtime import torch_threads

    agent = JanusAgent.from_pretrained(
        adapter,
        raw=True,
        seed=config.seed,
        price_decoding=config.price_decoding,
        dtype=config.dtype,
    )
    with torch_threads(config.threads):
        return in_pool_sweep(
            agent,
            episodes_per_cell=config.sweep_episodes,
            grid=config.sweep_grid,
            opponents=config.sweep_opponents,
            seed=config.seed,
            batch_size=config.batch_size,
            progress=config.progress,
        )


def _select(
    config: RefineConfig, candidates: list[tuple[int, Path]], say: Callable[[str], None]
) -> tuple[tuple[int, Path], dict[int, Any]]:
    """The candidate with the lowest raw MAE on an in-pool sweep (the last one if not
    ``select``); every candidate meets the same sweep episodes."""
    if not config.select:
        return candidates[-1], {}
    sweeps = {}
    for r, adapter in candidates:
        sweeps[r] = _sweep(config, adapter)
        say(f"round {r}: in-pool MAE {sweeps[r].mae:.3f}, agreement {sweeps[r].agreement_rate:.2f}")
    best = min(candidates, key=lambda c: sweeps[c[0]].mae)
    return best, sweeps
