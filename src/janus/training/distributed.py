"""Where this process sits under ``torchrun``, and the collectives the training loop uses.

Every helper is a no-op in a single process, so the loop reads the same with one process or
many and a single-process run never touches ``torch.distributed``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as torch_dist


@dataclass
class DistInfo:
    """Where this process sits: rank 0 alone saves, logs and evaluates."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available()
    if world <= 1:
        return DistInfo(device=torch.device("cuda" if use_cuda else "cpu"))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def wrap_model(model: torch.nn.Module, dist: DistInfo) -> torch.nn.Module:
    """``model`` under DistributedDataParallel when there are several processes, else itself."""
    if not dist.enabled:
        return model
    device_ids = [dist.local_rank] if dist.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def gradient_sync(wrapped: torch.nn.Module, dist: DistInfo, sync: bool):
    """A context for one micro-batch: DDP all-reduces gradients only when ``sync`` is true
    (the last micro-batch of an accumulation window), saving the others' communication."""
    if sync or not dist.enabled:
        return contextlib.nullcontext()
    return wrapped.no_sync()


def all_reduce_sum(value: torch.Tensor, dist: DistInfo) -> torch.Tensor:
    """``value`` summed over every process, on ``value``'s device.

    The collective runs on this process's device: NCCL only reduces CUDA tensors, and the
    loop's counters are small CPU tensors.
    """
    if not dist.enabled:
        return value
    moved = value.to(dist.device)
    torch_dist.all_reduce(moved)
    return moved.to(value.device)


def all_gather_cat(value: torch.Tensor, dist: DistInfo) -> torch.Tensor:
    """Every process's ``value`` concatenated along dim 0 in rank order, on ``value``'s device.

    The lengths may differ between processes (a global batch of 7 splits into 4 + 3), so the
    lengths are gathered first and every part is padded to the longest for the exchange.
    """
    if not dist.enabled:
        return value
    length = torch.tensor([value.shape[0]], device=dist.device)
    lengths = [torch.empty_like(length) for _ in range(dist.world_size)]
    torch_dist.all_gather(lengths, length)
    sizes = [int(n) for n in lengths]
    padded = torch.zeros((max(sizes), *value.shape[1:]), dtype=value.dtype, device=dist.device)
    padded[: value.shape[0]] = value
    parts = [torch.empty_like(padded) for _ in range(dist.world_size)]
    torch_dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)]).to(value.device)


def barrier(dist: DistInfo) -> None:
    """Wait for every process (after rank 0 alone has written something the others read)."""
    if dist.enabled:
        torch_dist.barrier()
