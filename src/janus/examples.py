"""Decision-step rows → tokenised training examples with exact label masks, and batching.

The one rule this module exists for: the loss falls on the target tokens (and EOS) only,
and the prompt/target boundary is known from the token ids *by construction* — the prompt
and the target are tokenised separately and concatenated, never re-tokenised together. The
agent feeds exactly :func:`encode_prompt`'s ids at inference, so the prefix a model was
trained on and the prefix it is driven with are the same ids.

Also here: reading ``decision_steps.parquet`` for a split (:class:`DecisionStepDataset`),
the padding collator (:class:`ExampleCollator`) and a deterministic, resumable, DDP-shardable
length-bucketed batch sampler (:class:`LengthBucketedBatchSampler`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from janus.checkpoint import resize_for_tokenizer
from janus.prompt import (
    DEFAULT_K,
    IMPASSE_RHO,
    SPECIAL_TOKENS,
    PromptState,
    build_prompt,
    build_target,
    canonical_rho,
)

IGNORE_INDEX = -100
DECISION_STEPS_FILE = "decision_steps.parquet"

RhoMode = Literal["outcome", "blind"]
RHO_MODES: tuple[str, ...] = ("outcome", "blind")

BLIND_FAIL_PROB = 0.1
"""In ``rho_mode="blind"``, the probability that the random ρ is the impasse label −1.0.

The base should know both forms of the ``<RHO>`` line (a number and ``<RHO_FAIL>``) before
HyperLoRA training shows it either, yet learn nothing from them: both are drawn at random,
independently of the row.
"""

_ENCODE_CHUNK = 8192
"""Rows rendered and tokenised at a time when building a dataset."""

REQUIRED_COLUMNS: tuple[str, ...] = (
    "role",
    "turn",
    "turns_remaining",
    "max_turns",
    "reservation_norm",
    "last_offer_norm",
    "history_roles",
    "history_prices_norm",
    "target_action",
    "target_price_norm",
    "rho_train",
    "split",
)
"""The ``decision_steps`` columns read here: what the prompt, the target and ρ need."""


# ---------------------------------------------------------------------------- tokenizer


def add_special_tokens(tokenizer: Any, model: Any = None) -> list[int]:
    """Register the prompt's nine special tokens; return their ids in :data:`SPECIAL_TOKENS` order.

    Idempotent: tokens already registered are not added again, so calling this on a
    tokenizer saved by a previous run changes nothing. Also makes sure there is a pad token
    (EOS when missing: padding is masked out anyway) and, if ``model`` is given, grows its
    embeddings to the tokenizer's size. The returned ids are what the HyperLoRA core trains
    as ``trainable_token_ids`` (fresh rows of a frozen embedding would stay random).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError(
            "the tokenizer has no EOS token: Janus ends every target with EOS, set one first"
        )
    registered = set(tokenizer.all_special_tokens)
    missing = [t for t in SPECIAL_TOKENS if t not in registered]
    if missing:
        existing = [str(t) for t in _extra_special_tokens(tokenizer)]
        tokenizer.add_special_tokens({"extra_special_tokens": existing + missing})
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    for token, token_id in zip(SPECIAL_TOKENS, ids, strict=True):
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"special token {token} did not get its own id")
    if model is not None:
        # The one resize path: deterministic new rows, original vocab recorded for the
        # base fingerprint that load_hyperlora checks.
        resize_for_tokenizer(model, tokenizer)
    return ids


def _extra_special_tokens(tokenizer: Any) -> list[Any]:
    """The tokenizer's extra special tokens (transformers 5 name first, then the 4.x name)."""
    for name in ("extra_special_tokens", "additional_special_tokens"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, list | tuple):
            return list(value)
    return []


def check_special_tokens(tokenizer: Any) -> None:
    """Fail clearly if the prompt's special tokens would be split into pieces."""
    for token in SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise ValueError(
                f"tokenizer does not know {token} as one token: call add_special_tokens() first"
            )


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer itself puts BOS in front of a text (asked, not assumed per model).

    GPT-2 has a BOS token but never adds it; Llama adds it. We ask the tokenizer: encode a
    short text with and without special tokens and look whether BOS appears in front.
    """
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(full) > len(plain) and full[0] == bos and (not plain or plain[0] != bos)


@dataclass(frozen=True)
class EncodedExample:
    """Token ids and labels of one (prompt, target) pair; labels are −100 on the prompt."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """The ids a model is fed for ``prompt``: [BOS if the tokenizer adds one] + prompt ids.

    Training builds its inputs from exactly this, and the agent feeds exactly this before
    generating: one function, so the two prefixes cannot differ.
    """
    ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return ([tokenizer.bos_token_id] if adds_bos(tokenizer) else []) + ids


def encode_target(tokenizer: Any, target: str) -> list[int]:
    """The ids the model must produce after the prompt: target ids + EOS."""
    ids = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    return [*ids, tokenizer.eos_token_id]


def encode_example(tokenizer: Any, prompt: str, target: str) -> EncodedExample:
    """Concatenate :func:`encode_prompt` and :func:`encode_target`; label the target only."""
    input_ids, labels = _join(encode_prompt(tokenizer, prompt), encode_target(tokenizer, target))
    return EncodedExample(input_ids=tuple(input_ids), labels=tuple(labels))


def _join(prefix: list[int], answer: list[int]) -> tuple[list[int], list[int]]:
    """input_ids = prefix + answer; labels = −100 over the prefix, the answer ids after it."""
    return prefix + answer, [IGNORE_INDEX] * len(prefix) + answer


# ------------------------------------------------------------------------------ dataset


@dataclass(frozen=True, eq=False)
class TrainingExample:
    """One tokenised decision step, with the canonical ρ its prompt shows.

    ``rho`` is what the trainer writes into ``model.current_rho``; the prompt text was
    rendered from this same value, so text and tensor agree by construction. Only the ids
    (int32) and the prompt length are stored — labels are derived on demand — so a corpus of
    hundreds of thousands of steps stays small in memory.
    """

    input_ids: np.ndarray
    prompt_length: int
    rho: float

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def prompt_ids(self) -> np.ndarray:
        """[BOS] + prompt ids: exactly what the agent feeds at inference."""
        return self.input_ids[: self.prompt_length]

    @property
    def labels(self) -> np.ndarray:
        """−100 on the prompt, the ids on the target and EOS."""
        labels = self.input_ids.astype(np.int64)
        labels[: self.prompt_length] = IGNORE_INDEX
        return labels


def resolve_decision_steps(prepared: str | Path) -> Path:
    """Accept a prepared directory or the parquet file itself."""
    path = Path(prepared)
    if path.is_dir():
        path = path / DECISION_STEPS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (run `janus prepare` first)")
    return path


def read_decision_steps(
    prepared: str | Path,
    split: str,
    *,
    include_failures: bool = False,
    decider: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of one split as dicts, reading only :data:`REQUIRED_COLUMNS`.

    Impasse rows (``rho_train == −1.0``) are dropped unless ``include_failures``. With
    ``decider``, only the steps decided by the side whose strategy has that name are kept
    (a refinement corpus teaches Janus its own moves, not its opponents'). Errors are one
    line naming the file and the missing column or the empty split.
    """
    path = resolve_decision_steps(prepared)
    names = set(pq.read_schema(path).names)
    for column in REQUIRED_COLUMNS:
        if column not in names:
            raise ValueError(f"{path}: missing column {column!r}")
    extra = ["buyer_strategy", "seller_strategy"] if decider is not None else []
    table = pq.read_table(path, columns=[*REQUIRED_COLUMNS, *extra])
    if decider is not None:
        as_buyer = pc.and_(
            pc.equal(table["role"], "buyer"), pc.equal(table["buyer_strategy"], decider)
        )
        as_seller = pc.and_(
            pc.equal(table["role"], "seller"), pc.equal(table["seller_strategy"], decider)
        )
        table = table.filter(pc.or_(as_buyer, as_seller)).select(list(REQUIRED_COLUMNS))
        if table.num_rows == 0:
            raise ValueError(f"{path}: no step is decided by a side named {decider!r}")
    in_split = table.filter(pc.equal(table["split"], split))
    if in_split.num_rows == 0:
        present = sorted(str(s) for s in pc.unique(table["split"]).to_pylist())
        raise ValueError(f"{path}: split {split!r} has no rows (splits present: {present})")
    if not include_failures:
        in_split = in_split.filter(pc.not_equal(in_split["rho_train"], IMPASSE_RHO))
        if in_split.num_rows == 0:
            raise ValueError(
                f"{path}: split {split!r} has only impasse rows (pass include_failures=True)"
            )
    # Column-wise: Table.to_pylist() would build one dict per row.
    columns = in_split.to_pydict()
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def row_prompt_and_target(
    row: dict[str, Any], rho: float | None, k: int = DEFAULT_K
) -> tuple[str, str]:
    """The prompt (at ``rho``) and the target text of one ``decision_steps`` row."""
    state = PromptState.from_row(row)
    target = build_target(str(row["target_action"]), row["target_price_norm"])
    return build_prompt(state, rho, k), target


def draw_blind_rho(rng: np.random.Generator) -> float:
    """A ρ for the ρ-blind pretraining prompt, independent of any outcome.

    −1.0 with probability :data:`BLIND_FAIL_PROB`, else uniform on the grid {0.00, …, 1.00}.
    """
    if rng.random() < BLIND_FAIL_PROB:
        return IMPASSE_RHO
    return canonical_rho(int(rng.integers(0, 101)) / 100)


class DecisionStepDataset(torch.utils.data.Dataset):
    """Tokenised training examples of one split of a prepared corpus (eagerly encoded).

    ``rho_mode="outcome"``: each prompt shows the row's own ``rho_train`` (the trajectory's
    outcome), the normal HyperLoRA training. ``rho_mode="blind"``: each prompt shows a ρ drawn
    by :func:`draw_blind_rho` from a generator seeded with ``seed`` (one draw per row, in file
    order), so the model learns the format and the average policy but not the dial — how
    janus-tiny is pretrained. In both modes ``example.rho`` is the value the text shows.

    ``limit`` keeps the split's first rows; ``select`` maps the split's row count to the rows
    to encode, in the order given: a caller that needs a sample (validation, the scripted
    share of a refinement epoch) tokenises only the sample, not the corpus (about 40 s of a
    refinement round's 2-core minute, benchmarks/RESULTS.md).
    """

    def __init__(
        self,
        prepared: str | Path,
        split: str,
        tokenizer: Any,
        *,
        k: int = DEFAULT_K,
        include_failures: bool = False,
        rho_mode: RhoMode = "outcome",
        seed: int = 0,
        limit: int | None = None,
        decider: str | None = None,
        select: Callable[[int], Sequence[int]] | None = None,
    ) -> None:
        if rho_mode not in RHO_MODES:
            raise ValueError(f"rho_mode must be one of {RHO_MODES}, got {rho_mode!r}")
        check_special_tokens(tokenizer)
        rows = read_decision_steps(
            prepared, split, include_failures=include_failures, decider=decider
        )
        if limit is not None:
            rows = rows[:limit]
        if select is not None:
            rows = [rows[i] for i in select(len(rows))]
        rng = np.random.default_rng(seed)
        bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
        eos = tokenizer.eos_token_id
        self.examples: list[TrainingExample] = []
        # Render and tokenise in chunks: the token lists of a whole corpus at once would cost
        # several GB of Python ints before they are packed.
        for start in range(0, len(rows), _ENCODE_CHUNK):
            chunk = rows[start : start + _ENCODE_CHUNK]
            rhos: list[float] = []
            prompts: list[str] = []
            targets: list[str] = []
            for row in chunk:
                rho = (
                    draw_blind_rho(rng) if rho_mode == "blind" else canonical_rho(row["rho_train"])
                )
                prompt, target = row_prompt_and_target(row, rho, k)
                rhos.append(rho)
                prompts.append(prompt)
                targets.append(target)
            prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
            target_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
            for p_ids, t_ids, rho in zip(prompt_ids, target_ids, rhos, strict=True):
                ids = np.asarray([*bos, *p_ids, *t_ids, eos], dtype=np.int32)
                self.examples.append(TrainingExample(ids, len(bos) + len(p_ids), rho))
        self.split = split
        self.rho_mode = rho_mode
        self.k = k
        self.pad_token_id: int = tokenizer.pad_token_id

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> TrainingExample:
        return self.examples[index]

    @functools.cached_property
    def lengths(self) -> list[int]:
        """Token count of every example (what the bucketed sampler groups by); computed once,
        since callers index it per example."""
        return [len(e) for e in self.examples]


# ----------------------------------------------------------------------------- collator


class ExampleCollator:
    """Right-pad a list of examples to the longest; labels padded with −100.

    Returns ``input_ids``, ``attention_mask``, ``labels`` (int64, [B, T]) and ``rho``
    (float32, [B]) — the trainer sets ``model.current_rho = batch["rho"]``.
    """

    def __init__(self, pad_token_id: int) -> None:
        if pad_token_id is None:
            raise ValueError("pad_token_id is None: call add_special_tokens() first")
        self.pad_token_id = int(pad_token_id)

    def __call__(self, examples: Sequence[TrainingExample]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("cannot collate an empty batch")
        width = max(len(e.input_ids) for e in examples)
        batch = len(examples)
        input_ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((batch, width), dtype=torch.long)
        for i, example in enumerate(examples):
            n = len(example.input_ids)
            input_ids[i, :n] = torch.as_tensor(np.asarray(example.input_ids), dtype=torch.long)
            labels[i, :n] = torch.as_tensor(np.asarray(example.labels), dtype=torch.long)
            attention_mask[i, :n] = 1
        rho = torch.tensor([float(e.rho) for e in examples], dtype=torch.float32)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "rho": rho,
        }


# ------------------------------------------------------------------------------ sampler


class LengthBucketedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar-length examples: deterministic, resumable and DDP-shardable.

    Per epoch, from a generator seeded with ``(seed, epoch)``: shuffle all indices, cut them
    into chunks of ``bucket_batches`` global batches, sort each chunk by length (so a batch
    holds neighbours in length and pads little), cut the whole order into
    ``ceil(N / global_batch)`` batches of near-equal size (no tiny trailing batch), and shuffle
    the batch order. Every index appears exactly once per epoch.

    The global batch is ``batch_size × num_replicas``, and the global batches depend only on
    (lengths, global batch, seed, epoch): two ranks with ``batch_size=b`` see together exactly
    the batches one process with ``batch_size=2b`` sees. Rank ``r`` takes the ``r``-th of
    ``num_replicas`` contiguous, near-equal parts of each global batch.

    ``set_epoch(epoch, start_batch=n)`` skips the first ``n`` batches of that epoch, for an
    exact resume; ``len()`` counts the batches still to come.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        bucket_batches: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank={rank}, {num_replicas=}")
        if bucket_batches < 1:
            raise ValueError(f"bucket_batches must be >= 1, got {bucket_batches}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or len(self.lengths) == 0:
            raise ValueError("lengths must be a non-empty 1-d sequence")
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.bucket_batches = bucket_batches
        self.global_batch_size = batch_size * num_replicas
        n = len(self.lengths)
        self.num_batches = -(-n // self.global_batch_size)
        if n // self.num_batches < num_replicas:
            raise ValueError(
                f"{n} examples are too few to give each of {num_replicas} ranks one per batch"
            )
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; skip its first ``start_batch`` batches (resume)."""
        if not 0 <= start_batch <= self.num_batches:
            raise ValueError(f"start_batch must be in [0, {self.num_batches}], got {start_batch}")
        self.epoch = epoch
        self.start_batch = start_batch

    def global_batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """All global batches of an epoch, in order (every rank computes the same list)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        chunk = self.bucket_batches * self.global_batch_size
        pieces = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            pieces.append(part[np.argsort(self.lengths[part], kind="stable")])
        batches = np.array_split(np.concatenate(pieces), self.num_batches)
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.start_batch :]:
            yield np.array_split(batch, self.num_replicas)[self.rank].tolist()

    def __len__(self) -> int:
        return self.num_batches - self.start_batch


def padding_waste(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Pad tokens a batching would add: Σ over batches of (longest × size − Σ lengths)."""
    lens = np.asarray(lengths)
    return int(sum(lens[list(b)].max() * len(b) - lens[list(b)].sum() for b in batches))
