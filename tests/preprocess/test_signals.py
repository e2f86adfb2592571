"""SIGTERM raises Terminated only inside the block, only in the main thread and only where nobody else handles it."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from preprocess.signals import Terminated, sigterm_as_ctrl_c


def test_sigterm_in_the_block_raises_terminated_and_its_default_action_is_back_after_it():
    with pytest.raises(Terminated), sigterm_as_ctrl_c():
        assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL  # else the kill below would end pytest
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_handler_of_the_callers_is_kept():
    received = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with sigterm_as_ctrl_c():
            os.kill(os.getpid(), signal.SIGTERM)
        kept = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert (received, kept) == ([signal.SIGTERM], True)


def test_in_another_thread_the_block_runs_once_and_installs_nothing():
    ran, errors = [], []

    def in_a_thread():
        try:
            with sigterm_as_ctrl_c():
                ran.append(signal.getsignal(signal.SIGTERM))
        except Exception as exc:  # raised in the thread, reported in the test
            errors.append(exc)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert (ran, errors) == ([signal.SIG_DFL], [])
