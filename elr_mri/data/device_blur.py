"""The MRI training blur on the batch's device: scipy's Gaussian (truncate 8) as separable grouped convolutions.

Why: on a GPU the ×8 model trains faster than CPU workers can blur volumes (`bench/results/mri_loader_gpu_machine.md`).
With `data.mri.blur_on: device` the workers cut each crop with the kernel's reach around it and draw its σ
(`blurred_crop.RandBlurredCropd(defer_blur=True)`), and the batch is blurred here: one σ per volume, the same weights as
scipy's (normalised Gaussian samples), so the result is the loader's blur up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from elr_mri.config import DataConfig

__all__ = ["BLUR_TRUNCATE", "kernel_radius", "gaussian_kernels", "blur_and_trim", "blurs_on_device"]

BLUR_TRUNCATE = 8.0  # the official code's truncate: the kernel reaches 8σ


def kernel_radius(sigma: float) -> int:
    """Voxels scipy's Gaussian reaches on each side at `sigma` (its own rounding of truncate·σ)."""
    return int(BLUR_TRUNCATE * sigma + 0.5)


def gaussian_kernels(sigmas: torch.Tensor, reach: int) -> torch.Tensor:
    """One normalised Gaussian per σ over offsets −reach..reach; σ = 0 gives the identity. Not cut at scipy's
    radius int(8σ + 0.5): the weights beyond it are below e⁻³², nothing in float32. Built in float64 as scipy
    builds its weights, returned in float32."""
    offsets = torch.arange(-reach, reach + 1, device=sigmas.device, dtype=torch.float64)
    sigmas = sigmas.to(torch.float64).unsqueeze(1)
    weights = torch.exp(-0.5 * (offsets / sigmas.clamp_min(1e-12)) ** 2)
    return (weights / weights.sum(dim=1, keepdim=True)).to(torch.float32)


def blur_and_trim(blocks: torch.Tensor, sigmas: torch.Tensor, reach: int) -> torch.Tensor:
    """Blur each volume of `blocks` (N, C, D, H, W; `reach` voxels of context on every side) with its own σ and
    drop the context: (N, C, D − 2·reach, H − 2·reach, W − 2·reach), on the blocks' device, in float32."""
    if reach == 0:
        return blocks.float()
    batch, channels = blocks.shape[:2]
    kernels = gaussian_kernels(sigmas.to(blocks.device), reach).repeat_interleave(channels, dim=0)
    volumes = blocks.float().reshape(1, batch * channels, *blocks.shape[2:])
    size = 2 * reach + 1
    for axis in range(3):  # one axis at a time, each volume with its own kernel (groups)
        shape = [1, 1, 1]
        shape[axis] = size
        volumes = F.conv3d(volumes, kernels.view(batch * channels, 1, *shape), groups=batch * channels)
    return volumes.reshape(batch, channels, *volumes.shape[2:])


def blurs_on_device(data: DataConfig, device: torch.device) -> bool:
    """Whether training blurs on the device: `data.mri.blur_on` (auto: on a GPU) for an augmented MRI run with
    a blur."""
    if data.name != "mri" or not data.augment or data.mri.blur_sigma_max == 0:
        return False
    return data.mri.blur_on == "device" or (data.mri.blur_on == "auto" and device.type == "cuda")
