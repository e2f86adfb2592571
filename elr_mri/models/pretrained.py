"""Pretrained weights for a network `build_model` made: a state dict checked key by key, so that a file of another
network is refused instead of loaded in part."""

from __future__ import annotations

import torch
from torch import nn

from elr_mri.tensor_files import unsafe_objects

__all__ = ["load_pretrained"]

# Settings besides model.name that size a network's tensors: a file of that network saved under other values has its
# key names, but not their shapes (or not the age encoding's keys), and was refused as if of another network.
_SIZING_SETTINGS = {
    "mlp": "model.hidden",
    "small_cnn": "model.hidden",
    "widened_cnn3d": "model.widening, model.use_age and data.mri.crop_size (the first linear layer follows the crop)",
}


def load_pretrained(model: nn.Module, path: str, name: str) -> None:
    """Load a backbone's weights; only the classifier head (the last Linear layer) may be absent or of another size
    (ImageNet's 1000 classes) and stay new. Why so strict: a ResNet-18 file shares most of ResNet-50's key names, and
    a file of a few layers loaded those and left the rest random, a run "from ImageNet weights" without a word."""
    state = _read_state_dict(path)
    own = model.state_dict()
    unexpected = [key for key in state if key not in own]
    if unexpected and all(key.startswith("module.") for key in state):
        raise ValueError(f"{path}: every key starts with 'module.' (saved from a DataParallel or DistributedDataParallel "
                         "wrapper); save the network inside it, torch.save(model.module.state_dict(), PATH)")
    if unexpected:
        raise ValueError(f"{path}: keys not in {name}: {unexpected[:3]}; is it a {name} state dict{_sized_alike(name)}")
    head = _head_keys(model)
    resized = [key for key, value in state.items() if value.shape != own[key].shape]
    misfit = [key for key in resized if key not in head]
    if misfit:
        raise ValueError(f"{path}: {len(misfit)} tensors differ in shape from {name}'s, e.g. {misfit[0]} "
                         f"{tuple(state[misfit[0]].shape)} against {tuple(own[misfit[0]].shape)}; is it a {name} "
                         f"state dict{_sized_alike(name)}")
    # BatchNorm's counter is absent from checkpoints saved before PyTorch 0.4.1 (torchvision's first ImageNet files)
    missing = [key for key in own if key not in state and key not in head and not key.endswith("num_batches_tracked")]
    if missing:
        settings = f", or set {_SIZING_SETTINGS[name]} as they were" if name in _SIZING_SETTINGS else ""
        raise ValueError(f"{path}: lacks {len(missing)} of {name}'s {len(own)} tensors, e.g. {missing[0]}; save the "
                         f"whole network's weights with torch.save(model.state_dict(), PATH){settings}")
    model.load_state_dict({k: v for k, v in state.items() if k not in resized}, strict=False)
    if resized:
        print(f"{path}: kept {name}'s new {', '.join(resized)} (the checkpoint's have another shape: its head)")


def _sized_alike(name: str) -> str:
    """The end of the question a misfit file gets: for a network that settings size, saved with the same ones?"""
    settings = _SIZING_SETTINGS.get(name)
    return f" saved with the same {settings}? set them as they were when it was saved" if settings else "?"


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
        unsafe = unsafe_objects(path, err)
        if unsafe:
            raise ValueError(f"model.pretrained_checkpoint = {path}: not loaded, as it holds Python objects ({unsafe}) "
                             f"that only running code from the file could make; {how}") from None
        reason = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"model.pretrained_checkpoint = {path}: not a state dict torch can read safely "
                         f"({type(err).__name__}: {reason[:120]}); {how}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"model.pretrained_checkpoint = {path}: holds a {type(state).__name__}, not a state dict "
                         f"of tensors; {_weights_inside(state) or how}")
    return state


def _weights_inside(state: object) -> str:
    """How to save the state dict a training checkpoint holds under one entry (the official ELR code's and most
    trainers' `state_dict`, a run of ours' `method`/`model`), "" where there is none: told only to save a state dict,
    its owner could not see that the file held one."""
    for keys in (("state_dict",), ("model",), ("method", "model")):
        inner = state
        for key in keys:
            inner = inner.get(key) if isinstance(inner, dict) else None
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            entry = "".join(f"[{key!r}]" for key in keys)
            return f"its {entry} entry holds one: save that, torch.save(torch.load(PATH){entry}, NEW_PATH)"
    return ""
