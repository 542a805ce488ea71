"""Commands that measure and ship: ``evaluate``, ``compare``, ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from janus.cli.core import (
    DtypeOption,
    NoSafetyOption,
    PriceDecodingOption,
    RawOption,
    RulesOption,
    command,
    friendly_errors,
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
    dtype: DtypeOption = None,
    no_ablations: Annotated[
        bool, typer.Option("--no-ablations", help="Skip the text/weights ablations.")
    ] = False,
    no_baselines: Annotated[
        bool, typer.Option("--no-baselines", help="Skip the scripted strategies in Janus's seat.")
    ] = False,
    no_safety: NoSafetyOption = False,
    rules: RulesOption = None,
    raw: RawOption = False,
    price_decoding: PriceDecodingOption = None,
    domain: Annotated[
        str | None,
        typer.Option(
            help="Named domain: default, or overlap (buyer and seller reservation ranges "
            "overlap: is Janus right about its side?)."
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Torch threads while playing (default: the preset's; 1, or 2 for cpu-real). "
            "More help a 135M base on idle cores; on a busy machine keep 1."
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
            "price_decoding": price_decoding,
            "domain": domain,
            "threads": threads,
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
