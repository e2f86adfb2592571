"""Seconds to read an image folder into memory: forked decoding processes (the default on Linux) against 8 threads.

Why it matters: every CIFAR run starts by decoding 60,000 JPEGs, once per seed and per process. Pillow releases the
GIL while it decodes, but a 32×32 JPEG is mostly header parsing in Python, so threads barely overlap. Both ways
decode the same folder in alternating rounds (a shared, noisy machine affects both alike). Writes
bench/results/image_decode.md (or --out). Needs the folder: mkdir -p data && tar -xJf ../shared/data/cifar/cifar10-jpeg.tar.xz -C data/
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from results_file import command_line, load_line, repository_path, write_report

from elr_mri.config import DataConfig
from elr_mri.data import image_decoding
from elr_mri.data.images import build_image_data
from preprocess.cores import usable_cores
from preprocess.user_errors import output_file

ROOT = Path(__file__).resolve().parents[1]


def seconds_to_build(root: Path, pool: Callable[[int], Executor]) -> tuple[float, set[str]]:
    """Wall time of building the image folder's data set with `pool` making the decoding pool, and the kinds of pool
    it made ("processes", "threads"): the default makes threads for a split of one chunk or on one usable core."""
    default, made = image_decoding._decoding_pool, set()

    def recorded(chunks: int) -> Executor:
        executor = pool(chunks)
        made.add("processes" if isinstance(executor, ProcessPoolExecutor) else "threads")
        return executor

    image_decoding._decoding_pool = recorded
    try:
        started = time.perf_counter()
        build_image_data(DataConfig(name="imagefolder", root=str(root)))
        return time.perf_counter() - started, made
    finally:
        image_decoding._decoding_pool = default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT / "data" / "cifar10", help="image folder (train/, test/)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=output_file, default=ROOT / "bench" / "results" / "image_decode.md")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: must be at least 1")
    if not (args.root / "train").is_dir():
        parser.error(f"no image folder at {args.root}: "
                     "mkdir -p data && tar -xJf ../shared/data/cifar/cifar10-jpeg.tar.xz -C data/")

    def threads(chunks: int) -> Executor:
        return ThreadPoolExecutor(max_workers=8)

    default = "the default"
    ways = {"8 threads": threads, default: image_decoding._decoding_pool}
    times: dict[str, list[float]] = {name: [] for name in ways}
    default_pools: set[str] = set()
    load_start = os.getloadavg()[0]
    for round_index in range(args.rounds):
        order = list(ways.items())
        for name, pool in order[::-1] if round_index % 2 else order:  # alternate which goes first: load drifts
            seconds, made = seconds_to_build(args.root, pool)
            times[name].append(seconds)
            default_pools |= made if name == default else set()
            print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    comparison = compared(medians['8 threads'] / medians[default])
    names = {"8 threads": "8 threads", default: default_label(default_pools)}
    rows = "\n".join(f"| {names[name]} | {', '.join(f'{v:.1f}' for v in values)} |" for name, values in times.items())
    text = f"""# Reading an image folder into memory

Command: `{command_line()}`

Machine: {platform.machine()}, {os.cpu_count()} cores. Folder `{repository_path(args.root)}`; each round builds the data set once
each way (decoding every image, stacking, labels). {load_line(load_start)}

| decoding | seconds, by round |
|---|---|
{rows}

The default is {comparison} 8 threads (medians).
"""
    print(text)
    write_report(args.out, text)


def default_label(pools: set[str]) -> str:
    """The default's row named by the pools it made: forked processes, or 8 threads (as the row above it) for a split
    of one decoding chunk or where one core is usable, which a tiny folder or a pinned job gets."""
    if pools == {"processes"}:
        return "the default (forked processes on Linux)"
    why = ("one core is usable" if usable_cores() == 1 else
           f"a split of at most {image_decoding.DECODE_CHUNK:,} images is one decoding chunk")
    if pools == {"threads"}:
        return f"the default (8 threads here: {why})"
    return f"the default (forked processes, and 8 threads where {why})"


def compared(ratio: float) -> str:
    """The default against 8 threads in words, from 8 threads' seconds over the default's: "as fast as" within 5%
    (the noise of a shared machine), else how many times faster or slower than."""
    if 1 / 1.05 <= ratio <= 1.05:
        return f"as fast (within 5%: {ratio:.2f}×) as"
    return f"**{ratio:.1f}×** faster than" if ratio > 1 else f"**{1 / ratio:.1f}×** slower than"


if __name__ == "__main__":
    main()
