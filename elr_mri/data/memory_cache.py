"""`data.mri.cache: memory` filled without keeping the memory its steps freed.

Filling it, glibc kept what each scan's loading freed (its decoded and intermediate copies) in the heap between the
cached volumes: at 1 mm the process grew by 44–64 MB a scan for 25 MB cached, so a cache that fitted by its size was
killed all the same. Released after each scan, the growth is the volumes' own.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable

from monai.data import CacheDataset

__all__ = ["MemoryCache"]


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
