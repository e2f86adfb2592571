"""The MRI training blur + crop computed on the crop's neighbourhood gives the whole-volume blur's voxels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor
from scipy import ndimage

from elr_mri.data.blurred_crop import RandBlurredCropd
from elr_mri.data.device_blur import BLUR_TRUNCATE, kernel_radius


def whole_volume_blur(volume: torch.Tensor, sigma: float) -> np.ndarray:
    """The official code's augmentation, literally: scipy's Gaussian over every voxel."""
    return ndimage.gaussian_filter(volume.numpy(), sigma=(0.0, sigma, sigma, sigma), truncate=BLUR_TRUNCATE)


@pytest.mark.parametrize(("shape", "sigma_max", "max_shift"), [
    ((1, 30, 34, 28), 1.0, None),   # crops touch every face over the draws: the reflection must match there
    ((1, 30, 34, 28), 1.0, 2),      # inside a window, the margin is real data
    ((1, 16, 20, 16), 3.0, None),   # reach (up to 24) beyond the volume on every side
    ((1, 16, 16, 16), 1.0, 0),      # the volume is the crop
])
def test_equals_blurring_the_whole_volume_then_cropping(shape, sigma_max, max_shift) -> None:
    volume = torch.rand(shape)
    transform = RandBlurredCropd("image", (16, 16, 16), sigma_max, max_shift)
    transform.set_random_state(seed=4)
    starts = set()
    for _ in range(12):
        out = transform({"image": volume})["image"]
        reference = whole_volume_blur(volume, transform.sigma)[(slice(None), *transform.crop_slices)]
        assert out.shape == (1, 16, 16, 16)
        np.testing.assert_allclose(out.numpy(), reference, rtol=0, atol=1e-6)
        starts.add(tuple(part.start for part in transform.crop_slices))
    assert len(starts) > 1 or shape[1:] == (16, 16, 16)


def test_crops_stay_within_max_shift_of_the_centre_and_cover_it() -> None:
    transform = RandBlurredCropd("image", (8, 8, 8), sigma_max=0.0, max_shift=2)
    transform.set_random_state(seed=0)
    volume = torch.rand(1, 20, 20, 20)
    centre = (20 - 8) // 2
    offsets = set()
    for _ in range(60):
        out = transform({"image": volume})["image"]
        corner = tuple(part.start for part in transform.crop_slices)
        assert torch.equal(out, volume[(slice(None), *transform.crop_slices)])  # σ_max 0: a plain crop
        offsets.add(tuple(c - centre for c in corner))
    assert {o[0] for o in offsets} == {-2, -1, 0, 1, 2}


@pytest.mark.parametrize("defer_blur", [False, True])
def test_a_shift_window_larger_than_the_volume_keeps_every_crop_whole(defer_blur: bool) -> None:
    """crop + 2·max_shift beyond the volume on an axis (72 + 24 > 94): MONAI cut that window at its start only,
    and crops past the volume's end came out 70 or 71 voxels long, failing the batch's stack."""
    transform = RandBlurredCropd("image", (12, 12, 12), sigma_max=1.0, max_shift=4, defer_blur=defer_blur)
    transform.set_random_state(seed=0)
    volume = torch.rand(1, 14, 30, 17)  # the window is 20 long: past the first axis and the last one
    reach = 2 * kernel_radius(1.0) if defer_blur else 0
    for _ in range(60):
        out = transform({"image": volume})["image"]
        assert tuple(out.shape[1:]) == (12 + reach,) * 3
        assert all(0 <= part.start and part.stop <= size for part, size in zip(transform.crop_slices, (14, 30, 17)))


def test_sigma_is_uniform_and_the_kernel_keeps_the_mean() -> None:
    transform = RandBlurredCropd("image", (12, 12, 12), sigma_max=1.0)
    transform.set_random_state(seed=1)
    constant = torch.full((1, 14, 14, 14), 0.7)
    sigmas = []
    for _ in range(300):
        out = transform({"image": constant})["image"]
        assert torch.allclose(out, torch.full_like(out, 0.7))  # normalised kernel, reflected edges
        sigmas.append(transform.sigma)
    assert 0.0 <= min(sigmas) and max(sigmas) <= 1.0
    assert abs(np.mean(sigmas) - 0.5) < 0.06 and np.std(sigmas) > 0.25  # U(0, 1): mean 0.5, sd 0.29
    noise = torch.rand(1, 24, 24, 24)
    strong = RandBlurredCropd("image", (16, 16, 16), sigma_max=3.0)
    strong.set_random_state(seed=1)
    assert strong({"image": noise})["image"].std() < noise[:, 4:20, 4:20, 4:20].std()


def test_a_meta_tensor_keeps_the_crops_affine_and_the_cache_is_not_written() -> None:
    volume = MetaTensor(torch.rand(1, 24, 24, 24), affine=torch.eye(4))
    before = volume.clone()
    transform = RandBlurredCropd("image", (16, 16, 16), sigma_max=1.0)
    transform.set_random_state(seed=2)
    out = transform({"image": volume})["image"]
    assert isinstance(out, MetaTensor)
    assert transform.sigma > 0
    corner = [part.start for part in transform.crop_slices]
    assert torch.allclose(out.affine[:3, 3], torch.tensor(corner, dtype=out.affine.dtype))  # voxel → position
    assert torch.equal(volume.as_tensor(), before.as_tensor())  # the cached volume is read, never changed


def test_kernel_radius_is_scipys() -> None:
    for sigma in (0.01, 0.3, 0.5, 1.0, 2.2):
        weights = ndimage.gaussian_filter1d(np.eye(61)[30], sigma, truncate=BLUR_TRUNCATE)
        assert np.count_nonzero(weights) == 2 * kernel_radius(sigma) + 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="sigma_max"):
        RandBlurredCropd("image", (8, 8, 8), sigma_max=-1.0)
    with pytest.raises(ValueError, match="max_shift"):
        RandBlurredCropd("image", (8, 8, 8), sigma_max=1.0, max_shift=-1)
