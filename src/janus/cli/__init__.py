"""The ``janus`` command: one sub-command per stage of the pipeline.

Each command is a thin wrapper: it parses options, calls one library function and prints a
short summary. Imports of torch/transformers happen inside the commands so that
``janus --help`` answers at once. Errors a user can fix (bad paths, bad data, wrong options)
are printed as one line and exit with status 2, never as a traceback.

The app and its helpers are :mod:`janus.cli.core`; the commands register themselves on it,
in the order ``janus --help`` lists them, when the modules below are imported.
"""

from __future__ import annotations

from janus.cli.core import app, main

# Importing a command module registers its commands; this order is the order of --help.
# isort: off
from janus.cli import data  # noqa: F401
from janus.cli import training  # noqa: F401
from janus.cli import evaluation  # noqa: F401
from janus.cli import interactive  # noqa: F401

# isort: on

__all__ = ["app", "main"]
