"""Where the engine's batches come from: a DataLoader over per-item transforms, or device-resident tensors.

Both walk the same global batch order (`GlobalBatchSampler`, seeded by (seed, epoch)), so a run
resumes, or scales to more processes, to the same batches. The DataLoader path augments each example
from a seed of its own (`SeededItems`), the device-resident path draws the crops of each whole global batch on
every rank, so an example's crop depends on neither the worker count nor the rank. ELR+ asks for two streams: its second
network walks its own shuffle of the training set, as the official code gives each network a loader.
`train.loader: auto` takes the device-resident path whenever every split holds decoded pixels in memory
(digits, CIFAR, image folders): the images move to the device once and are augmented in whole batches there.
"""

from __future__ import annotations

from multiprocessing.context import BaseContext
from typing import Any, Callable, Iterable, Iterator, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from elr_mri.config import RunConfig, evaluation_batch_size
from elr_mri.data.device_batches import Assembly, DeviceImageBatches, supports_device_batches
from elr_mri.data.device_blur import blur_and_trim, kernel_radius
from elr_mri.data.images import InMemoryImages, LabelledDataset, NoisyImageData
from elr_mri.data.seeded_items import SeededItems
from elr_mri.distributed import DistContext, GlobalBatchSampler, NumberedDraws, evaluation_rows
from preprocess.workers import forked_on_linux

__all__ = ["BatchFeeder", "BlurredOnDevice", "EpochDraws", "PairedBatches", "StreamsInTurn", "WithGlobalBatchSizes",
           "balanced_subset", "serves_from_device", "worker_start"]

Batch = dict[str, Any]  # tensors, the training batches' global_batch_size, and a second stream's batch ("pair")
SECOND_STREAM_SEED = 50_000_017  # added to an epoch's seed for the second stream: another order, other crops


class WithGlobalBatchSizes:
    """Training batches, each with the size of the global batch it is this rank's slice of (key
    "global_batch_size"): the loss weighting under DDP needs it, and knowing it on the host spares a
    per-step all-reduce."""

    def __init__(self, batches: Iterable[Batch], sizes: list[int]) -> None:
        self.batches, self.sizes = batches, sizes

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[Batch]:
        for batch, size in zip(self.batches, self.sizes, strict=True):
            yield {**batch, "global_batch_size": size}


class PairedBatches:
    """Batches of one stream, each carrying the same-numbered batch of a second stream under "pair"."""

    def __init__(self, first: Iterable[Batch], second: Iterable[Batch]) -> None:
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        for batch, other in zip(self.first, self.second, strict=True):
            yield {**batch, "pair": other}


class StreamsInTurn:
    """Every batch of one stream marked for network 0, then every batch of a second marked for network 1:
    ELR+ as the official code's single-device branch trains it, one network a whole epoch at a time."""

    def __init__(self, first: Iterable[Batch], second: Iterable[Batch]) -> None:
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        for network, stream in enumerate((self.first, self.second)):
            for batch in stream:
                yield {**batch, "network": network}


class EpochDraws(Sampler[list[tuple[int, int, int]]]):
    """The batches of the epoch `start` set last, each key (index, draw, the epoch's seed) for `SeededItems`: the
    DataLoader of a stream keeps this one sampler, and so its workers, from epoch to epoch."""

    def __init__(self) -> None:
        self.draws: NumberedDraws | None = None
        self.seed = 0

    def start(self, draws: NumberedDraws, seed: int) -> None:
        self.draws, self.seed = draws, seed

    def __len__(self) -> int:
        return len(self.draws or ())

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for batch in self.draws or ():
            yield [(index, draw, self.seed) for index, draw in batch]


class BlurredOnDevice:
    """MRI training batches whose images arrive as crops with the blur kernel's reach around them and a σ each
    (`data.mri.blur_on: device`): moved to the device and blurred there, the reach trimmed off."""

    def __init__(self, batches: Iterable[Batch], device: torch.device, reach: int) -> None:
        self.batches, self.device, self.reach = batches, device, reach

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.batches:
            blocks = batch["image"].to(self.device, non_blocking=True)
            sigmas = batch["blur_sigma"].to(self.device, non_blocking=True)
            rest = {key: value for key, value in batch.items() if key != "blur_sigma"}
            yield {**rest, "image": blur_and_trim(blocks, sigmas, self.reach)}


def serves_from_device(data: NoisyImageData, cfg: RunConfig) -> bool:
    """Whether `train.loader` (`auto`, `device`, `dataloader`) takes the device-resident path for `data`;
    ValueError for `device` where the images are not held in memory."""
    loader = cfg.train.loader
    if loader == "device" and not supports_device_batches(data):
        raise ValueError(f"train.loader = 'device' needs images held in memory with CIFAR-style transforms; "
                         f"{cfg.data.name} is read from files: use loader 'dataloader' or 'auto'")
    return loader == "device" or (loader == "auto" and supports_device_batches(data))


class BatchFeeder:
    def __init__(self, data: NoisyImageData, cfg: RunConfig, dist: DistContext, device: torch.device,
                 channels_last: bool = False, blur_on_device: bool = False,
                 compile_assembly: Callable[[Assembly], Assembly] | None = None) -> None:
        """`blur_on_device`: `data` was built to leave the MRI training blur to `device` (`build_data`).
        `compile_assembly`: wraps the device-resident training batches' assembly (`DeviceImageBatches`)."""
        self.data, self.cfg, self.dist = data, cfg, dist
        self.device = device
        self.blur_reach = kernel_radius(cfg.data.mri.blur_sigma_max) if blur_on_device else None
        self.on_device = serves_from_device(data, cfg)
        self.device_sets: dict[str, DeviceImageBatches] = {}
        self._loaders: dict[str, DataLoader] = {}  # by split, and "train" + stream: kept, with their workers
        if self.on_device:
            # every split is InMemoryImages: `serves_from_device` checked
            self.device_sets = {name: DeviceImageBatches.from_dataset(cast(InMemoryImages, split), device,
                                                                      channels_last,
                                                                      compile_assembly if name == "train" else None)
                                for name, split in self._splits().items()}

    def train_epoch(self, epoch: int, streams: int = 1, in_turn: bool = False) -> Iterable[Batch]:
        """This rank's slices of the epoch's global batches, shuffled or class-balanced; with two
        streams each batch carries one of an independent second walk under "pair", or (`in_turn`) the
        second walk follows the first."""
        first = self._stream(epoch, stream=0)
        if streams == 1:
            return first
        second = self._stream(epoch, stream=1)
        return StreamsInTurn(first, second) if in_turn else PairedBatches(first, second)

    def steps_per_epoch(self) -> int:
        """Training steps (global batches) an epoch takes, the unit of step-counted settings such as ELR's
        loss.lam_start_steps: class-balanced batches or the training split over the batch size."""
        return len(self._sampler(torch.Generator().manual_seed(self.cfg.seed), stream=0))

    def _stream(self, epoch: int, stream: int) -> Iterable[Batch]:
        seed = self.cfg.seed * 100_003 + epoch + stream * SECOND_STREAM_SEED
        sampler = self._sampler(torch.Generator().manual_seed(seed), stream)
        if self.on_device:
            train = self.device_sets["train"]
            batches: Iterable[Batch] = train.batches(sampler.parts_on(self.device), train.generator(seed * 1009),
                                                      sampler.slice_positions())
        else:  # each example augmented from (this stream's epoch seed, its index, its earlier draws): SeededItems
            batches = self._training_loader(stream, NumberedDraws(sampler), seed)
            if self.blur_reach is not None:
                batches = BlurredOnDevice(batches, self.device, self.blur_reach)
        return WithGlobalBatchSizes(batches, sampler.global_batch_sizes())

    def evaluation(self, split: str) -> Iterable[Batch] | None:
        """Un-augmented batches of "val", "test" or a further test set in order; None when the split is empty.
        Under torchrun, this rank's run of them (`evaluation_rows`), which `evaluate_split` joins with the others'."""
        dataset = self._splits().get(split)
        if dataset is None:
            return None
        size = evaluation_batch_size(self.cfg)
        rows = evaluation_rows(len(dataset), size, self.dist)
        if self.on_device:
            return self.device_sets[split].in_order(size, rows)
        share = Subset(dataset, rows) if self.dist.enabled else dataset
        # A new loader's pass drew its workers' seed from torch's global generator, which ELR+'s mixup and dropout
        # draw from next; a kept one draws from its own, so this draw keeps their numbers, and a run, as they were.
        torch.empty((), dtype=torch.int64).random_()
        return self._kept_loader(split, lambda: self._loader(share, batch_size=size, shuffle=False))

    def _training_loader(self, stream: int, draws: NumberedDraws, seed: int) -> DataLoader:
        """Stream `stream`'s loader, set to serve `draws`, augmented from the epoch's `seed`."""
        loader = self._kept_loader(f"train{stream}",
                                   lambda: self._loader(SeededItems(self.data.train), batch_sampler=EpochDraws()))
        cast(EpochDraws, loader.batch_sampler).start(draws, seed)
        return loader

    def _kept_loader(self, name: str, build: Callable[[], DataLoader]) -> DataLoader:
        """The loader `name`, built on first use and kept with its workers for the run: a loader made each epoch
        started its workers each epoch, and spawned ones (macOS) each imported torch and unpickled the split
        again (with `data.mri.cache: memory` every volume): 36 s an epoch of digits with 2 workers, against 0.6 s."""
        if name not in self._loaders:
            self._loaders[name] = build()
        return self._loaders[name]

    def _loader(self, dataset: Dataset, **batching: Any) -> DataLoader:
        """A DataLoader on `data.num_workers` workers that outlive each pass. Its generator only seeds the workers,
        whose items come from seeds of their own (`SeededItems`) or are not random (evaluation). Pinned memory:
        the copies to the GPU are non-blocking."""
        workers = self.cfg.data.num_workers
        return DataLoader(dataset, num_workers=workers, multiprocessing_context=worker_start(workers),
                          persistent_workers=workers > 0, generator=torch.Generator().manual_seed(self.cfg.seed),
                          pin_memory=torch.cuda.is_available(), **batching)

    def _splits(self) -> dict[str, LabelledDataset]:
        named = {**self.data.extra_tests, "train": self.data.train, "val": self.data.val, "test": self.data.test}
        return {name: split for name, split in named.items() if split is not None and len(split) > 0}

    def subset_note(self) -> list[str]:
        """A line where data.balanced_subset trains on fewer examples than the split: the same subset every epoch,
        the rest never seen, which a run said nowhere (Clothing1M's 128,000 of about a million)."""
        subset, labels = self._balanced_subset(stream=0), self.data.train_labels
        if subset is None or len(subset) == len(labels):
            return []
        kept, whole = (np.bincount(part, minlength=self.data.num_classes) for part in (labels[subset], labels))
        classes = ", ".join(f"{name} {k:,}/{n:,}" for name, k, n in zip(self.data.class_names, kept, whole))
        each = "; each ELR+ network draws its own" if self.cfg.loss.name == "elr_plus" else ""
        return [f"note: data.balanced_subset: every epoch trains on the same {len(subset):,} of the {len(labels):,} "
                f"training examples ({self.cfg.data.balanced_batches:,} balanced_batches × "
                f"{self.cfg.train.batch_size} batch_size, an equal share a class at most{each}), per class: "
                f"{classes}{self._classes_left_out_said(len(subset))}"]

    def _classes_left_out_said(self, size: int) -> str:
        """The classes with training examples that a network's subset holds none of, said after the subset's line.
        The official Clothing1M loader's rule, kept: each class may give up to ⌈size / classes⌉ in a random order and
        the first `size` stay, so a size below the class count, or one whose last places fell to other classes (20
        over 14 classes, most seeds), trains without ever seeing a class; a multiple of the class count cannot."""
        labels, count = self.data.train_labels, self.data.num_classes
        streams = 2 if self.cfg.loss.name == "elr_plus" else 1
        present = np.bincount(labels, minlength=count) > 0
        drawn = [np.bincount(labels[self._balanced_subset(stream)], minlength=count) > 0 for stream in range(streams)]
        left_out = [name for index, name in enumerate(self.data.class_names)
                    if present[index] and not all(stream[index] for stream in drawn)]
        if not left_out:
            return ""
        whose = "an ELR+ network's" if streams > 1 else "the"
        return (f"; {whose} subset holds no example of {', '.join(left_out)}, which it then never trains on: a "
                f"multiple of the {count} classes for balanced_batches × batch_size ({size:,}) keeps every class")

    def _balanced_subset(self, stream: int) -> np.ndarray | None:
        """Stream `stream`'s class-capped subset (data.balanced_subset), drawn from the run's seed; None without one."""
        if not (self.cfg.data.balanced_batches and self.cfg.data.balanced_subset):
            return None
        return balanced_subset(self.data.train_labels, self.data.num_classes,
                               self.cfg.data.balanced_batches * self.cfg.train.batch_size,
                               self.cfg.seed * 100_003 + stream * SECOND_STREAM_SEED)

    def _sampler(self, generator: torch.Generator, stream: int) -> GlobalBatchSampler:
        weights, num_samples, subset = None, None, None
        if self.cfg.data.balanced_batches:
            labels = self.data.train_labels
            num_samples = self.cfg.data.balanced_batches * self.cfg.train.batch_size
            if self.cfg.data.balanced_subset:
                subset = torch.as_tensor(self._balanced_subset(stream))
            else:
                counts = np.bincount(labels, minlength=self.data.num_classes)
                weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
        return GlobalBatchSampler(len(self.data.train), self.cfg.train.batch_size, generator, self.dist.rank,
                                  self.dist.world_size, weights=weights, num_samples=num_samples, subset=subset)


def balanced_subset(labels: np.ndarray, num_classes: int, size: int, seed: int) -> np.ndarray:
    """Up to `size` example indices, at most size / num_classes of each class, taken without replacement in a
    seeded random order (the official Clothing1M loaders' subset: a class with fewer examples gives all it has)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    ranks = np.zeros(len(labels), dtype=np.int64)  # 0, 1, 2, ... within each class, in `order`
    for label in range(num_classes):
        members = order[labels[order] == label]
        ranks[members] = np.arange(len(members))
    chosen = order[ranks[order] < size / num_classes]
    return chosen[:size]


def worker_start(workers: int) -> BaseContext | None:
    """How DataLoader workers start: forked on Linux whatever Python's default (`forked_on_linux`). Under Python 3.14's
    default there, forkserver, each worker imports torch again (measured while loaders were made anew each epoch: an
    epoch of digits with 2 workers took 23 s, training 8-9 s and scoring 14-15 s, against 0.7 s forked on 2 busy cores;
    the kept loaders, `BatchFeeder._kept_loader`, pay it once a run), and the workers no longer inherit the signal
    handling `elr_mri.stopping` gives them. The benchmarks' loaders start theirs so too."""
    return forked_on_linux() if workers > 0 else None  # a DataLoader without workers refuses a context
