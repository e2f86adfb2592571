"""What a resumed batch trusts: the sidecar's comparison, the digests that tell scans and templates apart, and the
temporary files a killed run leaves."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from preprocess.sidecar import (remove_stale_temps, same_template, stale_reason, template_identity,
                                voxels_sha256)


def _finished_scan(tmp_path: Path, meta: dict) -> tuple[Path, Path]:
    """An output and the sidecar `meta` recorded for it."""
    output = tmp_path / "scan.nii.gz"
    output.write_bytes(b"written by preprocess")
    sidecar = tmp_path / "scan.json"
    sidecar.write_text(json.dumps(meta))
    return sidecar, output


def test_a_setting_recorded_by_no_earlier_run_redoes_the_scan(tmp_path: Path) -> None:
    """A setting the sidecar lacks is one its run did not have: compared as absent then, not left out."""
    sidecar, output = _finished_scan(tmp_path, {"input_sha256": "abc", "params": {"normalise": "minmax"}})
    assert stale_reason(sidecar, "abc", {"normalise": "minmax", "dtype": "int16"}, [output]) == (
        "other settings (dtype: None then, 'int16' now)")


def test_a_sidecar_whose_params_are_no_record_is_unreadable(tmp_path: Path) -> None:
    """Settings it cannot compare: the scan is redone rather than the batch stopped by a TypeError."""
    sidecar, output = _finished_scan(tmp_path, {"input_sha256": "abc", "params": None})
    assert stale_reason(sidecar, "abc", {}, [output]) == "its sidecar is unreadable"


def test_a_template_record_from_before_content_digests_compares_by_file_on_either_side() -> None:
    """One template, recorded once with its image's digest and once without (an older sidecar or shard): the file
    digests decide, whichever of the two comes first."""
    current = {"sha256": "f1", "content_sha256": "c1"}
    older = {"sha256": "f1"}
    assert same_template(older, current) and same_template(current, older)
    assert not same_template(current, {"sha256": "f2"})


def test_a_templates_identity_is_its_images_digests_else_its_files() -> None:
    """A name or path is not identity; a record from before image digests keeps its file digests, not nothing."""
    assert template_identity({"name": "t", "sha256": "f1", "content_sha256": "c1", "mask_sha256": "f2",
                              "mask_content_sha256": "c2"}) == {"content_sha256": "c1", "mask_content_sha256": "c2"}
    assert template_identity({"name": "t", "sha256": "f1", "mask_sha256": "f2"}) == {"sha256": "f1",
                                                                                    "mask_sha256": "f2"}
    assert template_identity({"sha256": "f1", "content_sha256": "c1"}) == {"content_sha256": "c1"}  # no mask


def test_one_set_of_voxels_in_two_shapes_has_two_digests() -> None:
    """The same voxel values laid out in another grid are another scan: the digest covers the shape."""
    voxels = np.arange(4 * 6 * 5, dtype=np.float32)
    wide, tall = (nib.Nifti1Image(voxels.reshape(shape), np.eye(4)) for shape in ((4, 6, 5), (6, 4, 5)))
    assert voxels_sha256(wide) != voxels_sha256(tall)


def test_a_killed_runs_temporary_files_and_folders_go_and_its_outputs_stay(tmp_path: Path) -> None:
    """atomic_path's `.tmp<pid>-<random>-<name>` and the registration's `.tmp-registration-*` folder are what a
    killed run leaves; the finished files beside them stay."""
    (tmp_path / ".tmp4242-0a1b2c3d-scan.nii.gz").write_bytes(b"half written")
    (tmp_path / ".tmp-registration-x1").mkdir()
    (tmp_path / ".tmp-registration-x1" / "warp.nii.gz").write_bytes(b"warp")
    (tmp_path / "scan.nii.gz").write_bytes(b"finished")
    remove_stale_temps(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scan.nii.gz"]
