"""One scan from raw T1 to the template grid: the per-scan contract of the preprocess stage.

`process_scan` loads and checks the scan, corrects the bias field, registers it to the template,
resamples it once onto the output grid, normalises it and writes the volume, the forward
transform, a QC overlay and last the JSON sidecar. It skips a scan whose sidecar already records
the same input hash, parameters, template files and PIPELINE_VERSION (or a version `versions_writing_alike` names),
and whose outputs are still the files it wrote.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from . import qc, steps
from .checks import load_scan
from .sidecar import (atomic_path, output_hashes, read_sidecar, remove_stale_temps, scan_sha256, stale_reason,
                      voxels_sha256, write_json)
from .template import DEFAULT_SHAPES, Template, load_template, space_code, template_file_digests
from .user_errors import as_storage_error

if TYPE_CHECKING:  # annotations only: a bad scan fails before paying for the ANTs import
    import ants
    import nibabel as nib

__all__ = ["PIPELINE_VERSION", "Params", "ScanOutputs", "process_scan", "software_versions",
           "versions_writing_alike"]

# What produced a scan's outputs besides its parameters and template: bump it with any change to the steps (here,
# steps.py, template.py, qc.py) that would change them; a rerun redoes each scan whose sidecar records another
# version (or none: written before 2026-12-04) instead of keeping what older code made, except where
# `versions_writing_alike` says it would write them alike. 2 (2026-12-05): a zero background under
# `--normalise zscore --brain-mask`; 3 (2026-12-05): outlying intensities capped before N4; 4 (2026-12-06): outputs
# coded as the space of a --template (template.space_code), not always MNI152
PIPELINE_VERSION = 4
MAX_FIELD_OF_VIEW_MM = 400  # an output grid wider than this along any axis is a mistyped --shape (heads: ~250 mm)


@dataclass(frozen=True)
class Params:
    """Everything that changes the output; recorded in each sidecar and compared on resume."""

    template: str | None = None  # None: nilearn's MNI152 2009 T1
    template_mask: str | None = None
    resolution: float = 1.5
    shape: tuple[int, int, int] | None = None  # None: DEFAULT_SHAPES[resolution] or the template's FOV
    transform: str = "affine"
    profile: str = "fast"
    normalise: str = "minmax"
    brain_mask: bool = False  # multiply the output by the template's brain mask
    dtype: str = "float32"
    deterministic: bool = False
    seed: int = steps.REGISTRATION_SEED  # of the registration's random sampling: another seed, another transform

    def __post_init__(self) -> None:
        for name, allowed in (("transform", steps.TRANSFORMS), ("profile", steps.PROFILES),
                              ("normalise", steps.NORMALISATIONS), ("dtype", steps.DTYPES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} unknown; choose one of {sorted(allowed)}")
        if not 1 <= self.seed <= steps.MAX_SEED:
            raise ValueError(f"seed={self.seed!r}: need a whole number from 1 to {steps.MAX_SEED} (--seed N), "
                             f"e.g. {steps.REGISTRATION_SEED}, the default")
        if not 0.25 <= self.resolution <= 4:
            raise ValueError(f"resolution={self.resolution} mm out of range; use 0.25-4 mm (e.g. 1 or 1.5)")
        if self.shape is not None and (len(self.shape) != 3 or min(self.shape) < 1):
            raise ValueError(f"shape={self.shape}: need 3 voxel counts of at least 1 (--shape X Y Z), "
                             "e.g. 121 145 121")
        if self.shape is not None and max(self.shape) * self.resolution > MAX_FIELD_OF_VIEW_MM:
            raise ValueError(f"shape={self.shape} at {self.resolution} mm spans {max(self.shape) * self.resolution:g} mm, "
                             f"more than the {MAX_FIELD_OF_VIEW_MM} mm any head needs; give voxel counts at this "
                             "resolution (--shape X Y Z), e.g. 121 145 121 at 1.5 mm")

    def as_dict(self) -> dict:
        """JSON-ready form (tuples become lists so a reread sidecar compares equal)."""
        out = asdict(self)
        out["shape"] = list(self.shape) if self.shape else None
        return out

    @staticmethod
    def comparable(recorded: dict) -> dict:
        """Recorded parameters as reruns and shards compare them. The template files count by content (their
        SHA-256s are compared beside), so a template path spelled otherwise (./t.nii.gz, /abs/t.nii.gz) or moved
        redoes nothing; a --shape equal to the resolution's default grid is the default. Outputs recorded before the
        seed was (2026-12-07) were registered with the default seed (unless ANTS_RANDOM_SEED was exported), so count
        as made with it: redoing a cohort for a record it lacks would cost minutes a scan."""
        out = {"seed": steps.REGISTRATION_SEED, **recorded}
        for key in ("template", "template_mask"):  # given or not still matters: nilearn's template has its own mask
            out[key] = out.get(key) is not None
        default = DEFAULT_SHAPES.get(float(out.get("resolution") or 0))
        if default is not None and out.get("shape") == list(default):
            out["shape"] = None
        return out

    def template_key(self) -> tuple:
        """The arguments of template.load_template, cached per worker process."""
        return (self.template, self.template_mask, float(self.resolution), self.shape)


@dataclass(frozen=True)
class ScanOutputs:
    """Where the files of one scan go: `<out>/<participant_id>/<session_id>/<stem>_<kind>` (ids as given)."""

    image: Path
    transform: Path
    warp: Path  # written only with transform="syn"
    sidecar: Path
    overlay: Path
    volumes: Path  # `elr-mri volumes` cached here before 2026-12-06 (still read; now beside its CSV)

    @classmethod
    def under(cls, root: str | Path, participant: str, session: str) -> "ScanOutputs":
        return cls.named(Path(root) / participant / session, f"{participant}_{session}")

    @classmethod
    def beside(cls, image: str | Path) -> "ScanOutputs":
        """The files that belong with a processed image (e.g. a manifest's processed_path)."""
        image = Path(image)
        suffix = "_space-template_T1w.nii.gz"
        if not image.name.endswith(suffix):
            raise ValueError(f"{image}: not an `elr-mri preprocess` output (its name should end in {suffix})")
        return cls.named(image.parent, image.name[: -len(suffix)])

    @classmethod
    def named(cls, folder: Path, stem: str) -> "ScanOutputs":
        return cls(image=folder / f"{stem}_space-template_T1w.nii.gz",
                   transform=folder / f"{stem}_from-T1w_to-template_affine.mat",
                   warp=folder / f"{stem}_from-T1w_to-template_warp.nii.gz",
                   sidecar=folder / f"{stem}_space-template_T1w.json",
                   overlay=folder / f"{stem}_qc.png",
                   volumes=folder / f"{stem}_volumes.json")


def software_versions() -> dict[str, str]:
    """Versions that can change the numbers, recorded in every sidecar."""
    from importlib.metadata import version

    return {pkg: version(pkg) for pkg in ("antspyx", "nibabel", "nilearn", "numpy")}


def process_scan(path: str | Path, outputs: ScanOutputs, params: Params) -> dict:
    """Preprocess one scan (or skip it when already done); return its sidecar's content plus
    `status` ("done" or "skipped") and, for a scan done again, `redone`: why its earlier outputs were not kept.
    Raises checks.ScanError for an unusable input."""
    started = time.perf_counter()
    input_hash = scan_sha256(path) if Path(path).is_file() else ""
    finished = [outputs.image, outputs.transform, outputs.overlay]
    if params.transform == "syn":
        finished.append(outputs.warp)
    template_files = template_file_digests(params.template, params.template_mask)
    code = space_code(params.template)
    redone = stale_reason(outputs.sidecar, input_hash, params.as_dict(), finished, template_files, PIPELINE_VERSION,
                          Params.comparable, versions_writing_alike(code)) if input_hash else ""
    kept = read_sidecar(outputs.sidecar) if redone is None else None
    if kept is not None:
        remove_stale_temps(outputs.image.parent)  # a later run with other settings, killed on this scan, left them
        return {**kept, "status": "skipped"}
    scan = load_scan(path)
    import ants  # after the checks: a bad scan fails without paying for the ANTs import

    if params.deterministic:  # fixed seed and one ITK thread for the rest of this process
        ants.config.set_ants_deterministic(True, seed_value=params.seed)
    template = load_template(*params.template_key())
    figures = _register_and_write(scan, outputs, params, template, code)
    meta = {"input_path": str(path), "input_sha256": input_hash, "input_voxels_sha256": voxels_sha256(scan),
            "params": params.as_dict(),
            "pipeline_version": PIPELINE_VERSION,
            "template": {"name": template.name, "sha256": template.sha256, **template_files},
            "software": software_versions(), "qc": figures, "outputs_sha256": output_hashes(finished),
            "seconds": round(time.perf_counter() - started, 2)}
    write_json(outputs.sidecar, meta)
    return {**meta, "status": "done", "redone": redone}


def _register_and_write(scan: nib.Nifti1Image, outputs: ScanOutputs, params: Params, template: Template,
                        code: int) -> dict:
    """Correct, register and resample `scan` onto `template`'s grid and write its volume (coded `code`), transforms
    and QC overlay; return its QC figures. The transforms ANTs writes live in a work folder beside the outputs, gone
    once they are copied."""
    moving = steps.n4(steps.cap_outliers(steps.non_negative(steps.to_ants(scan))), params.profile)
    fixed = template.coarse if steps.PROFILES[params.profile]["fixed"] == "coarse" else template.full
    with _registration_workdir(outputs.image.parent) as workdir:
        transforms = steps.register(fixed, moving, params.transform, params.deterministic,
                                    outprefix=f"{workdir}/reg_", seed=params.seed)
        affine = _written_transform(transforms, ".mat", workdir)
        warp = _written_transform(transforms, "Warp.nii.gz", workdir) if params.transform == "syn" else None
        registered = steps.resample_to_grid(template.grid, moving, transforms)
        # QC judges the registration, before the output options: a brain mask would make every head overlap
        # the template's, and z-scoring moves the Otsu threshold the head overlap is measured with
        figures = {**qc.qc_figures(registered, template),
                   "qc_brain_coverage": qc.brain_coverage(moving, template, transforms),
                   "qc_input_voxel_mm": qc.coarsest_voxel_mm(scan)}
        warped = _output_volume(registered, template, params)
        with atomic_path(outputs.image) as temp:
            steps.to_nifti(warped, params.dtype, code).to_filename(temp)
        with atomic_path(outputs.transform) as temp:  # ITK affine: template point -> scan point
            shutil.copyfile(affine, temp)
        if warp is not None:  # applied before the affine, as ANTs lists it
            with atomic_path(outputs.warp) as temp:
                shutil.copyfile(warp, temp)
        else:  # an earlier syn run's warp would be taken as this affine's by `elr-mri volumes`
            outputs.warp.unlink(missing_ok=True)
        with atomic_path(outputs.overlay) as temp:
            qc.overlay_png(warped, template, temp, title=outputs.image.name)
    return figures


def _output_volume(registered: ants.ANTsImage, template: Template, params: Params) -> ants.ANTsImage:
    """The registered scan as the output options ask: masked to the template's brain and normalised."""
    warped = registered * template.mask if params.brain_mask else registered
    warped = steps.normalise(warped, template.mask, params.normalise)
    if params.brain_mask:  # zero outside again: z-scoring moved the masked background to −mean/std
        warped = warped * template.mask
    return warped


def versions_writing_alike(code: int | None) -> tuple[int, ...]:
    """The earlier pipeline versions whose outputs this one would write alike where they are coded `code` (None: not
    known), so that a rerun keeps them and preprocess-merge joins their shards with this version's: version 4 changed only the code of outputs not in MNI152 space, and redoing every scan of a
    default-template cohort (minutes each) for nothing would have been the price of upgrading. Empty again once a
    version changes every output."""
    return (3,) if code == steps.MNI152_CODE else ()


def _written_transform(transforms: list[str], suffix: str, workdir: str) -> str:
    """The registration's transform file ending in `suffix`. ANTs returns without one, or with an empty one, when it
    could not write into `workdir`, saying so only on stderr: a full disk (or quota) is then raised as the OS's
    error, which stops the batch (every later scan would fail alike); otherwise this scan fails alone."""
    found = [path for path in transforms
             if path.endswith(suffix) and Path(path).is_file() and Path(path).stat().st_size > 0]
    if not found:
        _raise_if_full(workdir)
        raise RuntimeError(f"ANTs registration wrote no *{suffix} transform into {workdir} (the folder removed by "
                           "another run?); run again")
    return found[0]


def _raise_if_full(folder: str) -> None:
    """Write a MiB into `folder` and delete it: a full or over-quota disk raises its OSError here (the batch names the
    scan's folder); other errors (the folder gone) leave the caller's own. Writing is the one test that sees quotas, reserved blocks and NFS alike."""
    probe = Path(folder) / ".space-probe"
    try:
        with open(probe, "wb") as handle:
            handle.write(bytes(2**20))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        if as_storage_error(err) is not None:
            raise
    finally:
        probe.unlink(missing_ok=True)


@contextlib.contextmanager
def _registration_workdir(folder: Path) -> Iterator[str]:
    """A temporary folder for ANTs' transform files inside the scan's output `folder` (made as needed), under a
    name a killed run's successor removes. It goes at the end; when the scan fails, so do the output folders
    made here if nothing else was written into them: an empty participant folder looks like a result."""
    made = [missing for missing in (folder, *folder.parents) if not missing.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)
    workdir = tempfile.mkdtemp(prefix=".tmp-registration-", dir=folder)
    failed = True
    try:
        yield workdir
        failed = False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        for empty in made if failed else []:
            try:
                empty.rmdir()
            except OSError:  # something was written there: keep it and the folders above
                break
