"""What a command does when the file system of its output folder has no file locks.

Why: cluster file systems are often mounted without them (Lustre without `-o flock`, NFS without its lock service),
and the OS then answers a lock request with ENOLCK, ENOSYS or EOPNOTSUPP. The locks of `elr-mri train`, `preprocess`,
`simulate-cohort`, `evaluate` and `explain` only keep a second run out of a folder one is writing; refusing to run at
all there would make the tools unusable on the machines their users have, so the run goes on and says that this guard
is off.

It lives here, in the package without torch, so that `elr-mri preprocess` can use it too.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from pathlib import Path
from typing import IO

__all__ = ["locks_unsupported", "lock_or_refuse", "warn_unlocked"]

_NO_LOCKS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})


def locks_unsupported(err: OSError) -> bool:
    """Whether `err`, raised by flock/lockf, says the file system cannot lock (not that another process holds it)."""
    return err.errno in _NO_LOCKS


def warn_unlocked(folder: Path, err: OSError, runs: str) -> None:
    """One line on stderr: `folder` is not guarded against a second one of `runs` (e.g. "`elr-mri train` runs")."""
    print(f"warning: {folder} is on a file system without file locks ({os.strerror(err.errno or 0)}), so nothing "
          f"stops two {runs} writing into it at once: start one at a time", file=sys.stderr)


def lock_or_refuse(handle: IO[str], folder: Path, runs: str, elsewhere: str = ", or choose another --out") -> None:
    """Take a POSIX record lock on the open lock file `handle` of `folder`, or refuse at once in one line naming `runs`
    (e.g. "`elr-mri train`") and, in `elsewhere`, where else to write: a run waiting silently looks hung. A record lock (lockf), not flock, because forked
    workers do not inherit it: one that outlives a killed run by seconds cannot block the rerun. Where the file
    system has no locks, a warning and the run goes on."""
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if locks_unsupported(err):
            warn_unlocked(folder, err, f"{runs} runs")
        elif err.errno in (errno.EACCES, errno.EAGAIN):
            raise FileExistsError(f"{folder}: another {runs} is writing there; let it finish (or stop it) "
                                  f"first{elsewhere}") from None
        else:
            raise
