"""Each training example augmented from its own seed, made of the epoch's seed and the example's index.

A random stream per DataLoader worker made an example's crop depend on `data.num_workers` and,
under torchrun, on which rank read it; a seed per example depends on neither, so a run draws the
same crops with any worker count or number of processes (a resume with another worker count
continues it exactly). ELR+'s two batch streams get different epoch seeds, so each network sees its
own crops. Class-balanced batches draw with replacement: a scan drawn again in one epoch also counts its earlier
draws into its seed, or it came back as the same crop and blur, the minority class's scans most often.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch.utils.data import Dataset

__all__ = ["SeededItems", "example_seed"]

_MASK64 = 2**64 - 1


class SeedableDataset(Protocol):
    def __len__(self) -> int: ...

    def item(self, index: int, seed: int | None) -> dict[str, Any]: ...


def example_seed(epoch_seed: int, index: int, draw: int = 0) -> int:
    """A 32-bit seed (what MONAI's NumPy random states take) hashed from the numbers with SplitMix64's
    mixer, so nearby epochs and indices give unrelated streams; 1 µs, where NumPy's SeedSequence took 30.
    `draw`: the example's earlier draws this epoch (balanced batches draw with replacement); draw 0 keeps the seed
    of runs made before draws were counted, so they resume to the crops they would have drawn."""
    mixed = _mix64((_mix64(epoch_seed) + index) & _MASK64)
    if draw:
        mixed = _mix64((mixed + draw) & _MASK64)
    return mixed >> 32


def _mix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


class SeededItems(Dataset):
    """One batch stream's view of a training set for one epoch: item i augmented from
    `example_seed(epoch_seed, i)`; an (i, draw) key, from `distributed.NumberedDraws`, gives a scan drawn twice
    in an epoch two augmentations (with the example's seed alone both draws were the same volume). An
    (i, draw, epoch seed) key names its epoch itself: one DataLoader, its workers kept, then serves every epoch
    (`engine.feeding.EpochDraws`), as its workers hold the copy of this object they started with."""

    def __init__(self, dataset: SeedableDataset, epoch_seed: int | None = None) -> None:
        self.dataset = dataset
        self.epoch_seed = epoch_seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int] | tuple[int, int, int]) -> dict[str, Any]:
        index, draw, *named = key if isinstance(key, tuple) else (key, 0)
        epoch_seed = named[0] if named else self.epoch_seed
        if epoch_seed is None:
            raise ValueError("SeededItems needs an epoch seed: one given when it is made, or one in each key")
        return self.dataset.item(index, example_seed(epoch_seed, index, draw))
