"""Classification metrics with 95% intervals from a bootstrap over participants, not scans.

Scans of one participant are strongly correlated: resampling scans as if they were independent
makes intervals too narrow, more so the more follow-up visits a cohort has. The bootstrap here
draws participants with replacement and takes all their scans, so a participant with ten scans
counts as one draw (cluster bootstrap).

Metrics (as the ML4H paper reports them): accuracy, balanced accuracy, micro and
macro one-vs-rest AUC on probabilities, per-class AUC, and the confusion matrix (counts, and per
true class the share of each prediction, with intervals); and, since label noise and ELR's targets change how far
a probability can be taken at its word, two of calibration: the expected calibration error and the Brier score.
`evaluate_predictions` gives them at scan level and at participant level (each participant's mean probability per
given diagnosis).
Pure NumPy and SciPy; AUCs use the rank formula, ties counted half, which equals scikit-learn's.

Public names: `Interval`, `rarely_defined_note`, `too_few_to_resample`, `MetricsReport`, `bootstrap_metrics`,
`refuse_resamples_past_memory`, `participant_means`, `evaluate_predictions`, `RARELY_DEFINED`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from elr_mri.evaluation import N_BOOT
from elr_mri.evaluation.calibration import reliability_bins
from elr_mri.evaluation.point_metrics import confusion_counts, metric_names, point_metrics
from elr_mri.evaluation.prediction_checks import checked_predictions
from elr_mri.evaluation.resampling import Resampling, participant_resamples

__all__ = [
    "Interval",
    "RARELY_DEFINED",
    "rarely_defined_note",
    "too_few_to_resample",
    "MetricsReport",
    "bootstrap_metrics",
    "refuse_resamples_past_memory",
    "participant_means",
    "evaluate_predictions",
]

CONFIDENCE = 0.95
RARELY_DEFINED = 0.95  # an interval resting on fewer than this share of the resamples is named as such
# the unit of every figure printed from an `Interval` (×100): the Brier score, from 0 to 2, is no percentage
PRINTED_UNITS = "% (brier ×100, from 0 to 200)"
# the unit of a difference of two such figures (the paired differences of `evaluate --compare-with`)
PRINTED_DIFFERENCE_UNITS = "percentage points (brier ×100, from -200 to 200)"
KEPT_RESAMPLES_BYTES = 2**30  # the most the resamples' values may take: computing the percentiles about doubles it


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap percentile interval (NaN when undefined, e.g. AUC of one class),
    with the number of resamples the metric was defined in (None: not counted). An AUC or the balanced
    accuracy is undefined in a resample that drew no participant of a class; the interval then comes from
    the others alone. With fewer than two participants there is no resample, and no interval."""

    estimate: float
    low: float
    high: float
    resamples: int | None = None

    def __str__(self) -> str:
        return f"{100 * self.estimate:.1f} [{100 * self.low:.1f}, {100 * self.high:.1f}]"

    def rarely_defined(self, n_boot: int) -> bool:
        """A defined estimate whose interval rests on fewer than 95% of the `n_boot` resamples: printed like any
        other, it would hide that most of its resamples lacked a class (on a holdout of four, 39% had them all)."""
        return (self.estimate == self.estimate and self.resamples is not None  # not NaN
                and self.resamples < RARELY_DEFINED * n_boot)


def rarely_defined_note(which: Sequence[str], n_boot: int, unit: str = "participant") -> str:
    """The words for `which` (each naming an interval and its count of resamples) that are `rarely_defined`:
    one sentence, the same for `elr-mri evaluate` and the demo's report; `unit`: what the resamples drew
    (`MetricsReport.unit`)."""
    return (f"defined in fewer than {100 * RARELY_DEFINED:.0f}% of the {n_boot} resamples: {', '.join(which)} (the "
            f"others drew no {unit} of a class); those intervals come from the rest alone: more {unit}s "
            "of each class make them trustworthy")


def too_few_to_resample(count: int, unit: str = "participant") -> str:
    """Why a set of `count` `unit`s (fewer than two) has no intervals: the same words for `elr-mri evaluate` and the
    demo's report, where `rarely_defined_note` had called it a set whose resamples "drew no participant of a class"."""
    return f"resampling {unit}s needs at least two, and this set has {count}"


@dataclass
class MetricsReport:
    """All metrics of one evaluation level ("scan" or "participant"; "image" for image data sets)."""

    level: str
    class_names: list[str]
    n_examples: int
    n_participants: int
    n_boot: int
    metrics: dict[str, Interval]  # accuracy, balanced_accuracy, auc_micro, auc_macro, ece, brier, auc_<class>
    confusion: np.ndarray  # counts, rows = given class, columns = predicted class
    # estimate / low / high (rows sum to 1), and resamples: those that drew the given class, where its rates exist
    confusion_rate: dict[str, np.ndarray] = field(default_factory=dict)
    reliability: dict[str, np.ndarray] = field(default_factory=dict)  # `reliability_bins` of the whole set
    confidence: float = CONFIDENCE  # the intervals' level, which the outputs state beside them

    @property
    def unit(self) -> str:
        """What the bootstrap drew: an image of an image data set is its own subject, where scans are drawn by
        participant; an image run's words and tables must not call its images participants."""
        return "image" if self.level == "image" else "participant"

    @property
    def balanced_accuracy_classes(self) -> list[str]:
        """The classes the set has examples of, which its balanced accuracy averages recall over (as scikit-learn):
        on a set lacking a class its chance level is 1/len(these), not 1/len(class_names)."""
        return [name for name, count in zip(self.class_names, self.confusion.sum(1)) if count]

    def rows(self) -> list[dict[str, object]]:
        """One dict a metric (level, metric, estimate, low, high, resamples, n and, for scans, participants), ready
        for a CSV or a table: an image level has no participants, and its n already counts what was resampled."""
        people = {} if self.unit == "image" else {"participants": self.n_participants}
        return [
            {"level": self.level, "metric": name, "estimate": v.estimate, "low": v.low, "high": v.high,
             "resamples": v.resamples, "n": self.n_examples, **people}
            for name, v in self.metrics.items()
        ]

    def confusion_rows(self) -> list[dict[str, object]]:
        """One dict a (given, predicted) pair: count, and the share of the given class predicted so
        with its interval (a row of the confusion matrix sums to 1) and the resamples it comes from."""
        rate = self.confusion_rate
        return [
            {"level": self.level, "given": given, "predicted": predicted, "count": int(self.confusion[i, j]),
             "rate": rate["estimate"][i, j], "low": rate["low"][i, j], "high": rate["high"][i, j],
             "resamples": int(rate["resamples"][i, j])}
            for i, given in enumerate(self.class_names) for j, predicted in enumerate(self.class_names)
        ]

    def reliability_rows(self) -> list[dict[str, object]]:
        """One dict a confidence bin (level, low, high, count, confidence, accuracy; the last two NaN where empty):
        the reliability diagram's figures, for a reader who would draw or test them otherwise."""
        bins = self.reliability
        return [{"level": self.level, "low": low, "high": high, "count": int(count), "confidence": confidence,
                 "accuracy": accuracy}
                for low, high, count, confidence, accuracy in zip(bins["edges"][:-1], bins["edges"][1:],
                                                                  bins["count"], bins["confidence"], bins["accuracy"])]


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
