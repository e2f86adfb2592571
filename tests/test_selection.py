"""`selection_rule`: the words summary.json and the report give for how the kept checkpoint was chosen."""

from __future__ import annotations

from pathlib import Path

from elr_mri.config import DataConfig, MRIDataConfig, RunConfig, TrainLoopConfig
from elr_mri.engine.selection import SELECTION_RULES, selection_rule


def _mri_run(select: str, val_labels: str | None) -> RunConfig:
    return RunConfig(data=DataConfig(name="mri", mri=MRIDataConfig(val_labels=val_labels)),
                     train=TrainLoopConfig(select=select))


def test_an_mri_run_names_the_adjudicated_labels_its_validation_split_was_scored_on() -> None:
    assert selection_rule(_mri_run("val_acc", "panel.csv")) == (
        "best accuracy on the validation split, scored against the adjudicated labels in panel.csv "
        "(data.mri.val_labels)")
    assert selection_rule(_mri_run("val_balanced_acc", "panel.csv")).startswith(
        "best balanced accuracy (mean recall over the classes) on the validation split, scored against the adjudicated")


def test_an_mri_run_without_adjudicated_labels_selects_on_its_noisy_labels() -> None:
    assert selection_rule(_mri_run("val_acc", None)) == SELECTION_RULES["val_acc"]
    assert "noisy labels" in SELECTION_RULES["val_acc"]


def test_a_run_that_keeps_its_last_epoch_says_so_whatever_validation_labels_it_has(tmp_path: Path) -> None:
    """No validation score chose the epoch, so neither the adjudicated labels nor Clothing1M's clean list did."""
    assert selection_rule(_mri_run("last", "panel.csv")) == "the last epoch"
    (tmp_path / "noisy_label_kv.txt").write_text("")
    (tmp_path / "clean_val_key_list.txt").write_text("")
    clothing = RunConfig(data=DataConfig(name="clothing1m", root=str(tmp_path)), train=TrainLoopConfig(select="last"))
    assert selection_rule(clothing) == "the last epoch"
