"""The scanner: where the head lies in it, the grid it samples, and how it corrupts intensities.

Two site profiles make the holdout a real domain shift (the way NACC's scanners differ from ADNI's):
noise level, bias-field strength, intensity scale, contrast, slice thickness and storage
orientation. The head pose is a real rigid motion in world space, so the written affine is an
honest scanner affine and preprocessing has to find the head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from elr_mri.simulate.fields import box_affine, dct_field, rotation_matrix

__all__ = ["SiteProfile", "SITES", "Pose", "draw_pose", "scanner_grid", "corrupt", "MAX_ROTATION_DEG",
           "MAX_TRANSLATION_MM"]

MAX_ROTATION_DEG = 15.0
MAX_TRANSLATION_MM = 15.0
# Centre of the scanner's field of view in MNI mm: the middle of the head, as a technologist aims.
FOV_CENTER_MM = (0.0, -20.0, 8.0)
BIAS_BASIS = 4
INT16_MAX = 32767


@dataclass(frozen=True)
class SiteProfile:
    """One scanner/site. `noise` is the Rician σ relative to white matter; `bias_rms` the RMS of the
    log bias field; `intensity_scale` the mean white-matter value written, varying by `scale_jitter`
    (relative) between scans; `gamma` bends contrast; `voxel_factor` multiplies the requested
    resolution per world axis (x, y, z); `axis_codes` is the stored array orientation."""

    name: str
    noise: float
    bias_rms: float
    intensity_scale: float
    scale_jitter: float
    gamma: float
    voxel_factor: tuple[float, float, float]
    axis_codes: str
    fov_mm: tuple[float, float, float]

    def as_dict(self) -> dict:
        return asdict(self)


SITES: dict[str, SiteProfile] = {
    "adni_sim": SiteProfile("adni_sim", noise=0.02, bias_rms=0.08, intensity_scale=1000.0, scale_jitter=0.10,
                            gamma=1.0, voxel_factor=(1.0, 1.0, 1.0), axis_codes="LPS",
                            fov_mm=(240.0, 256.0, 256.0)),
    "nacc_sim": SiteProfile("nacc_sim", noise=0.035, bias_rms=0.18, intensity_scale=350.0, scale_jitter=0.15,
                            gamma=1.15, voxel_factor=(1.25, 1.0, 1.0), axis_codes="PIR",
                            fov_mm=(240.0, 256.0, 256.0)),
}


@dataclass(frozen=True)
class Pose:
    """Rigid head pose: a point y of the subject's head (MNI mm) sits at x = R·y + t in the scanner,
    R = Rz·Ry·Rx of `rotation_deg` about the MNI origin, t = `translation_mm`."""

    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]

    def record(self) -> dict[str, float]:
        """The pose as truth.csv columns."""
        names = [f"pose_r{a}_deg" for a in "xyz"] + [f"pose_t{a}_mm" for a in "xyz"]
        return dict(zip(names, self.rotation_deg + self.translation_mm))

    @classmethod
    def from_record(cls, record: dict) -> "Pose":
        """The pose of a truth.csv row (any mapping with the `record` keys)."""
        rotation = tuple(float(record[f"pose_r{a}_deg"]) for a in "xyz")
        translation = tuple(float(record[f"pose_t{a}_mm"]) for a in "xyz")
        return cls(rotation, translation)  # type: ignore[arg-type]

    def matrix(self) -> np.ndarray:
        """The 4×4 head-to-scanner transform in world mm."""
        matrix = np.eye(4)
        matrix[:3, :3] = rotation_matrix(self.rotation_deg)
        matrix[:3, 3] = self.translation_mm
        return matrix


def draw_pose(rng: np.random.Generator) -> Pose:
    """A head pose uniform within ±MAX_ROTATION_DEG per axis and ±MAX_TRANSLATION_MM per axis."""
    rotation = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, 3).round(3)
    translation = rng.uniform(-MAX_TRANSLATION_MM, MAX_TRANSLATION_MM, 3).round(3)
    return Pose(tuple(float(v) for v in rotation), tuple(float(v) for v in translation))  # type: ignore[arg-type]


def scanner_grid(profile: SiteProfile, resolution_mm: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The site's acquisition grid (affine, shape) at the requested resolution."""
    voxel = resolution_mm * np.asarray(profile.voxel_factor)
    return box_affine(np.asarray(FOV_CENTER_MM), np.asarray(profile.fov_mm), voxel, profile.axis_codes)


def corrupt(rng: np.random.Generator, clean: np.ndarray, profile: SiteProfile) -> tuple[np.ndarray, float]:
    """What the scanner writes for a clean image (white matter ≈ 1): contrast, a smooth multiplicative
    bias field, intensity scaling and Rician noise, rounded to int16; also the scale it drew."""
    scale = float(profile.intensity_scale * (1.0 + profile.scale_jitter * rng.standard_normal()))
    bias = np.exp(dct_field(rng, clean.shape, BIAS_BASIS, profile.bias_rms))
    signal = np.power(clean, profile.gamma, dtype=np.float32) * bias * scale
    sigma = np.float32(profile.noise * scale)
    real = signal + sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    magnitude = np.sqrt(real * real + imaginary * imaginary)
    return np.clip(np.rint(magnitude), 0, INT16_MAX).astype(np.int16), scale
