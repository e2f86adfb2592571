"""How well the networks score a split while a run trains: the validation split each epoch picks the kept
checkpoint by, and the test sets metrics.csv logs beside it. Apart from the epoch loop because the ranks of a
torchrun job each score a share of a split and join their predictions here, before any figure is computed.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np
import torch

from elr_mri.data.images import NoisyImageData
from elr_mri.distributed import gather_objects
from elr_mri.engine.diagnostics import top_class_share
from elr_mri.engine.feeding import BatchFeeder
from elr_mri.engine.methods import Method
from elr_mri.evaluation.point_metrics import TOP5_MIN_CLASSES, balanced_accuracy

__all__ = ["SplitScore", "evaluate_split", "SplitPredictions", "predict_split", "scores_on_test_sets"]


class SplitScore(NamedTuple):
    """One split's accuracy and balanced accuracy, the share of its most predicted class, the share
    of its most common label, top-5 accuracy (the label among the five most probable classes), and which class
    is predicted most (-1 without examples), for a collapse warning to name."""

    accuracy: float
    balanced_accuracy: float
    top_class_share: float
    label_top_share: float
    top5: float
    top_class: int


def evaluate_split(method: Method, batches: Iterable[dict[str, torch.Tensor]] | None) -> SplitScore:
    """Top-1 accuracy of `method` over `batches`, its mean over the classes present (balanced accuracy:
    a network that calls everybody MCI is not rewarded for MCI being common), and the top-class shares a
    collapse check compares. Under torchrun `batches` is this rank's share of the split (`BatchFeeder.evaluation`):
    the ranks' predictions are joined in rank order, the split's, and every rank gets the whole split's scores."""
    outputs = _joined(predict_split(method, batches))
    if outputs is None:
        return SplitScore(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), -1)
    pred, label, top5 = (part.numpy() for part in (outputs.predicted, outputs.labels, outputs.in_top5))
    return SplitScore(float((pred == label).mean()), balanced_accuracy(label, pred, outputs.num_classes),
                      top_class_share(pred), top_class_share(label), float(top5.mean()),
                      int(np.bincount(pred).argmax()))


class SplitPredictions(NamedTuple):
    """A split's predicted classes, labels and whether each label is among the top five, where the model ran."""

    predicted: torch.Tensor
    labels: torch.Tensor
    in_top5: torch.Tensor
    num_classes: int


@torch.no_grad()
def predict_split(method: Method, batches: Iterable[dict[str, torch.Tensor]] | None) -> SplitPredictions | None:
    """What `evaluate_split` scores, left on the device (None without batches): a read-back per batch would make
    the host wait for each batch before queueing the next one's kernels, leaving a GPU idle in between."""
    predicted, labels, in_top5, num_classes = [], [], [], 0
    for batch in batches or ():
        probs = method.predict_proba(batch)
        label = batch["label"].to(probs.device, non_blocking=True)
        predicted.append(probs.argmax(dim=1))
        labels.append(label)
        top = probs.topk(min(5, probs.shape[1]), dim=1).indices
        in_top5.append((top == label[:, None]).any(dim=1))
        num_classes = probs.shape[1]
    if not predicted:
        return None
    return SplitPredictions(torch.cat(predicted), torch.cat(labels), torch.cat(in_top5), num_classes)


def _joined(share: SplitPredictions | None) -> SplitPredictions | None:
    """Every rank's predictions of its share of a split, on the host and concatenated in rank order (one exchange a
    split; a rank with an empty share gives None); alone, this process's."""
    on_host = None if share is None else share._replace(predicted=share.predicted.cpu(), labels=share.labels.cpu(),
                                                         in_top5=share.in_top5.cpu())
    parts = [part for part in gather_objects(on_host) if part is not None]
    if len(parts) < 2:
        return parts[0] if parts else None
    return SplitPredictions(torch.cat([part.predicted for part in parts]), torch.cat([part.labels for part in parts]),
                            torch.cat([part.in_top5 for part in parts]), parts[0].num_classes)


def scores_on_test_sets(method: Method, feeder: BatchFeeder, data: NoisyImageData) -> dict[str, float]:
    """metrics.csv's test columns: test_acc, and test_<set>_acc for each further test set; with more than
    five classes also their top-5 accuracy (_top5), which the WebVision table reports."""
    scores = {}
    for name in ["test", *data.extra_tests]:
        score = evaluate_split(method, feeder.evaluation(name))
        column = "test" if name == "test" else f"test_{name}"
        scores[f"{column}_acc"] = score.accuracy
        if data.num_classes > TOP5_MIN_CLASSES:
            scores[f"{column}_top5"] = score.top5
    return scores
