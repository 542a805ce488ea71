"""Commands that train: ``train``, ``refine``, ``calibrate``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from janus.cli.core import (
    DtypeOption,
    PriceDecodingOption,
    RulesOption,
    command,
    friendly_errors,
)

if TYPE_CHECKING:  # janus.train imports torch: only when a command runs
    from janus.train import TrainConfig, TrainResult


def _adapter_help(name: str, text: str) -> str:
    """An adapter option's help, with HyperLoRAConfig's default (a torch-free import)."""
    from janus.hyperlora.config import HyperLoRAConfig, target_modules_to_text

    value = getattr(HyperLoRAConfig(), name)
    shown = target_modules_to_text(value) if name == "target_modules" else value
    return f"{text} Default: {shown}, unless the preset sets it."


@command("train")
@friendly_errors
def train_command(
    data: Annotated[Path, typer.Option(help="Prepared corpus directory.")] = Path("prepared"),
    base_model: Annotated[
        str, typer.Option(help="Base causal LM: a local directory or a hub id.")
    ] = "janus-tiny",
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/janus"),
    preset: Annotated[
        str | None,
        typer.Option(
            help="cpu-demo (janus-tiny, minutes on 2 cores), cpu-real (SmolLM2-135M, about an "
            "hour on 2 cores, bf16) or gpu; options override it."
        ),
    ] = None,
    rank: Annotated[int | None, typer.Option(help=_adapter_help("rank", "LoRA rank r."))] = None,
    alpha: Annotated[
        float | None, typer.Option(help=_adapter_help("alpha", "LoRA alpha (scale alpha/r)."))
    ] = None,
    dropout: Annotated[
        float | None, typer.Option(help=_adapter_help("dropout", "Dropout on the adapter input."))
    ] = None,
    hyper_hidden: Annotated[
        int | None, typer.Option(help=_adapter_help("hyper_hidden", "Hypernetwork hidden width."))
    ] = None,
    fourier_features: Annotated[
        int | None,
        typer.Option(
            help=_adapter_help("fourier_features", "Sin/cos pairs of ρ for the hypernet.")
        ),
    ] = None,
    target_modules: Annotated[
        str | None,
        typer.Option(
            help=_adapter_help(
                "target_modules",
                "Layers to adapt: comma-separated name suffixes, 'all-linear', or a regex on "
                "the full module name written 're:<pattern>'.",
            )
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (AdamW).")] = None,
    warmup: Annotated[int | None, typer.Option(help="Linear warm-up steps.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimiser steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Micro-batch size per process.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches per step.")] = None,
    k: Annotated[int | None, typer.Option(help="History length shown in the prompt.")] = None,
    lambda_sep: Annotated[float | None, typer.Option(help="Weight of the gate separation.")] = None,
    include_failures: Annotated[
        bool | None, typer.Option(help="Train on impasse rows too (<RHO_FAIL>).")
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Drop examples longer than this.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random choice.")] = None,
    bf16: Annotated[
        bool | None,
        typer.Option(help="bf16 base + autocast (GPU, or a CPU with AVX512-BF16)."),
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option(help="Trade compute for activation memory.")
    ] = None,
    save_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Validate every N steps.")] = None,
    keep_last: Annotated[int | None, typer.Option(help="Checkpoints kept (plus the best).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run's last checkpoint.")] = False,
) -> None:
    """Train a ρ-steerable HyperLoRA adapter on a frozen causal LM.

    Runs on one process, or on many with `torchrun --nproc_per_node N -m janus train ...`
    (DDP: gloo on CPU, nccl on GPU). Writes OUT/adapter (load it with janus evaluate / play),
    OUT/metrics.jsonl and OUT/checkpoints; --resume continues exactly where a run stopped.
    """
    options = dict(locals())  # first statement: exactly the command's options
    from janus.train import train

    result = train(_train_config(options), resume=resume)
    _echo_training(result)


def _train_config(options: dict[str, Any]) -> TrainConfig:
    """The run's config: the preset, overridden by every option given (paths as text, the
    target modules parsed); ``preset`` and ``resume`` choose how to run, not what."""
    from janus.hyperlora.config import target_modules_from_text
    from janus.train import TrainConfig, apply_preset

    overrides = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in options.items()
        if key not in {"preset", "resume"}
    }
    if options["target_modules"] is not None:
        overrides["target_modules"] = target_modules_from_text(options["target_modules"])
    return apply_preset(TrainConfig(), options["preset"], overrides)


def _echo_training(result: TrainResult) -> None:
    """The run's last validation (when it validated) and where its adapter is."""
    if result.final_metrics:
        final = result.final_metrics
        typer.echo(
            f"step {result.steps}: val_loss {final.get('val_loss', float('nan')):.4f}, "
            f"action accuracy {final.get('action_accuracy')}"
        )
    typer.echo(f"adapter: {result.adapter_dir}")


@command("refine")
@friendly_errors
def refine_command(
    run: Annotated[Path, typer.Option(help="The trained run (or adapter) to refine.")],
    out: Annotated[Path, typer.Option(help="The refined run's directory.")],
    rounds: Annotated[int, typer.Option(help="Play / relabel / train rounds.")] = 2,
    episodes: Annotated[int, typer.Option(help="Own episodes played per round.")] = 2000,
    steps: Annotated[int, typer.Option(help="Training steps per round.")] = 200,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default: a third of the run's).")
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="filtered (default, measured better): keep only own episodes that landed within "
            "--epsilon of their request; hindsight: keep every episode, labelled with the rho "
            "it reached."
        ),
    ] = "filtered",
    epsilon: Annotated[float, typer.Option(help="The filtered mode's tolerance.")] = 0.05,
    mix: Annotated[float, typer.Option(help="Share of own rows in each round's epoch.")] = 0.5,
    temperature: Annotated[
        float,
        typer.Option(
            help="Sampling temperature of the own games (0: greedy). Greedy games teach the "
            "adapter what it already does; sampled ones explore, and the filter keeps those "
            "that landed."
        ),
    ] = 0.0,
    dial_noise: Annotated[
        float,
        typer.Option(
            help="Sd of the gap between the dial an own game is played at and its request "
            "(0: none); the filter judges the game against the request."
        ),
    ] = 0.0,
    opponents: Annotated[
        str | None,
        typer.Option(help="Comma-separated rollout opponents (default: the training pool)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of rollouts, sweeps and training.")] = 0,
    no_select: Annotated[
        bool, typer.Option("--no-select", help="Keep the last round instead of the best one.")
    ] = False,
    price_decoding: PriceDecodingOption = None,
    dtype: DtypeOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier refine directory.")] = False,
) -> None:
    """Refine a trained dial on its own games, then fit its calibration map.

    Each round, Janus plays the training pool (never a held-out opponent) at rho* drawn with
    extra weight at the ends; its games are written as an ordinary corpus labelled with the
    rho they reached, prepared, and training continues on a mix of scripted and own rows.
    The round best calibrated on an in-pool sweep is kept in OUT/adapter with its map.
    """
    from janus.refine import RefineConfig, refine

    config = RefineConfig(
        run=str(run),
        out=str(out),
        rounds=rounds,
        episodes=episodes,
        steps=steps,
        lr=lr,
        mode=mode,
        epsilon=epsilon,
        mix=mix,
        temperature=temperature,
        dial_noise=dial_noise,
        price_decoding=price_decoding or "greedy",
        dtype=dtype or "auto",
        opponents=[o.strip() for o in opponents.split(",")] if opponents else None,
        seed=seed,
        select=not no_select,
        overwrite=overwrite,
    )
    result = refine(config, say=typer.echo)
    typer.echo(f"kept round {result.chosen_round}; adapter: {result.adapter}")


@command("calibrate")
@friendly_errors
def calibrate_command(
    run: Annotated[Path, typer.Option(help="Run directory or adapter directory.")],
    episodes_per_cell: Annotated[
        int, typer.Option(help="Sweep episodes per rho x opponent x role.")
    ] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the sweep's episodes.")] = 0,
    rules: RulesOption = None,
    price_decoding: PriceDecodingOption = None,
    dtype: DtypeOption = None,
) -> None:
    """Fit the adapter's calibration map on an in-pool sweep and save it beside the weights.

    Agents then play the map's inverse by default (janus play/evaluate --raw turns it off).
    Only in-pool opponents play the sweep: held-out opponents never choose anything. The map
    holds for the rules it was swept with: fit it with the --rules the agent will play.
    """
    from janus.calibrate import calibrate_adapter

    calibration, path = calibrate_adapter(
        run,
        episodes_per_cell=episodes_per_cell,
        seed=seed,
        rules=rules,
        price_decoding=price_decoding or "greedy",
        dtype=dtype or "auto",
    )
    for role in ("buyer", "seller"):
        if role in calibration.curves:
            low, high = calibration.reachable(role)
            typer.echo(f"{role}: the dial reaches rho {low:.2f}..{high:.2f}")
    typer.echo(f"calibration map: {path}")
