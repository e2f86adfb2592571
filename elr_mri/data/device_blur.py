"""The MRI training blur on the batch's device: scipy's Gaussian (truncate 8), one axis at a time.

Why: on a GPU the ×8 model trains faster than CPU workers can blur volumes (`bench/results/mri_loader_gpu_machine.md`).
With `data.mri.blur_on: device` the workers cut each crop with the kernel's reach around it and draw its σ
(`blurred_crop.RandBlurredCropd(defer_blur=True)`), and the batch is blurred here: one σ per volume, the same weights as
scipy's (normalised Gaussian samples), so the result is the loader's blur up to float rounding.
"""

from __future__ import annotations

import torch

from elr_mri.config import DataConfig
from elr_mri.config.schema import BLUR_TRUNCATE, kernel_radius  # torch-free: the config's checks read it too

__all__ = ["BLUR_TRUNCATE", "kernel_radius", "gaussian_kernels", "blur_and_trim", "blurs_on_device"]

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
    drop the context: (N, C, D − 2·reach, H − 2·reach, W − 2·reach), on the blocks' device, in float32.

    A weighted sum of shifted views, one axis at a time, rather than a convolution: cuDNN would run a float32
    convolution in TF32 on recent GPUs (torch's default), 10-bit precision, where this stays in float32.
    """
    volumes = blocks.float()
    if reach == 0:
        return volumes
    weights = gaussian_kernels(sigmas.to(blocks.device), reach).view(-1, 1, 1, 1, 1, 2 * reach + 1)
    for axis in (2, 3, 4):
        length = volumes.shape[axis] - 2 * reach
        summed = volumes.narrow(axis, 0, length) * weights[..., 0]
        for offset in range(1, 2 * reach + 1):
            summed += volumes.narrow(axis, offset, length) * weights[..., offset]
        volumes = summed
    return volumes


def blurs_on_device(data: DataConfig, device: torch.device) -> bool:
    """Whether training blurs on the device: `data.mri.blur_on` (auto: on a GPU) for an augmented MRI run with
    a blur."""
    if data.name != "mri" or not data.augment or data.mri.blur_sigma_max == 0:
        return False
    return data.mri.blur_on == "device" or (data.mri.blur_on == "auto" and device.type == "cuda")
