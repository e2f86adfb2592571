"""SIGTERM stops `elr-mri train` between steps (`elr_mri.stopping`), without changing what forked workers do."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from elr_mri import stopping
from elr_mri.stopping import (Terminated, holding_ctrl_c, interrupted, stop_if_terminated, terminated,
                              terminating_at_safe_points, terminating_by_default)


@pytest.fixture(autouse=True)
def _forget_recorded_signals() -> Iterator[None]:
    """A recorded signal outlives its block (the CLI reads it after); later tests in this process must not stop."""
    yield
    stopping._received.clear()
    stopping._interrupted.clear()


def test_sigterm_is_recorded_and_acted_on_at_the_next_safe_point() -> None:
    with terminating_at_safe_points():
        stop_if_terminated()  # nothing received yet
        signal.raise_signal(signal.SIGTERM)
        assert terminated()
        with pytest.raises(Terminated):
            stop_if_terminated()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_joining_torchruns_process_group_leaves_sigterm_its_default_action_and_training_gets_it_back() -> None:
    """init_process_group waits in C++, where a recorded SIGTERM (torchrun's, once another rank failed before
    joining) never acts: the rank waited for torchrun's SIGKILL 30 s later (the end-to-end run: test_distributed)."""
    with terminating_at_safe_points():
        recording = signal.getsignal(signal.SIGTERM)
        with terminating_by_default():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is recording
        signal.raise_signal(signal.SIGTERM)  # recorded before the wait: it stops the run at its start
        with pytest.raises(Terminated), terminating_by_default():
            pytest.fail("the block ran though a SIGTERM was recorded")
        assert signal.getsignal(signal.SIGTERM) is recording


def test_a_sigterm_landing_where_exceptions_are_dropped_is_not_lost() -> None:
    """Raised by the handler, the exception was dropped where Python cannot propagate one (a finalizer, logging's
    after-fork hook while a DataLoader forked its workers), and the run trained on to its end."""

    class Finalised:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGTERM)

    with terminating_at_safe_points():
        Finalised()  # freed at once: the signal is handled inside __del__
        with pytest.raises(Terminated):
            stop_if_terminated()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupt, as meant
def test_a_ctrl_c_dropped_where_it_landed_still_stops_training_at_the_next_step() -> None:
    """A terminal sends Ctrl-C to the whole group; landing in logging's after-fork hook while a DataLoader forked its
    workers, the KeyboardInterrupt was dropped and the run trained on to its end (3 runs in 20 with 2 workers)."""

    class Finalised:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)  # raised inside __del__: Python drops it

    with terminating_at_safe_points():
        stop_if_terminated()  # nothing received yet
        Finalised()
        assert interrupted() and not terminated()
        with pytest.raises(KeyboardInterrupt):
            stop_if_terminated()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_still_stops_at_once_and_is_held_through_a_checkpoint_write_during_training() -> None:
    with terminating_at_safe_points():
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        wrote = []
        with pytest.raises(KeyboardInterrupt):
            with holding_ctrl_c():
                signal.raise_signal(signal.SIGINT)
                wrote.append("last.pt")  # the write finishes before the interrupt is raised
        assert wrote == ["last.pt"] and interrupted()


def test_a_worker_error_after_a_ctrl_c_is_the_interrupt_s_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A Ctrl-C sent to the group ends DataLoader workers too; the error torch raises for them then said nothing of
    the interrupt, in a traceback."""
    from elr_mri import cli

    def training(args: object) -> int:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # dropped, as in logging's after-fork hook
        raise RuntimeError("DataLoader worker (pid(s) 123) exited unexpectedly")

    monkeypatch.setattr(cli, "train_command", training)
    assert cli.main(["train", "--config", "configs/digits/elr_sym40.yaml", "--out", "runs/never"]) == 130
    assert capsys.readouterr().err.startswith("elr-mri train: interrupted; ")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_recorded_by_one_in_process_train_does_not_stop_the_next(monkeypatch: pytest.MonkeyPatch, capsys,
                                                                         signum: int) -> None:
    """The record outlived the command that said how it ended: `train` called next in the same process (a notebook
    after `elr_mri.cli.main(["train", ...])`) stopped at its first step, with no signal sent to it."""
    from elr_mri import cli

    def training(args: object) -> int:
        try:
            signal.raise_signal(signum)
        except KeyboardInterrupt:
            pass  # a Ctrl-C dropped where it landed, as in logging's after-fork hook: the record stops the run
        stop_if_terminated()  # the next step
        return 0

    monkeypatch.setattr(cli, "train_command", training)
    assert cli.main(["train", "--config", "configs/digits/elr_sym40.yaml", "--out", "runs/never"]) != 0
    assert "elr-mri train: " in capsys.readouterr().err
    assert not terminated() and not interrupted()
    stop_if_terminated()  # what the next run's first step calls


def test_a_forked_child_still_dies_of_sigterm() -> None:
    """A DataLoader worker inherits the handler; its parent stops it with SIGTERM, which must still end it."""
    ready, started = os.pipe()
    with terminating_at_safe_points():
        child = os.fork()
        if child == 0:  # the worker: a SIGTERM must end it, not be recorded and ignored
            try:
                os.write(started, b"x")
                time.sleep(30)
            finally:
                os._exit(3)  # reached only if the signal did not end the process
        # Sent once the child runs Python: one sent sooner (a fixed 0.5 s on a loaded machine) can land before
        # Python's after-fork clean-up, which drops a pending signal, and the child then slept its 30 s.
        os.read(ready, 1)
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
    os.close(ready)
    os.close(started)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


def test_a_forked_child_ignores_the_ctrl_c_its_parent_stops_on() -> None:
    """A terminal's Ctrl-C reaches the DataLoader workers too, each of which printed a traceback of its own while the
    parent, stopping, ended them itself. A worker inherits the handler, which there ignores Ctrl-C from then on."""
    with terminating_at_safe_points():
        child = os.fork()
        if child == 0:  # the worker
            code = 3  # kept if the Ctrl-C raised here
            try:
                signal.raise_signal(signal.SIGINT)
                code = 0 if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else 4
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and not interrupted()


def test_a_sigchld_pending_with_the_sigterm_is_not_reported_as_a_race(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch system's SIGTERM ends DataLoader workers too: their SIGCHLD, pending when the SIGTERM handler replaced
    torch's SIGCHLD handler with SIG_DFL, made Python print "Signal 17 ignored due to race condition" (seen in CI)."""
    reported: list[str] = []
    monkeypatch.setattr("sys.unraisablehook", lambda report: reported.append(str(report.exc_value)))
    previous = signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # as torch's DataLoader installs one
    try:
        with terminating_at_safe_points():
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGCHLD})
            # sent to this thread: a process's signal may go to another thread left by an earlier test, whose
            # handler, on a loaded machine, had not yet run when the assertion below read the record
            signal.pthread_kill(threading.get_ident(), signal.SIGCHLD)
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGCHLD})  # both handled now, in order
            assert terminated()
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert reported == []


def test_the_other_commands_stop_on_sigterm_with_ctrl_c_s_line(monkeypatch: pytest.MonkeyPatch, capsys,
                                                               tmp_path) -> None:
    """`elr-mri volumes` (hours on a cohort, in a batch job) ended without a word at its time limit."""
    from elr_mri import cli

    def measuring(args: object) -> int:
        signal.raise_signal(signal.SIGTERM)
        time.sleep(5)  # not reached: the signal stops the command where it lands
        return 0

    monkeypatch.setattr(cli, "volumes_command", measuring)
    assert cli.main(["volumes", "--manifest", str(tmp_path / "manifest.csv")]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == ("elr-mri volumes: stopped by SIGTERM (a job's time limit, scancel or kill); "
                                       "nothing half-written was kept; run the command again\n")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def _reset_a_handover() -> None:
    """What a DataLoader worker killed mid-handover does to multiprocessing's resource sharer: connect to its
    listener and go before the handshake, so the listener's thread fails in it and reports through sys.excepthook."""
    from multiprocessing import resource_sharer

    with open(os.devnull) as handle:
        resource_sharer.DupFd(handle.fileno())  # starts the sharer's listener thread, as a worker's tensor would
        peer = socket.socket(socket.AF_UNIX)
        peer.connect(resource_sharer._resource_sharer._address)
        peer.close()
        # A whole handover after it: the listener's one thread takes connections in turn, so once this one is served
        # the reset one has been reported (a fixed 0.5 s, on a loaded machine, left its traceback to a later read).
        os.close(resource_sharer.DupFd(handle.fileno()).detach())


def test_a_worker_gone_mid_handover_prints_no_traceback_into_training_s_closing_line(capfd) -> None:
    """A terminal's Ctrl-C reaches the DataLoader workers too; one killed while handing over a batch made the
    resource sharer's thread print a traceback, glued to the run's one line about the interrupt."""
    _reset_a_handover()
    assert "Traceback" in capfd.readouterr().err  # what training printed
    with terminating_at_safe_points():
        _reset_a_handover()
    assert "Traceback" not in capfd.readouterr().err


def test_a_sigterm_stops_an_image_folder_decoding_between_chunks(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """`train` acted on a SIGTERM only at its first step, after the whole image folder was decoded (CIFAR-10's 60,000
    JPEGs: 40 s on 2 busy cores), past a batch system's grace before SIGKILL. It now acts after the chunk at hand."""
    from elr_mri.data import image_decoding

    decoded: list[int] = []
    queue_left = threading.Event()

    class Pool(ThreadPoolExecutor):
        """One thread, whose chunk after the first lasts until decode_all has left the queue (dropped or not)."""

        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            super().shutdown(wait=False, cancel_futures=cancel_futures)
            queue_left.set()
            super().shutdown(wait=wait)

    def decode_chunk(paths: list) -> list:
        decoded.append(len(paths))
        if len(decoded) == 1:
            signal.raise_signal(signal.SIGTERM)  # recorded by the handler, in the main thread
        elif len(decoded) == 2:
            # a chunk still decoding when the main thread stops: a fixed 0.5 s let the worker, on a loaded machine
            # where the main thread waited longer, finish it and take a third; 60 s bounds a decode_all that waits
            queue_left.wait(60)
        return [None] * len(paths)

    monkeypatch.setattr(image_decoding, "_decoding_pool", lambda chunks: Pool(max_workers=1))
    monkeypatch.setattr(image_decoding, "_decode_chunk", decode_chunk)
    monkeypatch.setattr(image_decoding, "DECODE_CHUNK", 2)
    with terminating_at_safe_points(), pytest.raises(Terminated):
        image_decoding.decode_all([tmp_path / f"{k}.png" for k in range(20)])  # 10 chunks
    # The first chunk, and the second only where the worker took it before the main thread cancelled the queue (a
    # race CI lost once); the 8 queued behind it are dropped either way.
    assert len(decoded) in (1, 2)


def test_a_sigterm_during_the_imports_stops_train_before_its_data_is_read(tmp_path) -> None:
    """torch's import takes seconds (8 on 2 busy cores); a SIGTERM recorded then waited for the data to be read, and
    the first step, before it acted. The run now stops at its start: no folder made, nothing read."""
    from elr_mri.config import load_config
    from elr_mri.engine.runner import train_checked

    cfg = load_config("configs/digits/elr_sym40.yaml", ["data.root=/nonexistent/never/read"])
    with terminating_at_safe_points():
        signal.raise_signal(signal.SIGTERM)
        with pytest.raises(Terminated):
            train_checked(cfg, tmp_path / "run", resume=False, notes=[])
    assert not (tmp_path / "run").exists()


def _raised_in_the_resource_sharer(error: BaseException) -> BaseException:
    """`error` with a traceback through a file named as multiprocessing's resource sharer, as its listener's."""
    try:
        exec(compile("raise error", os.path.join("lib", "multiprocessing", "resource_sharer.py"), "exec"))
    except BaseException as raised:  # the one raised just above
        return raised
    raise AssertionError("nothing raised")


def test_a_handover_cut_before_its_first_byte_is_left_out_as_a_reset_one_is() -> None:
    """A worker gone before sending anything leaves the listener an end of file (EOFError), not a reset; an error
    of another kind there, or one raised elsewhere, is still reported."""
    reported: list[type[BaseException]] = []
    hook = stopping._quiet_about_a_worker_gone_mid_handover(lambda kind, error, trace: reported.append(kind))
    for error in (EOFError(), ConnectionResetError(), ValueError()):
        raised = _raised_in_the_resource_sharer(error)
        hook(type(raised), raised, raised.__traceback__)
    try:
        raise EOFError
    except EOFError as elsewhere:
        hook(EOFError, elsewhere, elsewhere.__traceback__)
    assert reported == [ValueError, EOFError]


def test_a_ctrl_c_dropped_where_none_was_recorded_is_still_reported() -> None:
    """Only a KeyboardInterrupt Python dropped after training recorded the Ctrl-C is left out: its line follows."""
    reported: list[object] = []
    hook = stopping._quiet_about_a_recorded_interrupt(reported.append)
    dropped = SimpleNamespace(exc_value=KeyboardInterrupt())  # what sys.unraisablehook is given
    hook(dropped)
    stopping._interrupted.set()
    hook(dropped)
    assert reported == [dropped]
