"""Words for a run that has fallen onto one class, read from its per-epoch metrics.

A network that gives every scan the same class scores the class prior. On a noisy validation
split that can still be the best epoch (cross-entropy at 45% flips on the simulated cohort picks
epoch 1), and a strong ELR term can pull a network that never left the prior onto the majority
class for good. Both look like ordinary numbers in summary.json, so the run says so in words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["COLLAPSE_SHARE", "top_class_share", "collapse_warnings"]

COLLAPSE_SHARE = 0.98  # at least this share of the validation split in one predicted class counts as collapsed
ELR_LOSSES = ("elr", "elr_plus")


def top_class_share(predicted: np.ndarray) -> float:
    """Share of examples given the most frequent predicted class: 1.0 when one class is given to all."""
    if len(predicted) == 0:
        return float("nan")
    return float(np.bincount(predicted).max() / len(predicted))


def collapse_warnings(metrics: pd.DataFrame, best_epoch: int, loss_name: str) -> list[str]:
    """One sentence per problem: the selected epoch or the last epoch predicting one class for the whole
    validation split. Empty when the metrics carry no `val_top_class_share` (no validation split)."""
    if "val_top_class_share" not in metrics or metrics["val_top_class_share"].isna().all():
        return []
    share = metrics.set_index("epoch")["val_top_class_share"]
    last_epoch = int(share.index.max())
    found: list[str] = []
    if share.get(best_epoch, 0.0) >= COLLAPSE_SHARE:
        found.append(
            f"the selected epoch {best_epoch} gives one class to {share[best_epoch]:.0%} of the validation "
            "split, so it scores the class prior: the noisy validation labels found no better epoch; "
            "compare the last epoch (elr-mri evaluate --checkpoint last)")
    if last_epoch != best_epoch and share[last_epoch] >= COLLAPSE_SHARE:
        advice = ("; ELR's term held a network near the class prior on the majority class: lower loss.lam "
                  "or start the term later (loss.lam_start_steps)") if loss_name in ELR_LOSSES else ""
        found.append(f"the last epoch {last_epoch} gives one class to {share[last_epoch]:.0%} of the "
                     f"validation split: the network has collapsed onto it{advice}")
    return found
