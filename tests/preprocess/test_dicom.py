"""DICOM files are told by their name or their preamble, and a folder's first one is found in name order within the
bounds of the search."""
from __future__ import annotations

import pytest

from preprocess.dicom import first_file_below, is_dicom


def _touch(path, payload: bytes = b""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("name", ["IM0001.dcm", "IM0001.DCM", "scan.ima", "SCAN.IMA"])
def test_a_dicom_file_is_told_by_its_name_in_any_case(tmp_path, name):
    assert is_dicom(_touch(tmp_path / name, b"no preamble"))


def test_a_file_without_a_suffix_is_dicom_by_the_dicm_after_its_128_byte_preamble(tmp_path):
    assert is_dicom(_touch(tmp_path / "IM0001", bytes(128) + b"DICM" + bytes(8)))
    assert not is_dicom(_touch(tmp_path / "IM0002", b"DICM" + bytes(132)))
    assert not is_dicom(_touch(tmp_path / "notes", bytes(127) + b"DICM"))


def test_a_file_that_cannot_be_opened_is_not_dicom(tmp_path):
    """A link whose content DataLad did not fetch names no DICOM series."""
    (tmp_path / "IM0001").symlink_to(tmp_path / "missing")
    assert not is_dicom(tmp_path / "IM0001")
    assert not is_dicom(tmp_path / "gone")


def test_the_first_wanted_file_is_the_first_by_name_folders_and_files_alike(tmp_path):
    """Thirty of each, made last to first: a folder lists them in an order of its own (hashes, creation)."""
    for number in range(30, 0, -1):
        _touch(tmp_path / f"IM{number:04d}.dcm")
        _touch(tmp_path / f"S{number:04d}" / "IM0001.dcm")
    assert first_file_below(tmp_path, is_dicom) == tmp_path / "IM0001.dcm"
    assert first_file_below(tmp_path, lambda path: path.parent != tmp_path) == tmp_path / "S0001" / "IM0001.dcm"


def test_files_are_looked_for_up_to_depth_folders_down(tmp_path):
    _touch(tmp_path / "a" / "b" / "c" / "IM0001.dcm")
    assert first_file_below(tmp_path, is_dicom, depth=2) is None
    assert first_file_below(tmp_path, is_dicom, depth=3) == tmp_path / "a" / "b" / "c" / "IM0001.dcm"


def test_hidden_files_and_folders_are_left_out(tmp_path):
    _touch(tmp_path / ".git" / "IM0001.dcm")
    _touch(tmp_path / "._IM0002.dcm")
    assert first_file_below(tmp_path, is_dicom) is None


def test_only_the_first_files_given_are_looked_at(tmp_path):
    for name in ("a.txt", "b.txt", "c.txt", "d.dcm"):
        _touch(tmp_path / name)
    assert first_file_below(tmp_path, is_dicom, files=3) is None
    assert first_file_below(tmp_path, is_dicom, files=4) == tmp_path / "d.dcm"
