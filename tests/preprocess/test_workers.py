"""Per-scan worker processes end with the run: on Ctrl-C at once, and when the parent is killed outright."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from preprocess.cores import usable_cores
from preprocess.workers import start_worker_process

# A run whose two workers each hold a long scan, with more queued; it prints the workers' pids once both have started
# (each then takes a scan at once), not after a fixed 3 s that every test using it waited through.
RUN = """
import multiprocessing, time
from preprocess.workers import scan_workers
started = multiprocessing.get_context("spawn").Value("i", 0)
with scan_workers(2, started) as pool:
    futures = [pool.submit(time.sleep, 60) for _ in range(6)]
    while started.value < 2:
        time.sleep(0.05)
    print(*[child.pid for child in multiprocessing.active_children()], flush=True)
    for future in futures:
        future.result()
"""


def _start_run() -> tuple[subprocess.Popen, list[int]]:
    run = subprocess.Popen([sys.executable, "-c", RUN], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    workers = [int(pid) for pid in run.stdout.readline().split()]
    assert len(workers) == 2, "the run should report its two workers"
    return run, workers


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"  # a zombie has ended, only its parent has not reaped it
    except FileNotFoundError:
        return False


def _wait_until_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; the parent-death signal is Linux's")
def test_ctrl_c_ends_the_run_without_waiting_for_queued_scans() -> None:
    run, workers = _start_run()
    run.send_signal(signal.SIGINT)
    run.wait(timeout=20)  # a plain ProcessPoolExecutor would wait for all six 60 s tasks
    assert _wait_until_gone(workers, 10) == []


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; the parent-death signal is Linux's")
def test_sigterm_stops_a_run_as_ctrl_c_does_and_says_how_to_go_on() -> None:
    """A batch system's time limit sends SIGTERM: the run ended without a word, as SIGTERM's default action."""
    command = ("from preprocess.cli import _reporting_user_errors\n"
               "def work():\n" + "".join(f"    {line}\n" for line in RUN.strip().splitlines()) +
               "raise SystemExit(_reporting_user_errors('elr-mri preprocess', work, 'finished scans are skipped'))\n")
    run = subprocess.Popen([sys.executable, "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in run.stdout.readline().split()]
    assert len(workers) == 2, "the run should report its two workers"
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=20)
    assert run.returncode == 143
    assert err == ("elr-mri preprocess: stopped by SIGTERM (a job's time limit, scancel or kill); run the same command "
                   "again: finished scans are skipped\n")
    assert _wait_until_gone(workers, 10) == []


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; the parent-death signal is Linux's")
def test_workers_die_with_a_killed_parent() -> None:
    run, workers = _start_run()
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert _wait_until_gone(workers, 10) == []


def test_pool_workers_leave_ctrl_c_to_their_parent() -> None:
    with multiprocessing.get_context("fork").Pool(1, start_worker_process, (os.getpid(),)) as pool:
        assert pool.apply(signal.getsignal, (signal.SIGINT,)) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) != signal.SIG_IGN  # the parent still stops on Ctrl-C


def _scan_that_may_kill_its_worker(key: str, deadly: str) -> dict:
    """Stands in for a scan whose processing kills the worker (as the kernel's OOM killer would)."""
    if key == deadly:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return {"status": "done", "key": key}


def _scan_noting_its_end(key: str, deadly: str, ends: Path) -> dict:
    """`_scan_that_may_kill_its_worker`, with a line in `ends` once it returns."""
    result = _scan_that_may_kill_its_worker(key, deadly)
    with open(ends, "a") as noted:
        noted.write(f"{key}\n")
    return result


def test_a_scan_that_kills_its_worker_fails_alone_and_the_queue_finishes(tmp_path: Path) -> None:
    """The scans its pool lost go round once more, and only once: those run alone are not queued again (a scan
    finished twice reads 'skipped' the second time, and the run's counts miss it as processed)."""
    from preprocess.workers import run_per_scan

    keys, ends = [f"sub-{i}" for i in range(8)], tmp_path / "ends"
    results = run_per_scan(_scan_noting_its_end, {key: (key, "sub-1", ends) for key in keys}, jobs=2,
                           desc="test", progress=False)
    assert results["sub-1"]["status"] == "failed" and "died while it ran alone" in results["sub-1"]["error"]
    assert all(results[key] == {"status": "done", "key": key} for key in keys if key != "sub-1")
    assert sorted(ends.read_text().split()) == [key for key in keys if key != "sub-1"]


def _itk_threads(key: str) -> dict:
    """What a worker hands ANTs: the ITK thread count its pool gave it."""
    time.sleep(0.2)  # the other scans of a round go to the other workers
    return {"status": "done", "threads": int(os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"])}


@pytest.mark.skipif(usable_cores() < 2, reason="needs 2 usable cores to share out (SLURM's --cpus-per-task, a CPU "
                                                "quota and the affinity count)")
def test_workers_share_the_cores_and_fewer_scans_than_jobs_leave_none_idle(monkeypatch) -> None:
    """Each of `jobs` workers runs ITK on cores // jobs threads, so jobs × threads fits the machine; a batch of one
    scan at --jobs 2 ran it on half the cores while the other worker's half sat idle. `threads` overrides the share."""
    from preprocess.workers import run_per_scan

    monkeypatch.delenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", raising=False)  # a shell's own cap would lower it
    cores = usable_cores()
    shared = run_per_scan(_itk_threads, {key: (key,) for key in "abcd"}, jobs=2, desc="test", progress=False)
    assert {result["threads"] for result in shared.values()} == {cores // 2}
    alone = run_per_scan(_itk_threads, {"a": ("a",)}, jobs=2, desc="test", progress=False)
    assert alone["a"]["threads"] == cores
    pinned = run_per_scan(_itk_threads, {"a": ("a",)}, jobs=1, desc="test", progress=False, threads=1)
    assert pinned["a"]["threads"] == 1, "a result that must not depend on the cores (volumes --deterministic)"


@pytest.mark.skipif(usable_cores() < 2, reason="needs 2 usable cores, so that the share is more than the cap")
def test_an_exported_itk_thread_count_caps_each_workers_share(monkeypatch) -> None:
    """A user's (or a shared node's) ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS was overwritten with cores // jobs, so ANTs
    ran on more threads than allowed; it caps the share, never raises it, and a value ITK ignores is ignored."""
    from preprocess.workers import run_per_scan

    monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
    capped = run_per_scan(_itk_threads, {"a": ("a",)}, jobs=1, desc="test", progress=False)
    assert capped["a"]["threads"] == 1
    monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "999")
    raised = run_per_scan(_itk_threads, {"a": ("a",)}, jobs=1, desc="test", progress=False)
    assert raised["a"]["threads"] == usable_cores(), "a cap, not a count: no more threads than the cores"
    pinned = run_per_scan(_itk_threads, {"a": ("a",)}, jobs=1, desc="test", progress=False, threads=1)
    assert pinned["a"]["threads"] == 1, "--deterministic's 1 thread stays"
    monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "many")
    unread = run_per_scan(_itk_threads, {"a": ("a",)}, jobs=1, desc="test", progress=False)
    assert unread["a"]["threads"] == usable_cores()


def _done(key: str) -> dict:
    return {"status": "done"}


def test_more_jobs_than_usable_cores_run_with_a_note(monkeypatch, capsys) -> None:
    """Each worker then gets 1 ITK thread and they share the cores: no faster, and said so in one line."""
    from preprocess.workers import run_per_scan

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    results = run_per_scan(_done, {key: (key,) for key in "ab"}, jobs=2, desc="test", progress=False)
    assert results == {"a": {"status": "done"}, "b": {"status": "done"}}
    assert capsys.readouterr().err == ("note: --jobs 2 is more than the 1 core(s) this process may use (affinity, "
                                       "SLURM's --cpus-per-task, a container's CPU quota): each worker gets 1 ITK "
                                       "thread and they share the cores, no faster than --jobs 1\n")
    run_per_scan(_done, {"a": ("a",)}, jobs=2, desc="test", progress=False)  # one scan: one worker, no note
    assert capsys.readouterr().err == ""


def test_a_batch_logged_to_a_file_writes_lines_not_a_bar(capfd) -> None:
    """stderr to a file (a cluster job's log): tqdm's bar wrote carriage returns there, ten redraws a second."""
    from preprocess.workers import run_per_scan

    run_per_scan(_done, {key: (key,) for key in "ab"}, jobs=1, desc="test")
    err = capfd.readouterr().err
    assert "\r" not in err and re.fullmatch(r"\d\d:\d\d:\d\d test: 2/2 scans, 0 failed; all done in [\d.]+ s\n", err)
    run_per_scan(_done, {key: (key,) for key in "ab"}, jobs=1, desc="test", failed_before=1)  # its file missing
    assert re.fullmatch(r"\d\d:\d\d:\d\d test: 3/3 scans, 1 failed; all done in [\d.]+ s\n", capfd.readouterr().err)


@pytest.mark.parametrize("platform, method", [("linux", "fork"), ("darwin", "spawn"), ("win32", "spawn")])
def test_workers_are_forked_on_linux_only(monkeypatch: pytest.MonkeyPatch, platform: str, method: str) -> None:
    """macOS's system libraries make a fork unsafe (Python spawns there by default) and Windows cannot fork:
    simulate-cohort's forked pool on every platform stopped `--jobs 2` on Windows ("cannot find context for 'fork'");
    on Linux a fork, whatever Python's default (forkserver from 3.14, which imports torch again in each worker)."""
    from preprocess.workers import forked_on_linux

    default = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("forkserver", force=True)
    monkeypatch.setattr(sys, "platform", platform)
    try:
        assert forked_on_linux().get_start_method() == method
    finally:
        multiprocessing.set_start_method(default, force=True)


def test_a_worker_spawned_off_linux_starts_deaf_to_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal's Ctrl-C reaches every worker: a DataLoader worker spawned on macOS moments before printed a
    KeyboardInterrupt traceback from its imports around the one-line message (a forked one ignores it)."""
    from preprocess.workers import forked_on_linux

    monkeypatch.setattr(sys, "platform", "darwin")
    worker = forked_on_linux().Process(target=signal.raise_signal, args=(signal.SIGINT,))
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == 0  # 1 after a KeyboardInterrupt
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the parent's own is not blocked


def test_a_scan_worker_starts_deaf_to_ctrl_c() -> None:
    """A terminal's Ctrl-C reaches every worker: a scan worker spawned moments before (`make demo`'s, importing the
    demo's pandas again) printed a KeyboardInterrupt traceback from its imports above the one-line stop message."""
    from preprocess.workers import scan_workers

    with scan_workers(1) as pool:
        blocked = pool.submit(signal.pthread_sigmask, signal.SIG_BLOCK, []).result(timeout=120)
    assert signal.SIGINT in blocked  # as it started, until it ignores Ctrl-C (`start_worker_process`)


# What CPython 3.12 and 3.13 warn in the parent at a fork beside other Python threads (3.11, CI's, does not)
THREADED_FORK = "This process (pid={}) is multi-threaded, use of fork() may lead to deadlocks in the child."
_EMULATING_PYTHON_3_12: list[bool] = []


def _warn_as_python_3_12_at_a_fork() -> None:
    if _EMULATING_PYTHON_3_12:
        warnings.warn_explicit(THREADED_FORK.format(os.getpid()), DeprecationWarning, "popen_fork.py", 67,
                               module="multiprocessing.popen_fork")


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_a_worker_forked_beside_other_threads_shows_no_warning_of_it_and_a_fork_of_ones_own_still_does() -> None:
    """Every DataLoader worker of a training run forks beside other threads (tqdm's monitor, the queue feeders of the
    workers started before it): under Python 3.12 and 3.13, pytest and `python -W default` printed a DeprecationWarning
    for each. The warning is raised here where CPython raises it, at the fork, under the filters the fork meets."""
    from preprocess.workers import forked_on_linux

    os.register_at_fork(before=_warn_as_python_3_12_at_a_fork)  # stays registered: the list turns it off
    shown: dict[str, int] = {}
    for name, context in (("ours", forked_on_linux()), ("the user's", multiprocessing.get_context("fork"))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _EMULATING_PYTHON_3_12.append(True)
            try:
                worker = context.Process(target=os.getpid)
                worker.start()
            finally:
                _EMULATING_PYTHON_3_12.clear()
            worker.join(timeout=60)
        shown[name] = sum("is multi-threaded, use of fork()" in str(warning.message) for warning in caught)
    assert shown["ours"] == 0 and shown["the user's"] >= 1  # 2 on Python 3.12+ where another thread runs: its own


# A user's script calling the batch at top level, without `if __name__ == "__main__":`; spawned workers run it again
UNGUARDED_SCRIPT = """
import sys
from preprocess.batch import run_batch
from preprocess.inputs import read_inputs
from preprocess.pipeline import Params
run_batch(read_inputs(sys.argv[1]), sys.argv[2], Params(resolution=2), jobs=2, progress=False)
"""


def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path) -> None:
    """Every scan failed as "its worker process died ... killed for memory?", each worker printing a traceback of a
    second batch refused for the folder lock: both pointed away from the missing `if __name__ == "__main__":`."""
    (tmp_path / "scan.nii.gz").write_bytes(b"never read: no worker starts")
    (tmp_path / "scans.csv").write_text("participant_id,session_id,path\nsub-01,ses-M00,scan.nii.gz\n")
    (tmp_path / "script.py").write_text(UNGUARDED_SCRIPT)
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(tmp_path / "scans.csv"),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("preprocess.workers.WorkersDidNotStart: ") and 'if __name__ == "__main__":' in last
    assert "in use by another preprocess run" not in run.stderr and not (tmp_path / "out" / "failures.csv").exists()
