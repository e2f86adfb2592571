"""Alzheimer's disease as anatomy: regions in MNI millimetres and a smooth deformation per region.

Atrophy is a local deformation, not an intensity change: tissue around a region centre is pulled
in (hippocampi, entorhinal cortex, the whole brain with age) or pushed out (lateral ventricles), so
the volume change is real, its surroundings stretch the way CSF spaces widen, and a Jacobian
analysis of a registration can measure it. nilearn ships no anatomical atlas offline, so the
regions are ellipsoids placed on the MNI152 2009 template by hand (centres checked on its slices;
the ventricles' centre and axis come from the template's CSF voxels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from elr_mri.simulate.fields import apply_affine, crop_grid, grid_points, rotation_matrix

__all__ = ["Region", "REGIONS", "DIAGNOSES", "REFERENCE_AGE", "draw_severity", "region_changes",
           "atrophy_displacement", "region_mask", "region_points", "volume_ratios"]

DIAGNOSES = ("CN", "MCI", "AD")
# Age at which age-related change is zero; older subjects lose tissue, younger ones have more.
REFERENCE_AGE = 70.0
# Disease severity per class (1 = typical AD): mean and spread, so classes overlap as in clinics.
SEVERITY = {"CN": (0.0, 0.10), "MCI": (0.45, 0.18), "AD": (1.0, 0.22)}
# Region-to-region and left/right variation of one subject's atrophy, relative.
REGION_JITTER = 0.15
# Bounds on a region's volume change, which keep every deformation invertible.
CHANGE_BOUNDS = (-0.6, 3.0)


@dataclass(frozen=True)
class Region:
    """An ellipsoid in MNI mm and how its volume changes with disease and with age.

    `ad_change` is the volume change of the whole ellipsoid for a typical AD subject (−0.25 = a quarter
    of its tissue lost, +0.5 = half as large again); `per_year` the change per year of age above
    REFERENCE_AGE.
    `rotation_deg` = (about x, about y, about z) turns the ellipsoid's axes, e.g. the hippocampus's
    long axis rises posteriorly and the ventricles diverge posteriorly.
    """

    name: str
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]
    ad_change: float
    per_year: float

    def normalised_radius2(self, points: np.ndarray) -> np.ndarray:
        """Squared ellipsoidal radius of world points (1 on the region's surface)."""
        to_local = np.eye(4)  # rows: ellipsoid axis / radius
        to_local[:3, :3] = (rotation_matrix(self.rotation_deg) / np.asarray(self.radii)).T
        to_local[:3, 3] = -to_local[:3, :3] @ np.asarray(self.center)
        local = apply_affine(to_local, points)
        return np.einsum("...i,...i->...", local, local)

    def half_extent_mm(self) -> np.ndarray:
        """Half the ellipsoid's size along each world axis (mm), turned as it is."""
        return np.sqrt(((rotation_matrix(self.rotation_deg) * np.asarray(self.radii)) ** 2).sum(axis=1))

    def box_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """World box outside which the region's deformation is negligible (bump below 0.2%)."""
        half = BOX_SIGMAS * BUMP_SIGMA * self.half_extent_mm()
        return np.asarray(self.center) - half, np.asarray(self.center) + half


REGIONS: tuple[Region, ...] = (
    Region("hippocampus_l", (-26.0, -22.0, -13.0), (5.0, 17.0, 6.0), (-30.0, 0.0, 15.0), -0.30, -0.005),
    Region("hippocampus_r", (27.0, -21.0, -13.0), (5.0, 17.0, 6.0), (-30.0, 0.0, -15.0), -0.30, -0.005),
    Region("entorhinal_l", (-24.0, -8.0, -30.0), (5.0, 8.0, 5.0), (0.0, 0.0, 0.0), -0.35, -0.004),
    Region("entorhinal_r", (25.0, -7.0, -30.0), (5.0, 8.0, 5.0), (0.0, 0.0, 0.0), -0.35, -0.004),
    Region("ventricle_l", (-9.0, -7.0, 19.0), (5.0, 22.0, 6.0), (-16.0, 0.0, -16.0), 1.00, 0.030),
    Region("ventricle_r", (9.0, -7.0, 19.0), (5.0, 22.0, 6.0), (-16.0, 0.0, 16.0), 1.00, 0.030),
    Region("brain", (0.0, -18.0, 12.0), (60.0, 80.0, 55.0), (0.0, 0.0, 0.0), -0.04, -0.002),
)
# A region's deformation is a Gaussian bump with widths BUMP_SIGMA × its radii; it changes volume
# most at the centre, and its surroundings (CSF spaces, neighbouring tissue) take up the difference.
BUMP_SIGMA = 1.5
BOX_SIGMAS = 3.5


def draw_severity(rng: np.random.Generator, diagnosis: str) -> float:
    """Disease severity of one subject of a true diagnosis (0 healthy, about 1 typical AD)."""
    mean, spread = SEVERITY[diagnosis]
    return float(abs(rng.normal(mean, spread)) if diagnosis == "CN" else max(rng.normal(mean, spread), 0.0))


def region_changes(rng: np.random.Generator, severity: float, age: float,
                   atrophy_scale: float = 1.0) -> dict[str, float]:
    """Volume change of each region for a subject: disease (jittered per region, times `atrophy_scale`) plus age.

    `atrophy_scale` > 1 makes the disease plainer than in ADNI (for studying how a method's benefit
    depends on how strong the class signal is); it draws the same random numbers for any value.
    """
    changes = {}
    for region in REGIONS:
        disease = atrophy_scale * severity * region.ad_change * (1.0 + REGION_JITTER * rng.standard_normal())
        change = disease + region.per_year * (age - REFERENCE_AGE)
        changes[region.name] = float(np.clip(change, *CHANGE_BOUNDS))
    return changes


def atrophy_displacement(grid_affine: np.ndarray, shape: tuple[int, int, int],
                         changes: dict[str, float]) -> np.ndarray:
    """Backward displacement (3, *shape) in mm on an RAS grid that applies the regional volume changes.

    The subject's image at y samples the template at y + u(y) with u = (k − 1)·w(y)·(y − c), w the
    region's Gaussian bump. In the ellipsoid's normalised coordinates this is a radial map, so the
    ellipsoid's surface moves to the radius r where (1 + (k − 1)·w(r))·r = 1, and the volume changes
    by r³: k follows from r = (1 + change)^(1/3). Displacements of regions add (they are small and
    mostly apart), so overlapping bumps change each other's volumes slightly.
    """
    field = np.zeros((3,) + tuple(shape), np.float32)
    for region in REGIONS:
        radius = (1.0 + changes[region.name]) ** (1.0 / 3.0)
        k_minus_1 = (1.0 / radius - 1.0) / np.exp(-0.5 * radius**2 / BUMP_SIGMA**2)
        slices, sub_affine, sub_shape = crop_grid(grid_affine, shape, *region.box_mm())
        points = grid_points(sub_shape, sub_affine)
        bump = np.exp(-0.5 * region.normalised_radius2(points) / BUMP_SIGMA**2)
        offset = points - np.asarray(region.center, np.float32)
        field[(slice(None),) + slices] += np.moveaxis(np.float32(k_minus_1) * bump[..., None] * offset, -1, 0)
    return field


def region_mask(region: Region, points: np.ndarray) -> np.ndarray:
    """Which world points lie inside the region's ellipsoid (for volumetry on any grid)."""
    return region.normalised_radius2(points) <= 1.0


def region_points(region: Region, spacing_mm: float = 1.0) -> np.ndarray:
    """World points (N, 3) of a lattice filling the region's ellipsoid (for checks of an image on any grid)."""
    low, high = region.center - region.half_extent_mm(), region.center + region.half_extent_mm()
    axes = [np.arange(a, b + spacing_mm, spacing_mm, dtype=np.float32) for a, b in zip(low, high)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return points[region_mask(region, points)]


def volume_ratios(grid_affine: np.ndarray, displacement: np.ndarray) -> dict[str, float]:
    """Subject volume / template volume of every region, measured on the deformation's grid.

    A grid point y belongs to the subject's region when the point it samples, y + u(y), lies in the
    template region; the template volume it stands for is the Jacobian determinant of y ↦ y + u(y).
    The ratio therefore includes head size and natural variability, as a real volumetry would.
    """
    spacing = np.diag(grid_affine)[:3]
    ratios = {}
    for region in REGIONS:
        slices, sub_affine, sub_shape = crop_grid(grid_affine, displacement.shape[1:], *region.box_mm())
        local = displacement[(slice(None),) + slices]
        mapped = grid_points(sub_shape, sub_affine) + np.moveaxis(local, 0, -1)
        inside = region_mask(region, mapped)
        ratios[region.name] = float(inside.sum() / max(_jacobian_determinant(local, spacing)[inside].sum(), 1e-9))
    return ratios


def _jacobian_determinant(displacement: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """det(I + ∂u/∂y) of a displacement (3, *shape) by central differences."""
    j = [[g + (row == column) for column, g in enumerate(np.gradient(displacement[row], *spacing))]
         for row in range(3)]
    return (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1]) - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
            + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))
