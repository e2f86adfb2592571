"""What the network predicts for each training example, epoch by epoch.

The predictions are the ones the training pass computes anyway (for ELR+, the second network's
EMA output on the first network's un-mixed batches, their targets' source), so tracking costs no extra
forward pass. With the clean labels
known, they give the paper's Figure 1: how many wrongly labelled examples are predicted as their
true class, as their wrong (memorized) label, or as neither.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PredictionTracker", "memorization_fractions"]


class PredictionTracker:
    """Keeps the latest softmax output for every training index, on the training device.

    Stored in float16 beside the model, so recording a batch never makes the host wait for the GPU
    and a large data set's table costs half the memory; it is read back once an epoch.
    """

    def __init__(self, num_examples: int, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.probs = torch.full((num_examples, num_classes), float("nan"), dtype=torch.float16, device=device)
        # which examples this epoch predicted: class-balanced batches draw with replacement and skip some
        self.seen = torch.zeros(num_examples, dtype=torch.bool, device=device)

    def new_epoch(self) -> None:
        self.seen.zero_()

    def record(self, index: torch.Tensor, logits: torch.Tensor) -> None:
        index = index.to(self.probs.device, non_blocking=True)  # the engine's are there already; a host one, no wait
        self.probs[index] = torch.softmax(logits.detach().float(), dim=1).to(self.probs)
        # index_fill_, not `seen[index] = True`: that copies a host scalar to the GPU, a wait every step
        self.seen.index_fill_(0, index, True)

    def seen_this_epoch(self) -> np.ndarray:
        return self.seen.cpu().numpy()

    def load(self, probs: torch.Tensor) -> None:
        self.probs.copy_(probs)

    def predictions(self) -> np.ndarray:
        """argmax per example; −1 for an example not seen yet."""
        probs = self.probs.float().cpu()
        pred = probs.nan_to_num(0.0).argmax(dim=1)
        pred[torch.isnan(probs[:, 0])] = -1
        return pred.numpy()


def memorization_fractions(pred: np.ndarray, given: np.ndarray, clean: np.ndarray,
                           seen: np.ndarray | None = None) -> dict[str, float]:
    """Fractions of Figure 1, over the wrongly and the correctly labelled examples separately; with
    `seen`, over the examples predicted this epoch only (an undrawn one's prediction is an older epoch's).
    A group without examples (no wrong labels: a clean-label run) has NaN fractions, not 0 and 1."""
    wrong = given != clean
    counted = np.ones_like(wrong) if seen is None else seen
    out: dict[str, float] = {}
    for group, mask in (("noisy", wrong & counted), ("clean", ~wrong & counted)):
        n = int(mask.sum()) or float("nan")
        is_true = pred[mask] == clean[mask]
        is_given = pred[mask] == given[mask]  # never both for a wrong label; for a right one, the same as is_true
        out[f"{group}_pred_true"] = float(is_true.sum() / n)
        if group == "noisy":
            out["noisy_pred_given"] = float(is_given.sum() / n)
        # counted, not 1 minus the others: the difference came out as -1.1e-16
        out[f"{group}_pred_other"] = float((~is_true & ~is_given).sum() / n)
    return out
