"""Hashes, atomic writes and the JSON sidecar that lets an interrupted batch resume.

A scan counts as done only when its sidecar exists and records the same input hash,
parameters, template files and pipeline version (or one that wrote the outputs alike), and its outputs are still the
files it wrote (`stale_reason`); the sidecar is written last, and every file
goes through a temporary name and `os.replace`, so a run killed at any moment leaves nothing
that looks finished.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Iterator

import numpy as np

from .user_errors import storage_error_or_raise

if TYPE_CHECKING:  # annotations only: the rest needs no nibabel
    import nibabel as nib

# The files of an Analyze or NIfTI pair as nibabel names them from either half, and the compressions it opens them
# with. SPM's .mat holds an Analyze image's orientation (a NIfTI pair's is in its header; a .mat beside one is hashed
# all the same, which can only redo a scan).
_PAIR_TYPES = (("header", ".hdr"), ("image", ".img"), ("mat", ".mat"))
_COMPRESSIONS = (".gz", ".bz2", ".zst")
_PROBE_BYTES = 64 * 1024  # what `cannot_write` writes: a disk with less free is full for any output

__all__ = ["file_sha256", "scan_files", "scan_sha256", "voxels_sha256", "atomic_path", "refuse_a_folder_at", "nearest_existing",
           "cannot_write", "require_writable", "remove_stale_temps", "write_json", "read_sidecar", "output_hashes",
           "template_identity", "compared_template_digests", "same_template", "stale_reason"]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scan_files(path: str | Path) -> list[Path]:
    """The files nibabel reads the image at `path` from: the file itself, or for a .hdr/.img pair (either half named,
    compressed or not) both halves and the .mat beside them, those that exist."""
    from nibabel.filename_parser import splitext_addext, types_filenames  # only here: the rest needs no nibabel

    if splitext_addext(str(path), _COMPRESSIONS)[1].lower() not in {".hdr", ".img"}:
        return [Path(path)]
    names = types_filenames(str(path), _PAIR_TYPES, trailing_suffixes=_COMPRESSIONS)
    return [Path(names[kind]) for kind, _ in _PAIR_TYPES if Path(names[kind]).exists()]


def scan_sha256(path: str | Path) -> str:
    """SHA-256 of a scan as nibabel reads it, to tell whether it changed since a run: a pair's over all its files (the
    header alone misses a rewritten .img), a single file's its own (what sidecars have always recorded for it)."""
    files = scan_files(path)
    if len(files) == 1:
        return file_sha256(files[0])
    return hashlib.sha256(" ".join(file_sha256(file) for file in files).encode()).hexdigest()


def voxels_sha256(scan: nib.Nifti1Image) -> str:
    """SHA-256 of a loaded scan's voxels (as `checks.load_scan` decodes them: float32, RAS) and their shape. One image
    saved twice, as .nii and .nii.gz or in another data type or axis order, has two file hashes but this one: listed
    under two ids it would be processed and split as two participants."""
    voxels = np.ascontiguousarray(scan.dataobj, dtype=np.float32)
    digest = hashlib.sha256(str(voxels.shape).encode())
    digest.update(voxels.data)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final` (same suffixes, so writers pick the format) and move
    it onto `final` only if the block succeeds, its data on the disk first: after a crash or a power cut, a file
    renamed before its data was written can come back empty (a run's last.pt, which only deleting the run fixed)."""
    final = Path(final)
    refuse_a_folder_at(final)  # refused before the work: os.replace onto it failed after it, "Is a directory: 'F' -> 'F'"
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _new_temp_beside(final)
    try:
        yield temp
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp, final)
    except OSError as err:  # a full disk or quota (on NFS often only at the fsync): name the file, as a write's does not
        if err.errno is not None and err.filename in (None, str(temp)):  # a read-only folder's names the temp: ours
            err.filename = str(final)
        raise
    finally:
        # gone once renamed; a folder made read-only since refuses the unlink, an error that would replace the one
        # saying why
        with contextlib.suppress(OSError):
            temp.unlink()


def refuse_a_folder_at(final: Path) -> None:
    """One line with the fix where a folder stands at `final`, a file an output goes to: the OS's own error (from
    an unlink or a rename) named the path but not what to do."""
    if final.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{os.strerror(errno.EISDIR)} where this file goes: move or remove that "
                                "folder and run the command again", str(final))


def _new_temp_beside(final: Path) -> Path:
    """An empty file made beside `final` for `atomic_path`: `.tmp<pid>-<random>-<final name>`, created exclusively.
    Named by the process id alone, the name could be foreseen: in a folder others write (a lab's shared cache) a link
    planted under it had the write land on the link's target, another user's file, and a job of the same process id
    on another node of shared storage wrote into the same file. Its mode is the umask's, as `open` gives."""
    while True:
        temp = final.with_name(f".tmp{os.getpid()}-{secrets.token_hex(4)}-{final.name}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:  # a file or link of that name already: another name is drawn
            continue
        except OSError as err:  # a folder that refuses it (read-only, another user's): said of the file written
            err.filename = str(final)
            raise


def nearest_existing(path: str | Path) -> Path:
    """`path`, or the nearest folder above it that exists: where a file or folder not made yet would be made, and
    so the disk whose space and permissions decide whether it can be."""
    return next(folder for folder in (Path(path), *Path(path).parents) if folder.exists())


def cannot_write(folder: str | Path) -> str | None:
    """Why no file can be made in `folder` (where it is not there yet: in the nearest folder above it that is, as
    making it would need), in the OS's words; None when one can. On shared lab storage, often read-only, a command
    learnt it only at its first write, after minutes of work. Making a file is the one test that sees a read-only
    mount, permissions and a root-squashing NFS server alike (`os.access` asks the local permission bits). A full or
    over-quota disk (or a file size limit) is raised, a `StorageError` naming `folder`: an empty file is made there
    all the same, so the probe holds data (on NFS refused only at the fsync); its fix is space, not another folder."""
    try:
        with tempfile.NamedTemporaryFile(dir=nearest_existing(folder), prefix=".tmp-write-test-") as probe:
            probe.write(bytes(_PROBE_BYTES))
            probe.flush()
            os.fsync(probe.fileno())
            return None
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise storage_error_or_raise(OSError(err.errno, os.strerror(err.errno), str(folder))) from None
        return os.strerror(err.errno) if err.errno else str(err)


def require_writable(folder: str | Path, written: str, fix: str) -> None:
    """Refuse `folder` in one line, before any work, where no file can be made in it (`cannot_write`): `written` names
    what would go there, `fix` what to do instead. Said at the first write, the error named one of those files only."""
    reason = cannot_write(folder)
    if reason is not None:
        raise PermissionError(f"{folder}: cannot write there ({reason}), where {written} go; {fix}")


def remove_stale_temps(folder: str | Path) -> None:
    """Delete what `atomic_path` (files) and the registration (folders) left in `folder` when a run was killed:
    it never looks finished, but takes space."""
    for stale in Path(folder).glob(".tmp*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def write_json(path: str | Path, payload: dict) -> None:
    """Write `payload` as indented JSON, atomically."""
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_sidecar(path: str | Path) -> dict | None:
    """The sidecar's content, or None when it is missing or unreadable, a JSON list or number included (then the scan
    is redone): its readers look its fields up by name."""
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def output_hashes(outputs: list[Path]) -> dict[str, str]:
    """File name -> SHA-256 of each output, for the sidecar: a rerun then notices an output damaged since."""
    return {Path(p).name: file_sha256(p) for p in outputs}


def template_identity(digests: dict) -> dict:
    """The digests of a template record (a sidecar's "template", `template.template_file_digests`) that tell templates
    apart: their images' where recorded, so that a template re-saved (by nibabel, recompressed, as .nii) is the same,
    else, in records from before 2026-12-07, their files'."""
    keys = ("content_sha256", "mask_content_sha256") if "content_sha256" in digests else ("sha256", "mask_sha256")
    return {key: digests[key] for key in keys if key in digests}


def compared_template_digests(first: dict, other: dict) -> tuple[dict, dict]:
    """The digests of two template records that tell whether they name one template: their images' where both have
    them, else (one recorded before they were) their files'."""
    both = "content_sha256" in first and "content_sha256" in other
    keys = ("content_sha256", "mask_content_sha256") if both else ("sha256", "mask_sha256")
    return {key: first.get(key) for key in keys}, {key: other.get(key) for key in keys}


def same_template(recorded: dict, current: dict) -> bool:
    """Whether two template records name one template (`compared_template_digests`)."""
    ours, theirs = compared_template_digests(recorded, current)
    return ours == theirs


def stale_reason(sidecar: str | Path, input_sha256: str, params: dict, outputs: list[Path],
                 template: dict[str, str] | None = None, pipeline_version: int | None = None,
                 comparable: Callable[[dict], dict] = dict, alike_versions: Collection[int] = ()) -> str | None:
    """Why a finished scan must be done again, in words ('' when it never finished: no sidecar), or None when a
    previous run finished it with the same input, parameters (as `comparable` has them compared), template
    (`template`: digests that the sidecar's "template" must match, `same_template`) and `pipeline_version` (None: a
    sidecar that records none) or one of `alike_versions` (earlier ones that wrote these outputs alike), and its
    outputs are still the files it wrote (a sidecar from before output hashes: they exist). In words
    because a rerun that redoes a cohort for hours without saying why looks like a broken resume."""
    meta = read_sidecar(sidecar)
    if meta is None or not isinstance(meta.get("params"), dict):
        return "its sidecar is unreadable" if Path(sidecar).exists() else ""
    if meta.get("input_sha256") != input_sha256:
        return "its input file changed"
    ours, theirs = comparable(meta["params"]), comparable(params)
    changed = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
    if changed:
        key = changed[0]  # as recorded, or as counted where unrecorded (a seed before 2026-12-07: the default)
        then = meta["params"].get(key, ours.get(key))
        return f"other settings ({key}: {then!r} then, {params.get(key, theirs.get(key))!r} now)"
    if meta.get("pipeline_version") not in (pipeline_version, *alike_versions):  # other code made other outputs
        return f"other pipeline code (version {meta.get('pipeline_version')} then, {pipeline_version} now)"
    if template is not None and not same_template(meta.get("template") or {}, template):
        return "another template image (its SHA-256 changed)"
    missing = next((Path(p).name for p in outputs if not Path(p).exists()), None)
    if missing is not None:
        return f"its output {missing} is missing"
    recorded = meta.get("outputs_sha256")
    damaged = next((Path(p).name for p in outputs
                    if recorded is not None and recorded.get(Path(p).name) != file_sha256(p)), None)
    return None if damaged is None else f"its output {damaged} changed since it was written"
