"""A scored set's metrics with 95% intervals from a bootstrap over participants, not scans, at scan level and at
participant level (each participant's mean probability per given diagnosis).

Scans of one participant are strongly correlated: resampling scans as if they were independent
makes intervals too narrow, more so the more follow-up visits a cohort has. The bootstrap here
draws participants with replacement and takes all their scans, so a participant with ten scans
counts as one draw (cluster bootstrap).

This module puts the parts together: the set's checks (`prediction_checks`), its point metrics (`point_metrics`,
with `roc` and `calibration`), its resamples (`resampling`), and the percentile intervals over them, of each metric
and of each given class's share of each prediction, gathered in a `metrics_report.MetricsReport`.

Public names: `bootstrap_metrics`, `refuse_resamples_past_memory`, `participant_means`, `evaluate_predictions`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from elr_mri.evaluation import N_BOOT
from elr_mri.evaluation.calibration import reliability_bins
from elr_mri.evaluation.metrics_report import CONFIDENCE, Interval, MetricsReport
from elr_mri.evaluation.point_metrics import confusion_counts, metric_names, point_metrics
from elr_mri.evaluation.prediction_checks import checked_predictions
from elr_mri.evaluation.resampling import Resampling, participant_resamples

__all__ = [
    "bootstrap_metrics",
    "refuse_resamples_past_memory",
    "participant_means",
    "evaluate_predictions",
]

KEPT_RESAMPLES_BYTES = 2**30  # the most the resamples' values may take: computing the percentiles about doubles it


def evaluate_predictions(
    labels: ArrayLike,
    proba: np.ndarray,
    participants: ArrayLike,
    class_names: Sequence[str],
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, MetricsReport]:
    """Scan-level and participant-level reports, both with intervals over participants."""
    labels, proba, participants = checked_predictions(labels, proba, participants, len(class_names))
    by_person = participant_means(labels, proba, participants)
    return {
        "scan": bootstrap_metrics(labels, proba, participants, class_names, n_boot, confidence, seed, "scan"),
        "participant": bootstrap_metrics(*by_person, class_names, n_boot, confidence, seed, "participant"),
    }


def bootstrap_metrics(
    labels: ArrayLike,
    proba: np.ndarray,
    participants: ArrayLike,
    class_names: Sequence[str],
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    level: str = "scan",
) -> MetricsReport:
    """Point metrics and percentile intervals from `n_boot` resamples of participants.

    A resample in which a metric is undefined (an AUC or the balanced accuracy, where a class was not
    drawn) is left out of that metric's interval.
    """
    labels, proba, participants = checked_predictions(labels, proba, participants, len(class_names))
    k = len(class_names)
    names = metric_names(k)
    shown = names[: -k] + [f"auc_{name}" for name in class_names]  # per-class AUCs by class name: auc_AD
    estimate = point_metrics(labels, proba, k)
    point = np.array([estimate[n] for n in names])
    refuse_resamples_past_memory(n_boot, k)
    boot = np.full((n_boot, len(names)), np.nan)  # stays NaN, undefined, where fewer than two participants give none
    boot_rates = np.full((n_boot, k, k), np.nan)
    resampling = Resampling(labels, proba, k)
    for b, rows in enumerate(participant_resamples(participants, n_boot, np.random.default_rng(seed))):
        values = resampling.metrics(rows)
        boot[b] = [values[n] for n in names]
        boot_rates[b] = _rates(resampling.counts(rows))
    tail = 100 * (1 - confidence) / 2
    low, high = _percentiles(boot, tail), _percentiles(boot, 100 - tail)
    defined = np.isfinite(boot).sum(axis=0)
    counts = confusion_counts(labels, proba.argmax(1), k)
    return MetricsReport(
        level=level,
        class_names=list(class_names),
        n_examples=len(labels),
        n_participants=len(np.unique(participants)),
        n_boot=n_boot,
        metrics={n: Interval(float(p), float(lo), float(hi), int(d))
                 for n, p, lo, hi, d in zip(shown, point, low, high, defined)},
        confusion=counts,
        confusion_rate={"estimate": _rates(counts), "low": _percentiles(boot_rates, tail),
                        "high": _percentiles(boot_rates, 100 - tail), "resamples": np.isfinite(boot_rates).sum(axis=0)},
        confidence=confidence,
        reliability=reliability_bins(labels, proba),
    )


def refuse_resamples_past_memory(n_boot: int, num_classes: int) -> None:
    """A percentile interval needs every resample's value, so each resample's metrics and k×k confusion rates are
    kept: `--bootstrap 1000000000` stopped on a MemoryError's traceback (67 GiB), and 100,000 resamples of a
    100-class run would take 8 GB. Refused before any resample is drawn, in one line, with the count that fits;
    `evaluate` asks before it predicts, which takes minutes on a holdout."""
    values = len(metric_names(num_classes)) + num_classes * num_classes
    if n_boot * values * 8 > KEPT_RESAMPLES_BYTES:
        raise ValueError(f"--bootstrap {n_boot}: every resample's {values} values ({num_classes} classes) are kept for "
                         f"the percentiles, {n_boot * values * 8 / 2**30:.1f} GiB; pass at most "
                         f"{KEPT_RESAMPLES_BYTES // (values * 8):,} (the default is {N_BOOT})")


def participant_means(
    labels: np.ndarray, proba: np.ndarray, participants: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One example per (participant, given diagnosis): the mean probability of those scans.

    A participant whose diagnosis changed between visits (a converter) keeps one example per
    diagnosis rather than being forced into one label.
    """
    keys = np.array([f"{p}\x00{y}" for p, y in zip(participants, labels)])
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    sums = np.zeros((len(unique), proba.shape[1]))
    np.add.at(sums, inverse, proba)
    means = sums / np.bincount(inverse)[:, None]
    return labels[first], means, participants[first]


def _rates(counts: np.ndarray) -> np.ndarray:
    support = counts.sum(1, keepdims=True)
    return np.divide(counts, support, out=np.full(counts.shape, np.nan), where=support > 0)


def _percentiles(values: np.ndarray, q: float) -> np.ndarray:
    """Percentile over resamples (axis 0) ignoring undefined ones; NaN where none is defined. A column every resample
    defines takes np.percentile, the same floats in one vectorised pass: np.nanpercentile makes a Python call per
    column, and a 100-class report's four passes (its 10,000 confusion rates, 1000 resamples) took 0.91 CPU-s, 0.37
    so."""
    finite = np.isfinite(values)
    out = np.full(values.shape[1:], np.nan)
    complete = finite.all(0)
    partial = finite.any(0) & ~complete
    if complete.any():
        out[complete] = np.percentile(values[:, complete], q, axis=0)
    if partial.any():
        with np.errstate(all="ignore"):
            out[partial] = np.nanpercentile(values[:, partial], q, axis=0)
    return out
