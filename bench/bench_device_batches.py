"""Images/s of one CIFAR-10 training epoch: the per-item DataLoader path against device-resident batches.

Both paths walk the same epoch as the engine does (45,000 images after the 10% validation
hold-out, `GlobalBatchSampler` batches of 128) and produce the same kind of batch; no model runs,
so the figures are the data pipeline's ceiling. The DataLoader is created per epoch as the engine
does, so worker start-up counts. Uses the CIFAR-10 JPEG copy in data/cifar10 (extracted from
../shared/data/cifar/cifar10-jpeg.tar.xz) when it is there, else random uint8 images of the same
shape, and says which. Writes bench/results/device_batches.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import cast

import numpy as np
import torch
from results_file import busy_warning, command_line, failures_line, intra_op_threads, said_failed, write_report
from torch.utils.data import DataLoader

from elr_mri.config import DataConfig
from elr_mri.data.device_batches import DeviceImageBatches
from elr_mri.data.image_transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip, ToFloat
from elr_mri.data.images import CIFAR_PADDING, NORMALISATION, InMemoryImages, build_image_data
from elr_mri.data.seeded_items import SeededItems
from elr_mri.distributed import GlobalBatchSampler
from elr_mri.engine.feeding import worker_start
from preprocess.user_errors import output_file

ROOT = Path(__file__).resolve().parents[1]
CIFAR_JPEG = ROOT / "data" / "cifar10"
TRAIN_SIZE = 45_000  # CIFAR-10's 50,000 less the 10% validation hold-out


def load_train(root: Path | None) -> tuple[InMemoryImages, str]:
    """The training set the engine would build from `root`, or random pixels with the same pipeline (no
    `root`, or none there): timings do not depend on the pixels, and decoding the JPEGs takes tens of seconds."""
    if root is not None and (root / "train").is_dir():
        started = time.perf_counter()
        data = build_image_data(DataConfig(name="imagefolder", root=str(root)))
        train = cast(InMemoryImages, data.train)  # an image folder's pixels are decoded into memory
        return train, f"CIFAR-10 JPEG copy in {root.relative_to(ROOT)} (decoded in {time.perf_counter() - started:.0f} s)"
    images = np.random.default_rng(0).integers(0, 256, (TRAIN_SIZE, 3, 32, 32), dtype=np.uint8)
    mean, std = NORMALISATION["cifar10"]
    transform = Compose([ToFloat(), RandomCrop(32, padding=CIFAR_PADDING), RandomHorizontalFlip(), Normalize(mean, std)])
    return InMemoryImages(images, np.arange(TRAIN_SIZE) % 10, transform), "random uint8" + (f" (no {root})" if root is not None else "")


def epoch_seconds(batches: Callable[[int], Iterable[dict]], epoch: int, sync: Callable[[], None]) -> float:
    """Wall time to draw every batch of one epoch."""
    started = time.perf_counter()
    for _ in batches(epoch):
        pass
    sync()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per path; the median is reported")
    parser.add_argument("--device", default="cpu", help="where the device-resident path runs")
    parser.add_argument("--random-pixels", action="store_true", help="random uint8 images, not the JPEG copy")
    parser.add_argument("--out", type=output_file, default=ROOT / "bench" / "results" / "device_batches.md")
    args = parser.parse_args()
    for flag, value in (("--batch-size", args.batch_size), ("--repeats", args.repeats)):
        if value < 1:
            parser.error(f"{flag} {value}: must be at least 1")
    device = parse_device(parser, args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    train, source = load_train(None if args.random_pixels else CIFAR_JPEG)
    threads = torch.get_num_threads()

    def sampler(epoch: int) -> GlobalBatchSampler:
        return GlobalBatchSampler(len(train), args.batch_size, torch.Generator().manual_seed(epoch))

    resident = DeviceImageBatches.from_dataset(train, device)

    def on_device(epoch: int) -> Iterable[dict]:
        return resident.batches(sampler(epoch).parts_on(device), resident.generator(epoch))  # as the engine's feeder

    # (batches of an epoch, intra-op threads of this process); DataLoader workers use one thread each
    paths = {
        "per-item DataLoader, num_workers=0": (loader(train, sampler, 0, device), threads),
        "per-item DataLoader, num_workers=2": (loader(train, sampler, 2, device), threads),
        f"device-resident ({device.type}), {intra_op_threads(threads)}": (on_device, threads),
    }
    one_thread_row = device.type == "cpu" and threads > 1  # batched CPU ops suffer most when other jobs hold the cores
    if one_thread_row:
        paths[f"device-resident ({device.type}), 1 intra-op thread"] = (on_device, 1)
    load_before = os.getloadavg()[0]
    rates: dict[str, float] = {}
    failed: list[str] = []  # "path: the error's first line", each a `Failed:` line and part of the exit line
    for name, (batches, count) in paths.items():
        try:  # one path failing (a worker killed, the device's memory) leaves the others to time
            seconds = epochs_seconds(batches, count, args.repeats, sync)
            rates[name] = len(train) / statistics.median(seconds)
            print(f"{name}: {rates[name]:,.0f} images/s (epochs: {', '.join(f'{s:.2f} s' for s in seconds)})",
                  flush=True)
        except Exception as error:  # noqa: BLE001 - whatever it is, the next path is still worth timing
            failed.append(f"{name}: {said_failed(name, error)}")
        # after each row: a device call cut by its limit keeps what it measured
        write_report(args.out, report(args, device, source, len(train), threads, rates, failed, len(paths),
                                      load_before, one_thread_row))
    if failed:  # exit 1: bench/gpu_checks.sh flags a failed step by its exit status
        sys.exit(failures_line("bench_device_batches", failed, args.out))


def epochs_seconds(batches: Callable[[int], Iterable[dict]], threads: int, repeats: int,
                   sync: Callable[[], None]) -> list[float]:
    """`repeats` epochs' wall times under `threads` intra-op threads; torch's count is restored after, a failed
    path's too, so that the paths after it run with the count they are labelled with."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return [epoch_seconds(batches, epoch, sync) for epoch in range(repeats)]
    finally:
        torch.set_num_threads(default)


def loader(train: InMemoryImages, sampler: Callable[[int], GlobalBatchSampler], workers: int,
           device: torch.device) -> Callable[[int], Iterable[dict]]:
    """The engine's DataLoader, its workers started as the engine's (`worker_start`: forked on Linux, where Python
    3.14's forkserver imported torch again in each); on a GPU each batch is copied from pinned memory as the engine
    does, so both paths end with the batch where the model is."""
    def batches(epoch: int) -> Iterator[dict]:
        for batch in DataLoader(SeededItems(train, epoch), batch_sampler=sampler(epoch), num_workers=workers,
                                multiprocessing_context=worker_start(workers), pin_memory=device.type == "cuda"):
            yield {key: value.to(device, non_blocking=True) for key, value in batch.items()}
    return batches


def report(args: argparse.Namespace, device: torch.device, source: str, images: int, threads: int,
           rates: dict[str, float], failed: list[str], planned: int, load_before: float, one_thread_row: bool) -> str:
    """The results file for the paths measured so far (`rates`, images/s over an epoch of `images`, of the `planned`
    paths, `one_thread_row` among them or not) and those that `failed`; the ratio of the best of each kind comes
    once both kinds are measured."""
    per_item = [name for name in rates if name.startswith("per-item")]
    resident_paths = [name for name in rates if name.startswith("device")]
    pending = planned - len(rates) - len(failed)
    if per_item and resident_paths:
        best_item = max(per_item, key=lambda name: rates[name])
        best_resident = max(resident_paths, key=lambda name: rates[name])
        ratio = rates[best_resident] / rates[best_item]
        verdict = (f"Best device-resident path over best per-item path: **{ratio:.1f}×** ({best_resident} vs "
                   f"{best_item}).")
        if pending:  # the 1-thread row may yet be the best device-resident one
            verdict += f" Still to measure when this was written: {pending} path(s)."
    elif pending:
        verdict = f"No ratio yet: {len(rates)} of the {planned} paths measured (the run was cut, or is running)."
    else:
        verdict = f"No ratio: {len(rates)} of the {planned} paths measured, the others failed."
    verdict += "".join(f"\n\nFailed: {line}" for line in failed)
    rows = "\n".join(f"| {name} | {rate:,.0f} | {images / rate:.2f} |" for name, rate in rates.items())
    return (
        f"# Device-resident batches vs the per-item DataLoader (CIFAR-10 training epoch)\n\n"
        f"Command: `{command_line()}`\n\n"
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, {intra_op_threads(threads)} by default; device path on `{device}`{gpu_name(device)}. "
        f"Load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after."
        f"{busy_warning(load_before)}\n\n"
        f"Data: {source}; {images:,} training images, batches of {args.batch_size} from "
        f"`GlobalBatchSampler`; crop 32 with 4-pixel zero padding, flip, CIFAR-10 normalisation. "
        f"Median of {args.repeats} epochs per path, no model; each path ends with the batch on `{device}` "
        f"(the DataLoader's copied there from pinned memory on a GPU).\n\n"
        f"| path | images/s | s / epoch |\n|---|---|---|\n{rows}\n\n"
        f"{verdict}\n\n{reading(one_thread_row)}\n"
    )


def gpu_name(device: torch.device) -> str:
    """The card's name in brackets for a CUDA device, empty for the CPU: a GPU's figures hold for that card only, and
    a device call may land on an H100 or an H200 (the file said `cuda` alone)."""
    return f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""


def reading(one_thread_row: bool) -> str:
    """Why the paths differ. The 1-thread row is explained only where the table has one: a GPU run or a process of one
    thread has none, and its file (device_batches_cuda.md) said "hence the 1-thread row" all the same."""
    why = ("The per-item path transforms one image at a time (too little work to parallelise); the device path's "
           "batched ops split over intra-op threads")
    if not one_thread_row:
        return why + "."
    return why + (", which stall each other when other jobs hold the cores (a load average above the core count), "
                  "hence the 1-thread row.")


def parse_device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """`--device` as a torch device, refused at once if torch cannot use it (not after the 20 s decode)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        parser.error(f"--device {name}: not a torch device; use cpu or cuda")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        parser.error(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s); "
                     "use cpu or a visible GPU")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {name}: only cpu and cuda are supported")
    return device


if __name__ == "__main__":
    main()
