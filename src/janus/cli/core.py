"""The ``janus`` application itself: the Typer app, help rendering and one-line errors.

The commands live in the sibling modules, one per part of the pipeline; they register
themselves on :data:`app` when :mod:`janus.cli` imports them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from janus.rules import DEFAULT_RULES, RULE_NAMES

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


#: ``--rules`` help of the commands that play (evaluate, play, calibrate): the names only;
#: ``janus rules`` prints what each one does, from :data:`janus.rules.ACCEPTANCE_RULES`.
RULES_HELP = (
    f"Agent rules, comma-separated, or none (default: {', '.join(DEFAULT_RULES)}). "
    f"Any of {', '.join(RULE_NAMES)}; `janus rules` says what each does."
)

#: The options of every command that plays Janus (evaluate, play), declared once.
NoSafetyOption = Annotated[bool, typer.Option("--no-safety", help="Disable Janus's safety rules.")]
RulesOption = Annotated[str | None, typer.Option(help=RULES_HELP)]
PriceDecodingOption = Annotated[
    str | None,
    typer.Option(
        help="How an offer's price is read off the model: greedy (each digit the likeliest) "
        "or mean (the first decimal is its expectation, so offers move smoothly with rho). "
        "Default: greedy."
    ),
]
DtypeOption = Annotated[
    str | None,
    typer.Option(
        help="The base weights' dtype while playing: auto (the one the adapter's calibration "
        "map was swept with, else the one it trained with), float32 or bfloat16 (about twice "
        "as fast on a CPU with AVX512-BF16 or AMX). Default: auto."
    ),
]
RawOption = Annotated[
    bool, typer.Option("--raw", help="Play the raw dial even if the adapter has a map.")
]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="janus")
