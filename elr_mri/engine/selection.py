"""How a run chooses the epoch it keeps (`train.select`), in words for summary.json, evaluate and the report.

Apart from the training loop (`runner`), which writes them, so that what reads them back does not import it.
"""

from __future__ import annotations

from pathlib import Path

from elr_mri.config import RunConfig
from elr_mri.data.image_sources import CLOTHING1M_VAL_LIST, clothing1m_lists_dir

__all__ = ["SELECTION_RULES", "selection_rule"]

SELECTION_RULES = {
    "val_acc": "best accuracy on the validation split, held out from the training set with its noisy labels (data.val_fraction), as the paper",
    "val_balanced_acc": "best balanced accuracy (mean recall over the classes) on the validation split, held out from the training set with its noisy labels (data.val_fraction)",
    "last": "the last epoch",
}
SCORE_NAMES = {"val_acc": "accuracy", "val_balanced_acc": "balanced accuracy (mean recall over the classes)"}


def selection_rule(cfg: RunConfig) -> str:
    """How the kept checkpoint was chosen, in words for summary.json and the report: with adjudicated
    validation labels (data.mri.val_labels) the validation split is no longer scored on noisy labels."""
    if cfg.train.select in SCORE_NAMES and cfg.data.name == "mri" and cfg.data.mri.val_labels:
        return (f"best {SCORE_NAMES[cfg.train.select]} on the validation split, scored against the adjudicated "
                f"labels in {cfg.data.mri.val_labels} (data.mri.val_labels)")
    if cfg.train.select in SCORE_NAMES and cfg.data.name == "clothing1m" and cfg.data.root \
            and (clothing1m_lists_dir(Path(cfg.data.root)) / CLOTHING1M_VAL_LIST).is_file():
        return (f"best {SCORE_NAMES[cfg.train.select]} on Clothing1M's clean validation images "
                f"({CLOTHING1M_VAL_LIST}), as the paper")
    return SELECTION_RULES[cfg.train.select]
