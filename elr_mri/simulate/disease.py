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

__all__ = ["Region", "REGIONS", "DIAGNOSES", "REFERENCE_AGE", "draw_severity", "region_changes",
           "atrophy_displacement", "region_mask", "volume_ratios"]

DIAGNOSES = ("CN", "MCI", "AD")
# Age at which age-related change is zero; older subjects lose tissue, younger ones have more.
REFERENCE_AGE = 70.0
# Disease severity per class (1 = typical AD): mean and spread, so classes overlap as in clinics.
SEVERITY = {"CN": (0.0, 0.10), "MCI": (0.45, 0.18), "AD": (1.0, 0.22)}
# Region-to-region and left/right variation of one subject's atrophy, relative.
REGION_JITTER = 0.15
# Bounds on a region's volume change at its centre, which keep every deformation invertible.
CHANGE_BOUNDS = (-0.6, 1.5)


@dataclass(frozen=True)
class Region:
    """An ellipsoid in MNI mm and how its volume changes with disease and with age.

    `ad_change` is the volume change at the region centre for a typical AD subject (−0.3 = 30% tissue
    loss, +0.6 = 60% larger); `per_year` the change per year of age above REFERENCE_AGE.
    `rotation_deg` = (about x, about y, about z) turns the ellipsoid's axes, e.g. the hippocampus's
    long axis rises posteriorly and the ventricles diverge posteriorly.
    """

    name: str
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]
    ad_change: float
    per_year: float

    def rotation(self) -> np.ndarray:
        """Matrix whose columns are the ellipsoid's axes in MNI space."""
        ax, ay, az = np.deg2rad(self.rotation_deg)
        rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
        ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
        rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
        return rz @ ry @ rx

    def normalised_radius2(self, points: np.ndarray) -> np.ndarray:
        """Squared ellipsoidal radius of world points (1 on the region's surface)."""
        local = (points - np.asarray(self.center, np.float32)) @ self.rotation().astype(np.float32)
        return np.sum((local / np.asarray(self.radii, np.float32)) ** 2, axis=-1)


REGIONS: tuple[Region, ...] = (
    Region("hippocampus_l", (-26.0, -22.0, -13.0), (5.0, 17.0, 6.0), (-30.0, 0.0, 15.0), -0.30, -0.006),
    Region("hippocampus_r", (27.0, -21.0, -13.0), (5.0, 17.0, 6.0), (-30.0, 0.0, -15.0), -0.30, -0.006),
    Region("entorhinal_l", (-24.0, -8.0, -30.0), (5.0, 8.0, 5.0), (0.0, 0.0, 0.0), -0.35, -0.005),
    Region("entorhinal_r", (25.0, -7.0, -30.0), (5.0, 8.0, 5.0), (0.0, 0.0, 0.0), -0.35, -0.005),
    Region("ventricle_l", (-12.7, -12.5, 15.5), (6.0, 32.0, 9.0), (0.0, 0.0, -16.6), 0.60, 0.020),
    Region("ventricle_r", (12.7, -12.5, 15.5), (6.0, 32.0, 9.0), (0.0, 0.0, 16.6), 0.60, 0.020),
    Region("brain", (0.0, -18.0, 12.0), (60.0, 80.0, 55.0), (0.0, 0.0, 0.0), -0.05, -0.003),
)
# The deformation of a region is a Gaussian bump whose widths are this fraction of its radii:
# the volume change is concentrated inside the ellipsoid and fades out over about twice its size.
BUMP_SIGMA = 0.6


def draw_severity(rng: np.random.Generator, diagnosis: str) -> float:
    """Disease severity of one subject of a true diagnosis (0 healthy, about 1 typical AD)."""
    mean, spread = SEVERITY[diagnosis]
    return float(abs(rng.normal(mean, spread)) if diagnosis == "CN" else max(rng.normal(mean, spread), 0.0))


def region_changes(rng: np.random.Generator, severity: float, age: float) -> dict[str, float]:
    """Volume change at each region's centre for a subject: disease (jittered per region) plus age."""
    changes = {}
    for region in REGIONS:
        disease = severity * region.ad_change * (1.0 + REGION_JITTER * rng.standard_normal())
        change = disease + region.per_year * (age - REFERENCE_AGE)
        changes[region.name] = float(np.clip(change, *CHANGE_BOUNDS))
    return changes


def atrophy_displacement(points: np.ndarray, changes: dict[str, float]) -> np.ndarray:
    """Backward displacement (3, *points.shape[:-1]) in mm that applies the regional volume changes.

    The subject's image at y samples the template at y + u(y) with u = (k − 1)·w(y)·(y − c): near a
    centre c the template is scaled by k about c, so volume there changes by 1/k³ = 1 + change; w is
    the region's Gaussian bump. Displacements of regions add (they are small and mostly apart).
    """
    field = np.zeros((3,) + points.shape[:-1], np.float32)
    for region in REGIONS:
        k = (1.0 + changes[region.name]) ** (-1.0 / 3.0)
        bump = np.exp(-0.5 * region.normalised_radius2(points) / BUMP_SIGMA**2)
        offset = points - np.asarray(region.center, np.float32)
        field += np.moveaxis((k - 1.0) * bump[..., None] * offset, -1, 0)
    return field


def region_mask(region: Region, points: np.ndarray) -> np.ndarray:
    """Which world points lie inside the region's ellipsoid (for volumetry on any grid)."""
    return region.normalised_radius2(points) <= 1.0


def volume_ratios(points: np.ndarray, displacement: np.ndarray, spacing_mm: float) -> dict[str, float]:
    """Subject volume / template volume of every region, measured on the deformation grid.

    A grid point y belongs to the subject's region when the point it samples, y + u(y), lies in the
    template region; the template volume it stands for is the Jacobian determinant of y ↦ y + u(y).
    The ratio therefore includes head size and natural variability, as a real volumetry would.
    """
    mapped = points + np.moveaxis(displacement, 0, -1)
    gradients = [np.gradient(displacement[c], spacing_mm) for c in range(3)]
    jacobian = np.empty(points.shape[:-1] + (3, 3), np.float32)
    for row in range(3):
        for column in range(3):
            jacobian[..., row, column] = gradients[row][column] + (row == column)
    determinant = np.linalg.det(jacobian)
    ratios = {}
    for region in REGIONS:
        inside = region_mask(region, mapped)
        ratios[region.name] = float(inside.sum() / max(determinant[inside].sum(), 1e-9))
    return ratios
