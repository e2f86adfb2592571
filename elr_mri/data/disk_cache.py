"""`data.mri.cache: disk`: MONAI's PersistentDataset with each cached volume written beside its final name.

MONAI writes a cached volume in the system's temporary folder and then moves it into the cache. Where the cache is
on another drive (a local /tmp and the cache on shared storage, as on most clusters) that move is a copy, so a job
killed during it left a file cut short under the final name, and every later run stopped at it with torch's zip
error and a traceback. Here the file is renamed into place only once written, and a cached file that cannot be read
(one left so by an earlier version) is made again from the scan. A cache folder that cannot be written (a lab's cache
shared read-only) is read, and said so once: MONAI served it uncached without a word where the OS said "permission
denied", and a read-only mount stopped the first batch with a traceback. A cache folder on a full disk is served
the same way, said once: torch's writer stopped the run with "unexpected pos" and a traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
from copy import deepcopy
from functools import partial
from pathlib import Path
from shutil import disk_usage
from typing import Any, Callable, Iterable, Mapping, Sequence, cast

import torch
from monai.data import PersistentDataset
from monai.data.utils import pickle_hashing
from monai.utils import convert_to_tensor

from elr_mri.data.cohort import warn_once
from elr_mri.tensor_files import atomic_save, unsafe_objects
from preprocess.memory import gigabytes
from preprocess.sidecar import cannot_write, nearest_existing
from preprocess.user_errors import StorageError, file_size_limit

__all__ = ["DiskCache", "cached_file", "warn_if_the_disk_cannot_hold"]

log = logging.getLogger(__name__)


class DiskCache(PersistentDataset):
    """The items of `data` with the steps of `transform` before the first random one cached in `cache_dir`."""

    def __init__(self, data: Sequence[dict], transform: Callable, cache_dir: str | Path) -> None:
        folder = Path(cache_dir)
        if folder.exists() and not folder.is_dir():  # MONAI said only "cache_dir must be a directory."
            raise ValueError(f"data.mri.cache_dir = {folder} is a file, not a folder; name a folder for the cached "
                             "volumes (one that is not there is made)")
        try:
            reason = cannot_write(folder)
        except StorageError as full:  # as a cache that cannot be written: read, the rest made from the scans
            reason = os.strerror(full.errno)
        if reason is not None and not folder.is_dir():
            raise ValueError(f"data.mri.cache_dir = {folder} cannot be made ({reason}); name a folder you can write, "
                             "or set data.mri.cache: memory")
        self.read_only = reason is not None
        if self.read_only:
            warn_once(f"data.mri.cache_dir = {folder}: cannot write there ({reason}); the volumes cached there are "
                      "read, every other one is made from its scan each time it is loaded; name a folder you can "
                      "write to cache them")
        super().__init__(data, transform, cache_dir=folder)

    def _cachecheck(self, item_transformed: Any) -> Any:
        path = cached_file(cast(Path, self.cache_dir), item_transformed)  # given to __init__, never None
        if path.is_file():
            try:
                return torch.load(path, weights_only=True)  # plain tensors (below): no pickled code runs
            except PermissionError as err:  # another user's file: made from its scan, theirs left as it is
                self._uncached(err)
                return self._pre_transform(deepcopy(item_transformed))
            except (RuntimeError, EOFError, pickle.UnpicklingError) as err:  # cut short, or not torch's
                reason = _why_unread(path, err)
                log.warning("%s: a cached volume that cannot be read (%s); made again from its scan", path, reason)
        cached = self._pre_transform(deepcopy(item_transformed))  # the item itself is what the file is named by
        if self.read_only:
            return cached
        try:
            # MetaTensors saved as plain tensors, numbers kept: what loads with weights_only (set here, not read
            # from MONAI's attributes, which only 1.6 has)
            atomic_save(_compact(convert_to_tensor(cached, convert_numeric=False, track_meta=False)), path)
        except PermissionError as err:  # made unwritable since, or a file of another user's there: served uncached
            self._uncached(err)
        except StorageError as full:  # torch's writer said "unexpected pos", a traceback that stopped the run
            self.read_only = True
            fix = file_size_limit() if full.errno == errno.EFBIG else "free space there to cache them"
            warn_once(f"data.mri.cache_dir = {self.cache_dir}: {os.strerror(full.errno)} there, so the volumes not "
                      f"cached yet are made from their scans each time they are loaded; {fix}")
        return cached

    def _uncached(self, err: PermissionError) -> None:
        """Say once a run that some volumes are made from their scans each time: the OS refused a cached file (one
        of another user's in a shared cache), and only the slower epochs showed it."""
        warn_once(f"data.mri.cache_dir = {self.cache_dir}: a cached volume there cannot be read or replaced "
                  f"({err.strerror}; another user's file?); such volumes are made from their scans each time they are "
                  "loaded; name a folder of your own to cache them")


def cached_file(cache_dir: Path, item: dict) -> Path:
    """The file `item`'s volume is cached in: named by MONAI's hash of the item (its path and `cache_key`, which
    hold the scan's size, mtime and the cached steps' settings), as `PersistentDataset` names it."""
    return cache_dir / f"{pickle_hashing(item).decode('utf-8')}.pt"


def warn_if_the_disk_cannot_hold(cache_dir: str | Path, needed: int, items: Iterable[dict]) -> None:
    """Say before a run whose disk cache (`needed` bytes in all for `items`) outgrows the free space of its disk: it
    fills the disk, then reads the volumes left from their scans each time, and the run's other writes to that disk
    fail. Only the files of `items` count as held: those of another crop or cohort in the folder are not this run's."""
    folder = Path(cache_dir)
    held = sum(path.stat().st_size for path in map(partial(cached_file, folder), items) if path.is_file())
    free = disk_usage(nearest_existing(folder.absolute())).free
    if needed - held <= free:
        return
    warn_once(f"data.mri.cache_dir = {folder}: the cache needs {gigabytes(needed)} ({gigabytes(needed - held)} more "
              f"than it holds for this run's scans and settings) but {gigabytes(free)} is free there; once the disk "
              "is full the volumes left are read from their scans each time and other writes to that disk (a run's "
              "checkpoints there) fail; free space there, or name a folder on a larger disk")


def _compact(item: Any) -> Any:
    """`item` with each tensor in a storage of its own size: torch.save writes a view's whole storage, so an
    evaluation crop, a view of its volume, was cached (and read back each epoch) as the whole 25 MB 1 mm volume."""
    if isinstance(item, Mapping):
        return {key: _compact(value) for key, value in item.items()}
    if isinstance(item, torch.Tensor) and item.untyped_storage().nbytes() > item.numel() * item.element_size():
        return item.clone(memory_format=torch.contiguous_format)
    return item


def _why_unread(path: Path, err: Exception) -> str:
    """Why torch refused a cached volume, in one line: for a file holding code (a shared cache), the objects, not
    torch's first line, which invited loading it with weights_only=False."""
    unsafe = unsafe_objects(path, err)
    if unsafe:
        return f"it holds Python objects ({unsafe}) that only running code from it could make, so it was not loaded"
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
