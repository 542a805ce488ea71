"""``evaluate(config)``: plan the episodes, load the agents, play, summarise, write the report."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from janus.evaluation.harness import (
    EpisodeRecord,
    EpisodeSpec,
    EvaluationConfig,
    EvaluationPlan,
    make_plan,
    plan_episodes,
    play_episodes,
)
from janus.evaluation.plots import write_plots
from janus.evaluation.report import (
    EPISODES_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
    atomic_directory,
    check_out_dir,
    render_report,
    write_episodes_csv,
    write_summary_json,
)
from janus.evaluation.summary import summarize
from janus.evaluation.summary_types import EvaluationSummary, HeldOutCheck, RunContext
from janus.runtime import torch_threads

__all__ = ["EvaluationResult", "default_out_dir", "evaluate"]


@dataclass
class EvaluationResult:
    """What :func:`evaluate` produced: the typed summary (what ``summary.json`` holds) and
    the paths of the report directory and its files."""

    summary: EvaluationSummary
    out_dir: Path
    episodes_csv: Path
    summary_json: Path
    report_md: Path
    plots: dict[str, Path] = field(default_factory=dict)


def default_out_dir(run: str | Path | None) -> Path:
    """``reports/<run name>`` (the run directory's name, also when given its ``adapter/``)."""
    if run is None:
        raise ValueError("no output directory: set out= (there is no run to name it after)")
    path = Path(run).expanduser().resolve()
    name = path.parent.name if path.name == "adapter" else path.name
    return Path("reports") / (name or "janus")


def _base_model_of(config: EvaluationConfig) -> str:
    if config.base_model:
        return str(config.base_model)
    if config.run is None:
        raise ValueError("the base configuration needs base_model= or a run to read it from")
    from janus.agent import resolve_adapter_dir
    from janus.checkpoint import read_adapter_config

    return str(read_adapter_config(resolve_adapter_dir(config.run))["base_model_name_or_path"])


def training_strategies(run: str | Path) -> tuple[Path | None, set[str] | None]:
    """The strategies that played in the run's training data, if it can still be found.

    Reads ``train_config.data`` from the adapter config, then the ``buyer_strategy`` and
    ``seller_strategy`` columns of its ``trajectory_outcomes.parquet``. ``(None, None)`` when
    the run or its data is not available (the check is then reported as not done).
    """
    try:
        from janus.agent import resolve_adapter_dir
        from janus.checkpoint import read_adapter_config

        config = read_adapter_config(resolve_adapter_dir(run))
        data = Path(str(config["train_config"]["data"])).expanduser()
        table_path = data / "trajectory_outcomes.parquet"
        if not table_path.is_file():
            return None, None
        import pyarrow.parquet as pq

        table = pq.read_table(table_path, columns=["buyer_strategy", "seller_strategy"])
    except (OSError, KeyError, TypeError, ValueError):
        return None, None
    names = set(table.column("buyer_strategy").to_pylist())
    names |= set(table.column("seller_strategy").to_pylist())
    return table_path, {n for n in names if n}


def _held_out_check(config: EvaluationConfig, held_out: Sequence[str]) -> HeldOutCheck:
    path, seen = (None, None) if config.run is None else training_strategies(config.run)
    if seen is None:
        return HeldOutCheck(checked=False)
    leaked = sorted(set(held_out) & seen)
    if leaked:
        warnings.warn(
            f"held-out opponents {', '.join(leaked)} appear in the training data {path}: "
            "their results are not held-out results",
            stacklevel=3,
        )
    return HeldOutCheck(checked=True, training_data=str(path), seen_in_training=tuple(leaked))


def _map_provenance(agent: Any) -> dict[str, Any] | None:
    """Where the agent's calibration map came from (its opponents: never held-out ones)."""
    calibration = getattr(agent, "calibration", None)
    if calibration is None:
        return None
    return {
        "opponents": list(calibration.opponents),
        "seed": calibration.seed,
        "reachable": {role: list(calibration.reachable(role)) for role in calibration.curves},
        **dict(calibration.details),
    }


def _run_context(
    config: EvaluationConfig,
    agent: Any,
    base_agent: Any,
    base_model: str | None,
    held_out_check: HeldOutCheck,
) -> RunContext:
    """What was evaluated and how it was played, as the agents report it."""
    played = agent if agent is not None else base_agent
    return RunContext(
        adapter=None if config.run is None else str(config.run),
        base_model=str(base_model or config.base_model or "") or None,
        agent=getattr(agent, "label", None) if agent is not None else None,
        base_agent=getattr(base_agent, "label", None) if base_agent is not None else None,
        safety=getattr(played, "safety", config.safety),
        temperature=config.temperature,
        price_decoding=getattr(played, "price_decoding", config.price_decoding),
        device=config.device,
        dtype=str(getattr(played, "dtype", config.dtype)),
        batch_size=config.batch_size,
        threads=config.threads,
        held_out_check=held_out_check,
        rules=tuple(getattr(played, "rules", ()) or ()),
        calibration_map=_map_provenance(agent),
    )


def _negmas_hook(summary: EvaluationSummary, records, plan, n_resamples: int):
    """With NegMAS negotiators in the plan, a writer of ``negmas.json`` (per opponent,
    irrational sides flagged: :mod:`janus.integrations.negmas.summary`) that returns the
    report's NegMAS section; without, one that writes nothing."""
    from janus.integrations.negmas import is_negmas_name

    if not any(is_negmas_name(n) for n in (*plan.opponents, *plan.baselines)):
        return lambda _directory: ""
    from janus.integrations.negmas.summary import negmas_summary, render_section, write_json

    block = negmas_summary(records, plan, n_resamples=n_resamples)

    def write(directory: Path) -> str:
        write_json(block, directory)
        return "\n" + render_section(block, summary)

    return write


def evaluate(
    config: EvaluationConfig, *, agent: Any = None, base_agent: Any = None
) -> EvaluationResult:
    """Run the benchmark of ``config`` and write ``reports/NAME/``.

    ``agent`` (the adapter's :class:`~janus.agent.JanusAgent`) and ``base_agent`` (the base
    model, ``JanusAgent.from_base``) are loaded from ``config`` unless given; any object with
    ``seat(rho, channels=, fixed_rho=, name=)`` whose seats are batch-policy negotiators
    will do. The output directory is checked before any episode is played, and written
    atomically at the end.
    """
    plan = make_plan(config)
    out = check_out_dir(
        Path(config.out) if config.out is not None else default_out_dir(config.run),
        config.overwrite,
    )
    held_out_check = _held_out_check(config, plan.held_out_opponents)
    kinds = {s.kind for s in plan_episodes(plan)}
    base_model = None
    if "janus" in kinds and agent is None:
        agent = _load_agent(config)
    if "base" in kinds and base_agent is None:
        base_model = _base_model_of(config)
        base_agent = _load_base_agent(config, base_model, agent)
    specs = plan_episodes(plan, raw_sweep=getattr(agent, "calibration", None) is not None)
    records, seconds = _play(config, plan, specs, agent, base_agent)
    run = _run_context(config, agent, base_agent, base_model, held_out_check)
    summary = summarize(
        records, plan, run=run, n_resamples=config.bootstrap_resamples, seconds=seconds
    )
    extra = _negmas_hook(summary, records, plan, config.bootstrap_resamples)
    out, plots = _write_report(config, out, summary, records, extra)
    return EvaluationResult(
        summary=summary,
        out_dir=out,
        episodes_csv=out / EPISODES_FILE,
        summary_json=out / SUMMARY_FILE,
        report_md=out / REPORT_FILE,
        plots={k: out / v for k, v in plots.items()},
    )


def _load_agent(config: EvaluationConfig) -> Any:
    """The adapter's agent, loaded only when the plan has episodes for it."""
    if config.run is None:
        raise ValueError("no adapter to evaluate: set run= (a run or adapter directory)")
    from janus.agent import JanusAgent

    return JanusAgent.from_pretrained(
        config.run,
        config.base_model,
        device=config.device,
        safety=config.safety,
        temperature=config.temperature,
        price_decoding=config.price_decoding,
        seed=config.seed,
        dtype=config.dtype,
        rules=config.rules,
        raw=config.raw,
    )


def _load_base_agent(config: EvaluationConfig, base_model: str, agent: Any) -> Any:
    """The base model as the ``base`` configuration: the adapter's agent without its
    adapter, so that the two differ in nothing else."""
    from janus.agent import JanusAgent

    # The same prompt as the adapter's: its history length k too.
    same_prompt = {"k": agent.k} if hasattr(agent, "k") else {}
    # ... and its dtype: the base configuration is the same model without the adapter
    # (with no adapter to read, "auto" resolves to float32).
    dtype = getattr(agent, "dtype", None) or config.dtype
    return JanusAgent.from_base(
        base_model,
        device=config.device,
        safety=config.safety,
        dtype=dtype,
        rules=config.rules,
        price_decoding=config.price_decoding,
        **same_prompt,
    )


def _play(
    config: EvaluationConfig,
    plan: EvaluationPlan,
    specs: list[EpisodeSpec],
    agent: Any,
    base_agent: Any,
) -> tuple[list[EpisodeRecord], float]:
    """Play every episode under the configured torch threads; the seconds it took go to
    the summary."""
    with torch_threads(config.threads):
        start = time.perf_counter()
        records = play_episodes(
            specs,
            agent,
            base_agent,
            fixed_rho=plan.fixed_rho,
            batch_size=config.batch_size,
            progress=config.progress,
        )
        seconds = time.perf_counter() - start
    return records, seconds


def _write_report(
    config: EvaluationConfig,
    out: Path,
    summary: EvaluationSummary,
    records: list[EpisodeRecord],
    extra: Callable[[Path], str],
) -> tuple[Path, dict[str, str]]:
    """Write the report directory atomically (all of its files or none); returns it and
    the plots' file names by key."""
    plots: dict[str, str] = {}

    def write(tmp: Path) -> None:
        write_episodes_csv(records, tmp / EPISODES_FILE)
        if config.plots:
            plots.update({k: p.name for k, p in write_plots(summary, tmp).items()})
        write_summary_json(summary, tmp / SUMMARY_FILE)
        report = render_report(summary, {k: Path(v) for k, v in plots.items()})
        (tmp / REPORT_FILE).write_text(report + extra(tmp), encoding="utf-8")

    return atomic_directory(out, write, overwrite=config.overwrite), plots
