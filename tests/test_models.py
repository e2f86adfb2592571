"""Image models: sizes of the paper's networks and loading a backbone whose head has another size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elr_mri.config import ModelConfig
from elr_mri.models import build_model


# ResNet-34 as in the ELR code; PreAct ResNet-18 as in the ELR+ code: BN in the stem, none after the last stage
@pytest.mark.parametrize(("name", "parameters"), [("resnet34", 21_282_122), ("preact_resnet18", 11_171_274)])
def test_cifar_networks_have_the_standard_size(name: str, parameters: int) -> None:
    model = build_model(ModelConfig(name=name), (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_inception_resnet_v2_is_the_standard_network() -> None:
    """55,843,464 parameters with ImageNet's 1000 classes (the count of the common PyTorch ports); the
    adaptive pooling takes the WebVision setting's 227-pixel crops (5×5 final map) as well as 299 (8×8)."""
    from elr_mri.models.inception_resnet_v2 import InceptionResNetV2

    model = InceptionResNetV2(1000).eval()
    assert sum(p.numel() for p in model.parameters()) == 55_843_464
    with torch.no_grad():
        assert model.features(model.stem(torch.zeros(1, 3, 299, 299))).shape == (1, 1536, 8, 8)
        assert model.features(model.stem(torch.zeros(1, 3, 227, 227))).shape == (1, 1536, 5, 5)
    webvision = build_model(ModelConfig(name="inception_resnet_v2"), (3, 227, 227), 50).eval()
    with torch.no_grad():
        assert webvision(torch.zeros(2, 3, 227, 227)).shape == (2, 50)


def test_resnet50_is_the_imagenet_network() -> None:
    """torchvision's count (25,557,032 at 1000 classes: no shortcut biases) and a stride-2 stem, so 224
    pixels end in a 7×7 map: ImageNet weights load onto the network they were trained as."""
    model = build_model(ModelConfig(name="resnet50"), (3, 224, 224), 1000).eval()
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    trunk = torch.nn.Sequential(*list(model.children())[:-2])  # without the pooling and the head
    with torch.no_grad():
        assert trunk(torch.zeros(1, 3, 224, 224)).shape == (1, 2048, 7, 7)


def test_preact_identity_shortcut_carries_the_pre_activated_input() -> None:
    """As the official ELR+ network: with its convolutions zeroed a block returns ReLU(BN(x)), not x."""
    from elr_mri.models.resnet_cifar import PreActBlock

    block = PreActBlock(8, 8, stride=1).eval()
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.bn1.weight.fill_(2.0)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(block(x), torch.relu(block.bn1(x)))


def test_pretrained_backbone_loads_and_a_resized_head_stays_new(tmp_path: Path) -> None:
    source = build_model(ModelConfig(name="small_cnn", hidden=16), (3, 8, 8), 1000)
    path = tmp_path / "backbone.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    model = build_model(ModelConfig(name="small_cnn", hidden=16, pretrained_checkpoint=str(path)), (3, 8, 8), 14)
    torch.testing.assert_close(model.features[0].weight, source.features[0].weight)
    assert model.head.weight.shape == (14, 16)

    torch.save({"not.a.key": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="keys not in small_cnn"):
        build_model(ModelConfig(name="small_cnn", pretrained_checkpoint=str(path)), (3, 8, 8), 14)


def test_a_pretrained_checkpoint_of_another_network_or_of_a_few_layers_is_refused(tmp_path: Path) -> None:
    def build(state: dict[str, torch.Tensor]) -> torch.nn.Module:
        torch.save(state, path)
        return build_model(ModelConfig(name="small_cnn", hidden=16, pretrained_checkpoint=str(path)), (3, 8, 8), 14)

    path = tmp_path / "weights.pt"
    wider = build_model(ModelConfig(name="small_cnn", hidden=32), (3, 8, 8), 1000).state_dict()
    with pytest.raises(ValueError, match=r"weights.pt: \d+ tensors differ in shape from small_cnn's, e.g. "
                                         r"features.0.weight \(16, 3, 3, 3\) against \(8, 3, 3, 3\); is it a small_cnn"):
        build(wider)  # another width shares every key name: it loaded the few same-shaped tensors, left the rest random
    whole = build_model(ModelConfig(name="small_cnn", hidden=16), (3, 8, 8), 1000).state_dict()
    with pytest.raises(ValueError, match=r"weights.pt: lacks \d+ of small_cnn's \d+ tensors, e.g. features.0.weight; "
                                         r"save the whole network's weights"):
        build({key: value for key, value in whole.items() if key.startswith("head.")})
    old = {key: value for key, value in whole.items() if not key.endswith("num_batches_tracked")}  # pre-0.4.1 file
    model = build({key: value for key, value in old.items() if not key.startswith("head.")})  # a backbone alone
    torch.testing.assert_close(model.features[0].weight, whole["features.0.weight"])


def test_a_pretrained_widened_cnn_saved_with_other_settings_is_told_which_settings_size_it(tmp_path: Path) -> None:
    """A widened CNN saved at another crop or without age has the same key names: it was asked whether it was a
    widened_cnn3d state dict at all, or told to save the whole network, which it was."""
    from elr_mri.models.widened_cnn import WidenedCNN3D

    path = tmp_path / "widened.pt"
    settings = "model.widening, model.use_age and data.mri.crop_size"
    for saved, says in (
        ({"input_size": (80,) * 3}, f"fc.weight (1024, 1728) against (1024, 512); is it a widened_cnn3d state dict "
                                    f"saved with the same {settings}"),
        ({"use_age": False}, f"e.g. age_encoding.project.0.weight; save the whole network's weights with "
                             f"torch.save(model.state_dict(), PATH), or set {settings}"),
    ):
        torch.save(WidenedCNN3D(widening=1, **{"input_size": (72,) * 3, **saved}).state_dict(), path)
        with pytest.raises(ValueError) as refused:
            build_model(ModelConfig(name="widened_cnn3d", widening=1, pretrained_checkpoint=str(path)), (1, 72, 72, 72), 3)
        assert says in str(refused.value) and "\n" not in str(refused.value)


def test_a_pretrained_checkpoint_that_is_no_state_dict_is_one_line(tmp_path: Path) -> None:
    def build(path: Path) -> None:
        build_model(ModelConfig(name="small_cnn", hidden=16, pretrained_checkpoint=str(path)), (3, 8, 8), 14)

    with pytest.raises(FileNotFoundError, match=r"model.pretrained_checkpoint = .*nope.pt: file not found"):
        build(tmp_path / "nope.pt")
    whole = tmp_path / "whole_model.pt"  # torch.save(model): a pickle weights_only refuses
    torch.save(build_model(ModelConfig(name="small_cnn", hidden=16), (3, 8, 8), 14), whole)
    text = tmp_path / "notes.pt"
    text.write_text("weights are on the other disk\n")
    run_checkpoint = tmp_path / "best.pt"  # an elr-mri run's checkpoint: the weights sit under "method"
    torch.save({"method": {"model": {}}, "epoch": 3}, run_checkpoint)
    for path, says in ((whole, r"not loaded, as it holds Python objects \(elr_mri\.models\.small\.SmallCNN, "
                               r"torch\.nn\.modules\."),
                       (text, "not a state dict torch can read"),
                       (run_checkpoint, "holds a dict, not a state dict of tensors")):
        with pytest.raises(ValueError, match=f"{says}.*torch.save\\(model.state_dict\\(\\), PATH\\)") as info:
            build(path)
        assert "\n" not in str(info.value)


def test_a_training_checkpoint_given_as_pretrained_weights_is_told_where_its_weights_are(tmp_path: Path) -> None:
    """The official ELR code saves {'arch', 'epoch', 'state_dict', ...} of a DataParallel network, a run of ours
    {'method': {'model': ...}}: each was told only to save a state dict, or that its keys were not the network's."""
    weights = build_model(ModelConfig(name="small_cnn", hidden=16), (3, 8, 8), 14).state_dict()
    for name, saved, entry in (("trainer.pt", {"arch": "SmallCNN", "epoch": 3, "state_dict": weights}, "['state_dict']"),
                               ("best.pt", {"method": {"model": weights}, "epoch": 3}, "['method']['model']")):
        torch.save(saved, tmp_path / name)
        with pytest.raises(ValueError) as refused:
            build_model(ModelConfig(name="small_cnn", hidden=16, pretrained_checkpoint=str(tmp_path / name)), (3, 8, 8),
                        14)
        assert str(refused.value) == (
            f"model.pretrained_checkpoint = {tmp_path / name}: holds a dict, not a state dict of tensors; its {entry} "
            f"entry holds one: save that, torch.save(torch.load(PATH){entry}, NEW_PATH)")
    wrapped = tmp_path / "data_parallel.pt"  # the official ELR code trains inside DataParallel
    torch.save({f"module.{key}": value for key, value in weights.items()}, wrapped)
    with pytest.raises(ValueError) as refused:
        build_model(ModelConfig(name="small_cnn", hidden=16, pretrained_checkpoint=str(wrapped)), (3, 8, 8), 14)
    assert str(refused.value) == (
        f"{wrapped}: every key starts with 'module.' (saved from a DataParallel or DistributedDataParallel wrapper); "
        "save the network inside it, torch.save(model.module.state_dict(), PATH)")


def _with_random_statistics(block: torch.nn.Module) -> torch.nn.Module:
    """The block in evaluation with batch norms that shift and scale, so that a ReLU left out or moved shows."""
    for norm in (m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.uniform_(-1.0, 1.0)
    return block.eval()


@pytest.mark.parametrize(("in_planes", "planes", "stride"), [(8, 8, 1), (8, 16, 2)])
def test_cifar_blocks_compute_the_residual_of_he_et_al(in_planes: int, planes: int, stride: int) -> None:
    """Basic (2016a): ReLU(BN(conv(ReLU(BN(conv x)))) + shortcut x), the shortcut a 1×1 conv + BN where the shape
    changes. Pre-activation (the ELR+ network): p = ReLU(BN x); conv(ReLU(BN(conv p))) + (p, or a 1×1 conv of p)."""
    from elr_mri.models.resnet_cifar import BasicBlock, PreActBlock

    torch.manual_seed(0)
    relu = torch.relu
    x = torch.randn(2, in_planes, 8, 8)
    basic = _with_random_statistics(BasicBlock(in_planes, planes, stride))
    pre = _with_random_statistics(PreActBlock(in_planes, planes, stride))
    with torch.no_grad():
        shortcut = basic.shortcut[1](basic.shortcut[0](x)) if stride > 1 else x
        expected = relu(basic.bn2(basic.conv2(relu(basic.bn1(basic.conv1(x))))) + shortcut)
        torch.testing.assert_close(basic(x), expected)
        activated = relu(pre.bn1(x))
        shortcut = pre.shortcut[0](activated) if stride > 1 else activated
        torch.testing.assert_close(pre(x), pre.conv2(relu(pre.bn2(pre.conv1(activated)))) + shortcut)


@pytest.mark.parametrize("name", ["resnet34", "preact_resnet18"])
def test_cifar_networks_keep_32_pixels_through_the_first_stage_and_average_the_last(name: str) -> None:
    """The 3×3 stride-1 stem (conv-BN-ReLU) hands the stages a 32×32 map; the three later stages halve it to 4×4, and
    the head reads each channel's mean over it (global average pooling)."""
    model = build_model(ModelConfig(name=name), (3, 32, 32), 10).eval()
    seen: dict[str, torch.Tensor] = {}
    model.stages.register_forward_hook(lambda module, inputs, output: seen.update(stem=inputs[0], stages=output))
    model.head.register_forward_hook(lambda module, inputs, output: seen.update(head=inputs[0]))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert seen["stem"].shape == (2, 64, 32, 32) and seen["stem"].min() == 0 < seen["stem"].max()
    assert seen["stages"].shape == (2, 512, 4, 4)
    torch.testing.assert_close(seen["head"], seen["stages"].mean(dim=(2, 3)))


def test_inception_resnet_v2_has_the_residual_scales_norms_and_poolings_of_the_original() -> None:
    """As Szegedy et al. (2017) and the official ELR+ code build it: residuals scaled 0.17 (10 A blocks), 0.10 (20 B),
    0.20 (9 C) and 1.0 in the last C block, the only one without a ReLU; BatchNorm eps 0.001 (TensorFlow's);
    mixed 5b's 3×3 average over the real pixels alone; global average pooling before the classifier."""
    from elr_mri.models.inception_resnet_v2 import InceptionResNetV2, ResidualInception

    with torch.device("meta"):  # the structure alone: 55 M parameters are not drawn
        model = InceptionResNetV2(50)
    blocks = [m for m in model.features if isinstance(m, ResidualInception)]
    assert [b.scale for b in blocks] == [0.17] * 10 + [0.10] * 20 + [0.20] * 9 + [1.0]
    assert [type(b.relu).__name__ for b in blocks] == ["ReLU"] * 39 + ["Identity"]
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.001}
    assert [m.count_include_pad for m in model.modules() if isinstance(m, torch.nn.AvgPool2d)] == [False]
    assert isinstance(model.pool, torch.nn.AdaptiveAvgPool2d)


def test_a_residual_inception_block_adds_its_scaled_projection_before_the_relu() -> None:
    from elr_mri.models.inception_resnet_v2 import block35

    torch.manual_seed(0)
    block = block35().eval()
    x = torch.randn(1, 320, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x + 0.17 * block.project(block.branches(x))))


def test_the_factorised_convolutions_of_the_inception_blocks_keep_the_grid() -> None:
    """Every stride-1 convolution inside an A, B or C block pads half its kernel on each axis, so a 1×7 keeps the
    height and the width alike; padded across (3 rows, no columns) it and the 7×1 after it made a 17×17 map 23×11
    and back, a network of the same size and output shape that saw other neighbourhoods."""
    from elr_mri.models.inception_resnet_v2 import block8, block17, block35

    with torch.device("meta"):
        for block in (block35(), block17(), block8()):
            for conv in (m for m in block.branches.modules() if isinstance(m, torch.nn.Conv2d)):
                assert conv(torch.empty(1, conv.in_channels, 9, 9)).shape[2:] == (9, 9), conv


def test_only_a_clothing1m_run_without_pretrained_weights_is_told_it_lacks_the_papers() -> None:
    """The paper fine-tunes Clothing1M's ResNet-50 from ImageNet weights: a run given a checkpoint is that setting and
    gets no note, nor does a run of another data set."""
    from elr_mri.config import config_from_dict
    from elr_mri.models import lacks_the_papers_pretrained_weights

    clothing = {"name": "clothing1m", "root": "data/clothing1m"}
    assert lacks_the_papers_pretrained_weights(config_from_dict({"data": clothing, "model": {"name": "resnet50"}}))
    given = {"name": "resnet50", "pretrained_checkpoint": "imagenet_resnet50.pt"}
    assert not lacks_the_papers_pretrained_weights(config_from_dict({"data": clothing, "model": given}))
    assert not lacks_the_papers_pretrained_weights(config_from_dict({"data": {"name": "digits"}, "model": {"name": "mlp"}}))


def test_a_checkpoint_with_one_wrapped_key_among_the_networks_is_not_called_a_wrapper(tmp_path: Path) -> None:
    """Only a file whose every key starts with 'module.' was saved from a DataParallel wrapper; one stray key of that
    name among the network's own is a key the network lacks, named as such."""
    weights = build_model(ModelConfig(name="small_cnn", hidden=16), (3, 8, 8), 14).state_dict()
    path = tmp_path / "weights.pt"
    torch.save({**weights, "module.extra": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"keys not in small_cnn: \['module.extra'\]"):
        build_model(ModelConfig(name="small_cnn", hidden=16, pretrained_checkpoint=str(path)), (3, 8, 8), 14)
