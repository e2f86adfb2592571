"""Fixtures shared by several test files."""

from __future__ import annotations

import importlib
import io
import logging
import os
import signal
import subprocess
import sys
import warnings
from contextlib import AbstractContextManager, contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
# Operators that read a tensor's value back to the host: on a GPU each makes the host wait for the device.
HOST_READS = {"aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero"}
# Tensor methods that hand a tensor's values to Python. On a CPU, `.tolist()`, `.numpy()` and `.cpu()` read memory
# the host holds and run no operator the profiler sees; on a GPU each is a copy back that waits for the device.
# The recorder also counts the project's `.to(device)` calls without non_blocking: a no-op on a CPU, on a GPU a copy
# in one waits for the queue to empty.
PYTHON_READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__array__"}


def pytest_configure(config: pytest.Config) -> None:
    """A test run started in the background without job control (`nohup make test &`) inherits Ctrl-C
    ignored, and so would every process it starts, where the Ctrl-C tests send it: catch it again, so
    that the processes they start see it as from a terminal (a caught signal is reset to the default,
    Python's KeyboardInterrupt, in a started program; an ignored one stays ignored)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _without_debug_tracebacks() -> Iterator[None]:
    """ELR_MRI_DEBUG=1, which a maintainer may have exported to see a command's traceback, turns the one-line errors
    the tests check into tracebacks, in this process and in the commands it starts: the tests check what a user
    sees, so they run without it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ELR_MRI_DEBUG", raising=False)
        yield


def _torch_arithmetic() -> tuple | None:
    """torch's process-wide switches of fp32 arithmetic, None before torch is imported (the preprocess tests)."""
    if "torch" not in sys.modules:
        return None
    import torch

    return (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32, torch.get_default_dtype())


@pytest.fixture(autouse=True)
def _torch_arithmetic_left_as_found() -> Iterator[None]:
    """A switch of torch's arithmetic that a test leaves set changes what every later test computes (TF32 matrix
    products on a GPU), so a test's results would depend on the tests before it: each test puts back what it set."""
    before = _torch_arithmetic()
    yield
    after = _torch_arithmetic()
    assert before is None or after == before, f"the test left torch's arithmetic changed: {before} -> {after}"


@pytest.fixture(scope="session")
def import_script() -> Iterator[Callable[[str], ModuleType]]:
    """Import a file of scripts/ as a module (scripts/ is not a package; its files import each other)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(SCRIPTS))


@contextmanager
def _python_reads() -> Iterator[list[str]]:
    """Collects "method (file:line)" for each `PYTHON_READS` call on a tensor in the block, the line the innermost
    of the project's own files (tests included) that asked, and each `.to(device)` without non_blocking that they
    make themselves (torch's own, as the fused optimizer's, are on the device already)."""
    import traceback

    from torch.overrides import TorchFunctionMode

    found: list[str] = []

    def ours(frame: traceback.FrameSummary) -> bool:
        return frame.filename.startswith(str(ROOT)) and not frame.filename.startswith(str(ROOT / ".venv")) \
            and not frame.filename.endswith("conftest.py")

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            name = getattr(func, "__name__", "")
            stack = traceback.extract_stack()[:-1]  # stack[-1]: the line that called `func`
            if name in PYTHON_READS or (name == "to" and ours(stack[-1]) and _blocking_move(args[1:], kwargs or {})):
                asked = [frame for frame in stack if ours(frame)]
                where = f"{Path(asked[-1].filename).relative_to(ROOT)}:{asked[-1].lineno}" if asked else "torch"
                found.append(f"{name} ({where})")
            return func(*args, **(kwargs or {}))

    with Recorder():
        yield found


def _blocking_move(args: tuple, kwargs: dict) -> bool:
    """Whether `Tensor.to(*args, **kwargs)` names a device without non_blocking (`.to(other)` is left out: the
    project's take another tensor's type on the same device)."""
    import torch

    names_device = "device" in kwargs or any(isinstance(arg, (torch.device, str)) for arg in args)
    return names_device and not (kwargs.get("non_blocking") or any(arg is True for arg in args))


@contextmanager
def _host_reads(device: str) -> Iterator[list[str]]:
    """Collects the block's reads of values back to the host: the CPU profiler's `HOST_READS` operators on any device,
    and `PYTHON_READS` calls, which on a CPU run no such operator. On a GPU any synchronisation with it fails the block
    at once (torch's sync debug mode turns it into an error)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device == "cuda"
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    found: list[str] = []
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof, _python_reads() as in_python:
            yield found
    finally:
        if on_gpu:
            torch.cuda.set_sync_debug_mode("default")
    found += in_python + [f"{event.key} ×{event.count}" for event in prof.key_averages() if event.key in HOST_READS]


@contextmanager
def _no_host_waits(device: str) -> Iterator[None]:
    """Fail if the block reads a value back to the host (`_host_reads`)."""
    with _host_reads(device) as reads:
        yield
    assert not reads, f"the block reads values back to the host: {reads}"


@pytest.fixture(scope="session")
def host_read_ops() -> set[str]:
    """The profiler's names of the ops that read a value back to the host (for checks in other processes)."""
    return set(HOST_READS)


@pytest.fixture
def no_host_waits() -> Callable[[str], AbstractContextManager[None]]:
    """`with no_host_waits(device): ...` asserts that the block never makes the host wait for `device`."""
    return _no_host_waits


@pytest.fixture
def host_reads() -> Callable[[str], AbstractContextManager[list[str]]]:
    """`with host_reads(device) as reads: ...` lists what the block read back to the host (filled at its end)."""
    return _host_reads


def _cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """`elr-mri ARGS` run by this process from the repository root, as `subprocess.run` would report it.

    What a fresh process would add to stderr is added here too: the warnings Python shows by default and
    the log records of WARNING and above that logging's last resort prints, so a one-line check sees them."""
    from elr_mri.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    last_resort = logging.StreamHandler(stderr)
    last_resort.setLevel(logging.WARNING)
    logging.getLogger().addHandler(last_resort)
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        with warnings.catch_warnings(record=True) as shown, redirect_stdout(stdout), redirect_stderr(stderr):
            warnings.resetwarnings()
            warnings.simplefilter("default")
            for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", hidden)
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's usage errors, as the interpreter reports a SystemExit
                code = 0 if exit_.code is None else exit_.code
                if not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
    finally:
        os.chdir(cwd)
        logging.getLogger().removeHandler(last_resort)
    for warning in shown:
        stderr.write(warnings.formatwarning(warning.message, warning.category, warning.filename, warning.lineno))
    return subprocess.CompletedProcess(["elr-mri", *args], code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def cli_in_process() -> Callable[..., subprocess.CompletedProcess]:
    """`cli_in_process("train", ...)`: the command without a new Python process, whose imports (torch, MONAI)
    cost seconds a call. For the many error paths and setups (a module's shared run too, hence the session);
    each command keeps tests that start it for real."""
    return _cli_in_process


@contextmanager
def _lock_held_elsewhere(lock: Path) -> Iterator[None]:
    """`lock` held (lockf) by another process, as a command writing its folder holds it, until the block ends. A
    small one: the command refused runs in this process (a lockf lock is a process's, so not its own)."""
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; lock = open(sys.argv[1], 'a'); "
                               "fcntl.lockf(lock, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)",
                               str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def lock_held_elsewhere() -> Callable[[Path], AbstractContextManager[None]]:
    """`with lock_held_elsewhere(folder / ".x.lock"): ...` stands for another command writing that folder."""
    return _lock_held_elsewhere


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Make a folder read-only for the test: a read-only bind mount where this runs as root (root writes past
    permissions, as on lab storage it may not), else its permissions; undone after the test."""
    undo: list[list[str] | Path] = []

    def make(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            folder.chmod(0o555)
            undo.append(folder)
            return
        mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"root here, and a read-only bind mount was refused: {mounted.stderr.decode().strip()}")
        undo.append(["umount", str(folder)])

    yield make
    for step in reversed(undo):
        if isinstance(step, Path):
            step.chmod(0o755)
        else:
            subprocess.run(step, check=True)


class _MakesAFolder:
    """Pickled, a call of os.mkdir: what loading a shared file made to run code does, made visible and harmless."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.folder),)


@pytest.fixture
def code_in_a_pickle(tmp_path: Path) -> tuple[object, Path]:
    """(an object whose pickle makes a folder when loaded, that folder): a loader that runs a file's code makes it.
    Its pickle names `os.mkdir` by the module that defines it (posix on Linux and macOS)."""
    ran = tmp_path / "ran"
    return _MakesAFolder(ran), ran


def _drawn_in_a_notebook(drawing: str) -> str:
    """What a fresh process, standing for a notebook's kernel that chose the svg backend and holds one figure, prints
    as its backend and open figures after running `drawing` (Python statements): "svg [1]" when both were left alone.
    A module that chose the Agg backend for the whole process stopped a notebook's figures from showing."""
    notebook = (f"import matplotlib, matplotlib.pyplot as plt; plt.switch_backend('svg'); plt.figure()\n{drawing}\n"
                "print(matplotlib.get_backend(), plt.get_fignums())")
    result = subprocess.run([sys.executable, "-c", notebook], capture_output=True, text=True,
                            cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()[-1]


@pytest.fixture
def drawn_in_a_notebook() -> Callable[[str], str]:
    """`drawn_in_a_notebook(statements)`: the backend and open figures a notebook's process is left with."""
    return _drawn_in_a_notebook
