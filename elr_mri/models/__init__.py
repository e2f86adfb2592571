"""Networks by name, so a config picks one with `model.name`."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from elr_mri.config import ModelConfig, RunConfig
from elr_mri.models.resnet_cifar import preact_resnet18, resnet34
from elr_mri.models.small import MLP, SmallCNN

__all__ = ["build_model", "MODEL_NAMES"]


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


def _monai_3d(name: str) -> Callable[[tuple[int, ...], int, ModelConfig], nn.Module]:
    def build(input_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig) -> nn.Module:
        from elr_mri.models.widened_cnn import monai_baseline

        return monai_baseline(name, in_channels=input_shape[0], num_classes=num_classes)

    return build


_BUILDERS: dict[str, Callable[[tuple[int, ...], int, ModelConfig], nn.Module]] = {
    "mlp": lambda shape, n, cfg: MLP(shape, n, hidden=cfg.hidden),
    "small_cnn": lambda shape, n, cfg: SmallCNN(shape, n, hidden=cfg.hidden),
    "resnet34": lambda shape, n, cfg: resnet34(n, in_channels=shape[0]),
    "preact_resnet18": lambda shape, n, cfg: preact_resnet18(n, in_channels=shape[0]),
    "resnet50": _resnet50,
    "inception_resnet_v2": _inception_resnet_v2,
    "widened_cnn3d": _widened_cnn3d,
    "resnet18_3d": _monai_3d("resnet18"),
    "densenet121_3d": _monai_3d("densenet121"),
}
MODEL_NAMES = tuple(sorted(_BUILDERS))


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Instantiate `cfg.name`; load `cfg.pretrained_checkpoint` (a state dict) when given."""
    if cfg.name not in _BUILDERS:
        raise ValueError(f"model.name = {cfg.name!r} is not one of {', '.join(MODEL_NAMES)}")
    model = _BUILDERS[cfg.name](tuple(input_shape), num_classes, cfg)
    if cfg.pretrained_checkpoint:
        _load_pretrained(model, cfg.pretrained_checkpoint, cfg.name)
    return model


def lacks_the_papers_pretrained_weights(cfg: RunConfig) -> bool:
    """Clothing1M: the paper fine-tunes an ImageNet-pretrained ResNet-50; from random weights the run is
    another experiment than the table row it is compared with."""
    return cfg.data.name == "clothing1m" and not cfg.model.pretrained_checkpoint


def _load_pretrained(model: nn.Module, path: str, name: str) -> None:
    """Load a backbone's weights; only the classifier head (the last Linear layer) may be absent or of another size
    (ImageNet's 1000 classes) and stay new. Why so strict: a ResNet-18 file shares most of ResNet-50's key names, and
    a file of a few layers loaded those and left the rest random, a run "from ImageNet weights" without a word."""
    state = _read_state_dict(path)
    own = model.state_dict()
    unexpected = [key for key in state if key not in own]
    if unexpected:
        raise ValueError(f"{path}: keys not in {name}: {unexpected[:3]}; is it a {name} state dict?")
    head = _head_keys(model)
    resized = [key for key, value in state.items() if value.shape != own[key].shape]
    misfit = [key for key in resized if key not in head]
    if misfit:
        raise ValueError(f"{path}: {len(misfit)} tensors differ in shape from {name}'s, e.g. {misfit[0]} "
                         f"{tuple(state[misfit[0]].shape)} against {tuple(own[misfit[0]].shape)}; is it a {name} "
                         "state dict?")
    # BatchNorm's counter is absent from checkpoints saved before PyTorch 0.4.1 (torchvision's first ImageNet files)
    missing = [key for key in own if key not in state and key not in head and not key.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path}: lacks {len(missing)} of {name}'s {len(own)} tensors, e.g. {missing[0]}; save the "
                         "whole network's weights with torch.save(model.state_dict(), PATH)")
    model.load_state_dict({k: v for k, v in state.items() if k not in resized}, strict=False)
    if resized:
        print(f"{path}: kept {name}'s new {', '.join(resized)} (the checkpoint's have another shape: its head)")


def _head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classifier head: the last Linear layer, as every network here ends."""
    linears = [prefix for prefix, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        return set()
    return {f"{linears[-1]}.{key}" for key in model.get_submodule(linears[-1]).state_dict()}


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """`model.pretrained_checkpoint` as a state dict; anything else is one line saying how to save one."""
    how = "save the weights with torch.save(model.state_dict(), PATH)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"model.pretrained_checkpoint = {path}: file not found; pass an existing "
                                "state-dict file, or drop the setting to start from random weights") from None
    except Exception as err:  # noqa: BLE001 - pickle, zip and weights-only refusals all mean the same here
        reason = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"model.pretrained_checkpoint = {path}: not a state dict torch can read safely "
                         f"({type(err).__name__}: {reason[:120]}); {how}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"model.pretrained_checkpoint = {path}: holds a {type(state).__name__}, not a state dict "
                         f"of tensors; {how}")
    return state
