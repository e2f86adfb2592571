"""Real anatomy to start from, and the per-subject shape variability that makes heads differ.

The MNI152 2009 template ships inside nilearn's wheel, so a user with only the repository can
simulate; Colin27 (a real single-subject head; the copy in ../shared/data beside a checkout is skull-stripped,
although its README says skull on) is used where that folder has it; an installed package has no such folder.
Both are in MNI space, which is what lets disease regions be given in MNI millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from elr_mri.simulate.disease import REGIONS, region_points
from elr_mri.simulate.fields import dct_field, grid_points, sample
from elr_mri.shipped import checkout_root
from preprocess.checks import ScanError, load_option_file

__all__ = ["Anatomy", "ANATOMIES", "load_anatomy", "natural_displacement", "DEFORMATION_SPACING_MM"]

_CHECKOUT = checkout_root()
# the development data's copy beside a checkout; None where the package is installed (no folder beside it to look in)
COLIN27 = _CHECKOUT.parent / "shared" / "data" / "mri" / "colin27_ch2_t1.nii.gz" if _CHECKOUT else None
ANATOMIES = ("mni152", "colin27")
_ANATOMY_FIX = "pass a 3D T1 NIfTI in MNI space, or --anatomy mni152 (the template nilearn ships)"
# Displacement fields are smooth, so one 2 mm grid serves every output resolution.
DEFORMATION_SPACING_MM = 2.0
# Natural variability: RMS displacement of the random smooth field, and the head-size spread.
NATURAL_RMS_MM = 2.0
NATURAL_BASIS = 5
HEAD_SCALE_SD = 0.03
HEAD_SCALE_SEX = {"M": 1.02, "F": 0.98}
# Voxels above this (white matter = 1) are head; the support adds a margin that holds most heads' displacement
# (render.py joins each head's own to it, for the large heads it does not hold).
HEAD_THRESHOLD = 0.01
SUPPORT_MARGIN_MM = 16.0
# Share of each disease region that must be head: less, and the file is not in MNI space, so that region's atrophy
# would deform air (MNI152 and Colin27: 98-99% of the whole-brain ellipsoid, all of every other region).
MIN_REGION_IN_HEAD = 0.9


@dataclass(frozen=True)
class Anatomy:
    """A T1 head in MNI space: intensities scaled so white matter is about 1, plus cubic-spline
    coefficients so each subject samples it once with cubic interpolation. Subjects' displacement
    fields live on its 2 mm `grid_affine`/`grid_shape`; `head` marks the template's head there, and `support`
    where most subjects' heads may be after deformation, so the scanner grid's empty air is never interpolated."""

    name: str
    affine: np.ndarray
    data: np.ndarray
    coefficients: np.ndarray
    grid_affine: np.ndarray
    grid_shape: tuple[int, int, int]
    head: np.ndarray
    support: np.ndarray


@lru_cache(maxsize=4)
def load_anatomy(name: str, resolution_mm: float) -> Anatomy:
    """The anatomy `name` ("mni152", "colin27" or a NIfTI path in MNI space), blurred so that
    sampling it at `resolution_mm` does not alias; cached per process."""
    image = _load_image(name, resolution_mm)
    data = np.asarray(image.get_fdata(dtype=np.float32))
    source_mm = float(np.abs(image.header.get_zooms()[:3]).max())
    extra_fwhm = np.sqrt(max(resolution_mm**2 - source_mm**2, 0.0))
    if extra_fwhm > 0:
        data = ndimage.gaussian_filter(data, sigma=extra_fwhm / 2.355 / source_mm)
    foreground = data[data > 0.1 * data.max()]
    data = np.clip(data / np.percentile(foreground, 99), 0.0, None).astype(np.float32)
    _check_regions_in_head(name, data, image.affine)
    coefficients = ndimage.spline_filter(data, order=3, output=np.float32)
    grid_affine, grid_shape = _deformation_grid(image.affine, data.shape)
    head = sample(data, image.affine, grid_points(grid_shape, grid_affine)) > HEAD_THRESHOLD
    margin = int(np.ceil(SUPPORT_MARGIN_MM / DEFORMATION_SPACING_MM))
    support = ndimage.binary_dilation(head, iterations=margin).astype(np.uint8)
    return Anatomy(name=Path(name).name if name not in ANATOMIES else name, affine=image.affine.copy(),
                   data=data, coefficients=coefficients, grid_affine=grid_affine, grid_shape=grid_shape,
                   head=head.astype(np.uint8), support=support)


def _check_regions_in_head(name: str, data: np.ndarray, affine: np.ndarray) -> None:
    """Refuse an anatomy whose head is not where the disease regions are (MNI mm), before any scan is drawn: with
    its origin at a corner voxel (as converters write a scan) numpy failed naming nothing, and a head a few cm off
    was simulated with atrophy of regions lying partly in air, which truth.csv would still report."""
    for region in REGIONS:
        inside = float(np.mean(sample(data, affine, region_points(region)) > HEAD_THRESHOLD))
        if inside < MIN_REGION_IN_HEAD:
            raise ScanError(f"--anatomy {name}", f"only {inside:.0%} of the region {region.name} (around MNI "
                            f"{region.center} mm) lies in its head, so it is not in MNI space (an origin at a corner "
                            "voxel, or a scan not registered to MNI)",
                            "register it to the MNI152 template first, or use --anatomy mni152")


def _deformation_grid(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The RAS grid (affine, shape) at DEFORMATION_SPACING_MM covering an image's field of view."""
    corners = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)], float) @ affine.T
    low, high = corners[:, :3].min(0), corners[:, :3].max(0)
    shape = tuple(int(n) for n in np.ceil((high - low) / DEFORMATION_SPACING_MM) + 1)
    affine = np.diag([DEFORMATION_SPACING_MM] * 3 + [1.0])
    affine[:3, 3] = low
    return affine, shape  # type: ignore[return-value]


def natural_displacement(rng: np.random.Generator, grid_affine: np.ndarray, shape: tuple[int, int, int],
                         sex: str) -> tuple[np.ndarray, float]:
    """Backward displacement (3, *shape) in mm for one subject's head shape, and its head scale.

    A smooth random field (NATURAL_RMS_MM per component) bends the anatomy the way two healthy brains
    differ; an isotropic scale about the MNI origin (men slightly larger) sets head size, which a
    volumetric analysis must normalise away, as with real intracranial volume.
    """
    scale = float(HEAD_SCALE_SEX[sex] + HEAD_SCALE_SD * rng.standard_normal())
    field = np.stack([dct_field(rng, shape, NATURAL_BASIS, NATURAL_RMS_MM) for _ in range(3)])
    for axis in range(3):  # the grid is axis-aligned RAS: coordinate `axis` varies along array axis `axis`
        coordinate = grid_affine[axis, axis] * np.arange(shape[axis]) + grid_affine[axis, 3]
        field[axis] += np.float32(1.0 / scale - 1.0) * np.expand_dims(coordinate, [a for a in range(3) if a != axis])
    return field, scale


def _load_image(name: str, resolution_mm: float) -> nib.Nifti1Image:
    if name == "mni152":
        from nilearn.datasets import load_mni152_template

        return load_mni152_template(resolution=2 if resolution_mm >= 2 else 1)
    if name != "colin27":
        return load_option_file(name, "--anatomy", _ANATOMY_FIX)
    if COLIN27 is None or not COLIN27.exists():
        raise FileNotFoundError(f"anatomy 'colin27': {_colin27_absence()}; Colin27 does not ship with elr-mri "
                                "(ANTsPy's ants.get_ants_data('ch2') downloads it): pass its path to --anatomy, "
                                "or use --anatomy mni152")
    return load_option_file(COLIN27, "--anatomy", _ANATOMY_FIX)


def _colin27_absence() -> str:
    """Where `colin27` was looked for: beside the checkout, or nowhere, for an installed package."""
    if COLIN27 is None:
        return "it names the copy in ../shared/data/mri beside a checkout of elr-mri, and this one is installed"
    return f"no file at {COLIN27}"
