"""Fixtures shared by several test files."""

from __future__ import annotations

import importlib
import signal
import sys
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# Operators that read a tensor's value back to the host: on a GPU each makes the host wait for the device.
HOST_READS = {"aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero"}


def pytest_configure(config: pytest.Config) -> None:
    """A test run started in the background without job control (`nohup make test &`) inherits Ctrl-C
    ignored, and so would every process it starts, where the Ctrl-C tests send it: catch it again, so
    that the processes they start see it as from a terminal (a caught signal is reset to the default,
    Python's KeyboardInterrupt, in a started program; an ignored one stays ignored)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def import_script() -> Iterator[Callable[[str], ModuleType]]:
    """Import a file of scripts/ as a module (scripts/ is not a package; its files import each other)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(SCRIPTS))


@contextmanager
def _no_host_waits(device: str) -> Iterator[None]:
    """Fail if the block reads a value back to the host (seen by the CPU profiler on any device) or,
    on a GPU, synchronises with it in any way (torch's sync debug mode turns that into an error)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device == "cuda"
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            yield
    finally:
        if on_gpu:
            torch.cuda.set_sync_debug_mode("default")
    reads = HOST_READS & {event.key for event in prof.key_averages()}
    assert not reads, f"the block reads values back to the host: {sorted(reads)}"


@pytest.fixture
def no_host_waits() -> Callable[[str], AbstractContextManager[None]]:
    """`with no_host_waits(device): ...` asserts that the block never makes the host wait for `device`."""
    return _no_host_waits
