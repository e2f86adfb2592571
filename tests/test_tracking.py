"""Per-epoch predictions and what is read from them: Figure 1's fractions over the examples an epoch
predicted (class-balanced batches skip some), and suspected mislabels only where a target gathered."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch

from elr_mri.engine.tracking import PredictionTracker, memorization_fractions
from elr_mri.mislabels import mislabel_precision_recall, suspected_mislabels


def test_fractions_count_only_the_examples_this_epoch_predicted() -> None:
    given, clean = np.array([1, 1, 2, 0]), np.array([0, 1, 2, 2])  # examples 0 and 3 wrongly labelled
    tracker = PredictionTracker(4, 3)
    tracker.record(torch.tensor([0, 1, 2, 3]), torch.eye(3)[[0, 1, 2, 1]] * 5)  # epoch 1: every example
    tracker.new_epoch()
    tracker.record(torch.tensor([0, 1]), torch.eye(3)[[1, 1]] * 5)  # epoch 2 draws 0 and 1 only
    seen = tracker.seen_this_epoch()
    assert seen.tolist() == [True, True, False, False]
    fractions = memorization_fractions(tracker.predictions(), given, clean, seen)
    assert fractions["noisy_pred_given"] == 1.0 and fractions["noisy_pred_other"] == 0.0  # example 0 only
    assert fractions["clean_pred_true"] == 1.0
    every = memorization_fractions(tracker.predictions(), given, clean)  # stale example 3 counted as "other"
    assert every["noisy_pred_other"] == 0.5


def test_an_example_never_predicted_has_no_prediction_rather_than_the_first_class() -> None:
    """Its row is empty (NaN): read as class 0 (argmax of nothing), it would pass for a prediction of class 0 where
    `memorization_fractions` counts every row (no `seen`)."""
    tracker = PredictionTracker(3, 3)
    tracker.record(torch.tensor([1]), torch.tensor([[0.0, 0.0, 4.0]]))
    assert tracker.predictions().tolist() == [-1, 2, -1]


def test_a_clean_label_run_has_no_noisy_fractions_rather_than_all_other() -> None:
    labels, pred = np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1])
    fractions = memorization_fractions(pred, labels, labels.copy())
    assert all(np.isnan(fractions[key]) for key in ("noisy_pred_true", "noisy_pred_given", "noisy_pred_other"))
    assert (fractions["clean_pred_true"], fractions["clean_pred_other"]) == (0.75, 0.25)


def test_an_example_without_a_target_is_not_a_suspected_mislabel() -> None:
    targets = np.zeros((4, 3))
    targets[3] = [0.1, 0.8, 0.1]
    table = suspected_mislabels(targets, np.array([1, 2, 1, 0]))
    assert table["index"].tolist() == [3] and table["suggested_label"].tolist() == [1]


def test_a_target_that_ties_the_given_label_with_the_top_class_is_not_a_suspected_mislabel() -> None:
    targets = np.array([[0.4, 0.4, 0.2], [0.3, 0.4, 0.3], [0.45, 0.1, 0.45]])
    table = suspected_mislabels(targets, np.array([1, 2, 2]))  # row 1 below its top: flagged; 0 and 2 tie: not
    assert table["index"].tolist() == [1] and table["suggested_label"].tolist() == [1]


def test_suspected_mislabels_are_ranked_by_how_far_the_target_is_from_the_given_label() -> None:
    """(0.45, 0.10, 0.45) keeps a tenth on the given class, (0.46, 0.44, 0.10) nearly half: the second doubts its
    label less, though its top share is the higher."""
    targets = np.array([[0.46, 0.44, 0.10], [0.45, 0.10, 0.45]])
    table = suspected_mislabels(targets, np.array([1, 1]), ["CN", "MCI", "AD"])
    assert table["index"].tolist() == [1, 0]
    assert table["given_share"].tolist() == [0.1, 0.44] and table["margin"].tolist() == [0.35, 0.02]
    assert table["suggested_name"].tolist() == ["CN", "CN"] and table["tied_with"].tolist() == ["AD", ""]  # split


def test_a_loaded_runs_target_table_and_labels_as_tensors_give_the_same_table() -> None:
    """A notebook passes `run.method.targets()`, a tensor, with labels as a tensor or a list: a TypeError comparing a
    tensor with torch's (values, indices) pair, or a list index error, where NumPy arrays gave the table."""
    targets, given = np.array([[0.46, 0.44, 0.10], [0.45, 0.10, 0.45], [0.2, 0.7, 0.1]]), np.array([1, 1, 1])
    expected = suspected_mislabels(targets, given, ["CN", "MCI", "AD"])
    for as_given in (torch.from_numpy(given), given.tolist()):
        table = suspected_mislabels(torch.from_numpy(targets).float(), as_given, ["CN", "MCI", "AD"])
        assert table.drop(columns=["confidence", "given_share", "margin"]).equals(
            expected.drop(columns=["confidence", "given_share", "margin"]))
        np.testing.assert_allclose(table["margin"], expected["margin"], atol=1e-6)


def test_a_bfloat16_target_table_gives_the_table_of_its_float32_values() -> None:
    """`loss.targets_dtype: bfloat16` keeps ELR's table in bfloat16, so a notebook's `run.method.targets()` is one:
    NumPy has no such type, and the table was a TypeError ("Got unsupported ScalarType BFloat16")."""
    targets = torch.tensor([[0.5, 0.25, 0.25], [0.125, 0.75, 0.125], [0.25, 0.25, 0.5]], dtype=torch.bfloat16)
    given = torch.tensor([1, 1, 1])
    table = suspected_mislabels(targets, given, ["CN", "MCI", "AD"])
    assert table.equals(suspected_mislabels(targets.float().numpy(), given.numpy(), ["CN", "MCI", "AD"]))
    assert table["index"].tolist() == [0, 2]
    assert mislabel_precision_recall(table["index"], table["suggested_label"], given, torch.tensor([0, 1, 1]))[
        "precision"] == 0.5


def test_each_suspected_mislabel_names_the_label_it_was_given_beside_the_one_suggested() -> None:
    """The reviewer re-reads a scan given one class whose target suggests another: both must be the example's own."""
    targets = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.7, 0.1]])
    table = suspected_mislabels(targets, np.array([2, 0, 1]), ["CN", "MCI", "AD"])
    assert table["index"].tolist() == [0, 1]  # row 2 agrees with its label
    assert table["given_label"].tolist() == [2, 0] and table["given_name"].tolist() == ["AD", "CN"]
    assert table["suggested_label"].tolist() == [0, 2] and table["suggested_name"].tolist() == ["CN", "AD"]


def test_precision_counts_flags_and_suggestion_true_the_flags_that_also_name_the_true_class() -> None:
    given, clean = np.array([0, 2, 1, 1]), np.array([0, 1, 1, 0])  # 1 and 3 were mislabelled
    scores = mislabel_precision_recall(np.array([1, 2, 3]), np.array([0, 0, 0]), given, clean)
    assert scores == {"flagged": 3, "truly_mislabelled": 2, "precision": 2 / 3, "recall": 1.0, "suggestion_true": 1}


@pytest.mark.parametrize("convert", [list, torch.tensor])
def test_precision_takes_a_notebooks_tensors_and_lists(convert: Callable[[list[int]], Any]) -> None:
    """A loaded run's labels are tensors, a hand-made check's lists: a list failed in indexing, a tensor in sum."""
    scores = mislabel_precision_recall(*(convert(values) for values in ([1, 2, 3], [0, 0, 0], [0, 2, 1, 1],
                                                                       [0, 1, 1, 0])))
    assert scores == {"flagged": 3, "truly_mislabelled": 2, "precision": 2 / 3, "recall": 1.0, "suggestion_true": 1}


def test_a_scan_whose_truth_the_run_leaves_out_is_mislabelled_and_no_suggestion_for_it_is_true() -> None:
    """A CN-vs-AD run trained on a scan given CN, truly MCI (clean label -1): its label is wrong, so flagging it is a
    hit, but whichever class the table suggests is wrong too."""
    given, clean = np.array([0, 0, 1, 1]), np.array([-1, 0, 1, 0])  # 0 (truly MCI) and 3 mislabelled
    scores = mislabel_precision_recall(np.array([0, 2]), np.array([1, 0]), given, clean)
    assert scores == {"flagged": 2, "truly_mislabelled": 2, "precision": 0.5, "recall": 0.5, "suggestion_true": 0}


def test_precision_without_a_flag_and_recall_without_a_wrong_label_are_undefined_not_zero() -> None:
    """A CE run that flags nothing has no precision (the report prints a dash), nor has a run whose labels are all
    right a recall: 0 would read as every flag wrong, or every wrong label missed."""
    given, clean = np.array([0, 2, 1]), np.array([0, 1, 1])
    nothing_flagged = mislabel_precision_recall(np.array([], dtype=int), np.array([], dtype=int), given, clean)
    assert np.isnan(nothing_flagged["precision"]) and nothing_flagged["recall"] == 0.0
    nothing_wrong = mislabel_precision_recall(np.array([1]), np.array([0]), clean, clean)
    assert np.isnan(nothing_wrong["recall"]) and nothing_wrong["precision"] == 0.0


def test_a_suspected_mislabels_margin_is_its_top_share_less_its_given_share_not_rounded_to_hundredths() -> None:
    table = suspected_mislabels(np.array([[0.5, 0.333, 0.167]]), np.array([2]))
    assert table["margin"].tolist() == [0.333] and table["given_share"].tolist() == [0.167]

def test_the_report_shows_an_undefined_precision_as_a_dash(tmp_path) -> None:
    """Nothing flagged: precision is null in summary.json (strict JSON), which the demo report must print."""
    import json

    from elr_mri.report import _mislabel_section

    (tmp_path / "summary.json").write_text(json.dumps(
        {"mislabels": {"flagged": 0, "truly_mislabelled": 3, "precision": None, "recall": 0.0}}))
    (tmp_path / "suspected_mislabels.csv").write_text("index,given_label,suggested_label,source\n")
    assert "| ce | – | 0 | 0 | – | 3 | – | 0.0% |" in _mislabel_section({"ce": tmp_path})  # before suggestion_true
    (tmp_path / "summary.json").write_text(json.dumps(  # the demo's ELR: 5 of its 15 flags right, of 12 wrong labels
        {"mislabels": {"flagged": 15, "truly_mislabelled": 12, "precision": 5 / 15, "recall": 5 / 12,
                       "suggestion_true": 4}}))
    (tmp_path / "suspected_mislabels.csv").write_text("index,given_label,suggested_label,source\n3,0,1,elr_target\n")
    assert "| elr | ELR targets | 15 | 5 | 4 | 12 | 33.3% | 41.7% |" in _mislabel_section({"elr": tmp_path})


def test_the_report_sets_each_precision_beside_that_of_flagging_at_random(tmp_path) -> None:
    """A precision of 33% reads as a finding until it meets the share of training scans truly mislabelled (a
    109-scan ELR run: 34% precision at 35% wrong labels, no better than chance)."""
    import json

    from elr_mri.report import _mislabel_section

    found = {"flagged": 15, "truly_mislabelled": 12, "precision": 5 / 15, "recall": 5 / 12, "suggestion_true": 4}
    (tmp_path / "summary.json").write_text(json.dumps({"train_examples": 36, "mislabels": found}))
    (tmp_path / "suspected_mislabels.csv").write_text("index,given_label,suggested_label,source\n3,0,1,elr_target\n")
    section = _mislabel_section({"elr": tmp_path})
    assert "| precision | recall | precision of a random flag |" in section
    assert "| elr | ELR targets | 15 | 5 | 4 | 12 | 33.3% | 41.7% | 33.3% |" in section
    (tmp_path / "summary.json").write_text(json.dumps({"mislabels": found}))  # a run from before train_examples
    assert "| 33.3% | 41.7% | – |" in _mislabel_section({"elr": tmp_path})


def test_the_report_says_which_flags_came_from_predictions_rather_than_targets(tmp_path) -> None:
    """CE keeps no targets: its table is its last epoch's predictions, which a memorising network brings into line
    with the given labels; side by side with ELR's, the report must say so."""
    import json

    import pandas as pd

    from elr_mri.report import _mislabel_section

    (tmp_path / "summary.json").write_text(json.dumps(
        {"mislabels": {"flagged": 2, "truly_mislabelled": 4, "precision": 0.5, "recall": 0.25, "suggestion_true": 1}}))
    pd.DataFrame({"index": [5, 1], "given_label": [0, 2], "suggested_label": [1, 1],
                  "source": "last_epoch_prediction"}).to_csv(tmp_path / "suspected_mislabels.csv", index=False)
    assert "| ce | last epoch's predictions | 2 | 1 | 1 | 4 | 50.0% | 25.0% |" in _mislabel_section({"ce": tmp_path})


def test_the_report_says_what_the_mislabel_tables_flags_precision_and_recall_are(tmp_path) -> None:
    """The table stood under its heading alone: a reader did not learn what a flag is, that the flags come from the
    last epoch rather than the checkpoint the results score, nor what its precision and recall are shares of."""
    import json

    from elr_mri.report import _mislabel_section

    (tmp_path / "summary.json").write_text(json.dumps(
        {"mislabels": {"flagged": 2, "truly_mislabelled": 4, "precision": 0.5, "recall": 0.25, "suggestion_true": 1}}))
    (tmp_path / "suspected_mislabels.csv").write_text("index,given_label,suggested_label,source\n5,0,1,elr_target\n")
    heading, words, blank, header = _mislabel_section({"elr": tmp_path}).splitlines()[:4]
    assert heading.startswith("## ") and not blank and header.startswith("| method |")
    for said in ("at its last epoch, not at the checkpoint the results above score", "ELR where its target",
                 "CE, which keeps no targets, where its last epoch predicts another",
                 "precision is the share of the flagged scans whose given label is truly wrong",
                 "recall the share of the truly mislabelled training scans that were flagged"):
        assert said in words


def test_a_mislabel_row_of_a_collapsed_network_says_it_is_no_list_to_re_review(tmp_path) -> None:
    """The demo's ELR collapsed onto MCI at its last epoch, and Training's warnings said its suspected_mislabels.csv
    was no list to re-review; its row in the mislabel table read as any other (15 flagged, 5 truly mislabelled)."""
    import json

    from elr_mri.engine.diagnostics import COLLAPSED_TABLE
    from elr_mri.report import _mislabel_section

    found = {"flagged": 15, "truly_mislabelled": 12, "precision": 5 / 15, "recall": 5 / 12, "suggestion_true": 5}
    (tmp_path / "summary.json").write_text(json.dumps(
        {"mislabels": found, "warnings": [f"the last epoch 8 gives class MCI to 100% ...; {COLLAPSED_TABLE}"]}))
    (tmp_path / "suspected_mislabels.csv").write_text("index,given_label,suggested_label,source\n3,0,1,elr_target\n")
    assert ("| elr | ELR targets of a network collapsed onto one class (Training's warnings): no list to re-review | "
            "15 | 5 |") in _mislabel_section({"elr": tmp_path})
    (tmp_path / "summary.json").write_text(json.dumps({"mislabels": found}))
    assert "| elr | ELR targets | 15 | 5 |" in _mislabel_section({"elr": tmp_path})


def test_the_other_fraction_is_counted_never_below_zero() -> None:
    """1 - 4/5 - 1/5 is -5.6e-17 in floating point: metrics.csv logged a negative fraction."""
    clean = np.zeros(5, dtype=np.int64)
    given = np.ones(5, dtype=np.int64)  # every label wrong
    pred = np.array([0, 0, 0, 0, 1])  # four predicted as the truth, one as given
    fractions = memorization_fractions(pred, given, clean)
    assert fractions["noisy_pred_other"] == 0.0 and fractions["noisy_pred_true"] == 0.8


def test_shares_are_of_the_targets_total_which_early_elr_targets_keep_below_one() -> None:
    """ELR's targets start at zero and gather (1 − β) a step, so after two updates at β 0.7 a row sums to 0.51:
    confidence, given_share and margin are shares of that total, comparable between rows of other totals."""
    targets = np.array([[0.306, 0.153, 0.051],  # (0.6, 0.3, 0.1) of 0.51
                        [0.1, 0.4, 0.5]])  # (0.1, 0.4, 0.5) of 1
    table = suspected_mislabels(targets, np.array([1, 1]))
    assert table["index"].tolist() == [0, 1]
    assert table["confidence"].tolist() == [0.6, 0.5] and table["given_share"].tolist() == [0.3, 0.4]
    assert table["margin"].tolist() == [0.3, 0.1]



def test_a_target_split_three_ways_names_both_other_top_classes_separated_by_a_bar() -> None:
    """README: tied_with holds the other classes sharing the top share, separated by `|`; argmax took the first."""
    table = suspected_mislabels(np.array([[0.3, 0.3, 0.3, 0.1]]), np.array([3]), ["CN", "MCI", "AD", "other"])
    assert table["suggested_name"].tolist() == ["CN"] and table["tied_with"].tolist() == ["MCI|AD"]


def test_rows_of_equal_margin_stay_in_training_split_order() -> None:
    """Margins rounded to 6 digits tie often in a large table: among them the listing keeps the examples' order, so
    the same targets always list the same way (an unstable sort shuffles them once there are more than 16)."""
    targets = np.tile([0.2, 0.7, 0.1], (40, 1))
    targets[::2] = [0.1, 0.1, 0.8]  # the even rows doubt their label by 0.7, the odd ones by 0.5
    table = suspected_mislabels(targets, np.zeros(40, dtype=int))
    assert table["index"].tolist() == list(range(0, 40, 2)) + list(range(1, 40, 2))
