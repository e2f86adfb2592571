"""A run whose weights, BatchNorm statistics or ELR targets stopped being numbers: the epoch loop stops it before
they are written, and a resume that would train into the same epoch again says so before its data loads. Both say
what to run instead (`divergence_remedy`); the record a resume reads it from is `run_dir`'s.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable

import torch

from elr_mri.config import RunConfig
from elr_mri.distributed import mean_over_ranks
from elr_mri.engine.checkpoint import load_checkpoint
from elr_mri.engine.execution import ExecutionPlan, precision_note
from elr_mri.engine.methods import Method

__all__ = ["refuse_divergence", "divergence_remedy", "diverging_again_note"]


def refuse_divergence(method: Method, train_loss: float, epoch: int, cfg: RunConfig, out_dir: Path,
                      plan: ExecutionPlan, keep_best: Callable[[], int] = lambda: 0) -> None:
    """Stop a run whose weights, BatchNorm statistics or ELR targets are no longer numbers, before it writes them:
    training never brings them back. Looked at every epoch, whatever the loss: a BatchNorm running variance
    overflowed to inf while the loss stayed finite (digits' small_cnn at lr 50: written to last.pt from epoch 2, and
    the run finished so). A loss that is not finite alone is not divergence: the loss scaler skips a
    float16 step that overflowed (its forward pass may still have fed NaN into the statistics or the targets, and
    then fp16's range, ±65504, is as much the cause as the learning rate). The ranks of a torchrun job decide together
    (each has its own BatchNorm statistics). `keep_best` writes the selected epoch still held in memory and returns
    the epoch best.pt holds (0: none): a resume would diverge again, so those weights are the run's result."""
    tensors = [t for net in method.networks() for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for t in [*tensors, *method.target_tables()]])
    if bool(mean_over_ranks(finite.all().float()) == 1.0):
        return
    best_epoch = keep_best()
    kept = (f", and checkpoints/best.pt keeps epoch {best_epoch}, the epoch selected before it (elr-mri evaluate --run "
            f"{shlex.quote(str(out_dir))} scores it)" if best_epoch else "")
    raise ValueError(f"{out_dir}: training diverged in epoch {epoch + 1} (training loss {train_loss}; weights, "
                     f"statistics or targets no longer finite); nothing of that epoch was written{kept}. A plain "
                     f"--resume would diverge there again: {divergence_remedy(cfg, out_dir, plan)}")


def divergence_remedy(cfg: RunConfig, out_dir: Path, plan: ExecutionPlan) -> str:
    """What to run after a divergence, as commands: a plain resume trains the same way from the last checkpoint and
    diverges again (bit for bit on a CPU). The learning rate is a new run's to change; the precision, a resume's."""
    run = shlex.quote(str(out_dir))
    remedy = (f"start a new run with a lower optim.lr (now {cfg.optim.lr:g}), e.g. elr-mri train --config "
              f"{shlex.quote(str(out_dir / 'config.yaml'))} --set optim.lr={cfg.optim.lr / 10:g} --out NEW_RUN_DIR")
    end = _epochs_to_end_at(out_dir)
    if end:
        remedy += (f"; or end this run at epoch {end}, its last checkpoint (summary and mislabel table from there): "
                   f"elr-mri train --resume {run} --set train.epochs={end}")
    if not plan.loss_scaling:
        return remedy
    device = "GPU" if plan.device.type == "cuda" else "CPU"
    half = "fp32" if precision_note("bf16", plan.device) else "bf16"  # a note: bf16 is emulated there, slowly
    why = f"native on this {device}" if half == "bf16" else f"this {device} has no native bf16"
    return (f"{remedy}; or, as it ran in fp16 (whose forward pass overflows past 65504), go on in {half} ({why}): "
            f"elr-mri train --resume {run} --set train.precision={half}")


def _epochs_to_end_at(out_dir: Path) -> int:
    """The train.epochs that ends a diverged run at its last checkpoint: last.pt's epoch, where best.pt holds none
    later (a resume that ends before best.pt's epoch is refused: `resuming._refuse_best_beyond`); 0 where there is
    none."""
    last, best = (out_dir / "checkpoints" / f"{name}.pt" for name in ("last", "best"))
    if not last.exists():
        return 0
    epoch = load_checkpoint(last, mmap=True).get("epoch", 0)
    return epoch if not best.exists() or load_checkpoint(best, mmap=True).get("epoch", 0) <= epoch else 0


def diverging_again_note(out_dir: Path, cfg: RunConfig, device: torch.device,
                         diverged: tuple[int, str] | None) -> list[str]:
    """A resume of a diverged run trains as that run did up to the epoch it diverged in, and diverges there again
    (bit for bit on a CPU): said before the data, with what to run instead. One in another precision (the advice
    for fp16), or ending before that epoch (`--set train.epochs`), may go on without a word."""
    if diverged is None:
        return []
    plan = ExecutionPlan.from_config(cfg.train, device)
    if plan.precision != diverged[1] or cfg.train.epochs < diverged[0]:
        return []
    return [f"note: training diverged in epoch {diverged[0]} when {out_dir} last ran, and this resume trains it as it "
            f"did then (the same optim.lr, {plan.precision}), so it will diverge there again; to avoid that, "
            f"{divergence_remedy(cfg, out_dir, plan)}"]
