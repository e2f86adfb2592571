"""The widened 3D CNN with age encoding of Liu, Yadav, Fernandez-Granda and Razavian (ML4H 2019).

"On the design of convolutional neural networks for automatic detection of Alzheimer's disease",
PMLR 116 (2020) 184-201; official code NYUMedML/CNN_design_for_AD. The layer list follows that
code as it actually runs: its last `add_module("pool2_s1", MaxPool3d(5, 2))` replaces the earlier
3/2 pool of the same name in place, so the 5/2 pool sits between the third and fourth convolution
and no pool follows the fourth. Instance norms are not affine (PyTorch's default, as in the
official code); the head is two linear layers with nothing between them, initialised N(0, 0.01).

Public names: `WidenedCNN3D`, `AgeEncoding`, `age_bins`, `sinusoid_table`, `feature_grid`,
`monai_baseline`, `ModelReport`, `model_report`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import nn

from elr_mri.models import MIN_INPUT_SIZE
from elr_mri.models.phase_grid_conv import PhaseGridConv3d

__all__ = [
    "WidenedCNN3D",
    "AgeEncoding",
    "age_bins",
    "sinusoid_table",
    "feature_grid",
    "monai_baseline",
    "ModelReport",
    "model_report",
]

AGE_BIN_YEARS = 0.5  # the official table has one row per half year ...
AGE_BINS = 240  # ... from 0 to 119.5 years
AGE_TABLE_DIM = 512
FEATURE_DIM = 1024
HIDDEN_DIM = 512
AGE_DROPOUT = 0.1
HEAD_INIT_STD = 0.01

# (kind, channels per unit of widening, kernel, stride, padding, dilation), in order.
_LAYERS: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("conv", 4, 1, 1, 0, 1),
    ("pool", 0, 3, 2, 0, 1),
    ("conv", 32, 3, 1, 0, 2),
    ("pool", 0, 3, 2, 0, 1),
    ("conv", 64, 5, 1, 2, 2),
    ("pool", 0, 5, 2, 0, 1),
    ("conv", 64, 3, 1, 1, 2),
)


class WidenedCNN3D(nn.Module):
    """1³ conv, three dilated convs (each + InstanceNorm3d + ReLU) → Linear 1024 (+ age) → 512 → classes.

    Args:
        in_channels: channels of the input volume (1 for a T1 scan).
        num_classes: output logits (3: CN, MCI, AD).
        widening: channel factor e; the convolutions have 4e, 32e, 64e, 64e channels. The paper
            compares e ∈ {1, 2, 4, 8} and reports ×8 with age as its best model.
        use_age: add `AgeEncoding` of the subject's age to the 1024-d image feature.
        input_size: spatial size (D, H, W) of the crops the model sees; the flatten size of the
            first linear layer follows from it (5³ at 96³, as in the official code).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 3,
        widening: int = 8,
        use_age: bool = True,
        input_size: Sequence[int] = (96, 96, 96),
    ) -> None:
        super().__init__()
        if widening < 1:
            raise ValueError(f"widening must be a positive integer, got {widening}")
        self.input_size = tuple(int(s) for s in input_size)
        if len(self.input_size) != 3:
            raise ValueError(f"input_size must have three spatial sizes (D, H, W), got {input_size}")
        grid = feature_grid(self.input_size)
        self.use_age = use_age
        self.features = _trunk(in_channels, widening)
        last_channels = _LAYERS[-1][1] * widening
        self.fc = nn.Linear(last_channels * math.prod(grid), FEATURE_DIM)
        self.age_encoding = AgeEncoding(FEATURE_DIM) if use_age else None
        hidden, output = nn.Linear(FEATURE_DIM, HIDDEN_DIM), nn.Linear(HIDDEN_DIM, num_classes)
        for layer in (hidden, output):
            nn.init.normal_(layer.weight, 0.0, HEAD_INIT_STD)
            nn.init.zeros_(layer.bias)
        self.head = nn.Sequential(hidden, output)

    def forward(self, x: torch.Tensor, age: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for volumes `x` (N, C, D, H, W); `age` (N,) in years is required when `use_age`."""
        self._check_volumes(x)
        feature = self.fc(torch.flatten(self.features(x), 1))
        if self.age_encoding is not None:
            if age is None:
                raise ValueError(
                    "WidenedCNN3D(use_age=True) needs each subject's age: call model(x, age=ages_in_years) "
                    "or build it with use_age=False"
                )
            feature = self.age_encoding(feature, age)
        return self.head(feature)

    def _check_volumes(self, x: torch.Tensor) -> None:
        """One line naming the fix for a batch the trunk cannot take: torch's own errors named a convolution's bias
        type (a float64 volume, as NumPy and nibabel read one) or a missing attribute (a NumPy array)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"WidenedCNN3D takes a torch tensor of volumes but got {type(x).__name__}; convert it: "
                            "model(torch.as_tensor(volumes, dtype=torch.float32), age=...)")
        if x.dim() != 5:
            raise ValueError(
                f"WidenedCNN3D takes a batch of volumes (N, C, D, H, W) but got shape {tuple(x.shape)}; give a single "
                "volume a batch axis: model(x[None], age=torch.tensor([age_in_years]))"
            )
        if tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"WidenedCNN3D was built for input_size {self.input_size} but got a batch of shape "
                f"{tuple(x.shape)}; crop to the configured size or rebuild the model"
            )
        weights = self.fc.weight.dtype
        if x.dtype != weights:
            raise TypeError(f"WidenedCNN3D's weights are {weights} but the volumes are {x.dtype}; convert them: "
                            f"model(x.to({weights}), age=...)")


class AgeEncoding(nn.Module):
    """Age as a learned offset to the image feature: sinusoid table → Linear → LayerNorm → Linear.

    Ages are rounded to half-year bins (half to even; 240 bins, 0-119.5 years; older ages use the last bin) and
    each bin's row of the transformer-style sinusoid table (d = 512) goes through Linear 512 →
    LayerNorm → Linear `out_features`; the result is added to the feature, followed by dropout 0.1.
    """

    table: torch.Tensor  # the buffer registered in __init__ (nn.Module types attributes Tensor | Module)

    def __init__(self, out_features: int = FEATURE_DIM, dropout: float = AGE_DROPOUT) -> None:
        super().__init__()
        self.register_buffer("table", sinusoid_table(AGE_BINS, AGE_TABLE_DIM), persistent=False)
        self.project = nn.Sequential(
            nn.Linear(AGE_TABLE_DIM, HIDDEN_DIM), nn.LayerNorm(HIDDEN_DIM), nn.Linear(HIDDEN_DIM, out_features)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, feature: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        """`feature` (N, out_features) plus the encoding of `age` (N,) in years, one age per subject.

        The shape is checked because the sum broadcasts: one age for a batch gave every volume that age, and ages
        as a column (N, 1) gave (N, N, classes) logits, neither with a word.
        """
        age = torch.as_tensor(age)
        if age.shape != feature.shape[:1]:
            raise ValueError(f"age must hold one age per volume, shape ({feature.shape[0]},), got shape "
                             f"{tuple(age.shape)}; pass a 1-D tensor of each subject's age in years")
        return self.dropout(feature + self.project(self.table[age_bins(age)]))


def age_bins(age: torch.Tensor) -> torch.Tensor:
    """Half-year bin of each age in years (0 → 0, 70.5 → 141, past 119.25 → 239); NaN or negative is an error.

    Values are checked only on the CPU outside torch.compile: on a GPU the check would make the host
    wait for the network's whole trunk at every forward, and under compile it would split the graph.
    Training data never gets here with such ages (the manifest loader refuses them); nor does the meta
    device (no data), so `model_report` can run the model.
    """
    age = torch.as_tensor(age)
    if age.device.type == "cpu" and not torch.compiler.is_compiling():
        if torch.isnan(age).any():
            raise ValueError("age is NaN for some subjects: the age-encoded model needs every subject's age")
        if (age < 0).any():
            raise ValueError(f"age must be non-negative years, got {age.min().item()}")
    return torch.round(age / AGE_BIN_YEARS).long().clamp_(0, AGE_BINS - 1)


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """Table[p, 2i] = sin(p / 10000^(2i/dim)), Table[p, 2i+1] = cos(same) (Vaswani et al. 2017)."""
    if dim % 2:
        raise ValueError(f"the sinusoid table needs an even dimension, got {dim}")
    position = torch.arange(positions, dtype=torch.float64)[:, None]
    frequency = torch.pow(10000.0, -torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.empty(positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table.float()


def feature_grid(input_size: Sequence[int]) -> tuple[int, ...]:
    """Spatial size after the convolutional trunk, by the conv/pool output-size formula (5³ at 96³).

    Every layer must leave at least 2 voxels per axis: instance norm of a single voxel is always 0.
    """
    size = [int(s) for s in input_size]
    for kind, _, kernel, stride, padding, dilation in _LAYERS:
        size = [(s + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for s in size]
        if min(size) < 2:
            raise ValueError(
                f"input_size {tuple(input_size)} is too small for WidenedCNN3D: each axis needs at least "
                f"{MIN_INPUT_SIZE} voxels"
            )
    return tuple(size)


def _trunk(in_channels: int, widening: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for kind, per_unit, kernel, stride, padding, dilation in _LAYERS:
        if kind == "pool":
            layers.append(nn.MaxPool3d(kernel, stride))
            continue
        out = per_unit * widening
        layers += [
            PhaseGridConv3d(channels, out, kernel, stride, padding, dilation),
            nn.InstanceNorm3d(out),
            nn.ReLU(),
        ]
        channels = out
    return nn.Sequential(*layers)


class _ImageOnly(nn.Module):
    """A baseline that sees the image only; it accepts `age` so every MRI model is called alike."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, age: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x)


def monai_baseline(
    name: Literal["resnet18", "densenet121"], in_channels: int = 1, num_classes: int = 3
) -> nn.Module:
    """MONAI's 3D ResNet-18 or DenseNet-121 for the comparison table, called as `model(x, age=None)`.

    Both end in global average pooling, so they take any crop size the widened CNN takes.
    """
    from monai.networks.nets import DenseNet121, resnet18

    if name == "resnet18":
        net: nn.Module = resnet18(spatial_dims=3, n_input_channels=in_channels, num_classes=num_classes)
    elif name == "densenet121":
        net = DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=num_classes)
    else:
        raise ValueError(f"unknown MONAI baseline {name!r}; choose resnet18 or densenet121")
    return _ImageOnly(net)


@dataclass(frozen=True)
class ModelReport:
    """Size of a model for one input: parameters and the activations one forward pass produces."""

    parameters: int
    activation_bytes: int  # outputs of every leaf module, fp32: what autograd keeps for backward, roughly

    def __str__(self) -> str:
        return f"{self.parameters / 1e6:.2f} M parameters, {self.activation_bytes / 2**20:.1f} MiB activations"


def model_report(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1) -> ModelReport:
    """Parameter count and activation memory of `model` on a batch of `input_shape` (C, D, H, W).

    The forward pass runs on a copy on PyTorch's meta device: shapes only, no arithmetic, so even
    the ×8 network at 96³ is measured instantly on a CPU.
    """
    parameters = sum(p.numel() for p in model.parameters())
    meta = copy.deepcopy(model).to("meta").eval()
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    hooks = [m.register_forward_hook(count) for m in meta.modules() if not list(m.children())]
    try:
        x = torch.empty(batch_size, *input_shape, device="meta")
        with torch.no_grad():
            meta(x, age=torch.empty(batch_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return ModelReport(parameters=parameters, activation_bytes=total)
