"""Words for a run that has fallen onto one class, read from its per-epoch metrics.

A network that gives every scan the same class scores the class prior. On a noisy validation
split that can still be the best epoch (cross-entropy at 45% flips on the simulated cohort picks
epoch 1), and a strong ELR term can pull a network that never left the prior onto the majority
class for good. Both look like ordinary numbers in summary.json, so the run says so in words.

"Collapsed" is measured against the validation labels themselves: a split whose labels put 55% in
one class is not collapsed at 60% in one predicted class, but is at 95% (a λ 2 ELR run sat there for
15 epochs, under a fixed 98% bar that never fired).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["COLLAPSE_SHARE", "COLLAPSE_EXCESS", "BLOWN_UP_LOSS", "collapse_threshold", "top_class_share",
           "collapse_warnings"]

COLLAPSE_SHARE = 0.98  # the bar when the labels' top-class share is unknown (metrics written before it was recorded)
COLLAPSE_EXCESS = 0.8  # collapsed: predictions this far from the labels' top-class share towards one class for all
# The mislabel table is made from the last epoch, so a collapsed one flags nearly every example given another class
# (digits, λ 30 at 60% noise: 999 of 1,132 training examples, each suggesting the collapsed class at 0.999).
COLLAPSED_TABLE = ("suspected_mislabels.csv comes from this epoch, so it suggests that class for nearly every training "
                   "example given another: it is no list to re-review")
# An epoch's mean training loss past which the network's outputs blew up: cross-entropy starts at log C (2.3 for ten
# classes) and a mean of 100 gives the labels e^-100; ELR's term only lowers the loss, GCE's and SCE's are bounded.
# Then the learning rate, not ELR's term, threw the network onto one class (digits at optim.lr 5: CE and ELR alike).
BLOWN_UP_LOSS = 100.0
# Where each ELR variant sets when its term comes in: ELR+ ramps λ with its own key.
LATER_START = {"elr": "start the term later (loss.lam_start_steps)",
               "elr_plus": "ramp the term in more slowly (elr_plus.coef_step)"}
# A run this short that sat on one class in every epoch says nothing of ELR's term: every network starts near the
# class prior (1-epoch CIFAR-10 smoke runs of ResNet-34 on 1,000 images collapsed with CE as with ELR).
SHORT_RUN_EPOCHS = 3


def top_class_share(predicted: np.ndarray) -> float:
    """Share of examples given the most frequent predicted class: 1.0 when one class is given to all."""
    if len(predicted) == 0:
        return float("nan")
    return float(np.bincount(predicted).max() / len(predicted))


def collapse_threshold(label_top_share: float) -> float:
    """The predicted top-class share at which a network counts as collapsed, given the labels' own share."""
    if np.isnan(label_top_share):
        return COLLAPSE_SHARE
    return label_top_share + COLLAPSE_EXCESS * (1.0 - label_top_share)


def collapse_warnings(metrics: pd.DataFrame, best_epoch: int, loss_name: str,
                      class_names: Sequence[str] = (), run_dir: Path | None = None) -> list[str]:
    """One sentence per problem: the selected epoch or the last epoch predicting (nearly) one class for the
    whole validation split, named from `val_top_class` where the metrics carry it (written since it was recorded).
    The evaluate command it suggests names `run_dir` where given, so it can be pasted as it is.
    Empty when the metrics carry no `val_top_class_share` (no validation split)."""
    if "val_top_class_share" not in metrics or metrics["val_top_class_share"].isna().all():
        return []
    share = metrics.set_index("epoch")["val_top_class_share"]
    top_class = metrics.set_index("epoch").get("val_top_class", pd.Series(dtype=float))

    def one_class(epoch: int) -> str:
        k = top_class.get(epoch, float("nan"))
        return f"class {class_names[int(k)]}" if not np.isnan(k) and 0 <= k < len(class_names) else "one class"

    label_share = metrics.get("val_label_top_share", pd.Series(dtype=float)).max()  # one value per run; NaN if absent
    if label_share >= 1.0:  # every prediction "collapses" onto a one-class split; the split is the problem
        return ["the validation split's labels are all one class, so selection cannot tell a network that learned "
                "from one that gives every scan that class: give it more participants (data.val_fraction, or the splits file)"]
    threshold = collapse_threshold(label_share)
    labels_said = "" if np.isnan(label_share) else f" (its labels: {label_share:.0%} in their most common class)"
    last_epoch = int(share.index.max())
    run = shlex.quote(str(run_dir)) if run_dir is not None else "RUN_DIR"
    found: list[str] = []
    if last_epoch != best_epoch and share.get(best_epoch, 0.0) >= threshold:
        found.append(
            f"the selected epoch {best_epoch} gives {one_class(best_epoch)} to {share[best_epoch]:.0%} of the "
            f"validation split{labels_said}, so it scores about the class prior: the validation labels found no better "
            f"epoch; compare the last epoch (elr-mri evaluate --run {run} --checkpoint last)")
    if share[last_epoch] >= threshold:  # the selected one too, when it is the last: no other epoch to compare
        advice = _collapse_advice(metrics, loss_name, never_left=bool((share >= threshold).all()))
        selected = ", the selected one," if last_epoch == best_epoch else ""
        found.append(f"the last epoch {last_epoch}{selected} gives {one_class(last_epoch)} to "
                     f"{share[last_epoch]:.0%} of the validation split{labels_said}: the network has collapsed onto it{advice}"
                     f"; {COLLAPSED_TABLE}")
    return found


def _collapse_advice(metrics: pd.DataFrame, loss_name: str, never_left: bool) -> str:
    """Why a run collapsed, where its metrics tell: a training loss that blew up (`BLOWN_UP_LOSS`), the learning
    rate's doing, which ELR's advice would only mislead about; a short run that `never_left` one class, too little
    training (`SHORT_RUN_EPOCHS`); else, for ELR, its term."""
    losses = metrics.set_index("epoch")["train_loss"] if "train_loss" in metrics else pd.Series(dtype=float)
    if (losses > BLOWN_UP_LOSS).any():
        epoch = int(losses.idxmax())
        return (f"; its training loss reached {losses[epoch]:.3g} in epoch {epoch}, so its outputs blew up: lower "
                "optim.lr")
    epochs = len(metrics)
    if never_left and epochs <= SHORT_RUN_EPOCHS:
        return (f"; it did so from its first epoch, and {epochs} epoch{'s' if epochs > 1 else ''} cannot tell why: every "
                "network starts near the class prior, so train longer before changing the loss")
    if loss_name in LATER_START:
        return ("; ELR's term held a network near the class prior on the majority class: lower loss.lam or "
                f"{LATER_START[loss_name]}")
    return ""
