"""One optimisation step of each method: nothing read back to the host, and ELR+'s EMA arithmetic.

On a GPU every value read back (`.item()`, `if tensor:`, `F.one_hot`'s range check) makes the host
wait for the device, once a step; the CPU profiler sees the same reads, so this guards the GPU path
on a CPU. On a GPU (`pytest -m gpu`) torch's sync debug mode also turns any wait into an error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from elr_mri.config import RunConfig, load_config
from elr_mri.engine.execution import ExecutionPlan
from elr_mri.engine.methods import ELRPlusPair, Method, build_method, build_optimizer
from elr_mri.engine.tracking import PredictionTracker
from elr_mri.losses import one_hot_rows, sigmoid_rampup

DIGITS = Path(__file__).parents[1] / "configs" / "digits" / "elr_sym40.yaml"
INPUT_SHAPE, NUM_CLASSES, NUM_EXAMPLES, BATCH = (1, 8, 8), 10, 64, 16
devices = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])]


def _config(loss: str, *overrides: str) -> RunConfig:
    return load_config(DIGITS, [f"loss.name={loss}", "model.name=small_cnn", "model.hidden=8",
                                "elr_plus.ema_ramp_steps=10", *overrides])


def _method(cfg: RunConfig, device: str = "cpu") -> Method:
    plan = ExecutionPlan.from_config(cfg.train, torch.device(device))
    return build_method(cfg, INPUT_SHAPE, NUM_CLASSES, NUM_EXAMPLES, plan)


def _batch(seed: int, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A batch as the DataLoader hands it over: host tensors, pinned when a GPU trains."""
    generator = torch.Generator().manual_seed(seed)
    batch = {"image": torch.rand(BATCH, *INPUT_SHAPE, generator=generator),
             "label": torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator),
             "index": torch.randperm(NUM_EXAMPLES, generator=generator)[:BATCH]}
    return {key: value.pin_memory() for key, value in batch.items()} if device == "cuda" else batch


@pytest.mark.parametrize("device", devices)
@pytest.mark.parametrize("loss", ["ce", "gce", "sce", "elr", "elr_plus"])
def test_a_training_step_never_waits_for_the_device(loss: str, device: str, no_host_waits) -> None:
    method = _method(_config(loss, "train.compile=false"), device)  # the device's other defaults
    tracker = PredictionTracker(NUM_EXAMPLES, NUM_CLASSES, torch.device(device))
    batches = [_batch(seed, device) for seed in range(3)]
    method.train_step(batches[0])  # first-call set-up is not what we look at
    with no_host_waits(device):
        total = None
        for batch in batches[1:]:
            step_loss, logits = method.train_step(batch)
            tracker.record(batch["index"].to(logits.device, non_blocking=True), logits)
            total = step_loss if total is None else total + step_loss  # as the epoch loop sums it


def test_ema_copies_follow_their_networks_with_the_ramped_momentum() -> None:
    cfg = _config("elr_plus")
    pair = _method(cfg)
    assert isinstance(pair, ELRPlusPair)
    for _ in range(3):  # move the networks away from their EMA copies first
        pair.train_step(_batch(pair.step))
    before = [{name: value.clone() for name, value in ema.state_dict().items()} for ema in pair.emas]
    step = pair.step
    pair.train_step(_batch(10))
    decay = sigmoid_rampup(step + 1, cfg.elr_plus.ema_ramp_steps) * cfg.elr_plus.ema_decay
    assert 0.0 < decay < cfg.elr_plus.ema_decay  # still ramping: the ramp itself is checked
    for k in range(2):
        net_state, ema_state = pair.nets[k].state_dict(), pair.emas[k].state_dict()
        for name, value in net_state.items():
            if value.dtype.is_floating_point:
                expected = decay * before[k][name] + (1.0 - decay) * value
                torch.testing.assert_close(ema_state[name], expected, rtol=1e-6, atol=1e-7)
            else:
                assert torch.equal(ema_state[name], value), name
        assert not torch.equal(ema_state["head.weight"], before[k]["head.weight"])


@pytest.mark.parametrize("loss", ["elr", "elr_plus"])
def test_training_follows_evaluation_in_training_mode(loss: str) -> None:
    """Steps switch BatchNorm back to batch statistics after an evaluation; EMA copies only ever predict."""
    method = _method(_config(loss))
    networks = method.nets if isinstance(method, ELRPlusPair) else [method.model]
    method.train_step(_batch(0))
    method.predict_proba(_batch(1))
    method.train_step(_batch(2))
    assert all(module.training for network in networks for module in network.modules())
    for ema in getattr(method, "emas", []):
        assert not any(module.training for module in ema.modules())


def test_one_hot_rows_match_torch_one_hot() -> None:
    labels = torch.tensor([3, 0, 9, 3])
    expected = F.one_hot(labels, NUM_CLASSES)
    assert torch.equal(one_hot_rows(labels, NUM_CLASSES), expected.float())
    assert one_hot_rows(labels, NUM_CLASSES, torch.float64).dtype == torch.float64


def test_optim_momentum_is_adams_beta1() -> None:
    """Adam reads optim.momentum as β1 rather than ignoring a value the user set."""
    cfg = _config("ce", "optim.name=adam", "optim.lr=0.0001", "optim.momentum=0.5")
    optimizer = build_optimizer(cfg, torch.nn.Linear(2, 2))
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["betas"] == (0.5, 0.999)
