"""The canonical prompt: the one place where a decision state becomes text.

Training, the agent and evaluation all import this module; nothing else formats a prompt,
renders ρ, renders a target or parses a model's output. Keeping a single source means the
text the model was trained on and the text it sees at inference cannot drift apart.

The format (lines joined by ``"\\n"``, no trailing newline)::

    <RHO> 0.53
    <TURN> 7 / 20
    <TURNS_REMAINING> 13
    <RESERVATION_NORM> seller:0.8421
    <LAST_OFFER_NORM> 0.4123
    <HISTORY> PAD:0.0000 PAD:0.0000 ... buyer:0.3000 seller:0.4000 buyer:0.4200
    <INSTRUCTION> Output exactly one of:
    ACCEPT
    OFFER <PRICE_NORM>
    <OUTPUT>

and the target (``ACCEPT`` or ``OFFER 0.4213``) follows ``<OUTPUT>`` directly. Any change to
what this module renders must bump :data:`PROMPT_FORMAT_VERSION`: adapters and bases record
it, and an agent renders the version its adapter was trained with, so a model trained on one
format is never silently driven with another.

Versions (:data:`PROMPT_VERSIONS`):

- **1**, the original specification's format: the reservation line shows only the number.
  The decider's side is never said, so a buyer and a seller with the same reservation see
  the same prompt; at turn 1 (no history to infer the side from) they make the same opening.
- **2** (current) names the side on the reservation line, in the history's own
  ``role:price`` notation: ``<RESERVATION_NORM> seller:0.8421``. No new special token, so
  tokenizers and bases of version 1 stay valid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from janus.schema import IMPASSE_RHO, rho_is_valid  # re-exported: the prompt's ρ label

SPECIAL_TOKENS: tuple[str, ...] = (
    "<RHO>",
    "<TURN>",
    "<TURNS_REMAINING>",
    "<RESERVATION_NORM>",
    "<LAST_OFFER_NORM>",
    "<HISTORY>",
    "<INSTRUCTION>",
    "<OUTPUT>",
    "<RHO_FAIL>",
)
PROMPT_FORMAT_VERSION = 2
#: Every prompt format this module can render (adapters of older versions keep working).
PROMPT_VERSIONS: tuple[int, ...] = (1, 2)
DEFAULT_K = 8

ROLES: tuple[str, ...] = ("buyer", "seller")
ACTIONS: tuple[str, ...] = ("ACCEPT", "OFFER")

INSTRUCTION = "Output exactly one of:\nACCEPT\nOFFER <PRICE_NORM>"
"""The fixed instruction block (it spans three lines of the prompt)."""

PAD_ENTRY = "PAD:0.0000"
NO_OFFER = "NONE"

OUTPUT_PATTERN = re.compile(r"ACCEPT|OFFER (?:0\.[0-9]{4}|1\.0000)")
"""Every valid model output, and nothing else (use with ``fullmatch``).

A price is exactly ``0.dddd`` or ``1.0000``: the only strings :func:`build_target` renders.
The agent's constrained decoder walks this language token by token.
"""


# --------------------------------------------------------------------------------------- ρ


def canonical_rho(rho: float) -> float:
    """Validate ρ and round it to the 2 decimals the prompt shows.

    Both the text on the ``<RHO>`` line and the tensor in ``model.current_rho`` must be made
    from the value returned here, so they cannot disagree (``0.534`` as a tensor next to
    ``0.53`` as text would be two different requests). Valid: a finite value in [0, 1], or
    exactly :data:`IMPASSE_RHO` (−1.0), the impasse label.
    """
    if isinstance(rho, bool | str | bytes):
        raise ValueError(f"rho must be a real number, got {rho!r}")
    try:
        rho = float(rho)  # also numpy scalars and 0-d arrays
    except (TypeError, ValueError):
        raise ValueError(f"rho must be a real number, got {rho!r}") from None
    if not rho_is_valid(rho):
        raise ValueError(f"rho must be in [0, 1] or exactly {IMPASSE_RHO} (impasse), got {rho!r}")
    if rho == IMPASSE_RHO:
        return IMPASSE_RHO
    return round(rho, 2) + 0.0  # + 0.0 turns a possible -0.0 into 0.0


def format_rho(rho: float | None) -> str:
    """The text after ``<RHO>``: ``0.53``, ``<RHO_FAIL>`` for an impasse, ``""`` when blind."""
    if rho is None:
        return ""
    value = canonical_rho(rho)
    if value == IMPASSE_RHO:
        return "<RHO_FAIL>"
    return f"{value:.2f}"


def format_norm(value: float) -> str:
    """A normalised number with 4 decimals (never ``-0.0000``)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"normalised value must be finite, got {value!r}")
    text = f"{value:.4f}"
    return "0.0000" if text == "-0.0000" else text


# ----------------------------------------------------------------------------------- state


@dataclass(frozen=True)
class PromptState:
    """Everything the prompt shows about one decision, from the deciding side's view.

    ``history`` holds ``(role, price_norm)`` pairs, oldest first; it may be longer than the
    prompt's window k (the prompt keeps the last k). ``role`` is the decider's side: version 2
    of the prompt shows it, version 1 (the specification's) does not.
    """

    turn: int
    max_turns: int
    reservation_norm: float
    last_offer_norm: float | None
    history: tuple[tuple[str, float], ...] = ()
    role: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.turn <= self.max_turns:
            raise ValueError(f"turn must be in [1, max_turns={self.max_turns}], got {self.turn}")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        for role, _price in self.history:
            if role not in ROLES:
                raise ValueError(f"history role must be one of {ROLES}, got {role!r}")

    @property
    def turns_remaining(self) -> int:
        return self.max_turns - self.turn

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PromptState:
        """Build the state from one ``decision_steps`` row (a dict of column → value).

        If the row carries ``turns_remaining`` it must equal ``max_turns − turn``: the prompt
        derives it, and a disagreement means the prepared data is inconsistent.
        """
        roles = row.get("history_roles")
        prices = row.get("history_prices_norm")
        roles = () if roles is None else list(roles)
        prices = () if prices is None else list(prices)
        if len(roles) != len(prices):
            raise ValueError(
                f"history_roles ({len(roles)}) and history_prices_norm ({len(prices)}) "
                "must have the same length"
            )
        last = row.get("last_offer_norm")
        state = cls(
            turn=int(row["turn"]),
            max_turns=int(row["max_turns"]),
            reservation_norm=float(row["reservation_norm"]),
            last_offer_norm=None if last is None or _is_nan(last) else float(last),
            history=tuple((str(r), float(p)) for r, p in zip(roles, prices, strict=True)),
            role=None if row.get("role") is None else str(row["role"]),
        )
        remaining = row.get("turns_remaining")
        if remaining is not None and int(remaining) != state.turns_remaining:
            raise ValueError(
                f"turns_remaining={remaining} disagrees with max_turns − turn = "
                f"{state.max_turns} − {state.turn}"
            )
        return state


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


# ---------------------------------------------------------------------------------- prompt


def format_history(history: Sequence[tuple[str, float]], k: int = DEFAULT_K) -> str:
    """The last ``k`` offers as ``role:price``, front-padded with ``PAD:0.0000`` to exactly k."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    recent = list(history)[-k:] if k else []
    entries = [PAD_ENTRY] * (k - len(recent))
    entries += [f"{role}:{format_norm(price)}" for role, price in recent]
    return " ".join(entries)


def build_prompt(
    state: PromptState,
    rho: float | None,
    k: int = DEFAULT_K,
    version: int = PROMPT_FORMAT_VERSION,
) -> str:
    """Render the canonical prompt for ``state`` at the requested outcome ``rho``.

    ``version`` is the prompt format (:data:`PROMPT_VERSIONS`); version 2 needs
    ``state.role``.

    ``rho`` is made canonical (:func:`canonical_rho`); −1.0 renders ``<RHO> <RHO_FAIL>``.
    ``rho=None`` is the ρ-blind rendering: the ``<RHO>`` line is kept (so every other line
    keeps its place) but carries no value, i.e. it reads exactly ``<RHO>``. Note that
    janus-tiny pretraining does *not* use it: it shows a random ρ instead (see
    ``janus.examples`` ``rho_mode="blind"``), so the base sees the same kind of ``<RHO>`` line
    that HyperLoRA training will later show it, only uninformative.

    The prompt ends with ``<OUTPUT>`` (no trailing space or newline): the target follows it
    directly.
    """
    reservation = format_norm(state.reservation_norm)
    if version == 2:
        if state.role is None:
            raise ValueError("prompt version 2 shows the decider's side: PromptState.role is None")
        reservation = f"{state.role}:{reservation}"
    elif version != 1:
        raise ValueError(
            f"unknown prompt version {version!r}; this Janus renders {PROMPT_VERSIONS}"
        )
    rho_text = format_rho(rho)
    last = NO_OFFER if state.last_offer_norm is None else format_norm(state.last_offer_norm)
    history_text = format_history(state.history, k)
    lines = [
        f"<RHO> {rho_text}" if rho_text else "<RHO>",
        f"<TURN> {state.turn} / {state.max_turns}",
        f"<TURNS_REMAINING> {state.turns_remaining}",
        f"<RESERVATION_NORM> {reservation}",
        f"<LAST_OFFER_NORM> {last}",
        f"<HISTORY> {history_text}" if history_text else "<HISTORY>",
        f"<INSTRUCTION> {INSTRUCTION}",
        "<OUTPUT>",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- target


@dataclass(frozen=True)
class ParsedAction:
    """A valid model output: ``ACCEPT`` (``price_norm`` None) or ``OFFER`` with a price."""

    kind: Literal["ACCEPT", "OFFER"]
    price_norm: float | None = None


def build_target(action: str, price_norm: float | None = None) -> str:
    """The training target: ``ACCEPT`` or ``OFFER 0.4213`` (price in [0, 1], 4 decimals)."""
    if action == "ACCEPT":
        if price_norm is not None and not _is_nan(price_norm):
            raise ValueError(f"ACCEPT takes no price, got {price_norm!r}")
        return "ACCEPT"
    if action == "OFFER":
        if price_norm is None:
            raise ValueError("OFFER needs a price_norm")
        price = float(price_norm)
        if not math.isfinite(price) or not 0.0 <= price <= 1.0:
            raise ValueError(f"OFFER price_norm must be in [0, 1], got {price_norm!r}")
        return f"OFFER {format_norm(price)}"
    raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")


def parse_action(text: str) -> ParsedAction:
    """Parse a model output strictly: exactly what :func:`build_target` renders, nothing else.

    No stripping, no lenient fallback: the research code's silent fallback offer hid broken
    outputs. The agent decodes under :data:`OUTPUT_PATTERN`, so a failure here is a bug.
    """
    if not isinstance(text, str) or not OUTPUT_PATTERN.fullmatch(text):
        raise ValueError(
            f"not a valid action: {text!r} (expected 'ACCEPT' or 'OFFER 0.dddd' in [0, 1])"
        )
    if text == "ACCEPT":
        return ParsedAction("ACCEPT", None)
    return ParsedAction("OFFER", float(text[len("OFFER ") :]))
