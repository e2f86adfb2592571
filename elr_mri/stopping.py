"""Signals that stop a command: Ctrl-C (SIGINT) and, for `elr-mri train`, SIGTERM treated alike.

Kept apart from torch so the command line can tell a SIGTERM from a Ctrl-C without importing it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Terminated", "terminating_as_ctrl_c", "holding_ctrl_c"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be (`terminating_as_ctrl_c`)."""


class _RaiseTerminated:
    """SIGTERM's handler in the process that installed it; a forked child (a DataLoader worker) inherited it, and
    there it takes the default action again, so its parent can still stop it with SIGTERM."""

    def __init__(self) -> None:
        self.owner = os.getpid()

    def __call__(self, signum: int, frame: object) -> None:
        if os.getpid() != self.owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated


@contextmanager
def terminating_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (a batch system's time limit, scancel, kill) stops the block as Ctrl-C does, as `Terminated`: its
    default action ended a training run without a word, where a cluster user needs the resume command most.
    Only in the main thread and where SIGTERM still has its default action."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _RaiseTerminated())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def holding_ctrl_c() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT), and a SIGTERM that `terminating_as_ctrl_c` turns into one, until the block has run,
    then raise it. Why: torch's writer turns a KeyboardInterrupt raised inside its writes into "unexpected pos", so
    an interrupted save looked like a full disk and the interrupt was lost. Only where Python's own handler
    (or `terminating_as_ctrl_c`'s) is installed, in the main thread; a block inside another is held to the outer
    one's end."""
    held = {number: handler for number, handler in ((signal.SIGINT, signal.getsignal(signal.SIGINT)),
                                                     (signal.SIGTERM, signal.getsignal(signal.SIGTERM)))
            if handler is signal.default_int_handler or isinstance(handler, _RaiseTerminated)}
    if threading.current_thread() is not threading.main_thread() or not held:
        yield
        return
    received: list[int] = []
    for number in held:
        signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in held.items():
            signal.signal(number, handler)
    if signal.SIGTERM in received:
        raise Terminated
    if received:
        raise KeyboardInterrupt
