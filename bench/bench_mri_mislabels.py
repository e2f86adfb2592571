"""Does the suspected-mislabel table find wrong diagnoses on MRI? Its precision and recall against known flips.

`suspected_mislabels.csv` was scored only on digits (bench_mislabel_source.py). Here a simulated training-site
cohort (true diagnoses known) gets a share of its training and validation diagnoses moved to a neighbouring stage
(CN↔MCI, MCI↔AD: the `transition` noise mode, seeded per run), CE and ELR train on it with
configs/adni/cpu_small.yaml, and each run's table (as `train` writes it: the last epoch's ELR targets, or CE's last
predictions) is scored against the flips. The scans are drawn straight onto the 2 mm MNI grid, cropped to the 72³
the network reads, without head pose or bias field: what `elr-mri preprocess` yields at best, skipping its ANTs
registration (5–7 s a scan on 2 quiet cores: 20 min for 200 scans, the whole budget of this benchmark), so the
network sees the atrophy without registration error. Writes bench/results/mri_mislabels.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from results_file import command_line, intra_op_threads, load_line, write_report
from seeded_runs import add_overrides_option, checked_epochs, percent_or_dash, train_seeds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elr_mri.simulate.acquisition import SITES, corrupt  # noqa: E402
from elr_mri.simulate.anatomy import load_anatomy  # noqa: E402
from elr_mri.simulate.cohort import (MAX_ATROPHY_SCALE, NEIGHBOURS, TRAIN_SITE, plan_cohort,  # noqa: E402
                                     subject_rng)
from elr_mri.simulate.disease import DIAGNOSES  # noqa: E402
from elr_mri.simulate.render import sample_subject, subject_shape  # noqa: E402
from preprocess.user_errors import output_file  # noqa: E402

CONFIG = ROOT / "configs" / "adni" / "cpu_small.yaml"
RESOLUTION_MM = 2.0
CROP = 72  # cpu_small.yaml's crop: the scans are drawn at the size the network reads
TEMPLATE_CENTRE_MM = (0.0, -18.0, 22.0)  # nilearn's MNI152 2009 grid's centre: preprocess's grid's, and its 72³ crop's
STREAM_NOISE = 3  # a subject stream the simulator leaves unused (cohort.STREAM_*), for the scanner noise
HEADER = ("| loss | seed | training scans | truly mislabelled | flagged | precision | recall | suggesting the true "
          "label | memorised at the last epoch | test acc, selected (epoch) / last |\n|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200, help="training-site participants, one scan each")
    parser.add_argument("--noise", type=float, default=0.2, help="share of diagnoses moved to a neighbouring stage")
    parser.add_argument("--atrophy-scale", type=float, default=2.0, help="as simulate-cohort's --atrophy-scale")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--losses", nargs="+", default=["ce", "elr"], choices=["ce", "elr"])
    add_overrides_option(parser)
    parser.add_argument("--out", type=output_file, default=ROOT / "bench" / "results" / "mri_mislabels.md")
    args = parser.parse_args()
    _check_cohort_options(parser, args)
    epochs = checked_epochs(parser, args, CONFIG, args.losses)
    load_start, started = os.getloadavg()[0], time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        cohort = Path(folder)
        manifest = write_cohort(cohort, args.subjects, args.atrophy_scale)
        matrix = write_neighbour_matrix(cohort / "neighbours.csv", args.noise)
        data = [f"data.mri.manifest={manifest}", "data.noise.mode=transition",
                f"data.noise.transition_matrix={matrix}"]
        rows: list[str] = []
        for loss in args.losses:
            runs = train_seeds(CONFIG, [*data, f"loss.name={loss}", *args.overrides], args.seeds, _memorised)
            rows += [_row(loss, seed, run) for seed, run in enumerate(runs)]
            write_report(args.out, _report(args, epochs, rows, load_start, time.monotonic() - started))


def _check_cohort_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a bad cohort setting before any scan is drawn."""
    if args.subjects < 20:  # cpu_small.yaml's fractions give fewer a diagnosis without a validation scan
        parser.error(f"--subjects {args.subjects}: give at least 20, so that each diagnosis has test and validation "
                     "participants")
    if not 0.0 < args.noise < 1.0:
        parser.error(f"--noise {args.noise}: give a share between 0 and 1")
    if not 0.0 < args.atrophy_scale <= MAX_ATROPHY_SCALE:
        parser.error(f"--atrophy-scale {args.atrophy_scale}: give one above 0 and at most {MAX_ATROPHY_SCALE:g}")


def write_cohort(folder: Path, subjects: int, atrophy_scale: float, seed: int = 0) -> Path:
    """Draw the training site's scans (true diagnoses, no label noise: each run injects its own) and write their
    manifest, `true_diagnosis` beside `diagnosis` so that each run scores its table against the truth."""
    anatomy = load_anatomy("mni152", RESOLUTION_MM)
    affine = np.diag([RESOLUTION_MM] * 3 + [1.0])
    affine[:3, 3] = np.asarray(TEMPLATE_CENTRE_MM) - RESOLUTION_MM * (CROP - 1) / 2
    site = replace(SITES[TRAIN_SITE], bias_rms=0.0)  # as N4 leaves it
    rows = []
    for spec in plan_cohort(subjects, 0, 0.0, seed, atrophy_scale):
        clean = sample_subject(anatomy, subject_shape(spec, anatomy, seed), affine, (CROP,) * 3)
        scan, _ = corrupt(subject_rng(seed, STREAM_NOISE, spec.index), clean, site)
        path = folder / f"{spec.participant_id}.nii.gz"
        nib.save(nib.Nifti1Image(scan, affine), path)
        rows.append({"participant_id": spec.participant_id, "session_id": spec.session_id, "path": str(path),
                     "processed_path": str(path), "diagnosis": spec.diagnosis, "true_diagnosis": spec.true_diagnosis,
                     "age": spec.age, "sex": spec.sex})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    print(f"drew {subjects} scans ({CROP}³ at {RESOLUTION_MM:g} mm) into {folder}", flush=True)
    return folder / "manifest.csv"


def write_neighbour_matrix(path: Path, rate: float) -> Path:
    """The transition matrix of the simulator's clinical flips: a `rate` share of each diagnosis moves to a
    neighbouring stage, MCI to CN or AD alike (cohort.NEIGHBOURS), rows and columns in the config's class order."""
    matrix = np.eye(len(DIAGNOSES)) * (1.0 - rate)
    for row, diagnosis in enumerate(DIAGNOSES):
        for neighbour in NEIGHBOURS[diagnosis]:
            matrix[row, DIAGNOSES.index(neighbour)] = rate / len(NEIGHBOURS[diagnosis])
    np.savetxt(path, matrix, delimiter=",")
    return path


def _memorised(run_dir: Path) -> dict[str, Any]:
    """The last epoch's share of the flipped training scans predicted as their given label (Figure 1's memorised)."""
    metrics = pd.read_csv(run_dir / "metrics.csv")
    return {"memorised": float(metrics["noisy_pred_given"].iloc[-1])}


def _row(loss: str, seed: int, run: dict[str, Any]) -> str:
    found = run["mislabels"]
    return (f"| {loss} | {seed} | {run['train_examples']} | {found['truly_mislabelled']} | {found['flagged']} "
            f"| {percent_or_dash(found['precision'])} | {percent_or_dash(found['recall'])} "
            f"| {found['suggestion_true']} | {percent_or_dash(run['memorised'])} "
            f"| {percent_or_dash(run['test_acc_at_best'])} ({run['best_epoch']}) "
            f"/ {percent_or_dash(run['test_acc_last'])} |")


def _report(args: argparse.Namespace, epochs: int, rows: list[str], load_start: float, seconds: float) -> str:
    return (f"Suspected-mislabel table on a simulated MRI cohort: {args.subjects} training-site participants "
            f"(atrophy ×{args.atrophy_scale:g}, {CROP}³ at {RESOLUTION_MM:g} mm, no registration), "
            f"{100 * args.noise:g}% of training and validation diagnoses moved to a neighbouring stage per run, "
            f"`configs/adni/cpu_small.yaml`, {epochs} epochs, {args.seeds} seed{'s' * (args.seeds != 1)} "
            f"(`{command_line()}`). "
            "Precision and recall against the flipped training scans; flagging at random hits their share "
            "(truly mislabelled ÷ training scans). Test accuracy against the true diagnosis.\n\n"
            f"{HEADER}\n" + "\n".join(rows) + "\n\n"
            f"Machine: {platform.machine()}, torch {torch.__version__}, {intra_op_threads(torch.get_num_threads())}; "
            f"{seconds / 60:.1f} min in all. {load_line(load_start)}\n")


if __name__ == "__main__":
    main()
