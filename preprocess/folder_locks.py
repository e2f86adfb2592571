"""The locks that keep a second run out of an output folder one is writing, and what they do where the file system
of that folder has no file locks.

Why go on without them: cluster file systems are often mounted without them (Lustre without `-o flock`, NFS
without its lock service), and the OS then answers a lock request with ENOLCK, ENOSYS or EOPNOTSUPP. The locks of
`elr-mri train`, `preprocess`, `simulate-cohort`, `evaluate` and `explain` only keep a second run out of a folder one
is writing; refusing to run at all there would make the tools unusable on the machines their users have, so the run
goes on and says that this guard is off.

A run that holds a lock writes who it is into the lock file ('PID 4242 on node7, SLURM job 123'), so that a second
run refused there can name it: on a cluster the run holding a folder may be any node's job, started hours ago.

It lives here, in the package without torch, so that `elr-mri preprocess` can use it too.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

try:
    import fcntl
except ImportError:  # Windows, which has no such locks: the commands run there unguarded, as the README says
    fcntl = None  # type: ignore[assignment]

__all__ = ["forget_holder", "held_lock", "holder_named_in", "locks_unsupported", "lock_or_refuse", "name_holder",
           "warn_unlocked"]

_NO_LOCKS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})


def locks_unsupported(err: OSError) -> bool:
    """Whether `err`, raised by flock/lockf, says the file system cannot lock (not that another process holds it)."""
    return err.errno in _NO_LOCKS


def warn_unlocked(folder: Path, err: OSError, runs: str) -> None:
    """One line on stderr: `folder` is not guarded against a second one of `runs` (e.g. "`elr-mri train` runs")."""
    print(f"warning: {folder} is on a file system without file locks ({os.strerror(err.errno or 0)}), so nothing "
          f"stops two {runs} writing into it at once: start one at a time", file=sys.stderr)


@contextmanager
def held_lock(lock: Path, folder: Path, runs: str, elsewhere: str = ", or choose another --out") -> Iterator[IO[str]]:
    """The lock file `lock` of `folder`, opened and held (`lock_or_refuse`) until the block ends, naming this
    process meanwhile; yields its handle."""
    with open(lock, "a") as handle:
        lock_or_refuse(handle, folder, runs, elsewhere)
        try:
            yield handle
        finally:
            forget_holder(handle)


def lock_or_refuse(handle: IO[str], folder: Path, runs: str, elsewhere: str = ", or choose another --out") -> None:
    """Take a POSIX record lock on the open lock file `handle` of `folder`, or refuse at once in one line naming `runs`
    (e.g. "`elr-mri train`") and, in `elsewhere`, where else to write: a run waiting silently looks hung. A record lock (lockf), not flock, because forked
    workers do not inherit it: one that outlives a killed run by seconds cannot block the rerun. Where the file
    system has no locks, a warning and the run goes on; on Windows nothing is locked."""
    if fcntl is None:
        return
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if locks_unsupported(err):
            warn_unlocked(folder, err, f"{runs} runs")
        elif err.errno in (errno.EACCES, errno.EAGAIN):
            holder = holder_named_in(Path(handle.name))
            raise FileExistsError(f"{folder}: another {runs} is writing there{f' ({holder})' if holder else ''}; let "
                                  f"it finish (or stop it) first{elsewhere}") from None
        else:
            raise
    else:
        name_holder(handle)


def name_holder(handle: IO[str]) -> None:
    """Write this process into the lock file `handle` it holds, for a refused run to name. Written through the
    descriptor, unbuffered: on a full disk the line is lost, the lock and the run are not."""
    forget_holder(handle)  # opened for appending: the line then lands at the start
    try:
        os.write(handle.fileno(), f"{_this_process()}\n".encode())
    except OSError:
        pass  # a full or over-quota disk: the run goes on, and one refused names no holder


def forget_holder(handle: IO[str]) -> None:
    """Empty the lock file `handle`: when its holder lets go (a folder's files are then the same bytes whichever
    process wrote them), or where several hold it shared (preprocess's shards), none of them the holder."""
    try:
        os.ftruncate(handle.fileno(), 0)
    except OSError:
        pass  # a file system that cannot: a refused run may name a holder gone since


def holder_named_in(lock: Path) -> str:
    """Who holds `lock`, as its holder wrote it ('PID 4242 on node7'); '' where none did (a shard, an earlier version)
    or the file cannot be read."""
    try:
        line = lock.read_text(errors="replace").partition("\n")[0]
    except OSError:
        return ""
    return line if line.startswith("PID ") else ""


def _this_process() -> str:
    """'PID 4242 on node7', with the batch job where there is one: on a cluster that is what a user can stop."""
    job = os.environ.get("SLURM_JOB_ID")
    return f"PID {os.getpid()} on {socket.gethostname()}" + (f", SLURM job {job}" if job else "")
