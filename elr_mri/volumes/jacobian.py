"""Regional volumes from a registration: the Jacobian determinant integrated over template regions.

ANTs' forward transforms of a registration to the template map a template point to the scan point
it came from: first the deformable warp φ, then the affine A. At a template point x the scan holds
det(A)·det(Dφ(x)) units of volume per unit of template volume, so a template region's volume in the
scan is that product integrated over the region. The regions are the ellipsoids in MNI millimetres
of `elr_mri.simulate.disease.REGIONS` (hippocampi, entorhinal cortices, lateral ventricles and the
whole brain): nilearn ships no anatomical atlas offline. They assume an MNI-space template.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from elr_mri.simulate.disease import REGIONS, region_mask

if TYPE_CHECKING:  # annotations only: ANTs is imported lazily at run time
    import ants

__all__ = ["ras_points", "region_masks", "affine_determinant", "warp_jacobian", "integrate_regions"]

_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def ras_points(image: ants.ANTsImage) -> np.ndarray:
    """World RAS millimetres of every voxel of an ANTs image, shape (*image.shape, 3)."""
    index = np.indices(image.shape, dtype=np.float64).reshape(3, -1).T
    lps = np.asarray(image.origin) + (index * np.asarray(image.spacing)) @ np.asarray(image.direction).T
    return (lps * _LPS_TO_RAS).reshape(*image.shape, 3)


def region_masks(domain: ants.ANTsImage) -> dict[str, np.ndarray]:
    """Boolean mask of each region on the voxels of `domain` (an ANTs image in template space). A region the grid
    cuts off is refused: its volume, and every `_per_brain` feature with the brain's, would come out small. Both
    places are named: a grid too small and a template outside MNI space (origin at a corner) cut regions off alike."""
    points = ras_points(domain)
    reach = np.asarray(domain.spacing) / 2  # each edge voxel covers half a voxel beyond its centre
    low, high = points.reshape(-1, 3).min(axis=0) - reach, points.reshape(-1, 3).max(axis=0) + reach
    for region in REGIONS:
        centre, half = np.asarray(region.center), region.half_extent_mm()
        if (centre - half < low).any() or (centre + half > high).any():
            raise ValueError(f"the template grid ({'×'.join(map(str, domain.shape))} voxels of "
                             f"{domain.spacing[0]:g} mm, {_span(low, high)}) cuts off the {region.name} region (an "
                             f"ellipsoid in MNI mm, {_span(centre - half, centre + half)}), so its volume would be "
                             "measured small; preprocess on an MNI-space template (the default), with the default "
                             "--shape or a larger one")
    return {region.name: region_mask(region, points) for region in REGIONS}


def _span(low: np.ndarray, high: np.ndarray) -> str:
    """A box in RAS mm, e.g. "RAS x -60..60, y -98..62, z -43..67 mm"."""
    return "RAS " + ", ".join(f"{axis} {a:.0f}..{b:.0f}" for axis, a, b in zip("xyz", low, high)) + " mm"


def affine_determinant(path: str) -> float:
    """|det| of the linear part of an ITK affine file (.mat): scan mm³ per template mm³ (the file maps template
    points to scan points)."""
    import ants

    matrix = np.asarray(ants.read_transform(path).parameters[:9], dtype=np.float64).reshape(3, 3)
    return float(abs(np.linalg.det(matrix)))


def warp_jacobian(domain: ants.ANTsImage, warp_path: str) -> np.ndarray:
    """det(Dφ) of a displacement-field file on the voxels of `domain`."""
    import ants

    return ants.create_jacobian_determinant_image(domain, warp_path, do_log=False, geom=False).numpy()


def integrate_regions(jacobian: np.ndarray, masks: dict[str, np.ndarray], voxel_mm3: float,
                      affine_det: float = 1.0) -> dict[str, dict[str, float]]:
    """Per region: its volume in the scan (mm³) and that volume over the template's (the ratio)."""
    volumes = {}
    for name, mask in masks.items():
        template_mm3 = float(mask.sum()) * voxel_mm3
        scan_mm3 = affine_det * float(jacobian[mask].sum()) * voxel_mm3
        volumes[name] = {"mm3": scan_mm3, "ratio": scan_mm3 / template_mm3 if template_mm3 else float("nan")}
    return volumes
