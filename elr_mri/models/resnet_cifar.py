"""CIFAR ResNets of the paper: ResNet-34 for ELR and PreAct ResNet-18 for ELR+.

Both use the 3×3, stride-1 stem (conv-BN-ReLU) that CIFAR networks use instead of ImageNet's 7×7 +
max-pool, so 32×32 inputs keep their resolution through the first stage. The pre-activation net is
the one of the official ELR+ code (taken from DivideMix), which differs from He et al. (2016b): its
stem is normalised, its identity shortcuts carry the pre-activated input and no BN-ReLU follows the
last stage; the paper's Table 2 figures come from that network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CifarResNet", "resnet34", "preact_resnet18"]


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the shortcut, then ReLU (He et al. 2016a)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(in_planes, planes, stride, with_bn=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; the shortcut, identity or projection, takes the pre-activated input."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = _projection(in_planes, planes, stride, with_bn=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


def _projection(in_planes: int, planes: int, stride: int, with_bn: bool) -> nn.Sequential:
    """1×1 projection where the shape changes, identity (empty Sequential) otherwise."""
    if stride == 1 and in_planes == planes:
        return nn.Sequential()
    layers: list[nn.Module] = [nn.Conv2d(in_planes, planes, 1, stride, bias=False)]
    if with_bn:
        layers.append(nn.BatchNorm2d(planes))
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """Four stages of 64–512 channels over a 3×3 stem; `preact` picks the block type."""

    def __init__(self, blocks: tuple[int, int, int, int], num_classes: int, in_channels: int = 3,
                 preact: bool = False) -> None:
        super().__init__()
        block = PreActBlock if preact else BasicBlock
        self.stem = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(64)
        stages = []
        in_planes = 64
        for i, count in enumerate(blocks):
            planes = 64 * 2**i
            for j in range(count):
                stages.append(block(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(F.relu(self.stem_bn(self.stem(x))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.head(out)


def resnet34(num_classes: int, in_channels: int = 3) -> CifarResNet:
    return CifarResNet((3, 4, 6, 3), num_classes, in_channels)


def preact_resnet18(num_classes: int, in_channels: int = 3) -> CifarResNet:
    return CifarResNet((2, 2, 2, 2), num_classes, in_channels, preact=True)
