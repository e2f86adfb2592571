"""ELR+ (paper §4): the ELR loss of one network in a co-trained pair, with mixup and ramps.

The targets of network k are the temporal ensemble of the *other* network's weight-averaged
(EMA) outputs on the un-mixed batch; the network itself sees a mixed batch, so its labels and
targets are mixed with the same coefficient. The training loop that owns the two networks is in
`elr_mri.engine.methods` (`ELRPlusPair`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elr_mri.losses.elr import (PROB_CLAMP, at_least_fp32, check_batch_shapes, check_elr_settings, check_index_shape,
                                check_table_batch, elr_regularizer, index_rows, non_integer_dtype, sigmoid_rampup,
                                update_targets)

__all__ = ["ELRPlusLoss"]


class ELRPlusLoss(nn.Module):
    """Loss of one ELR+ network (Liu et al. 2020, §4; the authors' `elr_plus_loss`)::

        t[i] ← β·t[i] + (1 − β)·softmax(other network's EMA logits)_i     (`update_targets`, no gradient)
        q = mix_lam·t[index] + (1 − mix_lam)·t[index][perm],  p = clamp(softmax(logits), 1e-4, 1 − 1e-4)
        loss = mean_i −⟨mixed_labels_i, log softmax(logits)_i⟩ + ramp(step)·λ·mean_i log(1 − ⟨q_i, p_i⟩)

    ``update_targets(index, other_ema_logits, global_batch_size)`` first folds the other network's EMA prediction
    on the un-mixed batch into the targets; ``forward(logits, mixed_labels, index, perm, mix_lam, step)`` then scores
    this network's logits on the mixed batch ``mix_lam·x + (1 − mix_lam)·x[perm]``. ramp is `sigmoid_rampup` over
    ``coef_step`` steps (0: λ in full from the first step, the CIFAR-10 setting). The defaults λ = 3, β = 0.7 are
    the paper's CIFAR-10 values (CIFAR-100: 7, 0.9, coef_step 40000). ``reweight_labels`` is the CIFAR-100
    setting that multiplies the labels by q.
    """

    targets: torch.Tensor  # the buffer registered in __init__ (nn.Module types attributes Tensor | Module)

    def __init__(
        self,
        num_examples: int,
        num_classes: int,
        lam: float = 3.0,
        beta: float = 0.7,
        coef_step: int = 0,
        reweight_labels: bool = False,
        targets_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        check_elr_settings("ELRPlusLoss", num_examples, num_classes, lam, beta, targets_dtype)
        if coef_step < 0:
            raise ValueError(f"ELRPlusLoss coef_step must be >= 0, got {coef_step}")
        self.num_classes = num_classes
        self.lam = lam
        self.beta = beta
        self.coef_step = coef_step
        self.reweight_labels = reweight_labels
        self.register_buffer("targets", torch.zeros(num_examples, num_classes, dtype=targets_dtype))

    @torch.no_grad()
    def update_targets(self, index: torch.Tensor, other_ema_logits: torch.Tensor,
                       global_batch_size: int | None = None) -> None:
        """Fold the other network's EMA prediction in (`elr.update_targets`: all ranks' rows under torchrun).
        ``index``: the batch's data set indices, shape (B,); ``other_ema_logits``: the other network's EMA logits on the
        un-mixed batch, shape (B, C)."""
        rows = index_rows(index)
        if other_ema_logits.dim() != 2 or tuple(other_ema_logits.shape) != (rows, self.num_classes):
            # one row of logits for several indices would broadcast into every one of their targets
            raise ValueError(f"ELRPlusLoss.update_targets: other_ema_logits must have one row of "
                             f"{self.num_classes} class logits per index, shape ({rows}, {self.num_classes}), "
                             f"got {tuple(other_ema_logits.shape)}")
        check_index_shape("ELRPlusLoss.update_targets", index, rows)
        check_table_batch("ELRPlusLoss.update_targets", other_ema_logits, self.targets, index)
        update_targets(self.targets, index, F.softmax(at_least_fp32(other_ema_logits), dim=1), self.beta,
                       global_batch_size)

    def forward(
        self,
        logits: torch.Tensor,
        mixed_labels: torch.Tensor,
        index: torch.Tensor,
        perm: torch.Tensor,
        mix_lam: float,
        step: int,
    ) -> torch.Tensor:
        """This network's loss on the mixed batch. ``logits`` and ``mixed_labels``: shape (B, C), on one device;
        ``index``: the data set indices of the un-mixed batch, shape (B,); ``perm``: each example's mixup partner, a
        permutation of the batch's positions, shape (B,); ``mix_lam``: the mixup weight (the pair draws max(l, 1 − l),
        in [0.5, 1]); ``step``: this network's training steps with this one (1 at its first), λ's ramp clock."""
        _require_label_tensor(logits, mixed_labels)
        check_batch_shapes("ELRPlusLoss", logits, mixed_labels, index)
        _check_mixed_batch(logits, mixed_labels, perm, self.num_classes)
        check_table_batch("ELRPlusLoss", logits, self.targets, index)
        logits = at_least_fp32(logits)
        batch_targets = self.targets[index].to(logits.dtype)
        mixed_targets = mix_lam * batch_targets + (1.0 - mix_lam) * batch_targets[perm]
        labels = mixed_labels
        if self.reweight_labels:
            labels = _reweighted(mixed_labels, mixed_targets)
        ce = -(labels * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        probs = F.softmax(logits, dim=1).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
        ramp = sigmoid_rampup(step, self.coef_step)
        return ce + ramp * self.lam * elr_regularizer(probs, mixed_targets)


def _require_label_tensor(logits: torch.Tensor, mixed_labels: Any) -> None:
    """The mixed labels as a torch tensor: a NumPy array or a list (which the indices may be) failed in the shape check
    with "AttributeError: ... has no attribute 'dim'", naming neither the loss nor the fix."""
    if not torch.is_tensor(mixed_labels):
        raise ValueError(f"ELRPlusLoss: mixed_labels must be a torch tensor (examples × classes, on the logits' "
                         f"device), got a {type(mixed_labels).__name__}; pass "
                         "torch.as_tensor(mixed_labels, dtype=logits.dtype, device=logits.device)")


def _check_mixed_batch(logits: torch.Tensor, mixed_labels: torch.Tensor, perm: torch.Tensor,
                       num_classes: int) -> None:
    """Shapes, dtypes and devices only (no host wait). The labels are mixed one-hot rows, one per example, as wide as
    the logits and on their device: class indices would broadcast against the log-probabilities, into a number (where
    the batch has as many examples as there are classes) that is not the loss. The pairing names one partner per
    example."""
    shape = (logits.shape[0], num_classes)
    if tuple(logits.shape) != shape or tuple(mixed_labels.shape) != shape:
        raise ValueError(f"ELRPlusLoss: logits and mixed_labels must both have shape {shape} (examples × classes; "
                         f"mixed_labels = mix_lam·one_hot + (1 − mix_lam)·one_hot[perm], not class indices), got "
                         f"{tuple(logits.shape)} and {tuple(mixed_labels.shape)}")
    if mixed_labels.device != logits.device:  # torch's own error named neither the loss nor which tensor
        raise ValueError(f"ELRPlusLoss: mixed_labels are on {mixed_labels.device} but the logits on {logits.device}; "
                         f"move them with the batch (mixed_labels.to(logits.device))")
    perm_shape = tuple(perm.shape) if torch.is_tensor(perm) else np.shape(perm)  # the official code's `...`: ()
    if perm_shape != (shape[0],):
        raise ValueError(f"ELRPlusLoss: perm must pair each of the {shape[0]} examples with one other (a "
                         f"permutation of the batch, shape ({shape[0]},); without mixup torch.arange of it and "
                         f"mix_lam 1), got shape {perm_shape}")
    dtype = non_integer_dtype(perm)  # a float perm ended in torch's IndexError; a bool one picked rows as a mask, and
    if dtype is not None:  # with one True broadcast that row into every example's mixed target without a word
        raise ValueError(f"ELRPlusLoss: perm must hold positions in the batch (an integer dtype, as torch.randperm "
                         f"gives), got {dtype}; pass perm.long()")


def _reweighted(labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Labels × targets, renormalised (CIFAR-100's setting). A row whose targets hold nothing at its
    labels (a row never updated, or a probability below float16's range, stored as 0) keeps its
    labels: the official code's 0/0 there is NaN, which reaches the weights."""
    weighted = labels * targets
    total = weighted.sum(dim=1, keepdim=True)
    return torch.where(total > 0, weighted / total.clamp_min(torch.finfo(total.dtype).tiny), labels)
