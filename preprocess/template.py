"""The template a batch registers to, and the output grid it writes on.

Loaded once per worker process: the template (the MNI152 2009 T1 that nilearn ships inside its
wheel, or any NIfTI the user passes), its brain mask, a coarser copy for the registration and the
output grid (a centred crop at the chosen resolution). Everything is an ANTs image in LPS space.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .checks import ScanError, load_option_file, load_scan
from .sidecar import file_sha256, scan_files, scan_sha256, voxels_sha256
from .steps import MNI152_CODE, to_ants

if TYPE_CHECKING:  # annotations only: ANTs is imported lazily at run time
    import ants
    import nibabel as nib

__all__ = ["DEFAULT_SHAPES", "Template", "check_template_files", "load_template", "space_code",
           "template_file_digests"]

# Published input grids: Clinica t1-linear's 1 mm crop, and the ML4H paper's 1.5 mm input.
DEFAULT_SHAPES: dict[float, tuple[int, int, int]] = {1.0: (169, 208, 179), 1.5: (121, 145, 121)}
# Voxel size (mm) of the fast profile's fixed image: a rigid + affine fit needs no finer grid, and
# 2 mm has 8x fewer voxels to compare than 1 mm.
REGISTRATION_MM = 2.0


@dataclass(frozen=True)
class Template:
    """Template images prepared for one (template, mask, resolution, shape) setting."""

    name: str
    sha256: str
    full: ants.ANTsImage  # at the template's own resolution
    coarse: ants.ANTsImage  # the template resampled to REGISTRATION_MM, the fast profile's fixed image
    grid: ants.ANTsImage  # the template resampled onto the output grid (QC reference)
    mask: ants.ANTsImage  # binary brain mask on the output grid


def check_template_files(path: str | None, mask_path: str | None) -> None:
    """Read --template and --template-mask once, before any scan: every worker loads them, so a bad one
    would otherwise fail each scan of the batch with the same error."""
    if mask_path is not None and path is None:
        raise ValueError(f"--template-mask {mask_path}: needs --template (the default MNI152 template brings its "
                         "own brain mask); add --template or leave --template-mask out")
    if path is None:
        return
    template = load_option_file(path, "--template", "pass a 3D T1 template NIfTI, or leave --template out for MNI152")
    if mask_path is not None:
        fix = ("pass the template's 3D brain mask NIfTI, or leave it out for a mask of --template's voxels above its "
               "mean intensity (ANTs' get_mask)")
        _require_mask_on(template, load_option_file(mask_path, "--template-mask", fix), f"--template-mask {mask_path}",
                         fix)


def _require_mask_on(template: nib.Nifti1Image, mask: nib.Nifti1Image, name: str, fix: str) -> None:
    """A brain mask with no voxel of at least 0.5 (the threshold it is read with), or none within the template's field
    of view (a mask of another template or origin), would be empty on the output grid: each worker then failed every
    scan with ITK's "Lower threshold cannot be greater than upper threshold"."""
    brain = np.argwhere(np.asarray(mask.dataobj) >= 0.5)
    if brain.size == 0:
        raise ScanError(name, f"has no voxel of at least 0.5 (values {float(np.min(mask.dataobj)):g} to "
                        f"{float(np.max(mask.dataobj)):g}), so it marks no brain", fix)
    to_template_voxels = np.linalg.inv(template.affine) @ mask.affine
    inside = np.rint(brain @ to_template_voxels[:3, :3].T + to_template_voxels[:3, 3])
    if not ((inside >= 0) & (inside < np.asarray(template.shape)[:3])).all(axis=1).any():
        raise ScanError(name, "marks no voxel within --template's field of view (a mask of another template, or "
                        "saved with another origin?)", fix)


def template_file_digests(path: str | None, mask_path: str | None) -> dict[str, str]:
    """SHA-256 of the --template ("sha256") and --template-mask ("mask_sha256") files, and of the images they hold
    ("content_sha256", "mask_content_sha256": `_image_sha256`), as sidecars record them, so that a rerun redoes scans
    when a file under the same name now holds another image; for nilearn's packaged template (`path` None) its
    file's, which another nilearn may replace (its mask is made from it). Templates are told apart by content
    (`sidecar.same_template`): one re-saved (nibabel, another compression, .nii for .nii.gz) is the same."""
    if path is None:
        from nilearn.datasets import MNI152_FILE_PATH

        path = str(MNI152_FILE_PATH)
    digests = {"sha256": _cached_sha256(path, _stamp(path)), "content_sha256": _image_sha256(path, _stamp(path))}
    if mask_path is not None:
        digests["mask_sha256"] = _cached_sha256(mask_path, _stamp(mask_path))
        digests["mask_content_sha256"] = _image_sha256(mask_path, _stamp(mask_path))
    return digests


@functools.lru_cache(maxsize=8)
def _image_sha256(path: str, stamp: tuple[tuple[int, int], ...]) -> str:
    """SHA-256 of what of the image at `path` the outputs depend on: its voxels as read (float32, RAS), its affine (to
    0.1 µm: float32 and float64 headers of one grid agree) and its space code (`space_code`, copied into outputs).
    Once per image version and process."""
    image = load_scan(path)
    affine = np.round(np.asarray(image.affine, dtype=np.float64), 4) + 0.0  # + 0.0: -0.0 hashes as 0.0
    text = f"{voxels_sha256(image)} {affine.tolist()} {_cached_space_code(path, stamp)}"
    return hashlib.sha256(text.encode()).hexdigest()


# NIfTI-1's qform/sform codes of the standard spaces: Talairach, MNI152, and any other template ("normalized
# coordinates for any general standard template space", NIFTI_XFORM_TEMPLATE_OTHER, in nifti1.h since 2019)
_TEMPLATE_OTHER_CODE = 5
_STANDARD_SPACE_CODES = (3, MNI152_CODE, _TEMPLATE_OTHER_CODE)


def space_code(path: str | None) -> int:
    """The qform/sform code of the outputs registered to the template at `path`: MNI152's for nilearn's (None); for a
    --template, the standard space its own header names (the code of the affine nibabel reads: sform's, else qform's),
    else "another template" (5). Outputs were coded MNI152 whatever the template, which software reading the code
    (AFNI's view and space) and the saliency maps copying it took at its word. Not "aligned to another file"
    (2): nibabel's maintainers note 2 stood in for a template space only until 5 existed, and AFNI now reads 2 as a
    subject's own (orig) space. nibabel calls 5 'template'; ANTs and nibabel read a file coded 5 as any other."""
    if path is None:
        return MNI152_CODE
    return _cached_space_code(path, _stamp(path))


@functools.lru_cache(maxsize=8)
def _cached_space_code(path: str, stamp: tuple[tuple[int, int], ...]) -> int:
    """`space_code` read once per image version and process: a batch's skipped scans ask it each."""
    import nibabel as nib

    header = nib.load(path).header
    if not isinstance(header, nib.Nifti1Header):  # NIfTI-2's subclasses it; other formats code no space
        return _TEMPLATE_OTHER_CODE
    code = next((int(header[key]) for key in ("sform_code", "qform_code") if header[key]), 0)
    return code if code in _STANDARD_SPACE_CODES else _TEMPLATE_OTHER_CODE


def _stamp(path: str) -> tuple[tuple[int, int], ...]:
    """(modification time, size) of each of the image's files: one rewritten since (a pair's .img too) is hashed
    again."""
    return tuple((status.st_mtime_ns, status.st_size) for status in map(os.stat, scan_files(path)))


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: str, stamp: tuple[tuple[int, int], ...]) -> str:
    """One hash per image version and process: checking a batch's skipped scans reads the template once."""
    return scan_sha256(path)


@functools.lru_cache(maxsize=4)
def load_template(path: str | None, mask_path: str | None, resolution: float,
                  shape: tuple[int, int, int] | None) -> Template:
    """Load (and cache per process) the template; `path=None` means nilearn's MNI152 2009 T1."""
    import ants

    if path is None:
        from nilearn import datasets
        from nilearn.datasets import MNI152_FILE_PATH

        template = to_ants(datasets.load_mni152_template(resolution=1))
        mask = to_ants(datasets.load_mni152_brain_mask(resolution=1))
        name, digest = "MNI152-2009 (nilearn)", file_sha256(MNI152_FILE_PATH)
    else:
        template = to_ants(load_scan(path))
        name, digest = str(path), scan_sha256(path)
        mask = to_ants(load_scan(mask_path)) if mask_path else ants.get_mask(template)
    grid = _grid_like(template, resolution, shape or DEFAULT_SHAPES.get(float(resolution)))
    coarse = template
    if min(template.spacing) < REGISTRATION_MM:
        coarse = ants.resample_image(template, (REGISTRATION_MM,) * 3, use_voxels=False, interp_type=0)
    return Template(
        name=name, sha256=digest, full=template, coarse=coarse,
        grid=ants.resample_image_to_target(template, grid, interp_type="linear"),
        mask=ants.resample_image_to_target(mask, grid, interp_type="nearestNeighbor").threshold_image(0.5, None),
    )


def _grid_like(template: ants.ANTsImage, resolution: float, shape: tuple[int, int, int] | None) -> ants.ANTsImage:
    """An empty image of `shape` voxels of `resolution` mm sharing the template's centre and axes."""
    import ants

    spacing = np.asarray(template.spacing, dtype=float)
    extent = spacing * np.asarray(template.shape)
    voxels = shape if shape is not None else tuple(int(v) for v in np.floor(extent / resolution))  # whole view
    direction = np.asarray(template.direction)
    centre = np.asarray(template.origin) + direction @ (spacing * (np.asarray(template.shape) - 1) / 2)
    origin = centre - direction @ (resolution * (np.asarray(voxels) - 1) / 2)
    return ants.from_numpy(np.zeros(voxels, dtype=np.float32), origin=origin.tolist(),
                           spacing=[float(resolution)] * 3, direction=direction)

