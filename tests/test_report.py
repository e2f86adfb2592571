"""The demo report's tables against the truth: the figures it prints are those of the scoring functions, with
the resamples evaluate drew, and its verdicts follow the paired interval. Seconds, nothing trained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from elr_mri.config import ConfigError, load_config
from elr_mri.engine.selection import selection_rule
from elr_mri.evaluation.metrics_report import Interval
from elr_mri.evaluation.truth import mean_paired_difference, rescore_against_truth
from elr_mri.evaluation.compare import HEADLINE_METRICS
from elr_mri.report import _cohort_section, _mislabel_section, _preprocess_section, _saliency_section, _training_section
from elr_mri.report_results import _difference_cell, _rare_notes, _size_caveat, _verdict, metrics_section, truth_section
from elr_mri.volumes.recovery import TRUTH_COLUMNS

CLASSES = ["CN", "MCI", "AD"]
CONFIG = Path(__file__).parents[1] / "configs" / "adni" / "cpu_small.yaml"


def test_the_report_claims_a_difference_only_when_the_paired_interval_excludes_zero() -> None:
    assert _verdict(Interval(0.05, 0.01, 0.1)) == "ELR above CE"
    assert _verdict(Interval(-0.05, -0.1, -0.01)) == "ELR below CE"
    for touching in (Interval(0.05, 0.0, 0.1), Interval(-0.05, -0.1, 0.0), Interval(0.0, 0.0, 0.0)):
        assert _verdict(touching) == "no difference shown at this size"
    assert _verdict(Interval(float("nan"), float("nan"), float("nan"))).startswith("not defined")


def test_a_difference_without_an_interval_is_not_read_as_no_difference() -> None:
    """One shared participant (or no resample drawing every diagnosis): the estimate stands, the interval is NaN; it
    read "no difference shown at this size", as if an interval had straddled zero."""
    verdict = _verdict(Interval(0.5, float("nan"), float("nan"), 0))
    assert verdict.startswith("no interval") and "too few participants" in verdict


def _run(folder: Path, seed: int, truth: pd.DataFrame, n_boot: int = 200) -> Path:
    """A run folder as the report reads it: data_shape.json, eval-test/predictions.csv, one scan a participant, and
    eval-test/summary.json saying evaluate drew `n_boot` resamples (fewer than the default, as the tests need)."""
    rng = np.random.default_rng(seed)
    (folder / "eval-test").mkdir(parents=True)
    (folder / "eval-test" / "summary.json").write_text(json.dumps({"bootstrap_resamples": n_boot}))
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
    runs = {"ce": _run(tmp_path / "ce", 1, truth, 1000), "elr": _run(tmp_path / "elr", 2, truth, 1000)}
    section = truth_section(runs, truth)
    for loss, run in runs.items():
        report = rescore_against_truth(run / "eval-test" / "predictions.csv", truth)
        cells = " | ".join(str(report.metrics[m]) for m in ("accuracy", "balanced_accuracy", "auc_micro", "auc_macro"))
        assert f"| {loss} | test | 24 | {cells} |" in section
    pair = [(runs["ce"] / "eval-test" / "predictions.csv", runs["elr"] / "eval-test" / "predictions.csv")]
    accuracy = mean_paired_difference(pair, truth)
    assert f"| test | {accuracy} ({_verdict(accuracy)}) | " in section


def test_two_runs_that_predict_alike_are_said_to_not_an_interval_of_width_zero(tmp_path: Path) -> None:
    """CE and ELR both called every participant MCI (a tiny demo): the paired accuracy read "0.0 [0.0, 0.0] (no
    difference shown at this size)", a precise-looking result. Their probabilities differ, so the AUC's stays."""
    truth = pd.DataFrame({"participant_id": [f"s{i:02d}" for i in range(12)], "session_id": "ses-M00",
                          "true_diagnosis": [CLASSES[i % 3] for i in range(12)]})
    runs = {"ce": _run(tmp_path / "ce", 1, truth), "elr": _run(tmp_path / "elr", 2, truth)}
    for shift, run in enumerate(runs.values()):
        predictions = pd.read_csv(run / "eval-test" / "predictions.csv")
        p_mci = 0.6 + 0.02 * np.random.default_rng(shift).permutation(len(truth))  # MCI for all, in another order
        predictions = predictions.assign(predicted="MCI", p_CN=(1 - p_mci) / 3, p_MCI=p_mci, p_AD=2 * (1 - p_mci) / 3)
        predictions.to_csv(run / "eval-test" / "predictions.csv", index=False)
    section = truth_section(runs, truth)
    row = next(line for line in section.splitlines() if line.startswith("| test | "))
    cells = row.strip("| ").split(" | ")[1:]
    assert cells[:2] == ["0.0 (identical predictions on all 12 participants)"] * 2, row
    assert cells[2].endswith(")") and "identical" not in cells[2] and "[" in cells[2]


def _scored(folder: Path, accuracy: float, resamples: dict[str, int] | None = None,
            given: tuple[str, ...] = ("CN", "MCI", "AD"), n_boot: int = 200) -> None:
    """An evaluation folder as `comparison_table` and the report read it: summary.json (participant level), from
    `n_boot` resamples, each metric defined in all of them but those `resamples` names, and predictions.csv, a
    participant a diagnosis of `given`."""
    folder.mkdir(parents=True)
    figures = {m: {"estimate": accuracy, "low": accuracy - 0.1, "high": accuracy + 0.1,
                   "resamples": (resamples or {}).get(m, n_boot)} for m in HEADLINE_METRICS}
    (folder / "summary.json").write_text(json.dumps({"bootstrap_resamples": n_boot, "participant": figures,
                                                     "balanced_accuracy_classes": [c for c in CLASSES if c in given]}))
    pd.DataFrame({"participant_id": [f"s{i}" for i in range(len(given))], "session_id": "ses-M00", "given": given,
                  "predicted": "CN", **{f"p_{c}": 1 / 3 for c in CLASSES}}).to_csv(folder / "predictions.csv",
                                                                                  index=False)


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
    section = metrics_section(runs, tmp_path)
    rows = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == [[f"| {method}", where] for where in ("test", "nacc_sim")
                    for method in ("ce", "elr", "volumes_logreg", "voxels_linear_svm")]
    heading, figures = section.split("\n### ")[1].split("\n", 1)
    assert "ROC curves (scan level)" in heading and "roc.png" in figures and "roc.png" not in section.split("\n### ")[0]


def test_the_results_table_says_the_holdouts_labels_are_noisy_too_and_that_each_network_is_one_seed(
        tmp_path: Path) -> None:
    """The demo flips the holdout site's diagnoses as it does the training site's, yet the report said only that the
    holdout was scored against its given labels, beside the test split's 'i.e. noisy', and nowhere by the numbers
    that each network is a single seed's."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for run in runs.values():
        _scored(run / "eval-holdout_manifest", 0.5)
    section = " ".join(metrics_section(runs, tmp_path).split())
    assert "scored against its given labels, which are noisy too" in section
    assert "Each network is one training run of one seed" in section


def test_both_results_tables_say_brier_is_not_a_percentage_and_that_a_small_sets_ece_leans_high(
        tmp_path: Path) -> None:
    """Both tables were headed "%", so a Brier score of 0.64 printed 64.0 read as 64%; and the ECE of 9 or 16
    participants, biased upwards on a set that small, stood beside the others as any figure."""
    truth = pd.DataFrame({"participant_id": [f"s{i:02d}" for i in range(12)], "session_id": "ses-M00",
                          "true_diagnosis": [CLASSES[i % 3] for i in range(12)]})
    runs = {"ce": _run(tmp_path / "ce", 1, truth), "elr": _run(tmp_path / "elr", 2, truth)}
    against_truth = truth_section(runs, truth)
    scored = {"ce": tmp_path / "scored"}
    _scored(scored["ce"] / "eval-test", 0.5)
    results = metrics_section(scored, tmp_path)
    assert results.startswith("## Results (participant level, % (brier ×100, from 0 to 200), 95% bootstrap")
    assert "Participant level, % (brier ×100, from 0 to 200), 95% bootstrap intervals" in " ".join(
        against_truth.split())
    words = " ".join(results.split())
    assert "brier is 0 for a network sure and right, 200 for one sure and wrong" in words
    assert "On sets of a few dozen participants or fewer the ECE is biased upwards" in words


def test_the_figures_list_each_runs_test_split_first_as_the_tables_do(tmp_path: Path) -> None:
    """eval-holdout_manifest sorted before eval-test: each run's ROC and confusion figures came holdout first, under
    a table that lists the test split first."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for run in runs.values():
        for where in ("holdout_manifest", "test"):
            _scored(run / f"eval-{where}", 0.5)
    figures = [line.split(":")[0] for line in metrics_section(runs, tmp_path).splitlines() if "![ROC]" in line]
    assert figures == ["ce, eval-test", "ce, eval-holdout_manifest", "elr, eval-test", "elr, eval-holdout_manifest"]


def test_the_results_say_how_many_training_scans_the_baselines_without_suspected_kept(tmp_path: Path) -> None:
    """ELR flagged 4 of a 6-scan demo's training scans: its `*_without_suspected` rows were fitted on 2, and the
    report said only that they leave out the flagged scans."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for run in runs.values():
        _scored(run / "eval-test", 0.5)
    for name in ("volumes_logreg", "volumes_logreg_without_suspected"):
        _scored(runs["ce"] / "eval-test" / "baselines" / name, 0.4)
    kept = runs["ce"] / "eval-test" / "baselines" / "volumes_logreg_without_suspected" / "summary.json"
    kept.write_text(json.dumps({**json.loads(kept.read_text()), "train_scans": 2, "dropped_suspected": 4}))
    section = " ".join(metrics_section(runs, tmp_path).split())
    assert "a single diagnosis to train on); here fitted on 2 training scans, the 4 flagged left out." in section
    kept.write_text(json.dumps({**json.loads(kept.read_text()), "train_scans": 1, "dropped_suspected": 5}))
    section = " ".join(metrics_section(runs, tmp_path).split())
    assert "here fitted on 1 training scan, the 5 flagged left out." in section


def test_the_results_name_what_evaluate_warned_of_beside_the_scores_it_qualifies(tmp_path: Path) -> None:
    """`evaluate` printed that holdout scans were aged outside the training ages and kept it nowhere, so the report
    showed their scores without it; a summary.json from before it was kept has no such key."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for run in runs.values():
        _scored(run / "eval-test", 0.5)
        _scored(run / "eval-nacc", 0.4)
    aged = "nacc.csv: 1 of 3 scans are aged outside the 55.3-91.8 years of ce's training scans (e.g. s1 ses-M00, 45)"
    summary = runs["ce"] / "eval-nacc" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "warnings": [aged]}))
    lines = metrics_section(runs, tmp_path).splitlines()
    assert lines.index(f"- **ce** on nacc: {aged}") == lines.index("Warnings from scoring:") + 2
    assert lines.index("Warnings from scoring:") < lines.index("### ROC curves (scan level), confusion matrices and "
                                                                 "reliability diagrams (participant level)")
    assert sum("aged outside" in line for line in lines) == 1


def test_the_results_table_marks_intervals_from_few_resamples_and_says_how_many(tmp_path: Path) -> None:
    """A 4-participant holdout: macro AUC and balanced accuracy were defined in 78 of 200 resamples, printed like
    any other interval; `elr-mri evaluate` says so, the report did not. 190 of 200 (95%) needs no note."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for loss, run in runs.items():
        _scored(run / "eval-test", 0.5, {"auc_micro": 190})
        _scored(run / "eval-nacc_sim", 1 / 3, {"balanced_accuracy": 78, "auc_macro": 78})
    section = metrics_section(runs, tmp_path)
    row = next(line for line in section.splitlines() if line.startswith("| elr | nacc_sim |"))
    assert row.split(" | ")[3:7] == ["33.3 [23.3, 43.3]", "33.3 [23.3, 43.3] †", "33.3 [23.3, 43.3]",
                                     "33.3 [23.3, 43.3] †"]
    assert "†" not in next(line for line in section.splitlines() if line.startswith("| ce | test |"))
    assert ("† defined in fewer than 95% of the 200 resamples: balanced_accuracy on nacc_sim in 78, auc_macro on "
            "nacc_sim in 78 (the others drew no participant of a class)") in section  # once, not once a method


def test_each_methods_intervals_are_marked_against_its_own_count_of_resamples(tmp_path: Path) -> None:
    """CE rescored with `evaluate --bootstrap 200`, then the demo rerun fitted the baselines with the default 1000:
    every row was judged against CE's 200, so a baseline's balanced accuracy defined in 900 of its 1000 resamples
    (90%) went unmarked, and a count of CE's was said to be of the baselines' resamples."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    _scored(runs["ce"] / "eval-test", 0.5, {"auc_macro": 180})
    _scored(runs["ce"] / "eval-test" / "baselines" / "voxels_linear_svm", 0.4, {"balanced_accuracy": 900},
            n_boot=1000)
    _scored(runs["elr"] / "eval-test", 0.5, {"auc_macro": 900}, n_boot=1000)
    lines = metrics_section(runs, tmp_path).splitlines()
    row = next(line for line in lines if line.startswith("| voxels_linear_svm | test |"))
    assert row.split(" | ")[3:7] == ["40.0 [30.0, 50.0]", "40.0 [30.0, 50.0] †", "40.0 [30.0, 50.0]",
                                     "40.0 [30.0, 50.0]"]
    assert next(line for line in lines if line.startswith("| ce | test |")).split(" | ")[6].endswith(" †")  # auc_macro
    assert [line.split(" (the others")[0] for line in lines if line.startswith("† ")] == [
        "† defined in fewer than 95% of the 200 resamples: auc_macro on test in 180",
        "† defined in fewer than 95% of the 1000 resamples: balanced_accuracy on test in 900, auc_macro on test in 900"]


def test_a_runs_config_yaml_cut_short_is_refused_in_one_line_not_a_key_error(tmp_path: Path) -> None:
    """The report read the selection rule from config.yaml itself: a file cut short was a KeyError traceback."""
    run = tmp_path / "ce"
    run.mkdir()
    settings = CONFIG.read_text()
    (run / "summary.json").write_text("{}")
    rule = selection_rule(load_config(CONFIG))
    (run / "config.yaml").write_text(settings + yaml.safe_dump({"selection_rule": rule}))  # the last key `train` writes
    assert f"checkpoint selection: {rule}." in _training_section({"ce": run})
    (run / "config.yaml").write_text(settings)
    with pytest.raises(ConfigError, match=r"config.yaml: no selection_rule, the last key `elr-mri train` writes "
                                          "there, so the file is cut short"):
        _training_section({"ce": run})


def _trained(run: Path, summary: dict) -> Path:
    """A run folder as the training section reads it: a whole config.yaml and `summary`."""
    run.mkdir()
    (run / "config.yaml").write_text(CONFIG.read_text() + yaml.safe_dump(
        {"selection_rule": selection_rule(load_config(CONFIG))}))
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_the_memorization_figure_says_how_many_mislabelled_scans_its_shares_are_of(tmp_path: Path) -> None:
    """A 6-scan demo run had one truly mislabelled training scan: its curves sat at 1.0 and 0.0 with no count, read
    as every wrong label memorised."""
    runs = {loss: _trained(tmp_path / loss, {"mislabels": {"flagged": 4, "truly_mislabelled": 1}})
            for loss in ("ce", "elr")}
    assert "(dashed: CE, solid: ELR); each point is a share of 1 scan:" in _training_section(runs)
    (runs["ce"] / "summary.json").write_text("{}")  # trained without the true labels: no count, no words
    (runs["elr"] / "summary.json").write_text("{}")
    assert "(dashed: CE, solid: ELR):" in _training_section(runs)


def test_the_figures_caption_names_the_line_style_each_drawn_run_has(tmp_path: Path) -> None:
    """The caption said "dashed: CE, solid: ELR" whatever was drawn: an ELR-only report's figure draws ELR dashed (the
    first run's style), and runs given ELR first draw it dashed too."""
    elr_only = _training_section({"elr": _trained(tmp_path / "elr", {})})
    assert "labels (dashed: ELR):" in elr_only and "wrong (dashed: ELR):" in elr_only and "CE" not in elr_only
    runs = {"elr": tmp_path / "elr", "ce": _trained(tmp_path / "ce", {})}
    assert "labels (dashed: ELR, solid: CE):" in _training_section(runs)
    assert "labels (dashed: CE, solid: ELR):" in _training_section(dict(reversed(runs.items())))


def test_the_training_section_says_how_many_participants_each_split_holds(tmp_path: Path) -> None:
    """The checkpoint was said to be selected on "the validation split" with no size: at the demo's defaults that is
    5 participants' noisy labels, which a reader could not know."""
    run = _trained(tmp_path / "ce", {})
    pd.DataFrame({"participant_id": [f"s{i}" for i in range(8)], "split": ["train"] * 5 + ["val", "test", "test"],
                  "used": [True] * 7 + [False]}).to_csv(run / "splits.csv", index=False)
    section = _training_section({"ce": run})
    assert "Same participant splits (5 training, 1 validation and 1 test participants) and seed" in section
    (run / "splits.csv").unlink()  # a run from before splits.csv: the sentence as it was
    assert "Same participant splits and seed for every method; checkpoint selection:" in _training_section({"ce": run})


def test_the_learning_curves_are_said_to_score_the_given_noisy_labels_scan_by_scan(tmp_path: Path) -> None:
    """The figure sat under no words: its test accuracy, against the test split's noisy labels and over scans, read
    as the participant-level accuracy against the truth the tables below give."""
    lines = _training_section({"ce": _trained(tmp_path / "ce", {})}).splitlines()
    caption = lines[lines.index("![learning curves](figures/learning_curves.png)") - 2]
    assert "scan by scan against their given (noisy) labels" in caption


def test_saliency_maps_explain_wrote_are_linked_saying_what_each_averages(tmp_path: Path) -> None:
    """`elr-mri explain` on a demo run left maps the report never mentioned; a map of the scans *given* AD, most of
    them predicted otherwise, is easily read as where the network sees AD. None: no section."""
    runs = {"ce": tmp_path / "runs" / "ce", "elr": tmp_path / "runs" / "elr"}
    for run in runs.values():
        run.mkdir(parents=True)
    assert _saliency_section(runs, tmp_path) == []
    explained = runs["elr"] / "explain-holdout_manifest"
    explained.mkdir()
    for name in ("saliency_CN.png", "saliency_AD.png"):
        (explained / name).write_bytes(b"")
    (runs["ce"] / "explain-test").mkdir()  # cut short: no summary.json, so no maps to show
    assert _saliency_section(runs, tmp_path) == []
    (explained / "summary.json").write_text(json.dumps({"scans_per_map": {"CN": 5, "AD": 3},
                                                         "predicted_as_given_per_map": {"CN": 4, "AD": 0}}))
    (section,) = _saliency_section(runs, tmp_path)
    assert "over every scan whose *given* diagnosis is d, whatever the network predicted of it" in section
    assert section.splitlines()[-1] == (
        "elr, explain-holdout_manifest: given CN, 5 scans, 4 of them predicted CN: "
        "![saliency given CN](runs/elr/explain-holdout_manifest/saliency_CN.png) given AD, 3 scans, 0 of them "
        "predicted AD: ![saliency given AD](runs/elr/explain-holdout_manifest/saliency_AD.png)")
    assert "explain-test" not in section
    (explained / "summary.json").write_text(json.dumps({  # a mean over scans the network is sure of: mostly one scan
        "scans_per_map": {"CN": 5, "AD": 1}, "predicted_as_given_per_map": {"CN": 4, "AD": 1},
        "largest_scan_share_per_map": {"CN": 0.9912, "AD": 1.0}}))
    assert _saliency_section(runs, tmp_path)[0].splitlines()[-1] == (
        "elr, explain-holdout_manifest: given CN, 5 scans, 4 of them predicted CN, the largest scan 99.1% of the map: "
        "![saliency given CN](runs/elr/explain-holdout_manifest/saliency_CN.png) given AD, 1 scan, 1 of them "
        "predicted AD: ![saliency given AD](runs/elr/explain-holdout_manifest/saliency_AD.png)")
    (explained / "summary.json").write_text("{}")  # explained before the counts were recorded: the maps alone
    assert _saliency_section(runs, tmp_path)[0].splitlines()[-1] == (
        "elr, explain-holdout_manifest: (counts not recorded: run `elr-mri explain` again for them) "
        "![saliency](runs/elr/explain-holdout_manifest/saliency_AD.png) "
        "![saliency](runs/elr/explain-holdout_manifest/saliency_CN.png)")


def test_the_truth_tables_mark_intervals_from_few_resamples_with_their_counts(tmp_path: Path) -> None:
    """Four participants, one of them AD: a resample holds every true diagnosis about a third of the time. The runs
    were scored with `evaluate --bootstrap 200`: the truth tables drew the default 1000 whatever evaluate drew."""
    truth = pd.DataFrame({"participant_id": ["s0", "s1", "s2", "s3"], "session_id": "ses-M00",
                          "true_diagnosis": ["CN", "CN", "MCI", "AD"]})
    runs = {"ce": _run(tmp_path / "ce", 1, truth), "elr": _run(tmp_path / "elr", 2, truth)}
    section = truth_section(runs, truth)
    report = rescore_against_truth(runs["ce"] / "eval-test" / "predictions.csv", truth, 200)
    defined = report.metrics["balanced_accuracy"].resamples
    assert defined < 0.95 * report.n_boot and report.metrics["accuracy"].resamples == report.n_boot
    row = next(line for line in section.splitlines() if line.startswith("| ce | test |"))
    assert row.startswith("| ce | test | 4 | ")
    assert f"| {report.metrics['accuracy']} | {report.metrics['balanced_accuracy']} † |" in row
    assert (f"† defined in fewer than 95% of the {report.n_boot} resamples: balanced_accuracy on test in "
            f"{defined}, auc_macro on test in {report.metrics['auc_macro'].resamples} (the others") in section
    pair = [(runs["ce"] / "eval-test" / "predictions.csv", runs["elr"] / "eval-test" / "predictions.csv")]
    auc = mean_paired_difference(pair, truth, 200, metric="auc_macro")
    assert f"| {auc} † ({_verdict(auc)}) |" in section
    assert f"macro AUC on test in {auc.resamples} (the others drew no participant of a class)" in section


def test_a_set_of_one_participant_is_said_to_have_no_intervals_not_to_have_drawn_no_class(tmp_path: Path) -> None:
    """One participant: no resample at all. Each table marked its intervals † "in 0 (the others drew no participant
    of a class)", as if resamples had been drawn; `elr-mri evaluate` says why there is none."""
    truth = pd.DataFrame({"participant_id": ["s0"], "session_id": "ses-M00", "true_diagnosis": ["CN"]})
    runs = {"ce": _run(tmp_path / "ce", 1, truth), "elr": _run(tmp_path / "elr", 2, truth)}
    said = "No intervals on {} (nan): resampling participants needs at least two, and this set has 1."
    against_truth = truth_section(runs, truth)
    assert "†" not in against_truth and "in 0" not in against_truth
    assert against_truth.count(said.format("test")) == 2  # under the scores and under the paired differences
    scored = {"ce": tmp_path / "scored" / "ce", "elr": tmp_path / "scored" / "elr"}
    for run in scored.values():
        _scored(run / "eval-holdout", 1.0, dict.fromkeys(HEADLINE_METRICS, 0), given=("CN",))
    results = metrics_section(scored, tmp_path)
    assert "†" not in results and "\n\n" + said.format("holdout") + "\n" in results


def test_the_tables_say_how_many_participants_each_set_has_and_what_a_lacking_class_does(tmp_path: Path) -> None:
    """A demo's 2-participant test split (CN, MCI): balanced accuracy 50.0 read as above the chance of 33.3, and
    auc_macro nan [nan, nan] came without a word, nor did the tables say how many participants they rest on."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for run in runs.values():
        _scored(run / "eval-test", 0.5, given=("CN", "MCI"))
        _scored(run / "eval-nacc_sim", 0.5, given=("CN", "MCI", "AD", "AD"))
    section = metrics_section(runs, tmp_path)
    assert "| ce | test | 2 | " in section and "| elr | nacc_sim | 4 | " in section
    assert section.count("On test no participant is labelled AD: balanced_accuracy is the mean recall over CN, MCI "
                         "only, so chance is 50.0, not 33.3; auc_macro is undefined (nan) there") == 1
    assert "On nacc_sim" not in section
    truth = pd.DataFrame({"participant_id": [f"s{i:02d}" for i in range(6)], "session_id": "ses-M00",
                          "true_diagnosis": ["CN", "MCI"] * 3})
    truth_runs = {"ce": _run(tmp_path / "truth" / "ce", 1, truth), "elr": _run(tmp_path / "truth" / "elr", 2, truth)}
    section = truth_section(truth_runs, truth)
    assert "| ce | test | 6 | " in section
    assert section.count("On test no participant truly has AD: balanced_accuracy is the mean recall over CN, MCI "
                         "only, so chance is 50.0, not 33.3") == 1


def test_a_set_of_one_class_is_said_to_leave_that_classs_own_auc_undefined_too(tmp_path: Path) -> None:
    """An AD-only holdout: the note said auc_macro was undefined "as is the AUC of CN and MCI", as if auc_AD stood;
    it is nan too, with no participant of another class to rank AD against (`elr-mri evaluate` says so). Its
    balanced accuracy is AD's recall, as `elr-mri evaluate` says: the note said "chance is 100.0, not 33.3"."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for run in runs.values():
        _scored(run / "eval-nacc_sim", 0.5, given=("AD", "AD", "AD"))
    assert ("On nacc_sim no participant is labelled CN or MCI: balanced_accuracy is the recall of AD alone (every "
            "participant here is labelled AD), so it equals accuracy: the share of AD scans called AD, not how well "
            "the classes are told apart (calling every scan AD scores 100.0); compare it only with AD's recall elsewhere "
            "(the rate given AD, predicted AD in confusion.csv), not with a balanced accuracy over several classes; "
            "auc_macro is undefined (nan) there, as is the AUC of every class (AD's too: the AUC of a class needs "
            "participants of it and of another); auc_micro counts the scores given to CN and MCI as negatives only, "
            "which can lift it above the AUCs of the classes present.") in metrics_section(runs, tmp_path)
    truth = pd.DataFrame({"participant_id": [f"s{i:02d}" for i in range(4)], "session_id": "ses-M00",
                          "true_diagnosis": ["MCI"] * 4})
    truth_runs = {"ce": _run(tmp_path / "truth" / "ce", 1, truth), "elr": _run(tmp_path / "truth" / "elr", 2, truth)}
    truth_note = truth_section(truth_runs, truth)
    assert ("balanced_accuracy is the recall of MCI alone (every participant here truly has MCI), so it equals "
            "accuracy") in truth_note and "compare it only with MCI's recall elsewhere, not with" in truth_note
    assert "as is the AUC of every class (MCI's too" in truth_note and "chance is 100.0" not in truth_note


def test_a_set_scored_with_the_last_checkpoint_is_named_so_below_the_same_set(tmp_path: Path) -> None:
    """`evaluate --checkpoint last` in a demo run writes eval-test-last: the tables listed "test-last" after the
    holdout, as a set of its own, without a word on which weights scored it."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for run in runs.values():
        for where in ("test", "nacc_sim", "test-last"):
            _scored(run / f"eval-{where}", 0.5, given=("CN", "MCI"))
    _scored(runs["ce"] / "eval-old-last", 0.5)  # a holdout manifest named old-last.csv, scored with best.pt
    summary = json.loads((runs["ce"] / "eval-old-last" / "summary.json").read_text())
    (runs["ce"] / "eval-old-last" / "summary.json").write_text(json.dumps({**summary, "checkpoint": "best"}))
    section = metrics_section(runs, tmp_path)
    sets = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert sets == [[f"| {loss}", where] for where in ("test", "test (last checkpoint)", "nacc_sim") for loss in runs] + [
        ["| ce", "old-last"]]
    assert "A set marked (last checkpoint) is the same participants scored with the networks' last epoch" in section
    assert section.count("On test no participant") == 1 and "On test (last" not in section  # one note a set
    truth = pd.DataFrame({"participant_id": [f"s{i:02d}" for i in range(6)], "session_id": "ses-M00",
                          "true_diagnosis": [CLASSES[i % 3] for i in range(6)]})
    truth_runs = {"ce": _run(tmp_path / "truth" / "ce", 1, truth), "elr": _run(tmp_path / "truth" / "elr", 2, truth)}
    for run in truth_runs.values():  # no summary.json here: the folder's name says which checkpoint
        shutil.copytree(run / "eval-test", run / "eval-test-last")
    paired = [line.split(" | ")[0] for line in truth_section(truth_runs, truth).splitlines() if line.startswith("| test")]
    assert paired == ["| test", "| test (last checkpoint)"]
    for run in runs.values():
        shutil.rmtree(run / "eval-test-last")
    assert "(last checkpoint)" not in metrics_section(runs, tmp_path)  # no word of it where no set was so scored


def test_baselines_fitted_beside_the_last_checkpoint_are_listed_once_under_the_plain_set(tmp_path: Path) -> None:
    """`evaluate --checkpoint last --baselines` fits the baselines again into eval-test-last/baselines/: both tables
    listed them a second time as rows of 'test (last checkpoint)', though a baseline has no checkpoint and its fit is
    the same. A baseline fitted only there is listed under test."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for run in runs.values():
        for where in ("test", "test-last"):
            _scored(run / f"eval-{where}", 0.5)
    for where in ("test", "test-last"):
        _scored(runs["ce"] / f"eval-{where}" / "baselines" / "volumes_logreg", 0.4)
    _scored(runs["ce"] / "eval-test-last" / "baselines" / "voxels_linear_svm", 0.4)
    section = metrics_section(runs, tmp_path)
    rows = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == [["| ce", "test"], ["| elr", "test"], ["| volumes_logreg", "test"], ["| voxels_linear_svm", "test"],
                    ["| ce", "test (last checkpoint)"], ["| elr", "test (last checkpoint)"]]
    assert "A baseline has no checkpoint: it is listed once, under the unmarked set." in section
    truth = pd.DataFrame({"participant_id": [f"s{i:02d}" for i in range(6)], "session_id": "ses-M00",
                          "true_diagnosis": [CLASSES[i % 3] for i in range(6)]})
    truth_runs = {"ce": _run(tmp_path / "truth" / "ce", 1, truth), "elr": _run(tmp_path / "truth" / "elr", 2, truth)}
    for run in truth_runs.values():
        shutil.copytree(run / "eval-test", run / "eval-test-last")
    for where in ("test", "test-last"):
        fitted = truth_runs["ce"] / f"eval-{where}" / "baselines" / "volumes_logreg"
        fitted.mkdir(parents=True)
        for name in ("predictions.csv", "summary.json"):  # as evaluate --baselines writes them
            shutil.copy(truth_runs["ce"] / "eval-test" / name, fitted)
    lines = truth_section(truth_runs, truth).splitlines()
    methods = [line.split(" | ")[:2] for line in lines if line.startswith(("| ce |", "| elr |", "| volumes_logreg |"))]
    assert methods == [["| ce", "test"], ["| elr", "test"], ["| volumes_logreg", "test"],
                       ["| ce", "test (last checkpoint)"], ["| elr", "test (last checkpoint)"]]


def test_the_truth_tables_list_the_test_split_first_as_the_results_table_does(tmp_path: Path) -> None:
    """eval-holdout_manifest sorted before eval-test: the truth tables put the holdout first, the table above last."""
    truth = pd.DataFrame({"participant_id": [f"s{i:02d}" for i in range(6)], "session_id": "ses-M00",
                          "true_diagnosis": [CLASSES[i % 3] for i in range(6)]})
    runs = {"ce": _run(tmp_path / "ce", 1, truth), "elr": _run(tmp_path / "elr", 2, truth)}
    for run in runs.values():
        shutil.copytree(run / "eval-test", run / "eval-holdout_manifest")
    lines = truth_section(runs, truth).splitlines()
    sets = [line.split(" | ")[1] for line in lines if line.startswith("| ce | ")]
    paired = [line.split(" | ")[0] for line in lines if line.startswith("| test | ") or line.startswith("| holdout")]
    assert sets == ["test", "holdout_manifest"] and paired == ["| test", "| holdout_manifest"]


def test_the_cohort_tables_order_the_diagnoses_by_stage(tmp_path: Path) -> None:
    """pd.crosstab sorted them by name: AD, CN, MCI down the rows and across the columns."""
    diagnoses = [("CN", "CN"), ("MCI", "CN"), ("MCI", "MCI"), ("AD", "MCI"), ("AD", "AD")]
    truth = pd.DataFrame({column: 1.0 for column in TRUTH_COLUMNS}, index=range(len(diagnoses))).assign(
        participant_id=[f"sub-{i}" for i in range(len(diagnoses))], session_id="ses-M00", cohort="adni_sim",
        true_diagnosis=[true for true, _ in diagnoses], diagnosis=[given for _, given in diagnoses],
        age=[70.0, 72.0, 74.0, 76.0, 78.0])
    truth.to_csv(tmp_path / "truth.csv", index=False)
    lines = _cohort_section(tmp_path, {}).splitlines()
    assert "| cohort | true_diagnosis | CN | MCI | AD |" in lines
    counts = lines[lines.index("| cohort | true_diagnosis | CN | MCI | AD |") + 2:][:3]
    assert counts == ["| adni_sim | CN | 1 | 0 | 0 |", "| adni_sim | MCI | 1 | 1 | 0 |",
                      "| adni_sim | AD | 0 | 1 | 1 |"]
    ages = [line.split(" | ")[1] for line in lines if line.startswith("| adni_sim |")][3:]
    assert ages == ["CN", "MCI", "AD"]
    assert "Share of scans' labels flipped: adni_sim 40.0%" in lines
    assert any(line.startswith("Scans by true diagnosis (rows)") for line in lines)  # counts of scans, not people


def test_the_age_of_a_group_of_one_scan_has_no_spread_printed_not_nan(tmp_path: Path) -> None:
    """A 3-participant holdout has one scan a diagnosis: its age rows read 'nan' for the standard deviation."""
    truth = pd.DataFrame({column: 1.0 for column in TRUTH_COLUMNS}, index=range(3)).assign(
        participant_id=["sub-0", "sub-1", "sub-2"], session_id="ses-M00", cohort="nacc_sim",
        true_diagnosis=["CN", "CN", "AD"], diagnosis=["CN", "CN", "AD"], age=[70.0, 74.0, 95.0])
    truth.to_csv(tmp_path / "truth.csv", index=False)
    lines = _cohort_section(tmp_path, {}).splitlines()
    assert "| nacc_sim | CN | 72.0 | 2.8 |" in lines and "| nacc_sim | AD | 95.0 | – |" in lines


def test_the_preprocessing_qc_figures_are_said_what_they_measure(tmp_path: Path) -> None:
    """"NCC with the template" and "head-foreground Dice" stood as bare figures, jargon a clinician reading the report
    cannot weigh, and nothing said what QC flags."""
    pd.DataFrame({"participant_id": ["s1", "s2"], "qc_flag": [False, True], "qc_ncc": [0.78, 0.30],
                  "qc_mask_dice": [0.8, 0.4]}).to_csv(tmp_path / "manifest.csv", index=False)
    section = " ".join(_preprocess_section(tmp_path, tmp_path).split())
    assert "2 scans processed, 0 failed, 1 flagged by QC. NCC with the template: mean 0.540, lowest 0.300" in section
    assert "NCC is the normalised cross-correlation of a registered scan with the template" in section
    assert "Dice the overlap of the scan's head with the template's" in section
    assert "QC flags a scan for a person to look at when either is low" in section


def test_the_size_caveat_calls_41_training_scans_too_few_and_42_read_by_their_intervals() -> None:
    """41 scans is the measured size at which the CNN did not learn (bench/results/mri_demo_scaling.md), so it takes
    the "chance" caveat; mutation round 5: `<` for `<=` there survived."""
    assert "so any difference between them here is chance" in _size_caveat(41)
    assert "more than the 41 with which the CNN did not learn" in _size_caveat(42)


def test_the_mislabel_row_counts_right_flags_by_rounding_and_sets_chance_against_every_training_scan(tmp_path) -> None:
    """Of 100 flags at precision 0.29, 29 are right (0.29 × 100 is 28.999… in floating point); flagging at random
    is right as often as a training scan is mislabelled, 58 of 400. Mutation round 5: truncating the count, and
    dividing by the flags instead of the training scans, survived."""
    run = tmp_path / "elr"
    run.mkdir()
    found = {"flagged": 100, "precision": 0.29, "recall": 0.5, "truly_mislabelled": 58, "suggestion_true": 20}
    (run / "summary.json").write_text(json.dumps({"mislabels": found, "train_examples": 400}))
    pd.DataFrame({"source": ["elr_target"]}).to_csv(run / "suspected_mislabels.csv", index=False)
    row = _mislabel_section({"elr": run}).splitlines()[-1]
    assert row == "| elr | ELR targets | 100 | 29 | 20 | 58 | 29.0% | 50.0% | 14.5% |"
    nothing = {**found, "flagged": 0, "precision": None, "recall": 0.0, "suggestion_true": 0}  # no precision: 0 right
    (run / "summary.json").write_text(json.dumps({"mislabels": nothing, "train_examples": 400}))
    pd.DataFrame({"source": []}).to_csv(run / "suspected_mislabels.csv", index=False)
    assert _mislabel_section({"elr": run}).splitlines()[-1] == "| elr | – | 0 | 0 | 0 | 58 | – | 0.0% | 14.5% |"
    pd.DataFrame({"participant_id": ["s1"]}).to_csv(run / "suspected_mislabels.csv", index=False)  # before `source`
    assert _mislabel_section({"elr": run}).splitlines()[-1].startswith("| elr | – | 0 |")


def test_a_paired_difference_of_0_with_an_interval_is_no_claim_of_identical_predictions() -> None:
    """Only 0 [0, 0] means CE and ELR predicted every participant alike; an estimate of 0 inside [-5, 5] is a
    difference not shown, and a table without † intervals gets no note line. Mutation round 5: testing the
    estimate alone, and a note line for no † interval, survived."""
    assert _difference_cell(Interval(0.0, 0.0, 0.0, 200), 200, "accuracy", {}, 10) == (
        "0.0 (identical predictions on all 10 participants)")
    cell = _difference_cell(Interval(0.0, -5.0, 5.0, 200), 200, "accuracy", {}, 10)
    assert "identical" not in cell and cell.endswith("(no difference shown at this size)")
    cell = _difference_cell(Interval(0.0, 0.0, 0.0, 200), 200, "accuracy", {}, None)  # predictions differ somewhere
    assert cell == "0.0 [0.0, 0.0] (no difference shown at this size)"
    assert _rare_notes({}) == []


def test_the_preprocessing_failures_are_counted_from_failures_csv_and_an_empty_file_is_none(tmp_path: Path) -> None:
    """A 0-byte failures.csv holds no failure (pandas refuses to read it); mutation round 5: dropping the size check
    survived, no test having written one."""
    pd.DataFrame({"participant_id": ["s1"], "qc_flag": [False], "qc_ncc": [0.78],
                  "qc_mask_dice": [0.8]}).to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "failures.csv").write_bytes(b"")
    assert "1 scans processed, 0 failed," in _preprocess_section(tmp_path, tmp_path)
    (tmp_path / "failures.csv").write_text("participant_id,error\ns2,N4 failed\n")
    assert "1 scans processed, 1 failed," in _preprocess_section(tmp_path, tmp_path)


def test_a_set_without_any_participant_is_said_to_have_none_not_to_lack_every_class(tmp_path: Path) -> None:
    """No class present at all: the set is empty, so its one note is that it has no participant to resample, not the
    lacking-class note, whose chance level over the classes present would divide by none of them. No test had
    scored such a set."""
    nan = float("nan")
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for run in runs.values():
        _scored(run / "eval-holdout", nan, dict.fromkeys(HEADLINE_METRICS, 0), given=())
    section = metrics_section(runs, tmp_path)
    assert f"| ce | holdout | 0 | {' | '.join(['nan [nan, nan]'] * len(HEADLINE_METRICS))} |" in section
    assert "\n\nNo intervals on holdout (nan): resampling participants needs at least two, and this set has 0.\n" in (
        section)
    assert "On holdout no participant" not in section and "†" not in section


def test_an_interval_missing_one_end_gives_no_verdict_whichever_end() -> None:
    """A NaN at one end only (a summary edited by hand, or cut): the verdict needs both ends, so the lower end above 0
    with no upper end is not "ELR above CE", nor an upper end below 0 with no lower one "ELR below CE". No test had
    a NaN at one end alone."""
    nan = float("nan")
    for half in (Interval(0.05, 0.01, nan, 200), Interval(-0.05, nan, -0.01, 200)):
        assert _verdict(half) == "no interval: too few participants of each true diagnosis to resample"
        assert _difference_cell(half, 200, "accuracy", {}, 10).endswith(
            "] (no interval: too few participants of each true diagnosis to resample)")
    assert str(Interval(0.05, 0.01, nan, 200)) == "5.0 [1.0, nan]"  # the end that is there is printed


def test_runs_of_ce_without_elr_get_their_scores_and_no_paired_table_saying_why(tmp_path: Path) -> None:
    """CE alone (no ELR run to pair with): its row against the truth stands, and the paired table is replaced by why
    there is none; it said "Not available." alone. No test had rendered a run set without ELR."""
    truth = pd.DataFrame({"participant_id": [f"s{i:02d}" for i in range(12)], "session_id": "ses-M00",
                          "true_diagnosis": [CLASSES[i % 3] for i in range(12)]})
    run = _run(tmp_path / "ce", 1, truth)
    section = truth_section({"ce": run}, truth)
    report = rescore_against_truth(run / "eval-test" / "predictions.csv", truth, 200)
    assert f"| ce | test | 12 | {report.metrics['accuracy']} | " in section
    assert "\n\nNot available: no set here was scored by both a CE run and an ELR run.\n\n" in section
    assert "| evaluated on | accuracy | balanced accuracy | macro AUC |" not in section


def test_a_baseline_scored_beside_each_run_is_listed_once_with_the_first_runs_figures(tmp_path: Path) -> None:
    """The demo fits the baselines on the first (CE) run's splits; a later run's folder of the same name does not
    replace that row."""
    runs = {"ce": tmp_path / "ce", "elr": tmp_path / "elr"}
    for accuracy, run in zip((0.4, 0.7), runs.values()):
        _scored(run / "eval-test", 0.5)
        _scored(run / "eval-test" / "baselines" / "volumes_logreg", accuracy)
    rows = [line for line in metrics_section(runs, tmp_path).splitlines() if line.startswith("| volumes_logreg |")]
    assert len(rows) == 1 and rows[0].startswith("| volumes_logreg | test | 3 | 40.0 [30.0, 50.0] |")
