"""Device-resident batches for in-memory image data sets (CIFAR, image folders, digits).

A PIL/per-item DataLoader spends most of a small-image run feeding the GPU: every image is
padded, cropped, flipped and normalised on its own in Python. Here the decoded images move to the
device once, in their stored dtype (uint8 for CIFAR and image folders, so CIFAR-10 is 150 MB),
and each batch is augmented with a few batched tensor ops: the random crop with zero padding and
the horizontal flip become one `gather` with per-example offsets, followed by the same `ToFloat`
and `Normalize` the per-item path uses. The same code runs on the CPU.

What it reproduces is the per-item pipeline `ToFloat → [RandomCrop] → [RandomHorizontalFlip] →
[Normalize]`, read from the data set's own transform (`AugmentSpec.from_transform`), so no
normalisation constant or padding is restated here. Crop offsets and flips have the same
distribution as the per-item transforms' (uniform offsets, flip with probability p), and without
augmentation the images are bitwise equal to the per-item ones; both are tested.

Randomness comes from a `torch.Generator` on the batches' device that the caller seeds, drawn for
whole global batches. This stream differs from the per-item path's (one generator per example,
`seeded_items`): a run is reproducible on either path, but the two paths do not give bitwise-equal
augmentations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np

import torch
import torch.nn.functional as F

from elr_mri.data.image_transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip, ToFloat, Transform
from elr_mri.data.images import InMemoryImages, NoisyImageData

__all__ = ["Assembly", "AugmentSpec", "DeviceImageBatches", "supports_device_batches"]

# index, top=, left=, flip= → augmented float32 batch (`DeviceImageBatches._augment`)
Assembly = Callable[..., torch.Tensor]
# The per-item steps the device path reproduces, in the only order it accepts.
_STEP_ORDER = (ToFloat, RandomCrop, RandomHorizontalFlip, Normalize)


@dataclass(frozen=True)
class AugmentSpec:
    """The per-item pipeline ToFloat → [RandomCrop] → [RandomHorizontalFlip] → [Normalize] as data."""

    crop_size: tuple[int, int] | None = None  # output (H, W) of the random crop; None: no crop
    padding: int = 0  # zero padding on each side before cropping (CIFAR: 4)
    flip_p: float = 0.0  # probability of a left-right flip
    mean: tuple[float, ...] | None = None  # per-channel normalisation; None: images stay in [0, 1]
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):  # a mean alone would leave the images unnormalised
            raise ValueError("AugmentSpec: give the normalisation's mean and std together, or neither")

    @property
    def augments(self) -> bool:
        return self.crop_size is not None or self.flip_p > 0

    @classmethod
    def from_transform(cls, transform: Transform) -> AugmentSpec:
        """Read a data set's per-item transform; ValueError for anything the device path cannot redo.

        Reading the transform (not the data set name) keeps one source of truth for the constants
        and covers image folders, whose mean and std are measured on their training images.
        """
        steps = transform.steps if isinstance(transform, Compose) else [transform]
        kinds = [type(step) for step in steps]
        if any(kind not in _STEP_ORDER for kind in kinds):
            unknown = next(kind.__name__ for kind in kinds if kind not in _STEP_ORDER)
            raise ValueError(f"the device path cannot reproduce the transform step {unknown}")
        positions = [_STEP_ORDER.index(kind) for kind in kinds]
        if not positions or positions[0] != 0 or positions != sorted(set(positions)):
            names = " → ".join(kind.__name__ for kind in kinds)
            raise ValueError(f"expected ToFloat → [RandomCrop] → [RandomHorizontalFlip] → [Normalize], got {names}")
        spec = cls()
        for step in steps:
            if isinstance(step, RandomCrop):
                spec = replace(spec, crop_size=(int(step.size[0]), int(step.size[1])), padding=step.padding)
            elif isinstance(step, RandomHorizontalFlip):
                spec = replace(spec, flip_p=float(step.p))
            elif isinstance(step, Normalize):
                spec = replace(spec, mean=tuple(step.mean.flatten().tolist()), std=tuple(step.std.flatten().tolist()))
        return spec


def supports_device_batches(data: NoisyImageData) -> bool:
    """Whether train, val, test and any further test sets can all be served by `DeviceImageBatches`.

    They must hold their pixels in memory (`InMemoryImages`: CIFAR, image folders, digits; not
    Clothing1M's files) and use transforms the device path reproduces.
    """
    for dataset in (data.train, data.val, data.test, *data.extra_tests.values()):
        if dataset is None:
            continue
        if not isinstance(dataset, InMemoryImages):
            return False
        try:
            AugmentSpec.from_transform(dataset.transform)
        except ValueError:
            return False
    return True


class DeviceImageBatches:
    """A data set's images and labels held on `device`, served as augmented batches.

    Batches are dicts {"image": float32 (B, C, H, W), "label": int64 (B,), "index": int64 (B,)},
    all on `device`, like the per-item DataLoader's after `.to(device)`; "index" is the position
    in the data set, the index ELR's targets are stored by.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | np.ndarray | Sequence[int], spec: AugmentSpec,
                 device: torch.device | str, channels_last: bool = False,
                 compile_assembly: Callable[[Assembly], Assembly] | None = None) -> None:
        """`compile_assembly` (e.g. `ExecutionPlan.compiled_function`) wraps the augmented batches' assembly from
        the drawn offsets and flips: compiled, its ~30 small ops become one or two kernels, where a GPU's host
        spent 1.0 ms a step launching them (H200, bench/results/cifar_step_cuda.md)."""
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        self.device = torch.device(device)
        self.images = images.to(self.device)  # the one host → device copy, in the stored dtype
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(self.device)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.spec = spec
        self.channels_last = channels_last
        self._assemble: Assembly = compile_assembly(self._augment) if compile_assembly else self._augment
        self._to_float = ToFloat()
        self._normalize: Normalize | None = None
        if spec.mean is not None and spec.std is not None:  # both or neither: `AugmentSpec`
            self._normalize = Normalize(spec.mean, spec.std)  # the per-item arithmetic, on the device
            self._normalize.mean = self._normalize.mean.to(self.device)
            self._normalize.std = self._normalize.std.to(self.device)

    @classmethod
    def from_dataset(cls, dataset: InMemoryImages, device: torch.device | str, channels_last: bool = False,
                     compile_assembly: Callable[[Assembly], Assembly] | None = None) -> DeviceImageBatches:
        """Serve `dataset` with the pipeline of its own transform (augmenting for train, not for val/test)."""
        return cls(dataset.images, dataset.labels, AugmentSpec.from_transform(dataset.transform), device,
                   channels_last, compile_assembly)

    def __len__(self) -> int:
        return len(self.labels)

    def generator(self, seed: int) -> torch.Generator:
        """A generator on this device seeded with `seed`, the kind `batches` draws from."""
        return torch.Generator(device=self.device).manual_seed(seed)

    def batches(self, index_batches: Iterable[Sequence[int] | torch.Tensor], generator: torch.Generator | None = None,
                slice_positions: Iterable[tuple[int, int]] | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """One batch per element of `index_batches` (lists, or index tensors: `GlobalBatchSampler.parts_on(device)`
        hands the feeder's over already on this device), augmented per the spec.

        `generator` (on this device, e.g. from `self.generator(seed)`) is required when the spec
        augments; seed it per (seed, epoch). When the batches are one rank's slices of global batches,
        `slice_positions` gives each one's (global batch size, start) (`GlobalBatchSampler.slice_positions`):
        every rank draws the crops of the whole global batch and takes its slice's, so an example is
        cropped alike whichever rank holds it, and K processes train on the crops 1 process does.
        """
        if self.spec.augments and generator is None:
            raise ValueError("this data set is augmented: pass a generator on its device")
        paired = (zip(index_batches, slice_positions, strict=True) if slice_positions is not None
                  else ((indices, None) for indices in index_batches))
        for indices, position in paired:
            # not copied when already here (`parts_on`); else non-blocking: a plain copy to a GPU waits for its queue
            index = torch.as_tensor(indices, dtype=torch.int64).to(self.device, non_blocking=True)
            if self.spec.augments:
                global_size, start = position or (len(index), 0)
                if start + len(index) > global_size:
                    raise ValueError(f"a slice of {len(index)} examples from position {start} does not fit in a "
                                     f"global batch of {global_size}")
                drawn_by = cast(torch.Generator, generator)  # checked above: an augmenting spec needs one
                top, left, flip = self._draw(drawn_by, global_size, slice(start, start + len(index)))
                images = self._assemble(index, top=top, left=left, flip=flip)
            else:
                images = self._pixels(self.images.index_select(0, index))
            yield {"image": images, "label": self.labels[index], "index": index}

    def in_order(self, batch_size: int, rows: range | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Every example of `rows` (all by default) once, in data set order, never augmented: evaluation on any
        split, or one rank's share of it (`evaluation_rows`)."""
        rows = range(len(self)) if rows is None else rows
        for start in range(rows.start, rows.stop, batch_size):
            stop = min(start + batch_size, rows.stop)
            index = torch.arange(start, stop, device=self.device)
            yield {"image": self._pixels(self.images[start:stop]), "label": self.labels[index], "index": index}

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8/float pixels → the per-item path's float32 values (same ops, so the same bits)."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)  # cheaper on uint8 than float
        images = self._to_float(images)
        if self._normalize is not None:
            images = self._normalize(images)
        if not self.channels_last:
            images = images.contiguous()
        return images

    def _crop_bounds(self) -> tuple[int, int, int, int]:
        """(crop height, crop width, padded height, padded width); ValueError when the crop does not fit."""
        height, width = self.images.shape[2:]
        out_h, out_w = self.spec.crop_size or (height, width)
        padded_h, padded_w = height + 2 * self.spec.padding, width + 2 * self.spec.padding
        if padded_h < out_h or padded_w < out_w:
            raise ValueError(f"cannot crop {out_h}×{out_w} from an image of {padded_h}×{padded_w}")
        return out_h, out_w, padded_h, padded_w

    def _draw(self, generator: torch.Generator, global_size: int,
              mine: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crop offsets (top, left) and flips, each (B, 1), drawn for all `global_size` examples of the global
        batch and the rows `mine` of them kept: an example is cropped alike whichever rank holds it."""
        out_h, out_w, padded_h, padded_w = self._crop_bounds()
        draw: dict[str, Any] = {"generator": generator, "device": self.device}
        top = torch.randint(0, padded_h - out_h + 1, (global_size, 1), **draw)[mine]
        left = torch.randint(0, padded_w - out_w + 1, (global_size, 1), **draw)[mine]
        flip = (torch.rand((global_size, 1), **draw) < self.spec.flip_p)[mine]
        return top, left, flip

    def _augment(self, index: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
                 flip: torch.Tensor) -> torch.Tensor:
        """The examples `index`, cropped at (top, left) from their zero-padded selves, flipped where `flip`,
        as float32 pixels: a function of its arguments alone, so it can be compiled (`compile_assembly`).

        Crop and flip are one gather: output pixel (i, j) of example b reads padded pixel (top_b + i, left_b + j),
        or (top_b + i, left_b + w − 1 − j) when b is flipped: flipping the crop equals cropping with mirrored
        column indices, so no flipped copy is made.
        """
        images = self.images.index_select(0, index)
        batch, channels = images.shape[:2]
        out_h, out_w, _, padded_w = self._crop_bounds()
        if self.spec.padding:
            images = F.pad(images, [self.spec.padding] * 4)
        columns = torch.arange(out_w, device=self.device)
        columns = left + torch.where(flip, out_w - 1 - columns, columns)  # (B, w)
        rows = top + torch.arange(out_h, device=self.device)  # (B, h)
        flat = (rows[:, :, None] * padded_w + columns[:, None, :]).view(batch, 1, out_h * out_w)
        picked = images.flatten(2).gather(2, flat.expand(batch, channels, out_h * out_w))
        return self._pixels(picked.view(batch, channels, out_h, out_w))
