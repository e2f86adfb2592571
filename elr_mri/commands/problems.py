"""Which errors are a user's to fix, and so end a command as one line instead of a traceback."""

from __future__ import annotations

import re

from preprocess.user_errors import USER_ERRORS, as_path_name_error, as_storage_error

# torch re-raises a DataLoader worker's error with the worker's traceback as its text; an error of
# this project's (ValueErrors, but for preprocess's StorageError, an OSError) is a line
# "elr_mri.module.NameError: message" in it, and comes back as a ValueError holding its message.
_PROJECT_ERROR_LINE = re.compile(r"^(?:elr_mri|preprocess)\.[\w.]*Error: (.+)$", re.MULTILINE)


def user_problem(err: BaseException) -> BaseException | None:
    """`err` when it is a user error, or one of this project's raised inside it: MONAI re-raises a
    transform's error (e.g. an unreadable scan) as a RuntimeError that names only the transform, and
    a DataLoader worker's error comes back as its traceback text."""
    if "in DataLoader worker process" in str(err):
        found = _PROJECT_ERROR_LINE.search(str(err))
        return ValueError(found.group(1)) if found else None
    if isinstance(err, USER_ERRORS):
        return err
    refused = as_storage_error(err) or as_path_name_error(err)  # a disk full or read-only, a path too long
    if refused is not None:
        return refused
    cause = err.__cause__
    while cause is not None:
        if isinstance(cause, USER_ERRORS) and type(cause).__module__.startswith(("elr_mri.", "preprocess.")):
            return cause
        cause = cause.__cause__
    return None
