"""The 1046-training-scan simulated cohort of bench/results/mri_n1200.md, from nothing, in one folder.

Every figure in that file came from this recipe; keeping it here (not in an ignored runs/ folder) is what
lets anyone rebuild the cohort and rerun a row. Three steps, each resumable (rerun the same command):

  python scripts/mri_n1200.py cohort            # simulate 480+40 and 720 participants, preprocess all (~1.7 h here)
  python scripts/mri_n1200.py assemble          # merged manifests, truth, splits, the 45%-noise labels
                                                # (--first-only: the first cohort alone, 326 training scans)
  python scripts/mri_n1200.py train NAME --loss elr [--labels given45] [--splits val110] [--val clean] [--seed N]
  python scripts/mri_n1200.py extra-sets        # optional: 200 + 200 new participants to evaluate on (~50 min)
  python scripts/mri_n1200.py evaluate NAME ... # evaluate finished runs on every set present (after extra-sets)

`train` runs `elr-mri train` (configs/adni/cpu_small.yaml, 24 epochs, one thread; resumes a killed run, continues
a finished one to more --epochs, and refuses a run folder trained with other settings) and
then `elr-mri evaluate` of the best and last checkpoints on the test split, the NACC-like holdout and, once
`extra-sets` has run, the extra sets. Score finished runs against the truth with
`bench/mri_demo_scaling.py --truth WORK/truth.csv [--truth WORK/truth_extra.csv] --paired CE ELR`.

The cohort: a first simulation (seed 1) gives 480 training-site and 40 holdout participants; its participants
are split as `elr-mri train` splits them (split seed 0: 326 train, 58 validation, 96 test). A second
simulation (seed 2) adds 720 training-site participants, all to training, renamed `sub-ADNISIMB…` so IDs stay
unique: 1046 train, 58 validation, 96 test. `splits_val110.csv` moves 52 drawn training participants to
validation (994 / 110 / 96, the paper's 10%); `train_given45.csv` raises the label noise from 30% to 45% by
flipping more of the correct labels to a neighbouring stage (the simulator's rule). `--val clean` selects
checkpoints on the validation scans' true diagnoses (`data.mri.val_labels`), as a consensus panel would give them.

The extra sets exist because 96 test and 40 holdout participants leave intervals of ±10–15 points on a paired
difference: a third simulation (seed 3) gives 200 new training-site participants (`extra_test_manifest.csv`,
never trained on) and 200 new NACC-like ones (`extra_holdout_manifest.csv`), renamed `…SIMC…`, with their
truth in `truth_extra.csv`. They change no split, label or run; they only add evaluations.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from paper_runs import output_folder, run_script
from parallel_runs import POLL_SECONDS, PlannedRun, stop_processes, train_command

from elr_mri.data.cohort import load_manifest
from elr_mri.data.splits import split_participants
from elr_mri.atomic_files import atomic_write_text
from elr_mri.evaluation.evaluation_folder import evaluation_dir
from elr_mri.simulate.cohort import HOLDOUT_SITE, TRAIN_SITE, raise_label_noise
from elr_mri.stopping import stop_if_terminated

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "adni" / "cpu_small.yaml"
CLASSES = ["CN", "MCI", "AD"]
# (folder, simulate-cohort arguments): the first holds the validation, test and holdout participants.
COHORTS = {
    "first": ["--subjects", "480", "--holdout-subjects", "40", "--seed", "1"],
    "added": ["--subjects", "720", "--holdout-subjects", "0", "--seed", "2"],
}
# A third simulation, only for evaluation: new participants of both sites (the `extra-sets` step).
EXTRA_COHORT = ["--subjects", "200", "--holdout-subjects", "200", "--seed", "3"]
EXTRA_RENAMED = {"sub-ADNISIM": "sub-ADNISIMC", "sub-NACCSIM": "sub-NACCSIMC"}
SHARED_SIMULATION = ["--label-noise", "0.3", "--atrophy-scale", "1.6", "--jobs", "2"]
RENAMED_PREFIX = ("sub-ADNISIM", "sub-ADNISIMB")  # the added cohort's IDs, made distinct from the first's
MOVED_TO_VALIDATION = 52  # 58 + 52 = 110 validation scans, 10% of the training site as in the paper
RAISED_NOISE = 0.45
LABELS = {"given": "train_given.csv", "clean": "train_clean.csv", "given45": "train_given45.csv"}
SPLITS = {"val58": "splits.csv", "val110": "splits_val110.csv"}
# Manifests a finished run is evaluated on besides its test split (the extra ones once `extra-sets` has run).
EVALUATION_MANIFESTS = ["holdout_manifest.csv", "extra_test_manifest.csv", "extra_holdout_manifest.csv"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # the steps, in order
    parser.add_argument("--work", type=output_folder, default=ROOT / "runs" / "n1200",
                        help="folder for everything, given before the step (default: runs/n1200 in the project)")
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("cohort", help="simulate both cohorts and preprocess them (resumable)")
    steps.add_parser("extra-sets", help="simulate and preprocess 200 + 200 new participants to evaluate on")
    evaluation = steps.add_parser("evaluate", help="evaluate finished runs on every evaluation set present")
    evaluation.add_argument("names", nargs="+", help="run folders under WORK/runs/")
    assembly = steps.add_parser("assemble", help="merged manifests, truth.csv, splits and the 45%%-noise labels")
    assembly.add_argument("--first-only", action="store_true",
                          help="leave out the added cohort: 326 training scans, trains in a third of the time")
    train = steps.add_parser("train", help="train one run, then evaluate it on test and holdout")
    train.add_argument("name", help="run folder under WORK/runs/")
    train.add_argument("--loss", required=True, choices=["ce", "elr", "elr_plus"], help="the loss trained")
    train.add_argument("--labels", choices=sorted(LABELS), default="given",
                       help="training labels: given (30%% wrong, default), given45 (45%%) or clean (the truth)")
    train.add_argument("--splits", choices=sorted(SPLITS), default="val110",
                       help="val110 (994 train, 110 validation, 96 test; default) or val58 (1046, 58, 96)")
    train.add_argument("--val", choices=["noisy", "clean"], default="noisy",
                       help="validation labels: as in the training labels, or the truth (a consensus panel's)")
    train.add_argument("--seed", type=int, default=0, help="seed of the network and its batches (default 0)")
    train.add_argument("--epochs", type=int, default=24, help="(default 24)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="further config overrides, e.g. loss.lam_ramp_steps=2000")
    args = parser.parse_args(argv)
    if args.step == "cohort":
        build_cohorts(args.work)
    elif args.step == "assemble":
        assemble(args.work, args.first_only)
    elif args.step == "extra-sets":
        build_extra_sets(args.work)
    elif args.step == "evaluate":
        for name in args.names:
            evaluate_everywhere(args.work, args.work / "runs" / name)
    else:
        train_and_evaluate(args)


def build_cohorts(work: Path) -> None:
    for name, arguments in COHORTS.items():
        _simulate_and_preprocess(work / name, arguments)


def build_extra_sets(work: Path) -> None:
    _simulate_and_preprocess(work / "extra", EXTRA_COHORT)
    write_extra_sets(work)


def write_extra_sets(work: Path) -> None:
    """The extra participants' manifests (one per site) and truth, with IDs that no other cohort uses."""
    extra = _site_manifest(work / "extra")
    for prefix, renamed in EXTRA_RENAMED.items():
        extra["participant_id"] = extra["participant_id"].str.replace(prefix, renamed, regex=False)
    for site, file_name in ((TRAIN_SITE, "extra_test_manifest.csv"), (HOLDOUT_SITE, "extra_holdout_manifest.csv")):
        _write(extra[extra["cohort"] == site].drop(columns="true_diagnosis"), work / file_name)
    _write(extra[["participant_id", "session_id", "true_diagnosis"]], work / "truth_extra.csv")
    for site, group in extra.groupby("cohort"):
        print(f"{site}: {len(group)} scans, true diagnoses {group['true_diagnosis'].value_counts().to_dict()}")


def _simulate_and_preprocess(folder: Path, arguments: list[str]) -> None:
    cohort, processed = folder / "cohort", folder / "preprocessed"
    if not (cohort / "manifest.csv").exists():
        _elr_mri("simulate-cohort", "--out", cohort, *arguments, *SHARED_SIMULATION)
    _elr_mri("preprocess", "--input", cohort / "manifest.csv", "--output", processed, "--resolution", "2",
             "--jobs", "2")


def assemble(work: Path, first_only: bool = False) -> None:
    """Write the manifests, truth and splits every run of the experiment reads (`first_only`: without the
    added cohort, so the same files describe the 326 / 58 / 96 experiment)."""
    first = _site_manifest(work / "first")
    added = first.iloc[:0] if first_only else _site_manifest(work / "added")
    added["participant_id"] = added["participant_id"].str.replace(*RENAMED_PREFIX, regex=False)
    train_site = pd.concat([first[first["cohort"] == TRAIN_SITE], added], ignore_index=True)
    holdout = first[first["cohort"] == HOLDOUT_SITE]
    _write(train_site, work / LABELS["given"])
    _write(train_site.assign(diagnosis=train_site["true_diagnosis"]), work / LABELS["clean"])
    _write(holdout.drop(columns="true_diagnosis"), work / "holdout_manifest.csv")
    _write(pd.concat([train_site, holdout])[["participant_id", "session_id", "true_diagnosis"]],
           work / "truth.csv")
    raised = raise_label_noise(np.random.default_rng(0), list(train_site["true_diagnosis"]),
                               list(train_site["diagnosis"]), RAISED_NOISE)
    _write(train_site.assign(diagnosis=raised), work / LABELS["given45"])

    first_site = load_manifest(work / "first" / "preprocessed" / "manifest.csv", CLASSES, require_age=True)
    first_site = first_site[first_site["cohort"] == TRAIN_SITE]
    split = split_participants(first_site, test_fraction=0.2, val_fraction=0.15, seed=0)
    splits = pd.DataFrame({"participant_id": train_site["participant_id"].unique()})
    splits["split"] = splits["participant_id"].map(split).fillna("train")
    moved = splits[splits["split"] == "train"].sample(n=MOVED_TO_VALIDATION, random_state=0).index
    splits_val110 = splits.assign(split=splits["split"].where(~splits.index.isin(moved), "val"))
    _write(splits, work / SPLITS["val58"])
    _write(splits_val110, work / SPLITS["val110"])

    for name, labels in (("30%", train_site["diagnosis"]), ("45%", pd.Series(raised))):
        wrong = (labels.to_numpy() != train_site["true_diagnosis"].to_numpy()).mean()
        print(f"labels at {name}: {len(labels)} training-site scans, {wrong:.3f} wrong")
    for name, frame in (("val58", splits), ("val110", splits_val110)):
        print(f"{name}: {frame['split'].value_counts().to_dict()}")


def train_and_evaluate(args: argparse.Namespace) -> None:
    work, run = args.work, args.work / "runs" / args.name
    if not (work / SPLITS[args.splits]).exists():
        raise FileNotFoundError(f"{work / SPLITS[args.splits]} is missing: run `python scripts/mri_n1200.py assemble` "
                                "first")
    # a folder holding a run of other settings is refused here: it was evaluated as the run asked for
    command = train_command(PlannedRun(args.name, CONFIG, tuple(_train_overrides(args)), run), [])
    if command is not None:
        _run(command)
    evaluate_everywhere(work, run)


def _train_overrides(args: argparse.Namespace) -> list[str]:
    """The --set settings of the run `train` asks for, on top of configs/adni/cpu_small.yaml."""
    work = args.work
    overrides = [f"loss.name={args.loss}", f"data.mri.manifest={work / LABELS[args.labels]}",
                 f"data.mri.splits={work / SPLITS[args.splits]}", f"train.epochs={args.epochs}",
                 f"seed={args.seed}", "train.threads=1", *args.overrides]
    if args.val == "clean":
        overrides.append(f"data.mri.val_labels={work / 'truth.csv'}")
    return overrides


def evaluate_everywhere(work: Path, run: Path) -> None:
    """Best and last checkpoints of a finished run on the test split and every holdout manifest present;
    evaluations already written are kept."""
    if not (run / "summary.json").exists():
        raise FileNotFoundError(f"{run} has no summary.json: train it first (`python scripts/mri_n1200.py train …`)")
    manifests = [work / name for name in EVALUATION_MANIFESTS if (work / name).exists()]
    for manifest in (None, *manifests):
        for checkpoint in ("best", "last"):
            if not (evaluation_dir(run, manifest, checkpoint) / "summary.json").exists():
                _elr_mri("evaluate", "--run", run, "--checkpoint", checkpoint,
                         *(["--manifest", manifest] if manifest else []))


def _site_manifest(folder: Path) -> pd.DataFrame:
    """A cohort's preprocessed manifest with each participant's true diagnosis added (for scoring only)."""
    if not (folder / "preprocessed" / "manifest.csv").exists():
        step = "extra-sets" if folder.name == "extra" else "cohort"
        raise FileNotFoundError(f"{folder / 'preprocessed' / 'manifest.csv'} is missing: run `python "
                                f"scripts/mri_n1200.py {step}` first")
    manifest = pd.read_csv(folder / "preprocessed" / "manifest.csv", dtype={"participant_id": str, "session_id": str})
    truth = pd.read_csv(folder / "cohort" / "truth.csv", dtype={"participant_id": str})
    return manifest.merge(truth[["participant_id", "true_diagnosis"]], on="participant_id", how="left")


def _write(frame: pd.DataFrame, path: Path) -> None:
    atomic_write_text(frame.to_csv(index=False), path)


def _elr_mri(*arguments: object) -> None:
    """Run an `elr-mri` command (`_run`)."""
    _run([str(Path(sys.executable).with_name("elr-mri")), *map(str, arguments)])


def _run(command: list[str]) -> None:
    """Run `command`; where it fails, its own message (above) says why, and this script ends with its exit status (a
    traceback of the call here said nothing more). A SIGTERM to this script (a job's time limit, recorded by
    `run_script`) or a Ctrl-C stops the command as that signal stops `elr-mri`, resumable (`stop_processes`): the
    SIGTERM was left waiting while the command ran on, and every later step after it; a Ctrl-C killed it a quarter
    second later."""
    print("+", shlex.join(command), flush=True)
    process = subprocess.Popen(command)
    try:
        while process.poll() is None:
            time.sleep(POLL_SECONDS)
            stop_if_terminated()
    except BaseException as stop:
        stop_processes([process], stop)
        raise
    if process.returncode:
        sys.exit(process.returncode)


if __name__ == "__main__":
    run_script(main)
