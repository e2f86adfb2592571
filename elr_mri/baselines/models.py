"""The two linear baselines, their regularisation chosen on the run's validation split.

Both standardise features and weight classes inversely to their frequency (CN / MCI / AD are
unbalanced, and balanced accuracy is a headline metric). The SVM has no probabilities; a softmax of
its one-vs-rest decision values stands in: its argmax is the SVM's prediction and its ranking is
what the AUCs need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from elr_mri.evaluation.metrics import balanced_accuracy

__all__ = ["Baseline", "BASELINES", "C_GRID", "fit_baseline", "class_scores", "validation_chooses_c"]

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)  # inverse regularisation strengths tried on the validation split


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


def validation_chooses_c(y_val: np.ndarray | None) -> bool:
    """Whether validation labels can choose C: balanced accuracy over one diagnosis ranks no C above another."""
    return y_val is not None and len(np.unique(y_val)) >= 2


def fit_baseline(baseline: Baseline, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None,
                 y_val: np.ndarray | None, num_classes: int) -> tuple[Pipeline, float, dict[str, float]]:
    """(fitted model, chosen C, validation balanced accuracy of each C tried): the C of C_GRID with the best (ties:
    the stronger regularisation), refitted on the training rows; C=1, none tried, without a usable validation split.
    The scores go to summary.json, so that a reader sees a C at the grid's edge, or one picked among equal scores
    (every C alike: nothing was tuned), for what it is."""
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"{baseline.name}: the training split has one class only; a classifier needs two or more")
    if x_val is None or not validation_chooses_c(y_val):
        return baseline.estimator(1.0).fit(x_train, y_train), 1.0, {}
    scores = {c: balanced_accuracy(y_val, class_scores(baseline.estimator(c).fit(x_train, y_train), x_val,
                                                       num_classes).argmax(1), num_classes) for c in C_GRID}
    chosen = max(C_GRID, key=lambda c: (scores[c], -c))
    return baseline.estimator(chosen).fit(x_train, y_train), chosen, {str(c): score for c, score in scores.items()}


def class_scores(model: Pipeline, x: np.ndarray, num_classes: int) -> np.ndarray:
    """(scans, num_classes) probabilities (LR) or softmaxed decision values (SVM); a class the
    training split lacked gets 0."""
    if hasattr(model, "predict_proba"):
        seen = model.predict_proba(x)
    else:
        decision = model.decision_function(x)
        if decision.ndim == 1:  # two classes: one signed margin
            decision = np.column_stack([-decision, decision]) / 2
        shifted = np.exp(decision - decision.max(axis=1, keepdims=True))
        seen = shifted / shifted.sum(axis=1, keepdims=True)
    scores = np.zeros((len(x), num_classes))
    scores[:, model.classes_] = seen
    return scores

