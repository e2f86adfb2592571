"""Noisy image benchmarks as the training engine sees them: `build_image_data(cfg)`.

Load the full training set → optional stratified subset (CPU smoke runs) → inject label noise →
hold out `val_fraction` of the training set, with its NOISY labels, as the validation set used for
model selection (stratified on the true classes where known, as the official code splits per clean
class: the same images whatever the noise) → re-index the rest 0..N-1, the index the ELR targets
are stored by. Test sets stay clean. Clothing1M's and WebVision's labels are already noisy; when
Clothing1M's clean validation list exists the paper selects models on it, so it replaces the noisy
hold-out. (WebVision's own validation images are the paper's WebVision test figure, so they are the
test split here, and selection stays on the noisy hold-out.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from elr_mri.config import DataConfig
from elr_mri.data.grid import VolumeGrid
from elr_mri.data.image_sources import ImageSource, ImageSplit, load_source
from elr_mri.data.image_transforms import (
    CenterCrop,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    ToFloat,
    load_resized,
)
from elr_mri.data.noise import apply_noise_config, load_human_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LabelledDataset", "NoisyImageData", "InMemoryImages", "ImageFiles", "build_image_data", "stratified_subset",
           "NORMALISATION"]

# Per-channel (mean, std) used by the paper's official code.
NORMALISATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "clothing1m": ((0.6959, 0.6537, 0.6371), (0.3113, 0.3192, 0.3214)),
    "webvision": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet's
}
# Data sets whose training labels come noisy from the web, with no true labels to inject noise into.
WEB_LABELLED = ("clothing1m", "webvision")
DIGITS_TEST_FRACTION = 0.3  # sklearn's digits ship without a test split; this one never moves
DIGITS_TEST_SEED = 0
# Images read from files: shorter side resized to 256 (WebVision's release is stored so), then cropped
# to the size the official loaders train and test on.
FILE_RESIZE = 256
FILE_CROP = {"clothing1m": 224, "webvision": 227}
CIFAR_PADDING = 4
# A channel spread over less than one grey level is constant: dividing by its std would blow padding up to ~1e5.
FLAT_CHANNEL_STD = 1 / 255

log = logging.getLogger(__name__)


class LabelledDataset(Dataset):
    """A split the engine trains or scores on: items by position, and every item's label in that order, read without
    loading an image (ELR's targets, the mislabel table and the run's records need the labels alone)."""

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return self.item(index, seed=None)

    def item(self, index: int, seed: int | None) -> dict:
        """Item `index`, augmented from `seed` (None: each kind's own default stream): a seed per example and epoch
        makes the augmentation the same whichever process or worker loads it."""
        raise NotImplementedError


@dataclass
class NoisyImageData:
    """What the engine trains on. Items are {"image": float32 tensor, "label": int, "index": int}."""

    train: LabelledDataset  # noisy labels, augmented; "index" in [0, len(train))
    val: LabelledDataset | None  # noisy held-out split (clean for Clothing1M's official list), no augmentation
    test: LabelledDataset | None  # clean, no augmentation
    num_classes: int
    input_shape: tuple[int, ...]  # (C, H, W) after the transforms
    train_labels: np.ndarray  # noisy labels of `train`, aligned with "index"
    train_clean_labels: np.ndarray | None  # true labels aligned with "index" when known
    class_names: list[str]
    volume_grid: VolumeGrid | None = None  # MRI: the scans' voxel grid, recorded with the run for evaluation
    # MRI: every manifest participant's split, those data.train_subset, data.test_subset or data.mri.val_labels left
    # out included, so that the run's splits.csv can be passed back as data.mri.splits
    participant_splits: pd.Series | None = None
    splits_file: str | None = None  # MRI: data.mri.splits, which gave the splits (None: drawn from the fractions)
    train_ids: np.ndarray | None = None  # images: each training example's position in the original release
    # clean, scored beside `test` (WebVision: ilsvrc12)
    extra_tests: dict[str, LabelledDataset] = field(default_factory=dict)


class _LabelledImages(LabelledDataset):
    """Shared item logic: an image from `_load`, its transform, its label and its index."""

    def __init__(self, labels: np.ndarray, transform: Compose) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self._generator = torch.Generator()  # reseeded per item: cheaper than a new one

    def __getstate__(self) -> dict:
        """All but the generator: a torch.Generator sent to a spawned DataLoader worker (macOS, Windows, Python
        3.14's forkserver) fails to unpickle there and kills the worker; it holds no state worth sending."""
        return {key: value for key, value in vars(self).items() if key != "_generator"}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._generator = torch.Generator()

    def item(self, index: int, seed: int | None) -> dict:
        """Item `index`, augmented from `seed` (None: from torch's global generator)."""
        generator = None if seed is None else self._generator.manual_seed(seed)
        image = self.transform(self._load(index), generator)
        return {"image": image, "label": int(self.labels[index]), "index": index}

    def _load(self, index: int) -> torch.Tensor:
        raise NotImplementedError


class InMemoryImages(_LabelledImages):
    """Images held as one uint8 (or digits' float) tensor; augmentation happens per item."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Compose) -> None:
        super().__init__(labels, transform)
        self.images = torch.from_numpy(np.ascontiguousarray(images))

    def _load(self, index: int) -> torch.Tensor:
        return self.images[index]


# A listed image found unreadable mid-run: removing the file, then its line (as a folder's image may be) made other
# data, which a resume of the run refuses; the run lost its epochs. Extracting the file again keeps it resumable.
LISTED_IMAGE_FIX = ("extract this file again from the data set's release and keep the lists as they are (a resume "
                    "refuses lists that changed since the run began; a new run can go without the image: remove its "
                    "line from the list)")


class ImageFiles(_LabelledImages):
    """Images decoded from disk on every access (Clothing1M's million files do not fit in memory), named by the
    release's lists."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray, transform: Compose, short_side: int) -> None:
        super().__init__(labels, transform)
        self.paths = [str(p) for p in paths]
        self.short_side = short_side

    def _load(self, index: int) -> torch.Tensor:
        return load_resized(self.paths[index], self.short_side, LISTED_IMAGE_FIX)


def build_image_data(cfg: DataConfig) -> NoisyImageData:
    """Load data set `cfg.name`, corrupt its training labels with `cfg.noise` and split it."""
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must lie in [0, 1), got {cfg.val_fraction}")
    if cfg.name in WEB_LABELLED and cfg.noise.mode != "none":
        raise ValueError(f"{cfg.name}'s labels are already noisy and its true labels unknown: set data.noise.mode "
                         "to none")
    if cfg.noise.mode == "human" and cfg.noise.human_labels:  # a wrong file or key: said before 50,000 images decode
        load_human_labels(cfg.noise.human_labels, cfg.noise.human_key)
    source = load_source(cfg.name, cfg.root)
    _refuse_a_partial_release(cfg, len(source.class_names))
    train, test = source.train, source.test
    if cfg.name == "digits":
        test_index, train_index = _stratified_split(
            train.labels, round(DIGITS_TEST_FRACTION * len(train)), DIGITS_TEST_SEED
        )
        train, test = train.take(train_index), train.take(test_index)
    if cfg.train_subset is not None:
        train = train.take(stratified_subset(train.labels, cfg.train_subset, cfg.split_seed, "data.train_subset"))
    if test is not None and cfg.test_subset is not None:
        test = test.take(stratified_subset(test.labels, cfg.test_subset, cfg.split_seed, "data.test_subset"))

    noisy = apply_noise_config(cfg.noise, train.labels, source.num_classes, original_index=train.ids,
                               release_index=source.train.ids)
    clean = None if cfg.name in WEB_LABELLED else train.labels
    val = source.val
    if val is None and cfg.val_fraction > 0:
        val_size = round(cfg.val_fraction * len(noisy))
        # stratified on the true classes where known, as the official code splits before adding noise: the
        # hold-out is then the same images for every noise rate and noise seed (a controlled comparison)
        val_index, train_index = _stratified_split(noisy if clean is None else clean, val_size, cfg.split_seed)
        val = ImageSplit(train.images[val_index], noisy[val_index], train.ids[val_index])
        train, noisy = train.take(train_index), noisy[train_index]
        clean = None if clean is None else clean[train_index]

    train_tf, eval_tf, input_shape = _transforms(cfg, source)
    return NoisyImageData(
        train=_dataset(train.images, noisy, train_tf),
        val=None if val is None else _dataset(val.images, val.labels, eval_tf),
        test=None if test is None else _dataset(test.images, test.labels, eval_tf),
        num_classes=source.num_classes,
        input_shape=input_shape,
        train_labels=noisy,
        train_clean_labels=clean,
        class_names=source.class_names,
        train_ids=train.ids,
        extra_tests={name: _dataset(split.images, split.labels, eval_tf) for name, split in source.extra_tests.items()},
    )


# Image folders normalised as a CIFAR release are that release: the number of classes it has.
_RELEASE_CLASSES = {"cifar10": 10, "cifar100": 100}


def _refuse_a_partial_release(cfg: DataConfig, classes: int) -> None:
    """An image folder configured as CIFAR-10 with a class folder missing trained a 9-class network without a word, to
    be reported beside the paper's figures (and a CIFAR-10N label file was called another data set's)."""
    release = cfg.normalization
    if cfg.name == "imagefolder" and release in _RELEASE_CLASSES and classes != _RELEASE_CLASSES[release]:
        raise ValueError(f"{cfg.root}: {classes} class folders, where data.normalization = {release} names a release of "
                         f"{_RELEASE_CLASSES[release]} classes (a class folder missing from train/?); extract the whole "
                         "release again, or set data.normalization: auto for another data set")


def _dataset(images: np.ndarray, labels: np.ndarray, transform: Compose) -> LabelledDataset:
    """File paths become lazily decoded datasets, pixel arrays in-memory ones."""
    if images.dtype.kind in "US":
        return ImageFiles(images, labels, transform, FILE_RESIZE)
    return InMemoryImages(images, labels, transform)


def _transforms(cfg: DataConfig, source: ImageSource) -> tuple[Compose, Compose, tuple[int, ...]]:
    """(train transform, evaluation transform, input shape) for the data set."""
    if cfg.name == "digits":
        return Compose([ToFloat()]), Compose([ToFloat()]), tuple(source.train.images.shape[1:])
    named = cfg.normalization if cfg.normalization != "auto" else cfg.name
    if named not in NORMALISATION and source.train.images.dtype.kind in "US":
        raise ValueError(f"data.normalization = {named} measures the training images in memory, but {cfg.name}'s "
                         f"are read from files one batch at a time; use the release's constants "
                         f"(data.normalization: auto)")
    mean, std = NORMALISATION.get(named) or _channel_stats(source.train.images)
    normalise = Normalize(mean, std)
    if cfg.name in FILE_CROP:
        crop = FILE_CROP[cfg.name]
        train = [RandomCrop(crop), RandomHorizontalFlip()]
        evaluate = Compose([ToFloat(), CenterCrop(crop), normalise])
        shape: tuple[int, ...] = (3, crop, crop)
    else:
        channels, height, width = source.train.images.shape[1:]
        train = [RandomCrop((height, width), padding=CIFAR_PADDING), RandomHorizontalFlip()]
        evaluate = Compose([ToFloat(), normalise])
        shape = (channels, height, width)
    if not cfg.augment:
        return evaluate, evaluate, shape
    return Compose([ToFloat(), *train, normalise]), evaluate, shape


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of a uint8 (N, C, H, W) image folder, in float64 chunks."""
    total = np.zeros(images.shape[1])
    squares = np.zeros(images.shape[1])
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096].astype(np.float64) / 255.0
        total += chunk.sum(axis=(0, 2, 3))
        squares += (chunk**2).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return tuple(mean.tolist()), _unit_std_where_flat(std)


def _unit_std_where_flat(std: np.ndarray) -> tuple[float, ...]:
    """std 1 for a channel the same in every training image (e.g. an empty colour channel), said once: scaled by
    its ~0 std, the crops' zero padding and any pixel unlike the training set's became inputs of ~1e5."""
    flat = [channel for channel, spread in enumerate(std) if spread < FLAT_CHANNEL_STD]
    if flat:
        log.warning("image channel(s) %s spread under one grey level across the training images; they are centred "
                    "but not scaled (std 1)", flat)
    return tuple(1.0 if spread < FLAT_CHANNEL_STD else float(spread) for spread in std)


def stratified_subset(labels: np.ndarray, size: int, seed: int, key: str) -> np.ndarray:
    """Sorted indices of `size` examples keeping each class's share (CPU smoke runs), or an error naming `key`."""
    if not 0 < size <= len(labels):
        raise ValueError(f"{key} = {size} must lie in [1, {len(labels)}], the size of the split")
    return _stratified_split(labels, size, seed)[0]


def _stratified_split(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `size` examples drawn from each class in proportion to its size, and the rest.

    Class quotas are rounded by largest remainder (ties to the lower class), so the sizes are exact
    and every class with enough members keeps its share; both index arrays come back sorted.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = size * counts / counts.sum()
    take = np.floor(quota).astype(np.int64)
    take[np.argsort(take - quota, kind="stable")[: size - take.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    first = np.sort(np.concatenate(chosen))
    rest = np.setdiff1d(np.arange(len(labels)), first, assume_unique=True)
    return first, rest
