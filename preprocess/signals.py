"""SIGTERM (a batch system's time limit, scancel, kill) stopping a command as Ctrl-C does.

Its default action ended a cluster job without a word, where the user most needs to know it stopped and how to go
on. Kept apart from torch, like the rest of this package, so that preprocess and elr_mri share one `Terminated`.
`elr-mri train` records the signal and acts on it between steps instead (`elr_mri.stopping`): its main process forks
DataLoader workers, inside whose after-fork hooks a raised exception is lost.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["Terminated", "sigterm_as_ctrl_c", "stopped_exit_code"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, stopping a command as Ctrl-C does (its workers ended, what it finished kept)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """During the block, SIGTERM raises `Terminated` where it lands: for a main process that only waits on spawned
    workers or reads files. Only in the main thread and where SIGTERM still has its default action."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stopped_exit_code(stop: KeyboardInterrupt, command: str, on_rerun: str, say_how_to_go_on: bool = True) -> int:
    """The exit code of `command` stopped by Ctrl-C (130) or SIGTERM (`Terminated`, 143), after one line saying what
    running it again does (`on_rerun`), unless its caller says how to go on itself (mri_demo.py, of which simulate
    and preprocess are steps: two lines told the user to rerun two different commands)."""
    by_sigterm = isinstance(stop, Terminated)
    if say_how_to_go_on:
        how = "stopped by SIGTERM (a job's time limit, scancel or kill)" if by_sigterm else "interrupted"
        print(f"{command}: {how}; run the same command again: {on_rerun}", file=sys.stderr)
    return 128 + signal.SIGTERM if by_sigterm else 130
