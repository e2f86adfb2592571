"""Summarise finished MRI demo runs (CE vs ELR) against the simulated truth: one row per run.

For each run directory it reads `summary.json` and `metrics.csv` (training), and the evaluate
outputs `eval-test/` and `eval-<holdout>/` (participant-level accuracy with the bootstrap interval
`elr-mri evaluate` gives; those are scored against the manifest's GIVEN, i.e. noisy, diagnosis). Because
the cohort is simulated, it also scores the same predictions against the TRUE diagnosis
(`truth.csv`), with a 1000-resample participant bootstrap (95% percentile interval), and reports the
memorised fraction (flipped training labels predicted as the given label) at the last epoch.
With `--paired A B`, it also prints B's accuracy minus A's against the truth on the same
participants, with a paired participant bootstrap (the comparison ELR vs CE needs: the two
runs' intervals overlap far more than their difference's does). Repeat `--paired` for the same
comparison at other seeds: it then also prints the mean over the pairs (each participant's
difference averaged over seeds, then participants resampled). `--metric balanced_accuracy` compares
mean recall over the true classes instead, for methods that trade majority-class hits for
minority-class ones (class-balanced batches); `--metric auc_macro` compares the one-vs-rest AUC, which
a mere shift of the decision between classes does not change. Each run's row also gives the share of
participants predicted as each class.

Usage: python bench/mri_demo_scaling.py --truth TRUTH.csv [--paired CE_RUN ELR_RUN ...] [--metric M] RUN_DIR [RUN_DIR ...]
(repeat --truth for each cohort the runs were scored on; rows are matched by participant_id)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from elr_mri.evaluation.metrics_report import Interval
from elr_mri.evaluation.truth import PAIRED_METRICS, mean_paired_difference, rescore_against_truth
from preprocess.user_errors import nonempty_path


def row(run: Path, truth: pd.DataFrame) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    metrics = pd.read_csv(run / "metrics.csv")
    out = {"run": str(run), "loss": summary["loss"], "train_scans": summary["train_examples"],
           "epochs": summary["epochs"], "best_epoch": summary["best_epoch"], "train_s": summary["wall_seconds"]}
    last = metrics.iloc[-1]
    for column in ("noisy_pred_given", "noisy_pred_true", "clean_pred_true", "train_acc_given"):
        if column in metrics:
            out[f"{column}_last"] = round(float(last[column]), 3)
    for evaluation in sorted(e for e in run.glob("eval-*") if (e / "summary.json").exists()):
        name = evaluation.name.removeprefix("eval-").replace("_manifest", "")
        s = json.loads((evaluation / "summary.json").read_text())["participant"]
        for metric in ("accuracy", "balanced_accuracy"):
            m = s[metric]  # as percentages, like the metrics against the truth beside them
            out[f"{name}_{metric}_given"] = str(Interval(m["estimate"], m["low"], m["high"]))
        report = rescore_against_truth(evaluation / "predictions.csv", truth)
        for metric in ("accuracy", "balanced_accuracy", "auc_macro"):
            out[f"{name}_{metric}_true"] = f"{report.metrics[metric]} n={report.n_participants}"
        predicted = pd.read_csv(evaluation / "predictions.csv")["predicted"].value_counts(normalize=True)
        out[f"{name}_predicted_shares"] = " ".join(f"{c} {share:.2f}" for c, share in predicted.sort_index().items())
    return out


def evaluations_in_both(a: Path, b: Path) -> list[str]:
    """Names of the evaluations (eval-*/) both runs have predictions for."""
    return sorted(path.parent.name for path in a.glob("eval-*/predictions.csv")
                  if (b / path.parent.name / "predictions.csv").exists())


def predictions(a: Path, b: Path, evaluation: str) -> tuple[Path, Path]:
    """The two runs' predictions.csv of one evaluation."""
    return a / evaluation / "predictions.csv", b / evaluation / "predictions.csv"


TRUTH_COLUMNS = ("participant_id", "session_id", "true_diagnosis")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", type=nonempty_path, action="append", required=True, help="truth.csv; repeat for several cohorts")
    parser.add_argument("--paired", type=nonempty_path, nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="print B − A against the truth; repeat for other seeds of the same comparison")
    parser.add_argument("--metric", choices=PAIRED_METRICS, default="accuracy",
                        help="what the pairs are compared on (against the truth); default accuracy")
    parser.add_argument("runs", type=nonempty_path, nargs="*")
    args = parser.parse_args()
    check_runs(parser, args)
    truth = pd.concat([read_truth(parser, path) for path in args.truth], ignore_index=True)
    try:  # truth.py's ValueErrors name the file and the fix (a truth.csv that misses these participants)
        report(args, truth)
    except ValueError as error:
        parser.error(str(error))


def check_runs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject, before any scoring, run paths that would otherwise print nothing and exit 0."""
    if not args.runs and not args.paired:
        parser.error("nothing to summarise: give RUN_DIR arguments and/or --paired A B")
    for run in args.runs:
        if not (run / "summary.json").is_file():
            parser.error(f"{run}: not a finished training run (no summary.json); check the path")
    for a, b in args.paired:
        for run in (a, b):
            if not run.is_dir():
                parser.error(f"--paired {a} {b}: no directory {run}; check the path")
        if not evaluations_in_both(a, b):
            parser.error(f"--paired {a} {b}: no eval-*/predictions.csv in both runs; run `elr-mri evaluate` on both")
    if len(args.paired) > 1 and not set.intersection(*(set(evaluations_in_both(a, b)) for a, b in args.paired)):
        parser.error("the --paired pairs share no evaluation (eval-*/ of the same name), so they cannot be pooled")


def read_truth(parser: argparse.ArgumentParser, path: Path) -> pd.DataFrame:
    """One cohort's truth.csv, or a one-line usage error saying what is wrong with it."""
    if not path.is_file():
        parser.error(f"--truth {path}: not a file; pass the simulated cohort's truth.csv")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        parser.error(f"--truth {path}: not a readable CSV ({str(error).splitlines()[0]}); pass the cohort's truth.csv")
    missing = [column for column in TRUTH_COLUMNS if column not in frame]
    if missing:
        parser.error(f"--truth {path}: no column {', '.join(missing)} (a manifest?); pass the simulated cohort's "
                     "truth.csv, which has the true diagnosis")
    return frame


def report(args: argparse.Namespace, truth: pd.DataFrame) -> None:
    """The paired differences, then one column per run."""
    for a, b in args.paired:
        print(f"{b} minus {a}, {args.metric} against the truth:")
        for name in evaluations_in_both(a, b):
            print(f"  {name}: {mean_paired_difference([predictions(a, b, name)], truth, metric=args.metric)}")
    if len(args.paired) > 1:
        print(f"mean over the {len(args.paired)} pairs:")
        for name in sorted(set.intersection(*(set(evaluations_in_both(a, b)) for a, b in args.paired))):
            pairs = [predictions(a, b, name) for a, b in args.paired]
            print(f"  {name}: {mean_paired_difference(pairs, truth, metric=args.metric)}")
    if not args.runs:
        return
    frame = pd.DataFrame([row(run, truth) for run in args.runs])
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 60):
        print(frame.T.to_string())


if __name__ == "__main__":
    main()
