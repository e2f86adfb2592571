"""Training throughput of 1 process against K data-parallel processes (torchrun, gloo on CPU, NCCL on GPU).

Runs the same config for each process count, in this one invocation, through the engine's CLI under
torchrun, and prints examples/s of the training pass (metrics.csv's epoch_seconds, each run's first
epoch dropped as warm-up) and the speed-up over the first process count. On a CPU the processes
share the machine's cores, so the figure shows the overhead of the distributed machinery rather
than a gain; on K GPUs it is the scaling.

Why it is built so: an epoch of the default config takes about 0.1 s, and other jobs on a shared
machine stall epochs for seconds, so one short run per count gave anything from 0.4× to 6×. Each run
therefore trains (train.epochs set high) until its timed epochs have lasted --min-seconds, and is
then stopped; --repeats rounds run every count, in alternating order so that load drift hits all
counts alike. The table gives the median over the rounds and their range; the speed-up is the
median of the ratios measured within one round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pandas as pd
from results_file import busy_warning, command_line, write_report
from preprocess.cores import usable_cores
from preprocess.user_errors import nonempty_path, output_file

ROOT = Path(__file__).resolve().parents[1]
WARMUP_EPOCHS = 1
MAX_EPOCHS = 10_000  # train.epochs of a run, which is stopped long before
UNSTEADY = 2.0  # a process count whose rate varies more than this between rounds was hit by other jobs


@dataclass(frozen=True)
class Timed:
    """One run's training pass after the warm-up epoch."""

    epochs: int
    seconds: float
    epoch_examples: int

    @property
    def rate(self) -> float:
        return self.epoch_examples * self.epochs / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=nonempty_path, default=ROOT / "configs" / "digits" / "elr_sym40.yaml")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="the first is the baseline")
    parser.add_argument("--min-seconds", type=float, default=5.0,
                        help="each run trains until its timed epochs (all but the first) last this long")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run at least, the first one warm-up")
    parser.add_argument("--repeats", type=int, default=5, help="rounds over the process counts; medians reported")
    parser.add_argument("--set", dest="overrides", action="append",
                        default=["model.name=small_cnn", "model.hidden=64", "train.batch_size=128"])
    parser.add_argument("--out", type=output_file, default=ROOT / "bench" / "results" / "ddp_scaling.md")
    args = parser.parse_args()
    if not WARMUP_EPOCHS < args.epochs <= MAX_EPOCHS:
        parser.error(f"--epochs {args.epochs}: the first epoch is warm-up, so give {WARMUP_EPOCHS + 1} to {MAX_EPOCHS}")
    for flag, value in (("--processes", min(args.processes)), ("--repeats", args.repeats),
                        ("--min-seconds", args.min_seconds)):
        if value <= 0:
            parser.error(f"{flag} {value}: must be above 0")
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")

    load_start = os.getloadavg()[0]
    rounds: list[dict[int, Timed]] = []
    loads: list[float] = []
    for r in range(args.repeats):
        order = args.processes if r % 2 == 0 else args.processes[::-1]
        rounds.append({k: _run(args, k) for k in order})
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}: " + ", ".join(f"{k} process(es) {rounds[-1][k].rate:.0f} examples/s "
                                             f"({rounds[-1][k].epochs} epochs, {rounds[-1][k].seconds:.1f} s)"
                                             for k in args.processes) + f"; load average {loads[-1]:.1f}", flush=True)
    text = report(args, rounds, load_start, loads)
    print(text)
    write_report(args.out, text)


def _run(args: argparse.Namespace, processes: int) -> Timed:
    """Train with `processes` processes until the epochs after the warm-up have lasted --min-seconds (and
    --epochs have run), then stop the run: the examples and seconds of those timed epochs."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    overrides = [*args.overrides, f"train.epochs={MAX_EPOCHS}", "train.progress=false", "train.tensorboard=false"]
    # the same cores in every run: K processes get cores // K threads each (torchrun would set 1)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, usable_cores() // processes))}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as log:
        run_dir = Path(tmp)
        command = [*launcher, "-m", "elr_mri.cli", "train", "--config", str(args.config), "--out", str(run_dir),
                   *[a for s in overrides for a in ("--set", s)]]
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while process.poll() is None and not _enough(args, _timed_epochs(run_dir)):
                time.sleep(0.2)
        finally:
            stopped = process.poll() is None
            if stopped:
                process.terminate()  # torchrun passes SIGTERM on to its workers and waits for them
                process.wait()
        seconds = _timed_epochs(run_dir)
        if not stopped and (process.returncode != 0 or not seconds):
            log.seek(0)
            _failed(processes, process.returncode, log.read())
        train_size = json.loads((run_dir / "data_shape.json").read_text())["train_examples"]
    return Timed(epochs=len(seconds), seconds=sum(seconds), epoch_examples=train_size)


def _failed(processes: int, returncode: int, output: str) -> NoReturn:
    """Exit with one line: the run's own error if it printed one, and where its whole output is kept: a new file of
    its own in the temporary folder (a fixed name there was written through whatever link another user put under it,
    and another user's log of that name stopped the line at a PermissionError)."""
    handle, kept = tempfile.mkstemp(prefix=f"bench_ddp_scaling_{processes}p-", suffix=".log")
    with os.fdopen(handle, "w") as log:
        log.write(output)
    errors = [line.strip() for line in output.splitlines()
              if re.search(r": error:|^\s*\w[\w.]*(Error|Exception): \S", line) and "ChildFailedError" not in line]
    cause = errors[0] if errors else "no error line"
    sys.exit(f"bench_ddp_scaling.py: error: the {processes}-process run failed (rc {returncode}): {cause} "
             f"(its output: {kept})")


def _timed_epochs(run_dir: Path) -> list[float]:
    """Training seconds of each finished epoch after the warm-up (metrics.csv is rewritten whole per epoch)."""
    metrics = run_dir / "metrics.csv"
    return pd.read_csv(metrics)["epoch_seconds"].iloc[WARMUP_EPOCHS:].tolist() if metrics.is_file() else []


def _enough(args: argparse.Namespace, seconds: list[float]) -> bool:
    return len(seconds) + WARMUP_EPOCHS >= args.epochs and sum(seconds) >= args.min_seconds


def report(args: argparse.Namespace, rounds: list[dict[int, Timed]], load_start: float, loads: list[float]) -> str:
    """The results file: per process count the median rate over rounds, and the within-round speed-up."""
    base = args.processes[0]
    lines = ["| processes | timed epochs per run, median | timed s per run, median "
             "| training examples/s, median (min–max) | speed-up, median of rounds (min–max) |",
             "|---|---|---|---|---|"]
    for k in args.processes:
        rates = [r[k].rate for r in rounds]
        ratios = [r[k].rate / r[base].rate for r in rounds]
        lines.append(f"| {k} | {statistics.median(r[k].epochs for r in rounds):.0f} | "
                     f"{statistics.median(r[k].seconds for r in rounds):.1f} | "
                     f"{statistics.median(rates):.0f} ({min(rates):.0f}–{max(rates):.0f}) | "
                     f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) |")
    text = (f"Data-parallel scaling, {args.config.name} with {' '.join(args.overrides)} (`{command_line()}`): "
            f"each run trains until its timed epochs (all but the first) have lasted {args.min_seconds:g} s; "
            f"{args.repeats} rounds over the process counts in alternating order. {os.cpu_count()} CPU cores "
            f"shared by the processes (OMP threads = cores / processes); 1-min load average {load_start:.1f} at the "
            f"start, {', '.join(f'{load:.1f}' for load in loads)} after each round.{busy_warning(load_start)}"
            "\n\n" + "\n".join(lines) + "\n")
    unsteady = [k for k in args.processes if max(r[k].rate for r in rounds) > UNSTEADY * min(r[k].rate for r in rounds)]
    if unsteady:
        text += (f"\nUnsteady: the rate of {', '.join(map(str, unsteady))} process(es) varied more than {UNSTEADY:g}× "
                 "between rounds, so other jobs changed the machine's speed during this run; the speed-up holds "
                 "for this run's load only. Rerun on a quiet machine for a figure to publish.\n")
    elif len(rounds) < 2:
        text += "\nOne round: whether other jobs changed the machine's speed during it is not checked (--repeats 2+).\n"
    return text


if __name__ == "__main__":
    main()
