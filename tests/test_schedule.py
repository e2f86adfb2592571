"""`lr_at` against the torch schedulers the official code steps once an epoch: our rate is a function of the epoch (a
resume needs no scheduler state), and must still be theirs epoch by epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elr_mri.config import OptimConfig, RunConfig, ScheduleConfig, load_config
from elr_mri.engine.schedule import lr_at

CONFIGS = Path(__file__).parents[1] / "configs"


def _torch_rates(scheduler_for: type, epochs: int, lr: float, **kwargs: object) -> list[float]:
    """The rate of each epoch under a torch scheduler stepped after every epoch, as the official trainer does."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = scheduler_for(optimizer, **kwargs)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(("config", "scheduler_for", "arguments"), [
    # Table 1's CIFAR-10 rows (appendix): ÷100 at 40 and 80
    ("cifar10/elr_sym40.yaml", torch.optim.lr_scheduler.MultiStepLR, {"milestones": [40, 80], "gamma": 0.01}),
    # the official repository's CIFAR-10 config: warm restarts every 10 epochs down to 0.001
    ("cifar10/elr_sym40_cosine.yaml", torch.optim.lr_scheduler.CosineAnnealingWarmRestarts,
     {"T_0": 10, "eta_min": 0.001}),
])
def test_the_paper_schedules_give_torchs_rates_epoch_by_epoch(config: str, scheduler_for: type,
                                                              arguments: dict[str, object]) -> None:
    cfg = load_config(CONFIGS / config)
    expected = _torch_rates(scheduler_for, cfg.train.epochs, cfg.optim.lr, **arguments)
    ours = [lr_at(epoch, cfg) for epoch in range(cfg.train.epochs)]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_a_cosine_over_the_run_gives_torchs_cosine_annealing() -> None:
    cfg = load_config(CONFIGS / "cifar10" / "elr_sym40.yaml",
                      ["schedule.name=cosine", "schedule.eta_min=0.0002", "train.epochs=30"])
    expected = _torch_rates(torch.optim.lr_scheduler.CosineAnnealingLR, 30, cfg.optim.lr, T_max=30, eta_min=0.0002)
    assert [lr_at(epoch, cfg) for epoch in range(30)] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_a_constant_schedule_keeps_the_base_rate_every_epoch() -> None:
    """`constant` reads no schedule setting: not the multistep milestones, nor the cosine floor eta_min."""
    cfg = RunConfig(optim=OptimConfig(lr=0.05), schedule=ScheduleConfig(name="constant", eta_min=0.001))
    assert [lr_at(epoch, cfg) for epoch in (0, 40, 80, 119)] == [0.05] * 4
