"""The two linear baselines, their regularisation chosen on the run's validation split.

Both standardise features and weight classes inversely to their frequency (CN / MCI / AD are
unbalanced, and balanced accuracy is a headline metric). The SVM has no probabilities: its one-vs-rest
decision values are scaled and softmaxed (temperature scaling, Guo et al. 2017), the scale fitted to the
margins of training participants held out of the SVM that scored them. One number, so the argmax stays the
SVM's prediction, and its ECE and Brier score speak of calibration, not of the margins' size (set by C). Platt's
per-class sigmoids (scikit-learn's CalibratedClassifierCV) were tried and not kept: three slopes and intercepts
from 34 training participants changed 3 of the 9 test predictions of the demo's SVM.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from elr_mri.evaluation.point_metrics import balanced_accuracy

__all__ = ["Baseline", "BASELINES", "C_GRID", "ScaledSVM", "fit_baseline", "class_scores", "validation_chooses_c"]

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)  # inverse regularisation strengths tried on the validation split
SCALE_FOLDS = 5  # participant-grouped folds of the training split whose held-out margins fit the SVM's scale
# the scale's range: above 0, where every scan would tie and lose the SVM's prediction; bounded above, as held-out
# margins that no error crosses push it up without end
SCALE_RANGE = (1e-3, 1e4)


@dataclass(frozen=True)
class Baseline:
    """A named linear model and the features it reads ("volumes" or "voxels")."""

    name: str
    features: str
    description: str

    def estimator(self, c: float) -> Pipeline:
        if self.features == "volumes":
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        else:
            # seeded: its dual solver visits the scans in a random order, and unseeded a rerun moved the scores
            model = LinearSVC(C=c, class_weight="balanced", max_iter=20000, random_state=0)
        return make_pipeline(StandardScaler(), model)


BASELINES = (
    Baseline("volumes_logreg", "volumes", "logistic regression on brain-normalised regional volumes + age + sex"),
    Baseline("voxels_linear_svm", "voxels", "linear SVM on template-space voxels averaged over 3×3×3 blocks"),
)


def validation_chooses_c(y_val: np.ndarray | None) -> TypeGuard[np.ndarray]:
    """Whether validation labels can choose C: balanced accuracy over one diagnosis ranks no C above another."""
    return y_val is not None and len(np.unique(y_val)) >= 2


@dataclass(frozen=True)
class ScaledSVM:
    """A fitted SVM whose probabilities are the softmax of its margins times `scale`, fitted on `held_out` training
    scans (0: no fold could score them, and the scale stays 1, the raw softmax, uncalibrated)."""

    svm: Pipeline
    scale: float
    held_out: int

    @property
    def classes_(self) -> np.ndarray:
        return self.svm.classes_

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.scale * margins(self.svm, x), axis=1)


def fit_baseline(baseline: Baseline, x_train: np.ndarray, y_train: np.ndarray, participants: np.ndarray,
                 x_val: np.ndarray | None, y_val: np.ndarray | None,
                 num_classes: int) -> tuple[Pipeline | ScaledSVM, float, dict[str, float]]:
    """(fitted model, chosen C, validation balanced accuracy of each C tried): the C of C_GRID with the best (ties:
    the stronger regularisation), refitted on the training rows; C=1, none tried, without a usable validation split.
    The scores go to summary.json, so that a reader sees a C at the grid's edge, or one picked among equal scores
    (every C alike: nothing was tuned), for what it is. The SVM comes with the scale of its probabilities, fitted
    on the training rows of `participants` held out together."""
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"{baseline.name}: the training split has one class only; a classifier needs two or more")
    chosen, scores = 1.0, {}
    if x_val is not None and validation_chooses_c(y_val):
        scores = {c: balanced_accuracy(y_val, baseline.estimator(c).fit(x_train, y_train).predict(x_val), num_classes)
                  for c in C_GRID}
        chosen = max(C_GRID, key=lambda c: (scores[c], -c))
    model = baseline.estimator(chosen).fit(x_train, y_train)
    if baseline.features == "voxels":
        model = ScaledSVM(model, *_held_out_scale(baseline.estimator(chosen), x_train, y_train, participants))
    return model, chosen, {str(c): score for c, score in scores.items()}


def margins(svm: Pipeline, x: np.ndarray) -> np.ndarray:
    """(scans, classes seen) decision values; two classes' one signed margin as ±half of it, so that their softmax
    is the sigmoid of the margin."""
    decision = svm.decision_function(x)
    return np.column_stack([-decision, decision]) / 2 if decision.ndim == 1 else decision


def _held_out_scale(svm: Pipeline, x: np.ndarray, y: np.ndarray, participants: np.ndarray) -> tuple[float, int]:
    """(scale, scans it was fitted on): the scale whose softmax of margins best predicts (least log-loss) the labels
    of training participants held out of the fit that scored them, as CalibratedClassifierCV(ensemble=False) fits
    its calibration: so the scale is that of margins on unseen scans, not of the training scans the SVM fitted."""
    decision, truth = _held_out_margins(svm, x, y, participants)
    if not len(truth):
        return 1.0, 0

    def log_loss(log_scale: float) -> float:
        scaled = np.exp(log_scale) * decision
        return float((logsumexp(scaled, axis=1) - scaled[np.arange(len(truth)), truth]).mean())

    best = minimize_scalar(log_loss, bounds=np.log(SCALE_RANGE), method="bounded")  # convex in the scale: one minimum
    return float(np.exp(best.x)), len(truth)


def _held_out_margins(svm: Pipeline, x: np.ndarray, y: np.ndarray, participants: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(margins, column of the label) of each training scan scored by `svm` fitted without its participant's scans,
    in folds grouped by participant, so no person sits on both sides (a converter's visits included). A fold whose
    fitted rows lack a class is left out: its margins have a column fewer."""
    classes = np.unique(y)
    held, truth = [np.empty((0, len(classes)))], [np.empty(0, dtype=int)]
    n_folds = min(SCALE_FOLDS, len(np.unique(participants)), np.bincount(y).max())  # what the splitter can split
    folds = StratifiedGroupKFold(n_folds).split(x, y, participants) if n_folds > 1 else ()
    with warnings.catch_warnings():  # a class of fewer participants than folds: it is left out of some, said above
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        for fitted, scored in folds:
            if len(np.unique(y[fitted])) == len(classes):
                held.append(margins(svm.fit(x[fitted], y[fitted]), x[scored]))
                truth.append(np.searchsorted(classes, y[scored]))
    return np.concatenate(held), np.concatenate(truth)


def class_scores(model: Pipeline | ScaledSVM, x: np.ndarray, num_classes: int) -> np.ndarray:
    """(scans, num_classes) probabilities: the logistic regression's, or the SVM's scaled softmax of margins; a class
    the training split lacked gets 0."""
    seen = model.predict_proba(x)
    scores = np.zeros((len(x), num_classes))
    scores[:, model.classes_] = seen
    return scores

