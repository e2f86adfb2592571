"""simulate-cohort refuses an unusable --anatomy file with one line naming it, before writing anything."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest

from elr_mri.shipped import checkout_root
from elr_mri.simulate import anatomy, main


def _nifti(shape: tuple[int, ...]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        data = np.random.default_rng(0).random(shape).astype(np.float32)
        nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(path)
    return write


BAD_ANATOMIES = {  # file name -> (writer, what the error must say about it; None: nothing written)
    "missing.nii.gz": (None, "file not found"),
    "text.nii.gz": (lambda p: p.write_text("not an image"), "cannot be read as NIfTI"),
    "slice.nii.gz": (_nifti((40, 40)), "has shape (40, 40), expected a 3D volume"),
    "series.nii.gz": (_nifti((40, 40, 40, 3)), "has shape (40, 40, 40, 3), expected a 3D volume"),
}


@pytest.mark.parametrize("name", sorted(BAD_ANATOMIES))
def test_bad_anatomy_file_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture, name: str) -> None:
    write, what = BAD_ANATOMIES[name]
    if write:
        write(tmp_path / name)
    out = tmp_path / "cohort"
    assert main(["--out", str(out), "--subjects", "1", "--holdout-subjects", "0", "--anatomy",
                 str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("elr-mri simulate-cohort: error: ") and "\n" not in err
    assert f"--anatomy {tmp_path / name}: {what}" in err and "or --anatomy mni152" in err
    assert not out.exists()


@pytest.mark.parametrize("name", ["head.nii.gz", "head.hdr"])
def test_resume_settings_follow_the_anatomy_file_content_not_its_name(tmp_path: Path, name: str) -> None:
    """A head replaced under the same path is another cohort: finished scans of the old one must not be kept
    (for a .hdr/.img pair, a new .img under the same header too)."""
    from elr_mri.simulate.cli import _description, _Drawing
    from elr_mri.simulate.cohort import plan_cohort

    specs, head = plan_cohort(2, 0, 0.2, 0, 1.0), tmp_path / name
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), affine), head)
    before = _description(specs, _Drawing(0.2, 0, 2.0, str(head), 1.0))
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), affine), head)
    assert _description(specs, _Drawing(0.2, 0, 2.0, str(head), 1.0))["anatomy_sha256"] != before["anatomy_sha256"]
    assert "anatomy_sha256" not in _description(specs, _Drawing(0.2, 0, 2.0, "mni152", 1.0))


def test_an_out_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "afile").write_text("kept")
    assert main(["--out", str(tmp_path / "afile"), "--subjects", "1", "--holdout-subjects", "0"]) == 2
    assert capsys.readouterr().err.strip() == (f"elr-mri simulate-cohort: error: --out {tmp_path / 'afile'} is a file; "
                                               "pass a folder for the cohort (a new one is made)")
    assert (tmp_path / "afile").read_text() == "kept"
    # under the file: the OS's "[Errno 20] Not a directory: '.../afile/cohort'" named neither the file nor --out
    assert main(["--out", str(tmp_path / "afile" / "cohort"), "--subjects", "1", "--holdout-subjects", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"elr-mri simulate-cohort: error: --out {tmp_path / 'afile' / 'cohort'}: {tmp_path / 'afile'} is a file, so no "
        "folder can be made in it; choose another --out")


@pytest.mark.parametrize(("origin", "shift_mm"), [("corner", 0.0), ("shifted", 30.0)])
def test_an_anatomy_not_in_mni_space_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                           origin: str, shift_mm: float) -> None:
    """The MNI template saved with its origin at the first voxel (as converters write a scan) stopped with numpy's
    'Shape of array too small to calculate a numerical gradient', naming nothing; moved 30 mm, it would have been
    simulated with the right entorhinal cortex's atrophy deforming air."""
    from nilearn.datasets import load_mni152_template

    template = load_mni152_template(resolution=2)
    affine = template.affine.copy()
    affine[:3, 3] = 0.0 if origin == "corner" else affine[:3, 3] + [shift_mm, 0.0, 0.0]
    head = tmp_path / f"{origin}.nii.gz"
    nib.save(nib.Nifti1Image(template.get_fdata(dtype=np.float32), affine), head)
    out = tmp_path / "cohort"
    assert main(["--out", str(out), "--subjects", "1", "--holdout-subjects", "0", "--resolution", "4",
                 "--anatomy", str(head)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"elr-mri simulate-cohort: error: --anatomy {head}: only ")
    assert "not in MNI space" in err and "or use --anatomy mni152" in err
    assert not out.exists()


def test_a_scan_an_older_simulator_finished_is_drawn_again_on_resume(tmp_path: Path) -> None:
    """The settings a resume keeps finished scans under carried no code version: a run cut short before the fix that
    draws a large head's brain whole, rerun by the fixed code, kept its clipped scans beside newly drawn ones."""
    from elr_mri.simulate.cli import _description, _Drawing, _finished_scan, settings_hash
    from elr_mri.simulate.cohort import plan_cohort
    from preprocess.sidecar import file_sha256, write_json

    description = _description(plan_cohort(2, 0, 0.2, 0, 1.0), _Drawing(0.2, 0, 2.0, "mni152", 1.0))
    older = {key: value for key, value in description.items() if key != "simulator_version"}  # as written before
    scan, record = tmp_path / "scan.nii.gz", tmp_path / "sub-0001.json"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), scan)
    write_json(record, {"settings": settings_hash(older), "path": "scan.nii.gz", "scan_sha256": file_sha256(scan),
                        "measured": [["brain_ratio", 1.0]]})
    assert _finished_scan(scan, record, settings_hash(older)) == {"brain_ratio": 1.0}  # the older code kept it
    assert _finished_scan(scan, record, settings_hash(description)) is None  # this one draws it again


def test_colin27_absent_beside_the_repository_is_one_line_saying_where_to_get_it(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone with no ../shared: `--anatomy colin27` named a path with `..` in it and no way to get the file."""
    root = Path(__file__).resolve().parents[1]
    assert anatomy.COLIN27 == root.parent / "shared" / "data" / "mri" / "colin27_ch2_t1.nii.gz"  # plain, no '..'
    absent = tmp_path / "shared" / "data" / "mri" / "colin27_ch2_t1.nii.gz"
    monkeypatch.setattr(anatomy, "COLIN27", absent)
    out = tmp_path / "cohort"
    assert main(["--out", str(out), "--subjects", "1", "--holdout-subjects", "0", "--anatomy", "colin27"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"elr-mri simulate-cohort: error: anatomy 'colin27': no file at {absent}; Colin27 does not ship "
                   "with elr-mri (ANTsPy's ants.get_ants_data('ch2') downloads it): pass its path to "
                   "--anatomy, or use --anatomy mni152")
    assert not out.exists()


def test_colin27_of_an_installed_package_is_looked_for_nowhere_and_said_so(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed, the lookup beside the package named lib/python3.x/shared/data/mri/..., a folder of the Python
    installation that no user has: there is no checkout to look beside, so the line says to pass the path."""
    module = tmp_path / "lib" / "python3.11" / "site-packages" / "elr_mri" / "shipped.py"
    module.parent.mkdir(parents=True)
    assert checkout_root(module) is None
    (tmp_path / "lib" / "python3.11" / "site-packages" / "pyproject.toml").write_text("")  # a checkout's marker
    assert checkout_root(module) == tmp_path / "lib" / "python3.11" / "site-packages"
    monkeypatch.setattr(anatomy, "COLIN27", None)
    out = tmp_path / "cohort"
    assert main(["--out", str(out), "--subjects", "1", "--holdout-subjects", "0", "--anatomy", "colin27"]) == 2
    assert capsys.readouterr().err.strip() == (
        "elr-mri simulate-cohort: error: anatomy 'colin27': it names the copy in ../shared/data/mri beside a checkout "
        "of elr-mri, and this one is installed; Colin27 does not ship with elr-mri (ANTsPy's "
        "ants.get_ants_data('ch2') downloads it): pass its path to --anatomy, or use --anatomy mni152")
    assert not out.exists()
