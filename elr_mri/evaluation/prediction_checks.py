"""The refusals of a scored set before any metric is computed: labels, probability rows and participants that do not
line up, rows that are not numbers, and rows that are no probabilities (logits, scores). Apart from the metrics
because the row checks also guard tables that are scored elsewhere (`truth`, `evaluate`), with the same words.

Public names: `checked_predictions`, `non_finite_rows`, `non_probability_rows`, `row_words`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["checked_predictions", "non_finite_rows", "non_probability_rows", "row_words"]

PROBABILITY_TOLERANCE = 1e-3  # a row's sum may miss 1 by this: float32 softmax and 7-digit CSVs miss it by ~1e-7


def checked_predictions(
    labels: ArrayLike, proba: np.ndarray, participants: ArrayLike, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (int64), probabilities (float64) and participants (str) as the metrics take them; a ValueError of one
    line for a set that cannot be scored, naming its first bad row."""
    labels = np.asarray(labels, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    participants = np.asarray(participants).astype(str)
    if proba.ndim != 2 or proba.shape[1] != num_classes:
        raise ValueError(f"proba must have shape (n, {num_classes}), got {proba.shape}")
    if not len(labels) == len(proba) == len(participants):
        raise ValueError(f"{len(labels)} labels, {len(proba)} probability rows, {len(participants)} participants")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    broken = non_finite_rows(proba)
    if broken.size:
        raise ValueError(f"{broken.size} of {len(proba)} probability rows are not numbers (NaN or inf; first: row "
                         f"{broken[0]}, participant {participants[broken[0]]}); they cannot be scored")
    odd = non_probability_rows(proba)
    if odd.size:
        raise ValueError(f"{odd.size} of {len(proba)} probability rows are not probabilities (first: row {odd[0]}, "
                         f"participant {participants[odd[0]]}, {row_words(proba[odd[0]])}); pass each class's "
                         "probability (a softmax of the logits), not logits or other scores")
    return labels, proba, participants


def non_probability_rows(proba: np.ndarray) -> np.ndarray:
    """Finite rows that are no distribution over the classes (an entry below 0, or a sum more than
    PROBABILITY_TOLERANCE from 1): logits or unnormalised scores. Their argmax is right, yet a class's AUC ranks its
    column, which a logit and its probability can order otherwise, the micro AUC ranks rows of different scales in
    one list, and a participant's mean weighs its scans by their scale: scored as probabilities, all would be off."""
    proper = (proba >= 0).all(axis=1) & (np.abs(proba.sum(axis=1) - 1) <= PROBABILITY_TOLERANCE)
    return np.flatnonzero(np.isfinite(proba).all(axis=1) & ~proper)


def row_words(row: np.ndarray) -> str:
    """What is wrong with a row of `non_probability_rows`, for its error message."""
    return f"summing to {row.sum():.4g}" + (f", its least {row.min():.4g}" if row.min() < 0 else "")


def non_finite_rows(proba: np.ndarray) -> np.ndarray:
    """Rows holding NaN or inf: argmax takes such a row for class 0 and every AUC becomes NaN, so a network whose
    forward pass overflowed would be scored as if it predicted the first class."""
    return np.flatnonzero(~np.isfinite(proba).all(axis=1))
