"""Tensor files (torch.save's) written atomically, and the Python objects for which torch's weights-only load refused
one. The engine's checkpoints, the data's disk cache and label files and the models' pretrained weights all use them:
kept apart from the training engine, so that data and models need not import it.
"""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import torch

from elr_mri.stopping import holding_ctrl_c
from preprocess.sidecar import atomic_path, nearest_existing
from preprocess.user_errors import TRAINING_RESUMES, StorageError, file_size_limit

__all__ = ["atomic_save", "unsafe_objects"]


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename it into place. The file is opened here, so
    a read-only or forbidden folder is the OS's own error; torch's writer reports a write the disk refused
    part-way as "unexpected pos", said here as the OS's error that write met (recorded on the way), else as the full
    disk it almost always is. Ctrl-C waits for the write."""
    refusals: list[OSError] = []
    try:  # around atomic_path, which would add the file's name to this line that names it already
        with holding_ctrl_c(), atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                torch.save(obj, _RecordingWrites(handle, refusals))  # type: ignore[arg-type]  # write and flush do
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
