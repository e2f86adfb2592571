"""One subject's scan: anatomy, deformed by head shape and disease, posed in the scanner, acquired.

All coordinate maps compose before any interpolation, so the anatomy is sampled once (cubic) at
the scanner's voxel centres: scanner voxel → world x → head point y = pose⁻¹(x) → template point
y + u(y), with u the subject's backward displacement (natural shape + atrophy).
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from elr_mri.simulate.acquisition import SITES, corrupt, scanner_grid
from elr_mri.simulate.anatomy import Anatomy, natural_displacement
from elr_mri.simulate.cohort import STREAM_IMAGE, SubjectSpec, subject_rng
from elr_mri.simulate.disease import atrophy_displacement, volume_ratios
from elr_mri.simulate.fields import apply_affine, grid_points, sample

__all__ = ["SIMULATOR_VERSION", "SubjectShape", "subject_shape", "sample_subject", "render_scan"]

# Raised whenever a seed draws other scans (here or in the modules this calls), so that a resumed simulate-cohort
# redraws the scans an older version finished; 2: a large head's brain drawn whole (2026-12-06).
SIMULATOR_VERSION = 2


@dataclass(frozen=True)
class SubjectShape:
    """A subject's head as a backward displacement on its anatomy's 2 mm grid, and what it measures."""

    displacement: np.ndarray  # (3, *anatomy.grid_shape), mm
    head_scale: float
    volume_ratios: dict[str, float]
    support: np.ndarray  # anatomy.grid_shape, uint8: where this head may hold tissue


def subject_shape(spec: SubjectSpec, anatomy: Anatomy, seed: int) -> SubjectShape:
    """The subject's head shape; consumes the start of its image stream (see `render_scan`)."""
    return _shape(subject_rng(seed, STREAM_IMAGE, spec.index), spec, anatomy)


def sample_subject(anatomy: Anatomy, shape: SubjectShape, voxel_to_head: np.ndarray,
                   output_shape: tuple[int, int, int]) -> np.ndarray:
    """Clean intensities (white matter ≈ 1) of the subject's head on an output grid, whose voxel
    indices map to head (MNI-space) millimetres by the 4×4 `voxel_to_head`.

    Only voxels that may hold head are interpolated: the support test runs as one affine resampling,
    so the empty part of a scanner's field of view costs almost nothing.
    """
    to_support = np.linalg.inv(anatomy.grid_affine) @ voxel_to_head
    inside = ndimage.affine_transform(shape.support, to_support[:3, :3], to_support[:3, 3],
                                      output_shape=output_shape, order=0, cval=0).astype(bool)
    index = np.nonzero(inside)
    points = apply_affine(voxel_to_head, np.stack(index, axis=-1).astype(np.float32))
    displacement = sample(shape.displacement, anatomy.grid_affine, points, order=1, fill=None)
    values = np.zeros(output_shape, np.float32)
    values[index] = sample(anatomy.coefficients, anatomy.affine, points + displacement, order=3, prefiltered=True)
    return np.clip(values, 0.0, None)


def render_scan(spec: SubjectSpec, anatomy: Anatomy, seed: int, resolution_mm: float,
                posed: bool = True) -> tuple[nib.Nifti1Image, dict[str, float]]:
    """The scan the subject's site writes, and the measured truth (head scale, volume ratios,
    intensity scale). `posed=False` leaves the head at the MNI position, for checks of the pose."""
    rng = subject_rng(seed, STREAM_IMAGE, spec.index)
    shape = _shape(rng, spec, anatomy)
    profile = SITES[spec.cohort]
    affine, grid = scanner_grid(profile, resolution_mm)
    voxel_to_head = np.linalg.inv(spec.pose.matrix()) @ affine if posed else affine
    clean = sample_subject(anatomy, shape, voxel_to_head, grid)
    data, scale = corrupt(rng, clean, profile)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)  # scanner anatomical coordinates
    image.set_sform(affine, code=1)
    truth = {"head_scale": round(shape.head_scale, 5), "intensity_scale": round(scale, 3)}
    truth.update({f"volume_ratio_{name}": round(v, 5) for name, v in shape.volume_ratios.items()})
    return image, truth


def _shape(rng: np.random.Generator, spec: SubjectSpec, anatomy: Anatomy) -> SubjectShape:
    natural, head_scale = natural_displacement(rng, anatomy.grid_affine, anatomy.grid_shape, spec.sex)
    displacement = natural + atrophy_displacement(anatomy.grid_affine, anatomy.grid_shape, spec.changes)
    support = anatomy.support | _deformed_head(anatomy, displacement)
    return SubjectShape(displacement, head_scale, volume_ratios(anatomy.grid_affine, displacement), support)


def _deformed_head(anatomy: Anatomy, displacement: np.ndarray) -> np.ndarray:
    """The subject's head on the anatomy's grid (the points whose template point y + u(y) is head), a grid step wider.

    The anatomy's support alone, the template's head with a fixed margin, cut off the edge of large heads (scale 1.13
    moves the occipital pole 13 mm, and the smooth field adds to it); joined to it, heads it held keep their bytes.
    """
    points = grid_points(anatomy.grid_shape, anatomy.grid_affine) + np.moveaxis(displacement, 0, -1)
    return ndimage.binary_dilation(sample(anatomy.head, anatomy.grid_affine, points, order=0) > 0.5).astype(np.uint8)
