"""Volumes/s of the MRI training loader by number of DataLoader workers, on this machine's cores.

Why: on a GPU the ×8 + age model trains at about 255 volumes/s (H200, 96³, bf16 + compile) while one loader
process fed about 20 when it blurred whole volumes; most of a volume's loading is the training blur. Workers blur
their own volumes, so the figure to know is how far they scale on the cores a GPU machine has, and how much
faster the loader is when it leaves the blur to the device (`--blur-on device`, `data.mri.blur_on: device`: workers
cut each crop with the kernel's reach around it and the batch is blurred on `--device`, as the engine's feeder
does). Same loader as bench_mri_models (synthetic MNI152 scans, memory cache, the engine's training transforms, a
DataLoader per epoch), longer epochs so that worker start-up counts less.

    python bench/bench_mri_loader.py --workers 0 2 4 8
    python bench/bench_mri_loader.py --workers 0 2 --blur-on loader device              # blurred on this CPU
    python bench/bench_mri_loader.py --workers 0 4 8 --blur-on loader device --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import bench_mri_models as steps
import torch
from bench_device_batches import gpu_name
from results_file import busy_warning, command_line, failures_line, said_failed, write_report

from preprocess.user_errors import output_file

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="num_workers settings to time")
    parser.add_argument("--volumes", type=int, default=48, help="synthetic scans, one epoch's worth")
    parser.add_argument("--resolution", type=float, default=1.5, help="mm per voxel of the synthetic scans")
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--blur-on", nargs="+", choices=("loader", "device"), default=["loader"],
                        help="where the training blur runs (each timed)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the device of --blur-on device")
    parser.add_argument("--out", type=output_file, default=ROOT / "bench" / "results" / "mri_loader.md")
    args = parser.parse_args()
    if min(args.workers) < 0 or args.volumes < args.batch_size:
        parser.error("--workers must be >= 0 and --volumes at least --batch-size")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    results: dict[tuple[int, str], steps.LoaderResult] = {}
    failed: list[str] = []  # "setting: the error's first line", each a `Failed:` line and part of the exit line
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        paths, shape = steps.write_volumes(Path(folder), args.volumes, args.resolution)
        settings = [(w, b) for w in args.workers for b in args.blur_on]
        for done, (workers, where) in enumerate(settings, start=1):
            blur_device = args.device if where == "device" else None
            try:  # one setting failing (a worker's memory, the device blur) leaves the others to time
                results[workers, where] = steps.loader_rate(paths, args.crop, args.batch_size, workers, threads=1,
                                                            blur_device=blur_device)
            except Exception as error:  # noqa: BLE001 - whatever it is, the next setting is still worth timing
                setting = f"{workers} workers, blur on {where}"
                failed.append(f"{setting}: {said_failed(setting, error)}")
            text = report(args, shape, results, failed, len(settings) - done, load_before)
            write_report(args.out, text)  # after each setting: a run cut short keeps what it measured
    print(text)
    if failed:  # exit 1: bench/gpu_checks.sh flags a failed step by its exit status
        sys.exit(failures_line("bench_mri_loader", failed, args.out))


def report(args: argparse.Namespace, shape: tuple[int, ...], results: dict[tuple[int, str], steps.LoaderResult],
           failed: list[str], pending: int, load_before: float) -> str:
    """The results file with the settings measured so far, those that `failed`, and how many are `pending`."""
    device_blur = (f"; the device blur on `{args.device}`{gpu_name(torch.device(args.device))}"
                   if "device" in args.blur_on else "")
    return "\n".join([
        "# MRI training loader by DataLoader workers", "", f"Command: `{command_line()}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}; each worker and the main process with one intra-op thread{device_blur}.", "",
        f"{args.volumes} synthetic scans at {args.resolution:g} mm ({'×'.join(map(str, shape))}), crop "
        f"{args.crop}³, batches of {args.batch_size}; cached epochs after a first untimed one.{busy_warning(load_before)}",
        "", *table(results, min(args.workers), args.device), "",
        *[f"Failed: {line}" for line in failed], *([""] if failed else []),
        *([f"Still to measure when this was written: {pending} setting(s).", ""] if pending else [])])


def table(results: dict[tuple[int, str], steps.LoaderResult], fewest: int, device: str) -> list[str]:
    """The rows measured so far, each with the two ratios the docstring asks for, taken in this run: against the
    fewest workers with the blur in the same place (how far workers scale), and against the blur in the loader with
    as many workers (what leaving the blur to the device gains); "—" where that setting is not (yet) measured."""
    lines = [f"| num_workers | blur on | volumes/s | × {fewest} workers | × blur on loader | epochs timed "
             "| first epoch (s) | load avg (1 min) |", "|---|---|---|---|---|---|---|---|"]
    for (workers, where), result in results.items():
        lines.append(f"| {workers} | {where if where == 'loader' else f'device ({device})'} | "
                     f"{result.volumes_per_s:.1f} | {ratio(result, results.get((fewest, where)))} | "
                     f"{ratio(result, results.get((workers, 'loader')))} | {result.epochs} | "
                     f"{result.first_epoch_s:.2f} | {result.load_before:.1f} → {result.load_after:.1f} |")
    return lines


def ratio(result: steps.LoaderResult, reference: steps.LoaderResult | None) -> str:
    """`result`'s volumes/s as a multiple of `reference`'s, or "—" without one."""
    return "—" if reference is None else f"{result.volumes_per_s / reference.volumes_per_s:.2f}×"

if __name__ == "__main__":
    main()
