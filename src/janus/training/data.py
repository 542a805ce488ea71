"""The training examples of a HyperLoRA run, and the batches each process draws from them.

A run trains on the prepared corpus's train split; a refinement round (``janus refine``) mixes
in a second corpus, Janus's own games, at a chosen share of the epoch. Examples longer than
``max_length`` are left out, and a split with none left is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from janus.examples import DecisionStepDataset, ExampleCollator, LengthBucketedBatchSampler
from janus.training.distributed import DistInfo
from janus.training.loop import Positioned, batch_stream
from janus.training.state import TrainState

if TYPE_CHECKING:
    from janus.train import TrainConfig


def _filter_long(dataset: DecisionStepDataset, max_length: int) -> list[int]:
    keep = [i for i, n in enumerate(dataset.lengths) if n <= max_length]
    if not keep:
        raise ValueError(f"every example of split {dataset.split!r} exceeds --max-length")
    return keep


def training_view(
    config: TrainConfig, tokenizer: Any
) -> tuple[torch.utils.data.Dataset, list[int], dict[str, int]]:
    """The training examples, their lengths (for the bucketed sampler) and row counts.

    With ``extra_data`` (a refinement corpus), the epoch holds all of its rows decided by
    ``extra_decider`` plus a seeded sample of the scripted rows sized so that the extra rows
    make ``extra_fraction`` of the epoch (all scripted rows when there are too few). The
    sample is drawn before tokenising, so only it is encoded.
    """
    if config.extra_data is None:
        scripted = _scripted(config, tokenizer)
        keep = _filter_long(scripted, config.max_length)
        lengths = [scripted.lengths[i] for i in keep]
        counts = {"scripted_rows": len(keep), "extra_rows": 0}
        return torch.utils.data.Subset(scripted, keep), lengths, counts
    extra = DecisionStepDataset(
        config.extra_data,
        "train",
        tokenizer,
        k=config.k,
        include_failures=config.extra_include_failures,
        decider=config.extra_decider,
    )
    extra_keep = _filter_long(extra, config.max_length)
    f = config.extra_fraction
    wanted = round(len(extra_keep) * (1 - f) / f)

    def sample(n: int) -> list[int]:
        if wanted >= n:
            return list(range(n))
        rng = np.random.default_rng(config.seed + 2)
        return sorted(rng.choice(n, size=wanted, replace=False).tolist())

    scripted = _scripted(config, tokenizer, sample)
    keep = _filter_long(scripted, config.max_length)
    counts = {"scripted_rows": len(keep), "extra_rows": len(extra_keep)}
    lengths = [scripted.lengths[i] for i in keep] + [extra.lengths[i] for i in extra_keep]
    view = torch.utils.data.ConcatDataset(
        [torch.utils.data.Subset(scripted, keep), torch.utils.data.Subset(extra, extra_keep)]
    )
    return view, lengths, counts


def _scripted(
    config: TrainConfig, tokenizer: Any, select: Callable[[int], list[int]] | None = None
) -> DecisionStepDataset:
    """The prepared corpus's train split (or the rows ``select`` picks of it), tokenised."""
    return DecisionStepDataset(
        config.data,
        "train",
        tokenizer,
        k=config.k,
        include_failures=config.include_failures,
        select=select,
    )


def training_batches(
    config: TrainConfig, tokenizer: Any, dist: DistInfo
) -> tuple[Callable[[TrainState], Iterator[Positioned]], dict[str, int]]:
    """This process's training batches from a state's data position on, and the row counts.

    The sampler splits every global batch between the processes, so together they draw
    exactly the batches one process with the global batch size would.
    """
    view, lengths, counts = training_view(config, tokenizer)
    sampler = LengthBucketedBatchSampler(
        lengths, config.batch_size, seed=config.seed, num_replicas=dist.world_size, rank=dist.rank
    )
    collate = ExampleCollator(tokenizer.pad_token_id)

    def stream(state: TrainState) -> Iterator[Positioned]:
        make = lambda ids: collate([view[i] for i in ids])  # noqa: E731
        return batch_stream(sampler, make, state.epoch, state.batch)

    return stream, counts
