"""Learning rate as a pure function of the epoch, so a resumed run needs no scheduler state."""

from __future__ import annotations

import math

from elr_mri.config import RunConfig

__all__ = ["lr_at"]


def lr_at(epoch: int, cfg: RunConfig) -> float:
    """The paper's schedules: step decay at milestones, cosine, cosine with warm restarts (T_mult 1)."""
    base, s = cfg.optim.lr, cfg.schedule
    if s.name == "constant":
        return base
    if s.name == "multistep":
        return base * s.gamma ** sum(epoch >= m for m in s.milestones)
    if s.name == "cosine":
        progress = epoch / max(cfg.train.epochs, 1)
    else:  # cosine_warm_restarts
        progress = (epoch % s.t0) / s.t0
    return s.eta_min + (base - s.eta_min) * (1.0 + math.cos(math.pi * progress)) / 2.0
