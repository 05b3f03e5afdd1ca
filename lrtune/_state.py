"""Random streams and a training loader's position: capture and restore.

Shared by :class:`lrtune.range_test._callback.LRRangeTest` (which restores them after its sweep) and
:func:`lrtune.range_test._find.find_lr` (which runs the sweep without a ``fit``).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from lrtune.data._batches import DeviceBatches

__all__ = ["DataPosition", "is_stateful", "loader_generator", "rng_states", "set_rng_states"]


def is_stateful(loader: Any) -> bool:
    return callable(getattr(loader, "state_dict", None)) and callable(
        getattr(loader, "load_state_dict", None)
    )


def loader_generator(loader: Any) -> torch.Generator | None:
    if isinstance(loader, DataLoader):
        sampler_generator = getattr(loader.sampler, "generator", None)
        return loader.generator or sampler_generator
    if isinstance(loader, DeviceBatches):
        # shared by every iterator of the loader: the sweep's iterators re-seed it, while a
        # live (mid-epoch) iterator still draws its augmentation from it
        return loader.generator
    return None


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class DataPosition:
    """Where the data stands: the RNG streams, ``loader``'s generator state and (for a
    stateful loader) its position. Taken before drawing batches out of turn, put back
    after, so training draws the batches it would have drawn."""

    rng: dict[str, Any]
    generator: torch.Tensor | None
    position: dict[str, Any] | None

    @classmethod
    def take(cls, loader: Any) -> DataPosition:
        generator = loader_generator(loader)
        return cls(
            rng=rng_states(),
            generator=generator.get_state() if generator is not None else None,
            position=copy.deepcopy(loader.state_dict()) if is_stateful(loader) else None,
        )

    def restore(self, loader: Any) -> None:
        set_rng_states(self.rng)
        generator = loader_generator(loader)
        if generator is not None and self.generator is not None:
            generator.set_state(self.generator)
        if self.position is not None:
            loader.load_state_dict(copy.deepcopy(self.position))
