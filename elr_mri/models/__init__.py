"""Networks by name, so a config picks one with `model.name`.

No torch at import: a config's checks read here which networks take volumes and the widened CNN's smallest crop, and
loading a config should not cost torch's import, so each builder imports its network when it is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:
    from torch import nn

    from elr_mri.config import ModelConfig, RunConfig

__all__ = ["build_model", "MODEL_NAMES", "VOLUME_MODELS", "MIN_INPUT_SIZE", "lacks_the_papers_pretrained_weights",
           "uses_age"]

MIN_INPUT_SIZE = 71  # the widened 3D CNN's smallest crop: it leaves 2 voxels per axis after the last convolution

Builder = Callable[[tuple[int, ...], int, "ModelConfig"], "nn.Module"]


def _mlp(input_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig) -> nn.Module:
    from elr_mri.models.small import MLP

    return MLP(input_shape, num_classes, hidden=cfg.hidden)


def _small_cnn(input_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig) -> nn.Module:
    from elr_mri.models.small import SmallCNN

    return SmallCNN(input_shape, num_classes, hidden=cfg.hidden)


def _resnet34(input_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig) -> nn.Module:
    from elr_mri.models.resnet_cifar import resnet34

    return resnet34(num_classes, in_channels=input_shape[0])


def _preact_resnet18(input_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig) -> nn.Module:
    from elr_mri.models.resnet_cifar import preact_resnet18

    return preact_resnet18(num_classes, in_channels=input_shape[0])


def _resnet50(input_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig) -> nn.Module:
    """ImageNet ResNet-50 (Clothing1M) from MONAI; pretrained weights come from a local checkpoint.

    MONAI's defaults differ from the ImageNet network (torchvision's, whose weights the paper starts
    from): a stride-1 stem, which runs every layer at twice the resolution, and biased shortcut
    convolutions that ImageNet weights leave random. Both are set as ImageNet has them.
    """
    from monai.networks.nets import resnet50

    return resnet50(spatial_dims=2, n_input_channels=input_shape[0], num_classes=num_classes, conv1_t_stride=2,
                    bias_downsample=False)


def _inception_resnet_v2(input_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig) -> nn.Module:
    """InceptionResNetV2 of the paper's WebVision run, trained from scratch as there."""
    from elr_mri.models.inception_resnet_v2 import InceptionResNetV2

    return InceptionResNetV2(num_classes, in_channels=input_shape[0])


def _widened_cnn3d(input_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig) -> nn.Module:
    from elr_mri.models.widened_cnn import WidenedCNN3D

    return WidenedCNN3D(input_shape[0], num_classes, widening=cfg.widening, use_age=cfg.use_age,
                        input_size=input_shape[1:])


def _monai_3d(name: Literal["resnet18", "densenet121"]) -> Builder:
    def build(input_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig) -> nn.Module:
        from elr_mri.models.widened_cnn import monai_baseline

        return monai_baseline(name, in_channels=input_shape[0], num_classes=num_classes)

    return build


# The networks that take 2D images, and those that take MRI volumes and the age (which data a config may give each).
_IMAGE_BUILDERS: dict[str, Builder] = {
    "mlp": _mlp, "small_cnn": _small_cnn, "resnet34": _resnet34, "preact_resnet18": _preact_resnet18,
    "resnet50": _resnet50, "inception_resnet_v2": _inception_resnet_v2,
}
_VOLUME_BUILDERS: dict[str, Builder] = {
    "widened_cnn3d": _widened_cnn3d, "resnet18_3d": _monai_3d("resnet18"), "densenet121_3d": _monai_3d("densenet121"),
}
_BUILDERS = {**_IMAGE_BUILDERS, **_VOLUME_BUILDERS}
MODEL_NAMES = tuple(sorted(_BUILDERS))
VOLUME_MODELS = tuple(_VOLUME_BUILDERS)


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Instantiate `cfg.name`; load `cfg.pretrained_checkpoint` (a state dict) when given."""
    if cfg.name not in _BUILDERS:
        raise ValueError(f"model.name = {cfg.name!r} is not one of {', '.join(MODEL_NAMES)}")
    model = _BUILDERS[cfg.name](tuple(input_shape), num_classes, cfg)
    if cfg.pretrained_checkpoint:
        from elr_mri.models.pretrained import load_pretrained

        load_pretrained(model, cfg.pretrained_checkpoint, cfg.name)
    return model


def lacks_the_papers_pretrained_weights(cfg: RunConfig) -> bool:
    """Clothing1M: the paper fine-tunes an ImageNet-pretrained ResNet-50; from random weights the run is
    another experiment than the table row it is compared with."""
    return cfg.data.name == "clothing1m" and not cfg.model.pretrained_checkpoint


def uses_age(cfg: RunConfig) -> bool:
    """Whether the configured model reads the subject's age (only the widened 3D CNN can): training and scoring a
    run both ask it, to refuse scans without an age before a network needs one."""
    return cfg.model.name == "widened_cnn3d" and cfg.model.use_age
