"""InceptionResNetV2 (Szegedy et al. 2017): the network of the paper's mini WebVision run (ELR+, Table 4).

Layer sizes, residual scales (0.17, 0.10, 0.20) and BatchNorm's eps of 0.001 are those of the network
the official ELR+ code trains from scratch. As there, the final pooling is adaptive, so the 227-pixel
crops of the WebVision setting work (a 5×5 map before pooling; 8×8 at the 299 pixels the network was
designed for). Branches are written as lists of convolution specs instead of one class per block,
so each block reads as the table of its branches.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

__all__ = ["InceptionResNetV2"]

Size = Union[int, tuple[int, int]]
# (out channels, kernel, stride, padding) of one conv-BN-ReLU
ConvSpec = tuple[int, Size, int, Size]


def conv_bn(in_channels: int, out_channels: int, kernel: Size, stride: int = 1, padding: Size = 0) -> nn.Sequential:
    """Convolution without bias, BatchNorm (eps 0.001, the value of the original TensorFlow model), ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False),
                         nn.BatchNorm2d(out_channels, eps=0.001), nn.ReLU())


def chain(in_channels: int, *specs: ConvSpec) -> nn.Sequential:
    """conv_bn layers one after another, each spec (out channels, kernel, stride, padding)."""
    layers = []
    for out_channels, kernel, stride, padding in specs:
        layers.append(conv_bn(in_channels, out_channels, kernel, stride, padding))
        in_channels = out_channels
    return nn.Sequential(*layers)


def _1x1(channels: int) -> ConvSpec:
    return (channels, 1, 1, 0)


def _same(channels: int, kernel: Size) -> ConvSpec:
    """A stride-1 convolution that keeps the spatial size."""
    padding = kernel // 2 if isinstance(kernel, int) else (kernel[0] // 2, kernel[1] // 2)
    return (channels, kernel, 1, padding)


def _down(channels: int) -> ConvSpec:
    """A 3×3 stride-2 convolution without padding: the grid reductions."""
    return (channels, 3, 2, 0)


class Branches(nn.Module):
    """Runs every branch on the same input and concatenates their outputs along the channels."""

    def __init__(self, branches: Sequence[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class ResidualInception(nn.Module):
    """x + scale · project(branches(x)), then ReLU (not after the network's last block).

    Scaling the residual down (0.1–0.3) is what the paper found keeps these deep residual Inception
    networks from dying early in training."""

    def __init__(self, channels: int, branches: Sequence[nn.Module], branch_channels: int, scale: float,
                 relu: bool = True) -> None:
        super().__init__()
        self.branches = Branches(branches)
        self.project = nn.Conv2d(branch_channels, channels, 1)
        self.scale = scale
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.scale * self.project(self.branches(x)))


def block35(scale: float = 0.17) -> ResidualInception:
    """Inception-ResNet-A on the 35×35 grid (at 299 pixels), 320 channels."""
    return ResidualInception(320, [
        chain(320, _1x1(32)),
        chain(320, _1x1(32), _same(32, 3)),
        chain(320, _1x1(32), _same(48, 3), _same(64, 3)),
    ], 128, scale)


def block17(scale: float = 0.10) -> ResidualInception:
    """Inception-ResNet-B on the 17×17 grid, 1088 channels, factorised 7×7."""
    return ResidualInception(1088, [
        chain(1088, _1x1(192)),
        chain(1088, _1x1(128), _same(160, (1, 7)), _same(192, (7, 1))),
    ], 384, scale)


def block8(scale: float = 0.20, relu: bool = True) -> ResidualInception:
    """Inception-ResNet-C on the 8×8 grid, 2080 channels, factorised 3×3."""
    return ResidualInception(2080, [
        chain(2080, _1x1(192)),
        chain(2080, _1x1(192), _same(224, (1, 3)), _same(256, (3, 1))),
    ], 448, scale, relu)


class InceptionResNetV2(nn.Module):
    """Stem → mixed 5b → 10 × A → reduction 6a → 20 × B → reduction 7a → 9 × C + C without ReLU →
    1×1 conv to 1536 → global average pool → linear classifier."""

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn(in_channels, 32, 3, 2), conv_bn(32, 32, 3), conv_bn(32, 64, 3, 1, 1), nn.MaxPool2d(3, 2),
            conv_bn(64, 80, 1), conv_bn(80, 192, 3), nn.MaxPool2d(3, 2),
        )
        mixed_5b = Branches([
            chain(192, _1x1(96)),
            chain(192, _1x1(48), _same(64, 5)),
            chain(192, _1x1(64), _same(96, 3), _same(96, 3)),
            nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), conv_bn(192, 64, 1)),
        ])
        reduction_6a = Branches([
            chain(320, _down(384)),
            chain(320, _1x1(256), _same(256, 3), _down(384)),
            nn.MaxPool2d(3, 2),
        ])
        reduction_7a = Branches([
            chain(1088, _1x1(256), _down(384)),
            chain(1088, _1x1(256), _down(288)),
            chain(1088, _1x1(256), _same(288, 3), _down(320)),
            nn.MaxPool2d(3, 2),
        ])
        self.features = nn.Sequential(
            mixed_5b, *[block35() for _ in range(10)],
            reduction_6a, *[block17() for _ in range(20)],
            reduction_7a, *[block8() for _ in range(9)], block8(scale=1.0, relu=False),
            conv_bn(2080, 1536, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1536, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(self.stem(x))), 1))

