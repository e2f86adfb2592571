"""Fixtures: real anatomy (nilearn's MNI template, Colin27) moved by a known pose and bias field."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

COLIN = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mri" / "colin27_ch2_t1.nii.gz"
# A head pose a scanner could give: rotations (degrees) about x, y, z, a translation (mm) and a
# mild anisotropic scaling, about a centre near the middle of the brain.
POSE_DEGREES, POSE_SHIFT_MM, POSE_SCALE = (9.0, -7.0, 5.0), (7.0, -5.0, 6.0), (1.04, 0.96, 1.0)
POSE_CENTRE = (0.0, 18.0, 10.0)  # LPS mm


def pose_transform():
    """The ANTs affine transform that maps a point of the original head to the moved head's grid."""
    import ants
    from scipy.spatial.transform import Rotation

    matrix = Rotation.from_euler("xyz", POSE_DEGREES, degrees=True).as_matrix() @ np.diag(POSE_SCALE)
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    tx.set_parameters(list(matrix.ravel()) + list(POSE_SHIFT_MM))
    tx.set_fixed_parameters(list(POSE_CENTRE))
    return tx


def move_and_bias(image):
    """`image` resampled through the known pose, times a smooth multiplicative bias field."""
    tx = pose_transform()
    moved = tx.apply_to_image(image, reference=image, interpolation="linear").numpy()
    axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in moved.shape], indexing="ij")
    bias = np.exp(0.3 * axes[0] + 0.2 * axes[1] * axes[2] - 0.25 * axes[2] ** 2)
    return image.new_image_like((moved * bias).astype(np.float32))


def write_nifti(image, path: Path) -> Path:
    from preprocess.steps import to_nifti

    to_nifti(image).to_filename(path)
    return path


@pytest.fixture(scope="session")
def pose():
    return pose_transform()


@pytest.fixture(scope="session")
def template_2mm():
    """nilearn's MNI152 template at 2 mm, as an ANTs image (no download: it ships in the wheel)."""
    from nilearn import datasets

    from preprocess.steps import to_ants

    return to_ants(datasets.load_mni152_template(resolution=2))


@pytest.fixture(scope="session")
def moved_template(tmp_path_factory, template_2mm) -> Path:
    """The 2 mm template moved by the known pose and biased: registration must undo exactly that."""
    return write_nifti(move_and_bias(template_2mm), tmp_path_factory.mktemp("scans") / "moved_template.nii.gz")


@pytest.fixture(scope="session")
def colin_path() -> Path:
    if not COLIN.exists():
        pytest.skip(f"real test head absent: {COLIN} (see ../shared/data/README.md)")
    return COLIN


@pytest.fixture(scope="session")
def moved_colin_2mm(tmp_path_factory, colin_path) -> Path:
    """Colin27 (real single-subject head) at 2 mm, moved by the known pose and biased."""
    import ants

    colin = ants.resample_image(ants.image_read(str(colin_path)), (2, 2, 2), use_voxels=False, interp_type=0)
    return write_nifti(move_and_bias(colin), tmp_path_factory.mktemp("scans") / "moved_colin.nii.gz")
