"""The MRI training blur on the batch's device gives the loader's blur: same σ, same crop, scipy's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandFlipd
from scipy import ndimage

from elr_mri.config import DataConfig, MRIDataConfig
from elr_mri.data.blurred_crop import RandBlurredCropd
from elr_mri.data.device_blur import BLUR_TRUNCATE, blur_and_trim, blurs_on_device, gaussian_kernels, kernel_radius


@pytest.mark.parametrize("sigma", [0.0, 0.04, 0.3, 0.5, 0.99, 2.2])
def test_kernels_are_scipys_weights(sigma: float) -> None:
    reach = kernel_radius(2.2)
    impulse = np.zeros(2 * reach + 1)
    impulse[reach] = 1.0
    scipy_weights = ndimage.gaussian_filter1d(impulse, sigma, truncate=BLUR_TRUNCATE) if sigma else impulse
    ours = gaussian_kernels(torch.tensor([sigma]), reach)[0].numpy()
    np.testing.assert_allclose(ours, scipy_weights, rtol=0, atol=1e-7)


@pytest.mark.parametrize(("shape", "sigma_max", "max_shift", "flip"), [
    ((1, 30, 34, 28), 1.0, None, True),   # crops at the faces: the reflected context must be the filter's
    ((1, 30, 34, 28), 1.0, 2, False),
    ((1, 16, 20, 16), 3.0, None, True),   # context (24 voxels) longer than the volume: mirrored again
])
def test_blocks_blurred_on_the_device_equal_the_loaders_blur(shape, sigma_max, max_shift, flip) -> None:
    volumes = [torch.rand(shape) for _ in range(3)]

    def pipeline(defer: bool) -> Compose:
        steps = [RandBlurredCropd("image", (16, 16, 16), sigma_max, max_shift, defer_blur=defer)]
        return Compose(steps + ([RandFlipd("image", prob=0.5, spatial_axis=0)] if flip else []))

    in_loader, deferred = pipeline(False), pipeline(True)
    for seed in range(6):
        in_loader.set_random_state(seed=seed)
        deferred.set_random_state(seed=seed)
        expected = torch.stack([in_loader({"image": v})["image"] for v in volumes])
        items = [deferred({"image": v}) for v in volumes]
        reach = kernel_radius(sigma_max)
        blocks = torch.stack([item["image"] for item in items])
        assert blocks.shape[2:] == tuple(16 + 2 * reach for _ in range(3))
        sigmas = torch.tensor([item["blur_sigma"] for item in items], dtype=torch.float64)
        blurred = blur_and_trim(blocks, sigmas, reach)
        np.testing.assert_allclose(blurred.numpy(), expected.numpy(), rtol=0, atol=2e-6)


def test_no_reach_is_no_blur() -> None:
    blocks = torch.rand(2, 1, 8, 8, 8)
    assert torch.equal(blur_and_trim(blocks, torch.zeros(2), reach=0), blocks)


def test_a_reach_of_one_voxel_blurs_and_trims_and_any_float_comes_back_as_float32() -> None:
    """σ = 0.15 has scipy's radius int(8σ + 0.5) = 1: the inner voxels of scipy's blur, whatever its edge mode, one
    voxel of context trimmed from every side; float64 blocks come back in float32 as the docstring says."""
    volume = np.random.default_rng(0).random((5, 6, 7))
    assert kernel_radius(0.15) == 1
    blurred = blur_and_trim(torch.from_numpy(volume)[None, None], torch.tensor([0.15]), reach=1)
    assert blurred.dtype == torch.float32 and blurred.shape == (1, 1, 3, 4, 5)
    expected = ndimage.gaussian_filter(volume, 0.15, truncate=BLUR_TRUNCATE)[1:-1, 1:-1, 1:-1]
    np.testing.assert_allclose(blurred[0, 0].numpy(), expected, rtol=0, atol=1e-6)


def test_where_the_blur_runs() -> None:
    mri = DataConfig(name="mri", mri=MRIDataConfig(manifest="m.csv"))
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert not blurs_on_device(mri, cpu) and blurs_on_device(mri, gpu)  # auto
    mri.mri.blur_on = "device"
    assert blurs_on_device(mri, cpu)
    mri.mri.blur_on = "loader"
    assert not blurs_on_device(mri, gpu)
    mri.mri.blur_on = "device"
    mri.mri.blur_sigma_max = 0.0
    assert not blurs_on_device(mri, cpu)  # nothing to blur
    mri.mri.blur_sigma_max, mri.augment = 1.0, False
    assert not blurs_on_device(mri, cpu)
    assert not blurs_on_device(DataConfig(name="digits"), gpu)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_gpu_blurs_as_the_cpu_does() -> None:
    blocks, sigmas = torch.rand(4, 1, 40, 40, 40), torch.tensor([0.0, 0.3, 0.7, 1.0])
    reach = kernel_radius(1.0)
    on_gpu = blur_and_trim(blocks.cuda(), sigmas.cuda(), reach)
    assert on_gpu.is_cuda and on_gpu.dtype == torch.float32
    torch.testing.assert_close(on_gpu.cpu(), blur_and_trim(blocks, sigmas, reach), rtol=0, atol=2e-6)
