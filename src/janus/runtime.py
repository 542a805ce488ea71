"""Process-level runtime settings that several stages share.

Why this exists: torch's intra-op thread count decides CPU speed more than anything else here.
On an idle machine more threads help; on a busy one (another process using the cores) OpenMP
threads spin-wait for each other and a process runs many times slower (figures in
benchmarks/RESULTS.md). Stages that know they share the machine ask for one thread for their
duration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def check_threads(num_threads: int | None) -> int | None:
    """A thread count is ``None`` (leave torch's setting alone) or an integer >= 1."""
    if num_threads is not None and (type(num_threads) is not int or num_threads < 1):
        raise ValueError(f"threads={num_threads!r}; expected an integer >= 1 (or None)")
    return num_threads


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(num_threads)``, then restore the setting.

    ``None`` leaves torch's setting alone.
    """
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    previous = torch.get_num_threads()
    if previous == num_threads:  # an agent enters this at every call: skip the no-op
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: The CPU flags of instructions that compute in bfloat16 (rather than emulating it in fp32).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def native_bf16(device: str = "cpu", cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether ``device`` computes in bfloat16 natively, so that a bf16 base plays faster.

    On a CPU with AVX512-BF16 or AMX, janus-tiny plays about twice as fast in bf16 as in fp32;
    elsewhere bf16 is emulated and slower (benchmarks/RESULTS.md). Where the CPU's flags cannot
    be read (not Linux), the answer is no: the fp32 path is the safe one.
    """
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False
    try:
        with open(cpuinfo, encoding="utf-8") as lines:
            for line in lines:
                if line.startswith("flags"):
                    return not NATIVE_BF16_FLAGS.isdisjoint(line.split(":", 1)[-1].split())
    except OSError:
        return False
    return False
