"""Scores against the true diagnosis, for simulated cohorts where it is known (`truth.csv`).

`elr-mri evaluate` scores against the manifest's given diagnosis, which on a noisy cohort is partly
wrong: a method that resists label noise can look no better than one that memorised it. Here the
same saved predictions (`predictions.csv`) are rescored against the truth, and two methods are
compared on the same participants with a paired bootstrap, whose interval is much narrower than the
overlap of two separate intervals suggests.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from elr_mri.data.cohort import diagnoses_left_out, warn_once
from elr_mri.evaluation import N_BOOT
from elr_mri.evaluation.metrics import bootstrap_metrics, participant_means
from elr_mri.evaluation.metrics_report import Interval, MetricsReport
from elr_mri.evaluation.prediction_checks import non_finite_rows, non_probability_rows, row_words
from elr_mri.evaluation.resampling import Resampling, participant_resamples

__all__ = ["predictions_with_truth", "rescore_against_truth", "mean_paired_difference", "participants_predicted_alike",
           "PAIRED_METRICS"]

log = logging.getLogger(__name__)


def predictions_with_truth(predictions: Path, truth: pd.DataFrame) -> pd.DataFrame:
    """`predictions.csv` with each scan's `true_diagnosis` joined on (participant_id, session_id)."""
    frame = pd.read_csv(predictions, dtype={"participant_id": str, "session_id": str})
    keys = ["participant_id", "session_id"]
    known = truth.astype({key: str for key in keys})[keys + ["true_diagnosis"]].drop_duplicates()
    conflicting = known[known.duplicated(keys, keep=False)]
    if not conflicting.empty:  # e.g. two simulated cohorts' truth.csv: each names its first subject sub-ADNISIM0001
        first = conflicting.iloc[0]
        given = conflicting.loc[(conflicting[keys] == first[keys]).all(axis=1), "true_diagnosis"]
        raise ValueError(f"the truth tables give {first.participant_id} {first.session_id} more than one true "
                         f"diagnosis ({', '.join(sorted(given))}); pass only the truth.csv of the cohort(s) these "
                         "predictions come from")
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
    labels, proba, participants = _arrays(frame, classes, predictions)
    return bootstrap_metrics(*participant_means(labels, proba, participants), classes, n_boot, seed=seed,
                             level="participant")


PAIRED_METRICS = ("accuracy", "balanced_accuracy", "auc_macro", "auc_micro", "ece", "brier")


def mean_paired_difference(pairs: Sequence[tuple[Path, Path]], truth: pd.DataFrame, n_boot: int = N_BOOT,
                           seed: int = 0, metric: str = "accuracy") -> Interval:
    """B − A of one metric against the truth, averaged over several (A, B) pairs (e.g. one pair per
    training seed), with a 95% interval from resampling the participants all pairs share: each resample
    scores every run on the same participants.

    `metric` is one of PAIRED_METRICS. `balanced_accuracy` (mean recall over the true classes) shows a
    method that trades majority-class hits for minority-class ones, which accuracy hides; `auc_macro`
    (one-vs-rest, from the probabilities) does not depend on where the decision falls, so a method that
    only shifts its predictions between classes gains nothing on it; `ece` and `brier` (lower is better, so a
    negative difference favours B) say whether B's probabilities are nearer the frequencies they state.

    The interval covers the choice of participants; with few seeds it says little about how much a
    further seed could move the mean, so report the per-pair differences beside it.
    """
    if metric not in PAIRED_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(PAIRED_METRICS)}")
    classes = _classes(pd.read_csv(pairs[0][0], nrows=0))  # every file's columns are read in this order
    scored = [(_participant_probabilities(a, truth, classes), _participant_probabilities(b, truth, classes))
              for a, b in pairs]
    shared = scored[0][0].index
    for a, b in scored:
        shared = shared.intersection(a.index).intersection(b.index)
    if shared.empty:
        raise ValueError(f"the runs {[str(path) for pair in pairs for path in pair]} share no participant")
    most = max(len(frame) for pair in scored for frame in pair)
    if len(shared) < most:  # runs on other splits or holdouts: the comparison covers only the common part
        log.warning("the paired comparison covers the %d participant entries every run has; a run has %d "
                    "(were they evaluated on the same split or holdout?)", len(shared), most)
    labels = shared.get_level_values("label").to_numpy()
    num_classes = scored[0][0].shape[1]
    # each run's scores sorted once: a resample of an image-sized set costs O(n) passes, not a sort per metric
    runs = [(Resampling(labels, a.loc[shared].to_numpy(), num_classes),
             Resampling(labels, b.loc[shared].to_numpy(), num_classes)) for a, b in scored]

    def difference(rows: np.ndarray) -> float:
        return float(np.mean([b.metrics(rows)[metric] - a.metrics(rows)[metric] for a, b in runs]))

    # resample participants (a converter's entries, one per true diagnosis, travel together), as bootstrap_metrics
    resamples = participant_resamples(shared.get_level_values("participant").to_numpy(), n_boot,
                                      np.random.default_rng(seed))
    draws = np.array([difference(rows) for rows in resamples])
    draws = draws[~np.isnan(draws)]  # an AUC or the balanced accuracy is undefined in a resample that lacks a class
    low, high = np.percentile(draws, [2.5, 97.5]) if draws.size else (np.nan, np.nan)
    return Interval(difference(np.arange(len(labels))), float(low), float(high), int(draws.size))


def participants_predicted_alike(a: Path, b: Path, truth: pd.DataFrame) -> int | None:
    """How many participants the predictions `a` and `b` share, where both give each of them the same diagnosis (None
    where they differ on one): their paired difference of accuracy or balanced accuracy is then 0 in every resample,
    whose interval of width 0 reads as a precise measurement rather than as two runs that decided alike."""
    classes = _classes(pd.read_csv(a, nrows=0))
    ours, theirs = (_participant_probabilities(path, truth, classes) for path in (a, b))
    shared = ours.index.intersection(theirs.index)
    if (ours.loc[shared].to_numpy().argmax(1) != theirs.loc[shared].to_numpy().argmax(1)).any():
        return None
    return shared.get_level_values("participant").nunique()


def _participant_probabilities(predictions: Path, truth: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Each participant's mean predicted probabilities (a column per class of `classes`, in that order),
    indexed by (participant, true class index in `classes`), so a converter keeps one entry per diagnosis.
    Runs trained with the classes in another order write their columns in it: they are matched by name."""
    frame = predictions_with_truth(predictions, truth)
    if sorted(_classes(frame)) != sorted(classes):
        raise ValueError(f"{predictions}: predicts the classes {', '.join(_classes(frame))}, the first run of the "
                         f"comparison {', '.join(classes)}; compare runs of the same classes")
    labels, proba, participants = _arrays(frame, classes, predictions)
    labels, proba, participants = participant_means(labels, proba, participants)
    index = pd.MultiIndex.from_arrays([participants, labels], names=["participant", "label"])
    return pd.DataFrame(proba, index=index).sort_index()


def _classes(frame: pd.DataFrame) -> list[str]:
    """Class names in the order of the probability columns `p_<class>` that `evaluate` writes."""
    return [column[2:] for column in frame.columns if column.startswith("p_")]


def _arrays(frame: pd.DataFrame, classes: Sequence[str], source: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True class indices, probabilities (columns p_<class>) and participant ids of each scan of `source` (a
    predictions.csv); diagnoses match the run's classes in any case, as the manifests' do."""
    index = {name.lower(): i for i, name in enumerate(classes)}
    truth = frame["true_diagnosis"].astype(str).str.strip().str.lower()
    left_out = truth.isin(diagnoses_left_out(classes))
    if left_out.any():  # MCI scans of a CN-vs-AD run: no class of the run is right for them
        warn_once(f"{source}: {int(left_out.sum())} scan(s) whose true diagnosis is not among the run's classes "
                  f"{', '.join(classes)} ({', '.join(sorted(set(frame['true_diagnosis'][left_out])))}) are left out "
                  "of the scores against the truth")
        frame, truth = frame[~left_out], truth[~left_out]
    unknown = set(frame["true_diagnosis"][~truth.isin(set(index))])
    if unknown:
        first = frame[frame["true_diagnosis"].isin(unknown)].iloc[0]
        raise ValueError(f"{source}: the truth gives true diagnoses {', '.join(sorted(map(str, unknown)))} (first: "
                         f"{first.participant_id} {first.session_id}), none of the run's classes "
                         f"{', '.join(classes)}; recode them to these, as `elr-mri import-cohort` does")
    labels = truth.map(index).to_numpy()
    proba = frame[[f"p_{name}" for name in classes]].to_numpy(float)
    broken = non_finite_rows(proba)
    if broken.size:  # a mean over a participant's scans would carry it on, and argmax score it as the first class
        first = frame.iloc[broken[0]]
        raise ValueError(f"{source}: {broken.size} scan(s) without a probability for every class (empty, NaN or inf; "
                         f"first: {first.participant_id} {first.session_id}); score the run again with "
                         "`elr-mri evaluate` to write a whole predictions.csv")
    odd = non_probability_rows(proba)
    if odd.size:  # logits or scores written by another tool: scored as probabilities, their AUCs and means are off
        first = frame.iloc[odd[0]]
        raise ValueError(f"{source}: {odd.size} scan(s) whose p_<class> columns are not probabilities (first: "
                         f"{first.participant_id} {first.session_id}, {row_words(proba[odd[0]])}); write each class's "
                         "probability there (a softmax of the logits), as `elr-mri evaluate` does")
    return labels, proba, frame["participant_id"].to_numpy(str)
