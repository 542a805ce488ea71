"""Janus inside NegMAS (the platform of the ANAC Automated Negotiation League), and back.

An optional extra: ``pip install "janus[negmas]"``. NegMAS is AGPL-3.0, so nothing in Janus's
core imports it: this package's ``__init__`` only holds names and constants, and every module
that needs NegMAS imports it when it is itself imported (``janus evaluate`` imports them only
when an opponent is named ``negmas:<class>``).

- :mod:`.mapping`: the one price issue, the utility functions of a Janus scenario, and the
  exact NegMAS state → Janus :class:`~janus.domain.Observation` mapping.
- :mod:`.negotiator`: :class:`JanusNegotiator` (a trained run at a requested ρ as an SAO
  negotiator), :class:`PolicyNegotiator` (any Janus negotiator, e.g. a scripted strategy) and
  :class:`DecisionBatcher` (one forward pass for the pending decisions of concurrent
  negotiations run in threads, e.g. by ``cartesian_tournament(executor="thread")``).
- :mod:`.lockstep`: :func:`run_negotiations`, many ``SAOMechanism`` s stepped in lockstep with
  every pending Janus decision answered by one ``act_batch`` per round.
- :mod:`.evaluation`: NegMAS negotiators as opponents (and in Janus's seat) in
  ``janus evaluate``: ``--opponents negmas:BoulwareTBNegotiator,...``.
- :mod:`.tournament`: scenarios, competitors and a per-pair table for NegMAS's
  ``cartesian_tournament``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Opponent (and baseline) names ``negmas:<class>`` name a NegMAS SAO negotiator class.
PREFIX = "negmas:"
#: NegMAS's built-in negotiators the ``negmas`` evaluation preset plays: time-based
#: concession at three speeds, MiCRO, tit-for-tat, an aspiration agent and a random one
#: (which offers and accepts past its own reservation: the irrational case).
DEFAULT_OPPONENTS: tuple[str, ...] = tuple(
    PREFIX + name
    for name in (
        "BoulwareTBNegotiator",
        "LinearTBNegotiator",
        "ConcederTBNegotiator",
        "MiCRONegotiator",
        "NaiveTitForTatNegotiator",
        "AspirationNegotiator",
        "RandomNegotiator",
    )
)
INSTALL_HINT = 'pip install "janus[negmas]"'

_LAZY = {
    "JanusNegotiator": "negotiator",
    "PolicyNegotiator": "negotiator",
    "DecisionBatcher": "negotiator",
    "run_negotiations": "lockstep",
    "price_issue": "mapping",
    "price_ufuns": "mapping",
    "price_scenarios": "tournament",
    "janus_competitors": "tournament",
    "pair_table": "tournament",
    "tournament_kwargs": "tournament",
}
__all__ = ["DEFAULT_OPPONENTS", "INSTALL_HINT", "PREFIX", "is_negmas_name", *_LAZY]


def is_negmas_name(name: str) -> bool:
    """Whether an opponent/strategy name names a NegMAS negotiator (``negmas:<class>``)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def require_negmas(names: str = "the NegMAS integration") -> None:
    """Import NegMAS or fail in one line that says how to install it (a ``ValueError``, so
    that the command line reports it as a user error)."""
    try:
        importlib.import_module("negmas")
    except ImportError:
        raise ValueError(f"{names} needs NegMAS, which is not installed: {INSTALL_HINT}") from None


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
