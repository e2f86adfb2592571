"""Saliency maps: the input gradient of log p(given class), including for scans the network confidently calls
another class, which are the ones a mislabel review looks at."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from elr_mri.evaluation.explain import saliency_maps


class _SumScorer(nn.Module):
    """Class 1's logit is 40 + the voxel sum, class 0's is 0: every scan is called class 1 with p(0) ≈ e^-40."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # the maps are taken on the device of the first parameter

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        total = self.scale * images.flatten(1).sum(dim=1)
        return torch.stack([torch.zeros_like(total), 40.0 + total], dim=1)


class _OneNetwork:
    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def networks(self) -> list[nn.Module]:
        return [self.net]


def test_a_confidently_wrong_scan_keeps_its_gradient() -> None:
    scans = [{"image": torch.full((1, 3, 3, 3), 0.5), "label": 0}, {"image": torch.full((1, 3, 3, 3), 0.2), "label": 1}]
    maps, mean_input = saliency_maps(_OneNetwork(_SumScorer()), scans, num_classes=2, batch_size=2)
    # d log p0 / d voxel = -(1 - p0) ≈ -1 for the scan labelled 0; log(softmax) clamped at 1e-12 gave 0 here
    np.testing.assert_allclose(maps[0], np.ones((3, 3, 3)), rtol=1e-6)
    # the scan labelled 1 is predicted as given: p1 ≈ 1, so its gradient vanishes (≈ e^-40), as it should
    assert np.abs(maps[1]).max() < 1e-12
    np.testing.assert_allclose(mean_input, np.full((3, 3, 3), 0.35), rtol=1e-6)
