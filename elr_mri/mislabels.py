"""The table of suspected mislabels: examples whose learned target disagrees with the given label.

ELR's targets are a running average of the network's own early predictions, so where the target's
argmax differs from the given label, the label is a candidate for re-review. Rows are ranked by
the margin between the target's suggestion and what it keeps on the given label: with three classes,
a target of (0.46, 0.44, 0.10) against the given second class doubts it far less than one of
(0.45, 0.10, 0.45), though its top share is higher.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
import pandas as pd
import torch

__all__ = ["suspected_mislabels", "mislabel_precision_recall"]


def suspected_mislabels(targets: ArrayLike, given: ArrayLike, class_names: list[str] | None = None) -> pd.DataFrame:
    """Rows (index, given_label, suggested_label, confidence, given_share, margin, tied_with) where the target puts
    less on the given label than on another, the widest margin (confidence − given_share) first. `tied_with` names
    the other classes sharing the top share (separated by |; empty for most rows): argmax suggests the first of
    them, and a reviewer should know the target is split.

    An all-zero row (an example a class-balanced sampler never drew, so no target gathered) suggests nothing, nor
    does a tie between the given label and the top one (argmax alone would take the lower class index, and a
    bfloat16 table, `loss.targets_dtype`, ties at 3 significant digits).

    `targets` and `given` may be tensors (on any device; bfloat16 too) or lists: a notebook passes a loaded run's
    `method.targets()` as it is, which failed in a comparison of a tensor with torch's (values, indices) pair."""
    targets, given = _host_array(targets), _host_array(given)
    suggested = targets.argmax(axis=1)
    total = targets.sum(axis=1)
    top = targets.max(axis=1)
    on_given = targets[np.arange(len(given)), given]
    share = 1 / np.clip(total, 1e-12, None)
    rows = np.flatnonzero((on_given < top) & (total > 0))
    table = pd.DataFrame({
        "index": rows,
        "given_label": given[rows],
        "suggested_label": suggested[rows],
        "confidence": (top * share)[rows].round(6),
        "given_share": (on_given * share)[rows].round(6),
        "margin": ((top - on_given) * share)[rows].round(6),
    })
    name = (lambda k: class_names[k]) if class_names else str
    table["tied_with"] = ["|".join(name(k) for k in np.flatnonzero(targets[i] == top[i]) if k != suggested[i])
                          for i in rows]
    if class_names:
        table["given_name"] = [class_names[i] for i in table["given_label"]]
        table["suggested_name"] = [class_names[i] for i in table["suggested_label"]]
    return table.sort_values("margin", ascending=False, kind="stable").reset_index(drop=True)


def mislabel_precision_recall(flagged_index: ArrayLike, suggested: ArrayLike, given: ArrayLike,
                              clean: ArrayLike) -> dict[str, float]:
    """Precision and recall of the flagged set against the examples whose label was really changed, and how many
    flagged rows also suggest the true label (`suggested`, one per flagged row): a re-review that trusts the
    suggestion needs that too (a scan given AD, truly MCI, suggested CN is a right flag and a wrong suggestion).

    Each may be a tensor or a list, as for `suspected_mislabels`: a list failed in indexing, a tensor in NumPy's sum."""
    flagged_index, suggested, given, clean = map(_host_array, (flagged_index, suggested, given, clean))
    truly_wrong = np.flatnonzero(given != clean)
    hits = np.intersect1d(flagged_index, truly_wrong).size
    return {
        "flagged": int(len(flagged_index)),
        "truly_mislabelled": int(truly_wrong.size),
        "precision": hits / len(flagged_index) if len(flagged_index) else float("nan"),
        "recall": hits / truly_wrong.size if truly_wrong.size else float("nan"),
        "suggestion_true": int(np.sum(clean[flagged_index] == suggested)),
    }


def _host_array(values: ArrayLike | torch.Tensor) -> np.ndarray:
    """`values` as a NumPy array. A tensor comes to the host first (a run loaded on a GPU keeps its targets there) and
    a bfloat16 one as float32: NumPy has no bfloat16, and `loss.targets_dtype: bfloat16` stores ELR's table so."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        values = values.float() if values.dtype == torch.bfloat16 else values
    return np.asarray(values)
