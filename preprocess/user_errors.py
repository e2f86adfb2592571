"""How every command of the project reports a mistake its user can fix (a path, a flag, a table, a
config): one line naming the command, no traceback; ELR_MRI_DEBUG=1 shows the traceback instead.

It lives here, in the package without torch, so that `elr-mri preprocess` can use it too.
"""
from __future__ import annotations

import os
import sys

__all__ = ["USER_ERRORS", "report_user_error"]

# An unwritable or misplaced output path is the user's to fix too: the OS error names the path.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def report_user_error(command: str, err: BaseException, status: int = 2) -> int:
    """Print `err` as `COMMAND: error: ...` on stderr and return the exit status to leave with."""
    if os.environ.get("ELR_MRI_DEBUG"):
        raise err
    print(f"{command}: error: {err}", file=sys.stderr)
    return status
