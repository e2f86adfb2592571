"""How far a probability can be taken at its word: the expected calibration error, the reliability bins it is
computed from (reliability.csv, the reliability diagram), and the Brier score. Apart from the other metrics because
they judge the probabilities themselves, not the decisions or the rankings taken from them, and label noise and
ELR's targets both change how far a probability can be trusted.

Public names: `CALIBRATION_BINS`, `expected_calibration_error`, `binned_calibration_error`, `brier_score`,
`brier_terms`, `reliability_bins`, `confidence_bins`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CALIBRATION_BINS", "expected_calibration_error", "binned_calibration_error", "brier_score", "brier_terms",
           "reliability_bins", "confidence_bins"]

# equal-width bins of top-label confidence for the ECE and the reliability diagram: fewer than Guo et al.'s 15, since
# a holdout has a few hundred participants and three classes leave only the bins above 1/3 in use (~7 of 10), which
# keeps some 40 participants a bin; with fewer, each bin's |accuracy - confidence| is mostly sampling noise, an ECE
# biased upwards
CALIBRATION_BINS = 10


def expected_calibration_error(labels: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Top-label ECE (Guo et al. 2017): the mean over examples of |accuracy - mean confidence| of their confidence
    bin, so 0 where "p = 0.9" is right 90% of the time, whatever the accuracy; NaN without examples."""
    return binned_calibration_error(reliability_bins(labels, proba, bins))


def binned_calibration_error(bins: dict[str, np.ndarray]) -> float:
    """The ECE of `reliability_bins`' figures."""
    counts, confidence, accuracy = bins["count"], bins["confidence"], bins["accuracy"]
    if not counts.sum():
        return float("nan")
    filled = counts > 0
    return float((counts[filled] * np.abs(accuracy[filled] - confidence[filled])).sum() / counts.sum())


def brier_score(labels: np.ndarray, proba: np.ndarray) -> float:
    """Multiclass Brier score: the mean over examples of the squared distance from the probability vector to the
    one-hot label (0 perfect, 2 the worst), which, unlike the ECE, rewards sharpness as well as calibration."""
    return float(brier_terms(labels, proba).mean()) if len(labels) else float("nan")


def brier_terms(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Each example's squared distance from its probability vector to its one-hot label: the Brier score's terms."""
    onehot = np.asarray(labels)[:, None] == np.arange(proba.shape[1])[None, :]
    return ((np.asarray(proba, dtype=np.float64) - onehot) ** 2).sum(1)


def reliability_bins(labels: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, np.ndarray]:
    """Per equal-width bin of top-label confidence, (low, high] (the first from 0): edges, count, mean confidence and
    accuracy (NaN where empty). The confidence is the probability of the predicted class, the argmax."""
    labels, proba = np.asarray(labels), np.asarray(proba, dtype=np.float64)
    return confidence_bins(proba.max(1), proba.argmax(1) == labels, bins)


def confidence_bins(confidence: np.ndarray, hits: np.ndarray, bins: int) -> dict[str, np.ndarray]:
    """`reliability_bins` of examples of these top-label confidences and hits (predicted class = label)."""
    edges = np.linspace(0.0, 1.0, bins + 1).round(12)  # 0.3, not 0.30000000000000004, in reliability.csv
    which = np.searchsorted(edges[1:-1], confidence, side="left")  # a confidence on an edge belongs to the lower bin
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        return {"edges": edges, "count": counts,
                "confidence": np.bincount(which, confidence, bins) / counts,
                "accuracy": np.bincount(which, hits, bins) / counts}
