"""The few image transforms the benchmarks need, written with torch ops on (C, H, W) tensors.

torchvision cannot be imported beside the pinned torch, and the paper's pipelines need only
random crop (with zero padding for CIFAR), horizontal flip, centre crop, resize and per-channel
normalisation. The random steps draw from the generator `Compose` is called with (training seeds
one per example: `seeded_items`), or from torch's global generator without one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from elr_mri.data.image_decoding import read_rgb

__all__ = [
    "Transform",
    "RandomStep",
    "Compose",
    "ToFloat",
    "RandomCrop",
    "CenterCrop",
    "RandomHorizontalFlip",
    "Normalize",
    "load_resized",
]

Transform = Callable[[torch.Tensor], torch.Tensor]


class RandomStep:
    """A transform that draws random numbers: `Compose` hands it the item's generator."""

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


class Compose(RandomStep):
    """Apply transforms in order; the random ones (a nested Compose too) draw from `generator` (None: torch's
    global one)."""

    def __init__(self, steps: Sequence[Transform]) -> None:
        self.steps = list(steps)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for step in self.steps:
            image = step(image, generator) if isinstance(step, RandomStep) else step(image)
        return image


class ToFloat:
    """uint8 0..255 → float32 0..1; float images (digits) pass through as float32.

    The divisor is a tensor on the image's device: CUDA divides by a Python number as a multiplication
    by its reciprocal, one bit off the CPU's division for about half the byte values, so GPU batches
    would not equal the CPU's. A 0-d tensor made by `torch.full` costs no wait on the device.
    """

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype == torch.uint8:
            return image.float().div_(torch.full((), 255.0, device=image.device))
        return image.float()


class RandomCrop(RandomStep):
    """A random window of `size` (int: square) after zero-padding each side by `padding` (CIFAR: 32, 4)."""

    def __init__(self, size: int | tuple[int, int], padding: int = 0) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.padding = padding

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.padding:
            image = F.pad(image, [self.padding] * 4)
        (height, width), (out_h, out_w) = image.shape[-2:], self.size
        if height < out_h or width < out_w:
            raise ValueError(f"cannot crop {out_h}×{out_w} from an image of {height}×{width}")
        top = int(torch.randint(0, height - out_h + 1, (), generator=generator))
        left = int(torch.randint(0, width - out_w + 1, (), generator=generator))
        return image[..., top : top + out_h, left : left + out_w]


class CenterCrop:
    """The central `size`×`size` window (offsets rounded as torchvision does)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        top = int(round((height - self.size) / 2.0))
        left = int(round((width - self.size) / 2.0))
        return image[..., top : top + self.size, left : left + self.size]


class RandomHorizontalFlip(RandomStep):
    """Mirror left-right with probability `p`."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if float(torch.rand((), generator=generator)) < self.p:
            return image.flip(-1)
        return image


class Normalize:
    """(x − mean) / std per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std


def load_resized(path: str | Path, short_side: int, how_to_fix: str = "remove or replace the file") -> torch.Tensor:
    """Decode an image as RGB uint8 (3, H, W) with its shorter side resized to `short_side` (bilinear); `how_to_fix`
    ends the error of a file that cannot be decoded."""
    image = read_rgb(path, how_to_fix)
    width, height = image.size
    if width <= height:  # the longer side is truncated, as torchvision's Resize(int) does
        size = (short_side, int(short_side * height / width))
    else:
        size = (int(short_side * width / height), short_side)
    image = image.resize(size, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy())
