"""Dilated 3D convolutions on phase grids (`train.phase_grid_convs`) are the library's dilated convolutions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from elr_mri.config import TrainLoopConfig
from elr_mri.engine.execution import ExecutionPlan
from elr_mri.models.phase_grid_conv import PhaseGridConv3d, conv3d_on_phases, use_phase_grids
from elr_mri.models.widened_cnn import WidenedCNN3D


@pytest.mark.parametrize(("kernel", "padding", "dilation", "shape"), [
    (5, 2, 2, (21, 21, 21)),  # the ×8's third convolution at a 96³ crop
    (3, 0, 2, (15, 16, 17)),  # the second, on a grid whose sides are odd and even
    (3, 1, 2, (7, 7, 7)),  # the fourth, after the 5/2 pool
    (3, 1, 3, (10, 11, 12)),  # another dilation: sides not divisible by it
    (3, 1, 1, (6, 7, 8)),  # no dilation: one phase grid, the plain convolution
])
def test_phase_grids_give_the_dilated_convolution_and_its_gradients(kernel: int, padding: int, dilation: int,
                                                                    shape: tuple[int, int, int]) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *shape, dtype=torch.float64, generator=generator)
    weight = torch.randn(4, 3, kernel, kernel, kernel, dtype=torch.float64, generator=generator)
    bias = torch.randn(4, dtype=torch.float64, generator=generator)
    grads = []
    for way in (lambda *a: F.conv3d(*a, padding=padding, dilation=dilation),
                lambda *a: conv3d_on_phases(*a, padding, dilation)):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        out = way(*leaves)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape))
        grads.append([out.detach(), *(leaf.grad for leaf in leaves)])
    for library, phases in zip(*grads):
        assert library.shape == phases.shape
        torch.testing.assert_close(phases, library, rtol=1e-10, atol=1e-10)


def test_the_switch_changes_the_path_not_the_parameters() -> None:
    """In fp32 the ×1 + age network gives the same logits and parameter gradients either way. The convolutions' biases
    have no gradient in exact arithmetic (the non-affine instance norm after each removes them): only rounding, ~1e-7."""
    torch.manual_seed(0)
    model = WidenedCNN3D(1, 3, widening=1, use_age=True, input_size=(72, 72, 72)).eval()
    convs = [m for m in model.modules() if isinstance(m, PhaseGridConv3d)]
    assert len(convs) == 4 and sum(m.dilation[0] > 1 for m in convs) == 3
    keys = list(model.state_dict())
    x, age, labels = torch.rand(2, 1, 72, 72, 72), torch.tensor([64.0, 81.5]), torch.tensor([0, 2])
    runs = []
    for on in (False, True):
        use_phase_grids(model, on)
        assert all(m.on_phase_grids == on for m in convs)
        model.zero_grad()
        logits = model(x, age=age)
        F.cross_entropy(logits, labels).backward()
        runs.append([logits.detach(), *(p.grad.clone() for p in model.parameters())])
    assert list(model.state_dict()) == keys  # checkpoints load either way
    for library, phases in zip(*runs):
        torch.testing.assert_close(phases, library, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="stride 1, one group"):
        PhaseGridConv3d(1, 2, 3, stride=2)
    with pytest.raises(ValueError, match="the same kernel size"):  # the phase grids read the last axis's size
        PhaseGridConv3d(1, 2, (3, 5, 5), padding=1, dilation=2)



@pytest.mark.parametrize("settings", [
    {"groups": 2},  # the phase grids run one ungrouped convolution
    {"padding": 1, "padding_mode": "reflect"},  # they pad with zeros
    {"padding": 1, "dilation": (1, 2, 2)},  # they split every axis by the first axis's dilation
    {"padding": (1, 2, 2), "dilation": 2},  # and pad every axis by the first axis's padding
])
def test_convolutions_the_phase_grids_would_compute_otherwise_are_refused(settings: dict) -> None:
    with pytest.raises(ValueError, match="PhaseGridConv3d needs stride 1, one group, zero padding"):
        PhaseGridConv3d(2, 2, 3, **settings)

def test_the_execution_plan_sets_the_switch_on_the_placed_model() -> None:
    for on in (False, True):
        plan = ExecutionPlan.from_config(TrainLoopConfig(phase_grid_convs=on), torch.device("cpu"))
        model = plan.place_model(WidenedCNN3D(1, 3, widening=1, use_age=False, input_size=(72, 72, 72)))
        assert [m.on_phase_grids for m in model.modules() if isinstance(m, PhaseGridConv3d)] == [on] * 4
        assert ("phase grids" in plan.describe([model])) == on
        assert "phase grids" not in plan.describe([nn.Linear(3, 2)])  # a network it does not change


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_phase_grids_on_the_gpu_give_the_dilated_convolution(dtype: torch.dtype) -> None:
    """cuDNN's kernels for the two ways differ (TF32 or bf16 rounding): close, not equal."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 21, 21, 21, generator=generator).cuda().to(dtype)
    weight = (torch.randn(64, 32, 5, 5, 5, generator=generator) / (32 * 125) ** 0.5).cuda().to(dtype)
    library = F.conv3d(x, weight, None, padding=2, dilation=2).float()
    phases = conv3d_on_phases(x, weight, None, 2, 2).float()
    tolerance = 2e-2 if dtype == torch.bfloat16 else 2e-3
    torch.testing.assert_close(phases, library, rtol=tolerance, atol=tolerance)
