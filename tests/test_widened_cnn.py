"""The widened 3D CNN of Liu et al. (ML4H 2019), its age encoding, the MONAI baselines and the size report."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from elr_mri.models.widened_cnn import (
    AgeEncoding,
    ModelReport,
    WidenedCNN3D,
    age_bins,
    feature_grid,
    model_report,
    monai_baseline,
    sinusoid_table,
)

SMALL = (72, 72, 72)  # the smallest cube the trunk accepts is 71³; 72³ keeps tests fast


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k**3 + cout


def _linear(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


def test_x8_age_parameter_count_matches_the_official_layer_list():
    # NYUMedML/CNN_design_for_AD models/models.py with expansion 8, feature_dim 1024, nhid 512, 3 labels:
    # conv 1→32 (1³), 32→256 (3³), 256→512 (5³), 512→512 (3³); non-affine instance norms; fc6 on
    # 512·5·5·5; age: Linear 512→512, LayerNorm 512, Linear 512→1024; classifier 1024→512→3.
    e = 8
    trunk = _conv(1, 4 * e, 1) + _conv(4 * e, 32 * e, 3) + _conv(32 * e, 64 * e, 5) + _conv(64 * e, 64 * e, 3)
    fc6 = _linear(64 * e * 5 * 5 * 5, 1024)
    age = _linear(512, 512) + 2 * 512 + _linear(512, 1024)
    head = _linear(1024, 512) + _linear(512, 3)
    expected = trunk + fc6 + age + head
    assert expected == 90_536_771
    model = WidenedCNN3D(widening=8, use_age=True, input_size=(96, 96, 96))
    assert sum(p.numel() for p in model.parameters()) == expected
    without_age = WidenedCNN3D(widening=8, use_age=False)
    assert sum(p.numel() for p in without_age.parameters()) == expected - age


def test_layer_order_and_non_affine_instance_norm():
    model = WidenedCNN3D(widening=2, use_age=False)
    kinds = ["Conv3d" if isinstance(m, nn.Conv3d) else type(m).__name__ for m in model.features]  # a subclass
    block = ["Conv3d", "InstanceNorm3d", "ReLU"]
    assert kinds == block + ["MaxPool3d"] + block + ["MaxPool3d"] + block + ["MaxPool3d"] + block
    convs = [m for m in model.features if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [8, 64, 128, 128]
    assert [(c.kernel_size[0], c.padding[0], c.dilation[0]) for c in convs] == [(1, 0, 1), (3, 0, 2), (5, 2, 2), (3, 1, 2)]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool3d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2), (3, 2), (5, 2)]
    norms = [m for m in model.features if isinstance(m, nn.InstanceNorm3d)]
    assert len(norms) == 4 and not any(m.affine or m.track_running_stats for m in norms)  # instance statistics in eval too


def test_flatten_size_follows_the_input_size():
    assert feature_grid((96, 96, 96)) == (5, 5, 5)
    assert feature_grid((121, 145, 121)) == (8, 11, 8)  # 145: 72, 68, 33, 29, 13, 11
    assert WidenedCNN3D(widening=1, use_age=False, input_size=(96, 96, 96)).fc.in_features == 64 * 125
    assert WidenedCNN3D(widening=1, use_age=False, input_size=SMALL).fc.in_features == 64 * 8
    with pytest.raises(ValueError, match="at least 71 voxels"):
        WidenedCNN3D(input_size=(32, 32, 32))


def test_sinusoid_table_values():
    table = sinusoid_table(240, 512)
    assert table.shape == (240, 512)
    assert torch.equal(table[0, 0::2], torch.zeros(256)) and torch.equal(table[0, 1::2], torch.ones(256))
    assert table[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-7)
    assert table[141, 1].item() == pytest.approx(math.cos(141.0), abs=1e-6)
    # column 2i holds sin(p / 10000^(2i/d)); i = 10 at the half-year bin of 70.5 years (141)
    assert table[141, 20].item() == pytest.approx(math.sin(141 / 10000 ** (20 / 512)), abs=1e-6)
    assert table[141, 21].item() == pytest.approx(math.cos(141 / 10000 ** (20 / 512)), abs=1e-6)
    assert torch.equal(AgeEncoding().table, table)


def test_age_bins_are_half_years_clamped_at_120():
    bins = age_bins(torch.tensor([0.0, 70.0, 70.2, 70.3, 70.5, 119.5, 130.0]))
    assert bins.tolist() == [0, 140, 140, 141, 141, 239, 239]
    assert age_bins(torch.tensor([70.25, 70.75])).tolist() == [140, 142]  # ties round half to even, as README says
    with pytest.raises(ValueError, match="NaN"):
        age_bins(torch.tensor([70.0, float("nan")]))
    with pytest.raises(ValueError, match="non-negative"):
        age_bins(torch.tensor([-1.0]))


def test_the_age_model_compiles_to_one_graph():
    """No data-dependent branch (such as the age check) splits the graph or waits on the GPU."""
    model = WidenedCNN3D(widening=1, input_size=(72,) * 3)
    explained = torch._dynamo.explain(model)(torch.randn(2, 1, 72, 72, 72), age=torch.tensor([70.0, 80.0]))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_forward_uses_age_and_demands_it():
    torch.manual_seed(0)
    model = WidenedCNN3D(widening=1, use_age=True, input_size=SMALL).eval()
    x = torch.rand(2, 1, *SMALL)
    with torch.no_grad():
        young = model(x, age=torch.tensor([60.0, 60.0]))
        old = model(x, age=torch.tensor([85.0, 85.0]))
    assert young.shape == (2, 3)
    assert not torch.allclose(young, old)
    with pytest.raises(ValueError, match="needs each subject's age"):
        model(x)
    with pytest.raises(ValueError, match="built for input_size"):
        model(torch.rand(1, 1, 80, 80, 80), age=torch.tensor([70.0]))
    with pytest.raises(ValueError, match=r"a batch of volumes \(N, C, D, H, W\) but got shape \(1, 72, 72, 72\)"):
        model(x[0], age=torch.tensor([70.0]))  # one volume without its batch axis: not a crop of the wrong size


@pytest.mark.parametrize(("volumes", "message"), [
    (torch.zeros(1, 1, *SMALL, dtype=torch.float64), r"weights are torch.float32 but the volumes are torch.float64; "
                                                     r"convert them: model\(x.to\(torch.float32\), age=...\)"),
    (np.zeros((1, 1, *SMALL), dtype=np.float32), "takes a torch tensor of volumes but got ndarray"),
])
def test_volumes_the_trunk_cannot_take_are_one_line_naming_the_conversion(volumes: Any, message: str) -> None:
    """A scan read with NumPy or nibabel is float64, or still an array: torch said "Input type (double) and bias
    type (float) should be the same", or that an ndarray has no attribute `dim`."""
    model = WidenedCNN3D(widening=1, use_age=True, input_size=SMALL)
    with pytest.raises(TypeError, match=message):
        model(volumes, age=torch.tensor([70.0]))


def test_ages_that_do_not_match_the_batch_are_refused():
    """The age is added to the feature, which broadcasts: one age for three volumes gave all three that age, and a
    column of ages (N, 1) gave (N, N, 3) logits, neither with an error."""
    model = WidenedCNN3D(widening=1, use_age=True, input_size=SMALL).eval()
    x = torch.rand(3, 1, *SMALL)
    for age in (torch.tensor([70.0]), torch.tensor(70.0), torch.tensor([[60.0], [70.0], [80.0]])):
        with pytest.raises(ValueError, match=r"one age per volume, shape \(3,\), got shape"):
            model(x, age=age)
    with torch.no_grad():
        assert model(x, age=[60.0, 70.0, 80.0]).shape == (3, 3)  # a list of ages, one per volume, is fine


def test_model_without_age_ignores_it_and_trains():
    torch.manual_seed(0)
    model = WidenedCNN3D(widening=1, use_age=False, input_size=SMALL)
    x = torch.rand(2, 1, *SMALL)
    logits = model(x, age=torch.tensor([60.0, 90.0]))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x, age=torch.tensor([1.0, 2.0])))
    nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_age_encoding_receives_gradients():
    model = WidenedCNN3D(widening=1, use_age=True, input_size=SMALL)
    logits = model(torch.rand(2, 1, *SMALL), age=torch.tensor([66.0, 81.5]))
    nn.functional.cross_entropy(logits, torch.tensor([1, 2])).backward()
    assert model.age_encoding.project[0].weight.grad.abs().sum() > 0


def test_model_report_counts_parameters_and_leaf_activations():
    model = WidenedCNN3D(widening=1, use_age=True, input_size=SMALL)
    report = model_report(model, (1, *SMALL), batch_size=2)
    assert report.parameters == sum(p.numel() for p in model.parameters())
    # outputs of each leaf module at 72³, e = 1: conv+norm+relu triples, pools, then the linear layers
    trunk = 3 * 4 * 72**3 + 4 * 35**3 + 3 * 32 * 31**3 + 32 * 15**3 + 3 * 64 * 11**3 + 64 * 4**3 + 3 * 64 * 2**3
    dense = 1024 + (512 + 512 + 1024 + 1024) + 512 + 3  # fc, age (Linear, LayerNorm, Linear, Dropout), head
    assert report.activation_bytes == 2 * 4 * (trunk + dense)
    assert "M parameters" in str(report)


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_monai_baselines_take_the_same_input(name):
    torch.manual_seed(0)
    model = monai_baseline(name, in_channels=1, num_classes=3).eval()
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        logits = model(x, age=torch.tensor([70.0]))
        assert torch.equal(logits, model(x))
    assert logits.shape == (1, 3)


def test_unknown_baseline_is_refused():
    with pytest.raises(ValueError, match="resnet18 or densenet121"):
        monai_baseline("vgg")  # type: ignore[arg-type]


def test_age_encoding_drops_a_tenth_of_the_feature_in_training() -> None:
    """The official model's dropout after adding the age is 0.1: in training about 10% of the 64 × 1024 values are
    zeroed (nothing else makes a sum of a feature and a projection exactly zero), and none in evaluation."""
    torch.manual_seed(0)
    encoding = AgeEncoding(1024).train()
    features, ages = torch.zeros(64, 1024), torch.full((64,), 70.0)
    dropped = (encoding(features, ages) == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.02  # the standard deviation of the share is 0.0012
    with torch.no_grad():
        assert (encoding.eval()(features, ages) != 0).all()


def test_the_head_starts_from_small_weights_and_zero_biases() -> None:
    """The official classifier (two linear layers) draws its weights from N(0, 0.01) and fills its biases with 0;
    PyTorch's default biases, up to 1/√fan_in, would tilt the first logits towards some diagnosis."""
    torch.manual_seed(0)
    model = WidenedCNN3D(widening=1, use_age=False, input_size=SMALL)
    for layer in model.head:
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.1)  # 1536 draws at least: ±2% is one sd


def test_nothing_but_linear_layers_and_the_age_lie_between_the_trunk_and_the_logits() -> None:
    """As the official code: fc6 → (+ age encoding) → Linear 512 → Linear 3, no activation anywhere after the
    trunk, the age's projection added to the feature (evaluation: no dropout)."""
    torch.manual_seed(0)
    model = WidenedCNN3D(widening=1, use_age=True, input_size=SMALL).eval()
    trunk: list[torch.Tensor] = []
    model.features.register_forward_hook(lambda module, inputs, output: trunk.append(output))
    with torch.no_grad():
        logits = model(torch.rand(1, 1, *SMALL), age=torch.tensor([84.5]))
        feature = torch.flatten(trunk[0], 1) @ model.fc.weight.T + model.fc.bias
        encoding = model.age_encoding.project(model.age_encoding.table[[169]])  # the half-year bin of 84.5
        hidden = (feature + encoding) @ model.head[0].weight.T + model.head[0].bias
    torch.testing.assert_close(logits, hidden @ model.head[1].weight.T + model.head[1].bias)


@pytest.mark.parametrize(("settings", "message"), [
    ({"widening": 0}, "widening must be a positive integer, got 0"),
    ({"input_size": (72, 72)}, r"input_size must have three spatial sizes \(D, H, W\), got \(72, 72\)"),
    ({"input_size": (72, 72, 72, 72)}, r"three spatial sizes \(D, H, W\), got \(72, 72, 72, 72\)"),
])
def test_a_network_of_no_channels_or_not_three_axes_is_refused(settings: dict[str, Any], message: str) -> None:
    """Widening 0 made convolutions of no channels, and a fourth axis a first linear layer no volume could reach."""
    with pytest.raises(ValueError, match=message):
        WidenedCNN3D(**{"input_size": SMALL, **settings})


def test_the_smallest_crop_leaves_two_voxels_per_axis_and_one_less_is_refused() -> None:
    """71: conv 1³ 71, pool 3/2 35, conv 3³ dil 2 31, pool 3/2 15, conv 5³ pad 2 dil 2 11, pool 5/2 4, conv 3³ pad 1
    dil 2 2; from 70 the last convolution leaves one voxel, whose instance norm is always 0."""
    assert feature_grid((71, 71, 71)) == (2, 2, 2)
    for size in ((70, 71, 71), (71, 71, 70)):
        with pytest.raises(ValueError, match="at least 71 voxels"):
            feature_grid(size)


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_monai_baselines_take_the_channels_and_classes_asked_for(name: str) -> None:
    model = monai_baseline(name, in_channels=2, num_classes=4).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        assert model(torch.rand(1, 2, 32, 32, 32)).shape == (1, 4)


def test_the_model_report_says_millions_of_parameters_and_mebibytes() -> None:
    report = ModelReport(parameters=2_345_678, activation_bytes=3 * 2**20)
    assert str(report) == "2.35 M parameters, 3.0 MiB activations"


def test_a_sinusoid_table_of_odd_width_is_refused_in_words() -> None:
    """Sine and cosine columns come in pairs: an odd width left the last sine without its cosine (torch's shape
    error instead)."""
    with pytest.raises(ValueError, match="needs an even dimension, got 5"):
        sinusoid_table(4, 5)
