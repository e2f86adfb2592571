"""Fixtures: real anatomy (nilearn's MNI template, Colin27) moved by a known pose and bias field."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from preprocess.synthetic import move_and_bias, pose_transform

COLIN = Path(__file__).resolve().parents[3] / "shared" / "data" / "mri" / "colin27_ch2_t1.nii.gz"


def write_nifti(image, path: Path) -> Path:
    from preprocess.steps import to_nifti

    to_nifti(image).to_filename(path)
    return path


@pytest.fixture(autouse=True)
def itk_threads_restored():
    """ANTs' deterministic mode writes ITK's thread count into os.environ for the rest of the process;
    put the user's setting (or its absence) back so the subprocesses of later tests do not run on one thread."""
    name = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
    before = os.environ.get(name)
    yield
    if before is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = before


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
        pytest.skip(f"real test head absent: no Colin27 at {COLIN} (not in the repository; ANTsPy's "
                    "ants.get_ants_data('ch2') downloads it)")
    return COLIN


@pytest.fixture(scope="session")
def moved_colin_2mm(tmp_path_factory, colin_path) -> Path:
    """Colin27 (real single-subject head) at 2 mm, moved by the known pose and biased."""
    import ants

    colin = ants.resample_image(ants.image_read(str(colin_path)), (2, 2, 2), use_voxels=False, interp_type=0)
    return write_nifti(move_and_bias(colin), tmp_path_factory.mktemp("scans") / "moved_colin.nii.gz")
