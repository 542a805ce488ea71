"""What a run has done so far, typed, and the random generators' states.

:class:`TrainState` is everything about progress that an exact resume needs besides the
weights, the optimiser and the scheduler: the optimiser step, where in the data the next
batch comes from, and the best validation so far. :class:`RngState` holds the generators
dropout and any shuffling draw from. Both serialise to JSON-native values (the torch
generators' byte states to tensors, for safetensors): nothing is ever pickled.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class TrainState:
    """Progress of a run; the loop advances it, callbacks read and update it.

    ``epoch`` and ``batch`` name the next batch to draw: batch ``batch`` of epoch ``epoch``
    (``batch`` may equal the epoch's length; the next draw then starts the following epoch).
    """

    step: int = 0
    epoch: int = 0
    batch: int = 0
    best_step: int | None = None
    best_val_loss: float | None = None

    def record_validation(self, step: int, val_loss: float) -> bool:
        """Note a validation result; true if it is the best so far (lowest loss)."""
        if self.best_val_loss is not None and not val_loss < self.best_val_loss:
            return False
        self.best_step, self.best_val_loss = step, val_loss
        return True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainState:
        """Inverse of :meth:`to_json`; an unknown or missing field is an error, not a guess."""
        expected = set(asdict(cls()))
        if set(values) != expected:
            raise ValueError(
                f"training state fields {sorted(values)} are not the expected {sorted(expected)}"
            )
        return cls(**values)


@dataclass
class RngState:
    """The states of Python's, numpy's (legacy global) and torch's generators (CUDA's too)."""

    python: list[Any]
    numpy: list[Any]
    torch_cpu: torch.Tensor
    torch_cuda: torch.Tensor | None = None

    @classmethod
    def capture(cls) -> RngState:
        version, internal, gauss = random.getstate()
        kind, keys, position, has_gauss, cached = np.random.get_state()
        return cls(
            python=[version, list(internal), gauss],
            numpy=[kind, keys.tolist(), position, has_gauss, cached],
            torch_cpu=torch.get_rng_state(),
            torch_cuda=torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        )

    def restore(self) -> None:
        version, internal, gauss = self.python
        random.setstate((version, tuple(internal), gauss))
        kind, keys, position, has_gauss, cached = self.numpy
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
        torch.set_rng_state(self.torch_cpu)
        if self.torch_cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(self.torch_cuda)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The byte states, for a safetensors file."""
        out = {"rng.torch": self.torch_cpu}
        if self.torch_cuda is not None:
            out["rng.cuda"] = self.torch_cuda
        return out

    def to_json(self) -> dict[str, Any]:
        """The integer states, for a JSON file."""
        return {"python": self.python, "numpy": self.numpy}

    @classmethod
    def from_saved(cls, values: dict[str, Any], tensors: dict[str, torch.Tensor]) -> RngState:
        """Inverse of :meth:`to_json` + :meth:`tensors`."""
        return cls(
            python=values["python"],
            numpy=values["numpy"],
            torch_cpu=tensors["rng.torch"],
            torch_cuda=tensors.get("rng.cuda"),
        )


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's global and torch's generators (all devices) from one value."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
