"""Summarise finished MRI demo runs (CE vs ELR) against the simulated truth: one row per run.

For each run directory it reads `summary.json` and `metrics.csv` (training), and the evaluate
outputs `eval-test/` and `eval-<holdout>/` (participant-level accuracy with the bootstrap interval
`elr-mri evaluate` gives; those are scored against the manifest's GIVEN, i.e. noisy, diagnosis). Because
the cohort is simulated, it also scores the same predictions against the TRUE diagnosis
(`truth.csv`), with a 1000-resample participant bootstrap (95% percentile interval), and reports the
memorised fraction (flipped training labels predicted as the given label) at the last epoch.

Usage: python bench/mri_demo_scaling.py --truth COHORT/truth.csv RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def clean_accuracy(predictions: pd.DataFrame, truth: pd.DataFrame, seed: int = 0) -> tuple[float, float, float, int]:
    """Participant-level accuracy against the true diagnosis (mean probabilities per participant)."""
    probs = [c for c in predictions.columns if c.startswith("p_")]
    per = predictions.groupby("participant_id")[probs].mean()
    per["predicted"] = [c[2:] for c in per[probs].idxmax(axis=1)]
    per = per.join(truth.set_index("participant_id")["true_diagnosis"])
    correct = (per["predicted"] == per["true_diagnosis"]).to_numpy(float)
    rng = np.random.default_rng(seed)
    boot = [correct[rng.integers(0, len(correct), len(correct))].mean() for _ in range(1000)]
    return float(correct.mean()), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)), len(correct)


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
        name = evaluation.name.removeprefix("eval-").replace("holdout_manifest", "holdout")
        s = json.loads((evaluation / "summary.json").read_text())["participant"]
        for metric in ("accuracy", "balanced_accuracy"):
            m = s[metric]
            out[f"{name}_{metric}_given"] = f"{m['estimate']:.2f} [{m['low']:.2f}, {m['high']:.2f}]"
        acc, low, high, n = clean_accuracy(pd.read_csv(evaluation / "predictions.csv"), truth)
        out[f"{name}_accuracy_true"] = f"{acc:.2f} [{low:.2f}, {high:.2f}] n={n}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    truth = pd.read_csv(args.truth)
    rows = [row(run, truth) for run in args.runs if (run / "summary.json").exists()]
    frame = pd.DataFrame(rows)
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 60):
        print(frame.T.to_string())


if __name__ == "__main__":
    main()
