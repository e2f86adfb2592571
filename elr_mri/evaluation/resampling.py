"""The resamples of a bootstrap over participants, and each resample's metrics. Participants are drawn, not scans,
so that a participant's correlated scans stay together. A resample is scored from how often it drew each example,
over scores sorted once for the whole set: that spares each resample a sort (a CIFAR-100 test set's default
bootstrap took over five CPU-minutes of them) and gives the very floats `point_metrics` gives on its rows.

Public names: `participant_resamples`, `resampled_metrics`, `Resampling`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from elr_mri.evaluation.calibration import CALIBRATION_BINS, binned_calibration_error, brier_terms, confidence_bins
from elr_mri.evaluation.point_metrics import TOP5_MIN_CLASSES, metric_values, point_metrics, top5_hits

__all__ = ["participant_resamples", "resampled_metrics", "Resampling"]


def participant_resamples(participants: np.ndarray, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices of each resample: participants drawn with replacement, each bringing all its rows. No resample
    at all (an empty iterator, not None) with fewer than two participants: every resample would be the set itself,
    an interval of zero width.
    Drawn one at a time as they are scored: all 100,000 of `--bootstrap 100000` on 300 participants of three
    scans each held 707 MiB before a metric was computed."""
    _, codes = np.unique(participants, return_inverse=True)
    if codes.size == 0 or codes.max() < 1:
        return
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.cumsum(sizes) - sizes
    for _ in range(n_boot):
        drawn = rng.integers(0, len(sizes), size=len(sizes))
        lengths = sizes[drawn]
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        yield order[np.repeat(starts[drawn], lengths) + offsets]


def resampled_metrics(labels: np.ndarray, proba: np.ndarray, rows: np.ndarray, num_classes: int) -> dict[str, float]:
    """`point_metrics` of the resample `rows`, with the balanced accuracy undefined (NaN) where the resample drew
    no example of a class the whole set has. Why: its mean recall would then run over fewer classes than the
    estimate's (1/2 for a network that calls everyone MCI, against the estimate's 1/3), and such resamples would
    widen the interval with values of another quantity."""
    values = point_metrics(labels[rows], proba[rows], num_classes)
    if np.setdiff1d(labels, labels[rows]).size:
        values["balanced_accuracy"] = float("nan")
    return values


class Resampling:
    """What every resample of one set shares, computed once, so that a resample costs O(n·k) passes instead of
    `resampled_metrics`' sorts: per example its prediction, confidence, top-5 hit and Brier term, and each class's
    scores (and all scores, for the micro AUC) in sorted order. A resample is scored through its multiplicities,
    how often it drew each example; every value is the very float `resampled_metrics` gives at the same rows."""

    def __init__(self, labels: np.ndarray, proba: np.ndarray, num_classes: int) -> None:
        proba = np.ascontiguousarray(proba, dtype=np.float64)  # laid out as proba[rows]: each row's sums alike
        n, self.num_classes, predicted = len(labels), num_classes, proba.argmax(1)
        self.examples = n
        self.pairs = labels * num_classes + predicted  # each example's cell of the confusion matrix
        self.confidence, self.hits = proba.max(1), predicted == labels
        self.top5 = top5_hits(labels, proba) if num_classes > TOP5_MIN_CLASSES else None
        self.squared = brier_terms(labels, proba)
        onehot = labels[:, None] == np.arange(num_classes)[None, :]
        self.per_class = _RankedColumns.of(proba.T, np.broadcast_to(np.arange(n), (num_classes, n)), onehot.T)
        self.micro = _RankedColumns.of(proba.reshape(1, -1), np.repeat(np.arange(n), num_classes)[None],
                                       onehot.reshape(1, -1))
        self.present = np.bincount(labels, minlength=num_classes) > 0

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """`confusion_counts` of the resample `rows`."""
        k = self.num_classes
        return np.bincount(self.pairs[rows], minlength=k * k).reshape(k, k)

    def metrics(self, rows: np.ndarray) -> dict[str, float]:
        """`resampled_metrics(labels, proba, rows, num_classes)`, to the bit."""
        weights = np.bincount(rows, minlength=self.examples)
        counts = self.counts(rows)
        values = metric_values(counts, None if self.top5 is None else self.top5[rows],
                                self.per_class.auc(weights).tolist(), float(self.micro.auc(weights)[0]),
                                binned_calibration_error(confidence_bins(self.confidence[rows], self.hits[rows],
                                                                         CALIBRATION_BINS)),
                                float(self.squared[rows].mean()) if len(rows) else float("nan"))
        if (self.present & (counts.sum(1) == 0)).any():  # as resampled_metrics: a class of the set not drawn
            values["balanced_accuracy"] = float("nan")
        return values


@dataclass(frozen=True)
class _RankedColumns:
    """Columns of scores sorted once for a whole set, with their runs of tied scores: a resample's rank sums then
    come from its multiplicities in one pass over that order, O(n), rather than from sorting the resample. Only the
    runs holding a positive enter a rank sum, so beyond that pass the work is O(positives)."""

    rows: np.ndarray  # the example of each sorted entry, column after column
    column_edges: np.ndarray  # where each column's entries start among them, and their count last
    run_first: np.ndarray  # per run of ties holding a positive: its first entry,
    run_end: np.ndarray  # the entry after its last,
    run_column_first: np.ndarray  # the first entry of its column,
    column_runs: np.ndarray  # and where each column's such runs start among them (their count last)
    positive_rows: np.ndarray  # the example of each positive entry, in sorted order
    positive_edges: np.ndarray  # where each run's positive entries start among them (their count last)

    @classmethod
    def of(cls, scores: np.ndarray, rows: np.ndarray, positive: np.ndarray) -> _RankedColumns:
        """From (columns, entries) arrays of scores, the example of each entry, and whether it is a positive."""
        columns, length = scores.shape
        order = np.argsort(scores, axis=1, kind="stable")
        ordered = np.take_along_axis(scores, order, 1)
        starts = np.ones(ordered.shape, dtype=bool)
        starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]  # ties as `roc_auc` ranks them
        run_starts = np.flatnonzero(starts)
        flat_rows = np.take_along_axis(rows, order, 1).ravel()
        positives = np.flatnonzero(np.take_along_axis(positive, order, 1))
        runs, first_positive = np.unique(np.cumsum(starts)[positives] - 1, return_index=True)
        run_first = run_starts[runs]
        run_column = run_first // length
        return cls(flat_rows, np.arange(columns + 1) * length, run_first, np.r_[run_starts[1:], starts.size][runs],
                   run_column * length, np.searchsorted(run_column, np.arange(columns + 1)), flat_rows[positives],
                   np.r_[first_positive, positives.size])

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """Each column's `roc_auc` in the resample that drew example i `weights[i]` times (NaN without both classes).
        Its copies of a run of ties share the run's midrank: twice a column's rank sum is the sum over runs of the
        positives drawn times (2 × entries drawn before the run + entries drawn in it + 1), an integer; so the
        numerator is exact, as `roc_auc`'s half-integer sums are, and the one rounding is the same final division."""
        drawn_before = np.zeros(len(self.rows) + 1, dtype=np.int64)
        np.cumsum(weights[self.rows], out=drawn_before[1:])  # [i]: entries drawn before sorted entry i
        positives = _group_sums(weights[self.positive_rows], self.positive_edges)  # drawn in each run
        before = drawn_before[self.run_first] - drawn_before[self.run_column_first]
        in_run = drawn_before[self.run_end] - drawn_before[self.run_first]
        twice_rank_sum = _group_sums(positives * (2 * before + in_run + 1), self.column_runs)
        pos = _group_sums(positives, self.column_runs)
        neg = np.diff(drawn_before[self.column_edges]) - pos
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = (twice_rank_sum - pos * (pos + 1)).astype(np.float64) / 2 / (pos * neg).astype(np.float64)
        return np.where((pos > 0) & (neg > 0), auc, np.nan)


def _group_sums(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Sums of `values` between consecutive `edges` (0 where two are equal, as `np.add.reduceat` does not give)."""
    through = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=through[1:])
    return through[edges[1:]] - through[edges[:-1]]
