"""Constrained greedy decoding: whatever the model prefers, it can only write a valid action.

The grammar of an action is tiny — ``ACCEPT`` or ``OFFER d.dddd`` with a price in [0, 1] — so
we enforce it at the token level with a prefix automaton over characters, for any tokenizer:
at every step only the vocabulary pieces that keep the text a prefix of a valid action are
allowed, and decoding stops as soon as the action is complete. The research code sampled at
temperature 0.7 and silently replaced unparseable output with a fallback offer; here invalid
output is impossible and nothing is replaced.

The allowed-token mask depends only on a small canonical state (which word, how many digits,
whether the integer part is 1), so masks are computed once per state and cached: decoding costs
one batched forward per generated token plus a few tensor ops.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from transformers import DynamicCache

ACCEPT_TEXT = "ACCEPT"
OFFER_TEXT = "OFFER "
_COMPLETE = re.compile(r"ACCEPT|OFFER (0\.\d{4}|1\.0000)")
_ALPHABET = frozenset("ACEPTOFR .0123456789")
_MAX_ACTION_CHARS = len("OFFER 0.0000")
_PRICE_HEAD = "OFFER 0."  # an offer's text up to its price's first decimal
_TENTHS = len(_PRICE_HEAD)  # where that decimal sits in the text
#: How the price of an offer is read off the model: ``greedy`` (each digit the most likely)
#: or ``mean``: the first decimal is its expectation under the model (sharpened to
#: :data:`MEAN_PRICE_TEMPERATURE`), the greedy decimals after it kept. Greedy digits are a
#: step function of the model's belief: where it is split between two prices (a firm one
#: and a giveaway, say), the offer jumps by a tenth of the price range, 130 on the default
#: range, as soon as the other becomes likelier. The expectation moves continuously with
#: ρ, and where the model is sure it is the greedy price.
PRICE_DECODINGS = ("greedy", "mean")
#: The temperature of the distribution whose expectation ``mean`` takes. At 1 (the plain
#: mean) a broad distribution pulls every offer toward the middle of the range: the
#: janus-tiny dial's in-pool reach shrank from 0.21-0.80 to 0.43-0.62 as buyer. At 0.3 the
#: buyer's reach is 0.20-0.73 and the middle moves smoothly; 0.15 and 0.5 measured no better
#: in-pool, and none beat greedy there (benchmarks/RESULTS.md, "Session 10").
MEAN_PRICE_TEMPERATURE = 0.3


def check_price_decoding(price: str) -> str:
    """``price`` if it names a price decoding, else a one-line error (before any work)."""
    if price not in PRICE_DECODINGS:
        raise ValueError(
            f"price decoding must be one of {', '.join(PRICE_DECODINGS)}, got {price!r}"
        )
    return price


def action_state(text: str, offer_only: bool = False) -> str | None:
    """Canonical automaton state of a partial action, or ``None`` if it is no valid prefix.

    Digits of the price are interchangeable for the grammar, so ``OFFER 0.12`` and
    ``OFFER 0.98`` share a state; that is what makes mask caching effective. ``offer_only``
    drops the ACCEPT branch (used when a safety rule refused an ACCEPT and the model must
    make its best offer instead).
    """
    if offer_only:
        state = action_state(text) if text.startswith(OFFER_TEXT[: len(text)]) else None
        return None if state is None else "O:" + state
    if ACCEPT_TEXT.startswith(text) or OFFER_TEXT.startswith(text):
        return "W:" + text
    if not text.startswith(OFFER_TEXT):
        return None
    number = text[len(OFFER_TEXT) :]
    if len(number) > 6 or number[0] not in "01":
        return None
    if len(number) >= 2 and number[1] != ".":
        return None
    decimals = number[2:]
    if not decimals.isdigit() and decimals:
        return None
    if number[0] == "1" and decimals.strip("0"):
        return None
    return f"N{number[0]}:{len(number)}"


def is_complete(text: str) -> bool:
    """Whether ``text`` is a whole action (then decoding must stop)."""
    return _COMPLETE.fullmatch(text) is not None


class ActionConstraint:
    """Per-tokenizer cache of vocabulary pieces and of the allowed-token mask per state."""

    def __init__(self, tokenizer, vocab_size: int | None = None) -> None:
        size = vocab_size if vocab_size is not None else len(tokenizer)
        self.vocab_size = size
        pieces: dict[int, str] = {}
        for token_id in range(len(tokenizer)):
            piece = tokenizer.decode([token_id])
            if piece and set(piece) <= _ALPHABET and token_id not in tokenizer.all_special_ids:
                pieces[token_id] = piece
        if not pieces:
            raise ValueError("the tokenizer has no token that can spell an action")
        self._pieces = pieces
        self._masks: dict[str, torch.Tensor] = {}
        self._tenths: dict[str, torch.Tensor] = {}
        # Rows that already finished may emit anything: their tokens are never read.
        self.unconstrained = torch.ones(size, dtype=torch.bool)

    def allowed_mask(self, text: str, offer_only: bool = False) -> torch.Tensor:
        """Boolean mask over the vocabulary of the tokens that may follow ``text``."""
        state = action_state(text, offer_only)
        if state is None:
            raise ValueError(f"{text!r} is not a prefix of a valid action")
        mask = self._masks.get(state)
        if mask is None:
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            for token_id, piece in self._pieces.items():
                if token_id < self.vocab_size and action_state(text + piece, offer_only):
                    mask[token_id] = True
            if not mask.any():
                raise ValueError(f"no token of the vocabulary can continue {text!r}")
            self._masks[state] = mask
        return mask

    def piece(self, token_id: int) -> str:
        return self._pieces[token_id]

    def tenths_digits(self, text: str) -> torch.Tensor | None:
        """Per token, the first decimal (0-9) that ``text + piece`` fixes in ``OFFER 0.dddd``,
        or -1; ``None`` when ``text`` cannot be followed by that decimal at this step."""
        if not _PRICE_HEAD.startswith(text):
            return None
        digits = self._tenths.get(text)
        if digits is None:
            digits = torch.full((self.vocab_size,), -1, dtype=torch.long)
            for token_id, piece in self._pieces.items():
                spelled = text + piece
                if (
                    token_id < self.vocab_size
                    and len(spelled) > _TENTHS
                    and spelled.startswith(_PRICE_HEAD)
                    and action_state(spelled)
                ):
                    digits[token_id] = int(spelled[_TENTHS])
            self._tenths[text] = digits
        return digits


def accepts_logits_to_keep(model) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` (transformers causal LMs do).

    Decoding reads only the last position's logits: the prefill then skips the LM head
    everywhere else (on a large vocabulary the head is a sizeable share of its work)."""
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    try:
        return "logits_to_keep" in inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False


def cache_keyword(model) -> str:
    """The ``forward`` keyword that takes the KV cache.

    transformers renamed ``past_key_values`` to ``cache`` (the old name warns and goes in
    5.40); a model whose forward names only the old keyword still gets it.
    """
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    try:
        parameters = inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return "cache"
    if "cache" not in parameters and "past_key_values" in parameters:
        return "past_key_values"
    return "cache"


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad prompts so that every row's next token sits in the last column.

    Returns input ids, attention mask and position ids (positions count real tokens only, so a
    padded row sees exactly the positions it would see alone).
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def _decode_cache(model) -> dict[str, DynamicCache]:
    """One KV cache for the whole decode, under the keyword this model's ``forward`` takes.

    It is filled in place by every forward: nothing is read back from the outputs, whose cache
    attribute was renamed along with the keyword.
    """
    config = getattr(getattr(model, "module", model), "config", None)  # None: layers made lazily
    return {cache_keyword(model): DynamicCache(config=config)}


def _allowed_tokens(
    constraint: ActionConstraint,
    texts: Sequence[str],
    done: Sequence[bool],
    no_accept: Sequence[bool],
) -> torch.Tensor:
    """One row of the allowed-token mask per prompt; a finished row's tokens are never read,
    so it is left unconstrained."""
    return torch.stack(
        [
            constraint.allowed_mask(text, only) if not finished else constraint.unconstrained
            for text, finished, only in zip(texts, done, no_accept, strict=True)
        ]
    )


def _choose_tokens(
    logits: torch.Tensor,
    allowed: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The next token of every row (on the CPU), greedy or sampled, among the allowed ones."""
    logits = logits.masked_fill(~allowed, float("-inf"))
    if temperature > 0:
        probs = torch.softmax(logits / temperature, dim=-1)
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1)
    return logits.argmax(dim=-1).cpu()


def _expected_tenths(
    constraint: ActionConstraint,
    logits: torch.Tensor,
    allowed: torch.Tensor,
    chosen: torch.Tensor,
    texts: Sequence[str],
    done: Sequence[bool],
    means: dict[int, float],
) -> None:
    """For every row whose chosen piece fixes the price's first decimal, record that
    decimal's expectation under the model at :data:`MEAN_PRICE_TEMPERATURE` (over the
    allowed pieces that fix it)."""
    by_text: dict[str, list[int]] = {}
    for row, text in enumerate(texts):
        if not done[row]:
            by_text.setdefault(text, []).append(row)
    for text, rows in by_text.items():
        digits = constraint.tenths_digits(text)
        if digits is None:
            continue
        rows = [r for r in rows if digits[int(chosen[r])] >= 0]
        if not rows:
            continue
        index = torch.tensor(rows, device=logits.device)
        fixes = (digits.to(logits.device) >= 0) & allowed[index]
        sharpened = logits[index] / MEAN_PRICE_TEMPERATURE
        probs = torch.softmax(sharpened.masked_fill(~fixes, float("-inf")), dim=-1)
        mean = (probs * digits.clamp(min=0).to(probs)).sum(-1)
        for row, value in zip(rows, mean.tolist(), strict=True):
            means[row] = value


def _with_tenths(text: str, mean: float) -> str:
    """``OFFER 0.dddd`` with its first decimal moved from the decoded digit to ``mean``
    (the decimals after it kept): the offer of an expected first decimal."""
    value = float(text[len(OFFER_TEXT) :]) + 0.1 * (mean - int(text[_TENTHS]))
    return f"{OFFER_TEXT}{min(max(value, 0.0), 0.9999):.4f}"


def _extend_texts(
    constraint: ActionConstraint, chosen: torch.Tensor, texts: list[str], done: list[bool]
) -> None:
    """Append each unfinished row's chosen piece to its text, and mark completed actions."""
    for row, token_id in enumerate(chosen.tolist()):
        if not done[row]:
            texts[row] += constraint.piece(token_id)
            done[row] = is_complete(texts[row])


@torch.no_grad()
def constrained_decode(
    model,
    constraint: ActionConstraint,
    prompts: Sequence[Sequence[int]],
    *,
    pad_id: int,
    rho_scope=None,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    offer_only: Sequence[bool] | None = None,
    price: str = "greedy",
) -> list[str]:
    """Decode one action per prompt, in one batch, with the KV cache.

    ``rho_scope`` is a context manager that routes the batch's ρ to the adapters (e.g.
    ``rho_context(model, rhos)``); ``None`` for a model without adapters. ``temperature`` 0 is
    greedy; a positive temperature samples from ``generator`` (seeded by the caller), still
    under the constraint. ``offer_only`` marks rows that may not ACCEPT. ``price``: one of
    :data:`PRICE_DECODINGS` (``mean`` applies at temperature 0 only).
    """
    check_price_decoding(price)
    if not prompts:
        return []
    device = next(model.parameters()).device
    ids, mask, positions = (t.to(device) for t in left_pad(prompts, pad_id))
    texts, done = [""] * len(prompts), [False] * len(prompts)
    means: dict[int, float] | None = {} if price == "mean" and temperature <= 0 else None
    no_accept = list(offer_only) if offer_only is not None else [False] * len(prompts)
    last_only = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
    cache = _decode_cache(model)
    with rho_scope if rho_scope is not None else nullcontext():
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **cache,
            **last_only,
        )
        for _ in range(_MAX_ACTION_CHARS + 1):
            logits = out.logits[:, -1, : constraint.vocab_size].float()
            allowed = _allowed_tokens(constraint, texts, done, no_accept).to(device)
            chosen = _choose_tokens(logits, allowed, temperature, generator)
            if means is not None:
                _expected_tenths(constraint, logits, allowed, chosen, texts, done, means)
            _extend_texts(constraint, chosen, texts, done)
            if all(done):
                break
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            positions = positions[:, -1:] + 1
            out = model(
                input_ids=chosen.to(device).unsqueeze(-1),
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **cache,
            )
    if not all(done):
        raise RuntimeError("constrained decoding did not complete an action (grammar bug)")
    return [_with_tenths(t, means[r]) if means and r in means else t for r, t in enumerate(texts)]
