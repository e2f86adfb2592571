"""Regional volumes from the registration's Jacobian: known scalings come back, bad scans fail alone."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Hashable, Mapping

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

ants = pytest.importorskip("ants")

import elr_mri.volumes.measure  # noqa: E402
from elr_mri.cli import main  # noqa: E402
from elr_mri.simulate.disease import REGIONS, atrophy_displacement  # noqa: E402
from elr_mri.simulate.fields import grid_points, sample  # noqa: E402
from elr_mri.volumes.jacobian import affine_determinant, integrate_regions, region_masks, warp_jacobian  # noqa: E402
from elr_mri.volumes.measure import VolumeParams, measure_manifest, measure_scan  # noqa: E402
from elr_mri.volumes.recovery import recovery_table  # noqa: E402
from preprocess.cores import usable_cores  # noqa: E402
from preprocess.pipeline import Params, ScanOutputs  # noqa: E402
from preprocess.sidecar import file_sha256, output_hashes  # noqa: E402
from preprocess.steps import to_nifti  # noqa: E402
from preprocess.user_errors import StorageError  # noqa: E402
from preprocess.template import load_template, template_file_digests  # noqa: E402
from test_volumes_scratch import _run_holding_scratch  # noqa: E402

RESOLUTION = 3.0  # coarse enough that a SyN registration takes seconds


@pytest.fixture(scope="module")
def template():
    return load_template(None, None, RESOLUTION, None)


def _in_turn(work: Callable[..., dict], arguments: Mapping[Hashable, tuple], *rest: object, **options: object
             ) -> dict[Hashable, dict]:
    """`run_per_scan`'s results, each scan's work called in this process."""
    return {key: work(*args) for key, args in arguments.items()}


def _scans_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`measure_manifest` measures its scans here from now on, not in a worker process: a worker's start (a Python
    importing `elr_mri.volumes` and ANTs) cost 2-5 s a call on 2 CI cores and adds nothing to what a test of the
    manifest's tables or warnings checks. Results and errors crossing a real worker stay checked where a test
    measures a manifest without this (the broken scan's first run; a full disk's StorageError)."""
    monkeypatch.setattr(elr_mri.volumes.measure, "run_per_scan", _in_turn)


def _centre(image) -> np.ndarray:
    """Physical (LPS) centre of an image's field of view."""
    half = (np.asarray(image.shape) - 1) / 2 * np.asarray(image.spacing)
    return np.asarray(image.origin) + np.asarray(image.direction) @ half


def _scaling_warp(domain, scale: float, path: Path) -> None:
    """Displacement field of x -> c + scale·(x − c) on `domain`, written as an ANTs warp file."""
    index = np.indices(domain.shape, dtype=np.float64).reshape(3, -1).T
    points = np.asarray(domain.origin) + (index * np.asarray(domain.spacing)) @ np.asarray(domain.direction).T
    field = ((scale - 1.0) * (points - _centre(domain))).reshape(*domain.shape, 3).astype(np.float32)
    warp = ants.from_numpy(field, origin=list(domain.origin), spacing=list(domain.spacing),
                           direction=np.asarray(domain.direction), has_components=True)
    ants.image_write(warp, str(path))


def _write_affine(path: Path, scale: float) -> None:
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                           matrix=np.eye(3) * scale, translation=(0.0, 0.0, 0.0))
    ants.write_transform(transform, str(path))


def test_jacobian_of_a_scaling_warp_and_affine_gives_the_cube_of_the_scale(template, tmp_path: Path) -> None:
    warp, affine = tmp_path / "warp.nii.gz", tmp_path / "affine.mat"
    _scaling_warp(template.grid, 1.1, warp)
    _write_affine(affine, 0.95)
    jacobian = warp_jacobian(template.grid, str(warp))
    masks = region_masks(template.grid)
    volumes = integrate_regions(jacobian, masks, RESOLUTION**3, affine_determinant(str(affine)))
    expected = (1.1 * 0.95) ** 3
    for name, volume in volumes.items():
        assert volume["ratio"] == pytest.approx(expected, rel=0.01), name
        assert volume["mm3"] == pytest.approx(expected * masks[name].sum() * RESOLUTION**3, rel=0.01)
    assert masks["hippocampus_l"].sum() > 20 and masks["brain"].sum() > 100 * masks["hippocampus_l"].sum()


def _fake_preprocessed(template, folder: Path, participant: str, scale: float,
                       atrophy: dict[str, float] | None = None) -> ScanOutputs:
    """A template-space 'scan' that is the template magnified by `scale` about its centre (and its regions changed
    in volume by `atrophy`, as the simulator does), written with the files `elr-mri preprocess` leaves (identity
    affine, sidecar with the settings)."""
    outputs = ScanOutputs.under(folder, participant, "ses-M00")
    outputs.image.parent.mkdir(parents=True)
    grid = template.grid
    magnify = ants.create_ants_transform(transform_type="AffineTransform", dimension=3, matrix=np.eye(3) / scale,
                                         center=_centre(grid).tolist(), translation=(0.0, 0.0, 0.0))
    scan = to_nifti(ants.apply_ants_transform_to_image(magnify, grid, grid, interpolation="linear"))
    if atrophy:
        changes = {region.name: atrophy.get(region.name, 0.0) for region in REGIONS}
        displacement = atrophy_displacement(scan.affine, scan.shape, changes)
        points = grid_points(scan.shape, scan.affine) + np.moveaxis(displacement, 0, -1)
        scan = nib.Nifti1Image(sample(np.asarray(scan.dataobj, np.float32), scan.affine, points), scan.affine)
    scan.to_filename(outputs.image)
    _write_affine(outputs.transform, 1.0)
    params = Params(resolution=RESOLUTION).as_dict()
    recorded = {"name": template.name, "sha256": template.sha256, **template_file_digests(None, None)}  # as preprocess
    outputs.sidecar.write_text(json.dumps({"params": params, "template": recorded}))
    return outputs


def test_measure_scan_recovers_a_magnified_brain_through_a_real_syn_registration(template, tmp_path: Path) -> None:
    outputs = _fake_preprocessed(template, tmp_path, "sub-BIG", 1.1)
    result = measure_scan(outputs.image, VolumeParams(registration_mm=RESOLUTION))
    assert result["status"] == "done" and result["warp"].startswith("syn")
    assert result["regions"]["brain"]["ratio"] == pytest.approx(1.1**3, rel=0.03)  # 1.331, not 1/1.331
    assert result["regions"]["hippocampus_l"]["ratio"] == pytest.approx(1.1**3, rel=0.05)
    again = measure_scan(outputs.image, VolumeParams(registration_mm=RESOLUTION))
    assert again["status"] == "skipped" and again["regions"] == result["regions"]


def test_regional_atrophy_moves_its_own_regions_the_way_it_was_simulated(template, tmp_path: Path) -> None:
    """A magnified brain scales every region alike, so a mask on the wrong side or off its structure went unseen.
    The left hippocampus shrunk by 30% and the left ventricle doubled, as the simulator deforms them: the SyN (3 mm,
    40/20/0 iterations) recovers a part of each change (0.92 and 1.25 here), on its own side; the whole brain and
    the right hippocampus stay near 1."""
    outputs = _fake_preprocessed(template, tmp_path, "sub-AD", 1.0, {"hippocampus_l": -0.3, "ventricle_l": 1.0})
    regions = measure_scan(outputs.image, VolumeParams(registration_mm=RESOLUTION))["regions"]
    ratio = {name: region["ratio"] for name, region in regions.items()}
    assert ratio["hippocampus_l"] < 0.95 and ratio["hippocampus_r"] == pytest.approx(1.0, abs=0.04)
    assert ratio["ventricle_l"] > 1.15 and ratio["ventricle_l"] > ratio["ventricle_r"] + 0.1
    assert ratio["brain"] == pytest.approx(1.0, abs=0.02)


def test_unchanged_anatomy_on_a_grid_other_than_the_registrations_measures_ratio_one(template, tmp_path: Path
                                                                                     ) -> None:
    """A 3 mm scan registered at 2 mm: SyN smooths in voxels, so unresampled it blurred the scan 1.5× the domain's
    and measured the template's own hippocampus at 0.95 of itself. Volumes cached by the earlier method are redone."""
    outputs = _fake_preprocessed(template, tmp_path, "sub-SAME", 1.0)
    result = measure_scan(outputs.image, VolumeParams(registration_mm=2.0))
    for name, region in result["regions"].items():
        assert region["ratio"] == pytest.approx(1.0, abs=0.02), name
    cached = json.loads(outputs.volumes.read_text())
    outputs.volumes.write_text(json.dumps({key: value for key, value in cached.items() if key != "method"}))
    assert measure_scan(outputs.image, VolumeParams(registration_mm=2.0))["status"] == "done"


def test_manifest_lists_a_broken_scan_and_measures_the_others(template, tmp_path: Path, capsys,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    good = _fake_preprocessed(template, tmp_path, "sub-OK", 1.0)
    broken = _fake_preprocessed(template, tmp_path, "sub-BAD", 1.0)
    broken.sidecar.unlink()
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"participant_id": ["sub-OK", "sub-BAD"], "session_id": "ses-M00", "diagnosis": "CN",
                  "processed_path": [str(good.image), str(broken.image)], "status": "done"}).to_csv(manifest, index=False)
    out, volumes, failures, cached = measure_manifest(manifest, params=VolumeParams(registration_mm=RESOLUTION),
                                                      progress=False)
    assert out == tmp_path / "volumes.csv" and out.exists() and (tmp_path / "volumes_failures.csv").exists()
    assert cached == 0
    assert list(volumes["participant_id"]) == ["sub-OK"]
    assert volumes.loc[0, "brain_ratio"] == pytest.approx(1.0, abs=0.05)
    assert 0 < volumes.loc[0, "hippocampus_l_per_brain"] < 0.01
    assert list(failures["participant_id"]) == ["sub-BAD"] and "sidecar" in failures.loc[0, "error"]
    assert volumes.loc[0, "template"] == template.name and volumes.loc[0, "template_sha256"] == template.sha256
    _scans_in_this_process(monkeypatch)  # the run above crossed a real worker; the reruns check the tables
    rerun = measure_manifest(manifest, params=VolumeParams(registration_mm=RESOLUTION), progress=False).volumes
    # the command's rerun says its scan came from the cache: "1 scans measured" in a second looked like a measurement
    assert main(["volumes", "--manifest", str(manifest), "--registration-mm", str(RESOLUTION), "--no-progress"]) == 1
    printed = capsys.readouterr()  # exit 1: sub-BAD failed
    assert printed.out.startswith(f"volumes: 1 scans measured (0 now, 1 read from the cache of an earlier run), 1 "
                                  f"failed -> {out}\n") and "2/2 scans" not in printed.err
    assert list(rerun.columns) == list(volumes.columns), "cached results must keep the columns in place"
    assert rerun.loc[0, "template_sha256"] == template.sha256  # from the sidecar, whatever the cache holds
    # and its image's digest, by which the baselines take a re-saved copy of the template for the same one
    assert rerun.loc[0, "template_content_sha256"] == template_file_digests(None, None)["content_sha256"]
    # another cohort's manifest in the same folder: its own CSV; a status in capitals and an empty path, as the
    # manifest loader takes them (the empty one crashed the whole run, the capitals were skipped unsaid); a relative
    # path to nothing, read from the manifest's folder (its error called every processed_path absolute)
    other = tmp_path / "nacc.csv"
    pd.DataFrame({"participant_id": ["sub-OK", "sub-EMPTY", "sub-GONE"], "session_id": "ses-M00", "diagnosis": "CN",
                  "processed_path": [str(good.image), "", "gone/sub-GONE.nii.gz"], "status": [" OK", "Done", "done"]}
                 ).to_csv(other, index=False)
    out, volumes, failures, _ = measure_manifest(other, params=VolumeParams(registration_mm=RESOLUTION), progress=False)
    assert out == tmp_path / "nacc_volumes.csv" and (tmp_path / "nacc_volumes_failures.csv").exists()
    assert list(volumes["participant_id"]) == ["sub-OK"] and len(pd.read_csv(tmp_path / "volumes.csv")) == 1
    assert failures[["participant_id", "error"]].values.tolist() == [
        ["sub-EMPTY", "the manifest row's processed_path is empty"],
        ["sub-GONE", f"FileNotFoundError: {tmp_path / 'gone' / 'sub-GONE.nii.gz'}: processed image missing (moved "
                     "since? point the manifest's processed_path at where it is now: a relative one is read from the "
                     "manifest's folder, an absolute one, as preprocess writes, does not follow a moved folder), or "
                     "rerun `elr-mri preprocess`"]]


def test_a_processed_path_that_is_a_folder_or_a_pipe_is_said_as_such(tmp_path: Path) -> None:
    """Both were "processed image missing" (moved since?), though something is there, as preprocess now says of its
    input scans."""
    folder = tmp_path / "sub-A_T1w.nii.gz"
    folder.mkdir()
    os.mkfifo(tmp_path / "sub-B_T1w.nii.gz")
    fix = "; point the manifest's processed_path at the .nii.gz image `elr-mri preprocess` wrote"
    with pytest.raises(ValueError) as refused:
        measure_scan(folder)
    assert str(refused.value) == f"{folder}: is a folder, not the processed image{fix}"
    with pytest.raises(ValueError) as refused:
        measure_scan(tmp_path / "sub-B_T1w.nii.gz")
    assert str(refused.value) == (f"{tmp_path / 'sub-B_T1w.nii.gz'}: is not a regular file (a named pipe, socket or "
                                  f"device){fix}")


def test_a_processed_scan_damaged_since_preprocessing_is_refused(template, tmp_path: Path) -> None:
    """ITK reads a cut-short gzip without an error, so the sidecar's hash is what catches it."""
    outputs = _fake_preprocessed(template, tmp_path, "sub-CUT", 1.0)
    meta = json.loads(outputs.sidecar.read_text())
    outputs.sidecar.write_text(json.dumps({**meta, "outputs_sha256": output_hashes([outputs.image])}))
    outputs.image.write_bytes(outputs.image.read_bytes()[:5000])
    with pytest.raises(ValueError, match="not the file `elr-mri preprocess` wrote"):
        measure_scan(outputs.image, VolumeParams(registration_mm=RESOLUTION))


def test_recovery_table_correlates_and_orders_by_true_diagnosis() -> None:
    truth = pd.DataFrame({"participant_id": list("abcdef"), "session_id": "s", "true_diagnosis":
                          ["CN", "CN", "MCI", "MCI", "AD", "AD"]})
    simulated = np.array([1.0, 0.95, 0.85, 0.8, 0.7, 0.65])
    volumes = truth[["participant_id", "session_id"]].copy()
    for name in ("hippocampus_l", "hippocampus_r", "entorhinal_l", "entorhinal_r", "ventricle_l", "ventricle_r",
                 "brain"):
        truth[f"volume_ratio_{name}"] = simulated
        volumes[f"{name}_ratio"] = simulated * 0.9 + 0.02
    table = recovery_table(volumes, truth).set_index("region")
    assert table.loc["hippocampus_l", "pearson_r"] == pytest.approx(1.0)
    assert table.loc["hippocampus_l", "measured_AD"] < table.loc["hippocampus_l", "measured_CN"]
    with pytest.raises(ValueError, match="truth.csv"):
        recovery_table(volumes.assign(participant_id="z"), truth)


def test_a_sidecar_without_settings_or_a_syn_scan_without_its_warp_is_one_line(template, tmp_path: Path) -> None:
    """`volumes` goes by the transform the sidecar records: a warp another run left is not taken for this one's."""
    outputs = _fake_preprocessed(template, tmp_path, "sub-ODD", 1.0)
    outputs.sidecar.write_text(json.dumps({"params": {"resolution": RESOLUTION, "spacing": 2}}))
    with pytest.raises(ValueError, match="not a sidecar this `elr-mri preprocess` reads"):
        measure_scan(outputs.image, VolumeParams(registration_mm=RESOLUTION))
    outputs.sidecar.write_text(json.dumps({"params": Params(resolution=RESOLUTION, transform="syn").as_dict()}))
    with pytest.raises(FileNotFoundError, match=r"affine transform or \(--transform syn\) warp is missing"):
        measure_scan(outputs.image, VolumeParams(registration_mm=RESOLUTION))
    outputs.sidecar.write_text('{"params": {"resolution"')  # cut short: there, but no JSON
    with pytest.raises(ValueError, match=r"sub-ODD.*\.json: unreadable \(not the JSON"):
        measure_scan(outputs.image, VolumeParams(registration_mm=RESOLUTION))


@pytest.mark.parametrize("spacing", ["nan", "inf", "0", "-2"])
def test_a_registration_spacing_that_is_no_positive_number_is_one_line(cli_in_process, spacing: str) -> None:
    """`--registration-mm nan` passed the `<= 0` check and failed every scan inside ITK ("Zero-valued spacing")."""
    result = cli_in_process("volumes", "--manifest", "never-read.csv", "--registration-mm", spacing)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"--registration-mm a positive number of mm (got --jobs 1, --registration-mm {float(spacing)})" in \
        result.stderr


def test_a_template_grid_that_cuts_off_a_region_is_refused() -> None:
    """A 64³ grid at 2 mm holds 94% of the brain ellipsoid: brain_mm3, and every `_per_brain` feature with it, came
    out scaled without a word."""
    with pytest.raises(ValueError, match=r"64×64×64 voxels of 2 mm, RAS x -64\.\.64, .*\) cuts off the brain region"):
        region_masks(load_template(None, None, 2.0, (64, 64, 64)).grid)
    assert region_masks(load_template(None, None, 2.0, None).grid)["brain"].sum() > 0  # the default grid holds all


def test_a_template_outside_mni_space_is_named_as_a_cause_of_a_region_cut_off(tmp_path: Path) -> None:
    """A --template stored with its origin at a corner voxel (a study template) cut the hippocampus off its default
    grid, and the refusal told the user to preprocess with the default --shape, which they had."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_template

    mni = load_mni152_template(resolution=2)
    corner = mni.affine.copy()
    corner[:3, 3] = 0.0
    nib.save(nib.Nifti1Image(np.asarray(mni.dataobj), corner), tmp_path / "study_template.nii.gz")
    with pytest.raises(ValueError, match=r"RAS x -1\.\.197, y -1\.\.233, z -1\.\.189 mm\) cuts off the hippocampus_l "
                                         r"region \(an ellipsoid in MNI mm, RAS x -32\.\.-20, .*preprocess on an "
                                         r"MNI-space template"):
        region_masks(load_template(str(tmp_path / "study_template.nii.gz"), None, 2.0, None).grid)


def test_a_cohort_preprocessed_on_a_grid_that_cuts_off_a_region_stops_before_any_scan(tmp_path: Path) -> None:
    """Once, not a failure per scan (each rebuilding the template first: seconds a scan, for a thousand scans)."""
    rows = []
    for participant in ("sub-A", "sub-B"):
        outputs = ScanOutputs.under(tmp_path, participant, "ses-M00")
        outputs.sidecar.parent.mkdir(parents=True)
        outputs.sidecar.write_text(json.dumps({"params": Params(resolution=2.0, shape=(64, 64, 64)).as_dict()}))
        rows.append({"participant_id": participant, "session_id": "ses-M00", "diagnosis": "CN",
                     "processed_path": str(outputs.image), "status": "done"})
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    with pytest.raises(ValueError, match="cuts off the brain region"):
        measure_manifest(manifest, progress=False)
    assert not (tmp_path / "volumes_failures.csv").exists()


def test_scans_registered_to_a_template_of_the_users_warn_that_the_regions_are_mni(tmp_path: Path, caplog,
                                                                                  monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    """A study template in its own frame, whose grid still holds the ellipsoids, measured other anatomy than the
    regions name without a word; nilearn's MNI152 (the default) needs no warning, nor a template whose header codes
    MNI152 space, as preprocess codes its outputs then (it was warned of as any other)."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_template

    template, coded_mni = tmp_path / "study_template.nii.gz", tmp_path / "mni_template.nii.gz"
    _scans_in_this_process(monkeypatch)
    nib.save(load_mni152_template(resolution=2), template)
    mni = nib.load(template)
    mni.set_sform(mni.affine, 4)  # MNI152's code
    mni.set_qform(mni.affine, 4)
    nib.save(mni, coded_mni)
    for name, chosen in (("default", None), ("coded_mni", str(coded_mni)), ("own", str(template))):
        outputs = ScanOutputs.under(tmp_path / name, "sub-A", "ses-M00")
        outputs.sidecar.parent.mkdir(parents=True)
        outputs.sidecar.write_text(json.dumps({"params": Params(resolution=2.0, template=chosen).as_dict()}))
        manifest = tmp_path / name / "manifest.csv"
        pd.DataFrame([{"participant_id": "sub-A", "session_id": "ses-M00", "diagnosis": "CN",
                       "processed_path": str(outputs.image), "status": "done"}]).to_csv(manifest, index=False)
        caplog.clear()
        failures = measure_manifest(manifest, params=VolumeParams(registration_mm=RESOLUTION), progress=False)[2]
        assert "processed image missing" in failures.loc[0, "error"]  # measured as before: only the warning is new
        warned = [record.getMessage() for record in caplog.records if "--template" in record.getMessage()]
        assert warned == ([] if name != "own" else [
            f"{manifest}: its scans were registered to preprocess's --template {template}, not nilearn's MNI152, "
            "and its header codes another space than MNI152 (code 5); the regions are ellipsoids in MNI "
            "mm, so their volumes are of the named structures only if that template is in MNI space"])


def test_a_template_replaced_or_gone_since_preprocessing_is_named_and_a_resaved_copy_is_the_same(template,
                                                                                                tmp_path: Path) -> None:
    """The volumes are measured on the --template read where preprocess read it: one replaced there by another image
    measured the scans against anatomy they were not registered to, under the recorded template's digest, and one gone
    failed with a hint about preprocess's input CSV. A copy re-saved in its place is the same template."""
    from nilearn.datasets import load_mni152_template

    study = tmp_path / "study.nii.gz"
    nib.save(load_mni152_template(resolution=2), study)
    scan = _fake_syn_preprocessed(template, tmp_path, "sub-A", "fast", 1.1)
    params = Params(resolution=RESOLUTION, transform="syn", profile="fast", template=str(study)).as_dict()
    scan.sidecar.write_text(json.dumps({"params": params, "template": {"name": str(study),
                                                                        **template_file_digests(str(study), None)}}))
    image = nib.load(study)
    resaved = nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float64), image.affine, image.header)
    resaved.set_data_dtype(np.float64)
    before = file_sha256(study)
    resaved.to_filename(study)
    assert file_sha256(study) != before
    measured = measure_scan(scan.image, VolumeParams(registration_mm=RESOLUTION), cache_dir=tmp_path / "first")
    assert measured["regions"]["brain"]["ratio"] == pytest.approx(1.1**3, rel=0.03)
    nib.Nifti1Image(np.asarray(image.dataobj) * 1.01, image.affine, image.header).to_filename(study)
    with pytest.raises(ValueError, match=rf"^{scan.sidecar}: its scan was registered to another image than the "
                                         rf"template at {study} now \(replaced since preprocessing\?\)"):
        measure_scan(scan.image, VolumeParams(registration_mm=RESOLUTION), cache_dir=tmp_path / "second")
    study.unlink()
    with pytest.raises(FileNotFoundError, match=rf"^{scan.sidecar}: its scan was registered to preprocess's "
                                                rf"--template {study}, which is not there now"):
        measure_manifest(_manifest(tmp_path, scan), params=VolumeParams(registration_mm=RESOLUTION), progress=False)
    scan.sidecar.write_text(json.dumps({"params": {**params, "template": "study.nii.gz"}}))  # as typed, elsewhere
    with pytest.raises(FileNotFoundError, match=r"; run from the folder preprocess ran in \(a relative path is read"):
        measure_scan(scan.image, VolumeParams(registration_mm=RESOLUTION), cache_dir=tmp_path / "second")


def _fake_syn_preprocessed(template, folder: Path, participant: str, profile: str, scale: float) -> ScanOutputs:
    """A `--transform syn` scan of `profile` whose warp magnifies by `scale` (fast: on the 2 mm template preprocess
    registers to; reference's 1 mm warp is written only where `scale` is None, as an empty file for a cached scan)."""
    outputs = _fake_preprocessed(template, folder, participant, 1.0)
    outputs.sidecar.write_text(json.dumps({"params": Params(resolution=RESOLUTION, transform="syn",
                                                            profile=profile).as_dict()}))
    if scale is None:
        outputs.warp.write_bytes(b"")
    else:
        _scaling_warp(template.coarse, scale, outputs.warp)
    return outputs


def _manifest(folder: Path, *scans: ScanOutputs) -> Path:
    manifest = folder / "manifest.csv"
    pd.DataFrame({"participant_id": [scan.image.parent.parent.name for scan in scans], "session_id": "ses-M00",
                  "diagnosis": "CN", "processed_path": [str(scan.image.relative_to(folder)) for scan in scans],
                  "status": "done"}).to_csv(manifest, index=False)
    return manifest


def _read_only_cohort(template, tmp_path: Path, read_only) -> tuple[Path, ScanOutputs, ScanOutputs]:
    """A read-only preprocessed folder: sub-OLD magnified ×1.1 with its volumes cached beside it, as versions before
    2026-12-06 cached them, and sub-NEW, unmeasured."""
    pre = tmp_path / "pre"
    old = _fake_syn_preprocessed(template, pre, "sub-OLD", "fast", 1.1)
    assert measure_scan(old.image, VolumeParams(registration_mm=RESOLUTION))["status"] == "done"
    assert old.volumes.is_file()
    new = _fake_syn_preprocessed(template, pre, "sub-NEW", "fast", 1.0)
    manifest = _manifest(pre, old, new)
    read_only(pre)
    return manifest, old, new


def test_a_read_only_preprocessed_folder_is_refused_before_any_scan_and_caches_elsewhere(template, tmp_path: Path,
                                                                                         read_only) -> None:
    """Lab storage is often read-only: every scan was registered (minutes each), then failed writing its cache beside
    the scan, and the default --out beside the manifest failed after all of them (2 scans: 23 s for nothing)."""
    manifest, old, new = _read_only_cohort(template, tmp_path, read_only)
    with pytest.raises(PermissionError, match=rf"^{manifest.parent}: cannot write there \((?:Read-only file system|"
                                              r"Permission denied)\), where volumes.csv, its failures and its per-scan "
                                              "cache volumes_cache/ go; pass --out a CSV in a folder you can write"):
        measure_manifest(manifest, params=VolumeParams(registration_mm=RESOLUTION), progress=False)
    cache = tmp_path / "mine" / "adni_cache"
    reused = measure_scan(old.image, VolumeParams(registration_mm=RESOLUTION), cache_dir=cache)
    assert reused["status"] == "skipped" and reused["regions"]["brain"]["ratio"] == pytest.approx(1.1**3, rel=0.02)
    assert measure_scan(new.image, VolumeParams(registration_mm=RESOLUTION), cache_dir=cache)["status"] == "done"
    assert [path.name for path in cache.iterdir()] == [f"sub-NEW_ses-M00_volumes-{file_sha256(new.image)[:16]}.json"]
    assert measure_scan(new.image, VolumeParams(registration_mm=RESOLUTION), cache_dir=cache)["status"] == "skipped"


@pytest.mark.slow  # a worker process for the scans: 15 s here
def test_a_read_only_preprocessed_folder_is_measured_with_the_cache_beside_the_csv(template, tmp_path: Path,
                                                                                   read_only) -> None:
    manifest, _, new = _read_only_cohort(template, tmp_path, read_only)
    out = tmp_path / "mine" / "adni.csv"
    measured = measure_manifest(manifest, out, VolumeParams(registration_mm=RESOLUTION), progress=False)
    assert measured[0] == out and measured[2].empty
    assert measured[1]["brain_ratio"].tolist() == pytest.approx([1.1**3, 1.0], rel=0.02)
    assert sorted(path.name for path in out.parent.rglob("*")) == [
        "adni.csv", "adni_cache", "adni_failures.csv", f"sub-NEW_ses-M00_volumes-{file_sha256(new.image)[:16]}.json"
    ]  # the old scan's: reused


def test_a_run_removes_the_scratch_folder_a_killed_run_left_and_its_own(template, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `elr-mri volumes` killed outright (SIGKILL) left an elr-volumes-* folder in /tmp for good."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    killed, left = _run_holding_scratch(scratch)
    killed.kill()
    killed.wait()
    assert left.is_dir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _scans_in_this_process(monkeypatch)
    cohort = tmp_path / "cohort"
    manifest = _manifest(cohort, _fake_syn_preprocessed(template, cohort, "sub-A", "fast", 1.1))
    assert measure_manifest(manifest, params=VolumeParams(registration_mm=RESOLUTION), progress=False)[2].empty
    assert list(scratch.iterdir()) == []


def test_a_temporary_folder_ants_cannot_take_is_refused_before_any_scan(template, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a TMPDIR holding `[`, `]` or `,` every scan's SyN failed with only "Registration failed with error code
    1". A preprocessed folder whose own path holds them is measured: ANTs reads its files, writes none there."""
    cohort = tmp_path / "adni[2],v2"
    scan = _fake_syn_preprocessed(template, cohort, "sub-A", "fast", 1.1)
    measured = measure_scan(scan.image, VolumeParams(registration_mm=RESOLUTION))
    assert measured["regions"]["brain"]["ratio"] == pytest.approx(1.1**3, rel=0.02)
    manifest = _manifest(cohort, scan)
    unsafe = tmp_path / "scratch[1]"
    unsafe.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(unsafe))
    with pytest.raises(ValueError, match=rf"^temporary folder {re.escape(str(unsafe))}: holds '\[' '\]', which ANTs "
                                         "cannot take in the path .*; set TMPDIR to a folder whose path has none$"):
        measure_manifest(manifest, tmp_path / "again.csv", VolumeParams(registration_mm=RESOLUTION), progress=False)
    assert not (tmp_path / "again_failures.csv").exists()


@pytest.mark.parametrize("exported", ["abc", "99999999999"])
def test_an_exported_seed_ants_cannot_read_is_refused_before_any_scan(template, tmp_path: Path, exported: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """ANTs parses ANTS_RANDOM_SEED at every registration: one it could not read failed each scan with only
    "ValueError: stoi" (past 2^31: "IndexError: stoi"). Refused as preprocess refuses it."""
    manifest = _manifest(tmp_path, _fake_preprocessed(template, tmp_path, "sub-A", 1.0))
    monkeypatch.setenv("ANTS_RANDOM_SEED", exported)
    with pytest.raises(ValueError, match=rf"^ANTS_RANDOM_SEED='{exported}' \(exported\): not a whole number from 1 "
                                         r"to 2147483647, so it cannot seed the registration; export one or unset it "
                                         r"\(`elr-mri volumes` draws nothing from it, but ANTs reads it at each scan\)$"):
        measure_manifest(manifest, params=VolumeParams(registration_mm=RESOLUTION), progress=False)
    assert not (tmp_path / "volumes_failures.csv").exists()


def test_a_blank_exported_seed_is_no_seed_as_for_preprocess(template, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Preprocess takes `export ANTS_RANDOM_SEED=` for none; ANTs failed on it ("ValueError: stoi") in our SyN. Its
    metric samples every voxel, so no seed changes the volumes: this scan measures as with none."""
    scan = _fake_preprocessed(template, tmp_path, "sub-A", 1.1)
    monkeypatch.setenv("ANTS_RANDOM_SEED", " ")
    measured = measure_scan(scan.image, VolumeParams(registration_mm=RESOLUTION))
    assert measured["regions"]["brain"]["ratio"] == pytest.approx(1.1**3, rel=0.05)


def test_two_syn_preprocessings_of_other_profiles_are_told_apart_in_the_warp_column(template, tmp_path: Path) -> None:
    """Both were `warp: preprocess`, so the baselines took a fast cohort (SyN to the 2 mm template) and a reference
    one (to the 1 mm template) for one registration; a cache of that time is named by its profile too."""
    fast = _fake_syn_preprocessed(template, tmp_path / "adni", "sub-A", "fast", 1.0)
    assert measure_scan(fast.image, VolumeParams(registration_mm=RESOLUTION))["warp"] == "preprocess syn (fast profile)"
    reference = _fake_syn_preprocessed(template, tmp_path / "nacc", "sub-B", "reference", None)
    cached = json.loads(fast.volumes.read_text())
    cached.update(warp="preprocess", image_sha256=file_sha256(reference.image))
    reference.volumes.write_text(json.dumps(cached))
    again = measure_scan(reference.image, VolumeParams(registration_mm=RESOLUTION))
    assert again["status"] == "skipped" and again["warp"] == "preprocess syn (reference profile)"
    affine = _fake_preprocessed(template, tmp_path / "ppmi", "sub-C", 1.0)
    assert measure_scan(affine.image, VolumeParams(registration_mm=RESOLUTION))["warp"] == f"syn at {RESOLUTION:g} mm"


def test_one_participant_and_session_in_two_preprocessed_folders_keep_their_own_cached_volumes(template,
                                                                                               tmp_path: Path) -> None:
    """Two cohorts (or pipelines) merged in one manifest may share a participant and session: their caches beside the
    CSV were one file, so each scan's measurement threw the other's away and every rerun registered both again."""
    cache = tmp_path / "volumes_cache"
    scans = {scale: _fake_preprocessed(template, tmp_path / cohort, "sub-A", scale)
             for cohort, scale in (("adni", 1.1), ("nacc", 1.0))}
    measured = {scale: measure_scan(scan.image, VolumeParams(registration_mm=RESOLUTION), cache_dir=cache)
                for scale, scan in scans.items()}
    for scale, scan in scans.items():
        again = measure_scan(scan.image, VolumeParams(registration_mm=RESOLUTION), cache_dir=cache)
        assert again["status"] == "skipped" and again["regions"] == measured[scale]["regions"]
        assert again["regions"]["brain"]["ratio"] == pytest.approx(scale**3, rel=0.03)
    assert len(list(cache.iterdir())) == 2
    # a cache the version before named by participant and session only is still read, when its image hash is the scan's
    (cache / f"sub-A_ses-M00_volumes-{file_sha256(scans[1.1].image)[:16]}.json").rename(cache / "sub-A_ses-M00_volumes.json")
    assert measure_scan(scans[1.1].image, VolumeParams(registration_mm=RESOLUTION), cache_dir=cache) == {
        **measured[1.1], "status": "skipped"}
    assert measure_scan(scans[1.0].image, VolumeParams(registration_mm=RESOLUTION), cache_dir=cache)["status"] == "skipped"


def test_a_cache_the_disk_refuses_stops_the_run_at_the_first_scan(template, tmp_path: Path, read_only) -> None:
    """The disk filled during a run (a tmpfs): every later scan was measured, then listed in the failures as
    "OSError: [Errno 28] No space left on device" at writing its cache, as if the scan were at fault (preprocess stops
    instead). A read-only cache folder refuses the writes here as that disk did (a bind mount: root only)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root; permissions give 'Permission denied', listed per scan")
    first = _fake_preprocessed(template, tmp_path, "sub-1", 1.0)
    second = _fake_preprocessed(template, tmp_path, "sub-2", 1.0)
    manifest = _manifest(tmp_path, first, second)
    read_only(tmp_path / "volumes_cache")
    with pytest.raises(StorageError, match=rf"^\[Errno 30\] Read-only file system \({tmp_path / 'volumes_cache'}/"
                                           r"sub-1_ses-M00_volumes-[0-9a-f]{16}\.json\); write elsewhere"):
        measure_manifest(manifest, params=VolumeParams(registration_mm=RESOLUTION), progress=False)
    assert not (tmp_path / "volumes.csv").exists() and not (tmp_path / "volumes_failures.csv").exists()


def test_caches_measured_before_the_deterministic_setting_stay_valid_and_a_deterministic_one_is_told_apart() -> None:
    """A default run records the settings as before `deterministic` existed, so its caches are read; a deterministic
    run's differ, so it does not read the multi-threaded volumes a default run cached."""
    assert VolumeParams(2.0).as_dict() == {"registration_mm": 2.0, "syn_iterations": [40, 20, 0]}
    assert VolumeParams(2.0, deterministic=True).as_dict() != VolumeParams(2.0).as_dict()


@pytest.mark.slow  # five SyN registrations, three worker processes: 30 s here
@pytest.mark.skipif(usable_cores() < 2, reason="needs 2 usable cores: one job then registers on 2 ITK threads")
def test_deterministic_volumes_are_the_same_at_any_jobs_and_ignore_a_default_runs_cache(template,
                                                                                      tmp_path: Path) -> None:
    """SyN's metric sums in an order set by its ITK threads, cores // --jobs: the same scans at --jobs 1 and 2 moved a
    region by up to 1.4% (three simulated scans, 2 cores). --deterministic registers on one thread, and does not read
    what a default run cached."""
    scans = [_fake_preprocessed(template, tmp_path, participant, scale)
             for participant, scale in (("sub-A", 1.1), ("sub-B", 1.0))]
    manifest = _manifest(tmp_path, *scans)
    deterministic = VolumeParams(registration_mm=RESOLUTION, deterministic=True)
    measure_scan(scans[0].image, VolumeParams(registration_mm=RESOLUTION), cache_dir=tmp_path / "one" / "volumes_cache")
    one_job = measure_manifest(manifest, tmp_path / "one" / "volumes.csv", deterministic, jobs=1, progress=False)[1]
    two_jobs = measure_manifest(manifest, tmp_path / "two" / "volumes.csv", deterministic, jobs=2, progress=False)[1]
    pd.testing.assert_frame_equal(one_job, two_jobs)
