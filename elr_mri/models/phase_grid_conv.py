"""Dilated 3D convolutions computed as undilated ones on the input's phase grids (`train.phase_grid_convs`).

A convolution dilated by d reads, for an output voxel, input voxels d apart; output voxels with the same position
modulo d read only input voxels with that same position modulo d. So the padded input splits into d³ phase grids
(every d-th voxel from each of the d³ starting offsets), an undilated convolution with the same weights runs on all
of them at once (stacked along the batch), and the outputs interleave into the dilated convolution's. The
multiply-adds are the same, in another order; the convolution libraries run the two at different speeds: on an
Intel Xeon with AMX (2 cores), the widened ×8 + age's training step at 96³ in bf16 took 2.0–2.1 s instead of 3.5–3.7 s
(batch 1), while in fp32 the phase grids were slower (bench/bench_dilated_conv.py). The parameters are the plain
convolution's, so checkpoints do not depend on the switch.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PhaseGridConv3d", "conv3d_on_phases", "use_phase_grids"]


def conv3d_on_phases(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
                     dilation: int) -> torch.Tensor:
    """`F.conv3d(x, weight, bias, padding=padding, dilation=dilation)` (stride 1, one group, a cubic kernel, the same
    padding and dilation on every axis) computed as dilation³ undilated convolutions, one per phase grid of the
    padded input."""
    d, k = dilation, weight.shape[-1]
    x = F.pad(x, (padding,) * 6)
    batch, channels, *sides = x.shape
    out_sides = [side - d * (k - 1) for side in sides]
    x = F.pad(x, [p for side in reversed(sides) for p in (0, -side % d)])  # whole phases along every axis
    depth, height, width = (-(-side // d) for side in sides)
    phases = (x.reshape(batch, channels, depth, d, height, d, width, d)
              .permute(0, 3, 5, 7, 1, 2, 4, 6)
              .reshape(batch * d ** 3, channels, depth, height, width))
    y = F.conv3d(phases, weight, bias)
    out = y.shape[1]
    y = (y.reshape(batch, d, d, d, out, *y.shape[2:])
         .permute(0, 4, 5, 1, 6, 2, 7, 3)
         .reshape(batch, out, y.shape[2] * d, y.shape[3] * d, y.shape[4] * d))
    return y[:, :, :out_sides[0], :out_sides[1], :out_sides[2]]


class PhaseGridConv3d(nn.Conv3d):
    """`nn.Conv3d` (same parameters and state dict) that runs on phase grids while `on_phase_grids` is set."""

    on_phase_grids: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cubic = (len(set(self.kernel_size)) == 1 and len(set(self.dilation)) == 1
                 and isinstance(self.padding, tuple) and len(set(self.padding)) == 1)
        if not (cubic and self.stride == (1, 1, 1) and self.groups == 1 and self.padding_mode == "zeros"):
            raise ValueError("PhaseGridConv3d needs stride 1, one group, zero padding, and the same kernel size, "
                             "padding and dilation on every axis")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_phase_grids and self.dilation[0] > 1:
            padding = cast(tuple[int, ...], self.padding)  # a tuple: __init__ refused a padding string
            return conv3d_on_phases(x, self.weight, self.bias, padding[0], self.dilation[0])
        return super().forward(x)


def use_phase_grids(model: nn.Module, on: bool) -> None:
    """Switch every `PhaseGridConv3d` of `model` to phase grids (`on`) or to the library's dilated kernel."""
    for module in model.modules():
        if isinstance(module, PhaseGridConv3d):
            module.on_phase_grids = on
