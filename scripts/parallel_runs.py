"""Several training runs at once, each an `elr-mri train` process of its own: the seeds of a table row side by side.

Why processes, and why on one device too: a small-image run does not keep a GPU busy (on an H200 a CUDA-graph step of
the CIFAR-10 ELR row took 7.2 ms against the 4.4 ms of GPU work measured for it), and a CPU run of a small network
gains little from more threads; a second process fills the gaps. With several GPUs visible, the runs are spread over
them, so five seeds on five GPUs train as one does. Each run writes its output to RUN_DIR.log beside its run
directory, and is the same command a user would type: a killed pool is restarted by running it again (finished runs
are read back, killed ones resume).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elr_mri.config import load_config
from elr_mri.stopping import Terminated, stop_if_terminated
from preprocess.cores import thread_share
from paper_runs import planned_status, run_status, training_needed

__all__ = ["PlannedRun", "train_command", "train_in_parallel", "visible_gpus", "stop_processes"]

POLL_SECONDS = 0.5
OWN_CTRL_C_SECONDS = 5  # a Ctrl-C at the terminal reaches every run itself: time to stop before a second one is sent
STOP_WAIT_SECONDS = 60  # a run stopped by Ctrl-C finishes writing what it was writing


@dataclass(frozen=True)
class PlannedRun:
    """One run of a pool: its name in progress lines, its config file, its --set overrides and its directory."""

    name: str
    config: Path
    overrides: tuple[str, ...]
    run_dir: Path

    @property
    def log(self) -> Path:
        return self.run_dir.with_name(self.run_dir.name + ".log")


def train_command(run: PlannedRun, extra: list[str]) -> list[str] | None:
    """The `elr-mri train` command that brings `run` up to date (new: --config; killed or to be continued to more
    epochs: --resume), with the `extra` overrides after the run's own; None when it finished with these settings.
    A directory holding a run with other settings is refused (ConfigError) before anything starts."""
    if training_needed(run.config, list(run.overrides), run.run_dir) is None:
        return None
    sets = [arg for override in (*run.overrides, *extra) for arg in ("--set", override)]
    source = (["--config", str(run.config), "--out", str(run.run_dir)] if run_status(run.run_dir) == "new"
              else ["--resume", str(run.run_dir)])
    return [sys.executable, "-m", "elr_mri.cli", "train", *source, *sets]


def visible_gpus() -> list[str]:
    """The GPUs the runs share, as CUDA_VISIBLE_DEVICES entries: the caller's own list when it set one, else every
    GPU torch sees (none on a CPU machine)."""
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is not None:
        return [entry.strip() for entry in chosen.split(",") if entry.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def train_in_parallel(runs: list[PlannedRun], jobs: int) -> dict[PlannedRun, dict[str, Any] | str]:
    """Train `runs`, at most `jobs` at a time; returns each run's summary.json, or why it failed (one line).

    Run slot k uses GPU k mod (number of visible GPUs). Each run gets the CPU's cores divided by `jobs` (no more than
    an exported OMP_NUM_THREADS) as its torch threads unless its overrides set train.threads; its log (a file: no bars) gets `train`'s line per epoch. One run
    failing stops none of the others. On Ctrl-C, SIGTERM (or any error here) the running ones are stopped as those
    stop `elr-mri train`, after their last checkpoint, and the exception goes on (`stop_processes`).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    gpus = visible_gpus()
    threads = thread_share(jobs, "OMP_NUM_THREADS")
    results: dict[PlannedRun, dict[str, Any] | str] = {}
    pending = deque(runs)
    running: dict[int, tuple[PlannedRun, subprocess.Popen, float, int]] = {}  # run, process, start, log offset
    try:
        while pending or running:
            while pending and len(running) < jobs:
                run = pending.popleft()
                slot = min(set(range(jobs)) - set(running))
                extra = []
                if not any(override.startswith("train.threads=") for override in run.overrides):
                    extra.append(f"train.threads={threads}")
                command = train_command(run, extra)
                if command is None:
                    results[run] = _summary(run)
                    print(f"{run.name}: finished before, read back from {run.run_dir}", flush=True)
                    continue
                env = dict(os.environ)
                where = "the CPU"
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
                    where = f"GPU {env['CUDA_VISIBLE_DEVICES']}"
                status = planned_status(run.run_dir, load_config(run.config, list(run.overrides)).train.epochs)
                run.run_dir.parent.mkdir(parents=True, exist_ok=True)
                with open(run.log, "ab") as log:
                    logged_before = log.tell()  # before the run shares the file's offset and moves it
                    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                running[slot] = (run, process, time.perf_counter(), logged_before)
                print(f"{run.name}: started on {where} ({status}), log {run.log}", flush=True)
            time.sleep(POLL_SECONDS)
            stop_if_terminated()  # a SIGTERM recorded (run_script): stop the runs as Ctrl-C does
            for slot, (run, process, started, logged_before) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[slot]
                results[run] = _outcome(run, process.returncode, logged_before)
                state = "done" if isinstance(results[run], dict) else f"failed ({results[run]})"
                print(f"{run.name}: {state}, {time.perf_counter() - started:.0f} s", flush=True)
    except BaseException as stop:
        stop_processes([process for _, process, _, _ in running.values()], stop)
        raise
    return results


def _outcome(run: PlannedRun, returncode: int, logged_before: int) -> dict[str, Any] | str:
    """The summary of a run whose process ended, or its exit status and the last line it wrote: this process's line,
    read past the `logged_before` bytes that earlier attempts left in the log (a run killed without a word was
    reported with the "interrupted" line of the attempt before). A run ended by a signal is said to be, by name."""
    if returncode == 0 and (run.run_dir / "summary.json").exists():
        return _summary(run)
    with open(run.log, "rb") as log:
        log.seek(logged_before)
        lines = log.read().decode(errors="replace").strip().splitlines()
    if returncode < 0:
        number = -returncode
        name = signal.Signals(number).name if number in {s.value for s in signal.Signals} else f"signal {number}"
        why = " (the system's out-of-memory killer sends it)" if number == signal.SIGKILL else ""
        return f"killed by {name}{why}{f', after: {lines[-1]}' if lines else ''}; see {run.log}"
    return f"exit {returncode}: {lines[-1] if lines else 'no output'}; see {run.log}"


def _summary(run: PlannedRun) -> dict[str, Any]:
    return json.loads((run.run_dir / "summary.json").read_text())


def stop_processes(processes: list[subprocess.Popen], cause: BaseException) -> None:
    """Stop the processes still running as `cause` stops `elr-mri train` (resumable from the last checkpoint).

    A Ctrl-C or SIGTERM sent to the whole group has reached them already: they get OWN_CTRL_C_SECONDS to stop on
    their own (a second signal would break into their own stopping); then the rest get `_stop_signal(cause)`, and
    what has not stopped after STOP_WAIT_SECONDS is killed."""
    _wait_all(processes, OWN_CTRL_C_SECONDS)
    for process in processes:
        if process.poll() is None:
            process.send_signal(_stop_signal(cause))
    for process in _wait_all(processes, STOP_WAIT_SECONDS):
        process.kill()
        process.wait()


def _stop_signal(cause: BaseException) -> signal.Signals:
    """SIGINT for a Ctrl-C, SIGTERM for anything else (a SIGTERM, an error). Why not SIGINT always: a script started
    with `&` from a non-interactive shell (`nohup ... &` on a server) passes on an ignored SIGINT to its runs, which
    then trained on until STOP_WAIT_SECONDS ran out and were killed; no shell ignores SIGTERM, and `elr-mri train`
    stops on it at its next step as on Ctrl-C."""
    ctrl_c = isinstance(cause, KeyboardInterrupt) and not isinstance(cause, Terminated)
    return signal.SIGINT if ctrl_c else signal.SIGTERM


def _wait_all(processes: list[subprocess.Popen], seconds: float) -> list[subprocess.Popen]:
    """Wait up to `seconds` in all for `processes` to end; returns those still running."""
    deadline = time.perf_counter() + seconds
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            pass
    return [process for process in processes if process.poll() is None]


if __name__ == "__main__":  # a library, not a command: say so instead of doing nothing
    print(__doc__.strip() + "\n\nUse it through reproduce_paper_table.py --jobs N (or bench/bench_side_by_side.py).")
    sys.exit(2)
