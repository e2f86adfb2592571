"""`data.mri.cache: memory`: checked before it fills, and filled without keeping the memory its steps freed.

The cache holds every training scan whole, as float32 (the random crop is cut from it each epoch), and each evaluation
scan as its centre crop. A real cohort at 1 mm outgrows many nodes: 1000 scans of the 169×208×179 grid are 25 GB, which
would fill for tens of minutes (1.4–3.6 s a scan on a busy 2-core machine) until the OOM killer ended the run, saying
nothing of why. Under torchrun every process on the node fills a cache of its own.

Filling it, glibc kept what each scan's loading freed (its decoded and intermediate copies) in the heap between the
cached volumes: at 1 mm the process grew by 44–64 MB a scan for 25 MB cached, so a cache that fitted by its size was
killed all the same. Released after each scan, the growth is the volumes' own.
"""

from __future__ import annotations

import ctypes
import math
import os
from typing import Any, Callable, Sequence

from monai.data import CacheDataset

from preprocess.memory import available_memory, gigabytes

__all__ = ["MemoryCache", "cache_bytes", "cached_scan_bytes", "require_memory_for_cache"]

FLOAT32_BYTES = 4


def cached_scan_bytes(grid_shape: Sequence[int], crop_size: Sequence[int], whole: bool) -> int:
    """One scan as the cache holds it: the whole volume, padded up to the crop where smaller, or (`whole` False) the
    centre crop alone."""
    kept = [max(size, crop) for size, crop in zip(grid_shape, crop_size)] if whole else list(crop_size)
    return math.prod(int(size) for size in kept) * FLOAT32_BYTES


def cache_bytes(whole_scans: int, cropped_scans: int, grid_shape: Sequence[int], crop_size: Sequence[int]) -> int:
    """A cache of `whole_scans` kept whole and `cropped_scans` kept as their crop, in memory or on disk alike."""
    return (whole_scans * cached_scan_bytes(grid_shape, crop_size, whole=True)
            + cropped_scans * cached_scan_bytes(grid_shape, crop_size, whole=False))


def require_memory_for_cache(whole_scans: int, cropped_scans: int, grid_shape: Sequence[int],
                             crop_size: Sequence[int]) -> None:
    """Refuse a memory cache larger than the memory available (the node's, or what a job's cgroup limit leaves)."""
    per_process = cache_bytes(whole_scans, cropped_scans, grid_shape, crop_size)
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    available = available_memory()
    if available is None or per_process * processes <= available:
        return
    each = f", in each of the node's {processes} torchrun processes" if processes > 1 else ""
    raise ValueError(
        f"data.mri.cache: memory would hold {gigabytes(per_process * processes)} of volumes ({whole_scans} training "
        f"scans whole, {'x'.join(map(str, grid_shape))} voxels as float32, and {cropped_scans} evaluation crops{each}) "
        f"but {gigabytes(available)} of memory is available; set data.mri.cache: disk with a data.mri.cache_dir of "
        f"{gigabytes(per_process)} free, or data.mri.cache: none (each scan read every epoch), or run where more "
        "memory is free")


class MemoryCache(CacheDataset):
    """MONAI's CacheDataset, handing the memory each scan's loading freed back to the OS once the scan is cached."""

    def _load_cache_item(self, idx: int) -> Any:
        item = super()._load_cache_item(idx)
        if _MALLOC_TRIM is not None:
            _MALLOC_TRIM(0)
        return item


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, which returns the free pages of every heap to the OS; None elsewhere (macOS, musl)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()
