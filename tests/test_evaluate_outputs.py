"""What `write_evaluation` leaves in an evaluation folder, and what it says of what it removes. Seconds, nothing
trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elr_mri.data.mri import MRIScans, mri_transforms
from elr_mri.data.splits import read_run_splits, run_participants
from elr_mri.evaluation.evaluate import _note_partial_balanced_accuracy, load_run
from elr_mri.evaluation.evaluation_folder import (MANIFEST_ROWS_KEY, evaluation_dir, explanation_dir,
                                                 manifest_rows_fingerprint, require_own_folder, scored_fingerprint,
                                                 scored_source, write_evaluation)
from elr_mri.evaluation.metrics import bootstrap_metrics, evaluate_predictions
from elr_mri.evaluation.scored_scans import (_require_run_test_split, _untrained_ages_warning, _untrained_classes_warning,
                                             _warn_of_other_test_scans, _warn_of_relabelled_test_scans)

CLASSES = ["CN", "MCI", "AD"]


def _write(out: Path, labels: list[int], n_boot: int, manifest_sha256: str = "abc") -> None:
    """An evaluation of a network that calls everyone CN, as `evaluate` wrote it for the holdout `h.csv` before it
    recorded the manifest's rows."""
    probs = np.tile([0.8, 0.1, 0.1], (len(labels), 1))
    people = np.array([f"s{i}" for i in range(len(labels))])
    reports = evaluate_predictions(np.array(labels), probs, people, CLASSES, n_boot=n_boot)
    ids = pd.DataFrame({"participant_id": people, "session_id": "ses-M00"})
    about = {"manifest": "/data/h.csv", "manifest_sha256": manifest_sha256, "checkpoint": "best", "checkpoint_epoch": 3}
    write_evaluation(out, reports, np.array(labels), probs, ids, CLASSES, [], about)


def test_a_rescoring_with_other_settings_names_the_comparisons_it_removes(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "eval-h"
    _write(out, [0, 1, 2, 0], n_boot=10)
    (out / "comparison.csv").write_text("method\n")  # as `--baselines --compare-with` leave them
    (out / "baselines" / "voxels_linear_svm").mkdir(parents=True)
    capsys.readouterr()
    _write(out, [0, 1, 2, 0], n_boot=10)  # the same scoring again: they still describe it
    assert capsys.readouterr().err == "" and (out / "comparison.csv").is_file() and (out / "baselines").is_dir()
    _write(out, [0, 1, 2, 0], n_boot=20)
    assert capsys.readouterr().err == (
        f"{out}: removed comparison.csv, baselines/ (they were made beside a scoring with --bootstrap 10 (now 20); "
        "--baselines and --compare-with make them again)\n")
    assert not (out / "comparison.csv").exists() and not (out / "baselines").exists()
    _write(out, [0, 1, 2, 0], n_boot=10)  # nothing left to remove: nothing said
    assert capsys.readouterr().err == ""


def test_a_holdout_copied_again_after_a_preprocess_rerun_keeps_the_comparisons_beside_its_scoring(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Rerun over finished scans, preprocess marks each one `skipped`, not `done`: the same holdout copied again
    (README, step 2) and scored again lost its baselines and comparisons, said to be of "other scans". An edited
    cell other than that still makes them stale."""
    def scored(manifest: Path) -> None:
        reports = evaluate_predictions(np.array([0, 1]), np.tile([0.8, 0.1, 0.1], (2, 1)), people, CLASSES, n_boot=10)
        about = {"manifest": str(manifest), "manifest_sha256": scored_fingerprint(manifest),
                 MANIFEST_ROWS_KEY: manifest_rows_fingerprint(manifest), "checkpoint": "best", "checkpoint_epoch": 3}
        write_evaluation(out, reports, np.array([0, 1]), np.tile([0.8, 0.1, 0.1], (2, 1)),
                         pd.DataFrame({"participant_id": people, "session_id": "ses-M00"}), CLASSES, [], about)

    out, holdout, people = tmp_path / "eval-h", tmp_path / "h.csv", np.array(["s0", "s1"])
    rows = pd.DataFrame({"participant_id": people, "session_id": "ses-M00", "diagnosis": ["CN", "MCI"],
                         "age": [70.5, 81.0], "status": "done"})
    rows.to_csv(holdout, index=False)
    scored(holdout)
    (out / "comparison.csv").write_text("method\n")
    (out / "baselines" / "volumes_logreg").mkdir(parents=True)
    capsys.readouterr()
    rows.assign(status="skipped").to_csv(holdout, index=False)  # preprocess run again, its manifest copied again
    scored(holdout)
    assert capsys.readouterr().err == "" and (out / "comparison.csv").is_file() and (out / "baselines").is_dir()
    rows.assign(status="skipped", age=[70.5, 18.0]).to_csv(holdout, index=False)  # the baselines read the age
    scored(holdout)
    assert not (out / "comparison.csv").exists() and "other scans (the manifest's content changed)" in capsys.readouterr().err


@pytest.mark.parametrize("labels", [[0, 1, 2, 2], [0, 1, 2]], ids=["relabelled", "one_scan_fewer"])
def test_a_test_split_scored_again_with_other_labels_or_scans_removes_the_comparisons_beside_it(
        tmp_path: Path, capsys: pytest.CaptureFixture, labels: list[int]) -> None:
    """The test split is rebuilt from the training manifest, which records no sha256: relabelled in place (a fixed
    data.mri.splits keeps the split), or a scan fewer, it was scored anew while the comparison.csv saying the earlier
    figures and the baselines scored against the earlier labels stayed beside the new metrics."""
    def scored(given: list[int]) -> None:
        probs = np.tile([0.8, 0.1, 0.1], (len(given), 1))
        people = np.array([f"s{i}" for i in range(len(given))])
        reports = evaluate_predictions(np.array(given), probs, people, CLASSES, n_boot=10)
        ids = pd.DataFrame({"participant_id": people, "session_id": "ses-M00"})
        about = {"manifest": None, "manifest_sha256": None, "checkpoint": "best", "checkpoint_epoch": 3}
        write_evaluation(out, reports, np.array(given), probs, ids, CLASSES, [], about)

    out = tmp_path / "eval-test"
    scored([0, 1, 2, 0])
    (out / "comparison.csv").write_text("method\n")
    (out / "baselines" / "voxels_linear_svm").mkdir(parents=True)
    capsys.readouterr()
    scored([0, 1, 2, 0])  # the same scans and labels: kept
    assert (out / "comparison.csv").is_file() and capsys.readouterr().err == ""
    scored(labels)
    assert not (out / "comparison.csv").exists() and not (out / "baselines").exists()
    assert capsys.readouterr().err == (
        f"{out}: removed comparison.csv, baselines/ (they were made beside a scoring with other scans or given labels "
        "(the scored set or its labels changed); --baselines and --compare-with make them again)\n")


def test_a_scoring_recorded_before_its_scans_were_keeps_its_comparisons(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """A summary.json without scored_sha256 cannot tell: its comparisons are not removed as if its scans changed."""
    out = tmp_path / "eval-h"
    _write(out, [0, 1, 2, 0], n_boot=10)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary.pop("scored_sha256")) == 64
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "comparison.csv").write_text("method\n")
    capsys.readouterr()
    _write(out, [0, 1, 2, 0], n_boot=10)
    assert (out / "comparison.csv").is_file() and capsys.readouterr().err == ""


def test_a_scoring_recorded_before_its_scans_were_is_told_from_its_predictions(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    """A folder of a version before scored_sha256 (2026-12-06), its test split scored again after the training manifest
    was relabelled in place: its predictions.csv says what it scored, so the stale comparisons go (they stayed:
    comparison.csv's auc_micro 65.6 beside metrics.csv's 50.0 on a simulated cohort)."""
    out = tmp_path / "eval-h"
    _write(out, [0, 1, 2, 0], n_boot=10)
    summary = json.loads((out / "summary.json").read_text())
    del summary["scored_sha256"]
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "comparison.csv").write_text("method\n")
    capsys.readouterr()
    _write(out, [0, 1, 2, 2], n_boot=10)
    assert not (out / "comparison.csv").exists()
    assert "other scans or given labels" in capsys.readouterr().err


def test_the_summary_names_the_classes_the_balanced_accuracy_averages_over(tmp_path: Path) -> None:
    _write(tmp_path / "without_ad", [0, 1, 0, 1], n_boot=10)
    summary = json.loads((tmp_path / "without_ad" / "summary.json").read_text())
    assert summary["balanced_accuracy_classes"] == ["CN", "MCI"]
    assert summary["participant"]["balanced_accuracy"]["estimate"] == pytest.approx(0.5)  # chance over two classes
    _write(tmp_path / "every_class", [0, 1, 2], n_boot=10)
    assert json.loads((tmp_path / "every_class" / "summary.json").read_text())["balanced_accuracy_classes"] == CLASSES


def test_the_summary_and_the_screen_state_the_intervals_level_as_it_was_computed(tmp_path: Path) -> None:
    """summary.json gave each metric's low and high with the resamples' count but not the level they bound (95% was
    in the README alone), and a scoring at another level would have been printed as 95%."""
    from elr_mri.commands.evaluate import _interval_words

    labels, probs, people = np.array([0, 1, 2, 1]), np.full((4, 3), 1 / 3), np.array(["a", "b", "c", "d"])
    reports = evaluate_predictions(labels, probs, people, CLASSES, n_boot=10, confidence=0.9)
    ids = pd.DataFrame({"participant_id": people, "session_id": "ses-M00"})
    write_evaluation(tmp_path, reports, labels, probs, ids, CLASSES, [], {"manifest": None})
    assert json.loads((tmp_path / "summary.json").read_text())["interval_level"] == 0.9
    assert "a 90% percentile interval over 10 bootstrap resamples" in _interval_words(reports["scan"])


def test_calibration_is_scored_at_each_level_with_a_reliability_diagram_beside_the_other_plots(tmp_path: Path) -> None:
    """ECE and Brier in summary.json and metrics.csv at scan and participant level (the participant's is of its
    scans' mean probabilities), and each level's reliability bins in reliability.csv and a PNG. Hand-computed: scans
    confident 0.9, 0.7 (right), 0.6, 0.5 (wrong) in four bins give ECE (0.1 + 0.3 + 0.6 + 0.5) / 4; participants
    (0.8, .125, .075) right and (0.5, 0.4, 0.1) wrong give (0.2 + 0.5) / 2."""
    labels, people = np.array([0, 0, 1, 1]), np.array(["a", "a", "b", "b"])
    probs = np.array([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.4, 0.5, 0.1]])
    reports = evaluate_predictions(labels, probs, people, CLASSES, n_boot=10)
    ids = pd.DataFrame({"participant_id": people, "session_id": ["ses-M00", "ses-M12"] * 2})
    write_evaluation(tmp_path, reports, labels, probs, ids, CLASSES, [], {"manifest": None})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["scan"]["ece"]["estimate"] == pytest.approx(1.5 / 4)
    assert summary["participant"]["ece"]["estimate"] == pytest.approx(0.7 / 2)
    by_person = [0.2 ** 2 + 0.125 ** 2 + 0.075 ** 2, 0.5 ** 2 + 0.6 ** 2 + 0.1 ** 2]
    assert summary["participant"]["brier"]["estimate"] == pytest.approx(np.mean(by_person))
    assert summary["participant"]["brier"]["resamples"] == 10
    metrics = pd.read_csv(tmp_path / "metrics.csv").set_index(["level", "metric"])
    assert metrics.loc[("scan", "ece"), "estimate"] == pytest.approx(0.375)
    bins = pd.read_csv(tmp_path / "reliability.csv")
    assert bins.groupby("level", sort=False)["count"].sum().to_dict() == {"scan": 4, "participant": 2}
    assert bins.query("level == 'participant' and count > 0")[["low", "high", "accuracy"]].values.tolist() == [
        [0.4, 0.5, 0.0], [0.7, 0.8, 1.0]]
    assert sorted(p.name for p in tmp_path.glob("reliability_*.png")) == ["reliability_participant.png",
                                                                          "reliability_scan.png"]


def test_an_image_runs_scoring_removes_the_scan_and_participant_plots_of_an_earlier_version(tmp_path: Path) -> None:
    """Image runs were scored at a scan and a participant level until 2026-12-03: scored again now, at the image
    level, the folder kept the old confusion_scan.png and confusion_participant.png beside the new figures."""
    labels, probs, images = np.array([0, 1, 2, 1]), np.full((4, 3), 1 / 3), np.array(["0", "1", "2", "3"])
    old = evaluate_predictions(labels, probs, images, CLASSES, n_boot=10)
    write_evaluation(tmp_path, old, labels, probs, pd.DataFrame({"index": range(4)}), CLASSES, [], {"manifest": None})
    assert sorted(p.name for p in tmp_path.glob("confusion_*")) == ["confusion_participant.png", "confusion_scan.png"]
    now = {"image": bootstrap_metrics(labels, probs, images, CLASSES, 10, level="image")}
    write_evaluation(tmp_path, now, labels, probs, pd.DataFrame({"index": range(4)}), CLASSES, [], {"manifest": None})
    assert [p.name for p in tmp_path.glob("confusion_*")] == ["confusion_image.png"]


def test_each_prediction_row_names_its_own_scan_given_and_predicted_class(tmp_path: Path) -> None:
    """The dataset's frame keeps the manifest's row numbers (scans of left-out diagnoses removed): rows are
    matched by position, not by those numbers, and `predicted` is each row's most probable class."""
    labels = np.array([2, 0, 1])
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    people = np.array(["a", "b", "c"])
    ids = pd.DataFrame({"participant_id": people, "session_id": ["ses-M00", "ses-M12", "ses-M24"]}, index=[4, 7, 9])
    reports = evaluate_predictions(labels, probs, people, CLASSES, n_boot=10)
    write_evaluation(tmp_path, reports, labels, probs, ids, CLASSES, [], {"manifest": None, "checkpoint": "best"})
    written = pd.read_csv(tmp_path / "predictions.csv")
    assert written[["participant_id", "session_id", "given", "predicted"]].values.tolist() == [
        ["a", "ses-M00", "AD", "MCI"], ["b", "ses-M12", "CN", "CN"], ["c", "ses-M24", "MCI", "AD"]]
    np.testing.assert_allclose(written[["p_CN", "p_MCI", "p_AD"]], probs)


def test_a_test_split_rebuilt_from_a_manifest_that_lost_participants_says_how_many_are_left(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fixed data.mri.splits keeps the rest of the test split where it was, so nothing refused it: 2 of the 5
    test participants went unscored without a word."""
    pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(8)],
                  "split": ["train"] * 3 + ["test"] * 5}).to_csv(tmp_path / "splits.csv", index=False)
    _require_run_test_split(tmp_path, "cohort.csv", pd.Series(["sub-3", "sub-3", "sub-5", "sub-6"]))
    warning = capsys.readouterr().err.strip()
    assert len(warning.splitlines()) == 1 and warning.startswith("warning: cohort.csv has lost 2 of the 5 participants")
    assert "e.g. sub-4" in warning and "only the other 3 are scored" in warning
    _require_run_test_split(tmp_path, "cohort.csv", pd.Series([f"sub-{i}" for i in range(3, 8)]))
    assert capsys.readouterr().err == ""


def test_a_test_split_rebuilt_with_sessions_added_or_lost_since_training_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A longitudinal manifest gains visits: a later session of a test participant, added since training, was scored
    without a word (the check compares participants), and the figures differed from the run's test_acc (a review
    scored 10 scans for the run's 9: accuracy 60.0 against 66.7)."""
    tested = [["sub-1", "ses-M00", "CN"], ["sub-1", "ses-M06", "CN"], ["sub-2", "ses-M00", "AD"],
              ["sub-3", "ses-M00", "MCI"]]
    (tmp_path / "data_shape.json").write_text(json.dumps({"class_names": CLASSES, "test_diagnoses": tested}))
    scans = pd.DataFrame(tested, columns=["participant_id", "session_id", "diagnosis"])
    _warn_of_other_test_scans(tmp_path, "cohort.csv", scans)
    assert capsys.readouterr().err == ""
    later = pd.concat([scans, pd.DataFrame([["sub-1", "ses-M12", "MCI"]], columns=scans.columns)])
    _warn_of_other_test_scans(tmp_path, "cohort.csv", later)
    warning = capsys.readouterr().err.strip()
    assert len(warning.splitlines()) == 1, warning
    assert warning.startswith(f"warning: cohort.csv now lists 1 scan(s) of {tmp_path}'s test participants that the "
                              "run did not test on (e.g. sub-1 ses-M12) (test_diagnoses")
    _warn_of_other_test_scans(tmp_path, "cohort.csv", later.iloc[[0, 2, 4]])  # sub-1 ses-M06 gone, sub-3 altogether
    warning = capsys.readouterr().err
    assert "lists 1 scan(s) of" in warning and "and lacks 1 scan(s) of them that it tested on (e.g. sub-1 ses-M06)" in (
        warning)  # sub-3, a participant lost altogether, is _require_run_test_split's to name


def test_holdout_scans_aged_outside_the_training_ages_are_named(tmp_path: Path) -> None:
    """The age encoding learns an offset only for the half-year bins training fills: a NACC 45-year-old scored by an
    ADNI run (55-92) got an untrained offset without a word. Ages in the training range's end bins are not named."""
    scans = pd.DataFrame({"participant_id": ["sub-1", "sub-2", "sub-3", "sub-4", "sub-5"], "session_id": "ses-M00",
                          "age": [70.0, 45.0, 100.0, 55.4, 91.9]})
    (tmp_path / "data_shape.json").write_text(json.dumps({"class_names": CLASSES}))  # a run from before the record
    assert _untrained_ages_warning(tmp_path, "nacc.csv", scans) is None
    (tmp_path / "data_shape.json").write_text(json.dumps({"class_names": CLASSES, "train_age_range": [55.3, 91.8]}))
    warning = _untrained_ages_warning(tmp_path, "nacc.csv", scans)
    assert len(warning.splitlines()) == 1, warning
    assert warning.startswith(f"nacc.csv: 2 of 5 scans are aged outside the 55.3-91.8 years of {tmp_path}'s "
                              "training scans (e.g. sub-2 ses-M00, 45); the age encoding learned nothing for those ")
    assert _untrained_ages_warning(tmp_path, "nacc.csv", scans.iloc[[0, 3, 4]]) is None


def test_holdout_scans_of_a_class_the_run_never_trained_on_are_named(tmp_path: Path) -> None:
    """A run trained on a manifest without AD warned at its start; evaluate scored a holdout's AD scans, recall ~0 by
    construction, without a word."""
    scans = pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(5)], "session_id": "ses-M00",
                          "diagnosis": ["CN", "AD", "MCI", "AD", "CN"]})
    (tmp_path / "data_shape.json").write_text(json.dumps({"class_names": CLASSES}))  # a run from before the record
    assert _untrained_classes_warning(tmp_path, "nacc.csv", scans) is None
    (tmp_path / "data_shape.json").write_text(json.dumps({"class_names": CLASSES,
                                                          "train_class_counts": {"CN": 6, "MCI": 4, "AD": 0}}))
    warning = _untrained_classes_warning(tmp_path, "nacc.csv", scans)
    assert len(warning.splitlines()) == 1, warning
    assert warning.startswith(f"nacc.csv: 2 AD scan(s) of a class none of {tmp_path}'s training scans had; the network "
                              "never learned AD, so its recall is ~0 by construction")
    assert warning.endswith("train again on a manifest with such scans, or with data.mri.classes set to the classes "
                            "it has (a holdout's scans of other classes are then left out)")
    assert _untrained_classes_warning(tmp_path, "nacc.csv", scans[scans["diagnosis"] != "AD"]) is None


@pytest.mark.parametrize("damage, problem", [
    ("", "cannot be read as a CSV table"),  # emptied
    ("participant_id,split\n", "no participants listed"),  # cut after its header
    ("participant_id,split\nsub-0,train\nsub-1,te", "row 2: split 'te' is not one of train, val, test"),  # mid-row
    ("participant_id,split\nsub-0,train\nsub-4,test\n", "it lists 1 train participant(s) where the run's "
                                                        "split_balance.csv counts 3"),  # at a row's end
    ("participant_id,split\n" + "".join(f"sub-{i},{'train' if i < 4 else 'test'}\n" for i in range(9)),
     "it lists 4 train participant(s) where the run's split_balance.csv counts 3"),  # one row too many
    ("participant_id\nsub-0\n", "missing column(s) split"),
    ("participant_id,split\nsub-0,train\nsub-0,test\n", "participant sub-0 is listed more than once"),
])
def test_a_damaged_splits_csv_is_refused_in_one_line_naming_it_not_taken_for_an_edited_manifest(
        tmp_path: Path, damage: str, problem: str) -> None:
    """Every reader of a run's splits.csv goes through `read_run_splits`: a damaged one was read as it was, so
    evaluate blamed the manifest, and the participants a holdout must not share shrank to what was left."""
    pd.DataFrame({"split": ["train", "test"], "participants": [3, 5]}).to_csv(tmp_path / "split_balance.csv",
                                                                               index=False)
    (tmp_path / "splits.csv").write_text(damage)
    with pytest.raises(ValueError) as refused:
        _require_run_test_split(tmp_path, "cohort.csv", pd.Series([f"sub-{i}" for i in range(3, 8)]))
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'splits.csv'}: ") and problem in message and "\n" not in message
    assert message.endswith("the run's splits are damaged: restore the file `elr-mri train` wrote there (a copy of "
                            "the run), or train the run anew")
    assert "has changed since training" not in message
    with pytest.raises(ValueError, match="the run's splits are damaged"):
        run_participants(tmp_path)


def test_a_whole_splits_csv_reads_as_train_wrote_it(tmp_path: Path) -> None:
    """Ids stay text (0042 is not 42) and agree with split_balance.csv; runs from before that file are read alone."""
    (tmp_path / "splits.csv").write_text("participant_id,split\n0042,train\n0043,test\n0044,test\n")
    assert run_participants(tmp_path).tolist() == ["0042", "0043", "0044"]
    pd.DataFrame({"split": ["train", "test"], "participants": [1, 2]}).to_csv(tmp_path / "split_balance.csv",
                                                                               index=False)
    assert read_run_splits(tmp_path)["split"].tolist() == ["train", "test", "test"]


def test_a_splits_csv_row_whose_id_was_blanked_is_refused_though_the_counts_agree(tmp_path: Path) -> None:
    """pandas reads an empty id as NaN, not as "": the row must still be refused, or a holdout would be checked
    against one participant fewer than the run had."""
    (tmp_path / "splits.csv").write_text("participant_id,split\n0042,train\n,test\n")
    pd.DataFrame({"split": ["train", "test"], "participants": [1, 1]}).to_csv(tmp_path / "split_balance.csv",
                                                                               index=False)
    with pytest.raises(ValueError, match=r"splits.csv: row 2: no participant_id; the run's splits are damaged"):
        read_run_splits(tmp_path)


def test_loading_a_checkpoint_a_run_never_keeps_names_the_two_it_does(tmp_path: Path) -> None:
    """`load_run(run, "final")` from Python (the CLI offers best and last alone) said checkpoints/final.pt was not
    found and asked whether the folder was a finished run, blaming the folder for the name."""
    with pytest.raises(ValueError, match=r"^checkpoint='final': a run keeps 'best' \(the epoch its selection rule "
                                         r"chose\) and 'last' \(its last epoch\); pass one of them$"):
        load_run(tmp_path, "final")


def test_a_set_of_one_class_is_told_its_balanced_accuracy_is_that_classs_recall(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An AD-only holdout printed "chance is 100.0, not the 33.3 of all 3 classes": true of a network calling everyone
    AD, and of no use beside a figure that is AD's recall, the accuracy again. Without AD the chance level still
    stands (everyone called CN scores 50.0 over CN and MCI)."""
    people = np.array(["s0", "s1", "s2"])
    one_class = evaluate_predictions(np.array([2, 2, 2]), np.tile([0.2, 0.2, 0.6], (3, 1)), people, CLASSES, n_boot=10)
    _note_partial_balanced_accuracy(tmp_path, one_class["participant"])
    said = capsys.readouterr().err
    assert said == (f"note: {tmp_path}: balanced_accuracy is the recall of AD alone (every example here is labelled "
                    "AD), so it equals accuracy: the share of AD scans called AD, not how well the classes are told "
                    "apart (calling every scan AD scores 100.0); compare it only with AD's recall elsewhere (the rate "
                    "given AD, predicted AD in confusion.csv), not with a balanced accuracy over several classes\n")
    two_classes = evaluate_predictions(np.array([0, 1, 1]), np.tile([0.8, 0.1, 0.1], (3, 1)), people, CLASSES,
                                       n_boot=10)
    _note_partial_balanced_accuracy(tmp_path, two_classes["participant"])
    said = capsys.readouterr().err
    assert "over CN, MCI only (no example here is labelled AD), so chance is 50.0, not the 33.3" in said


def test_a_run_before_its_first_checkpoint_is_not_asked_whether_it_is_a_finished_run(tmp_path: Path) -> None:
    """evaluate scores a run still training from its checkpoint so far; one that has written none yet was asked "is
    RUN a finished `elr-mri train` run directory?", as if it had to be finished, or were no run at all."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")  # a run's folder as its start leaves it, before a checkpoint
    with pytest.raises(FileNotFoundError, match=rf"^{run}/checkpoints/best.pt not found: {run} has written no best "
                                                r"checkpoint yet \(.*\): score it once it has one$"):
        load_run(run)
    with pytest.raises(FileNotFoundError, match=r"is .* an `elr-mri train` run directory \(its --out\)\?$"):
        load_run(tmp_path)


def test_a_run_folder_that_is_not_there_is_named_as_missing(tmp_path: Path) -> None:
    """A mistyped --run said "RUN/checkpoints/best.pt not found: is RUN an `elr-mri train` run directory?", which sent
    a reader looking inside a folder that does not exist."""
    typo = tmp_path / "elr_sym4"
    with pytest.raises(FileNotFoundError, match=rf"^{typo}: no such folder; pass the folder `elr-mri train` wrote the "
                                                r"run to \(its --out\)$"):
        load_run(typo)


def test_a_scorings_folder_is_named_after_the_set_and_the_checkpoint_and_records_the_manifests_absolute_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README: evaluation writes RUN/eval-<name>/, RUN/eval-<name>-last/ with --checkpoint last; the summary records
    where the manifest is, so a relative path given from another folder names the same file."""
    run = tmp_path / "run"
    assert evaluation_dir(run, None) == run / "eval-test"
    assert evaluation_dir(run, Path("cohorts/nacc.csv"), "last") == run / "eval-nacc-last"
    assert explanation_dir(run, Path("nacc.csv")) == run / "explain-nacc"
    monkeypatch.chdir(tmp_path)
    assert scored_source(Path("nacc.csv")) == str(tmp_path.resolve() / "nacc.csv") and scored_source(None) is None


def test_a_folder_holding_another_manifests_scoring_is_refused_and_the_same_file_moved_is_not(tmp_path: Path) -> None:
    """Folders are named after the manifest's file name: a namesake from another cohort must not overwrite them;
    the same bytes at another path (a moved project) are the same holdout."""
    holdout, namesake, moved = tmp_path / "a" / "h.csv", tmp_path / "b" / "h.csv", tmp_path / "c" / "h.csv"
    for path, cells in ((holdout, "participant_id\nsub-1\n"), (namesake, "participant_id\nsub-2\n"),
                        (moved, "participant_id\nsub-1\n")):
        path.parent.mkdir()
        path.write_text(cells)
    out = tmp_path / "run" / "eval-h"
    out.mkdir(parents=True)
    require_own_folder(out, namesake)  # nothing scored there yet
    (out / "summary.json").write_text(json.dumps({"manifest": str(holdout.resolve()),
                                                  "manifest_sha256": scored_fingerprint(holdout)}))
    require_own_folder(out, holdout)
    require_own_folder(out, moved)
    with pytest.raises(ValueError, match=f"holds the results for {holdout.resolve()}, not {namesake.resolve()}"):
        require_own_folder(out, namesake)


def test_a_mistyped_manifest_beside_an_earlier_scoring_of_its_name_is_named_as_missing(tmp_path: Path) -> None:
    """`evaluate --manifest data/nacc.cvs` where eval-nacc/ held a scoring: the checksum compared with that scoring's
    read the missing file and the command printed only "[Errno 2] No such file or directory", naming no option."""
    holdout = tmp_path / "nacc.csv"
    holdout.write_text("participant_id\nsub-1\n")
    out = tmp_path / "run" / "eval-nacc"
    out.mkdir(parents=True)
    (out / "summary.json").write_text(json.dumps({"manifest": str(holdout.resolve()),
                                                  "manifest_sha256": scored_fingerprint(holdout)}))
    mistyped = tmp_path / "nacc.cvs"
    with pytest.raises(ValueError, match=f"^manifest {mistyped}: no such file$"):
        require_own_folder(out, mistyped)
    with pytest.raises(ValueError, match="is a folder, not a file"):
        require_own_folder(out, tmp_path / "run")


def test_a_scoring_cut_short_leaves_no_earlier_scorings_summary_beside_its_new_files(tmp_path: Path) -> None:
    """summary.json is what readers take as a whole scoring: it goes before the first file is rewritten."""
    out = tmp_path / "eval-h"
    _write(out, [0, 1, 2, 0], n_boot=10)
    (out / "predictions.csv").unlink()
    (out / "predictions.csv").mkdir()  # the write of predictions.csv fails, after metrics.csv was rewritten
    with pytest.raises(OSError):
        _write(out, [0, 1, 1, 0], n_boot=10)
    assert (out / "metrics.csv").is_file() and not (out / "summary.json").exists()


def test_a_test_split_rebuilt_with_a_participant_the_run_did_not_test_on_is_refused(tmp_path: Path) -> None:
    """A manifest changed since training moves a training participant into the rebuilt test split: scoring it
    as test would score what the run learned from."""
    pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(8)],
                  "split": ["train"] * 3 + ["test"] * 5}).to_csv(tmp_path / "splits.csv", index=False)
    with pytest.raises(ValueError, match="cohort.csv has changed since training: 1 participant.s. now land in the "
                                         r"test split that the run did not test on \(e.g. sub-1,"):
        _require_run_test_split(tmp_path, "cohort.csv", pd.Series(["sub-3", "sub-1", "sub-4"]))


def test_a_test_split_that_only_lost_sessions_names_whose_scans_it_lacks(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """With no scan added, "them" would refer to nothing: the lost scans' owners are named in full."""
    tested = [["sub-1", "ses-M00", "CN"], ["sub-1", "ses-M06", "CN"], ["sub-2", "ses-M00", "AD"]]
    (tmp_path / "data_shape.json").write_text(json.dumps({"class_names": CLASSES, "test_diagnoses": tested}))
    scans = pd.DataFrame([tested[0], tested[2]], columns=["participant_id", "session_id", "diagnosis"])
    _warn_of_other_test_scans(tmp_path, "cohort.csv", scans)
    assert capsys.readouterr().err.startswith(f"warning: cohort.csv now lacks 1 scan(s) of {tmp_path}'s test "
                                              "participants that it tested on (e.g. sub-1 ses-M06) (test_diagnoses")


def test_test_scans_relabelled_since_training_are_counted_and_the_first_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A revised diagnosis is scored as it is now, with a warning that the figures then differ from the run's own
    test_acc; scans as they were tested say nothing."""
    tested = [["sub-1", "ses-M00", "CN"], ["sub-2", "ses-M00", "AD"], ["sub-3", "ses-M00", "MCI"]]
    (tmp_path / "data_shape.json").write_text(json.dumps({"class_names": CLASSES, "test_diagnoses": tested}))
    frame = pd.DataFrame(tested, columns=["participant_id", "session_id", "diagnosis"]).assign(
        age=70.0, image_path=[str(tmp_path / f"{i}.nii.gz") for i in range(3)])
    for path in frame["image_path"]:
        Path(path).touch()  # listed, never read: the check compares labels only
    transform = mri_transforms((8, 8, 8), train=False)
    _warn_of_relabelled_test_scans(tmp_path, "cohort.csv", MRIScans(frame, np.array([0, 2, 1]), transform, "none"))
    assert capsys.readouterr().err == ""
    _warn_of_relabelled_test_scans(tmp_path, "cohort.csv", MRIScans(frame, np.array([0, 2, 2]), transform, "none"))
    warning = capsys.readouterr().err.strip()
    assert len(warning.splitlines()) == 1 and warning.startswith(
        f"warning: cohort.csv now gives 1 of the 3 test scans another diagnosis than {tmp_path} trained with "
        "(e.g. sub-3 ses-M00: MCI then, AD now; test_diagnoses in its data_shape.json)")


def test_a_holdout_edited_in_place_since_a_scoring_that_recorded_no_rows_removes_its_comparisons(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The manifest's rows outweigh its bytes only where both scorings recorded them; else its sha256 decides. A
    relabelled scan changes what was scored too: the removal says "other scans" once."""
    out = tmp_path / "eval-h"
    _write(out, [0, 1, 2, 0], n_boot=10)
    (out / "comparison.csv").write_text("method\n")
    capsys.readouterr()
    _write(out, [0, 1, 2, 1], n_boot=10, manifest_sha256="abd")
    assert not (out / "comparison.csv").exists()
    assert capsys.readouterr().err == (f"{out}: removed comparison.csv (they were made beside a scoring with other "
                                       "scans (the manifest's content changed); --baselines and --compare-with make "
                                       "them again)\n")


@pytest.mark.parametrize("classes, note", [
    (12, "over c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10 only (no example here is labelled c11), so chance is 9.1"),
    (13, "over 11 of the classes only (no example here is labelled one of the other 2), so chance is 9.1"),
])
def test_a_set_lacking_a_class_names_the_classes_where_the_plots_can_name_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], classes: int, note: str) -> None:
    """The plots name up to 12 classes (LEGIBLE_CLASSES); the note lists them as far, and counts them beyond."""
    names = [f"c{k}" for k in range(classes)]
    labels = np.arange(11)
    report = bootstrap_metrics(labels, np.full((11, classes), 1 / classes), labels.astype(str), names, 10,
                               level="image")
    _note_partial_balanced_accuracy(tmp_path, report)
    assert note in capsys.readouterr().err
