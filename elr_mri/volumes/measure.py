"""`elr-mri volumes`: regional volumes of every scan of a preprocessed manifest, in one CSV.

A scan preprocessed with `--transform syn` already has its deformable warp; for the default
(affine) preprocessing, a SyN registration of the template-space image to the template supplies
it, at `registration_mm` (2 mm: the regions are 5 mm and larger, and it costs a few seconds a
scan). Each scan's result is cached as `*_volumes-<image hash>.json` in a folder beside the CSV (the scans' own
folder is often read-only lab storage), checked against the image's hash and the settings, so a rerun skips finished
scans (and reuses what earlier versions cached); a scan that fails is listed and the others go on. The CSV carries
each region's volume in mm³, its ratio to the template's, and (except the brain) its fraction of the whole brain,
the normalised volume the baselines use.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Hashable, Mapping, NamedTuple

import numpy as np
import pandas as pd

from elr_mri.data.cohort import warn_once, warn_qc_flagged
from elr_mri.data.table_values import USABLE_STATUSES, has_usable_status
from elr_mri.data.table_values import status_in_words
from elr_mri.simulate.disease import REGIONS
from elr_mri.volumes.jacobian import affine_determinant, integrate_regions, region_masks, warp_jacobian
from elr_mri.volumes.scratch import SCRATCH_PREFIX, scratch_folder
from preprocess.batch import failure_table, files_removed_at_start, telling_line, write_csv
from preprocess.inputs import read_csv_table, registration_seed
from preprocess.pipeline import Params, ScanOutputs
from preprocess.sidecar import file_sha256, read_sidecar, require_writable, same_template, write_json
from preprocess.steps import MNI152_CODE, ants_unsafe
from preprocess.template import space_code, template_file_digests
from preprocess.user_errors import as_storage_error, not_a_file
from preprocess.workers import run_per_scan

__all__ = ["Measured", "VolumeParams", "default_volumes_csv", "measure_scan", "measure_manifest", "volume_columns",
           "NORMALISED_SUFFIX"]

NORMALISED_SUFFIX = "_per_brain"
FAILURE_COLUMNS = ["participant_id", "session_id", "processed_path", "error"]


# raised when the same settings measure differently; volumes cached by an earlier version are measured again
# (2: the scan resampled onto the registration's grid before SyN)
MEASURE_VERSION = 2


@dataclass(frozen=True)
class VolumeParams:
    """Settings that change the volumes; recorded in each scan's cache and compared on resume."""

    registration_mm: float = 2.0
    syn_iterations: tuple[int, ...] = (40, 20, 0)  # ANTsPy's SyN defaults, coarse to fine
    # SyN on 1 ITK thread: the same volumes on any machine and at any --jobs. Its metric sums in an order set by the
    # thread count (cores // jobs): 1 against 2 threads moved a region by up to 1.4% (README)
    deterministic: bool = False

    def as_dict(self) -> dict:
        """Recorded without `deterministic` where it is off, as before it existed: those caches stay valid."""
        recorded = {**asdict(self), "syn_iterations": list(self.syn_iterations)}
        if not self.deterministic:
            del recorded["deterministic"]
        return recorded


def volume_columns() -> list[str]:
    """The CSV's normalised columns (each region as a fraction of the brain), the baselines' features."""
    return [f"{r.name}{NORMALISED_SUFFIX}" for r in REGIONS if r.name != "brain"]


def _require_processed_image(image_path: Path) -> None:
    """Refuse a processed_path that is no image file, saying what it is: a folder or a named pipe was called "processed
    image missing", as if nothing were there."""
    fix = "point the manifest's processed_path at the .nii.gz image `elr-mri preprocess` wrote"
    if image_path.is_dir():
        raise ValueError(f"{image_path}: is a folder, not the processed image; {fix}")
    if image_path.exists() and not image_path.is_file():
        raise ValueError(f"{image_path}: is not a regular file (a named pipe, socket or device); {fix}")
    if not image_path.exists():
        raise FileNotFoundError(f"{image_path}: processed image missing (moved since? point the manifest's "
                                "processed_path at where it is now: a relative one is read from the manifest's "
                                "folder, an absolute one, as preprocess writes, does not follow a moved folder), or "
                                "rerun `elr-mri preprocess`")


def measure_scan(image_path: str | Path, params: VolumeParams = VolumeParams(), workdirs: str | None = None,
                 cache_dir: str | Path | None = None) -> dict:
    """Regional volumes of one preprocessed scan ({region: {"mm3", "ratio"}} plus how they were
    measured), from its cache when the image and settings are unchanged. `workdirs`: where the registration's
    temporary folder goes (None: the system's). `cache_dir`: where its `*_volumes-<hash>.json` goes (None: beside the
    image, as `*_volumes.json`, where versions before 2026-12-06 wrote every one; one there is reused from any
    `cache_dir`)."""
    _require_processed_image(Path(image_path))
    outputs = ScanOutputs.beside(image_path)
    image_hash = file_sha256(outputs.image)
    preprocess_meta = read_sidecar(outputs.sidecar)
    if preprocess_meta is None and outputs.sidecar.is_file():  # there, but not JSON: damaged, not missing
        raise ValueError(f"{outputs.sidecar}: unreadable (not the JSON `elr-mri preprocess` writes, so damaged "
                         "since); rerun `elr-mri preprocess` on this scan")
    preprocessed = _preprocess_params(preprocess_meta, outputs.sidecar) if preprocess_meta is not None else None
    transforms = [outputs.transform] + ([outputs.warp] if preprocessed and preprocessed.transform == "syn" else [])
    if preprocess_meta is None or preprocessed is None or not all(path.is_file() for path in transforms):
        raise FileNotFoundError(f"{outputs.image}: its sidecar, affine transform or (--transform syn) warp is "
                                "missing; rerun `elr-mri preprocess` on this scan")
    written = (preprocess_meta.get("outputs_sha256") or {}).get(outputs.image.name)
    if written is not None and written != image_hash:  # ITK reads a truncated gzip without complaint
        raise ValueError(f"{outputs.image}: not the file `elr-mri preprocess` wrote (its SHA-256 differs from "
                         "the sidecar's), so damaged or replaced since; rerun `elr-mri preprocess` on this scan")
    cache, *earlier = _cache_files(outputs, image_hash, cache_dir)
    source = _warp_source(preprocessed, params)
    template = _template_of(preprocess_meta)
    for cached in map(read_sidecar, dict.fromkeys((cache, *earlier))):
        if (cached and cached.get("image_sha256") == image_hash and cached.get("params") == params.as_dict()
                and cached.get("method") == MEASURE_VERSION):
            # from the sidecar: caches written before the warp named the profile, or the template was recorded
            return {**cached, "warp": source, **template, "status": "skipped"}
    _require_the_recorded_template(preprocess_meta, preprocessed, outputs.sidecar)
    jacobian, domain, masks = _deformation_jacobian(outputs, preprocessed, params, workdirs)
    volumes = integrate_regions(jacobian, masks, float(np.prod(domain.spacing)),
                                affine_determinant(str(outputs.transform)))
    result = {"image_sha256": image_hash, "params": params.as_dict(), "method": MEASURE_VERSION, "warp": source,
              **template, "regions": volumes}
    write_json(cache, result)
    return {**result, "status": "done"}


def _cache_files(outputs: ScanOutputs, image_hash: str, cache_dir: str | Path | None) -> list[Path]:
    """Where a scan's volumes are cached, then where earlier versions cached them (read, if their image hash is this
    one's). In `cache_dir` the name holds the image's hash besides its participant and session: one manifest can list
    two scans of one session from two preprocessed folders (two cohorts or pipelines), which shared one cache file, so
    measuring each threw the other's away. Beside the image (`cache_dir` None) the scan's own name suffices."""
    if cache_dir is None:
        return [outputs.volumes]
    named = Path(cache_dir) / outputs.volumes.name  # 2026-12-06 until this change
    return [named.with_name(f"{named.stem}-{image_hash[:16]}{named.suffix}"), named, outputs.volumes]


def _warp_source(preprocessed: Params, params: VolumeParams) -> str:
    """Where the warp came from, as the CSV's `warp` column names it for the baselines to refuse a mix: preprocess's
    SyN per profile (fast registers to the 2 mm template, reference to the 1 mm one, and SyN smooths in voxels: ours
    at 3 mm against 2 mm moved the hippocampus by 8%), else ours at `registration_mm`."""
    if preprocessed.transform == "syn":
        return f"preprocess syn ({preprocessed.profile} profile)"
    return f"syn at {params.registration_mm:g} mm"


def _template_of(meta: dict) -> dict[str, str | None]:
    """The template the scan was registered to, as its sidecar names it: the reference every volume is a ratio of,
    so the baselines refuse cohorts registered to other ones (None where a sidecar does not say). Its image's digest
    beside its file's, so that a copy of it re-saved (nibabel, recompressed, .nii) counts as the same template, as
    preprocess counts it (`preprocess.sidecar.same_template`; sidecars before 2026-12-07 record the file's alone)."""
    template = meta.get("template") or {}
    return {"template": template.get("name"), "template_sha256": template.get("sha256"),
            "template_content_sha256": template.get("content_sha256")}


def _require_the_recorded_template(meta: dict, preprocessed: Params, sidecar: Path) -> None:
    """The volumes are measured on the template read where preprocess read it: one gone since failed with the hint
    of a preprocess input ("check the `path` column"), and one replaced there by another image measured the scans
    against anatomy they were not registered to, under the recorded template's name and digest. Its image is compared
    with the sidecar's record as preprocess compares them (`same_template`: a re-saved copy is the same); a sidecar from
    before 2026-12-07 records the file's digest alone and is taken as it was."""
    for option, path in (("--template", preprocessed.template), ("--template-mask", preprocessed.template_mask)):
        if path is not None and not Path(path).is_file():
            fix = ("put it, or a copy of the same image, back there" if Path(path).is_absolute() else "run from "
                   "the folder preprocess ran in (a relative path is read from the current one), or put it there")
            raise FileNotFoundError(f"{sidecar}: its scan was registered to preprocess's {option} {path}, which is "
                                    f"not there now (moved or deleted since?), and is measured on it; {fix}")
    recorded = meta.get("template") or {}
    if "content_sha256" in recorded and not same_template(
            recorded, template_file_digests(preprocessed.template, preprocessed.template_mask)):
        raise ValueError(f"{sidecar}: its scan was registered to another image than the template at "
                         f"{preprocessed.template or 'nilearn MNI152'} now (replaced since preprocessing?), so its "
                         "volumes would be ratios to another brain; put that template back, or rerun `elr-mri "
                         "preprocess` on these scans")


def _preprocess_params(meta: dict, sidecar: Path) -> Params:
    try:
        recorded = dict(meta["params"])
        recorded["shape"] = tuple(recorded["shape"]) if recorded.get("shape") else None
        return Params(**recorded)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{sidecar}: not a sidecar this `elr-mri preprocess` reads (its params are missing or "
                         "unknown); rerun `elr-mri preprocess` on this scan") from None


@functools.lru_cache(maxsize=4)
def _domain(template_key: tuple, image: str, registration_mm: float) -> tuple:
    """(template image the Jacobian lives on, its region masks), built once per worker process:
    the masks alone cost about as much as a tenth of a scan's SyN. `image` names the template's
    `coarse` or `full` copy (a warp from preprocessing) or `grid` (our SyN at `registration_mm`)."""
    import ants

    from preprocess.template import load_template

    domain = getattr(load_template(*template_key), image)
    if image == "grid" and not np.allclose(domain.spacing, registration_mm):
        domain = ants.resample_image(domain, (registration_mm,) * 3, use_voxels=False, interp_type=0)
    return domain, region_masks(domain)


def _deformation_jacobian(outputs: ScanOutputs, preprocessed: Params, params: VolumeParams, workdirs: str | None
                          ) -> tuple[np.ndarray, Any, dict[str, np.ndarray]]:
    """(det Dφ on the domain's voxels, the domain, its region masks)."""
    import ants

    domain, masks = _measurement_domain(preprocessed, params)
    if preprocessed.transform == "syn":
        return warp_jacobian(domain, str(outputs.warp)), domain, masks
    # on the domain's grid first: SyN's smoothing is in voxels, so a scan on a finer or coarser grid than the domain
    # was blurred another amount and its tissue measured away from its size (the template registered to itself from
    # 3 mm onto 2 mm: hippocampus 0.95, entorhinal cortex 0.92)
    moving = ants.resample_image_to_target(ants.image_read(str(outputs.image)), domain, interp_type="linear")
    os.environ["ANTS_RANDOM_SEED"] = str(_registration_seed())
    workdir = tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=workdirs)
    try:
        result = ants.registration(fixed=domain, moving=moving, type_of_transform="SyNOnly",
                                   reg_iterations=list(params.syn_iterations), outprefix=f"{workdir}/syn_")
        warp = next(t for t in result["fwdtransforms"] if t.endswith("Warp.nii.gz"))
        return warp_jacobian(domain, warp), domain, masks
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _registration_seed() -> int:
    """The seed ANTs reads from ANTS_RANDOM_SEED, taken as preprocess takes it (`registration_seed`). Our SyN samples
    every voxel, so it draws nothing from it (seeds 7, 123, 99999 and none gave identical volumes on one ITK thread,
    7 and 123 on two) and none is recorded; but ANTs parses the export at each registration, and one it could not read
    (blank, 'abc', past 2^31) failed every scan with only "ValueError: stoi". So such an export is refused before any
    scan, and a blank one, no export to preprocess, is its default here too."""
    return registration_seed(None, os.environ.get("ANTS_RANDOM_SEED"),  # volumes has no --seed to offer
                             override="`elr-mri volumes` draws nothing from it, but ANTs reads it at each scan")


def _measurement_domain(preprocessed: Params, params: VolumeParams) -> tuple:
    """(domain, its region masks): the fixed image preprocess's warp lives on (--transform syn), else the template
    at `params.registration_mm` for our SyN."""
    from preprocess.steps import PROFILES

    if preprocessed.transform == "syn":
        image = "coarse" if PROFILES[preprocessed.profile]["fixed"] == "coarse" else "full"
    else:
        image = "grid"
    return _domain(preprocessed.template_key(), image, params.registration_mm)


def _check_the_template(manifest: Path, processed_paths: pd.Series, params: VolumeParams) -> None:
    """Once, from the first scan with readable settings: a template grid too small for the regions fails every scan
    alike, each after building the template again (seconds a scan), so it ends the command in one line instead. A
    --template of the user's is warned of unless its header codes MNI152 space (as preprocess then codes the scans):
    the regions are MNI millimetres, and a template in another frame whose grid still holds them (a study template
    centred on its own origin) measures other anatomy without a word. Its file is there: the domain was built from it."""
    for path in processed_paths:
        try:
            sidecar = ScanOutputs.beside(_resolve(manifest, path)).sidecar
            meta = read_sidecar(sidecar) or {}
            preprocessed = _preprocess_params(meta, sidecar)
        except ValueError:
            continue  # no preprocess output, or no settings: that scan fails on its own row
        _require_the_recorded_template(meta, preprocessed, sidecar)
        _measurement_domain(preprocessed, params)  # a ValueError naming the region and the fix
        code = MNI152_CODE if preprocessed.template is None else space_code(preprocessed.template)
        if code != MNI152_CODE:
            warn_once(f"{manifest}: its scans were registered to preprocess's --template {preprocessed.template}, not "
                      f"nilearn's MNI152, and its header codes another space than MNI152 (code {code}); the regions "
                      "are ellipsoids in MNI mm, so their volumes are of the named structures only if that template "
                      "is in MNI space")
        return


class Measured(NamedTuple):
    """What `measure_manifest` did: `cached` of the `volumes` rows came from the per-scan cache, not measured now
    (a rerun of 12 cached scans said "12 scans measured" in seconds, as if it had measured them)."""

    csv: Path
    volumes: pd.DataFrame
    failures: pd.DataFrame
    cached: int


def measure_manifest(manifest: str | Path, out_csv: str | Path | None = None, params: VolumeParams = VolumeParams(),
                     jobs: int = 1, progress: bool = True) -> Measured:
    """Measure every usable scan of a preprocessed manifest; returns the CSV's path, the volumes, the failures and
    how many of the volumes came from the cache.

    Failures go to `<CSV name>_failures.csv` beside the CSV (default: see `default_volumes_csv`), the per-scan cache
    into `<CSV name>_cache/`; a folder that cannot be written there is refused before any scan. When no scan
    could be measured (scans moved, a drive unmounted) the CSV is not written: an earlier one keeps its volumes.
    The registrations' temporary folders live in one folder this process removes, even after Ctrl-C, when its
    workers are stopped before they could clean up."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"--manifest {manifest}: {not_a_file(manifest)}; pass the manifest `elr-mri preprocess` "
                                "wrote")
    out_csv = Path(out_csv) if out_csv else default_volumes_csv(manifest)
    if out_csv.is_dir():
        raise IsADirectoryError(f"--out {out_csv} is a folder; pass the CSV to write, e.g. {out_csv / 'volumes.csv'}")
    failures_csv = out_csv.with_name(f"{out_csv.stem}_failures.csv")
    _refuse_writing_over_inputs(manifest, out_csv, failures_csv)
    cache_dir = out_csv.with_name(f"{out_csv.stem}_cache")
    require_writable(out_csv.parent, f"{out_csv.name}, its failures and its per-scan cache {cache_dir.name}/",
                     "pass --out a CSV in a folder you can write (preprocessed scans on read-only storage are read "
                     "there, not written)")
    _require_ants_safe_temp()
    _registration_seed()  # an export ANTs cannot read: refused here, not at each scan
    table = read_csv_table(manifest, dtype={"participant_id": str, "session_id": str})
    if "processed_path" not in table.columns:
        raise ValueError(f"{manifest}: no processed_path column; pass the manifest `elr-mri preprocess` wrote")
    unusable = ~has_usable_status(table["status"]) if "status" in table.columns else pd.Series(False, table.index)
    left_out = table[unusable].reindex(columns=FAILURE_COLUMNS[:-1]).assign(
        error=[f"not measured: its status in {manifest.name} is {status_in_words(status)}" for status in table["status"][unusable]]
        if unusable.any() else [])
    table = table[~unusable]
    warn_qc_flagged(table, str(manifest))  # their volumes feed the baselines as any other scan's
    if table.empty:
        raise ValueError(f"{manifest}: no scan to measure (no rows, or none whose status is "
                         f"{'/'.join(USABLE_STATUSES)}); pass the manifest `elr-mri preprocess` wrote")
    _check_the_template(manifest, table["processed_path"], params)
    with scratch_folder() as workdirs:  # removed at the end, or by a later run where this one is killed outright
        arguments = {i: (_resolve(manifest, path), params, workdirs, cache_dir)
                     for i, path in zip(table.index, table["processed_path"])}
        results = run_per_scan(_measure_one, arguments, jobs, "volumes", progress,
                               threads=1 if params.deterministic else None, failed_before=len(left_out))
    volumes, failures = _tables(table, results)
    failures = pd.concat([left_out, failures], ignore_index=True)  # every row of the manifest is measured or listed
    if len(volumes):
        write_csv(volumes, out_csv)
    write_csv(failures, failures_csv)
    return Measured(out_csv, volumes, failures, sum(result["status"] == "skipped" for result in results.values()))


def _require_ants_safe_temp() -> None:
    """The registrations write their transforms under the temporary folder, whose path ANTs splits at `[`, `]` and
    `,`: under a TMPDIR holding one, every affinely preprocessed scan failed with only "Registration failed with
    error code 1"."""
    unsafe = ants_unsafe(tempfile.gettempdir())
    if unsafe:
        raise ValueError(f"temporary folder {tempfile.gettempdir()}: holds {unsafe}, which ANTs cannot take in the "
                         "path it writes each registration's transforms to; set TMPDIR to a folder whose path has none")


def _refuse_writing_over_inputs(manifest: Path, out_csv: Path, failures_csv: Path) -> None:
    """The volumes or their failure list written over the manifest read, or over a file preprocess wrote beside it
    (its manifest.csv, failures.csv, a shard's): an --out typed as the manifest replaced it without a word."""
    protected = [manifest, *files_removed_at_start(manifest.parent, None)]
    for written in (out_csv, failures_csv):
        hit = next((path for path in protected if written.resolve() == path.resolve()), None)
        if hit is not None:
            raise ValueError(f"--out {out_csv} would write {written.name} over {hit}, which the command reads or "
                             f"preprocess wrote; name a new file, e.g. {default_volumes_csv(manifest)}")


def default_volumes_csv(manifest: Path) -> Path:
    """`volumes.csv` beside preprocess's `manifest.csv`; `<name>_volumes.csv` beside any other manifest, so the
    manifests of two cohorts in one folder (data/adni.csv, data/nacc.csv) do not write over each other's."""
    return manifest.with_name("volumes.csv" if manifest.name == "manifest.csv" else f"{manifest.stem}_volumes.csv")


def _resolve(manifest: Path, path: Any) -> str:
    """Relative processed paths are relative to the manifest's folder; an empty cell stays empty."""
    if pd.isna(path) or not str(path).strip():
        return ""
    return str(path if Path(path).is_absolute() else manifest.parent / path)


def _measure_one(path: str, params: VolumeParams, workdirs: str, cache_dir: Path) -> dict:
    """One scan in a worker: a bad scan fails alone, in its result, so it cannot stop the others. A full, over-quota or
    read-only disk under the cache is raised instead (`StorageError`), stopping the run, as preprocess does: every
    later scan was measured (minutes each), then listed as failed at writing its cache, as if the scan were at fault."""
    if not path:
        return {"status": "failed", "error": "the manifest row's processed_path is empty"}
    try:
        return measure_scan(path, params, workdirs, cache_dir)
    except Exception as exc:  # noqa: BLE001 - reported per scan, with its type and telling line
        storage_error = as_storage_error(exc)
        if storage_error is not None:
            raise storage_error from None
        return {"status": "failed", "error": f"{type(exc).__name__}: {telling_line(str(exc))}"}


def _tables(table: pd.DataFrame, results: Mapping[Hashable, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ok = [i for i in table.index if results[i]["status"] != "failed"]
    rows = []
    for i in ok:
        # in REGIONS order: a cached result (JSON, keys sorted) must give the columns a fresh one gives
        regions = {region.name: results[i]["regions"][region.name] for region in REGIONS}
        row = {"participant_id": table.at[i, "participant_id"], "session_id": table.at[i, "session_id"]}
        row.update({f"{name}_mm3": round(v["mm3"], 1) for name, v in regions.items()})
        row.update({f"{name}_ratio": round(v["ratio"], 5) for name, v in regions.items()})
        brain = regions["brain"]["mm3"]
        row.update({f"{name}{NORMALISED_SUFFIX}": v["mm3"] / brain for name, v in regions.items() if name != "brain"})
        row.update({key: results[i].get(key) for key in ("warp", "template", "template_sha256",
                                                         "template_content_sha256")})
        rows.append(row)
    return pd.DataFrame(rows), failure_table(table, results, FAILURE_COLUMNS[:-1])
