"""The template checks run once before any scan, the digests telling templates apart, and the output grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from preprocess.checks import ScanError
from preprocess.template import check_template_files, load_template, template_file_digests


def _template(tmp_path: Path, shape: tuple[int, int, int] = (20, 24, 28)) -> Path:
    """A template of `shape` 1 mm voxels at the origin."""
    path = tmp_path / "template.nii.gz"
    nib.Nifti1Image(np.random.default_rng(0).random(shape, np.float32), np.eye(4)).to_filename(path)
    return path


def _mask(tmp_path: Path, shape: tuple[int, int, int], voxels: list[tuple[int, int, int]],
          affine: np.ndarray | None = None, value: float = 1.0) -> Path:
    """A mask of `shape` marking `voxels` with `value`."""
    data = np.zeros(shape, np.float32)
    for voxel in voxels:
        data[voxel] = value
    path = tmp_path / "mask.nii.gz"
    nib.Nifti1Image(data, np.eye(4) if affine is None else affine).to_filename(path)
    return path


def test_mask_voxels_count_as_brain_from_0_5_and_within_the_template_from_either_side(tmp_path: Path) -> None:
    """0.5 is brain (the mask is read with ANTs' threshold_image(0.5, None), which keeps it); a mask voxel one past
    the template's last is outside it; one brain voxel within the field of view is enough."""
    template = str(_template(tmp_path))
    check_template_files(template, str(_mask(tmp_path, (20, 24, 28), [(5, 5, 5)], value=0.5)))
    with pytest.raises(ScanError, match="marks no voxel within --template's field of view"):
        check_template_files(template, str(_mask(tmp_path, (22, 24, 28), [(20, 5, 5)])))
    check_template_files(template, str(_mask(tmp_path, (22, 24, 28), [(20, 5, 5), (19, 5, 5)])))


def test_an_oblique_mask_is_placed_by_its_affine(tmp_path: Path) -> None:
    """A mask whose axes are turned 30° about z from the template's: its voxel (15, 0, 5) lies at (13.0, 7.5, 5) mm,
    inside the 20 × 24 × 28 template; the inverse turn would put it at y = −7.5, outside."""
    turn = np.radians(30)
    to_world = np.eye(4)
    to_world[:2, :2] = [[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]
    check_template_files(str(_template(tmp_path)), str(_mask(tmp_path, (20, 16, 16), [(15, 0, 5)], to_world)))


def test_one_image_coded_in_another_space_is_another_template(tmp_path: Path) -> None:
    """Outputs copy the template's space code, so a template whose header says another space writes other files."""
    image = nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 16), np.float32), np.eye(4))
    digests = []
    for code in (4, 5):  # MNI152, another template
        image.set_sform(np.eye(4), code=code)
        image.set_qform(np.eye(4), code=code)
        image.to_filename(tmp_path / f"coded{code}.nii")
        digests.append(template_file_digests(str(tmp_path / f"coded{code}.nii"), None)["content_sha256"])
    assert digests[0] != digests[1]


@pytest.mark.parametrize(("shape", "expected_shape"), [((4, 5, 6), (4, 5, 6)), (None, (6, 8, 9))])
def test_the_output_grid_shares_the_templates_centre(tmp_path: Path, shape, expected_shape) -> None:
    """The grid is a centred crop of `shape` voxels at the resolution: its middle is the template's middle; without a
    shape it holds the whole voxels of that size that fit in the template's 20 × 24 × 28 mm (3 mm: 6 × 8 × 9)."""
    import ants

    resolution = 2.0 if shape else 3.0
    loaded = load_template(str(_template(tmp_path)), None, resolution, shape)
    assert loaded.grid.shape == expected_shape and loaded.grid.spacing == (resolution,) * 3

    def middle(image: ants.ANTsImage) -> np.ndarray:
        corners = [ants.transform_index_to_physical_point(image, index) for index in
                   ((0, 0, 0), tuple(size - 1 for size in image.shape))]
        return np.mean(corners, axis=0)

    np.testing.assert_allclose(middle(loaded.grid), middle(loaded.full), atol=1e-4)
