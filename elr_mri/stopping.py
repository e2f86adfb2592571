"""Signals that stop a command: Ctrl-C (SIGINT) and, for `elr-mri train`, SIGTERM.

Kept apart from torch so the command line can tell a SIGTERM from a Ctrl-C without importing it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from preprocess.signals import Terminated

__all__ = ["Terminated", "terminating_at_safe_points", "terminating_at_once", "terminating_by_default",
           "stop_if_terminated", "terminated", "interrupted", "forget_recorded_signals", "holding_ctrl_c"]

_received = threading.Event()  # set by `_RecordTermination` in the process that installed it
_interrupted = threading.Event()  # set by `_RecordInterrupt`


class _RecordTermination:
    """SIGTERM's handler: it only records the signal, which the training loop acts on between steps. Raised where
    the signal lands, the exception was lost or garbled: inside logging's after-fork hook while a DataLoader
    started its workers (Python drops it, and the run trained on to its end), or halfway through a batch's
    transfer from a worker (whose thread printed a traceback). It also replaces SIGCHLD's handler, through which
    torch raised for workers the same SIGTERM ended. A forked child (a DataLoader worker) inherits it and takes
    SIGTERM's default action there instead, so its parent can still stop it."""

    def __init__(self) -> None:
        self.owner = os.getpid()

    def __call__(self, signum: int, frame: object) -> None:
        if os.getpid() != self.owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        signal.signal(signal.SIGCHLD, _children_ended)
        _received.set()


class _RaiseTermination(_RecordTermination):
    """SIGTERM's handler where no training step comes to act on the record (the holdout's scoring once `train` has
    finished): raised where it lands as well, as `evaluate` does; a job's SIGKILL follows within seconds."""

    def __call__(self, signum: int, frame: object) -> None:
        super().__call__(signum, frame)
        if os.getpid() == self.owner:
            raise Terminated


def _children_ended(signum: int, frame: object) -> None:
    """SIGCHLD's handler once a SIGTERM is recorded: nothing to do. Not SIG_DFL: a SIGCHLD already pending when the
    handler changed (a worker the same group SIGTERM ended) then found no Python handler, and Python printed
    "OSError: Signal 17 ignored due to race condition" as an ignored exception under the one-line message."""


class _RecordInterrupt:
    """SIGINT's handler during training: KeyboardInterrupt where the signal lands, as Python's own handler, and a
    record of it. Raised inside logging's after-fork hook while a DataLoader starts its workers, the exception is
    dropped (the run trained on to its end); the record stops the run at the next step instead, and makes a worker
    the same Ctrl-C ended read as its consequence rather than as a fault. A forked child (a DataLoader worker)
    inherits it and ignores Ctrl-C from then on: a terminal sends it to the whole group, and the parent, stopping,
    ends its workers itself (each printed a traceback of its own)."""

    def __init__(self) -> None:
        self.owner = os.getpid()

    def __call__(self, signum: int, frame: object) -> None:
        if os.getpid() != self.owner:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            return
        _interrupted.set()
        raise KeyboardInterrupt


@contextmanager
def terminating_at_safe_points() -> Iterator[None]:
    """Record a SIGTERM (a batch system's time limit, scancel, kill) during the block for `stop_if_terminated`:
    its default action ended a training run without a word, where a cluster user needs the resume command most.
    Ctrl-C is recorded too (`_RecordInterrupt`) where Python's own handler is installed. Only in the main thread and
    where SIGTERM still has its default action."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    forget_recorded_signals()
    signal.signal(signal.SIGTERM, _RecordTermination())
    own_sigint = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    report_unraisable, report_exception = sys.unraisablehook, sys.excepthook
    sys.excepthook = _quiet_about_a_worker_gone_mid_handover(report_exception)
    if own_sigint:
        signal.signal(signal.SIGINT, _RecordInterrupt())
        sys.unraisablehook = _quiet_about_a_recorded_interrupt(report_unraisable)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.excepthook = report_exception
        if own_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.unraisablehook = report_unraisable


def _quiet_about_a_recorded_interrupt(report: Callable[[Any], object]) -> Callable[[Any], object]:
    """sys.unraisablehook that leaves out a dropped KeyboardInterrupt once it is recorded (the run stops at its next
    step and says so in one line); Python printed its traceback under "Exception ignored in _releaseLock"."""

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _interrupted.is_set():
            return
        report(unraisable)

    return hook


def _quiet_about_a_worker_gone_mid_handover(report: Callable[..., object]) -> Callable[..., object]:
    """sys.excepthook that leaves out a connection error in multiprocessing's resource sharer, the thread through
    which DataLoader workers hand over their batches' tensors: a worker that a terminal's Ctrl-C (sent to the whole
    group) or a batch system's SIGTERM ends mid-handover resets it, and the thread printed a traceback into the
    run's one closing line. A worker that dies otherwise is still reported by the DataLoader itself."""

    def hook(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        if isinstance(error, (ConnectionError, EOFError)) and _raised_in_resource_sharer(trace):
            return
        report(kind, error, trace)

    return hook


def _raised_in_resource_sharer(trace: Any) -> bool:
    while trace is not None:
        if trace.tb_frame.f_code.co_filename.endswith(os.path.join("multiprocessing", "resource_sharer.py")):
            return True
        trace = trace.tb_next
    return False


@contextmanager
def terminating_at_once() -> Iterator[None]:
    """Within `terminating_at_safe_points`, for work without steps (scoring the holdout after training): a SIGTERM or
    dropped Ctrl-C recorded before the block stops it at its start, a SIGTERM during it where it lands. Recorded
    only, the signal left the scoring running to its end, exit 0 without a word, or to the job's SIGKILL."""
    recording = signal.getsignal(signal.SIGTERM)
    if not isinstance(recording, _RecordTermination):
        yield
        return
    stop_if_terminated()
    signal.signal(signal.SIGTERM, _RaiseTermination())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, recording)


@contextmanager
def terminating_by_default() -> Iterator[None]:
    """Within `terminating_at_safe_points`, for a wait in C++ that no Python handler interrupts (joining torchrun's
    process group): SIGTERM's default action during it. torchrun SIGTERMs the ranks waiting there once another has
    failed before joining (a config or data path missing on its node); recorded only, the signal left them waiting
    for torchrun's SIGKILL 30 s later ("Unable to shutdown process ... via 15"). Nothing is written before then, so
    an end without a word loses nothing; a SIGTERM or dropped Ctrl-C recorded before the block stops it at its start."""
    recording = signal.getsignal(signal.SIGTERM)
    if not isinstance(recording, _RecordTermination):
        yield
        return
    stop_if_terminated()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, recording)


def terminated() -> bool:
    """Whether a SIGTERM was recorded: an error raised after it (a DataLoader worker the same signal ended) is its
    consequence, not a fault of the run."""
    return _received.is_set()


def interrupted() -> bool:
    """Whether a Ctrl-C was recorded during training: an error raised after it (a DataLoader worker the same Ctrl-C
    ended) is its consequence, not a fault of the run."""
    return _interrupted.is_set()


def forget_recorded_signals() -> None:
    """Drop the SIGTERM and Ctrl-C recorded during training, once the command has said how it ended: they outlive
    `terminating_at_safe_points` for that. Left set, `train` called next in the same process (a notebook's, after an
    in-process `elr_mri.cli.main`) stopped at its first step, and would have read a worker's error as their doing."""
    _received.clear()
    _interrupted.clear()


def stop_if_terminated() -> None:
    """Raise `Terminated` if a SIGTERM was recorded, KeyboardInterrupt if a Ctrl-C was (one Python dropped); called
    between training steps, where stopping is clean."""
    if _received.is_set():
        raise Terminated
    if _interrupted.is_set():
        raise KeyboardInterrupt


@contextmanager
def holding_ctrl_c() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block has run, then raise it. Why: torch's writer turns a
    KeyboardInterrupt raised inside its writes into "unexpected pos", so an interrupted save looked like a
    full disk and the interrupt was lost. Only where Python's own handler or training's `_RecordInterrupt` is
    installed, in the main thread; a block inside another is held to the outer one's end."""
    previous = signal.getsignal(signal.SIGINT)
    if (threading.current_thread() is not threading.main_thread()
            or not (previous is signal.default_int_handler or isinstance(previous, _RecordInterrupt))):
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if isinstance(previous, _RecordInterrupt):
            _interrupted.set()
        raise KeyboardInterrupt
