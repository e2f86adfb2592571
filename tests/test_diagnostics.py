"""Collapse warnings: a run that gives one class to the whole validation split says so in summary.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elr_mri.engine.diagnostics import COLLAPSE_SHARE, collapse_threshold, collapse_warnings, top_class_share


def _metrics(shares: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(shares) + 1), "val_top_class_share": shares})


def test_top_class_share_counts_the_most_given_class() -> None:
    assert top_class_share(np.array([2, 2, 2, 2])) == 1.0
    assert top_class_share(np.array([0, 1, 1, 2])) == 0.5
    assert np.isnan(top_class_share(np.array([], dtype=int)))


def test_a_healthy_run_has_no_warnings() -> None:
    assert collapse_warnings(_metrics([0.55, 0.50, 0.45]), best_epoch=2, loss_name="elr") == []


def test_a_selected_epoch_at_the_class_prior_is_named() -> None:
    found = collapse_warnings(_metrics([1.0, 0.6, 0.5]), best_epoch=1, loss_name="ce", run_dir=Path("runs/ce 1"))
    assert len(found) == 1
    assert "selected epoch 1" in found[0] and "100%" in found[0]
    # a command to paste: the run's own folder, quoted, not a placeholder
    assert found[0].endswith("compare the last epoch (elr-mri evaluate --run 'runs/ce 1' --checkpoint last)")


def test_a_collapsed_last_epoch_gets_elr_advice_only_for_elr() -> None:
    shares = [0.6, 0.7, 0.99]
    (elr,) = collapse_warnings(_metrics(shares), best_epoch=2, loss_name="elr")
    (ce,) = collapse_warnings(_metrics(shares), best_epoch=2, loss_name="ce")
    assert "last epoch 3" in elr and "loss.lam" in elr
    assert "last epoch 3" in ce and "loss.lam" not in ce
    (elr_plus,) = collapse_warnings(_metrics(shares), best_epoch=2, loss_name="elr_plus")
    assert "loss.lam_start_steps" in elr and "elr_plus.coef_step" in elr_plus  # each names a key it reads


def test_a_collapse_after_the_training_loss_blew_up_names_the_learning_rate_not_elrs_term() -> None:
    """At optim.lr 5 the digits MLP's loss reached 1.5e13 and CE collapsed as ELR did: lowering λ was wrong advice."""
    blown = _metrics([0.6, 1.0]).assign(train_loss=[4.2, 1.54e13])
    for loss_name in ("elr", "elr_plus", "ce"):
        (found,) = collapse_warnings(blown, best_epoch=2, loss_name=loss_name)
        assert ("collapsed onto it; its training loss reached 1.54e+13 in epoch 2, so its outputs blew up: lower "
                "optim.lr; suspected_mislabels.csv") in found
    (elr,) = collapse_warnings(_metrics([0.6, 1.0]).assign(train_loss=[2.3, -40.0]), best_epoch=2, loss_name="elr")
    assert "lower loss.lam" in elr  # a large λ drives the loss far below 0, not above


def test_a_short_run_that_never_left_one_class_is_told_to_train_longer_not_to_lower_lambda() -> None:
    """1-epoch CIFAR-10 smoke runs collapsed with CE as with ELR; blaming λ misled. A longer run keeps ELR's advice."""
    for shares in ([1.0], [1.0, 0.99, 1.0]):
        (found,) = collapse_warnings(_metrics(shares), best_epoch=len(shares), loss_name="elr")
        assert "train longer before changing the loss" in found and "loss.lam" not in found
    (found,) = collapse_warnings(_metrics([1.0]), best_epoch=1, loss_name="elr")
    assert "1 epoch cannot tell why" in found
    (longer,) = collapse_warnings(_metrics([1.0] * 4), best_epoch=4, loss_name="elr")
    assert "lower loss.lam" in longer


def test_both_problems_are_reported_and_a_collapsed_best_last_epoch_only_once() -> None:
    assert len(collapse_warnings(_metrics([1.0, 0.6, 1.0]), best_epoch=1, loss_name="elr")) == 2
    assert len(collapse_warnings(_metrics([0.6, 1.0]), best_epoch=2, loss_name="elr")) == 1


def test_a_collapsed_selected_last_epoch_gets_the_collapse_advice_not_a_pointer_to_itself() -> None:
    """Selected at its last epoch (train.select=last, or the best accuracy came last), a collapsed run was told to
    compare the last epoch, the one it had, and never got ELR's advice (digits, optim.lr=5: 100% at epoch 6 of 6)."""
    (found,) = collapse_warnings(_metrics([0.6, 1.0]), best_epoch=2, loss_name="elr")
    assert "last epoch 2, the selected one," in found and "loss.lam" in found and "--checkpoint last" not in found
    (ce,) = collapse_warnings(_metrics([0.6, 1.0]), best_epoch=2, loss_name="ce")
    assert "collapsed onto it" in ce and "--checkpoint last" not in ce


def test_runs_without_the_column_or_without_validation_have_none() -> None:
    assert collapse_warnings(pd.DataFrame({"epoch": [1, 2]}), best_epoch=1, loss_name="elr") == []
    assert collapse_warnings(_metrics([float("nan")] * 2), best_epoch=1, loss_name="elr") == []


def test_the_bar_sits_between_the_labels_own_share_and_one_class_for_all() -> None:
    assert collapse_threshold(0.555) == pytest.approx(0.911)
    assert collapse_threshold(0.1) == pytest.approx(0.82)  # ten balanced classes
    assert collapse_threshold(float("nan")) == COLLAPSE_SHARE


def test_a_network_at_95_percent_on_a_55_percent_split_is_collapsed_and_one_at_86_is_not() -> None:
    """The λ 3 seed 1 run (0.945 at its last epoch) and CE's memorised last epoch (0.864) on the 994-scan cohort."""
    collapsed = _metrics([0.5, 0.6, 0.945]).assign(val_label_top_share=0.555)
    (warning,) = collapse_warnings(collapsed, best_epoch=2, loss_name="elr")
    assert "last epoch 3" in warning and "94%" in warning and "56% in their most common class" in warning
    assert collapse_warnings(_metrics([0.5, 0.6, 0.864]).assign(val_label_top_share=0.555), 2, "ce") == []
    assert collapse_warnings(_metrics([0.5, 0.6, 0.945]), best_epoch=2, loss_name="elr") == []  # no labels: 0.98


def test_a_one_class_validation_split_is_named_instead_of_a_collapse() -> None:
    """With every validation label one class, any prediction meets the bar: blame the split, not λ."""
    (found,) = collapse_warnings(_metrics([1.0, 1.0, 1.0]).assign(val_label_top_share=1.0), best_epoch=1,
                                 loss_name="elr")
    assert "labels are all one class" in found and "data.val_fraction" in found and "loss.lam" not in found


def test_the_collapsed_class_is_named_where_the_metrics_record_it() -> None:
    metrics = _metrics([0.6, 0.7, 0.99]).assign(val_top_class=[0, 1, 2])
    (found,) = collapse_warnings(metrics, best_epoch=2, loss_name="elr", class_names=["CN", "MCI", "AD"])
    assert "last epoch 3 gives class AD to 99%" in found
    (unnamed,) = collapse_warnings(_metrics([0.6, 0.7, 0.99]), best_epoch=2, loss_name="elr", class_names=["CN"])
    assert "gives one class to 99%" in unnamed  # metrics written before the column: no class to name


def test_a_collapsed_last_epoch_says_its_mislabel_table_is_no_list_to_re_review() -> None:
    """The table comes from the last epoch: a digits run collapsed onto class 8 (λ 30, 60% noise) listed 999 of its
    1,132 training examples, each suggesting 8 at 0.999, with nothing in the warning to say so."""
    selected, last = collapse_warnings(_metrics([1.0, 0.6, 1.0]), best_epoch=1, loss_name="elr")
    assert "suspected_mislabels.csv" in last and "no list to re-review" in last
    assert "suspected_mislabels.csv" not in selected  # a collapsed selected epoch leaves the last epoch's table alone


def test_a_share_exactly_at_the_bar_counts_as_collapsed() -> None:
    """The bar is the share *at which* a network counts as collapsed: 49 scans of a 50-scan split given one class is
    98%, the bar where the labels' own share is unknown, for the selected epoch as for the last."""
    at_bar = 49 / 50
    selected, last = collapse_warnings(_metrics([at_bar, 0.6, at_bar]), best_epoch=1, loss_name="ce")
    assert "selected epoch 1 gives one class to 98%" in selected and "last epoch 3 gives one class to 98%" in last


def test_the_first_class_is_named_as_the_others_are() -> None:
    metrics = _metrics([0.6, 0.7, 0.99]).assign(val_top_class=[2, 1, 0])
    (found,) = collapse_warnings(metrics, best_epoch=2, loss_name="ce", class_names=["CN", "MCI", "AD"])
    assert "last epoch 3 gives class CN to 99%" in found


def test_epochs_logged_before_the_share_was_recorded_do_not_hide_a_later_collapse() -> None:
    """Only metrics with no share at all (no validation split) have no warnings: rows without one (NaN, a run
    resumed by an elr-mri that records it) leave the epochs that have one to be judged."""
    (found,) = collapse_warnings(_metrics([float("nan"), 0.6, 0.99]), best_epoch=2, loss_name="ce")
    assert "last epoch 3 gives one class to 99%" in found
