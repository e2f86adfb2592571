"""The image operations of one scan: conversion, N4, registration, resampling, normalisation.

Both profiles first cap outlying intensities (`cap_outliers`). `reference` is then what Clinica's t1-linear does
(ANTsPy's default N4, `antsRegistrationSyNQuick[a]` to the 1 mm template); `fast`, the default, keeps the same
rigid + affine stages but runs N4 on a 6x shrunken image with fewer fitting levels, inside a head
mask (without one, the zero background dominates the fit and a skull-stripped scan keeps its bias),
and registers to the 2 mm template, where the pyramid's finest level costs most for little gain.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: ANTs and nibabel are imported lazily at run time
    import ants
    import nibabel as nib

__all__ = ["PROFILES", "TRANSFORMS", "NORMALISATIONS", "DTYPES", "OUTLIER_FACTOR", "MNI152_CODE", "REGISTRATION_SEED",
           "MAX_SEED", "ants_unsafe", "to_ants", "to_nifti", "non_negative", "cap_outliers", "n4", "register",
           "resample_to_grid", "normalise"]

# N4 settings and the fixed image used for registration, per profile.
PROFILES: dict[str, dict] = {
    "fast": {"n4": {"shrink_factor": 6, "convergence": {"iters": [50, 50, 30], "tol": 1e-7}},
             "n4_head_mask": True, "fixed": "coarse"},
    "reference": {"n4": {}, "n4_head_mask": False, "fixed": "full"},
}
# ANTsPy's names for the user's choice; passed explicitly since ANTsPy ignores misspelled kwargs.
TRANSFORMS: dict[str, str] = {"affine": "antsRegistrationSyNQuick[a]", "syn": "antsRegistrationSyNQuick[s]"}
NORMALISATIONS = ("none", "minmax", "zscore")
DTYPES = ("float32", "int16")
_LPS = np.diag([-1.0, -1.0, 1.0])
# intensities above this multiple of a scan's 99.5th percentile (non-zero voxels) are outliers, not tissue
OUTLIER_FACTOR = 3.0
MNI152_CODE = 4  # NIfTI-1's qform/sform code for coordinates in MNI152 space, nilearn's template's
# antsRegistration and antsApplyTransforms take file names inside `[name,...]` options, so a path holding one of these
# is split or cut there (measured: "," failed the registration, "[" and "]" the resampling, with "error code 1")
_ANTS_PATH_BREAKERS = ",[]"
# antsRegistration seeds the random sampling of its linear stages from the clock unless given a seed: one scan
# registered twice on one ITK thread moved by up to 0.2 mm. The default of `--seed` (Params.seed).
REGISTRATION_SEED = 123
MAX_SEED = 2**31 - 1  # antsRegistration reads its seed as a C int


def ants_unsafe(path: str) -> str:
    """The characters of `path` that ANTs cannot take in a file name, quoted for a message ('' for none): the
    registration writes its transforms into the scan's output folder, whose path must be free of them."""
    return " ".join(repr(character) for character in _ANTS_PATH_BREAKERS if character in path)


def to_ants(img: nib.Nifti1Image) -> ants.ANTsImage:
    """nibabel image (RAS affine) -> ANTs image (LPS origin/spacing/direction), float32."""
    import ants

    linear = _LPS @ img.affine[:3, :3]
    spacing = np.sqrt((linear ** 2).sum(axis=0))
    return ants.from_numpy(np.asarray(img.dataobj, dtype=np.float32), origin=(_LPS @ img.affine[:3, 3]).tolist(),
                           spacing=spacing.tolist(), direction=linear / spacing)


def to_nifti(image: ants.ANTsImage, dtype: str = "float32", space_code: int = MNI152_CODE) -> nib.Nifti1Image:
    """ANTs image -> nibabel image with the equivalent RAS affine, stored as `dtype`, its qform and sform coded
    `space_code` (NIfTI's name for the space its coordinates are in: `template.space_code`).

    NIfTI-1 has no float16; `int16` is its half-size option: scaled integers and a scl_slope that every reader
    applies, so the values come back as floats. The scaling has no intercept, so 0 (a masked background) comes
    back as exactly 0, which an intercept chosen for the value range (nibabel's own choice) need not give."""
    import nibabel as nib

    affine = np.eye(4)
    affine[:3, :3] = _LPS @ (np.asarray(image.direction) * np.asarray(image.spacing))
    affine[:3, 3] = _LPS @ np.asarray(image.origin)
    data = image.numpy().astype(np.float32)
    if dtype == "int16":
        slope = float(np.abs(data).max()) / np.iinfo(np.int16).max or 1.0
        out = nib.Nifti1Image(np.round(data / slope).astype(np.int16), affine)
        out.header.set_slope_inter(slope, 0.0)
    else:
        out = nib.Nifti1Image(data, affine)
        out.set_data_dtype(dtype)
    out.header.set_xyzt_units("mm")
    out.set_qform(affine, code=space_code)
    out.set_sform(affine, code=space_code)
    return out


def non_negative(image: ants.ANTsImage) -> ants.ANTsImage:
    """`image` shifted so that its darkest voxel is 0, when some are negative (a scan stored with an offset).

    Why: N4 fits the bias in log intensities, and the resampling fills the grid beyond the scan with 0,
    which after such a scan's negative background would come out as the brightest part of the output.
    A magnitude image has no negative values, so the shift changes no contrast."""
    lowest = float(image.min())
    return image - lowest if lowest < 0 else image


def cap_outliers(image: ants.ANTsImage, factor: float = OUTLIER_FACTOR, quantile: float = 0.995) -> ants.ANTsImage:
    """`image` with intensities above `factor` × its non-zero voxels' 99.5th percentile lowered to that value.

    Why: one out-of-range voxel (a scanner spike, a corrupt value) otherwise stretches N4's intensity histogram
    and dominates the registration's mutual information; a single 1e7 voxel sent a head 55 mm off. Tissue stays
    well below the cap (the brightest voxel of Colin27 and of the MNI152 template is 1.1× that percentile), so a
    clean scan passes unchanged and the bias fit sees all of it; a clip at the percentile itself (ANTs' script
    winsorises its metric's inputs at 0.5%/99.5%) would flatten the brightest, most biased tissue before N4.
    Non-zero voxels: a scan that is mostly zero padding keeps its head."""
    data = image.numpy()
    tissue = data[data > 0]
    if tissue.size == 0:
        return image
    ceiling = factor * float(np.quantile(tissue, quantile))
    if data.max() <= ceiling:
        return image
    return image.new_image_like(np.minimum(data, ceiling).astype(np.float32))


def n4(image: ants.ANTsImage, profile: str) -> ants.ANTsImage:
    """Bias-field corrected copy of `image`; N4 fits a smooth field, so a shrunken image suffices."""
    import ants

    mask = ants.get_mask(image) if PROFILES[profile]["n4_head_mask"] else None
    return ants.n4_bias_field_correction(image, mask=mask, **PROFILES[profile]["n4"])


def register(fixed: ants.ANTsImage, moving: ants.ANTsImage, transform: str, deterministic: bool,
             outprefix: str, seed: int = REGISTRATION_SEED) -> list[str]:
    """Register `moving` to `fixed`; return the forward transform files (template -> scan).

    Deterministic mode takes ANTs' "Repro" variant of the same stages (GC metric, fixed seed), the only kind ANTsPy's
    deterministic mode means to allow (antspyx 0.6.3 checks a copy of its flag taken at import, so refuses none after
    `set_ants_deterministic`: the choice is made here). Either way the sampling is seeded with `seed` (through
    `ANTS_RANDOM_SEED`, which antsRegistration reads; deterministic mode's `--random-seed` is the same seed), so a rerun
    on one ITK thread gives the same transform; the default stages' MI metric still sums in another order on several
    threads."""
    import ants

    os.environ["ANTS_RANDOM_SEED"] = str(seed)
    kind = TRANSFORMS[transform]
    if deterministic:
        kind = kind.replace("Quick", "QuickRepro")
    result = ants.registration(fixed=fixed, moving=moving, type_of_transform=kind, outprefix=outprefix)
    return list(result["fwdtransforms"])


def resample_to_grid(grid: ants.ANTsImage, moving: ants.ANTsImage, transforms: list[str]) -> ants.ANTsImage:
    """One interpolation from the scan onto the output grid through all transforms."""
    import ants

    return ants.apply_transforms(fixed=grid, moving=moving, transformlist=transforms, interpolator="linear")


def normalise(image: ants.ANTsImage, mask: ants.ANTsImage, method: str,
              clip: tuple[float, float] = (0.5, 99.5)) -> ants.ANTsImage:
    """Intensity normalisation: `minmax` clips to percentiles then maps to [0, 1]; `zscore` uses
    the brain mask's mean and standard deviation; `none` leaves the N4 output as it is."""
    data = image.numpy()
    if method == "minmax":
        low, high = np.percentile(data[data > 0] if (data > 0).any() else data, clip)
        data = (np.clip(data, low, high) - low) / max(high - low, 1e-6)
    elif method == "zscore":
        inside = data[mask.numpy() > 0]
        data = (data - inside.mean()) / max(float(inside.std()), 1e-6)
    elif method != "none":
        raise ValueError(f"normalisation {method!r} unknown; choose one of {NORMALISATIONS}")
    return image.new_image_like(data.astype(np.float32))
