"""Metrics against scikit-learn, and a bootstrap that resamples participants rather than scans."""

from __future__ import annotations

import warnings
from dataclasses import astuple

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, auc, balanced_accuracy_score, confusion_matrix, roc_auc_score

from elr_mri.evaluation.calibration import brier_score, expected_calibration_error, reliability_bins
from elr_mri.evaluation.metrics import bootstrap_metrics, evaluate_predictions, participant_means
from elr_mri.evaluation.metrics_report import Interval
from elr_mri.evaluation.point_metrics import confusion_counts, point_metrics
from elr_mri.evaluation.resampling import participant_resamples
from elr_mri.evaluation.roc import roc_auc, roc_points

CLASSES = ["CN", "MCI", "AD"]


PALETTE = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [0.5, 0.3, 0.2]])


def predictions(n: int, seed: int, signal: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    proba = rng.dirichlet([1.0, 1.0, 1.0], n)
    proba[np.arange(n), labels] += signal * rng.random(n)
    return labels, proba / proba.sum(1, keepdims=True)


def tied_predictions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Few distinct probability vectors, so scores tie often; the AUC must count ties as half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    rows = np.where(rng.random(n) < 0.5, labels, rng.integers(0, len(PALETTE), n))
    return labels, PALETTE[rows]


def test_top5_accuracy_matches_scikit_learn_above_five_classes():
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 50, 600)
    proba = rng.dirichlet(np.ones(50), 600)
    proba[np.arange(300), labels[:300]] += 0.05  # half of them nudged towards their label
    values = point_metrics(labels, proba, 50)
    assert values["top5_accuracy"] == pytest.approx(top_k_accuracy_score(labels, proba, k=5, labels=np.arange(50)))
    assert values["accuracy"] < values["top5_accuracy"] < 1
    assert "top5_accuracy" not in point_metrics(labels % 3, proba[:, :3], 3)  # trivially 1 with three classes


@pytest.mark.parametrize("make", [predictions, tied_predictions])
def test_point_metrics_match_scikit_learn(make):
    labels, proba = make(400, seed=1)
    values = point_metrics(labels, proba, 3)
    predicted = proba.argmax(1)
    onehot = np.eye(3)[labels]
    assert values["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert values["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert values["auc_micro"] == pytest.approx(roc_auc_score(onehot, proba, average="micro"))
    assert values["auc_macro"] == pytest.approx(roc_auc_score(labels, proba, multi_class="ovr", average="macro"))
    for c in range(3):
        assert values[f"auc_{c}"] == pytest.approx(roc_auc_score(labels == c, proba[:, c]))
    np.testing.assert_array_equal(confusion_counts(labels, predicted, 3), confusion_matrix(labels, predicted, labels=[0, 1, 2]))


def test_ece_is_near_zero_where_confidence_is_the_hit_rate_and_the_gap_where_it_is_not() -> None:
    """Hand-computed: a constant 0.99 at 50% accuracy is one bin 0.49 off; predictions right with the probability
    they state are calibrated, whatever that probability (only the bins' sampling noise is left)."""
    rng = np.random.default_rng(0)
    half_right = np.tile([0.99, 0.005, 0.005], (1000, 1))
    assert expected_calibration_error(np.repeat([0, 1], 500), half_right) == pytest.approx(0.49)
    stated = rng.uniform(1 / 3, 1, 20000)
    labels = np.where(rng.random(20000) < stated, 0, 1)  # class 0, predicted, is right with the stated probability
    calibrated = np.column_stack([stated, (1 - stated) / 2, (1 - stated) / 2])
    assert expected_calibration_error(labels, calibrated) < 0.015
    assert expected_calibration_error(labels, np.column_stack([stated ** 0.3, *(2 * [(1 - stated ** 0.3) / 2])])) > 0.1


def test_ece_weighs_each_of_its_ten_bins_by_its_examples() -> None:
    """Hand-computed, the README's definition: 50 examples in (0.8, 0.9] at mean confidence 0.85 and 86% right, and
    10 at 0.6 all right, give (50·0.01 + 10·0.4)/60. A mean over bins (0.205) lets a bin of a few outweigh the rest;
    15 bins (0.142) part 0.82 from 0.88, whose gaps of −0.10 and +0.08 the tenth bin nets out. A bin of one example
    counts as any other."""
    confidence = np.repeat([0.82, 0.88, 0.6], [25, 25, 10])
    right = np.concatenate([np.arange(25) < 23, np.arange(25) < 20, np.ones(10, dtype=bool)])
    proba = np.column_stack([confidence, (1 - confidence) / 2, (1 - confidence) / 2])
    assert expected_calibration_error(np.where(right, 0, 1), proba) == pytest.approx((50 * 0.01 + 10 * 0.4) / 60)
    assert expected_calibration_error(np.array([1]), np.array([[0.95, 0.05]])) == pytest.approx(0.95)


def test_reliability_bins_count_each_example_once_in_its_confidence_bin() -> None:
    """Equal-width bins (low, high]: 0.7 lies in (0.6, 0.7], and a bin's accuracy is its share of right argmaxes."""
    proba = np.array([[0.7, 0.3], [0.3, 0.7], [0.95, 0.05], [0.5, 0.5]])
    bins = reliability_bins(np.array([0, 0, 1, 0]), proba, bins=10)
    assert bins["count"].tolist() == [0, 0, 0, 0, 1, 0, 2, 0, 0, 1]
    assert (bins["confidence"][6], bins["accuracy"][6], bins["accuracy"][9], bins["accuracy"][4]) == (0.7, 0.5, 0, 1)
    assert np.isnan(bins["accuracy"][0]) and bins["edges"][[0, -1]].tolist() == [0, 1]


def test_brier_score_is_the_squared_distance_to_the_one_hot_label() -> None:
    assert brier_score(np.array([1]), np.array([[0.0, 1.0, 0.0]])) == 0
    assert brier_score(np.array([0, 2]), np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.6]])) == pytest.approx(
        ((0.25 + 0.25) + (0.04 + 0.04 + 0.16)) / 2)
    labels, proba = predictions(200, seed=4)
    from sklearn.metrics import brier_score_loss  # binary: half the multiclass score of two classes
    two = np.column_stack([proba[:, 0], 1 - proba[:, 0]])
    assert brier_score((labels != 0).astype(int), two) == pytest.approx(2 * brier_score_loss(labels == 0, two[:, 0]))


def test_balanced_accuracy_ignores_classes_without_support_like_scikit_learn():
    labels = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    with pytest.warns(UserWarning):
        expected = balanced_accuracy_score(labels, proba.argmax(1))
    assert point_metrics(labels, proba, 3)["balanced_accuracy"] == pytest.approx(expected)
    assert np.isnan(point_metrics(labels, proba, 3)["auc_2"]) and np.isnan(roc_auc([True, True], [0.1, 0.2]))


def test_a_report_names_the_classes_its_balanced_accuracy_averages_over() -> None:
    """A set without AD: everyone called CN scores 1/2, chance over CN and MCI, which the report must name."""
    labels = np.array([0, 0, 1, 1])
    everyone_cn = np.tile([0.8, 0.1, 0.1], (4, 1))
    report = bootstrap_metrics(labels, everyone_cn, np.array(["a", "b", "c", "d"]), CLASSES, n_boot=10)
    assert report.metrics["balanced_accuracy"].estimate == pytest.approx(0.5)
    assert report.balanced_accuracy_classes == ["CN", "MCI"]
    every_class = bootstrap_metrics(np.array([0, 1, 2]), np.tile([0.8, 0.1, 0.1], (3, 1)), np.array(["a", "b", "c"]),
                                    CLASSES, n_boot=10)
    assert every_class.balanced_accuracy_classes == CLASSES


def test_report_names_per_class_auc_and_brackets_the_estimate():
    labels, proba = predictions(300, seed=2)
    people = [f"P{i // 3}" for i in range(300)]
    report = bootstrap_metrics(labels, proba, people, CLASSES, n_boot=300, seed=0)
    assert list(report.metrics) == ["accuracy", "balanced_accuracy", "auc_micro", "auc_macro", "ece", "brier", "auc_CN",
                                    "auc_MCI", "auc_AD"]
    for interval in report.metrics.values():
        assert interval.low <= interval.estimate <= interval.high and interval.high - interval.low > 0.01
    assert (report.n_examples, report.n_participants) == (300, 100)
    rates = report.confusion_rate
    np.testing.assert_allclose(rates["estimate"].sum(1), 1.0)
    assert (rates["low"] <= rates["estimate"] + 1e-12).all() and (rates["estimate"] <= rates["high"] + 1e-12).all()
    assert report.rows()[0]["metric"] == "accuracy" and report.rows()[0]["participants"] == 100
    confusion = pd.DataFrame(report.confusion_rows())
    assert confusion["count"].sum() == 300 and len(confusion) == 9
    np.testing.assert_allclose(confusion.groupby("given")["rate"].sum(), 1.0)
    cn_as_ad = confusion.query("given == 'CN' and predicted == 'AD'").iloc[0]
    assert cn_as_ad["count"] == report.confusion[0, 2] and cn_as_ad["low"] <= cn_as_ad["rate"] <= cn_as_ad["high"]


def test_bootstrap_resamples_participants_not_scans():
    labels, proba = predictions(60, seed=3)
    one_scan_each = [f"P{i}" for i in range(60)]
    single = bootstrap_metrics(labels, proba, one_scan_each, CLASSES, n_boot=400, seed=7)
    # the same 60 participants, each now with 10 identical scans
    repeated = bootstrap_metrics(np.repeat(labels, 10), np.repeat(proba, 10, axis=0), np.repeat(one_scan_each, 10),
                                 CLASSES, n_boot=400, seed=7)
    for name in ("accuracy", "auc_macro"):
        assert repeated.metrics[name].estimate == pytest.approx(single.metrics[name].estimate)
        assert repeated.metrics[name].low == pytest.approx(single.metrics[name].low)
        assert repeated.metrics[name].high == pytest.approx(single.metrics[name].high)
    # treating the 600 scans as independent would shrink the interval by about √10
    naive = bootstrap_metrics(np.repeat(labels, 10), np.repeat(proba, 10, axis=0), [f"S{i}" for i in range(600)],
                              CLASSES, n_boot=400, seed=7)
    width = lambda r: r.metrics["accuracy"].high - r.metrics["accuracy"].low  # noqa: E731
    assert width(naive) < 0.5 * width(repeated)


def test_participant_level_averages_probabilities_per_participant_and_diagnosis():
    labels = np.array([0, 0, 2, 1, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]])
    people = np.array(["A", "A", "B", "C", "C"])  # C converted from MCI to AD
    y, p, who = participant_means(labels, proba, people)
    got = {(w, int(t)): row for w, t, row in zip(who, y, p)}
    assert set(got) == {("A", 0), ("B", 2), ("C", 1), ("C", 2)}
    np.testing.assert_allclose(got[("A", 0)], [0.6, 0.3, 0.1])
    np.testing.assert_allclose(got[("C", 2)], [0.3, 0.3, 0.4])


def test_evaluate_predictions_gives_both_levels():
    labels, proba = predictions(90, seed=4)
    people = [f"P{i % 30}" for i in range(90)]
    labels = np.array([labels[i % 30] for i in range(90)])  # one diagnosis per participant
    reports = evaluate_predictions(labels, proba, people, CLASSES, n_boot=100)
    assert reports["scan"].n_examples == 90 and reports["participant"].n_examples == 30
    assert reports["participant"].n_participants == reports["scan"].n_participants == 30
    assert reports["participant"].level == "participant"


def test_metrics_csv_counts_a_converter_once_a_diagnosis_in_n_and_once_in_participants():
    """The README said metrics.csv's `n` at participant level counts participants; it counts a participant per given
    diagnosis, so a converter (C: MCI then AD) is two items of one participant there, as the printed line says."""
    labels = np.array([0, 0, 2, 1, 2, 1, 1])
    proba = (np.full((7, 3), 1 / 3) + np.eye(3)[[0, 1, 2, 1, 2, 1, 0]]) / 2
    people = np.array(["A", "A", "B", "C", "C", "D", "D"])
    row = evaluate_predictions(labels, proba, people, CLASSES, n_boot=20)["participant"].rows()[0]
    assert (row["n"], row["participants"]) == (5, 4)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="shape \\(n, 3\\)"):
        evaluate_predictions([0, 1], np.ones((2, 2)), ["a", "b"], CLASSES)
    with pytest.raises(ValueError, match="2 labels, 2 probability rows, 1 participants"):
        evaluate_predictions([0, 1], np.ones((2, 3)), ["a"], CLASSES)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        evaluate_predictions([0, 3], np.ones((2, 3)) / 3, ["a", "b"], CLASSES)  # a class index past the last


def test_probabilities_that_are_not_numbers_are_refused_not_scored_as_the_first_class():
    proba = np.full((3, 3), 1 / 3)
    proba[1] = np.nan
    with pytest.raises(ValueError, match="1 of 3 probability rows are not numbers .*first: row 1, participant b"):
        evaluate_predictions([0, 0, 1], proba, ["a", "b", "c"], CLASSES)


def test_logits_or_scores_are_refused_not_scored_as_probabilities():
    """Logits passed for probabilities were scored without a word: their argmax is right, but a class's AUC ranks
    its column, and here logit and probability order scans a and b oppositely (auc_CN 1, of the logits 0.5)."""
    logits = np.array([[2.0, 1.9, -3.0], [1.0, -2.0, -2.0], [0.0, 3.0, 0.0]])
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert softmax[0, 0] < softmax[1, 0] and logits[0, 0] > logits[1, 0]
    with pytest.raises(ValueError, match=r"3 of 3 probability rows are not probabilities \(first: row 0, participant "
                                         r"a, summing to 0.9, its least -3\); pass each class's probability"):
        evaluate_predictions([1, 0, 1], logits, ["a", "b", "c"], CLASSES)
    rounded = np.round(softmax, 7)  # as a CSV of float32 holds them: within the tolerance
    report = evaluate_predictions([1, 0, 1], rounded, ["a", "b", "c"], CLASSES, n_boot=5)["scan"]
    assert report.metrics["auc_CN"].estimate == 1.0 and roc_auc([False, True, False], logits[:, 0]) == 0.5


def test_certain_predictions_and_probabilities_rounded_to_four_decimals_are_scored() -> None:
    """A probability of exactly 0 is a probability (a confident network, a one-hot CSV), and a row written with four
    decimals (1/3 each: 0.9999 in all) is within the tolerance: neither is a logit to refuse."""
    proba = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.3333, 0.3333, 0.3333]])
    report = evaluate_predictions([0, 1, 2], proba, ["a", "b", "c"], CLASSES, n_boot=5)["scan"]
    assert report.metrics["accuracy"].estimate == pytest.approx(2 / 3)  # the tied row's argmax is CN


def test_each_interval_counts_the_resamples_its_metric_was_defined_in() -> None:
    """With one participant a class, most resamples miss a class: the AUCs' intervals come from the few that do not."""
    labels, participants = np.array([0, 1, 2]), np.array(["a", "b", "c"])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    report = bootstrap_metrics(labels, proba, participants, ["CN", "MCI", "AD"], n_boot=200)
    assert report.metrics["accuracy"].resamples == 200
    assert 20 < report.metrics["auc_macro"].resamples < 80  # all three drawn: 3!/3³ = 22% of resamples
    assert {row["metric"]: row["resamples"] for row in report.rows()}["auc_macro"] == \
        report.metrics["auc_macro"].resamples


def test_each_confusion_rate_counts_the_resamples_that_drew_its_given_class() -> None:
    """One AD participant of ten: the AD row's rates exist only in the resamples that drew them (about 65%), and its
    interval of [100, 100] from one participant read as settled in confusion.csv, which said no count."""
    from elr_mri.evaluation.resampling import participant_resamples

    labels = np.array([0] * 5 + [1] * 4 + [2])
    proba = np.eye(3)[labels] * 0.5 + 0.5 / 3  # every participant predicted as given
    people = np.array([f"P{i}" for i in range(10)])
    report = bootstrap_metrics(labels, proba, people, CLASSES, n_boot=200, seed=3)
    drew = [{int(c) for c in labels[rows]} for rows in participant_resamples(people, 200, np.random.default_rng(3))]
    counts = {row["given"]: row["resamples"] for row in report.confusion_rows()}
    assert counts == {name: sum(c in classes for classes in drew) for c, name in enumerate(CLASSES)}
    assert counts["AD"] < 0.8 * counts["CN"]
    ad = [row for row in report.confusion_rows() if row["given"] == "AD" and row["predicted"] == "AD"][0]
    assert (ad["rate"], ad["low"], ad["high"]) == (1.0, 1.0, 1.0)


def test_balanced_accuracy_is_undefined_in_a_resample_that_drew_no_participant_of_a_class() -> None:
    """A network that calls everyone MCI has balanced accuracy 1/3 however the participants are drawn; a resample
    without an AD participant would average over two classes (1/2) and stretch the interval to 50%."""
    labels = np.array([0] * 4 + [1] * 9 + [2] * 3)
    proba = np.tile([0.2, 0.6, 0.2], (len(labels), 1))
    report = bootstrap_metrics(labels, proba, np.arange(len(labels)).astype(str), CLASSES, n_boot=1000)
    balanced = report.metrics["balanced_accuracy"]
    assert balanced.estimate == balanced.low == balanced.high == pytest.approx(1 / 3)
    assert balanced.resamples == report.metrics["auc_macro"].resamples < 1000  # the same resamples drew every class


def test_a_set_without_a_class_keeps_the_balanced_accuracy_of_each_resample_that_drew_the_classes_it_has() -> None:
    """A holdout without AD: its balanced accuracy is the mean recall over CN and MCI, and a resample that draws
    both is as defined as the set; only a class the set has and the resample lacks makes it undefined."""
    labels = np.array([0, 1] * 20)
    proba = np.tile([0.5, 0.3, 0.2], (len(labels), 1))  # everyone called CN: recall 1 and 0, a mean of 1/2
    report = bootstrap_metrics(labels, proba, np.arange(len(labels)).astype(str), CLASSES, n_boot=200)
    balanced = report.metrics["balanced_accuracy"]
    assert balanced.estimate == balanced.low == balanced.high == 0.5 and balanced.resamples == 200


def test_one_participant_gives_no_interval_rather_than_one_of_zero_width() -> None:
    report = bootstrap_metrics(np.array([1, 1]), np.array([[0.1, 0.8, 0.1]] * 2), np.array(["a", "a"]), CLASSES,
                               n_boot=100)
    accuracy = report.metrics["accuracy"]
    assert accuracy.estimate == 1.0 and np.isnan(accuracy.low) and np.isnan(accuracy.high)
    assert accuracy.resamples == 0 and np.isnan(report.confusion_rate["low"]).all()


def test_two_participants_are_enough_to_resample() -> None:
    """The fewest that have an interval: of one right and one wrong, a resample draws both wrong (accuracy 0), one of
    each (0.5) or both right (1), with chances 1/4, 1/2, 1/4, so the 95% interval of 200 resamples spans [0, 1]."""
    report = bootstrap_metrics(np.array([0, 0]), np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]), np.array(["a", "b"]),
                               CLASSES, n_boot=200)
    accuracy = report.metrics["accuracy"]
    assert (accuracy.estimate, accuracy.low, accuracy.high, accuracy.resamples) == (0.5, 0.0, 1.0, 200)


def test_the_roc_figure_names_its_level_and_each_curves_auc() -> None:
    """roc.png showed curves named by class alone, untitled: drawn over scans, it sits in the demo's report beside
    tables of participants, and its AUCs were in metrics.csv only."""
    from elr_mri.plots import roc_figure

    labels = np.array([0, 0, 1, 1, 2, 2])
    proba = np.array([[.6, .3, .1], [.3, .4, .3], [.2, .7, .1], [.5, .3, .2], [.1, .2, .7], [.2, .2, .6]])
    ax = roc_figure(labels, proba, CLASSES, "scan level, 6 scans").axes[0]
    assert ax.get_title() == "scan level, 6 scans"
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        f"{name}, AUC {100 * roc_auc(labels == k, proba[:, k]):.1f}%" for k, name in enumerate(CLASSES)]
    assert ax.get_legend().get_texts()[0].get_text() == "CN, AUC 87.5%"


def test_the_roc_figure_of_a_one_class_set_is_written_without_a_warning(tmp_path, recwarn) -> None:
    from elr_mri.plots import plot_roc

    plot_roc(np.zeros(4, dtype=int), np.full((4, 3), 1 / 3), ["CN", "MCI", "AD"], tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 1000
    assert not [w for w in recwarn if "legend" in str(w.message).lower() or "artists" in str(w.message).lower()]


def test_roc_curve_encloses_the_auc_with_tied_scores_in_any_row_order() -> None:
    """Tied examples crossed the threshold one at a time in row order: the plotted area was 0.89 or 0.56 for 0.78."""
    truth = np.array([1, 0, 1, 0, 1, 0], bool)
    score = np.array([0.5, 0.5, 0.5, 0.5, 0.9, 0.1])
    for rows in ([0, 1, 2, 3, 4, 5], [1, 3, 0, 2, 4, 5]):
        fpr, tpr = roc_points(truth[rows], score[rows])
        assert auc(fpr, tpr) == pytest.approx(roc_auc_score(truth, score)) == pytest.approx(7 / 9)
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0) and len(fpr) == 4  # 3 distinct scores


def test_roc_auc_is_exactly_the_rank_formula_over_scipys_midranks_on_tied_scores() -> None:
    """`roc_auc` ranks with its own midranks, not scipy's `rankdata` (2.4x faster bootstraps): the same bits, so
    the same seed still gives the same intervals as before, ties and repeated rows (a resample's) included."""
    from scipy.stats import rankdata

    labels, proba = tied_predictions(300, seed=4)
    rows = np.random.default_rng(4).integers(0, 300, 300)
    for truth, score in [(labels[rows] == c, proba[rows, c]) for c in range(3)] + [
            ((labels[:, None] == np.arange(3)).ravel(), proba.ravel())]:
        positives, negatives = truth.sum(), (~truth).sum()
        expected = (rankdata(score)[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives)
        assert roc_auc(truth, score) == expected


def test_an_empty_set_has_no_accuracy_rather_than_zero() -> None:
    values = point_metrics(np.zeros(0, dtype=int), np.zeros((0, 3)), 3)
    assert np.isnan(values["accuracy"]) and np.isnan(values["auc_micro"])


def _sklearn_metrics(labels: np.ndarray, proba: np.ndarray, everyone: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro AUC by scikit-learn; NaN where a class of `everyone` is missing."""
    complete = set(everyone) <= set(labels)
    return {"accuracy": accuracy_score(labels, proba.argmax(1)),
            "balanced_accuracy": balanced_accuracy_score(labels, proba.argmax(1)) if complete else np.nan,
            "auc_macro": roc_auc_score(labels, proba, multi_class="ovr") if complete else np.nan}


@pytest.mark.parametrize("confidence", [None, 0.9])
def test_intervals_are_percentiles_of_the_metric_over_the_participant_resamples(confidence: float | None) -> None:
    """The stated interval (95% unless asked otherwise) is the central percentile interval of the metric over the
    seeded resamples, and the confusion-rate interval that of each resample's own confusion matrix, not the point's."""
    from elr_mri.evaluation.resampling import participant_resamples

    labels, proba = predictions(60, seed=5)
    people = np.array([f"P{i // 3:02d}" for i in range(60)])
    asked = {} if confidence is None else {"confidence": confidence}
    report = bootstrap_metrics(labels, proba, people, CLASSES, n_boot=200, seed=11, **asked)
    confidence = 0.95 if confidence is None else confidence
    draws = list(participant_resamples(people, 200, np.random.default_rng(11)))
    assert len(draws) == 200 and all(len(rows) % 3 == 0 for rows in draws)  # whole participants, three scans each
    values = pd.DataFrame([_sklearn_metrics(labels[rows], proba[rows], labels) for rows in draws])
    tail = 100 * (1 - confidence) / 2
    for name in values:
        expected = np.nanpercentile(values[name], [tail, 100 - tail])
        got = report.metrics[name]
        assert (got.low, got.high) == pytest.approx(tuple(expected), abs=1e-12)
        assert got.resamples == values[name].notna().sum()
    rates = np.array([confusion_matrix(labels[rows], proba[rows].argmax(1), labels=[0, 1, 2], normalize="true")
                      for rows in draws])
    np.testing.assert_allclose(report.confusion_rate["low"], np.percentile(rates, tail, axis=0), atol=1e-12)
    np.testing.assert_allclose(report.confusion_rate["high"], np.percentile(rates, 100 - tail, axis=0), atol=1e-12)
    assert (report.confusion_rate["high"] - report.confusion_rate["low"] > 0.05).any()


def test_an_interval_is_rarely_defined_below_95_percent_of_the_resamples_not_at_it() -> None:
    """'Fewer than 95%': of 1000 resamples, 950 is enough and 949 is not; an undefined estimate is never flagged."""
    assert not Interval(0.5, 0.4, 0.6, resamples=950).rarely_defined(1000)
    assert Interval(0.5, 0.4, 0.6, resamples=949).rarely_defined(1000)
    assert not Interval(float("nan"), float("nan"), float("nan"), resamples=0).rarely_defined(1000)


def test_the_bootstrap_holds_one_resample_at_a_time_not_all_of_them() -> None:
    """`--bootstrap` has no upper bound, and every resample's row indices were kept until the last was drawn: 100,000
    resamples of 300 participants of three scans held 707 MiB. Here (30 participants of 100 scans) 60 more resamples
    added 1.4 MB of kept indices; drawn one at a time, they add only their metrics' few kB."""
    import tracemalloc

    labels, proba = predictions(3000, seed=2)
    people = np.array([f"P{i // 100:02d}" for i in range(3000)])

    def peak(n_boot: int) -> int:
        tracemalloc.start()
        try:
            bootstrap_metrics(labels, proba, people, CLASSES, n_boot=n_boot)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(2)  # what the first call allocates once
    assert peak(80) - peak(20) < 500_000


def test_more_resamples_than_memory_holds_are_refused_in_one_line_with_the_count_that_fits() -> None:
    """`--bootstrap 1000000000` stopped on a MemoryError's traceback: every resample's metrics and confusion rates
    are kept for the percentiles, 18 values with three classes."""
    labels, proba = predictions(30, seed=1)
    people = np.array([f"P{i:02d}" for i in range(30)])
    with pytest.raises(ValueError, match=r"^--bootstrap 1000000000: every resample's 18 values \(3 classes\) are kept "
                                         r"for the percentiles, 134\.1 GiB; pass at most 7,456,540 \(the default is "
                                         r"1000\)$"):
        bootstrap_metrics(labels, proba, people, CLASSES, n_boot=10**9)
    assert bootstrap_metrics(labels, proba, people, CLASSES, n_boot=20).n_boot == 20


def test_the_count_of_resamples_said_to_fit_is_the_most_that_is_not_refused() -> None:
    """"pass at most N" is taken at its word: N resamples of 18 eight-byte values fit in the 1 GiB kept, one more
    is refused (a limit counted in values, not bytes, let 8 GiB through)."""
    from elr_mri.evaluation.metrics import refuse_resamples_past_memory

    refuse_resamples_past_memory(7_456_540, 3)
    with pytest.raises(ValueError, match=r"^--bootstrap 7456541: .*, 1\.0 GiB; pass at most 7,456,540 "):
        refuse_resamples_past_memory(7_456_541, 3)


def test_a_resample_brings_every_scan_of_each_drawn_participant_once_per_draw() -> None:
    """Participants a (rows 0, 2, 5), b (1, 4) and c (3) with scans in any order: a participant drawn k times
    contributes each of its rows exactly k times, not its first row over and over."""
    people = np.array(["a", "b", "a", "c", "b", "a"])
    rows_of = {p: np.flatnonzero(people == p) for p in "abc"}
    for rows in participant_resamples(people, 50, np.random.default_rng(0)):
        counts = np.bincount(rows, minlength=len(people))
        for mine in rows_of.values():
            assert (counts[mine] == counts[mine[0]]).all()
        draws = sum(counts[mine[0]] for mine in rows_of.values())
        assert draws == 3 and len(rows) == sum(counts[mine[0]] * len(mine) for mine in rows_of.values())


def test_micro_auc_counts_an_absent_classs_scores_as_negatives_and_can_read_above_every_present_class() -> None:
    """What `evaluate` and the report say of a set without AD: CN and MCI ranked at chance, AD given little to everyone,
    and the micro AUC reads far above both classes' AUCs (the same figure scikit-learn gives over all three columns)."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    cn = rng.uniform(0.3, 0.7, size=100)
    proba = np.column_stack([cn * 0.9, (1 - cn) * 0.9, np.full(100, 0.1)])
    values = point_metrics(labels, proba, 3)
    onehot = labels[:, None] == np.arange(3)
    assert values["auc_micro"] == pytest.approx(roc_auc_score(onehot.ravel(), proba.ravel()))
    assert max(values["auc_0"], values["auc_1"]) < 0.6 < 0.7 < values["auc_micro"]


def _resampled_set(n: int, k: int, tied: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of `n` examples of `k` classes; `tied`: half the rows from four shared vectors, so
    every column and the flattened scores have long runs of ties."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    proba = rng.dirichlet(np.ones(k), n)
    if tied:
        shared = rng.random(n) < 0.5
        proba[shared] = rng.dirichlet(np.ones(k), 4)[rng.integers(0, 4, shared.sum())]
    return labels, proba


def _bits(interval: Interval) -> bytes:
    """An interval's fields as bytes: equal for equal floats, NaN included."""
    return np.array(astuple(interval), dtype=float).tobytes()


@pytest.mark.parametrize("k, tied, scans, n", [(2, False, 1, 40), (2, True, 3, 24), (3, True, 1, 12),
                                               (3, False, 2, 60), (7, True, 2, 40), (12, False, 1, 150),
                                               (100, True, 3, 90)])
def test_the_bootstrap_scores_each_resample_to_the_bit_as_resampled_metrics_does(
        k: int, tied: bool, scans: int, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resample is scored from its multiplicities over the set's scores sorted once (a CIFAR-100 test set's
    default bootstrap took over 5 CPU-minutes of sorting): every interval, count and confusion rate must be the very
    float that rescoring each resample with `resampled_metrics` gives, ties and classes no resample drew included."""
    from elr_mri.evaluation import metrics, resampling

    labels, proba = _resampled_set(n, k, tied, seed=k + n)
    proba = np.asfortranarray(proba) if scans > 1 else proba  # as a pandas frame gives it
    people = np.array([f"P{i // scans}" for i in range(n)])
    names = [f"c{c}" for c in range(k)]
    fast = bootstrap_metrics(labels, proba, people, names, n_boot=30, seed=4)

    class Plain:
        def __init__(self, labels: np.ndarray, proba: np.ndarray, num_classes: int) -> None:
            self.labels, self.proba = labels, proba

        def metrics(self, rows: np.ndarray) -> dict[str, float]:
            return resampling.resampled_metrics(self.labels, self.proba, rows, k)

        def counts(self, rows: np.ndarray) -> np.ndarray:
            return confusion_counts(self.labels[rows], self.proba[rows].argmax(1), k)

    monkeypatch.setattr(metrics, "Resampling", Plain)
    plain = bootstrap_metrics(labels, proba, people, names, n_boot=30, seed=4)
    assert list(fast.metrics) == list(plain.metrics) and ("top5_accuracy" in fast.metrics) == (k > 5)
    for name, interval in plain.metrics.items():
        assert _bits(fast.metrics[name]) == _bits(interval), name
    for part, rates in plain.confusion_rate.items():
        assert fast.confusion_rate[part].tobytes() == rates.tobytes(), part
    if n < 10 * k:  # some resample missed a class: its AUC was NaN, left out of that interval
        assert min(interval.resamples for interval in plain.metrics.values()) < 30


def test_percentiles_of_columns_every_resample_defines_are_those_nanpercentile_gives_to_the_bit() -> None:
    """Columns without an undefined resample take the vectorised np.percentile: the same floats, beside columns with
    some undefined resamples (np.nanpercentile) and none defined (NaN)."""
    from elr_mri.evaluation.metrics import _percentiles

    rng = np.random.default_rng(2)
    values = np.round(rng.random((41, 3, 6)) * 7) / 7  # ties, as accuracies of small sets have
    values[rng.random(values.shape) < 0.05] = np.nan
    values[:, 0, 0] = np.nan
    values[:, 1, :2] = rng.random((41, 2))  # complete
    for q in (2.5, 97.5, 5.0):
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="All-NaN slice"):
            expected = np.nanpercentile(values, q, axis=0)
        assert _percentiles(values, q).tobytes() == expected.tobytes()


def test_top5_accuracy_is_left_out_at_exactly_five_classes_where_it_is_always_1() -> None:
    """Five classes are all among any row's five likeliest: top-5 accuracy would read 1 whatever the model."""
    labels, proba = _resampled_set(60, 6, False, seed=1)
    five = proba[:, :5] / proba[:, :5].sum(1, keepdims=True)
    assert "top5_accuracy" not in point_metrics(labels % 5, five, 5)
    assert "top5_accuracy" in point_metrics(labels, proba, 6)


def test_a_negative_label_is_refused_not_scored_as_the_last_class() -> None:
    """NumPy reads index -1 as the last class: unrefused, a -1 (an unknown diagnosis code) would count as an AD."""
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        evaluate_predictions([0, -1], np.ones((2, 3)) / 3, ["a", "b"], CLASSES)


def test_a_metric_no_resample_defines_gives_no_interval_and_no_numpy_warning() -> None:
    """A holdout without AD has no AD AUC in any resample: its interval is NaN, said by the report, not by NumPy's
    'All-NaN slice' warning printed under the command's own lines."""
    labels = np.array([0, 1] * 10)
    proba = np.tile([0.5, 0.3, 0.2], (len(labels), 1))
    people = np.arange(len(labels)).astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auc_ad = bootstrap_metrics(labels, proba, people, CLASSES, n_boot=50).metrics["auc_AD"]
    assert np.isnan([auc_ad.estimate, auc_ad.low, auc_ad.high]).all() and auc_ad.resamples == 0


def test_a_row_of_positive_scores_a_hundredth_short_of_1_is_refused_as_no_distribution() -> None:
    """A row summing to 0.99 (a class's probability left out, scores scaled otherwise) lies ten times the rounding
    tolerance from 1: no softmax wrote it, and its AUCs would rank it among true probabilities. Its 0 is no negative
    entry to name."""
    proba = np.array([[0.6, 0.39, 0.0], [0.2, 0.6, 0.2]])
    with pytest.raises(ValueError, match=r"1 of 2 probability rows are not probabilities \(first: row 0, participant "
                                         r"a, summing to 0.99\)"):
        evaluate_predictions([0, 1], proba, ["a", "b"], CLASSES)


def test_a_row_summing_to_1_with_a_negative_entry_is_refused_as_no_distribution() -> None:
    """1.2, -0.2, 0 sums to 1 but holds a negative probability: scores, not a distribution, however they add up."""
    proba = np.array([[1.2, -0.2, 0.0], [0.2, 0.6, 0.2]])
    with pytest.raises(ValueError, match=r"1 of 2 probability rows are not probabilities \(first: row 0, participant "
                                         r"a, summing to 1, its least -0.2\)"):
        evaluate_predictions([0, 1], proba, ["a", "b"], CLASSES)


def test_probabilities_holding_an_infinity_are_refused_as_not_numbers() -> None:
    """An overflowed forward pass gives inf as readily as NaN; neither is a probability to score."""
    proba = np.full((3, 3), 1 / 3)
    proba[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"1 of 3 probability rows are not numbers \(NaN or inf; first: row 2, "
                                         r"participant c\)"):
        evaluate_predictions([0, 0, 1], proba, ["a", "b", "c"], CLASSES)
