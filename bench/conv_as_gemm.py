"""A dilated 3D convolution as one matrix product over its gathered input windows (im2col), for bench_dilated_conv.py.

Why: the ×8's third convolution (81% of the step's FLOPs) ran at 0.19 TFLOP/s in bf16 through the library's dilated
kernel and 0.63 on phase grids on this 2-core Xeon (AMX), while a bf16 matrix product of its size, 4,913 × 32,000
by 32,000 × 512, ran at 2.3. Gathering each output voxel's k³ input voxels into a row turns the layer into three
such products (forward, input gradient, weight gradient) plus two copies: the gather, and in the backward the
scatter-add of the rows' gradients back onto the input. The rows are gathered channels-last, so every copy moves
runs of C contiguous values, and kept for the weight gradient (k³ times the input's size: 314 MB a volume for the
third convolution in bf16) rather than gathered twice.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["conv3d_as_gemm"]


def _windows(padded: torch.Tensor, kernel: int, dilation: int, out_sides: list[int]) -> torch.Tensor:
    """View (batch, out D, out H, out W, k, k, k, channels) of a channels-last padded input (batch, D, H, W, C)."""
    batch_stride, *voxel_strides, channel_stride = padded.stride()
    return padded.as_strided(
        (padded.shape[0], *out_sides, kernel, kernel, kernel, padded.shape[-1]),
        (batch_stride, *voxel_strides, *(dilation * s for s in voxel_strides), channel_stride))


class _ConvAsGemm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
                dilation: int) -> torch.Tensor:
        kernel, out_channels = weight.shape[-1], weight.shape[0]
        padded = F.pad(x, (padding,) * 6).permute(0, 2, 3, 4, 1).contiguous()
        out_sides = [side - dilation * (kernel - 1) for side in padded.shape[1:4]]
        rows = _windows(padded, kernel, dilation, out_sides).reshape(-1, kernel ** 3 * padded.shape[-1])
        matrix = weight.permute(0, 2, 3, 4, 1).reshape(out_channels, -1)  # (out, k·k·k·C), the rows' order
        y = rows @ matrix.t() if bias is None else torch.addmm(bias, rows, matrix.t())
        ctx.save_for_backward(rows, weight)
        ctx.geometry = (tuple(padded.shape), padding, dilation, out_sides, bias is not None)
        return y.view(padded.shape[0], *out_sides, out_channels).permute(0, 4, 1, 2, 3)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows, weight = ctx.saved_tensors
        padded_shape, padding, dilation, out_sides, has_bias = ctx.geometry
        kernel, out_channels = weight.shape[-1], weight.shape[0]
        grad = grad_y.permute(0, 2, 3, 4, 1).reshape(-1, out_channels)
        matrix = weight.permute(0, 2, 3, 4, 1).reshape(out_channels, -1)
        grad_weight = (grad.t() @ rows).view(out_channels, kernel, kernel, kernel, -1).permute(0, 4, 1, 2, 3)
        grad_rows = (grad @ matrix).view(padded_shape[0], *out_sides, kernel, kernel, kernel, padded_shape[-1])
        # the scatter-add: each kernel offset's rows land on a shifted block of the padded input; summed in at least
        # fp32, as the convolution libraries accumulate, since up to k³ terms meet at a voxel
        grad_padded = torch.zeros(padded_shape, dtype=torch.promote_types(rows.dtype, torch.float32),
                                  device=rows.device)
        for i, j, k in itertools.product(range(kernel), repeat=3):
            block = grad_padded[:, i * dilation:, j * dilation:, k * dilation:]
            block[:, :out_sides[0], :out_sides[1], :out_sides[2]] += grad_rows[:, :, :, :, i, j, k]
        inner = tuple(slice(padding, side - padding) for side in padded_shape[1:4])
        grad_x = grad_padded[(slice(None), *inner)].to(rows.dtype).permute(0, 4, 1, 2, 3)
        grad_bias = grad.sum(0, dtype=grad_padded.dtype).to(grad.dtype) if has_bias else None
        return grad_x, grad_weight, grad_bias, None, None


def conv3d_as_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
                   dilation: int) -> torch.Tensor:
    """`F.conv3d(x, weight, bias, padding=padding, dilation=dilation)` (stride 1, one group, the same padding and
    dilation on every axis) as matrix products over the gathered windows; the output is channels-last in memory."""
    return _ConvAsGemm.apply(x, weight, bias, padding, dilation)
