"""The scratch folder of an `elr-mri volumes` run under the temporary folder, and the removal of those whose run is gone.

A run removes its folder when it ends, but not when it is killed outright (SIGKILL, the OOM killer, a batch system's
hard limit): each such run left an `elr-volumes-*` folder in /tmp for good. A run holds a lock file in its folder
(lockf, which the kernel releases when the process dies, however it dies), so a later run can tell a folder whose run
is gone, which it removes, from one whose run still measures, which it leaves alone.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from preprocess.folder_locks import locks_unsupported

try:
    import fcntl
except ImportError:  # Windows: no such locks, so no folder is taken as abandoned there
    fcntl = None  # type: ignore[assignment]

__all__ = ["SCRATCH_PREFIX", "OWNER_LOCK", "scratch_folder", "remove_abandoned_scratch"]

SCRATCH_PREFIX = "elr-volumes-"
OWNER_LOCK = ".owner.lock"  # in each run's scratch folder, locked by that run for as long as it runs


@contextmanager
def scratch_folder() -> Iterator[str]:
    """A new scratch folder under the temporary folder, this run's until the block ends, then removed; the folders of
    runs killed before they could remove theirs are removed first."""
    remove_abandoned_scratch(Path(tempfile.gettempdir()))
    folder, lock = _owned_folder()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        lock.close()


def remove_abandoned_scratch(parent: Path) -> None:
    """Remove each scratch folder in `parent` whose lock no process holds. A folder without the lock file (made by a
    version before it, or being made this instant) or of another user is left as it is."""
    for lock_path in parent.glob(f"{SCRATCH_PREFIX}*/{OWNER_LOCK}"):
        try:
            handle = open(lock_path, "a")
        except OSError:  # another user's, or removed meanwhile
            continue
        with handle:
            if _try_lock(handle) == "held":
                shutil.rmtree(lock_path.parent, ignore_errors=True)


def _owned_folder() -> tuple[str, IO[str]]:
    """A fresh scratch folder and its lock file, locked by this process. Another run's cleanup may lock it between
    the folder's making and its locking here, and remove it: then another is made."""
    while True:
        folder = tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
        lock = open(Path(folder) / OWNER_LOCK, "a")
        if _try_lock(lock) != "busy" and _still_there(lock):
            return folder, lock
        lock.close()


def _try_lock(handle: IO[str]) -> str:
    """'held' once this process holds `handle`'s lock, 'busy' where another does, 'unsupported' where the file
    system (or the OS) has no locks: a run goes on there, and its cleanup removes nothing."""
    if fcntl is None:
        return "unsupported"
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if locks_unsupported(err):
            return "unsupported"
        if err.errno in (errno.EACCES, errno.EAGAIN):
            return "busy"
        raise
    return "held"


def _still_there(lock: IO[str]) -> bool:
    """Whether `lock` is still the file at its path: not removed by a cleanup that held it just before."""
    try:
        return os.path.samestat(os.fstat(lock.fileno()), os.stat(lock.name))
    except FileNotFoundError:
        return False
