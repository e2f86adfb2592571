"""The area under the ROC curve by the rank (Mann-Whitney) formula, ties counted half, which equals scikit-learn's
`roc_auc_score`, and the curve's points, one per distinct score, which enclose that same area. The metrics take the
area and the plots draw the curve: kept together so that both treat tied scores alike.

Public names: `roc_auc`, `roc_points`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_auc", "roc_points"]


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank (Mann-Whitney) formula; NaN without both classes."""
    truth = np.asarray(truth, dtype=bool)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _midranks(np.asarray(score))
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _midranks(score: np.ndarray) -> np.ndarray:
    """Ranks from 1, tied scores sharing their mean rank, as scipy's `rankdata` gives them (half-integers, so exactly)
    without its checks for any axis and dtype: a bootstrap calls this k + 1 times a resample, and on 300 participants
    of 3 classes those checks took 1.3 s of 1000 resamples' 2.2 (measured; now 0.5 in all)."""
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # where each run of tied scores starts
    sizes = np.diff(np.r_[first, len(score)])
    ranks = np.empty(len(score))
    ranks[order] = np.repeat(first + (sizes + 1) / 2, sizes)
    return ranks


def roc_points(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) of the ROC curve, one point per distinct score: examples with
    tied scores pass the threshold together, so the curve encloses `roc_auc` whatever the rows' order (a collapsed
    network ties nearly everyone)."""
    truth = np.asarray(truth, dtype=bool)
    order = np.argsort(-np.asarray(score), kind="stable")
    ranked = np.asarray(score)[order]
    last_of_each_score = np.append(np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1)
    tpr = np.cumsum(truth[order])[last_of_each_score] / truth.sum()
    fpr = np.cumsum(~truth[order])[last_of_each_score] / (~truth).sum()
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])
