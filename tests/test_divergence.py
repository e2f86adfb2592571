"""What a diverged run is told to run instead (`divergence_remedy`), apart from the training it takes to diverge."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elr_mri.config import load_config
from elr_mri.engine.divergence import divergence_remedy, refuse_divergence
from elr_mri.engine.execution import ExecutionPlan, precision_note
from elr_mri.engine.methods import build_method

DIGITS = Path(__file__).parents[1] / "configs" / "digits" / "elr_sym40.yaml"


def test_an_fp16_run_is_told_to_go_on_in_bf16_only_where_this_cpu_has_it_natively(tmp_path: Path) -> None:
    """bf16 without native arithmetic is emulated, many times slower (`precision_note` says so): fp32 there."""
    cpu = torch.device("cpu")
    cfg = load_config(DIGITS, ["train.precision=fp16"])
    remedy = divergence_remedy(cfg, tmp_path, ExecutionPlan.from_config(cfg.train, cpu))
    native = precision_note("bf16", cpu) == []
    expected = "bf16 (native on this CPU)" if native else "fp32 (this CPU has no native bf16)"
    assert remedy.endswith(f"go on in {expected}: elr-mri train --resume {tmp_path} "
                           f"--set train.precision={expected.split()[0]}")


def test_a_run_that_diverged_before_any_epoch_was_selected_names_no_best_checkpoint(tmp_path: Path) -> None:
    """`keep_best` returns 0 where best.pt holds no epoch: the error must not send the user to an epoch 0."""
    cfg = load_config(DIGITS, ["model.name=mlp", "model.hidden=8"])
    plan = ExecutionPlan.from_config(cfg.train, torch.device("cpu"))
    method = build_method(cfg, (1, 8, 8), 10, 20, plan)
    method.targets()[3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"diverged in epoch 1 .*; nothing of that epoch was written\. A plain"):
        refuse_divergence(method, float("nan"), 0, cfg, tmp_path, plan)
    with pytest.raises(ValueError, match=r"nothing of that epoch was written, and checkpoints/best.pt keeps epoch 3, "):
        refuse_divergence(method, float("nan"), 0, cfg, tmp_path, plan, keep_best=lambda: 3)
