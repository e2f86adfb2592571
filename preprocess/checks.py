"""Load a T1 scan with nibabel and refuse, in one clear line, anything the pipeline cannot use.

Every problem a batch can meet in the wild (a DICOM folder, a truncated download, a 2D slice, a
NaN-filled volume, integers that overflowed, a broken affine) becomes a :class:`ScanError` whose message
says what is wrong, where, and how to fix it, so that one bad scan is reported and the others go on.
"""
from __future__ import annotations

import contextlib
import gzip
import logging
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np

from .dicom import first_file_below, is_dicom
from .sidecar import scan_files

__all__ = ["ScanError", "load_scan", "load_option_file", "not_found"]

# Voxel sizes outside this range (mm) are almost always a header in the wrong units.
_MIN_VOXEL_MM, _MAX_VOXEL_MM = 0.1, 10.0
_MIN_EXTENT = 16  # voxels per axis: fewer is a slab or a localiser, not a head
_GZIP_SUFFIXES = (".gz", ".mgz")


class ScanError(ValueError):
    """A scan that cannot be preprocessed; the message is one line: what, where, how to fix."""

    def __init__(self, path: str | Path, what: str, fix: str):
        super().__init__(f"{path}: {what}; {fix}")
        self.path, self.what = path, what


@contextlib.contextmanager
def _header_reports_naming(path: Path) -> Iterator[None]:
    """nibabel logs what it fixes in a header ("sizeof_hdr should be 348; set sizeof_hdr to 348") without the
    file's name; in a batch, among other scans' progress, that line must say which scan it is about."""
    def name_the_scan(record: logging.LogRecord) -> bool:
        record.msg, record.args = f"{path}: {record.getMessage()}", None
        return True

    logger = nib.imageglobals.logger
    logger.addFilter(name_the_scan)
    try:
        yield
    finally:
        logger.removeFilter(name_the_scan)


def not_found(path: Path) -> ScanError:
    """A missing scan, and a link whose target is missing said as such: a DataLad (git-annex) data set lists each
    file as a link, pointing nowhere until its content is fetched, where "check the `path` column" sent the user to
    look for a mistake in a path that is right. So is a table written on Windows, whose `scans\\a.nii` is one name
    here, not a folder and a file."""
    if path.is_symlink():
        return ScanError(path, f"is a link to {os.readlink(path)}, which does not exist", "fetch the file (in a "
                         "DataLad data set: `datalad get` it), or point `path` at the scan itself")
    if "\\" in str(path):
        return ScanError(path, "file not found", "write the `path` column's folders with / (a Windows path's \\ is "
                         "part of a file name here)")
    return ScanError(path, "file not found", "check the `path` column (relative paths are resolved against the "
                     "input CSV's folder)")


def _unreadable(path: Path, exc: Exception) -> ScanError:
    """A file nibabel could not read: its reason, and a fix."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ScanError(path, f"cannot be read as {_format_name(path)} ({reason})", _misnamed_compression(path)
                     or "re-download or re-convert the file")


def _format_name(path: Path) -> str:
    """The format nibabel read `path` as, from its name: a broken .mgz said "cannot be read as NIfTI", sending the
    user to look for a NIfTI where there is none."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".mgz", ".mgh")):
        return "FreeSurfer MGH"
    if name.endswith((".hdr", ".img")):
        return "an Analyze/NIfTI .hdr/.img pair"
    return "NIfTI"


def _misnamed_compression(path: Path) -> str | None:
    """The fix for a file whose name says the wrong compression (gzip data named .nii, plain data named .nii.gz):
    nibabel trusts the name, and the file itself is fine."""
    with open(path, "rb") as handle:
        start = handle.read(4)
    header_size = {int.from_bytes(start, "little"), int.from_bytes(start, "big")}
    name = path.name
    if start[:2] == b"\x1f\x8b" and name.lower().endswith(".nii"):
        return f"the file is gzip-compressed: rename it to {name}.gz"
    if header_size & {348, 540} and name.lower().endswith(".nii.gz"):  # NIfTI-1 / NIfTI-2 header sizes
        return f"the file is an uncompressed NIfTI: rename it to {name[:-3]}"
    return None


def _require_intact_gzip(path: Path) -> None:
    """Read each gzip file of the scan to its end, so gzip checks its CRC and length: nibabel stops at the last voxel
    it needs, so a download cut short by its last bytes, or a bit flipped in transfer, loaded without a word (a
    changed voxel processed, or its NaN blamed on an upstream step). FreeSurfer's .mgz is gzip too."""
    for part in (file for file in scan_files(path) if file.name.lower().endswith(_GZIP_SUFFIXES)):
        try:
            with gzip.open(part, "rb") as stream:
                while stream.read(1 << 24):
                    pass
        except (OSError, EOFError, zlib.error) as exc:
            raise _unreadable(path, exc) from None


def load_scan(path: str | Path) -> nib.Nifti1Image:
    """Return the scan as a 3D float32 NIfTI reoriented to RAS, or raise :class:`ScanError`."""
    if not str(path).strip():  # Path("") would be the working folder
        raise ScanError("(empty path)", "the row's `path` cell is empty", "fill in the scan's .nii or .nii.gz file")
    path = Path(path)
    _require_a_scan_file(path)
    img = _open_volume(path)
    data = _read_voxels(path, img)
    _require_a_head(path, img, data)
    return nib.as_closest_canonical(nib.Nifti1Image(data, _usable_affine(path, img)))


def _require_a_scan_file(path: Path) -> None:
    """Refuse what is not a file of one scan: a folder (of DICOM files or not), a missing file, a DICOM file."""
    if path.is_dir():
        dicom = first_file_below(path, is_dicom)
        if dicom is not None:
            raise ScanError(path, f"is a folder of DICOM files (e.g. {dicom.relative_to(path)}), not a NIfTI file",
                            "convert it first, e.g. `dcm2niix -z y -o OUT_DIR FOLDER`, and point `path` at the T1's "
                            ".nii.gz")
        raise ScanError(path, "is a folder, not a NIfTI file", "point `path` at the .nii or .nii.gz file")
    if not path.exists():
        raise not_found(path)
    if not path.is_file():  # opening a named pipe waits for a writer: the batch hung on it for good
        raise ScanError(path, "is not a regular file (a named pipe, socket or device)",
                        "point `path` at the scan's .nii or .nii.gz file")
    if is_dicom(path):
        raise ScanError(path, "is a DICOM file", "convert the series to NIfTI with `dcm2niix -z y`")


def _open_volume(path: Path) -> nib.spatialimages.SpatialImage:
    """The scan's image as nibabel opens it (its voxels not read yet), refused where the file is damaged or holds no
    voxel grid."""
    _require_intact_gzip(path)
    try:
        with _header_reports_naming(path):
            img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for broken files
        raise _unreadable(path, exc) from None
    if not isinstance(img, nib.spatialimages.SpatialImage):  # a GIFTI surface, a CIFTI matrix: no voxel grid
        raise ScanError(path, f"is a {type(img).__name__}, not a volume", "pass the T1's .nii or .nii.gz file")
    return img


def _read_voxels(path: Path, img: nib.spatialimages.SpatialImage) -> np.ndarray:
    """The voxels as float32, one volume stored with trailing axes of 1 as 3D; refused where they are no grey-scale
    intensities or do not fit in memory."""
    if img.get_data_dtype().kind == "c":  # reading as float32 would drop the imaginary part without a word
        raise ScanError(path, "holds complex values (a phase/magnitude reconstruction)",
                        "pass the magnitude image (e.g. `fslcomplex -realabs`)")
    fields = img.get_data_dtype().names
    if fields:  # NIfTI's RGB24/RGBA32: numpy's complaint about its fields said "re-download"
        raise ScanError(path, f"holds colour voxels ({', '.join(fields)}), not grey-scale "
                        "intensities (a rendering or screenshot?)", "pass the grey-scale T1 as converted from "
                        "DICOM, e.g. `dcm2niix -z y`")
    try:
        with np.errstate(over="ignore"):  # a scaling that overflows gives inf voxels, refused below in one line
            data = np.asanyarray(img.dataobj, dtype=np.float32)
    except MemoryError:
        size = np.prod(img.shape, dtype=float) * 4 / 2**30
        raise ScanError(path, f"declares {img.shape} voxels, {size:.1f} GiB as float32, more than this machine could "
                        "allocate", "check its header's dimensions (a damaged header claims a wrong size), or use a "
                        "machine with more memory") from None
    except Exception as exc:
        raise _unreadable(path, exc) from None
    if data.ndim > 3 and set(data.shape[3:]) == {1}:  # one volume stored as (X, Y, Z, 1, ...), as converters may
        data = data.reshape(data.shape[:3])
    return data


def _require_a_head(path: Path, img: nib.spatialimages.SpatialImage, data: np.ndarray) -> None:
    """Refuse voxels that are no head volume: not 3D, too thin, not finite, all equal, or overflowed integers."""
    if 0 in data.shape:  # nibabel reads a header's dim[0] = 0 (or an axis of 0) as no voxels at all
        raise ScanError(path, f"has shape {data.shape}: its header declares no dimensions (dim[0] or an axis is 0, "
                        "a damaged header)", "re-convert the scan from DICOM (e.g. `dcm2niix -z y`) or re-download it")
    if data.ndim != 3:
        fix = ("pass a single 3D T1 (split 4D series with `fslsplit` or nibabel)" if data.ndim > 3 else
               "pass the full 3D T1, not a single slice")
        raise ScanError(path, f"has shape {data.shape}, expected a 3D volume", fix)
    if min(data.shape) < _MIN_EXTENT:
        raise ScanError(path, f"has shape {data.shape}, too thin for a head volume",
                        "pass the full 3D T1, not a slice or localiser")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise ScanError(path, f"has {bad} NaN/inf voxels", _nonfinite_fix(img))
    if float(data.max()) <= float(data.min()):
        raise ScanError(path, "is empty (all voxels equal)", "check the export; the volume holds no image")
    wrapped = _wrapped_integers(img, data)
    if wrapped:
        raise ScanError(path, wrapped, "re-export the scan as float32 or uint16 (unsigned values saved as signed: "
                        "add 65536 to the negative ones)")


_NAN_FIX = "re-export the scan; NaNs usually come from a failed upstream step"


def _nonfinite_fix(img: nib.spatialimages.SpatialImage) -> str:
    """The fix for NaN/inf voxels: where the stored voxels are finite, the header's scaling made them infinite (a
    scl_slope of 1e38 overflows float32), and blaming an upstream step sent the user to look for one."""
    proxy = img.dataobj
    if not isinstance(proxy, nib.arrayproxy.ArrayProxy):  # voxels in memory: no stored values apart from them
        return _NAN_FIX
    slope, inter = proxy.slope, proxy.inter
    if (slope, inter) != (1.0, 0.0) and np.isfinite(np.asanyarray(proxy.get_unscaled())).all():
        return (f"its stored voxels are finite, but the header's scaling (scl_slope {slope:g}, scl_inter {inter:g}) "
                "overflows them: fix scl_slope/scl_inter (e.g. nibabel's `header.set_slope_inter`) or re-export")
    return _NAN_FIX


def _usable_affine(path: Path, img: nib.spatialimages.SpatialImage) -> np.ndarray:
    """The scan's affine, refused where its orientation is missing, singular, in the wrong units or disagrees
    between the qform and the sform: each would register the head upside down or at the wrong size."""
    unoriented = _missing_orientation(img)
    if unoriented:
        raise ScanError(path, f"has no orientation ({unoriented})",
                        "re-convert from DICOM, e.g. `dcm2niix -z y`, or set the qform/sform")
    affine = img.affine
    if affine is None or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ScanError(path, "has a singular or non-finite affine",
                        "fix the header's qform/sform (e.g. re-convert with dcm2niix)")
    voxel = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if (voxel < _MIN_VOXEL_MM).any() or (voxel > _MAX_VOXEL_MM).any():
        raise ScanError(path, f"has voxel size {np.round(voxel, 3).tolist()} mm",
                        f"expected {_MIN_VOXEL_MM}-{_MAX_VOXEL_MM} mm; fix the header's units/zooms")
    disagreeing = _disagreeing_orientations(img)
    if disagreeing:
        raise ScanError(path, disagreeing, "find which is right (re-convert from DICOM, e.g. `dcm2niix -z y`), or "
                        "copy it over the other (`fslorient -copysform2qform` or `-copyqform2sform`)")
    return affine


def _wrapped_integers(img: nib.spatialimages.SpatialImage, data: np.ndarray) -> str | None:
    """What shows that the file's signed integers overflowed, or None. Values above the type's maximum (a scan
    scaled too high, or unsigned data written as signed) wrap round to its most negative ones: the brightest tissue
    comes out darker than the background, and the shift of negative values to 0 then turns the background grey.
    QC flagged such a head only for its NCC (-0.40, Colin27 at 3 mm), a figure that does not point at the file. A
    magnitude image stored without scaling never reaches both ends of a signed type (an offset background is a few
    hundred below 0), so 90% of each end is the mark."""
    stored = img.get_data_dtype()
    proxy = img.dataobj
    if stored.kind != "i" or (getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)) != (1.0, 0.0):
        return None
    limits = np.iinfo(stored)
    low, high = float(data.min()), float(data.max())
    if low > 0.9 * limits.min or high < 0.9 * limits.max:
        return None
    return (f"holds {stored} values from {low:g} to {high:g}, both ends of the type: values too large for it wrapped "
            "round to negative (integer overflow when it was written)")


def _missing_orientation(img: nib.spatialimages.SpatialImage) -> str | None:
    """Why the file does not say where left is, or None when it does. nibabel then makes up an affine with x
    flipped (Analyze's radiological default), so the output would come out mirrored, and QC cannot notice: a
    mirrored head still matches the template."""
    if isinstance(img, nib.Nifti1Pair):  # NIfTI-1 and -2, single files and .hdr/.img pairs
        if img.header["qform_code"] == 0 and img.header["sform_code"] == 0:
            return "qform_code and sform_code are both 0"
    elif isinstance(img, nib.AnalyzeImage):  # only SPM's .mat beside it gives the voxel-to-world mapping
        mat = img.file_map.get("mat")
        if mat is None or mat.filename is None or not Path(mat.filename).exists():
            return "an Analyze .hdr/.img without SPM's .mat"
    return None


def _disagreeing_orientations(img: nib.spatialimages.SpatialImage) -> str | None:
    """How the header's qform and sform, both set, point an axis different ways, or None. nibabel, which the pipeline
    reads scans with, takes the sform and ignores the qform (ANTs' reader, ITK's, the sform only where its code is 1,
    scanner, else the qform), but one of them was edited without the other and either may be the right one: a
    left-right mirror then went through unseen (QC cannot tell a mirrored head), where FSL warns of it. Axes within
    45° of each other (a small tilt or shift between the two, or float rounding at an oblique 45°) are the sform's."""
    if not isinstance(img, nib.Nifti1Pair) or not (img.header["qform_code"] and img.header["sform_code"]):
        return None
    qform, sform = img.header.get_qform(), img.header.get_sform()
    directions = [matrix[:3, :3] / np.linalg.norm(matrix[:3, :3], axis=0) for matrix in (qform, sform)]
    if not ((directions[0] * directions[1]).sum(axis=0) < np.cos(np.radians(45))).any():  # NaN (damaged): no call
        return None
    codes = ["".join(str(code) for code in nib.aff2axcodes(matrix)) for matrix in (qform, sform)]
    return f"has a qform ({codes[0]}) and an sform ({codes[1]}) that point its axes different ways"


def load_option_file(path: str | Path, option: str, fix: str) -> nib.Nifti1Image:
    """`load_scan` for a volume named by a command-line option, checked once before any work: the error
    names the option and says what to pass instead (load_scan's hints are about a table's `path` column)."""
    if not str(path).strip():
        raise ScanError(option, "is empty", fix)
    try:
        return load_scan(path)
    except ScanError as err:
        raise ScanError(f"{option} {err.path}", err.what, fix) from None
