"""Each training example augmented from its own seed, made of the epoch's seed and the example's index.

A random stream per DataLoader worker made an example's crop depend on `data.num_workers` and,
under torchrun, on which rank read it; a seed per example depends on neither, so a run gives the
same numbers with any worker count or number of processes, and a resume with other ones continues it
exactly. ELR+'s two batch streams get different epoch seeds, so each network sees its own crops.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from torch.utils.data import Dataset

__all__ = ["SeededItems", "example_seed"]


class SeedableDataset(Protocol):
    def __len__(self) -> int: ...

    def item(self, index: int, seed: int | None) -> dict[str, Any]: ...


def example_seed(epoch_seed: int, index: int) -> int:
    """A 32-bit seed (what MONAI's NumPy random states take) hashed from both numbers, so nearby
    epochs and indices give unrelated streams."""
    return int(np.random.SeedSequence([epoch_seed % 2**64, index]).generate_state(1)[0])


class SeededItems(Dataset):
    """One batch stream's view of a training set for one epoch: item i augmented from
    `example_seed(epoch_seed, i)`."""

    def __init__(self, dataset: SeedableDataset, epoch_seed: int) -> None:
        self.dataset = dataset
        self.epoch_seed = epoch_seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset.item(index, example_seed(self.epoch_seed, index))
