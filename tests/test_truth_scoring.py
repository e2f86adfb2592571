"""Rescoring saved predictions against a simulated cohort's true diagnosis, and the paired comparison."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elr_mri.evaluation.truth import mean_paired_difference, participants_predicted_alike, rescore_against_truth

CLASSES = ["CN", "MCI", "AD"]


def _write_predictions(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """rows: (participant, given label, predicted label); the predicted class gets probability 0.8."""
    return _write_probabilities(path, [(participant, given, [0.8 if c == predicted else 0.1 for c in CLASSES])
                                       for participant, given, predicted in rows])


def _write_probabilities(path: Path, rows: list[tuple[str, str, list[float]]]) -> Path:
    """rows: (participant, given label, probabilities of CLASSES), in the layout `evaluate` writes."""
    records = [{"participant_id": participant, "session_id": "ses-M00", "given": given,
                "predicted": CLASSES[max(range(len(CLASSES)), key=probs.__getitem__)],
                **{f"p_{c}": q for c, q in zip(CLASSES, probs)}} for participant, given, probs in rows]
    pd.DataFrame(records).to_csv(path, index=False)
    return path


TRUE_DIAGNOSIS = {"s1": "CN", "s2": "MCI", "s3": "AD", "s4": "MCI"}


def _right_except(path: Path, **predicted: str) -> Path:
    """Predictions (and given labels) equal to the true diagnoses, except the participants named."""
    return _write_predictions(path, [(p, true, predicted.get(p, true)) for p, true in TRUE_DIAGNOSIS.items()])


@pytest.fixture
def truth() -> pd.DataFrame:
    return pd.DataFrame({"participant_id": list(TRUE_DIAGNOSIS), "session_id": ["ses-M00"] * 4,
                         "true_diagnosis": list(TRUE_DIAGNOSIS.values())})


def test_rescoring_uses_the_true_not_the_given_diagnosis(tmp_path: Path, truth: pd.DataFrame) -> None:
    # Given labels of s1 and s3 are wrong; the predictions follow the truth, so they score 100% against it.
    predictions = _write_predictions(tmp_path / "p.csv", [("s1", "MCI", "CN"), ("s2", "MCI", "MCI"),
                                                          ("s3", "MCI", "AD"), ("s4", "MCI", "MCI")])
    report = rescore_against_truth(predictions, truth, n_boot=50)
    assert report.metrics["accuracy"].estimate == 1.0
    assert report.n_participants == 4


def test_a_two_class_run_is_scored_on_the_scans_whose_truth_is_one_of_its_classes(tmp_path: Path, truth: pd.DataFrame,
                                                                                   caplog) -> None:
    """A CN-vs-AD run predicts no MCI: its truly-MCI scans have no right answer, so they leave its truth scores."""
    for cn, ad in (("CN", "AD"), ("cn", "ad")):  # a run's classes as its config spelled them
        records = [{"participant_id": p, "session_id": "ses-M00", "given": cn, "predicted": cn, f"p_{cn}": q,
                    f"p_{ad}": 1 - q} for p, q in (("s1", 0.9), ("s2", 0.7), ("s3", 0.2), ("s4", 0.6))]
        pd.DataFrame(records).to_csv(tmp_path / f"{cn}.csv", index=False)
        for _ in range(2):
            report = rescore_against_truth(tmp_path / f"{cn}.csv", truth, n_boot=50)
            assert (report.n_participants, report.metrics["accuracy"].estimate) == (2, 1.0)  # s1 CN, s3 AD: right
    assert caplog.messages == [f"{tmp_path / 'CN.csv'}: 2 scan(s) whose true diagnosis is not among the run's classes "
                               "CN, AD (MCI) are left out of the scores against the truth",
                               f"{tmp_path / 'cn.csv'}: 2 scan(s) whose true diagnosis is not among the run's classes "
                               "cn, ad (MCI) are left out of the scores against the truth"]  # once a file


def test_paired_difference_counts_participants_each_method_gets_right(tmp_path: Path, truth: pd.DataFrame) -> None:
    a = _write_predictions(tmp_path / "a.csv", [("s1", "CN", "MCI"), ("s2", "MCI", "MCI"),
                                                ("s3", "AD", "MCI"), ("s4", "MCI", "MCI")])  # 2 of 4 right
    b = _write_predictions(tmp_path / "b.csv", [("s1", "CN", "CN"), ("s2", "MCI", "MCI"),
                                                ("s3", "AD", "AD"), ("s4", "MCI", "CN")])  # 3 of 4 right
    difference = mean_paired_difference([(a, b)], truth, n_boot=200)
    assert difference.estimate == pytest.approx(0.25)
    assert difference.low <= 0.25 <= difference.high
    assert mean_paired_difference([(a, a)], truth, n_boot=20).high == 0.0  # identical predictions: no spread


def test_a_paired_comparison_of_runs_on_other_participants_says_what_it_covers(tmp_path: Path, truth: pd.DataFrame,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    a = _write_predictions(tmp_path / "a.csv", [("s1", "CN", "CN"), ("s2", "MCI", "MCI"), ("s3", "AD", "AD")])
    b = _write_predictions(tmp_path / "b.csv", [("s1", "CN", "CN"), ("s2", "MCI", "CN")])
    assert mean_paired_difference([(a, b)], truth, n_boot=20).estimate == pytest.approx(-0.5)  # over s1, s2
    assert "covers the 2 participant entries every run has; a run has 3" in caplog.text
    caplog.clear()
    mean_paired_difference([(a, a)], truth, n_boot=20)
    assert "covers the" not in caplog.text  # runs on the same participants: the comparison covers them all


def test_mean_over_seeds_averages_each_participants_difference(tmp_path: Path, truth: pd.DataFrame) -> None:
    right = _right_except(tmp_path / "right.csv")
    wrong_s1 = _right_except(tmp_path / "w1.csv", s1="AD")
    wrong_s1_s2 = _right_except(tmp_path / "w12.csv", s1="AD", s2="AD")
    # seed 1: B gains s1 (+1/4); seed 2: B gains s1 and s2 (+2/4); mean +3/8
    pooled = mean_paired_difference([(wrong_s1, right), (wrong_s1_s2, right)], truth, n_boot=300)
    assert pooled.estimate == pytest.approx(0.375)
    assert 0.0 <= pooled.low <= 0.375 <= pooled.high  # no participant is worse under B in any seed
    # opposite seeds cancel participant by participant, so the pooled difference has no spread at all
    assert mean_paired_difference([(wrong_s1, right), (right, wrong_s1)], truth, n_boot=50).high == 0.0


def test_missing_truth_is_one_clear_error(tmp_path: Path, truth: pd.DataFrame) -> None:
    predictions = _write_predictions(tmp_path / "p.csv", [("s9", "CN", "CN")])
    with pytest.raises(ValueError, match="no true diagnosis for s9"):
        rescore_against_truth(predictions, truth)


def test_truth_tables_that_disagree_on_a_scan_are_refused(tmp_path: Path, truth: pd.DataFrame) -> None:
    """Two simulated cohorts both name a subject s1: their truths must not be joined silently."""
    other_cohort = truth.assign(true_diagnosis=["AD", "MCI", "AD", "MCI"])  # s1 is someone else there
    predictions = _right_except(tmp_path / "p.csv")
    with pytest.raises(ValueError, match=r"give s1 ses-M00 more than one true diagnosis \(AD, CN\)"):
        rescore_against_truth(predictions, pd.concat([other_cohort, truth]))
    assert rescore_against_truth(predictions, pd.concat([truth, truth]), n_boot=20).metrics["accuracy"].estimate == 1


def test_a_scan_without_probabilities_is_refused_naming_the_file_not_scored_as_the_first_class(
        tmp_path: Path, truth: pd.DataFrame) -> None:
    """A predictions.csv with an empty cell (cut short, edited by hand): its NaN became the participant's mean, whose
    argmax is 0, so the paired comparison scored s3 as CN without a word."""
    right = _right_except(tmp_path / "right.csv")
    broken = _write_probabilities(tmp_path / "broken.csv", [("s1", "CN", [0.8, 0.1, 0.1]),
                                                            ("s2", "MCI", [0.1, 0.8, 0.1]),
                                                            ("s3", "AD", [float("nan"), 0.1, 0.8]),
                                                            ("s4", "MCI", [0.1, 0.8, 0.1])])
    refusal = re.escape(f"{broken}: 1 scan(s) without a probability for every class") + r".*first: s3 ses-M00\)"
    with pytest.raises(ValueError, match=refusal):
        mean_paired_difference([(right, broken)], truth, n_boot=20)
    with pytest.raises(ValueError, match=refusal):
        rescore_against_truth(broken, truth, n_boot=20)


def test_predictions_whose_columns_are_not_probabilities_are_refused_naming_the_scan(tmp_path: Path,
                                                                                      truth: pd.DataFrame) -> None:
    """A predictions.csv of another tool's scores (here s3's sum to 1.7) was averaged and ranked as probabilities."""
    right = _right_except(tmp_path / "right.csv")
    scores = _write_probabilities(tmp_path / "scores.csv", [("s1", "CN", [0.8, 0.1, 0.1]),
                                                            ("s2", "MCI", [0.1, 0.8, 0.1]),
                                                            ("s3", "AD", [0.1, 0.1, 1.5]),
                                                            ("s4", "MCI", [0.1, 0.8, 0.1])])
    refusal = re.escape(f"{scores}: 1 scan(s) whose p_<class> columns are not probabilities (first: s3 ses-M00, "
                        "summing to 1.7); write each class's probability there")
    with pytest.raises(ValueError, match=refusal):
        mean_paired_difference([(right, scores)], truth, n_boot=20)
    with pytest.raises(ValueError, match=refusal):
        rescore_against_truth(scores, truth, n_boot=20)


def test_a_true_diagnosis_outside_the_runs_classes_is_refused_naming_the_predictions_and_the_scan(
        tmp_path: Path, truth: pd.DataFrame) -> None:
    """A truth table in a cohort's own codes (Dementia for AD): the refusal said which codes, not for which file."""
    predictions = _right_except(tmp_path / "p.csv")
    recoded = truth.assign(true_diagnosis=truth["true_diagnosis"].replace({"AD": "Dementia"}))
    with pytest.raises(ValueError, match=re.escape(f"{predictions}: the truth gives true diagnoses Dementia (first: "
                                                   "s3 ses-M00), none of the run's classes CN, MCI, AD")):
        rescore_against_truth(predictions, recoded)


def test_balanced_difference_weighs_each_true_class_equally(tmp_path: Path, truth: pd.DataFrame) -> None:
    right = _right_except(tmp_path / "right.csv")
    misses_cn = _right_except(tmp_path / "cn.csv", s1="MCI")
    misses_one_mci = _right_except(tmp_path / "mci.csv", s2="CN")
    # one participant of four either way (accuracy +1/4), but CN is a class of one and MCI a class of two
    assert mean_paired_difference([(misses_cn, right)], truth, n_boot=50).estimate == pytest.approx(0.25)
    balanced_cn = mean_paired_difference([(misses_cn, right)], truth, n_boot=200, metric="balanced_accuracy")
    assert balanced_cn.estimate == pytest.approx(1 / 3)
    # a resample that drew every class gives 1/3 again; one that drew no CN (0) or no AD (1/2) is left out
    assert balanced_cn.low == pytest.approx(1 / 3) and balanced_cn.high == pytest.approx(1 / 3)
    assert 0 < balanced_cn.resamples < 200
    balanced_mci = mean_paired_difference([(misses_one_mci, right)], truth, n_boot=300, metric="balanced_accuracy")
    assert balanced_mci.estimate == pytest.approx(1 / 6)
    assert 0.0 <= balanced_mci.low <= 1 / 6 <= balanced_mci.high


def test_auc_difference_ignores_where_the_decision_falls(tmp_path: Path, truth: pd.DataFrame) -> None:
    right = _right_except(tmp_path / "right.csv")
    # every class's probability still ranks its own participants first, but s1 and s3 are called MCI
    leans_mci = _write_probabilities(tmp_path / "mci.csv", [("s1", "CN", [0.4, 0.5, 0.1]),
                                                            ("s2", "MCI", [0.2, 0.7, 0.1]),
                                                            ("s3", "AD", [0.1, 0.5, 0.4]),
                                                            ("s4", "MCI", [0.25, 0.7, 0.05])])
    assert mean_paired_difference([(leans_mci, right)], truth, n_boot=50).estimate == pytest.approx(0.5)
    auc = mean_paired_difference([(leans_mci, right)], truth, n_boot=200, metric="auc_macro")
    assert (auc.estimate, auc.low, auc.high) == (0.0, 0.0, 0.0)
    only_mci = [tmp_path / "mci_only_a.csv", tmp_path / "mci_only_b.csv"]
    for path in only_mci:
        _write_predictions(path, [("s2", "MCI", "MCI"), ("s4", "MCI", "CN")])
    undefined = mean_paired_difference([tuple(only_mci)], truth, n_boot=20, metric="auc_macro")
    assert np.isnan([undefined.estimate, undefined.low, undefined.high]).all()  # one true class: no AUC, no error
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        mean_paired_difference([(leans_mci, right)], truth, metric="f1")


def test_runs_trained_with_the_classes_in_another_order_are_matched_by_class_name(tmp_path: Path,
                                                                                 truth: pd.DataFrame) -> None:
    a = _right_except(tmp_path / "a.csv", s4="CN")  # 3 of 4 right
    reordered = pd.read_csv(a)[["participant_id", "session_id", "given", "predicted", "p_AD", "p_MCI", "p_CN"]]
    reordered.to_csv(tmp_path / "b.csv", index=False)  # the same predictions, written by a run with classes AD, MCI, CN
    difference = mean_paired_difference([(a, tmp_path / "b.csv")], truth, n_boot=50, metric="auc_macro")
    assert (difference.estimate, difference.low, difference.high) == (0.0, 0.0, 0.0)
    other = pd.read_csv(a).rename(columns={"p_AD": "p_Dementia"})
    other.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValueError, match="c.csv: predicts the classes CN, MCI, Dementia, the first run of the "
                                         "comparison CN, MCI, AD"):
        mean_paired_difference([(a, tmp_path / "c.csv")], truth, n_boot=20)


def _many_participants(path: Path, seed: int) -> Path:
    """Thirty participants (s00..s29: truly CN, MCI, AD in turn), each with two scans of noisy probabilities."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(30):
        true = CLASSES[i % 3]
        for session in ("ses-M00", "ses-M12"):
            probs = rng.dirichlet([1, 1, 1]) + 0.5 * (np.array(CLASSES) == true) * rng.random()
            probs /= probs.sum()
            records.append({"participant_id": f"s{i:02d}", "session_id": session, "given": true,
                            "predicted": CLASSES[int(probs.argmax())], **dict(zip([f"p_{c}" for c in CLASSES], probs))})
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def _many_truth() -> pd.DataFrame:
    return pd.DataFrame([{"participant_id": f"s{i:02d}", "session_id": session, "true_diagnosis": CLASSES[i % 3]}
                         for i in range(30) for session in ("ses-M00", "ses-M12")])


def _participant_accuracy(path: Path, rows: np.ndarray) -> float:
    """Accuracy over the participants `rows` (positions in s00..s29 order) of their mean probabilities."""
    frame = pd.read_csv(path).groupby("participant_id")[[f"p_{c}" for c in CLASSES]].mean()
    truth = np.arange(30) % 3
    return float(np.mean(frame.to_numpy()[rows].argmax(1) == truth[rows]))


def test_the_paired_interval_is_the_95_percent_percentile_interval_of_differences_on_the_same_resamples(
        tmp_path: Path) -> None:
    """Both runs are scored on each seeded resample of the participants; the interval is its 2.5th and 97.5th
    percentile, whatever the seed."""
    from elr_mri.evaluation.resampling import participant_resamples

    a, b = _many_participants(tmp_path / "a.csv", seed=1), _many_participants(tmp_path / "b.csv", seed=2)
    people = np.array([f"s{i:02d}" for i in range(30)])
    for seed in (0, 3):
        got = mean_paired_difference([(a, b)], _many_truth(), n_boot=300, seed=seed)
        draws = participant_resamples(people, 300, np.random.default_rng(seed))
        differences = [_participant_accuracy(b, rows) - _participant_accuracy(a, rows) for rows in draws]
        everyone = np.arange(30)
        assert got.estimate == pytest.approx(_participant_accuracy(b, everyone) - _participant_accuracy(a, everyone))
        assert (got.low, got.high) == pytest.approx(tuple(np.percentile(differences, [2.5, 97.5])), abs=1e-12)
        assert got.high - got.low > 0.05 and got.resamples == 300


def test_rescoring_against_the_truth_averages_each_participants_scans(tmp_path: Path) -> None:
    predictions = _many_participants(tmp_path / "p.csv", seed=4)
    report = rescore_against_truth(predictions, _many_truth(), n_boot=20)
    assert (report.n_examples, report.n_participants) == (30, 30)  # 60 scans, one entry a participant
    assert report.level == "participant"  # the rows of its metrics.csv say so, not "scan"
    assert report.metrics["accuracy"].estimate == pytest.approx(_participant_accuracy(predictions, np.arange(30)))


def test_the_paired_comparison_pairs_participants_by_id_not_by_row(tmp_path: Path) -> None:
    """Two runs' predictions.csv list the scans in any order (another manifest order, a baseline's): each participant
    is set against itself, so shuffling one file's rows changes no figure."""
    a, b = _many_participants(tmp_path / "a.csv", seed=1), _many_participants(tmp_path / "b.csv", seed=2)
    shuffled = tmp_path / "shuffled.csv"
    pd.read_csv(b).sample(frac=1, random_state=0).to_csv(shuffled, index=False)
    for metric in ("accuracy", "balanced_accuracy", "auc_macro"):
        assert (mean_paired_difference([(a, shuffled)], _many_truth(), n_boot=100, metric=metric)
                == mean_paired_difference([(a, b)], _many_truth(), n_boot=100, metric=metric))
    assert mean_paired_difference([(b, shuffled)], _many_truth(), n_boot=100).high == 0.0  # the same predictions


def _converter_runs(tmp_path: Path, count: int, predicted: tuple[str, str]) -> tuple[pd.DataFrame, tuple[Path, Path]]:
    """`count` converters, truly CN at M00 and MCI at M12, and two runs (a, b) that call both visits of everyone
    `predicted[0]` and `predicted[1]`: the truth and the two predictions.csv."""
    visits = {"ses-M00": "CN", "ses-M12": "MCI"}
    truth = pd.DataFrame([{"participant_id": f"c{i}", "session_id": session, "true_diagnosis": true}
                          for i in range(count) for session, true in visits.items()])
    for name, label in zip("ab", predicted):
        records = [{"participant_id": f"c{i}", "session_id": session, "given": true, "predicted": label,
                    **{f"p_{c}": 0.8 if c == label else 0.1 for c in CLASSES}}
                   for i in range(count) for session, true in visits.items()]
        pd.DataFrame(records).to_csv(tmp_path / f"{name}.csv", index=False)
    return truth, (tmp_path / "a.csv", tmp_path / "b.csv")


def test_a_converters_two_entries_are_resampled_together(tmp_path: Path) -> None:
    """Ten converters, truly CN at M00 and MCI at M12: run A calls both visits MCI, run B both CN, so each
    participant's CN entry favours B and MCI entry A. Any resample of participants brings both, a difference of
    exactly 0; resampling the entries one by one would draw unequal numbers of them and spread the interval."""
    truth, runs = _converter_runs(tmp_path, 10, ("MCI", "CN"))
    difference = mean_paired_difference([runs], truth, n_boot=200)
    assert (difference.estimate, difference.low, difference.high) == (0.0, 0.0, 0.0)


def test_runs_predicting_alike_count_a_converter_once_not_once_a_diagnosis(tmp_path: Path) -> None:
    """Three converters are six participant entries (one per true diagnosis) but three participants, as the report
    says them beside the paired difference; runs that differ on any entry are not alike."""
    truth, alike = _converter_runs(tmp_path, 3, ("MCI", "MCI"))
    assert participants_predicted_alike(*alike, truth) == 3
    truth, unlike = _converter_runs(tmp_path, 3, ("MCI", "CN"))
    assert participants_predicted_alike(*unlike, truth) is None


def test_runs_that_differ_on_one_participant_of_four_are_not_alike(tmp_path: Path, truth: pd.DataFrame) -> None:
    """One diagnosis apart is enough for a paired difference that can be nonzero."""
    right, wrong_s1 = _right_except(tmp_path / "right.csv"), _right_except(tmp_path / "w1.csv", s1="AD")
    assert participants_predicted_alike(right, wrong_s1, truth) is None
    assert participants_predicted_alike(right, right, truth) == 4


def test_rescoring_draws_its_resamples_from_the_seed_it_is_given(tmp_path: Path) -> None:
    """The accuracy interval of `rescore_against_truth(seed=s)` is the 2.5th and 97.5th percentile of the accuracies
    on the participant resamples seed s draws, for a seed other than the default 0 as well."""
    from elr_mri.evaluation.resampling import participant_resamples

    predictions = _many_participants(tmp_path / "p.csv", seed=4)
    people = np.array([f"s{i:02d}" for i in range(30)])
    for seed in (0, 3):
        got = rescore_against_truth(predictions, _many_truth(), n_boot=200, seed=seed).metrics["accuracy"]
        draws = participant_resamples(people, 200, np.random.default_rng(seed))
        accuracies = [_participant_accuracy(predictions, rows) for rows in draws]
        assert (got.low, got.high) == pytest.approx(tuple(np.percentile(accuracies, [2.5, 97.5])), abs=1e-12)
