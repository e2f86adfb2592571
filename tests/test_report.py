"""The demo report's tables against the truth: the figures it prints are those of the scoring functions, with
their default resamples, and its verdicts follow the paired interval. Seconds, nothing trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from elr_mri.evaluation.metrics import Interval
from elr_mri.evaluation.truth import mean_paired_difference, rescore_against_truth
from elr_mri.evaluation.compare import HEADLINE_METRICS
from elr_mri.report import _metrics_section, _truth_section, _verdict

CLASSES = ["CN", "MCI", "AD"]


def test_the_report_claims_a_difference_only_when_the_paired_interval_excludes_zero() -> None:
    assert _verdict(Interval(0.05, 0.01, 0.1)) == "ELR above CE"
    assert _verdict(Interval(-0.05, -0.1, -0.01)) == "ELR below CE"
    for touching in (Interval(0.05, 0.0, 0.1), Interval(-0.05, -0.1, 0.0), Interval(0.0, 0.0, 0.0)):
        assert _verdict(touching) == "no difference shown at this size"
    assert _verdict(Interval(float("nan"), float("nan"), float("nan"))).startswith("not defined")


def _run(folder: Path, seed: int, truth: pd.DataFrame) -> Path:
    """A run folder as the report reads it: data_shape.json and eval-test/predictions.csv, one scan a participant."""
    rng = np.random.default_rng(seed)
    (folder / "eval-test").mkdir(parents=True)
    (folder / "data_shape.json").write_text(json.dumps({"train_examples": 34}))
    probs = rng.dirichlet([1, 1, 1], len(truth))
    probs[np.arange(len(truth)), truth["true_diagnosis"].map(CLASSES.index)] += 0.4
    probs /= probs.sum(1, keepdims=True)
    frame = truth[["participant_id", "session_id"]].assign(
        given=truth["true_diagnosis"], predicted=[CLASSES[k] for k in probs.argmax(1)],
        **{f"p_{c}": probs[:, k] for k, c in enumerate(CLASSES)})
    frame.to_csv(folder / "eval-test" / "predictions.csv", index=False)
    return folder


def test_the_truth_section_prints_the_default_scoring_of_each_run_and_the_paired_difference(tmp_path: Path) -> None:
    truth = pd.DataFrame({"participant_id": [f"s{i:02d}" for i in range(24)], "session_id": "ses-M00",
                          "true_diagnosis": [CLASSES[i % 3] for i in range(24)]})
    runs = {"ce": _run(tmp_path / "ce", 1, truth), "elr": _run(tmp_path / "elr", 2, truth)}
    section = _truth_section(runs, truth)
    for loss, run in runs.items():
        report = rescore_against_truth(run / "eval-test" / "predictions.csv", truth)
        cells = " | ".join(str(report.metrics[m]) for m in ("accuracy", "balanced_accuracy", "auc_micro", "auc_macro"))
        assert f"| {loss} | test | {cells} |" in section
    pair = [(runs["ce"] / "eval-test" / "predictions.csv", runs["elr"] / "eval-test" / "predictions.csv")]
    accuracy = mean_paired_difference(pair, truth)
    assert f"| test | {accuracy} ({_verdict(accuracy)}) | " in section


def _scored(folder: Path, accuracy: float) -> None:
    """An evaluation folder's summary.json as `comparison_table` reads it (participant level)."""
    folder.mkdir(parents=True)
    figures = {m: {"estimate": accuracy, "low": accuracy - 0.1, "high": accuracy + 0.1, "resamples": 2000}
               for m in HEADLINE_METRICS}
    (folder / "summary.json").write_text(json.dumps({"participant": figures}))


def test_the_results_table_groups_each_set_networks_first_and_names_the_rocs_level(tmp_path: Path) -> None:
    """The rows came run by run (CE's test and holdout rows with the baselines fitted beside them, then ELR's last),
    and the scan-level ROCs sat under a 'participant level' heading."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for rank, (loss, run) in enumerate(runs.items()):
        for where in ("test", "nacc_sim"):
            _scored(run / f"eval-{where}", 0.5 + rank / 10)
    for where in ("test", "nacc_sim"):  # the demo fits the baselines on the CE run's splits
        for baseline in ("volumes_logreg", "voxels_linear_svm"):
            _scored(runs["ce"] / f"eval-{where}" / "baselines" / baseline, 0.4)
    section = _metrics_section(runs, tmp_path)
    rows = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == [[f"| {method}", where] for where in ("test", "nacc_sim")
                    for method in ("ce", "elr", "volumes_logreg", "voxels_linear_svm")]
    heading, figures = section.split("\n### ")[1].split("\n", 1)
    assert "ROC curves (scan level)" in heading and "roc.png" in figures and "roc.png" not in section.split("\n### ")[0]
