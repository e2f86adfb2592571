"""SIGTERM stops `elr-mri train` as Ctrl-C does (`elr_mri.stopping`), without changing what forked workers do."""

from __future__ import annotations

import os
import signal
import time

import pytest

from elr_mri.stopping import Terminated, holding_ctrl_c, terminating_as_ctrl_c


def test_sigterm_raises_terminated_in_the_block_and_has_its_default_action_after() -> None:
    with pytest.raises(Terminated):
        with terminating_as_ctrl_c():
            signal.raise_signal(signal.SIGTERM)
            time.sleep(5)  # not reached: the handler raises at once
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_sigterm_during_a_held_block_waits_for_its_end() -> None:
    finished = []
    with pytest.raises(Terminated):
        with terminating_as_ctrl_c(), holding_ctrl_c():
            signal.raise_signal(signal.SIGTERM)
            finished.append(True)  # a checkpoint being written completes
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_forked_child_still_dies_of_sigterm() -> None:
    """A DataLoader worker inherits the handler; its parent stops it with SIGTERM, which must still end it."""
    with terminating_as_ctrl_c():
        child = os.fork()
        if child == 0:  # the worker: a SIGTERM must end it, not raise into its loop
            try:
                time.sleep(30)
            finally:
                os._exit(3)  # reached only if the signal raised instead of ending the process
        time.sleep(0.5)
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
