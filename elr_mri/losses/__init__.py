"""Losses behind one interface: ``loss_fn(logits, labels, index, global_batch_size=None)``; the loss owns its
per-example state (``global_batch_size``: see `ELRLoss.combine`)."""

from __future__ import annotations

import torch
from torch import nn

from elr_mri.config import LossConfig
from elr_mri.losses.baselines import CrossEntropy, GCELoss, SCELoss
from elr_mri.losses.elr import ELRLoss, one_hot_rows, sigmoid_rampup
from elr_mri.losses.elr_plus import ELRPlusLoss

__all__ = [
    "CrossEntropy", "GCELoss", "SCELoss", "ELRLoss", "ELRPlusLoss", "one_hot_rows", "sigmoid_rampup", "build_loss",
    "targets_dtype",
]


def build_loss(cfg: LossConfig, num_examples: int, num_classes: int) -> nn.Module:
    """The single-network loss named in the config (ELR+ builds its pair in the engine)."""
    if cfg.name == "ce":
        return CrossEntropy()
    if cfg.name == "gce":
        return GCELoss(q=cfg.gce_q)
    if cfg.name == "sce":
        return SCELoss(num_classes, alpha=cfg.sce_alpha, beta=cfg.sce_beta)
    if cfg.name == "elr":
        return ELRLoss(num_examples, num_classes, lam=cfg.lam, beta=cfg.beta, targets_dtype=targets_dtype(cfg),
                       lam_ramp_steps=cfg.lam_ramp_steps, lam_start_steps=cfg.lam_start_steps)
    raise ValueError(f"loss {cfg.name!r} is not a single-network loss")


def targets_dtype(cfg: LossConfig) -> torch.dtype:
    """Storage type of the ELR target table (`loss.targets_dtype`)."""
    return getattr(torch, cfg.targets_dtype)
