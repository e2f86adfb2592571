"""Each kind of unusable input gives its own one-line error that says what, where and how to fix."""
from __future__ import annotations

import contextlib
import gzip
import os
import threading
import warnings

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from preprocess.checks import ScanError, load_scan


def _save(data, path, affine=None):
    nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.eye(4) if affine is None else affine).to_filename(path)
    return path


def _write(path, payload: bytes):
    path.write_bytes(payload)
    return path


def _link(path, target):
    """A link pointing nowhere, as DataLad leaves a file whose content was not fetched."""
    path.symlink_to(target)
    return path


def _dicom_folder(root):
    (root / "dicom").mkdir()
    _write(root / "dicom" / "IM0001.dcm", b"DICM")
    return root / "dicom"


def _adni_dicom_download(root):
    """A participant's folder of an ADNI DICOM download: its slices four folders down, none at the top."""
    series = root / "002_S_1018" / "MPRAGE" / "2006-11-29_09_00_00.0" / "S23128"
    series.mkdir(parents=True)
    _write(series / "ADNI_002_S_1018_MR_MPRAGE_br_raw_1_S23128_I40817.dcm", bytes(128) + b"DICM")
    return root / "002_S_1018"


def _singular_affine(path):
    """A file whose sform has a zero row: nibabel reads it, but no voxel-to-mm mapping exists."""
    img = nib.Nifti1Image(_head(), None)
    img.header["qform_code"], img.header["sform_code"] = 0, 1
    img.header["srow_x"], img.header["srow_y"], img.header["srow_z"] = [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]
    img.to_filename(path)
    return path


def _unoriented(image_class, path):
    """A header that does not say where left is: nibabel would make up an x-flipped affine for it."""
    image_class(_head(), None).to_filename(path)
    return path


def _qform_beside_sform(path, qform, sform=np.eye(4)):
    """A header whose qform and sform, both coded, differ: one of them edited without the other."""
    img = nib.Nifti1Image(_head(), sform)
    img.set_qform(qform, code=1)
    img.to_filename(path)
    return path


def _analyze(path, affine, with_mat):
    """An Analyze pair; SPM's .mat beside it (written by nibabel's Spm2AnalyzeImage) holds the orientation."""
    nib.Spm2AnalyzeImage(_head(), affine).to_filename(path)
    if not with_mat:
        path.with_suffix(".mat").unlink()
    return path


def _complex(path):
    nib.Nifti1Image((_head() * (1 + 1j)).astype(np.complex64), np.eye(4)).to_filename(path)
    return path


def _surface(path):
    """A GIFTI surface (as fMRIPrep writes beside the T1s): nibabel loads it, but it holds no voxels."""
    nib.save(nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.zeros((10, 3), np.float32))]), path)
    return path


def _rgb(path):
    """A head saved as NIfTI's RGB24, each voxel three bytes, as viewers export a rendering."""
    grey = (_head() * 100).astype(np.uint8)
    colour = np.zeros(grey.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    colour["R"], colour["G"], colour["B"] = grey, grey, grey
    nib.Nifti1Image(colour, np.eye(4)).to_filename(path)
    return path


def _claims_a_huge_shape(path):
    """A 1 KB file whose header declares 30000³ voxels (about 10⁵ GiB as float32): a damaged header, not a download."""
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.uint8)
    header.set_qform(np.eye(4), code=1)
    with gzip.open(path, "wb") as handle:
        handle.write(header.binaryblock + bytes(352 - len(header.binaryblock)) + bytes(1000))
    return path


def _no_dimensions(path):
    """A head whose header's dim[0] (the number of axes) was zeroed: nibabel reads it as shape (0,)."""
    _save(_head(), path)
    header = bytearray(path.read_bytes())
    header[40:42] = (0).to_bytes(2, "little")  # dim[0], the first short of NIfTI-1's dim field at byte 40
    return _write(path, bytes(header))


def _overflowing_slope(path):
    """An int16 head whose header's scl_slope is 1e38: the stored voxels are finite, the scaled ones overflow."""
    _int16((_head() * 1000).astype(np.int16), path)
    header = bytearray(path.read_bytes())
    header[112:116] = np.float32(1e38).tobytes()  # scl_slope, a float at byte 112 of a NIfTI-1 header
    return _write(path, bytes(header))


def _int16(data, path, scaled=False):
    """A head saved as int16: unscaled, as converters write it, or with the slope and intercept nibabel picks."""
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32 if scaled else np.int16), np.eye(4))
    img.set_data_dtype(np.int16)
    img.to_filename(path)
    return path


def _wrapped(path):
    """A head whose brightest voxels (up to 52000) went past int16's 32767 when it was written: they wrap round to
    -32768 and up, darker than the background (QC flagged such a Colin27 at 3 mm only for its NCC, -0.40)."""
    return _int16((_head() * 26000).astype(np.int32).astype(np.int16), path)


def _head(shape=(32, 40, 36)):
    rng = np.random.default_rng(0)
    return rng.random(shape).astype(np.float32) + 1


@pytest.mark.parametrize("make, expected", [
    (_dicom_folder, "is a folder of DICOM files (e.g. IM0001.dcm)"),
    (_adni_dicom_download, "is a folder of DICOM files (e.g. MPRAGE/2006-11-29_09_00_00.0/S23128/"),
    (lambda p: _write(p / "a.dcm", b"DICM"), "DICOM file"),
    (lambda p: _write(p / "IM0001", bytes(128) + b"DICM" + bytes(64)), "is a DICOM file; convert the series"),
    (lambda p: p / "missing.nii.gz", "file not found"),
    (lambda p: p / "scans\\sub-01.nii.gz", "file not found; write the `path` column's folders with / (a Windows"),
    (lambda p: _link(p / "unfetched.nii.gz", ".git/annex/objects/Xq/9v/MD5E-s1--a.nii.gz"),
     "unfetched.nii.gz: is a link to .git/annex/objects/Xq/9v/MD5E-s1--a.nii.gz, which does not exist; fetch the file"),
    (lambda p: "", "`path` cell is empty"),
    (lambda p: _write(p / "bad.nii.gz", gzip.compress(b"not a nifti")), "cannot be read"),
    (lambda p: _save(np.ones((64, 64)), p / "slice.nii.gz"), "expected a 3D volume; pass the full 3D T1, not a"),
    (lambda p: _save(np.ones((32, 32, 32, 2)), p / "series.nii.gz"), "expected a 3D volume; pass a single 3D T1"),
    (lambda p: _save(np.ones((32, 32, 32, 1, 2)), p / "series5d.nii.gz"), "expected a 3D volume"),
    (lambda p: _no_dimensions(p / "nodims.nii"), "has shape (0,): its header declares no dimensions (dim[0] or an "
                                                 "axis is 0, a damaged header); re-convert the scan"),
    (lambda p: _save(np.ones((64, 64, 4)), p / "slab.nii.gz"), "too thin"),
    (lambda p: _save(np.full((32, 32, 32), np.nan), p / "nan.nii.gz"), "NaN/inf"),
    (lambda p: _overflowing_slope(p / "slope.nii"), "NaN/inf voxels; its stored voxels are finite, but the header's "
                                                   "scaling (scl_slope 1e+38, scl_inter 0) overflows them: fix"),
    (lambda p: _save(np.zeros((32, 32, 32)), p / "empty.nii.gz"), "empty"),
    (lambda p: _singular_affine(p / "flat.nii.gz"), "affine"),
    (lambda p: _unoriented(nib.Nifti1Image, p / "nocodes.nii.gz"), "no orientation (qform_code and sform_code"),
    (lambda p: _unoriented(nib.Nifti2Image, p / "nocodes2.nii"), "no orientation (qform_code and sform_code"),
    (lambda p: _unoriented(nib.Nifti1Pair, p / "nocodes.hdr"), "no orientation (qform_code and sform_code"),
    (lambda p: _analyze(p / "analyze.hdr", np.eye(4), with_mat=False), "no orientation (an Analyze"),
    (lambda p: _qform_beside_sform(p / "mirrored.nii.gz", np.diag([-1.0, 1.0, 1.0, 1.0])),
     "has a qform (LAS) and an sform (RAS) that point its axes different ways; find which is right"),
    (lambda p: _save(_head(), p / "units.nii.gz", np.diag([0.01, 0.01, 0.01, 1.0])), "voxel size"),
    (lambda p: _complex(p / "complex.nii.gz"), "holds complex values (a phase/magnitude reconstruction); pass the "
                                                "magnitude image"),
    (lambda p: _surface(p / "sub-01_hemi-L_pial.surf.gii"), "is a GiftiImage, not a volume; pass the T1's .nii or "
                                                            ".nii.gz file"),
    (lambda p: _rgb(p / "rgb.nii.gz"), "holds colour voxels (R, G, B), not grey-scale intensities (a rendering or "
                                       "screenshot?); pass the grey-scale T1"),
    (lambda p: _claims_a_huge_shape(p / "huge.nii.gz"), "declares (30000, 30000, 30000) voxels, 100582.8 GiB as "
                                                        "float32, more than this machine could allocate; check its"),
    (lambda p: _wrapped(p / "wrapped.nii.gz"), "both ends of the type: values too large for it wrapped round to "
                                               "negative (integer overflow when it was written); re-export"),
    (lambda p: _save(_head(), p / "plain.nii").rename(p / "plain.nii.gz"),  # intact, under a misleading name
     "the file is an uncompressed NIfTI: rename it to plain.nii"),
    (lambda p: _save(_head(), p / "gzipped.nii.gz").rename(p / "gzipped.nii"),
     "the file is gzip-compressed: rename it to gzipped.nii.gz"),
])
def test_bad_inputs_raise_one_clear_line(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(ScanError) as info:
        load_scan(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message and ";" in message and "\n" not in message


def test_truncated_file_is_a_scan_error(tmp_path):
    good = _save(_head(), tmp_path / "good.nii.gz")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ScanError, match="cannot be read"):
        load_scan(truncated)


@pytest.mark.parametrize("data, scaled", [(_head() * 1000 - 400, False),  # an offset background, unscaled
                                           (_head() * 1000 - 1400, True)])  # scaled: raw values span all of int16
def test_int16_heads_that_did_not_overflow_load_as_written(tmp_path, data, scaled):
    img = load_scan(_int16(data, tmp_path / "head.nii.gz", scaled))
    np.testing.assert_allclose(img.get_fdata(), data if scaled else data.astype(np.int16), atol=0.05)


def test_integer_heads_reaching_one_end_of_their_type_or_most_of_both_are_not_called_overflowed(tmp_path):
    """Overflow wraps the brightest voxels round to the most negative: the mark is both ends of a signed type reached
    (90% of each). A head scaled to int16's positive range, one spanning 85% of both ends, and a uint16 head over its
    whole range (the re-export the refusal advises) are read as written."""
    ramp = _head() - 1  # 0 to 1
    ramp[:4] = 0  # a background slab: stored as 0 (uint16's lowest value)
    for data, dtype in ((ramp * 32767, np.int16), (ramp * 0.85 * 65535 - 0.85 * 32768, np.int16),
                        (ramp * 65535, np.uint16)):
        stored = np.round(data).astype(dtype)
        image = nib.Nifti1Image(stored, np.eye(4))
        image.set_data_dtype(dtype)
        image.to_filename(tmp_path / "head.nii.gz")
        np.testing.assert_array_equal(load_scan(tmp_path / "head.nii.gz").get_fdata(), stored)


def test_heads_at_the_limits_of_extent_and_voxel_size_load_and_beyond_them_are_refused(tmp_path):
    """16 voxels an axis and 0.1-10 mm voxels are a head's limits, each allowed; a voxel edge is its affine column's
    length, so an oblique header with one axis in the wrong units (0.05 mm) is refused though each row is longer."""
    oblique = np.eye(4)
    oblique[:3, :3] = Rotation.from_euler("z", 45, degrees=True).as_matrix() @ np.diag([0.05, 1.0, 1.0])
    assert load_scan(_save(_head((16, 40, 36)), tmp_path / "thin.nii.gz")).shape == (16, 40, 36)
    assert load_scan(_save(_head(), tmp_path / "coarse.nii.gz", np.diag([10.0, 1.0, 1.0, 1.0]))).shape[0] == 32
    for data, affine, refusal in ((_head((15, 40, 36)), None, "too thin"),
                                  (_head(), np.diag([10.5, 1.0, 1.0, 1.0]), r"voxel size \[10.5, 1.0, 1.0\] mm"),
                                  (_head(), oblique, r"voxel size \[0.05, 1.0, 1.0\] mm")):
        with pytest.raises(ScanError, match=refusal):
            load_scan(_save(data, tmp_path / "beyond.nii.gz", affine))


@pytest.mark.parametrize("extra", [(1,), (1, 1)])
def test_good_scan_is_reoriented_to_ras_and_single_volume_4d_or_5d_accepted(tmp_path, extra):
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    data = _head()
    img = load_scan(_save(data.reshape(data.shape + extra), tmp_path / "lps4d.nii.gz", lps))
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert img.shape == data.shape
    np.testing.assert_allclose(img.get_fdata()[::-1, ::-1, :], data)


def test_a_qform_shifted_or_tilted_from_the_sform_is_read_as_the_sform_says(tmp_path):
    """Only axes pointing different ways are refused: a qform a few mm or degrees off the sform (up to 45°) is read as
    nibabel, ANTs and FSL read it, by its sform, and so is an oblique sform whose qform rounds differently near 45°."""
    def turned(degrees, shift_mm):
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = Rotation.from_euler("x", degrees, degrees=True).as_matrix(), shift_mm
        return matrix

    for qform, sform in ((turned(5, 3), np.eye(4)), (turned(40, 0), np.eye(4)), (turned(45.1, 0), turned(44.9, 0))):
        img = load_scan(_qform_beside_sform(tmp_path / "tilted.nii.gz", qform, sform))
        np.testing.assert_allclose(img.affine, nib.as_closest_canonical(nib.Nifti1Image(_head(), sform)).affine,
                                   atol=1e-6)


@pytest.mark.parametrize("name", ["pair.hdr", "pair.img", "pair.hdr.gz"])
def test_oriented_pairs_load_with_their_own_orientation(tmp_path, name):
    """NIfTI pairs with an sform and Analyze pairs with SPM's .mat say where left is: read them as they say."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    nib.Nifti1Pair(_head(), lps).to_filename(tmp_path / name)
    assert np.array_equal(load_scan(tmp_path / name).get_fdata()[::-1, ::-1, :], _head())
    analyze = _analyze(tmp_path / f"analyze-{name}", lps, with_mat=True)
    assert np.array_equal(load_scan(analyze).get_fdata()[::-1, ::-1, :], _head())


def test_a_freesurfer_mgz_loads_with_its_own_orientation(tmp_path):
    """FreeSurfer conforms scans to LIA (x right to left, y superior to inferior, z posterior to anterior)."""
    lia = np.array([[-1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    nib.MGHImage(_head(), lia).to_filename(tmp_path / "T1.mgz")
    img = load_scan(tmp_path / "T1.mgz")
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(img.get_fdata(), _head()[::-1].transpose(0, 2, 1)[:, :, ::-1])


def test_a_header_nibabel_repairs_is_reported_with_the_scans_name(tmp_path, caplog):
    """In a batch the repair line sits among other scans' progress; without the name it points nowhere."""
    path = _save(_head(), tmp_path / "odd-header.nii")
    raw = bytearray(path.read_bytes())
    raw[0:4] = np.int32(340).tobytes()  # sizeof_hdr, which nibabel sets back to 348 with a logged report
    path.write_bytes(bytes(raw))
    assert load_scan(path).shape == (32, 40, 36)
    assert caplog.messages == [f"{path}: sizeof_hdr should be 348; set sizeof_hdr to 348"]
    nib.load(str(path))  # nibabel's own loads, outside a scan's check, are left as they were
    assert caplog.messages[1:] == ["sizeof_hdr should be 348; set sizeof_hdr to 348"]


def _damaged_gzip_end(path, damage):
    """A scan whose gzip stream lost its last bytes or holds a wrong CRC: every voxel decompresses, so nibabel, which
    stops reading at the last one, loads it; only the gzip trailer tells the file is not the one written."""
    image = nib.MGHImage if path.suffix == ".mgz" else nib.Nifti1Image
    image(_head(), np.eye(4)).to_filename(path)
    good = path.read_bytes()
    path.write_bytes(good[:-4] if damage == "cut" else good[:-8] + bytes(b ^ 0xFF for b in good[-8:-4]) + good[-4:])
    return path


def test_a_scaling_that_overflows_is_refused_without_numpy_s_warning(tmp_path):
    """Besides the one-line refusal, numpy's "overflow encountered in cast" warning, naming no file, was printed."""
    path = _overflowing_slope(tmp_path / "slope.nii")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ScanError, match="header's scaling"):
            load_scan(path)


@pytest.mark.parametrize("damage", ["cut", "crc"])
@pytest.mark.parametrize(("name", "kind"), [("damaged.nii.gz", "NIfTI"), ("damaged.mgz", "FreeSurfer MGH")])
def test_damaged_gzip_stream_is_a_scan_error(tmp_path, damage, name, kind):
    """A download cut short by a few bytes, or bits flipped in transfer, must fail like a file cut in half: otherwise
    a changed voxel is processed without a word (or its NaN blamed on an upstream step). The error names the
    format the file is in: a broken .mgz said "cannot be read as NIfTI"."""
    path = _damaged_gzip_end(tmp_path / name, damage)
    with pytest.raises(ScanError, match=f"cannot be read as {kind} ") as info:
        load_scan(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_an_analyze_pair_cut_short_is_named_as_one(tmp_path):
    """An Analyze .img cut short said "cannot be read as NIfTI", about a pair that holds no NIfTI."""
    path = _analyze(tmp_path / "cut.hdr", np.eye(4), with_mat=True)
    with open(tmp_path / "cut.img", "r+b") as image:
        image.truncate(100)
    with pytest.raises(ScanError, match=r"cut.hdr: cannot be read as an Analyze/NIfTI .hdr/.img pair \(Expected "):
        load_scan(path)


@contextlib.contextmanager
def _pipe_that_answers_every_reader(path):
    """A named pipe at `path` whose readers each get an empty stream: opening one blocks until a writer comes, so
    without one the check under test would wait for good instead of failing."""
    os.mkfifo(path)
    done = threading.Event()

    def answer_readers():
        while not done.is_set():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: no reader waiting yet
                done.wait(0.01)

    answering = threading.Thread(target=answer_readers, daemon=True)
    answering.start()
    try:
        yield path
    finally:
        done.set()
        answering.join()


def test_a_named_pipe_is_refused_before_it_is_opened(tmp_path):
    """A pipe (or a socket, a device) at a scan's path is no scan: reading it blocked the batch's worker until someone
    wrote to it, and the run never finished. It is refused without being opened."""
    with _pipe_that_answers_every_reader(tmp_path / "scan.nii.gz") as pipe:
        with pytest.raises(ScanError) as info:
            load_scan(pipe)
    assert str(info.value) == (f"{pipe}: is not a regular file (a named pipe, socket or device); point `path` at the "
                               "scan's .nii or .nii.gz file")
