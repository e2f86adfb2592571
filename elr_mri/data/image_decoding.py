"""Image files decoded to RGB: one at a time (`read_rgb`, as the listed benchmarks' files are read each epoch) or a
whole folder split at once (`decode_all`) in forked processes, since Python reading a small JPEG's headers, not
Pillow's decoding, is most of its time. An undecodable file is an `ImageReadError` naming it.
"""

from __future__ import annotations

import sys
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from elr_mri.stopping import stop_if_terminated
from preprocess.cores import usable_cores
from preprocess.workers import forked_on_linux

__all__ = ["ImageReadError", "read_rgb", "decode_all"]

DECODE_CHUNK = 1024  # images one decoding task reads (CIFAR-10's 50,000: 49 tasks)


class ImageReadError(ValueError):
    """An image file that exists but cannot be decoded (truncated, empty, not an image)."""


def read_rgb(path: str | Path, how_to_fix: str = "remove or replace the file") -> Image.Image:
    """The image at `path` converted to RGB; an undecodable file raises `ImageReadError` naming it and `how_to_fix`."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        reason = (str(err).strip().splitlines() or [""])[0]
        raise ImageReadError(f"{path}: cannot be read as an image ({type(err).__name__}: {reason}); {how_to_fix}") \
            from err


def decode_all(paths: list[Path]) -> np.ndarray:
    """Decode in parallel (`_decoding_pool`) and stack same-sized images.

    Every image is tried before failing, so one error counts all the unreadable files."""
    # A few dozen tasks, not one per image: submitting 50,000 takes long enough for Ctrl-C to land inside
    # the pool's own locking and leave it hung; and on Ctrl-C the chunks still queued are dropped, where a
    # `with` block would decode every image first.
    chunks = [paths[start : start + DECODE_CHUNK] for start in range(0, len(paths), DECODE_CHUNK)]
    pool = _decoding_pool(len(chunks))
    arrays: list[np.ndarray | ImageReadError] = []
    try:
        for chunk in pool.map(_decode_chunk, chunks):
            stop_if_terminated()  # `train`'s SIGTERM acts here: after the whole folder, CIFAR-10's took 5–40 s
            arrays.extend(chunk)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    unreadable = [a for a in arrays if isinstance(a, ImageReadError)]
    if unreadable:
        raise ImageReadError(f"{len(unreadable)} of {len(paths)} images cannot be read, e.g. {unreadable[0]}")
    images = cast(list[np.ndarray], arrays)  # none is an ImageReadError: refused above
    first_of_size: dict[tuple[int, ...], Path] = {}
    for path, array in zip(paths, images):
        first_of_size.setdefault(array.shape, path)
    if len(first_of_size) > 1:
        examples = ", ".join(f"{path} is {shape[1]}x{shape[0]}" for shape, path in list(first_of_size.items())[:2])
        raise ValueError(f"images under {paths[0].parent.parent} differ in size ({examples}); an in-memory "
                         "image folder needs one size: resize them, or remove the odd ones")
    return np.stack(images).transpose(0, 3, 1, 2).copy()


def _decoding_pool(chunks: int) -> Executor:
    """Forked processes, one a usable core, where Linux can fork and there is more than one chunk; 8 threads
    otherwise. Why processes: Pillow releases the GIL while decoding, but for a 32×32 JPEG most of the ~200 µs is
    Python reading its headers, under the GIL: CIFAR-10's 50,000 training images took 12.9 s with 8 threads and
    3.7 s with 2 processes on a 2-core machine. Forked, not spawned: nothing is re-imported and the children only
    run Pillow and NumPy (as DataLoader workers, safe beside a CUDA context they never touch)."""
    cores = usable_cores()
    if chunks > 1 and cores > 1 and sys.platform == "linux":
        return ProcessPoolExecutor(max_workers=min(chunks, cores), mp_context=forked_on_linux())
    return ThreadPoolExecutor(max_workers=8)


def _decode_chunk(paths: list[Path]) -> list[np.ndarray | ImageReadError]:
    return [_decode_rgb_or_error(path) for path in paths]


def _decode_rgb_or_error(path: Path) -> np.ndarray | ImageReadError:
    try:
        return np.asarray(read_rgb(path), dtype=np.uint8)
    except ImageReadError as err:
        return err
