"""DICOM files and folders told apart from the NIfTI scans the pipeline reads, without nibabel (the input table's
reader needs them too): a DICOM series must be converted first, and saying so beats a NIfTI reader's complaint."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["DICOM_SUFFIXES", "is_dicom", "first_file_below"]

DICOM_SUFFIXES = (".dcm", ".ima")  # .ima: Siemens' own exports


def is_dicom(path: Path) -> bool:
    """A DICOM file, by its name (.dcm, .ima, any case) or, for the files without one that scanners and DICOMDIR
    exports write (IM0001), by the "DICM" its 128-byte preamble is followed by: nibabel would only say it cannot
    tell the file's type, and "re-download" would fetch the same DICOM."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def first_file_below(folder: Path, wanted: Callable[[Path], bool], depth: int = 6,
                     files: int | None = None) -> Path | None:
    """The first file, in name order, in `folder` or a folder up to `depth` levels under it that is `wanted`, among the
    first `files` looked at (None: all); hidden files and folders (a Mac's `._*` copies, .git) left out. An ADNI
    download nests each series four folders deep (002_S_0295/MPRAGE/<date>/S13408/), where a look at the top alone
    finds nothing; the bounds keep a mistyped folder (a home folder) from being searched to its bottom."""
    looked_at = 0
    for parent, folders, names in os.walk(folder):
        below = len(Path(parent).relative_to(folder).parts) < depth
        folders[:] = sorted(name for name in folders if not name.startswith(".")) if below else []
        for name in sorted(name for name in names if not name.startswith(".")):
            if files is not None and looked_at == files:
                return None
            looked_at += 1
            if wanted(Path(parent) / name):
                return Path(parent) / name
    return None
