"""The whole pipeline on a simulated Alzheimer's cohort: simulate → preprocess → train CE and ELR → evaluate → report.

ADNI and NACC need data-use agreements; this runs on anything. It simulates an ADNI-like cohort
and a NACC-like holdout from the MNI152 template (noisy CN↔MCI↔AD labels, the true ones kept
aside), preprocesses every scan with ANTs, measures regional volumes, trains cross-entropy and ELR on the
same participant splits, evaluates both on the held-out test participants and on the holdout site
beside the linear baselines (volumes + logistic regression, voxels + linear SVM), and writes
`report.md` to read top to bottom. Every stage is resumable: rerunning skips what is done.
`make demo` runs it with the defaults below.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from elr_mri.evaluation import N_BOOT
from elr_mri.stopping import terminating_at_once, terminating_at_safe_points
from preprocess.signals import Terminated, stopped_exit_code
from preprocess.user_errors import nonempty_path, report_user_error

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "adni" / "cpu_small.yaml"
LOSSES = ("ce", "elr")
# The options that change what the demo computes; a rerun resumes OUT only when they match.
SETTINGS = ("subjects", "holdout_subjects", "label_noise", "epochs", "seed", "volumes_mm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=nonempty_path, default=ROOT / "demo",
                        help="folder of the cohort, the runs and report.md (default: demo/ in the project)")
    parser.add_argument("--subjects", type=int, default=48, help="ADNI-like participants, train/val/test (default 48)")
    parser.add_argument("--holdout-subjects", type=int, default=16, help="NACC-like participants (default 16)")
    parser.add_argument("--label-noise", type=float, default=0.3,
                        help="fraction of diagnoses flipped, at the training and the holdout site alike (default 0.3)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of each training run (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort and the runs (default 0)")
    parser.add_argument("--volumes-mm", type=float, default=2.0,
                        help="grid of the regional volumes' SyN registration in mm (default 2; 4 is coarser and about "
                             "4x faster, as the tests run it)")
    parser.add_argument("--jobs", type=int, default=2, help="processes simulating, preprocessing and measuring volumes (default 2)")
    parser.add_argument("--bootstrap", type=int, default=N_BOOT,
                        help=f"resamples of participants behind each 95%% interval (default {N_BOOT}; 10000 for "
                             "steadier interval ends)")
    args = parser.parse_args()
    if args.bootstrap < 2:
        parser.error(f"--bootstrap {args.bootstrap} must be at least 2 (the intervals need resamples); default {N_BOOT}")
    for name in ("subjects", "holdout_subjects", "epochs", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.label_noise <= 1:  # before the folder records these settings: a typo must not lock it
        parser.error(f"--label-noise {args.label_noise} must be within [0, 1]")
    if not 1 <= args.volumes_mm <= 8:  # finer than the 1 mm template or coarser than the 5 mm regions measures nothing
        parser.error(f"--volumes-mm {args.volumes_mm:g} must be within [1, 8]")
    if not 0 <= args.seed < 2**32:
        parser.error(f"--seed {args.seed} must be within [0, 2**32 - 1]")
    _claim_out(args)
    from preprocess.folder_locks import held_lock

    # a second demo in OUT would rerun preprocess under the first (which then lost its manifest.csv) and add its
    # seconds to the first's timings
    with held_lock(args.out / ".demo.lock", args.out, "mri_demo.py", elsewhere=", or pass another --out"):
        _run_stages(args)


def _run_stages(args: argparse.Namespace) -> None:
    """Every stage, each skipping what OUT already holds, then report.md."""
    timings = _Timings(args.out / "demo_timings.json")
    with _stage(timings, "simulate"):
        cohort = _simulate(args)
    _require_every_split(cohort, args)
    with _stage(timings, "preprocess"):
        processed = _preprocess(args, cohort)
    with _stage(timings, "volumes"):
        volumes = _volumes(args, processed)
    train_csv, holdout_csv = _split_sites(args.out, processed, cohort)
    runs = {}
    for loss in LOSSES:
        with timings.stage(f"train {loss}"):  # a SIGTERM stops training at its next step (`terminating_at_safe_points`)
            runs[loss] = _train(args, loss, train_csv)
        with _stage(timings, f"evaluate {loss}"):
            _evaluate(runs[loss], holdout_csv, args.bootstrap)
    with _stage(timings, "baselines"):
        _baselines(runs, volumes, holdout_csv, args.bootstrap)
    from elr_mri.report import write_demo_report

    seconds = {**timings.seconds, "total": sum(timings.seconds.values())}
    with terminating_at_once():
        report = write_demo_report(args.out, runs, cohort, processed, volumes, vars(args), seconds)
    print(f"report: {report}  ({seconds['total'] / 60:.1f} min in all)")


def _claim_out(args: argparse.Namespace) -> None:
    """Record the settings in OUT/demo_settings.json, or stop if OUT holds a demo made with others: every
    stage reuses what OUT holds, so a changed setting would otherwise report the old cohort or runs."""
    path = args.out / "demo_settings.json"
    wanted = {name: getattr(args, name) for name in SETTINGS}
    recorded = json.loads(path.read_text()) if path.exists() else _settings_of_old_demo(args.out)
    changed = [name for name in SETTINGS if name in recorded and recorded[name] != wanted[name]]
    if changed:
        held = " ".join(f"--{name.replace('_', '-')} {recorded[name]}" for name in changed)
        raise ValueError(f"{args.out} holds a demo made with {held}; rerun with those to resume it, "
                         "or pass another --out (or delete that folder) to start anew")
    from preprocess.sidecar import write_json

    if args.out.is_file():  # mkdir's "File exists" read as a folder already there that could not be written
        raise ValueError(f"--out {args.out}: is a file; pass a folder for the demo (a new one is made)")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {args.out}: cannot create it ({err.strerror}); pass a writable folder") from None
    write_json(path, wanted)


def _settings_of_old_demo(out: Path) -> dict:
    """What a demo folder from before demo_settings.json was simulated with, read from its cohort."""
    simulation = out / "cohort" / "simulation.json"
    if not simulation.exists():
        return {}
    recorded = json.loads(simulation.read_text())
    counts = recorded["true_class_counts"]
    return {"subjects": sum(counts["adni_sim"].values()), "holdout_subjects": sum(counts["nacc_sim"].values()),
            "label_noise": recorded["label_noise"], "seed": recorded["seed"]}


class _Timings:
    """Seconds each stage took, summed over every call that worked on OUT (kept in `path`): after an
    interruption the rerun skips finished stages, and the report must still show where the time went."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:  # an interrupted stage's seconds count too: the rerun continues its work
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            from preprocess.sidecar import write_json

            write_json(self.path, self.seconds)


@contextlib.contextmanager
def _stage(timings: _Timings, name: str) -> Iterator[None]:
    """A timed stage without training steps: a SIGTERM during it stops it where it lands, one recorded before (while
    training or between stages) at its start. Only recorded, it left the stage running to its end and the next one
    on, and before `terminating_at_safe_points` its default action ended the demo without a word."""
    with timings.stage(name), terminating_at_once():
        yield


def _simulate(args: argparse.Namespace) -> Path:
    from elr_mri.simulate.cli import main as simulate

    cohort = args.out / "cohort"
    if not (cohort / "manifest.csv").exists():
        code = simulate(["--out", str(cohort), "--subjects", str(args.subjects), "--holdout-subjects",
                         str(args.holdout_subjects), "--label-noise", str(args.label_noise), "--seed", str(args.seed),
                         "--jobs", str(args.jobs), "--overwrite"], say_how_to_go_on=False)
        _stop_if_stopped(code)
        if code:
            raise SystemExit(f"simulate-cohort failed (exit {code})")
    return cohort


def _stop_if_stopped(code: int) -> None:
    """A step's exit code of Ctrl-C (130) or SIGTERM (143) raised again here: the demo then stops saying how to go on,
    where reading it as any other code called a step stopped by a job's time limit failed."""
    if code == 128 + signal.SIGTERM:
        raise Terminated
    if code == 130:
        raise KeyboardInterrupt


def _require_every_split(cohort: Path, args: argparse.Namespace) -> None:
    """Stop before the slow stages when the training site is too small for the config's splits (each
    diagnosis gives round(fraction · n) participants to test and validation)."""
    from elr_mri.config import load_config
    from elr_mri.data.splits import split_participants

    data = load_config(CONFIG).data
    manifest = pd.read_csv(cohort / "manifest.csv", dtype={"participant_id": str})
    site = manifest[manifest["cohort"] == "adni_sim"]
    split = split_participants(site, data.mri.test_fraction, data.val_fraction, args.seed)
    empty = [name for name in ("train", "val", "test") if not (split == name).any()]
    if empty:
        raise ValueError(f"--subjects {args.subjects} leaves the {' and '.join(empty)} split(s) without a participant "
                         f"(configs/adni/cpu_small.yaml: test {data.mri.test_fraction:g}, validation "
                         f"{data.val_fraction:g} of each diagnosis); pass more --subjects and a new --out")


def _preprocess(args: argparse.Namespace, cohort: Path) -> Path:
    from preprocess.cli import main as preprocess

    processed = args.out / "preprocessed"
    code = preprocess(["--input", str(cohort / "manifest.csv"), "--output", str(processed), "--resolution", "2",
                       "--jobs", str(args.jobs)], say_how_to_go_on=False)
    if code == 1:  # a failed scan is listed in failures.csv; the others go on to training
        print(f"preprocess: some scans failed, see {processed / 'failures.csv'}")
    _stop_if_stopped(code)
    if code > 1:
        raise SystemExit(f"preprocess stopped (exit {code}); its message above says why")
    return processed


def _volumes(args: argparse.Namespace, processed: Path) -> Path:
    """Regional volumes of every scan (SyN on the template-space images; cached per scan)."""
    from elr_mri.volumes.measure import VolumeParams, measure_manifest

    out, _, failures, _ = measure_manifest(processed / "manifest.csv",
                                           params=VolumeParams(registration_mm=args.volumes_mm), jobs=args.jobs)
    if len(failures):
        print(f"volumes: {len(failures)} scans failed, see {out.with_name(out.stem + '_failures.csv')}")
    return out


def _split_sites(out: Path, processed: Path, cohort: Path) -> tuple[Path, Path]:
    """Training manifest (ADNI-like site, with the true diagnosis for scoring only) and the holdout site's, written
    atomically: pandas wrote them in place, so a demo killed or stopped by a full disk there left one cut short, which
    configs/adni/cpu_small.yaml reads as its manifest, and the disk's error named no file."""
    from elr_mri.atomic_files import atomic_write_text

    manifest = pd.read_csv(processed / "manifest.csv")
    truth = pd.read_csv(cohort / "truth.csv")[["participant_id", "true_diagnosis"]]
    manifest = manifest.merge(truth, on="participant_id", how="left")
    train_csv, holdout_csv = out / "train_manifest.csv", out / "holdout_manifest.csv"
    atomic_write_text(manifest[manifest["cohort"] == "adni_sim"].to_csv(index=False), train_csv)
    atomic_write_text(manifest[manifest["cohort"] == "nacc_sim"].drop(columns="true_diagnosis").to_csv(index=False),
                      holdout_csv)
    return train_csv, holdout_csv


def _train(args: argparse.Namespace, loss: str, train_csv: Path) -> Path:
    from paper_runs import run_or_resume

    run = args.out / "runs" / loss
    overrides = [f"loss.name={loss}", f"data.mri.manifest={train_csv}", f"train.epochs={args.epochs}",
                 f"seed={args.seed}", f"data.split_seed={args.seed}"]
    run_or_resume(CONFIG, overrides, run)
    return run


def _evaluate(run: Path, holdout_csv: Path, n_boot: int) -> None:
    """Score `run` on its test split and the holdout, again where a summary.json drew another count of resamples:
    a rerun with another --bootstrap must not report the first one's intervals."""
    from elr_mri.evaluation.evaluate import evaluate_run
    from elr_mri.evaluation.evaluation_folder import evaluation_dir

    for manifest in (None, holdout_csv):
        summary = evaluation_dir(run, manifest) / "summary.json"
        if not summary.exists() or json.loads(summary.read_text()).get("bootstrap_resamples", N_BOOT) != n_boot:
            evaluate_run(run, manifest, n_boot=n_boot)


def _baselines(runs: dict[str, Path], volumes: Path, holdout_csv: Path, n_boot: int) -> None:
    """Linear baselines on the CE run's splits (ELR's are the same), plain and without ELR's flagged scans; those
    without them are skipped, saying why, where ELR's flags leave one diagnosis. Any other problem stops the demo."""
    from elr_mri.baselines.evaluate import OneDiagnosisLeft, evaluate_baselines

    for manifest in (None, holdout_csv):
        for drop in (None, runs["elr"]):
            try:
                evaluate_baselines(runs["ce"], [volumes], manifest, drop, n_boot)
            except OneDiagnosisLeft as err:
                print(f"baselines skipped: {err}")


def _run_saying_how_it_ended(demo: Callable[[], None]) -> None:
    """Run `demo`; a SIGTERM or Ctrl-C at any stage ends it with one line saying how to go on (exit 143 or 130), and
    a user's problem (a run's config.yaml cut short, an --out on read-only storage) in one line, as elr-mri's."""
    try:
        with terminating_at_safe_points():
            demo()
    except KeyboardInterrupt as stop:
        sys.exit(stopped_exit_code(stop, "mri_demo.py", "every stage resumes where it stopped"))
    except Exception as err:
        from elr_mri.commands.problems import user_problem

        problem = user_problem(err)
        if problem is None:
            raise
        sys.exit(report_user_error("mri_demo.py", problem, rerun_keeps="every stage resumes where it stopped"))


if __name__ == "__main__":
    _run_saying_how_it_ended(main)
