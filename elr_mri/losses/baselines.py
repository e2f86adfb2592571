"""Baseline losses for the comparison tables, with the same call signature as ELR.

Every loss is called as ``loss_fn(logits, labels, index, global_batch_size)``; the baselines ignore the last two,
which ELR's per-example table needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from elr_mri.losses.elr import at_least_fp32, check_batch_shapes, check_class_count, check_class_labels, one_hot_rows

__all__ = ["CrossEntropy", "GCELoss", "SCELoss"]


class CrossEntropy(nn.Module):
    """Plain cross-entropy: the reference that memorizes noisy labels."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None,
                global_batch_size: int | None = None) -> torch.Tensor:
        return F.cross_entropy(at_least_fp32(logits), labels)


class GCELoss(nn.Module):
    """Generalized cross-entropy (Zhang & Sabuncu 2018): (1 − p_y^q)/q, between CE (q→0) and MAE (q=1)."""

    def __init__(self, q: float = 0.7) -> None:
        super().__init__()
        if not 0.0 < q <= 1.0:
            raise ValueError(f"GCE q must be in (0, 1], got {q}")
        self.q = q

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None,
                global_batch_size: int | None = None) -> torch.Tensor:
        check_class_labels("GCELoss", logits, labels)
        check_batch_shapes("GCELoss", logits, labels)
        p_y = F.softmax(at_least_fp32(logits), dim=1).gather(1, labels[:, None]).squeeze(1)
        return ((1.0 - p_y.clamp_min(1e-7) ** self.q) / self.q).mean()


class SCELoss(nn.Module):
    """Symmetric cross-entropy (Wang et al. 2019): α·CE + β·RCE, with log 0 taken as log 1e-4 in RCE."""

    def __init__(self, num_classes: int, alpha: float = 0.1, beta: float = 1.0) -> None:
        super().__init__()
        # a negative weight rewards mass on the wrong classes, a NaN one makes every loss NaN: both trained silently
        if num_classes <= 1 or not all(math.isfinite(w) and w >= 0 for w in (alpha, beta)):
            raise ValueError(f"SCELoss needs num_classes > 1 and finite weights alpha, beta >= 0, got "
                             f"num_classes={num_classes}, alpha={alpha}, beta={beta}")
        self.num_classes = num_classes
        self.alpha = alpha
        self.beta = beta

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None,
                global_batch_size: int | None = None) -> torch.Tensor:
        check_class_labels("SCELoss", logits, labels)
        check_batch_shapes("SCELoss", logits, labels)
        check_class_count("SCELoss", logits, self.num_classes)
        logits = at_least_fp32(logits)
        probs = F.softmax(logits, dim=1).clamp(1e-7, 1.0)
        one_hot = one_hot_rows(labels, self.num_classes, logits.dtype).clamp(1e-4, 1.0)
        rce = -(probs * one_hot.log()).sum(dim=1).mean()
        return self.alpha * F.cross_entropy(logits, labels) + self.beta * rce
