"""How every command of the project reports a mistake its user can fix (a path, a flag, a table, a
config): one line naming the command, no traceback; ELR_MRI_DEBUG=1 shows the traceback instead.

It lives here, in the package without torch, so that `elr-mri preprocess` can use it too.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

__all__ = ["TRAINING_RESUMES", "USER_ERRORS", "StorageError", "as_path_name_error", "as_storage_error", "debugging",
           "file_above", "file_size_limit",
           "nonempty_path", "output_file", "nonempty_text", "not_a_file", "report_user_error", "storage_error_or_raise",
           "with_rerun_note"]


class StorageError(OSError):
    """A full, over-quota or read-only disk under an output, or a file over the size limit: the user's to fix (free
    space, another folder, a higher limit)."""

    errno: int  # always given: the OS's number of the refusal (ENOSPC, EDQUOT, EROFS or EFBIG)


# An unwritable or misplaced output path is the user's to fix too: the OS error names the path.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError,
               StorageError)
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
# the end of every full-disk line as raised; `report_user_error` puts what a rerun of its command keeps in its place
# (`with_rerun_note`), and `elr-mri train` whether its run has a checkpoint to resume from
TRAINING_RESUMES = "a training run continues with --resume)"
_RERUN = f"run the command again (finished work is kept: preprocess skips finished scans, {TRAINING_RESUMES}"


def as_storage_error(err: BaseException) -> StorageError | None:
    """`err` as a `StorageError` when it is the OS saying a disk is full, over quota or read-only, or a file is over
    the largest one this process may write, else None."""
    if isinstance(err, StorageError):
        return err
    if not isinstance(err, OSError) or err.errno not in _STORAGE_ERRNOS:
        return None
    where = f" ({err.filename})" if err.filename else ""
    fix = ("write elsewhere (another output folder)" if err.errno == errno.EROFS else
           f"{file_size_limit()}, and {_RERUN}" if err.errno == errno.EFBIG else
           f"free space there, or write elsewhere, and {_RERUN}")
    return StorageError(err.errno, f"{os.strerror(err.errno)}{where}; {fix}")


def file_size_limit() -> str:
    """What to do about a file the OS refused as too large ("File too large", EFBIG), in words: said as a full disk,
    the line told a user with gigabytes free to free space. The usual cause is a shell's or a batch system's limit on
    the size of a file a process may write (`ulimit -f`), else the filesystem's largest file (FAT32: 4 GiB)."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if soft == resource.RLIM_INFINITY:
        return "larger than that filesystem's largest file (FAT32: 4 GiB): write to another filesystem"
    return (f"larger than this process may write ({soft // 1024} KiB: `ulimit -f` in the shell, or the batch system's "
            "file size limit): raise that limit, or ask for it to be raised")


# Paths the OS refuses by their name, whatever the disk: the user's to fix too.
_PATH_NAME_FIXES = {errno.ENAMETOOLONG: "shorten it (a file or folder name holds at most 255 bytes)",
                    errno.ELOOP: "it runs through a loop of symbolic links; fix the link"}


def as_path_name_error(err: BaseException) -> ValueError | None:
    """`err` as one line naming the path when the OS refused a path by its name (too long, a link loop), else None:
    raised from any `Path.exists()` or `mkdir`, it was a traceback."""
    if not isinstance(err, OSError) or err.errno not in _PATH_NAME_FIXES:
        return None
    return ValueError(f"{err.filename or 'a path'}: {os.strerror(err.errno)}; {_PATH_NAME_FIXES[err.errno]}")


def storage_error_or_raise(err: OSError) -> StorageError:
    """`err` as a `StorageError`, or `err` raised again: any other OS error is not the user's to fix."""
    storage = as_storage_error(err)
    if storage is None:
        raise err
    return storage


def with_rerun_note(err: BaseException, note: str | None) -> BaseException:
    """A full disk's line (a `StorageError` ending in `TRAINING_RESUMES`) ending in `note` instead, or in "run the
    command again" alone: every command said "preprocess skips finished scans, a training run continues with
    --resume", `evaluate` and `import-cohort` too. Any other error is returned as it is."""
    text = str(getattr(err, "strerror", None))
    if not isinstance(err, StorageError) or not text.endswith(TRAINING_RESUMES):
        return err
    rerun = text.rpartition(" (")[0]
    return StorageError(err.errno, f"{rerun} ({note})" if note else rerun)


def not_a_file(path: str | Path) -> str:
    """Why `path`, expected to be a file, cannot be read, in words: a folder passed for a file said as such, and so is
    a pipe, such as the shell's `<(grep -v sub-05 manifest.csv)`: "no such file" named one that is there, and a table
    is read more than once, which a pipe cannot be."""
    path = Path(path)
    if path.is_dir():
        return "is a folder, not a file (pass the file in it)"
    if path.exists():
        return "is a pipe or device, not a file (a shell's <(...)?); write the table to a file and pass that"
    return "no such file"


def file_above(path: Path) -> Path | None:
    """The file among `path`'s parents, where one is: no folder can be made under it, and the OS's words for that
    ("Not a directory: 'notes.txt/run'") name neither the file nor the option."""
    return next((folder for folder in path.parents if folder.exists() and not folder.is_dir()), None)


def nonempty_text(text: str) -> str:
    """argparse type of a path option kept as text, `~` expanded: an empty one (an unset shell variable) would mean
    the current folder, and the shell leaves `--out=~/runs` as it is (a folder named `~` in the current one)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?); pass a file or folder")
    return os.path.expanduser(text)


def nonempty_path(text: str) -> Path:
    """`nonempty_text` as a Path."""
    return Path(nonempty_text(text))


def output_file(text: str) -> Path:
    """A report's file option (argparse type: a script's --results, a benchmark's --out), refused where a folder has
    its name: it was refused only once every run had trained, with a traceback from the write."""
    path = nonempty_path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; pass the report's file name, e.g. {path / 'results.md'}")
    return path


def debugging() -> bool:
    """Whether ELR_MRI_DEBUG asks for tracebacks: set to anything but empty or 0. `ELR_MRI_DEBUG=0`, the usual way to
    switch a flag off, switched tracebacks on."""
    return os.environ.get("ELR_MRI_DEBUG", "").strip() not in ("", "0")


def report_user_error(command: str, err: BaseException, status: int = 2, rerun_keeps: str | None = None) -> int:
    """Print `err` as `COMMAND: error: ...` on stderr and return the exit status to leave with; a full disk's line
    ends in what running `command` again keeps (`rerun_keeps`, None: nothing said)."""
    if debugging():
        raise err
    err = with_rerun_note(err, rerun_keeps)
    fix = "; check that path's permissions (outputs writable, inputs readable) or use another" \
        if isinstance(err, PermissionError) and err.filename else ""
    print(f"{command}: error: {err}{fix}", file=sys.stderr)
    return status
