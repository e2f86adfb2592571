"""Checkpoints that load with ``torch.load(weights_only=True)``, RNG state included.

A killed run must never leave a half-written file that looks complete, so every file is written
to a temporary name in the same directory and renamed over the target (`elr_mri.tensor_files.atomic_save`).
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from elr_mri.tensor_files import unsafe_objects

__all__ = ["CheckpointError", "load_checkpoint", "capture_rng", "restore_rng", "host_copy"]


def host_copy(state: Any) -> Any:
    """A copy of a nested state (dicts, lists, tensors) with every tensor copied to host memory: state
    dicts hand out the live tensors, which the next training step would change."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: host_copy(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(host_copy(value) for value in state)
    return state


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be loaded (damaged, cut short, not a checkpoint)."""


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint; a damaged file raises `CheckpointError` naming it (torch's errors do not). `mmap`: tensors
    are read from the file only when used (a look at its epoch costs no weights)."""
    try:
        if not mmap:
            _check_record_sums(path)
        else:  # the archive's index alone: torch's mmap reader calls an empty or cut-short file an old format
            zipfile.ZipFile(path).close()
        saved = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - zip, pickle and EOF errors all mean the same here
        unsafe = unsafe_objects(path, err)
        if unsafe:
            raise CheckpointError(f"{path}: not loaded, as it holds Python objects ({unsafe}) that only running code "
                                  "from the file could make: `elr-mri train` writes none, so it is another program's "
                                  "file (or one made to run code); restore the run's own from a copy") from None
        reason = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {reason}); written "
                              "atomically by the engine, so something else damaged it: restore it from a "
                              "copy, or delete the run directory and train again") from err
    if not isinstance(saved, dict):  # its callers look up entries: a list stopped at an AttributeError traceback
        raise CheckpointError(f"{path}: not a checkpoint of `elr-mri train` (it holds a {type(saved).__name__}, not a "
                              "dict); restore the run's own from a copy")
    return saved


def _check_record_sums(path: Path) -> None:
    """Read every record of the checkpoint's zip archive to its end, where zipfile compares its CRC-32. Why:
    torch.save writes the sums but torch.load never reads them, so a bit flipped on disk in a tensor loaded as a
    wrong weight and a resume trained on from it without a word. A record without a sum (CRC 0: torch's
    `compute_crc32` switched off) is not read. Whole loads only: an mmap look at the epoch reads no weights."""
    with zipfile.ZipFile(path) as archive:
        for record in archive.infolist():
            if record.CRC:
                with archive.open(record) as stream:
                    while stream.read(1 << 24):
                        pass


def capture_rng(cuda: bool = True) -> dict[str, Any]:
    """Python, NumPy and torch generator states as tensors and plain values (weights_only-safe); the GPU's with
    `cuda` where one is visible (reading it starts CUDA)."""
    # the legacy tuple (name, keys, position, has_gauss, cached_gaussian): the global state is always MT19937
    np_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_rest": [int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if cuda and torch.cuda.is_available():  # this process's device only: a machine with other GPUs visible can resume it
        state["cuda"] = torch.cuda.get_rng_state(torch.cuda.current_device())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        device = torch.cuda.current_device()
        saved = state["cuda"]
        if isinstance(saved, list):  # checkpoints before 2026-12: a state for every GPU the saving process saw
            saved = saved[device] if device < len(saved) else saved[0]
        torch.cuda.set_rng_state(saved, device)

