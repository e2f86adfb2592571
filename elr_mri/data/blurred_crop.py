"""The MRI training augmentation of the ML4H paper: blur the whole volume, then take a random crop.

Done literally, the blur (scipy's Gaussian, one σ ~ U(0, σ_max) for every axis, truncate 8, reflected edges, as
the official code) filters every voxel of a 121×145×121 volume to keep a 96³ crop: most of a training volume's
loading time. A kernel of radius r reaches r voxels, so blurring the crop with an r-voxel margin (cut at the
volume's faces, where the reflection then happens exactly where it did) and keeping its centre gives the same
voxels: 1.5× fewer to filter at σ = 1 and more at small σ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data.utils import get_random_patch, get_valid_patch_size
from monai.transforms import CenterSpatialCrop, MapTransform, Randomizable, SpatialCrop
from scipy import ndimage

from elr_mri.data.device_blur import BLUR_TRUNCATE, kernel_radius

__all__ = ["RandBlurredCropd", "blurred_region", "reflected_region"]


class RandBlurredCropd(Randomizable, MapTransform):
    """A random `crop_size` crop of the blurred volume, σ ~ U(0, sigma_max) (no blur when sigma_max is 0).

    `max_shift`: the crop stays within that many voxels of the centre crop (None: anywhere in the volume).
    `defer_blur`: leave the blur to the GPU (`elr_mri.data.device_blur`): the item is the crop with
    `kernel_radius(sigma_max)` voxels around it on every side (reflected past the volume's faces, as the filter
    would) and its σ under `blur_sigma`. The volume must be at least `crop_size` on every axis (the padding step
    before ensures it). After a call, `sigma` and `crop_slices` say what was drawn.
    """

    def __init__(self, key: str, crop_size: Sequence[int], sigma_max: float, max_shift: int | None = None,
                 defer_blur: bool = False) -> None:
        MapTransform.__init__(self, key)
        if sigma_max < 0:
            raise ValueError(f"sigma_max must be non-negative, got {sigma_max}")
        if max_shift is not None and max_shift < 0:
            raise ValueError(f"data.mri.max_shift = {max_shift}: use a number of voxels >= 0, or null for anywhere")
        self.crop_size = tuple(int(size) for size in crop_size)
        self.sigma_max = sigma_max
        self.defer_blur = defer_blur
        self.window = None if max_shift is None else tuple(size + 2 * max_shift for size in self.crop_size)
        self.sigma = 0.0
        self.crop_slices: tuple[slice, ...] = ()

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """σ first, then the crop's corner within the window."""
        self.sigma = float(self.R.uniform(0.0, self.sigma_max)) if self.sigma_max > 0 else 0.0
        window = (tuple(slice(0, size) for size in spatial_shape) if self.window is None
                  else CenterSpatialCrop(self.window).compute_slices(spatial_shape))
        # MONAI cuts a window larger than the volume at its start only: past the end, crops came out short
        window = tuple(slice(max(0, part.start), min(size, part.stop)) for part, size in zip(window, spatial_shape))
        window_shape = [part.stop - part.start for part in window]
        corner = get_random_patch(window_shape, get_valid_patch_size(window_shape, self.crop_size), self.R)
        self.crop_slices = tuple(slice(part.start + inner.start, part.start + inner.stop)
                                 for part, inner in zip(window, corner))

    def __call__(self, data: dict) -> dict:
        out = dict(data)
        for key in self.key_iterator(out):
            volume = out[key]
            self.randomize(volume.shape[1:])
            if self.defer_blur:
                out[key] = torch.from_numpy(reflected_region(np.asarray(volume, dtype=np.float32), self.crop_slices,
                                                             kernel_radius(self.sigma_max)))
                out["blur_sigma"] = self.sigma
                continue
            cropped = SpatialCrop(roi_slices=self.crop_slices)(volume)  # a MetaTensor keeps its affine
            if self.sigma > 0:
                blurred = blurred_region(np.asarray(volume, dtype=np.float32), self.crop_slices, self.sigma)
                cropped = cropped.clone().copy_(torch.from_numpy(blurred))
            out[key] = cropped
        return out


def blurred_region(volume: np.ndarray, region: Sequence[slice], sigma: float) -> np.ndarray:
    """`region` (spatial slices) of the whole channel-first `volume` blurred with scipy's Gaussian at `sigma`,
    computed from the region and the kernel's reach around it."""
    outer = _widened_within(region, volume.shape[1:], kernel_radius(sigma))
    blurred = ndimage.gaussian_filter(volume[(slice(None), *outer)], sigma=(0.0,) + (sigma,) * len(outer),
                                      truncate=BLUR_TRUNCATE)
    inner = tuple(slice(part.start - around.start, part.stop - around.start) for part, around in zip(region, outer))
    return blurred[(slice(None), *inner)]


def reflected_region(volume: np.ndarray, region: Sequence[slice], reach: int) -> np.ndarray:
    """`region` of the channel-first `volume` with `reach` voxels more on every side, mirrored past its faces
    (numpy's "symmetric", scipy's "reflect"): what the Gaussian filter reads around the region."""
    inside = _widened_within(region, volume.shape[1:], reach)
    missing = [(0, 0)] + [(around.start - (part.start - reach), part.stop + reach - around.stop)
                          for part, around in zip(region, inside)]
    return np.pad(volume[(slice(None), *inside)], missing, mode="symmetric")


def _widened_within(region: Sequence[slice], shape: Sequence[int], reach: int) -> tuple[slice, ...]:
    """`region` with `reach` voxels more on every side, cut at the volume's faces."""
    return tuple(slice(max(0, part.start - reach), min(size, part.stop + reach)) for part, size in zip(region, shape))
