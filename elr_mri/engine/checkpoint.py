"""Atomic checkpoints that load with ``torch.load(weights_only=True)``, RNG state included.

A killed run must never leave a half-written file that looks complete, so every file is written
to a temporary name in the same directory and renamed over the target.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from elr_mri.stopping import holding_ctrl_c
from preprocess.sidecar import atomic_path, nearest_existing
from preprocess.user_errors import TRAINING_RESUMES, StorageError, file_size_limit

__all__ = ["CheckpointError", "atomic_save", "load_checkpoint", "unsafe_objects", "capture_rng", "restore_rng",
           "host_copy"]


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename it into place. The file is opened here, so
    a read-only or forbidden folder is the OS's own error; torch's writer reports a write the disk refused
    part-way as "unexpected pos", said here as the OS's error that write met (recorded on the way), else as the full
    disk it almost always is. Ctrl-C waits for the write."""
    refusals: list[OSError] = []
    try:  # around atomic_path, which would add the file's name to this line that names it already
        with holding_ctrl_c(), atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                torch.save(obj, _RecordingWrites(handle, refusals))
    except (RuntimeError, OSError) as err:  # closing the file after torch's failed write raises the OS's error again
        refused = err if isinstance(err, OSError) else next(iter(refusals), None)
        if refused is None and ("unexpected pos" in str(err) or "file write failed" in str(err)):
            refused = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if refused is None or refused.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        reason = str(err).strip() if isinstance(err, RuntimeError) and not refusals else refused.strerror
        if refused.errno == errno.EFBIG:
            raise StorageError(errno.EFBIG, f"{path} could not be written ({reason}): {file_size_limit()}; then "
                                            f"run the command again ({TRAINING_RESUMES}") from None
        raise StorageError(errno.ENOSPC, f"{path} could not be written ({reason}; {_room_left(Path(path).parent)}): free "
                                         "space, or write elsewhere, and run the command again "
                                         f"({TRAINING_RESUMES}") from None


def _room_left(folder: Path) -> str:
    """What the disk under `folder` has left, in words. Asked of the nearest folder there: a full disk can refuse the
    folder itself (the first checkpoint's `checkpoints/`), and asking about that one hid the full disk behind "No such
    file or directory". Free MiB with no file left to make is a disk whose inodes are used up (many small files)."""
    stats = os.statvfs(nearest_existing(folder))
    free = f"{stats.f_bavail * stats.f_frsize / 2**20:.0f} MiB free there"
    if stats.f_files > 0 and stats.f_favail == 0:  # f_files 0: a file system without an inode count (btrfs)
        return f"{free}, but no new file: its inodes are used up"
    return free


class _RecordingWrites:
    """A file for torch.save that keeps the OS's error from a write: torch's writer drops it for "unexpected pos"."""

    def __init__(self, handle: BinaryIO, refusals: list[OSError]) -> None:
        self._handle, self._refusals = handle, refusals

    def write(self, data: bytes) -> int:
        try:
            return self._handle.write(data)
        except OSError as err:
            self._refusals.append(err)
            raise

    def flush(self) -> None:
        self._handle.flush()


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


def unsafe_objects(path: str | Path, err: Exception, allowed: list | None = None) -> str:
    """The first Python objects (e.g. `posix.system`) for which torch.load(weights_only=True), allowing `allowed`
    besides torch's own (`torch.serialization.safe_globals`), refused `path` with `err`; "" where it refused it for
    another reason (torch says "weights only load failed" of a text file too). Torch's own words suggested loading
    with weights_only=False, which runs whatever code a shared file holds."""
    if not isinstance(err, pickle.UnpicklingError) or "weights only load failed" not in str(err).lower():
        return ""
    try:
        with torch.serialization.safe_globals(allowed or []):
            return ", ".join(sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))[:3])
    except Exception:  # noqa: BLE001 - a file torch cannot list is damaged, not one of objects
        return ""


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
    np_state = np.random.get_state()
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

