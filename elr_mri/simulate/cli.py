"""`elr-mri simulate-cohort`: write a simulated ADNI-like cohort and a NACC-like holdout to a folder.

Layout of --out: `<cohort>/<participant>/<session>/anat/<participant>_<session>_T1w.nii.gz` (scanner
space, int16), `manifest.csv` (what a user of real data has: the NOISY diagnosis; paths relative to
--out) and the same rows split by site, `manifest_adni_sim.csv` (training) and `manifest_nacc_sim.csv`
(holdout), `truth.csv` (true diagnosis and every simulated parameter; for scoring only) and
`simulation.json` (the settings, regions and site profiles). Same seed, same bytes, for any --jobs.
An interrupted run resumes: rerun it and the scans it finished with the same settings are kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np
import pandas as pd
import scipy
from threadpoolctl import threadpool_limits

from elr_mri.simulate.acquisition import SITES
from elr_mri.simulate.anatomy import ANATOMIES, load_anatomy
from elr_mri.simulate.cohort import CLASS_FRACTIONS, HOLDOUT_SITE, TRAIN_SITE, SubjectSpec, plan_cohort
from elr_mri.simulate.disease import REGIONS
from elr_mri.simulate.render import SIMULATOR_VERSION, render_scan
from preprocess.arguments import parse_naming_unknown_options
from preprocess.folder_locks import held_lock
from preprocess.progress import NO_PROGRESS_HELP, ScanProgress
from preprocess.qc_flags import MAX_INPUT_VOXEL_MM
from preprocess.signals import sigterm_as_ctrl_c, stopped_exit_code
from preprocess.sidecar import atomic_path, file_sha256, read_sidecar, remove_stale_temps, scan_sha256, write_json
from preprocess.user_errors import USER_ERRORS, file_above, nonempty_path, report_user_error, storage_error_or_raise
from preprocess.workers import forked_on_linux, start_worker_process, stopping_workers

__all__ = ["main", "simulate_cohort", "MANIFEST_COLUMNS"]

MANIFEST_COLUMNS = ["participant_id", "session_id", "path", "diagnosis", "age", "sex", "cohort"]
# Below --out while a run is unfinished: one record a finished scan, what a rerun needs to keep it.
PROGRESS = ".simulate-progress"
LOCK = ".simulate.lock"  # held (lockf) by the simulate-cohort writing --out


@dataclass(frozen=True)
class _Drawing:
    """The settings the scans are drawn and rendered with, beside the subjects' plan: what simulation.json records,
    so what a resume must find unchanged to keep a finished scan."""

    label_noise: float
    seed: int
    resolution_mm: float
    anatomy: str
    atrophy_scale: float


def main(argv: list[str] | None = None, say_how_to_go_on: bool = True) -> int:
    """Entry point of `elr-mri simulate-cohort` and `python -m elr_mri.simulate`. `say_how_to_go_on`: False for a
    caller that says itself how to go on after Ctrl-C or SIGTERM (mri_demo.py), reading the exit code alone."""
    parser = _parser()
    args = parse_naming_unknown_options(parser, sys.argv[1:] if argv is None else argv)
    try:
        with sigterm_as_ctrl_c():  # `kill` or a job's time limit ended it without a word (exit -15)
            truth = simulate_cohort(args.out, args.subjects, args.holdout_subjects, args.label_noise, args.seed,
                                    args.resolution, args.anatomy, args.jobs, args.overwrite, args.atrophy_scale,
                                    not args.no_progress)
    except USER_ERRORS as err:
        return report_user_error("elr-mri simulate-cohort", err)
    except OSError as err:  # a full or read-only disk under --out
        return report_user_error("elr-mri simulate-cohort", storage_error_or_raise(err))
    except KeyboardInterrupt as stop:  # Terminated too: SIGTERM
        return stopped_exit_code(stop, "elr-mri simulate-cohort", "finished scans are kept", say_how_to_go_on)
    except BrokenProcessPool:
        print(f"elr-mri simulate-cohort: a worker process died (killed for memory? try fewer --jobs than {args.jobs} "
              "or a coarser --resolution); run the same command again: finished scans are kept", file=sys.stderr)
        return 1
    note = _thick_slice_note(truth, args.resolution)
    if note:
        print(f"note: {note}", file=sys.stderr)
    print(_written_manifests(Path(args.out), truth))
    return 0


def _thick_slice_note(truth: pd.DataFrame, resolution_mm: float) -> str | None:
    """Say when a site's voxels (the holdout's are 1.25x as long left-right) pass preprocess QC's thick-slice limit:
    it then flags every scan of that site, and evaluate warns of them, which reads as bad scans though it is what
    --resolution asked for. The limit stays: real 5 mm clinical T1s pass the registration checks blurred."""
    coarse = {site: resolution_mm * max(SITES[site].voxel_factor) for site in truth["cohort"].unique()}
    coarse = {site: size for site, size in coarse.items() if size > MAX_INPUT_VOXEL_MM}
    if not coarse:
        return None
    finest = min(MAX_INPUT_VOXEL_MM / max(site.voxel_factor) for site in SITES.values())
    sites = ", ".join(f"{site}'s up to {size:g} mm" for site, size in coarse.items())
    return (f"at --resolution {resolution_mm:g} the voxels of {sites} are coarser than the {MAX_INPUT_VOXEL_MM:g} mm "
            "above which preprocess QC flags a scan as thick-sliced, so it flags every one of them and evaluate warns "
            f"of them: that is the --resolution asked for, not a bad scan; --resolution {finest:g} or finer keeps "
            "every site under it")


def _written_manifests(out: Path, truth: pd.DataFrame) -> str:
    """The closing line: the manifests written, each site's for its own `preprocess` run, so a user need not list
    --out to find the file the next step reads."""
    roles = {TRAIN_SITE: "training site", HOLDOUT_SITE: "holdout site"}
    def scans(count: int) -> str:
        return f"{count} scan{'s' * (count != 1)}"

    sites = [f"{out / f'manifest_{site}.csv'} ({roles[site]}, {scans(count)})"
             for site, count in truth["cohort"].value_counts(sort=False).items()]
    return (f"simulate-cohort: {scans(len(truth))} -> {out / 'manifest.csv'}; by site: {', '.join(sites)}; "
            f"{out / 'truth.csv'} for scoring only")


def simulate_cohort(out: Path, subjects: int, holdout_subjects: int | None = None, label_noise: float = 0.2,
                    seed: int = 0, resolution_mm: float = 2.0, anatomy: str = "mni152", jobs: int = 1,
                    overwrite: bool = False, atrophy_scale: float = 1.0, progress: bool = True) -> pd.DataFrame:
    """Simulate, write everything under `out`, and return the truth table."""
    holdout = subjects // 3 if holdout_subjects is None else holdout_subjects
    if not 0.5 <= resolution_mm <= 4.0:
        raise ValueError(f"--resolution must be within [0.5, 4] mm, got {resolution_mm}")
    if subjects < 1:
        raise ValueError(f"--subjects {subjects}: a cohort needs at least 1 training-site subject")
    if holdout < 0:
        raise ValueError(f"--holdout-subjects {holdout}: give 0 or more holdout-site subjects")
    if jobs < 1:
        raise ValueError(f"--jobs {jobs}: need at least 1 worker")
    if seed < 0:
        raise ValueError(f"--seed {seed}: give 0 or more")
    out = Path(out)
    _check_out(out, overwrite)
    specs = plan_cohort(subjects, holdout, label_noise, seed, atrophy_scale)
    load_anatomy(anatomy, resolution_mm)  # fail early, and let forked workers share the cache (forked_on_linux)
    with _exclusive(out):
        _check_out(out, overwrite)  # again, under the lock: the run that held it may have finished a cohort there
        drawing = _Drawing(label_noise, seed, resolution_mm, anatomy, atrophy_scale)
        return _write_cohort(out, specs, drawing, jobs, overwrite, progress)


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, holds a cohort (without --overwrite), or holds another tool's manifest."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; pass a folder for the cohort (a new one is made)")
    if file_above(out) is not None:
        raise NotADirectoryError(f"--out {out}: {file_above(out)} is a file, so no folder can be made in it; choose "
                                 "another --out")
    if (out / "manifest.csv").exists() and not (out / "simulation.json").is_file():  # first: --overwrite cannot help
        raise FileExistsError(f"{out} holds a manifest.csv but no simulation.json: not a cohort simulate-cohort wrote "
                              "(a preprocess folder?), so --overwrite would delete others' files; choose another --out")
    if (out / "manifest.csv").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a cohort (manifest.csv); pass --overwrite to replace it")


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One simulate-cohort at a time in `out`: two with other settings wrote their scans over each other's, under
    the truth.csv of whichever finished last. The lock file stays (as preprocess's do): removing it would let a third
    run lock a new file while the second still holds the old one."""
    out.mkdir(parents=True, exist_ok=True)
    with held_lock(out / LOCK, out, "simulate-cohort"):
        yield


def _write_cohort(out: Path, specs: list[SubjectSpec], drawing: _Drawing, jobs: int, overwrite: bool,
                  progress: bool) -> pd.DataFrame:
    """Render the planned scans (keeping those an interrupted run with the same settings finished), then the tables."""
    description = _description(specs, drawing)
    settings = settings_hash(description)
    leftovers = _unfinished_scans_outside(out, settings, {spec.relative_path for spec in specs})
    if overwrite and (out / "manifest.csv").exists():
        _remove_previous_cohort(out, {spec.relative_path for spec in specs})
    out.mkdir(parents=True, exist_ok=True)
    tasks = [((out, drawing, settings), spec) for spec in specs]
    # the bar is closed (its line ended) before an error leaves: a full disk's one line began after the bar's text
    if jobs <= 1:
        with ScanProgress(len(tasks), "simulate-cohort", progress) as shown:
            measured = list(shown.track(map(_write_scan, tasks)))
    else:
        with (stopping_workers(jobs, forked_on_linux(), start_worker_process, (os.getpid(),)) as pool,
              ScanProgress(len(tasks), "simulate-cohort", progress) as shown):
            measured = list(shown.track(pool.map(_write_scan, tasks)))
    truth = pd.DataFrame([_truth_row(spec, extra) for spec, extra in zip(specs, measured)])
    with atomic_path(out / "truth.csv") as temp:
        truth.to_csv(temp, index=False)
    with atomic_path(out / "simulation.json") as temp:
        temp.write_text(json.dumps(description, indent=2) + "\n")
    manifest = truth[MANIFEST_COLUMNS]
    for site, rows in manifest.groupby("cohort", sort=False):  # each site preprocessed into its own folder
        with atomic_path(out / f"manifest_{site}.csv") as temp:
            rows.to_csv(temp, index=False)
    with atomic_path(out / "manifest.csv") as temp:  # last: its presence means complete
        manifest.to_csv(temp, index=False)
    shutil.rmtree(out / PROGRESS, ignore_errors=True)
    for scan in leftovers:
        scan.unlink(missing_ok=True)
    return truth


def _remove_previous_cohort(out: Path, kept_paths: set[str]) -> None:
    """--overwrite: delete the manifests and the scans of the cohort being replaced that the new one does not
    write again (fewer subjects, no holdout site), so no stale holdout manifest or scan is left to be read."""
    previous = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    (out / "manifest.csv").unlink()  # first: an overwrite cut short leaves no complete-looking cohort
    for site in SITES:
        (out / f"manifest_{site}.csv").unlink(missing_ok=True)
    for relative in sorted(set(previous.get("path", [])) - kept_paths):
        scan = out / relative
        if not scan.resolve().is_relative_to(out.resolve()):  # an absolute or ../ path: not this cohort's file
            continue
        scan.unlink(missing_ok=True)
        for folder in scan.parents:  # the subject's now empty folders, not `out` itself
            if folder == out or not folder.is_relative_to(out):
                break
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _unfinished_scans_outside(out: Path, settings: str, planned: set[str]) -> list[Path]:
    """Scans a run cut short wrote with other settings (their records in .simulate-progress name them) that the plan
    `planned` does not write again (fewer subjects, other ids): removed once this run is complete, so they do not
    stay unlisted beside the new cohort, and not before, so that a rerun cancelled at once loses nothing. Records
    from before they named their scan cannot say which."""
    records = sorted((out / PROGRESS).glob("*.json")) if (out / PROGRESS).is_dir() else []
    found = []
    for record in records:
        meta = read_sidecar(record)
        if meta is None or meta.get("settings") == settings or not meta.get("path") or meta["path"] in planned:
            continue
        scan = out / str(meta["path"])
        if scan.resolve().is_relative_to(out.resolve()):
            found.append(scan)
    return found


def _write_scan(task: tuple[tuple[Path, _Drawing, str], SubjectSpec]) -> tuple[dict[str, float], str]:
    """Render and save one scan, unless an interrupted run with the same `settings` (a hash of
    simulation.json) finished it; returns what was measured on it and its progress status, "skipped" for a
    kept scan, which took no time (runs in a worker)."""
    (out, drawing, settings), spec = task
    path, record = out / spec.relative_path, out / PROGRESS / f"{spec.participant_id}.json"
    kept = _finished_scan(path, record, settings)
    if kept is not None:
        return kept, "skipped"
    with threadpool_limits(1):  # tiny matrix products: threads only contend with the other workers
        image, measured = render_scan(spec, load_anatomy(drawing.anatomy, drawing.resolution_mm), drawing.seed,
                                      drawing.resolution_mm)
    remove_stale_temps(path.parent)
    with atomic_path(path) as temp:
        nib.save(image, temp)
    # (name, value) pairs: write_json sorts keys, and truth.csv keeps the order render_scan gave
    write_json(record, {"settings": settings, "path": spec.relative_path, "scan_sha256": file_sha256(path),
                        "measured": list(measured.items())})
    return measured, "done"


def _finished_scan(path: Path, record: Path, settings: str) -> dict[str, float] | None:
    """What was measured on a scan an earlier run wrote with the same settings, if the scan is still the
    file it wrote (not cut short or replaced since); None when it must be rendered."""
    meta = read_sidecar(record)
    if meta is None or meta.get("settings") != settings or not path.is_file():
        return None
    return dict(meta["measured"]) if file_sha256(path) == meta.get("scan_sha256") else None


def settings_hash(description: dict) -> str:
    """What a progress record keeps a scan under: a resume keeps only the scans drawn with the same hash."""
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def _truth_row(spec: SubjectSpec, measured: dict[str, float]) -> dict:
    row = {"participant_id": spec.participant_id, "session_id": spec.session_id, "path": spec.relative_path,
           "diagnosis": spec.diagnosis, "age": spec.age, "sex": spec.sex, "cohort": spec.cohort,
           "true_diagnosis": spec.true_diagnosis, "label_flipped": spec.diagnosis != spec.true_diagnosis,
           "severity": spec.severity}
    row.update({f"change_{name}": round(value, 5) for name, value in spec.changes.items()})
    row.update(measured)
    row.update(spec.pose.record())
    return row


def _description(specs: list[SubjectSpec], drawing: _Drawing) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for spec in specs:
        counts.setdefault(spec.cohort, {}).setdefault(spec.true_diagnosis, 0)
        counts[spec.cohort][spec.true_diagnosis] += 1
    return {
        "simulated": True,
        "note": "Simulated from the anatomy below; not real patients. truth.csv is for scoring only.",
        # the code's own: a resume by a version that draws otherwise redraws the scans an older one finished
        "simulator_version": SIMULATOR_VERSION,
        "seed": drawing.seed, "label_noise": drawing.label_noise, "resolution_mm": drawing.resolution_mm,
        "anatomy": drawing.anatomy, "atrophy_scale": drawing.atrophy_scale,
        # a file's content, not its name: another head saved under the same path is another cohort (resume)
        **({} if drawing.anatomy in ANATOMIES else {"anatomy_sha256": scan_sha256(drawing.anatomy)}),
        "true_class_counts": counts, "class_fractions": CLASS_FRACTIONS,
        "regions": [vars(region) for region in REGIONS],
        "sites": {name: profile.as_dict() for name, profile in SITES.items()},
        "pose": "scanner point x = R·y + t for head (MNI) point y; R = Rz·Ry·Rx of pose_r{x,y,z}_deg about the "
                "MNI origin, t = pose_t{x,y,z}_mm",
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "nibabel": nib.__version__},
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elr-mri simulate-cohort", description=(
        "Write a simulated ADNI-like cohort and a NACC-like holdout to a folder, their true diagnoses apart."))
    parser.add_argument("--out", type=nonempty_path, required=True, help="output folder")
    parser.add_argument("--subjects", type=int, default=120, help="subjects of the ADNI-like training site (default 120)")
    parser.add_argument("--holdout-subjects", type=int, default=None,
                        help="subjects of the NACC-like holdout site (default: --subjects // 3)")
    parser.add_argument("--label-noise", type=float, default=0.2,
                        help="fraction of diagnoses flipped to a neighbouring stage, CN<->MCI or MCI<->AD, at both sites "
                             "(the holdout's too; truth.csv keeps the true ones) (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same bytes")
    parser.add_argument("--resolution", type=float, default=2.0, help="voxel size of the written scans in mm, the holdout site's 1.25x as long left-right (default 2; "
                             "above 2.4 preprocess QC flags the holdout's scans as thick-sliced)")
    parser.add_argument("--anatomy", default="mni152",
                        help=f"{' or '.join(ANATOMIES)} (colin27: the copy in ../shared/data/mri beside a checkout; "
                             "an installed elr-mri has none: pass Colin27's path), or a T1 NIfTI in MNI space "
                             "(default %(default)s)")
    parser.add_argument("--atrophy-scale", type=float, default=1.0,
                        help="multiply the disease's volume changes (default 1, ADNI-like; at most 2: a plainer signal)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1; results do not depend on it)")
    parser.add_argument("--overwrite", action="store_true", help="replace a cohort already in --out")
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    return parser
