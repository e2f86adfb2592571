"""Scores against the true diagnosis, for simulated cohorts where it is known (`truth.csv`).

`elr-mri evaluate` scores against the manifest's given diagnosis, which on a noisy cohort is partly
wrong: a method that resists label noise can look no better than one that memorised it. Here the
same saved predictions (`predictions.csv`) are rescored against the truth, and two methods are
compared on the same participants with a paired bootstrap, whose interval is much narrower than the
overlap of two separate intervals suggests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from elr_mri.evaluation.metrics import N_BOOT, Interval, MetricsReport, bootstrap_metrics, participant_means

__all__ = ["predictions_with_truth", "rescore_against_truth", "paired_accuracy_difference", "mean_paired_difference"]


def predictions_with_truth(predictions: Path, truth: pd.DataFrame) -> pd.DataFrame:
    """`predictions.csv` with each scan's `true_diagnosis` joined on (participant_id, session_id)."""
    frame = pd.read_csv(predictions, dtype={"participant_id": str, "session_id": str})
    keys = ["participant_id", "session_id"]
    known = truth.astype({key: str for key in keys})[keys + ["true_diagnosis"]].drop_duplicates(keys)
    joined = frame.merge(known, on=keys, how="left")
    missing = joined["true_diagnosis"].isna()
    if missing.any():
        first = joined.loc[missing, keys].iloc[0]
        raise ValueError(f"{predictions}: no true diagnosis for {first.participant_id} {first.session_id}; "
                         "pass the truth.csv of every cohort these predictions cover")
    return joined


def rescore_against_truth(predictions: Path, truth: pd.DataFrame, n_boot: int = N_BOOT,
                          seed: int = 0) -> MetricsReport:
    """Participant-level metrics of saved predictions against the true diagnosis, with intervals."""
    frame = predictions_with_truth(predictions, truth)
    classes = _classes(frame)
    labels, proba, participants = _arrays(frame, classes)
    return bootstrap_metrics(*participant_means(labels, proba, participants), classes, n_boot, seed=seed,
                             level="participant")


def paired_accuracy_difference(predictions_a: Path, predictions_b: Path, truth: pd.DataFrame,
                               n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    """B's participant-level accuracy against the truth minus A's, on the participants both scored,
    with a 95% interval from resampling participants (each resample scores both methods)."""
    return mean_paired_difference([(predictions_a, predictions_b)], truth, n_boot, seed)


def mean_paired_difference(pairs: Sequence[tuple[Path, Path]], truth: pd.DataFrame, n_boot: int = N_BOOT,
                           seed: int = 0, balanced: bool = False) -> Interval:
    """B − A accuracy against the truth averaged over several (A, B) pairs, e.g. one pair per training
    seed: each participant's B − A is averaged over the pairs first, then participants are resampled.
    `balanced` compares balanced accuracy instead (the mean over true classes of each class's recall),
    which a method that trades majority-class hits for minority-class ones changes and accuracy hides.

    The interval covers the choice of participants; with few seeds it says little about how much a
    further seed could move the mean, so report the per-pair differences beside it.
    """
    per_pair = []
    for path_a, path_b in pairs:
        a, b = _participant_correct(path_a, truth).align(_participant_correct(path_b, truth), join="inner")
        if a.empty:
            raise ValueError(f"{path_a} and {path_b} share no participant")
        per_pair.append(b - a)
    pooled = pd.concat(per_pair, axis=1, join="inner").mean(axis=1)
    if pooled.empty:
        raise ValueError("the pairs share no participant")
    difference = pooled.to_numpy()
    labels = pooled.index.get_level_values("label").to_numpy() if balanced else np.zeros(len(difference), int)
    rng = np.random.default_rng(seed)
    sample = rng.integers(0, len(difference), size=(n_boot, len(difference)))
    estimate = _class_balanced_mean(difference[None, :], labels[None, :])[0]
    draws = _class_balanced_mean(difference[sample], labels[sample])
    return Interval(float(estimate), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5)))


def _class_balanced_mean(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: the mean over the classes present of each class's mean value (one class: the plain mean)."""
    class_means = []
    for label in np.unique(labels):
        in_class = labels == label
        count = in_class.sum(axis=1)
        class_means.append(np.where(count > 0, (values * in_class).sum(axis=1) / np.maximum(count, 1), np.nan))
    return np.nanmean(np.stack(class_means), axis=0)


def _participant_correct(predictions: Path, truth: pd.DataFrame) -> pd.Series:
    """1.0 where a participant's mean prediction is the true diagnosis, else 0.0; indexed by
    (participant, true class index), so a converter keeps one entry per diagnosis."""
    frame = predictions_with_truth(predictions, truth)
    labels, proba, participants = _arrays(frame, _classes(frame))
    labels, proba, participants = participant_means(labels, proba, participants)
    index = pd.MultiIndex.from_arrays([participants, labels], names=["participant", "label"])
    return pd.Series(proba.argmax(1) == labels, index=index, dtype=float)


def _classes(frame: pd.DataFrame) -> list[str]:
    """Class names in the order of the probability columns `p_<class>` that `evaluate` writes."""
    return [column[2:] for column in frame.columns if column.startswith("p_")]


def _arrays(frame: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True class indices, probabilities (columns p_<class>) and participant ids of each scan."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = set(frame["true_diagnosis"]) - set(index)
    if unknown:
        raise ValueError(f"true diagnoses {sorted(unknown)} are not among the classes {list(classes)}")
    labels = frame["true_diagnosis"].map(index).to_numpy()
    proba = frame[[f"p_{name}" for name in classes]].to_numpy(float)
    return labels, proba, frame["participant_id"].to_numpy(str)
