"""The metrics of one scored set, without intervals: accuracy, balanced accuracy, micro, macro and per-class
one-vs-rest AUC on probabilities and the confusion counts, as the ML4H paper reports them; top-5 accuracy beyond five
classes; the ECE and the Brier score. One function gives them for the whole set and for each bootstrap resample
alike, so an interval is always of the very figure its estimate is.

Public names: `TOP5_MIN_CLASSES`, `point_metrics`, `metric_values`, `metric_names`, `top5_hits`, `balanced_accuracy`,
`confusion_counts`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from elr_mri.evaluation.calibration import brier_score, expected_calibration_error
from elr_mri.evaluation.roc import roc_auc

__all__ = ["TOP5_MIN_CLASSES", "point_metrics", "metric_values", "metric_names", "top5_hits", "balanced_accuracy",
           "confusion_counts"]

TOP5_MIN_CLASSES = 5  # top-5 accuracy is reported only above this many classes, where it is not trivially 1


def point_metrics(labels: np.ndarray, proba: np.ndarray, num_classes: int) -> dict[str, float]:
    """accuracy, top5_accuracy (more than five classes only), balanced_accuracy, auc_micro, auc_macro, ece, brier
    and auc_<k> for class index k."""
    labels = np.asarray(labels)
    proba = np.asarray(proba, dtype=np.float64)
    counts = confusion_counts(labels, proba.argmax(1), num_classes)
    onehot = labels[:, None] == np.arange(num_classes)[None, :]
    per_class = [roc_auc(onehot[:, c], proba[:, c]) for c in range(num_classes)]
    top5 = top5_hits(labels, proba) if num_classes > TOP5_MIN_CLASSES else None
    return metric_values(counts, top5, per_class, roc_auc(onehot.ravel(), proba.ravel()),
                         expected_calibration_error(labels, proba), brier_score(labels, proba))


def metric_values(counts: np.ndarray, top5: np.ndarray | None, per_class: Sequence[float], micro: float, ece: float,
                  brier: float) -> dict[str, float]:
    """`point_metrics`' dict from the parts a set (or a resample) gives: its confusion counts, whether each example's
    label is among its five likeliest classes (None: five classes or fewer), its AUCs, ECE and Brier score."""
    examples = int(counts.sum())
    values = {"accuracy": float(np.trace(counts) / examples) if examples else float("nan")}
    if top5 is not None:
        values["top5_accuracy"] = float(top5.mean()) if examples else float("nan")
    values.update({
        "balanced_accuracy": _mean_recall(counts),
        "auc_micro": micro,
        "auc_macro": float(np.mean(per_class)),  # NaN if any class is absent, as scikit-learn refuses it
        "ece": ece,
        "brier": brier,
    })
    values.update({f"auc_{c}": a for c, a in enumerate(per_class)})
    return values


def metric_names(num_classes: int) -> list[str]:
    """Keys of `point_metrics` in report order."""
    top5 = ["top5_accuracy"] if num_classes > TOP5_MIN_CLASSES else []
    return (["accuracy", *top5, "balanced_accuracy", "auc_micro", "auc_macro", "ece", "brier"]
            + [f"auc_{c}" for c in range(num_classes)])


def top5_hits(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Whether each example's label is among its five likeliest classes (ties at the fifth as argpartition picks)."""
    return (np.argpartition(-proba, 4, axis=1)[:, :5] == labels[:, None]).any(1)


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    """Mean recall over the classes present in `labels` (NaN without labels): a model that gives
    everyone the majority class scores 1/(classes present), whatever the majority's share."""
    return _mean_recall(confusion_counts(labels, predicted, num_classes))


def _mean_recall(counts: np.ndarray) -> float:
    support = counts.sum(1)
    return float((np.diag(counts)[support > 0] / support[support > 0]).mean()) if support.any() else float("nan")


def confusion_counts(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j] = examples of class i predicted as j."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts
