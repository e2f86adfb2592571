"""What an evaluation gives, and the words for it: `Interval` (an estimate, its bootstrap interval and the resamples
it rests on) and `MetricsReport` (a level's intervals, confusion matrix and reliability bins, as the tables and the
summary lay them out), with the notes that `elr-mri evaluate` and the demo's report print beside them. Apart from
how the figures are computed, so that the report, the comparison table and the CLI read them without the bootstrap.

Public names: `Interval`, `MetricsReport`, `RARELY_DEFINED`, `rarely_defined_note`, `too_few_to_resample`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["Interval", "MetricsReport", "RARELY_DEFINED", "rarely_defined_note", "too_few_to_resample"]

CONFIDENCE = 0.95
RARELY_DEFINED = 0.95  # an interval resting on fewer than this share of the resamples is named as such
# the unit of every figure printed from an `Interval` (×100): the Brier score, from 0 to 2, is no percentage
PRINTED_UNITS = "% (brier ×100, from 0 to 200)"
# the unit of a difference of two such figures (the paired differences of `evaluate --compare-with`)
PRINTED_DIFFERENCE_UNITS = "percentage points (brier ×100, from -200 to 200)"


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
