"""Worker processes for per-scan jobs (preprocessing, regional volumes) that stop when the run stops.

A plain ProcessPoolExecutor outlives an interrupted run: on Ctrl-C its `with` block waits for every
queued scan, and a parent killed outright leaves its spawned workers registering scans that nobody
collects. Here every worker dies with its parent (Linux: the kernel signals it), and an interrupted
loop cancels the queued scans and ends the running ones. Finished scans are on disk (written
atomically), so a rerun resumes where the run stopped.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import resource_tracker
from multiprocessing.context import BaseContext, SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from typing import Callable, Hashable, Iterator, Mapping

from preprocess.cores import thread_share, usable_cores
from preprocess.progress import ScanProgress

__all__ = ["NO_WORKER_STARTED", "WorkersDidNotStart", "scan_workers", "leave_if_starting_a_worker", "stopping_workers",
           "run_per_scan", "start_worker_process", "die_with_parent", "forked_on_linux"]

_PR_SET_PDEATHSIG = 1  # prctl option from <linux/prctl.h>
FORK_BESIDE_THREADS = r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks"  # 3.12+
ITK_THREADS = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"


# A worker's end before it started, said once by the parent: the usual cause, and its fix
NO_WORKER_STARTED = ("every worker process died while starting, before any scan: a script that calls preprocess (or "
                     "elr_mri.volumes) runs again in each worker, so its calls must sit under `if __name__ == "
                     "\"__main__\":`; if they do, check that `python -c \"import preprocess\"` works")


class WorkersDidNotStart(RuntimeError):
    """No worker of a pool got as far as its first scan: every scan would fail alike, so the run stops."""


@contextmanager
def scan_workers(jobs: int, started: Synchronized | None = None, threads: int | None = None
                 ) -> Iterator[ProcessPoolExecutor]:
    """`jobs` spawned workers with `threads` ITK threads each (None: `cores // jobs`, so they do not oversubscribe
    the machine), no more than the user's ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS; each adds 1 to `started` once it
    has started."""
    threads = threads or thread_share(jobs, ITK_THREADS)
    with stopping_workers(jobs, _SpawnedDeafToCtrlC(), _start_worker, (threads, os.getpid(), started)) as pool:
        yield pool


def leave_if_starting_a_worker() -> None:
    """End this process quietly where it is a worker still starting: spawning it ran the user's script again, and the
    script reached a call that starts a batch, one not under `if __name__ == "__main__":`. Each such worker printed a
    traceback of that nested batch (refused for the parent's folder lock), which hid the cause; the parent names it
    (`NO_WORKER_STARTED`)."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # as multiprocessing's own check reads it
        raise SystemExit(1)


@contextmanager
def stopping_workers(jobs: int, context: BaseContext, initializer: Callable[..., None],
                     initargs: tuple) -> Iterator[ProcessPoolExecutor]:
    """`jobs` workers that end with the block: on Ctrl-C or an error the queued tasks are dropped and the running
    ones ended (a `with` block of the pool waited for every task). A worker that dies breaks the pool, and its
    results raise BrokenProcessPool, where multiprocessing.Pool waited for the lost task forever."""
    children_before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=initializer, initargs=initargs)
    try:
        yield pool
    except BaseException:  # Ctrl-C or an error in the caller: nothing more to wait for
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in set(multiprocessing.active_children()) - children_before:
            worker.terminate()
            worker.join(timeout=5)
        raise
    pool.shutdown(wait=True)


def run_per_scan(work: Callable[..., dict], arguments: Mapping[Hashable, tuple], jobs: int, desc: str,
                 progress: bool = True, threads: int | None = None, failed_before: int = 0) -> dict[Hashable, dict]:
    """`work(*arguments[key])` for every key in `jobs` workers, showing progress (`ScanProgress`): {key: result}.

    `work` reports a bad scan in its result rather than raising. A worker that dies (killed for memory,
    a crash inside ITK) breaks the whole pool, and every scan it still held fails with it; those scans
    go round again in a fresh pool, except the first `jobs + 1` of them (submission order: the ones that
    were running or handed out), which run one by one, each in a pool of its own, so that a scan that
    kills its worker fails alone, by name, and the scans queued behind it still finish. A round of fewer
    scans than `jobs` starts a worker per scan, each with its share of the cores: an idle worker's share
    (half the machine for one scan at `jobs` 2) went unused. More workers than usable cores run, with a note.
    `threads` fixes each worker's ITK threads instead: a result that must not depend on the cores or `jobs`.
    `failed_before` scans of the batch failed before it came here (their file missing): shown as failed with the rest.
    """
    leave_if_starting_a_worker()
    cores = usable_cores()
    if min(jobs, len(arguments)) > cores:
        print(f"note: --jobs {jobs} is more than the {cores} core(s) this process may use (affinity, SLURM's "
              "--cpus-per-task, a container's CPU quota): each worker gets 1 ITK thread and they share the cores, "
              f"no faster than --jobs {cores}", file=sys.stderr)
    results: dict[Hashable, dict] = {}
    queue = dict(arguments)
    with ScanProgress(len(arguments) + failed_before, desc, progress) as shown:
        shown.failed_unstarted(failed_before)
        while queue:
            lost = _run_round(work, queue, min(jobs, len(queue)), results, shown, threads)
            for key in lost[:jobs + 1]:
                if _run_round(work, {key: queue[key]}, 1, results, shown, threads):
                    results[key] = {"status": "failed", "error": "its worker process died while it ran alone (killed "
                                    "for memory? a crash inside ANTs/ITK); check the scan, or leave it out"}
                    shown.finished("failed")
            queue = {key: queue[key] for key in lost[jobs + 1:]}
    return results


def _run_round(work: Callable[..., dict], arguments: Mapping[Hashable, tuple], jobs: int,
               results: dict[Hashable, dict], shown: ScanProgress, threads: int | None = None) -> list[Hashable]:
    """Run `arguments` in a fresh pool, storing results; return the keys lost to a dead worker, in
    submission order. Raises WorkersDidNotStart where the pool broke before any worker started."""
    lost = []
    started = multiprocessing.get_context("spawn").Value("i", 0)
    with scan_workers(jobs, started, threads) as pool:
        futures = {pool.submit(work, *args): key for key, args in arguments.items()}
        for future in as_completed(futures):
            try:
                results[futures[future]] = result = future.result()
                shown.finished(result["status"])
            except BrokenProcessPool:
                lost.append(futures[future])
    if lost and not started.value:
        raise WorkersDidNotStart(NO_WORKER_STARTED)
    order = list(arguments)
    return sorted(lost, key=order.index)


def start_worker_process(parent_pid: int) -> None:
    """A pool worker's first step: leave Ctrl-C to the parent, which ends the workers itself (a worker's own
    KeyboardInterrupt only prints a traceback under the parent's one-line message), and die with it. A forked one
    also drops the parent's SIGTERM handler (`sigterm_as_ctrl_c`): a job's SIGTERM to the group printed its raise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent_pid)


def forked_on_linux() -> BaseContext:
    """Forked workers on Linux, spawned elsewhere, whatever the default: a fork starts at once and shares what the
    parent loaded, where Python 3.14's default there, forkserver, imports everything again in each worker. macOS's
    system libraries make a fork unsafe (Python spawns there by default) and Windows cannot fork. (`scan_workers`
    spawns everywhere: a forked worker would inherit preprocess's folder lock.) `_ForkedBesideThreads` says why
    Python 3.12's warning of a fork beside other threads is not shown."""
    return _ForkedBesideThreadsContext() if sys.platform == "linux" else _SpawnedDeafToCtrlC()


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel end this process when its parent exits, however it exits (Linux only)."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # not fatal: the worker then only ends when its parent ends it
    if os.getppid() != parent_pid:  # the parent was gone before the line above took effect
        os._exit(1)


def _start_worker(threads: int, parent_pid: int, started: Synchronized | None) -> None:
    """Runs first in each spawned worker, before ANTs (and so ITK) is imported there."""
    os.environ[ITK_THREADS] = str(threads)
    start_worker_process(parent_pid)
    if started is not None:
        with started.get_lock():
            started.value += 1


class _WorkerDeafToCtrlC(SpawnProcess):
    """A spawned worker that starts with Ctrl-C blocked, as a forked one starts ignoring it (`start_worker_process`,
    `elr_mri.stopping`): a terminal sends Ctrl-C to the whole group, and a DataLoader worker spawned moments before
    printed a KeyboardInterrupt traceback from its imports around the parent's one-line message. The parent ends its
    workers itself. The parent's own Ctrl-C, blocked while a worker starts, arrives once it has."""

    def start(self) -> None:
        resource_tracker.ensure_running()  # first, as the spawn would: starting it unblocks Ctrl-C again
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


if sys.platform == "linux":  # the only one forking (`forked_on_linux`); Windows has no ForkProcess
    class _ForkedBesideThreads(multiprocessing.context.ForkProcess):
        """A forked worker started without the DeprecationWarning Python 3.12 and 3.13 give a fork while other
        threads run: a training run's DataLoader workers fork beside tqdm's monitor thread (started by any bar, a
        hidden one too) and the queue feeder threads of the workers started before them, so pytest and `python -W
        default` printed it once a worker. The risk it names, a lock another thread held at the fork, is not taken:
        multiprocessing resets its queues in a forked child, and the child only reads and transforms data (a
        DataLoader worker on one torch thread of its own), without a bar. Forking is the choice `forked_on_linux`
        explains; the warning is ignored for this start alone, not for a fork of the user's own."""

        def start(self) -> None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", FORK_BESIDE_THREADS, DeprecationWarning)
                super().start()

    class _ForkedBesideThreadsContext(multiprocessing.context.ForkContext):
        Process = _ForkedBesideThreads


class _SpawnedDeafToCtrlC(SpawnContext):
    Process = _WorkerDeafToCtrlC
