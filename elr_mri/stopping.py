"""Signals that stop a command: Ctrl-C (SIGINT) and, for `elr-mri train`, SIGTERM.

Kept apart from torch so the command line can tell a SIGTERM from a Ctrl-C without importing it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from preprocess.signals import Terminated

__all__ = ["Terminated", "terminating_at_safe_points", "stop_if_terminated", "terminated", "holding_ctrl_c"]

_received = threading.Event()  # set by `_RecordTermination` in the process that installed it


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


def _children_ended(signum: int, frame: object) -> None:
    """SIGCHLD's handler once a SIGTERM is recorded: nothing to do. Not SIG_DFL: a SIGCHLD already pending when the
    handler changed (a worker the same group SIGTERM ended) then found no Python handler, and Python printed
    "OSError: Signal 17 ignored due to race condition" as an ignored exception under the one-line message."""


@contextmanager
def terminating_at_safe_points() -> Iterator[None]:
    """Record a SIGTERM (a batch system's time limit, scancel, kill) during the block for `stop_if_terminated`:
    its default action ended a training run without a word, where a cluster user needs the resume command most.
    Only in the main thread and where SIGTERM still has its default action."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    _received.clear()
    signal.signal(signal.SIGTERM, _RecordTermination())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def terminated() -> bool:
    """Whether a SIGTERM was recorded: an error raised after it (a DataLoader worker the same signal ended) is its
    consequence, not a fault of the run."""
    return _received.is_set()


def stop_if_terminated() -> None:
    """Raise `Terminated` if a SIGTERM was recorded; called between training steps, where stopping is clean."""
    if _received.is_set():
        raise Terminated


@contextmanager
def holding_ctrl_c() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block has run, then raise it. Why: torch's writer turns a
    KeyboardInterrupt raised inside its writes into "unexpected pos", so an interrupted save looked like a
    full disk and the interrupt was lost. Only where Python's own handler is installed, in the main thread; a block
    inside another is held to the outer one's end."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt
