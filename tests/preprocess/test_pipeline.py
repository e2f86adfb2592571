"""A scan moved by a known pose and bias field must land back on the template."""
from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest

from preprocess.batch import QC_COLUMNS
from preprocess.checks import ScanError
from preprocess.pipeline import Params, ScanOutputs, process_scan
from preprocess.sidecar import file_sha256, output_hashes, same_template, stale_reason
from preprocess.template import load_template

FAST_2MM = Params(resolution=2.0)


def is_done(*args, **kwargs) -> bool:
    """A rerun would skip the scan."""
    return stale_reason(*args, **kwargs) is None


@pytest.fixture(scope="module")
def template_result(tmp_path_factory, moved_template):
    outputs = ScanOutputs.under(tmp_path_factory.mktemp("out"), "sub-01", "ses-01")
    return outputs, process_scan(moved_template, outputs, FAST_2MM)


def test_moved_template_lands_back_on_the_template(template_result):
    _, result = template_result
    # The scan *is* the template, moved, biased and interpolated twice at 2 mm: a perfect
    # registration without bias reaches NCC 0.93 (interpolation blur, measured), with N4 0.92;
    # the same scan left with the bias and no N4 mask scores 0.83, a pose off by a few degrees less.
    assert result["status"] == "done"
    assert result["qc"]["qc_ncc"] > 0.9
    assert result["qc"]["qc_input_voxel_mm"] == 2.0  # the 2 mm template's voxels, the input's coarsest edge
    # the pose turned the grid's corners away from the template's: the brain mask, reaching its bottom slice, lost 0.3%
    assert 0.99 <= result["qc"]["qc_brain_coverage"] < 1


def test_brain_coverage_is_the_share_of_the_brain_mask_within_the_scans_field_of_view(tmp_path):
    """A head whose top the scanner cut off is empty there after resampling: the share of the brain mask its field of
    view reaches says so (NCC only reads it as a poorer match: 0.61 for Colin27 without the top 10% of its head)."""
    import ants

    from preprocess.qc import brain_coverage

    template = load_template(None, None, 4.0, None)
    identity = str(tmp_path / "identity.mat")
    ants.write_transform(ants.create_ants_transform(transform_type="AffineTransform", dimension=3), identity)
    brain = template.mask.numpy() > 0
    top = int(np.percentile(np.nonzero(brain)[2], 80))  # voxel index 2 runs upwards (RAS voxel order)
    cut = ants.crop_indices(template.grid, (0, 0, 0), (*template.grid.shape[:2], top))
    assert brain_coverage(cut, template, [identity]) == pytest.approx(brain[:, :, :top].sum() / brain.sum(), abs=1e-4)
    assert brain_coverage(template.grid, template, [identity]) == 1.0


def test_recovered_transform_is_the_inverse_of_the_pose(template_result, pose):
    import ants

    outputs, _ = template_result
    recovered = ants.read_transform(str(outputs.transform))  # template point -> scan point
    # `pose` maps a scan point back to the original (template) point.
    mask = load_template(*FAST_2MM.template_key()).mask
    idx = np.argwhere(mask.numpy() > 0)[::500]
    errors = []
    for i, j, k in idx:
        point = ants.transform_index_to_physical_point(mask, (int(i), int(j), int(k)))
        back = pose.apply_to_point(recovered.apply_to_point(point))
        errors.append(np.linalg.norm(np.subtract(back, point)))
    # Sub-voxel at 2 mm: the brain's points go round trip to within a millimetre on average.
    assert np.mean(errors) < 1.0 and np.max(errors) < 2.5


def test_outputs_are_complete_and_consistent(template_result):
    outputs, result = template_result
    img = nib.load(outputs.image)
    grid = load_template(*FAST_2MM.template_key()).grid
    assert img.shape == grid.shape and img.get_data_dtype() == np.float32
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    np.testing.assert_allclose(np.diag(img.affine)[:3], [2, 2, 2])
    data = img.get_fdata()
    assert 0 <= data.min() and data.max() <= 1 + 1e-6  # percentile clip + min-max
    meta = json.loads(outputs.sidecar.read_text())
    assert meta["params"] == FAST_2MM.as_dict() and len(meta["input_sha256"]) == 64
    assert set(meta["qc"]) == set(QC_COLUMNS) and meta["software"]["antspyx"]
    assert outputs.overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(outputs.image.parent.glob(".tmp*"))


def test_rerun_skips_and_changed_parameters_redo(template_result, moved_template):
    outputs, first = template_result
    again = process_scan(moved_template, outputs, FAST_2MM)
    assert again["status"] == "skipped" and again["qc"] == first["qc"]
    assert first["outputs_sha256"][outputs.image.name] == file_sha256(outputs.image)
    changed = Params(resolution=2.0, normalise="zscore").as_dict()
    assert not is_done(outputs.sidecar, first["input_sha256"], changed, [outputs.image])


def test_settings_spelled_otherwise_skip_and_other_template_choices_redo(tmp_path):
    """A template passed as ./t.nii.gz after /abs/t.nii.gz, or the default grid typed out, redid the whole cohort."""
    output = tmp_path / "scan.nii.gz"
    output.write_bytes(b"written by preprocess")
    recorded = Params(template="/data/t.nii.gz", resolution=1.5)
    sidecar = tmp_path / "scan.json"
    sidecar.write_text(json.dumps({"input_sha256": "abc", "params": recorded.as_dict()}))

    def done(params: Params) -> bool:
        return is_done(sidecar, "abc", params.as_dict(), [output], comparable=Params.comparable)

    assert done(Params(template="./t.nii.gz", resolution=1.5))  # the file's digest is compared beside
    assert done(Params(template="t.nii.gz", resolution=1.5, shape=(121, 145, 121)))  # 1.5 mm's default grid
    assert not done(Params(template="t.nii.gz", resolution=1.5, shape=(120, 145, 121)))
    assert not done(Params(resolution=1.5))  # nilearn's template, with its own mask
    assert not done(Params(template="t.nii.gz", template_mask="m.nii.gz", resolution=1.5))
    assert not is_done(sidecar, "abc", recorded.as_dict() | {"template": "t.nii.gz"}, [output])  # compared as typed
    assert not done(Params(template="t.nii.gz", resolution=1.5, seed=7))  # another registration
    unseeded = {key: value for key, value in recorded.as_dict().items() if key != "seed"}  # before seeds were recorded
    sidecar.write_text(json.dumps({"input_sha256": "abc", "params": unseeded}))
    assert done(Params(template="t.nii.gz", resolution=1.5))  # made with the default seed


def test_an_output_damaged_since_is_redone_not_skipped(tmp_path):
    outputs = [tmp_path / "scan.nii.gz", tmp_path / "scan.mat"]
    for path in outputs:
        path.write_bytes(b"written by preprocess " * 100)
    meta = {"input_sha256": "abc", "params": {"resolution": 2.0}}
    sidecar = tmp_path / "scan.json"
    sidecar.write_text(json.dumps(meta))  # written before outputs were hashed: their existence is enough
    assert is_done(sidecar, "abc", {"resolution": 2.0}, outputs)
    sidecar.write_text(json.dumps({**meta, "outputs_sha256": output_hashes(outputs)}))
    assert is_done(sidecar, "abc", {"resolution": 2.0}, outputs)
    outputs[0].write_bytes(outputs[0].read_bytes()[:500])  # cut short, e.g. by a full disk while copying
    assert not is_done(sidecar, "abc", {"resolution": 2.0}, outputs)


def test_a_scan_stored_with_a_negative_offset_comes_out_as_the_scan_itself(tmp_path, moved_template, template_result):
    """Without the shift the resampling's zero fill beyond the scan was the brightest part of the output."""
    offset = nib.load(moved_template)
    shifted = tmp_path / "offset.nii.gz"
    nib.Nifti1Image(offset.get_fdata(dtype=np.float32) - 1000.0, offset.affine).to_filename(shifted)
    outputs, first = template_result
    offset_outputs = ScanOutputs.under(tmp_path, "sub-offset", "ses-01")
    result = process_scan(shifted, offset_outputs, FAST_2MM)
    plain, moved = (nib.load(path).get_fdata().ravel() for path in (outputs.image, offset_outputs.image))
    assert np.corrcoef(plain, moved)[0, 1] > 0.99
    assert abs(result["qc"]["qc_mask_dice"] - first["qc"]["qc_mask_dice"]) < 0.02


def test_a_template_file_rewritten_under_its_name_redoes_the_scan(tmp_path):
    from preprocess.template import template_file_digests

    template, mask = tmp_path / "template.nii.gz", tmp_path / "mask.nii.gz"
    image = _small_template()
    image.to_filename(template)
    nib.Nifti1Image((image.get_fdata() > 0.5).astype(np.uint8), image.affine).to_filename(mask)
    output = tmp_path / "scan.nii.gz"
    output.write_bytes(b"written by preprocess")
    recorded = template_file_digests(str(template), str(mask))
    sidecar = tmp_path / "scan.json"
    sidecar.write_text(json.dumps({"input_sha256": "abc", "params": {}, "template": {"name": "t", **recorded}}))
    assert is_done(sidecar, "abc", {}, [output], template_file_digests(str(template), str(mask)))
    nib.Nifti1Image(image.get_fdata()[::-1].copy(), image.affine).to_filename(template)  # another image, same name
    assert not is_done(sidecar, "abc", {}, [output], template_file_digests(str(template), str(mask)))


def _small_template() -> nib.Nifti1Image:
    return nib.Nifti1Image(np.random.default_rng(0).random((20, 22, 24), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))


def test_a_template_re_saved_is_the_same_template_and_sidecars_before_content_digests_compare_its_file(tmp_path):
    """Template identity was its file's SHA-256: the same image re-saved by nibabel (measured on nilearn's MNI152:
    another SHA-256, the same voxels and affine), as .nii or stored axes reversed redid every scan of a rerun, kept
    shards from merging and a holdout from being scored."""
    from preprocess.template import template_file_digests

    image = _small_template()
    image.to_filename(tmp_path / "t.nii.gz")
    reverse_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    reverse_x[0, 3] = image.shape[0] - 1
    flipped = nib.Nifti1Image(image.get_fdata()[::-1].copy(), image.affine @ reverse_x)  # stored in the other x order
    for copy in (nib.Nifti1Image(image.dataobj, image.affine, image.header), flipped):
        copy.to_filename(tmp_path / "copy.nii")
        ours, theirs = (template_file_digests(str(tmp_path / name), None) for name in ("t.nii.gz", "copy.nii"))
        assert ours["sha256"] != theirs["sha256"] and ours["content_sha256"] == theirs["content_sha256"]
        assert same_template(ours, theirs)
    nib.Nifti1Image(image.get_fdata() * 1.01, image.affine).to_filename(tmp_path / "brighter.nii")
    assert not same_template(ours, template_file_digests(str(tmp_path / "brighter.nii"), None))
    before = {"name": "t", "sha256": ours["sha256"]}  # recorded before images were digested: the file decides
    assert same_template(before, ours) and not same_template(before, theirs)


def test_outputs_of_another_pipeline_version_or_default_template_are_redone(tmp_path, template_result, moved_template,
                                                                           monkeypatch):
    """Resume compared only the parameters: outputs older code or another nilearn template made were kept."""
    import shutil

    from nilearn.datasets import MNI152_FILE_PATH

    from preprocess import steps
    from preprocess.pipeline import PIPELINE_VERSION
    from preprocess.template import template_file_digests

    done, _ = template_result
    shutil.copytree(done.image.parent, tmp_path / "sub-01" / "ses-01")
    outputs = ScanOutputs.under(tmp_path, "sub-01", "ses-01")
    meta = json.loads(outputs.sidecar.read_text())
    assert meta["pipeline_version"] == PIPELINE_VERSION
    assert template_file_digests(None, None)["sha256"] == file_sha256(MNI152_FILE_PATH) == meta["template"]["sha256"]
    assert process_scan(moved_template, outputs, FAST_2MM)["status"] == "skipped"
    for stale in ({"pipeline_version": PIPELINE_VERSION - 1}, {"template": {"sha256": "another nilearn's"}}):
        outputs.sidecar.write_text(json.dumps({**meta, **stale}))
        assert not is_done(outputs.sidecar, meta["input_sha256"], meta["params"], [outputs.image],
                           template_file_digests(None, None), PIPELINE_VERSION)

    def redoing(*args, **kwargs):  # reaching the registration is redoing the scan; its result is not needed
        raise RuntimeError("redoing the scan")

    monkeypatch.setattr(steps, "register", redoing)
    outputs.sidecar.write_text(json.dumps({**meta, "pipeline_version": 3}))  # coded MNI152 as now: kept
    assert process_scan(moved_template, outputs, FAST_2MM)["status"] == "skipped"
    outputs.sidecar.write_text(json.dumps({**meta, "pipeline_version": 2}))  # made uncapped
    with pytest.raises(RuntimeError, match="redoing the scan"):
        process_scan(moved_template, outputs, FAST_2MM)


@pytest.mark.parametrize(("sform", "qform", "expected"), [
    ("mni", "scanner", 4), ("unknown", "talairach", 3), ("template", "mni", 5),  # the affine nibabel reads: sform's
    ("scanner", "scanner", 5), ("aligned", "unknown", 5)])  # no standard space named: "another template"
def test_a_templates_space_code_is_the_one_its_header_names_or_another_templates(tmp_path, sform, qform, expected):
    from preprocess.template import space_code

    image = nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.float32), np.eye(4))
    image.set_sform(np.eye(4), sform)
    image.set_qform(np.eye(4), qform)
    image.to_filename(tmp_path / "t.nii.gz")
    assert space_code(str(tmp_path / "t.nii.gz")) == expected
    assert space_code(None) == 4  # nilearn's MNI152


def test_outputs_registered_to_a_template_of_ones_own_are_not_coded_mni152(tmp_path, template_2mm, moved_template,
                                                                           monkeypatch):
    """Every output said "MNI152" (qform/sform code 4), whatever --template it was registered to. Scans version 3
    coded MNI152 wrongly are redone; those of a template whose header says MNI152 came out right and are kept."""
    import shutil

    from preprocess import steps
    from preprocess.steps import to_nifti
    from preprocess.template import template_file_digests

    templates = {}
    for name, code in (("study", "scanner"), ("mni", "mni")):  # one image: the 2 mm template, its header coded so
        templates[name] = tmp_path / f"{name}.nii.gz"
        to_nifti(template_2mm, space_code=nib.nifti1.xform_codes[code]).to_filename(templates[name])
    outputs = ScanOutputs.under(tmp_path / "study", "sub-01", "ses-01")
    study = Params(template=str(templates["study"]), resolution=2.0)
    assert process_scan(moved_template, outputs, study)["qc"]["qc_ncc"] > 0.9
    header = nib.load(outputs.image).header
    assert int(header["sform_code"]) == int(header["qform_code"]) == 5  # NIFTI_XFORM_TEMPLATE_OTHER

    def redoing(*args, **kwargs):  # reaching the registration is redoing the scan; its result is not needed
        raise RuntimeError("redoing the scan")

    monkeypatch.setattr(steps, "register", redoing)
    meta = json.loads(outputs.sidecar.read_text())
    assert process_scan(moved_template, outputs, study)["status"] == "skipped"
    outputs.sidecar.write_text(json.dumps({**meta, "pipeline_version": 3}))
    with pytest.raises(RuntimeError, match="redoing the scan"):
        process_scan(moved_template, outputs, study)
    # a version 3 result for the template coded MNI152 (its files are only compared with their hashes on resume)
    shutil.copytree(outputs.image.parent, tmp_path / "mni" / "sub-01" / "ses-01")
    mni = ScanOutputs.under(tmp_path / "mni", "sub-01", "ses-01")
    mni.sidecar.write_text(json.dumps({**meta, "pipeline_version": 3, "template": {
        **meta["template"], **template_file_digests(str(templates["mni"]), None)}}))
    assert process_scan(moved_template, mni, Params(template=str(templates["mni"]), resolution=2.0))["status"] == "skipped"


def test_real_head_lands_on_the_template(tmp_path, moved_colin_2mm):
    result = process_scan(moved_colin_2mm, ScanOutputs.under(tmp_path, "sub-colin", "ses-01"), FAST_2MM)
    # Colin27 is another brain than the population template: unmoved and well registered it
    # reaches NCC ~0.60 in the brain mask (measured); a failed or half-done registration of the
    # moved head falls below 0.45.
    assert result["qc"]["qc_ncc"] > 0.55


@pytest.mark.slow
def test_deterministic_runs_are_identical(tmp_path, moved_template):
    images = []
    for run in ("a", "b"):
        outputs = ScanOutputs.under(tmp_path / run, "sub-01", "ses-01")
        process_scan(moved_template, outputs, Params(resolution=2.0, deterministic=True))
        images.append(nib.load(outputs.image).get_fdata())
    np.testing.assert_array_equal(images[0], images[1])


def test_qc_judges_the_registration_not_the_output_options_and_an_old_warp_goes(tmp_path, moved_template):
    """A brain mask made every head overlap the template's and z-scoring moved the overlap's threshold; a warp an
    earlier `--transform syn` run left was taken by `elr-mri volumes` as this affine run's."""
    plain = process_scan(moved_template, ScanOutputs.under(tmp_path / "a", "sub-01", "ses-01"),
                         Params(resolution=2.0, deterministic=True))
    outputs = ScanOutputs.under(tmp_path / "b", "sub-01", "ses-01")
    outputs.warp.parent.mkdir(parents=True)
    outputs.warp.write_bytes(b"an earlier syn run's warp")
    masked = process_scan(moved_template, outputs,
                          Params(resolution=2.0, deterministic=True, normalise="zscore", brain_mask=True))
    assert masked["qc"] == plain["qc"]
    assert not outputs.warp.exists()
    data = nib.load(outputs.image).get_fdata()
    brain = data[data != 0]  # z-scored over the mask, outside which it is 0 (it was −mean/std, after the mask)
    assert (data == 0).mean() > 0.3 and abs(brain.mean()) < 0.05 and brain.std() == pytest.approx(1, abs=0.05)


@pytest.mark.slow
def test_syn_writes_a_warp_and_fits_at_least_as_well(tmp_path, moved_template, template_result):
    outputs = ScanOutputs.under(tmp_path, "sub-01", "ses-01")
    result = process_scan(moved_template, outputs, Params(resolution=2.0, transform="syn"))
    assert outputs.warp.exists() and outputs.transform.exists()
    assert result["qc"]["qc_ncc"] >= template_result[1]["qc"]["qc_ncc"] - 0.005


@pytest.mark.slow
def test_real_head_at_1mm_matches_the_unmoved_head(tmp_path, colin_path):
    """Colin27 at 1 mm moved by the pose: after preprocessing it scores like the unmoved head."""
    import ants

    from preprocess.synthetic import move_and_bias
    from preprocess.steps import to_nifti

    moved = tmp_path / "moved.nii.gz"
    to_nifti(move_and_bias(ants.image_read(str(colin_path)))).to_filename(moved)
    params = Params(resolution=1.0)
    scores = [process_scan(path, ScanOutputs.under(tmp_path / name, "sub-colin", "ses-01"), params)["qc"]["qc_ncc"]
              for name, path in (("moved", moved), ("unmoved", colin_path))]
    assert scores[0] > scores[1] - 0.01


def test_a_scan_whose_registration_fails_leaves_no_folder_or_temporary_files(tmp_path, moved_template, monkeypatch):
    """ANTs raising mid-registration (its errors are RuntimeErrors): the output root keeps nothing of the scan."""
    from preprocess import steps

    def failing_registration(*args, **kwargs):
        raise RuntimeError("itk::ERROR: registration diverged")

    monkeypatch.setattr(steps, "register", failing_registration)
    outputs = ScanOutputs.under(tmp_path, "sub-01", "ses-01")
    with pytest.raises(RuntimeError, match="diverged"):
        process_scan(moved_template, outputs, FAST_2MM)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "sub-01" / "ses-02").mkdir(parents=True)  # another session done earlier: its folders stay
    with pytest.raises(RuntimeError, match="diverged"):
        process_scan(moved_template, outputs, FAST_2MM)
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == ["sub-01", "sub-01/ses-02"]
    killed = tmp_path / "sub-01" / "ses-01"  # a run killed on this scan left its temporary files: redoing removes them
    (killed / ".tmp-registration-x1").mkdir(parents=True)
    (killed / ".tmp7-sub-01_ses-01_space-template_T1w.nii.gz").write_text("half")
    with pytest.raises(RuntimeError, match="diverged"):
        process_scan(moved_template, outputs, FAST_2MM)
    assert list(killed.iterdir()) == []


def _pair(image: nib.Nifti1Image, path) -> None:
    """`image` as a NIfTI .hdr/.img pair (either half's name), header unchanged: only the image file differs."""
    nib.Nifti1Pair(image.dataobj, image.affine, image.header).to_filename(path)


@pytest.mark.parametrize("name", ["template.hdr", "template.hdr.gz"])
def test_a_template_pair_whose_image_file_changed_has_another_digest(tmp_path, name):
    from preprocess.template import template_file_digests

    head = nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20), np.float32), np.eye(4))
    _pair(head, tmp_path / name)
    header = next(tmp_path.glob("template.hdr*"))
    before, header_bytes = template_file_digests(str(tmp_path / name), None), header.read_bytes()
    _pair(nib.Nifti1Image(np.asanyarray(head.dataobj)[::-1].copy(), head.affine, head.header), tmp_path / name)
    assert header.read_bytes() == header_bytes
    assert template_file_digests(str(tmp_path / name), None) != before


@pytest.mark.slow
def test_a_pair_whose_image_file_changed_is_redone_not_skipped(tmp_path, moved_template):
    """A rerun decides by the input's hash; a pair's header holds no voxel, so it alone missed a rewritten .img."""
    scan, outputs = tmp_path / "scan.hdr", ScanOutputs.under(tmp_path / "out", "sub-01", "ses-01")
    moved = nib.load(moved_template)
    _pair(moved, scan)
    assert process_scan(scan, outputs, FAST_2MM)["status"] == "done"
    assert process_scan(scan, outputs, FAST_2MM)["status"] == "skipped"
    header = scan.read_bytes()
    _pair(nib.Nifti1Image(np.zeros(moved.shape, np.float32), moved.affine, moved.header), scan)
    assert scan.read_bytes() == header
    with pytest.raises(ScanError, match="is empty"):  # read again, not skipped as already done
        process_scan(scan, outputs, FAST_2MM)


def test_one_hot_voxel_moves_neither_the_registration_nor_the_output(tmp_path, moved_template, template_result):
    """A scanner spike or a corrupt voxel (here 1e7 in a head of values up to about 1) must not decide the N4 fit,
    the registration metric or the QC figures: outlying intensities are capped first. Without that, this scan's
    registration failed outright (NCC 0.004), and a 1e7 voxel sent Colin27 55 mm off in an audit (2026-12-05)."""
    moved = nib.load(moved_template)
    data = moved.get_fdata(dtype=np.float32)
    data[tuple(np.array(data.shape) // 3)] = 1e7
    spiked = tmp_path / "spiked.nii.gz"
    nib.Nifti1Image(data, moved.affine).to_filename(spiked)
    outputs, first = template_result
    result = process_scan(spiked, ScanOutputs.under(tmp_path, "sub-spike", "ses-01"), FAST_2MM)
    assert result["qc"]["qc_ncc"] > 0.9 and abs(result["qc"]["qc_mask_dice"] - first["qc"]["qc_mask_dice"]) < 0.02
    plain = nib.load(outputs.image).get_fdata().ravel()
    spiked_out = nib.load(tmp_path / "sub-spike" / "ses-01" / outputs.image.name.replace("sub-01", "sub-spike"))
    assert np.corrcoef(plain, spiked_out.get_fdata().ravel())[0, 1] > 0.99


def test_why_a_finished_scan_is_redone_is_said_in_words(tmp_path):
    """The reason a rerun prints for each scan it does again rather than skipping."""
    output = tmp_path / "scan.nii.gz"
    output.write_bytes(b"written by preprocess")
    sidecar = tmp_path / "scan.json"
    meta = {"input_sha256": "abc", "params": {"normalise": "minmax"}, "pipeline_version": 3,
            "template": {"sha256": "t1"}, "outputs_sha256": output_hashes([output])}
    sidecar.write_text(json.dumps(meta))

    def reason(input_sha256="abc", params=None, template=None, version=3, alike=()):
        return stale_reason(sidecar, input_sha256, params or {"normalise": "minmax"}, [output],
                            template or {"sha256": "t1"}, version, dict, alike)

    assert reason() is None
    assert reason("def") == "its input file changed"
    assert reason(params={"normalise": "zscore"}) == "other settings (normalise: 'minmax' then, 'zscore' now)"
    seeded = stale_reason(sidecar, "abc", {"normalise": "minmax", "seed": 7}, [output], {"sha256": "t1"}, 3,
                          Params.comparable)  # a sidecar from before the seed was recorded: made with the default
    assert seeded == "other settings (seed: 123 then, 7 now)"
    assert reason(version=4) == "other pipeline code (version 3 then, 4 now)"
    assert reason(version=4, alike=(3,)) is None  # version 4 would write these outputs alike
    assert reason(template={"sha256": "t2"}) == "another template image (its SHA-256 changed)"
    output.write_bytes(b"cut")
    assert reason() == "its output scan.nii.gz changed since it was written"
    output.unlink()
    assert reason() == "its output scan.nii.gz is missing"
    sidecar.write_text("{")
    assert reason() == "its sidecar is unreadable"
    sidecar.write_text("[]")  # JSON, but no record: it stopped the scan with "'list' object has no attribute 'get'"
    assert reason() == "its sidecar is unreadable"
    sidecar.unlink()
    assert reason() == ""  # never finished: nothing to say


@pytest.mark.parametrize("settings", [{"seed": 1}, {"seed": 2**31 - 1}, {"resolution": 0.25}, {"resolution": 4.0},
                                      {"resolution": 2.0, "shape": (200, 1, 1)}])  # 400 mm: wide as any head needs
def test_settings_at_the_edges_of_their_ranges_are_taken(settings):
    assert Params(**settings).as_dict()["shape"] == (list(settings["shape"]) if "shape" in settings else None)


@pytest.mark.parametrize(("settings", "message"), [
    ({"seed": 0}, "seed=0: need a whole number from 1 to 2147483647"),
    ({"seed": 2**31}, "seed=2147483648: need a whole number from 1 to 2147483647"),  # antsRegistration's C int
    ({"resolution": 0.24}, "resolution=0.24 mm out of range; use 0.25-4 mm"),
    ({"resolution": 4.01}, "resolution=4.01 mm out of range; use 0.25-4 mm"),
    ({"shape": (10, 10, 10, 10)}, "shape=(10, 10, 10, 10): need 3 voxel counts of at least 1"),
    ({"resolution": 2.0, "shape": (201, 1, 1)}, "spans 402 mm, more than the 400 mm any head needs")])
def test_settings_past_their_ranges_are_refused(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Params(**settings)


def test_a_syn_scan_whose_warp_is_gone_is_redone_not_skipped(tmp_path, moved_template, monkeypatch):
    """The warp is a syn scan's output as much as its affine: `elr-mri volumes` reads both."""
    from preprocess import steps
    from preprocess.pipeline import PIPELINE_VERSION
    from preprocess.sidecar import scan_sha256
    from preprocess.template import template_file_digests

    syn = Params(resolution=2.0, transform="syn")
    outputs = ScanOutputs.under(tmp_path, "sub-01", "ses-01")
    outputs.image.parent.mkdir(parents=True)
    for path in (outputs.image, outputs.transform, outputs.overlay, outputs.warp):
        path.write_bytes(b"written by preprocess")
    outputs.sidecar.write_text(json.dumps({"input_sha256": scan_sha256(moved_template), "params": syn.as_dict(),
                                           "pipeline_version": PIPELINE_VERSION,
                                           "template": template_file_digests(None, None)}))

    def redoing(*args, **kwargs):  # reaching the registration is redoing the scan; its result is not needed
        raise RuntimeError("redoing the scan")

    monkeypatch.setattr(steps, "register", redoing)
    assert process_scan(moved_template, outputs, syn)["status"] == "skipped"
    outputs.warp.unlink()
    with pytest.raises(RuntimeError, match="redoing the scan"):
        process_scan(moved_template, outputs, syn)


def test_a_folder_given_as_a_scan_is_refused_as_one_before_it_is_hashed(tmp_path):
    (tmp_path / "T1").mkdir()
    with pytest.raises(ScanError, match="is a folder, not a NIfTI file"):
        process_scan(tmp_path / "T1", ScanOutputs.under(tmp_path / "out", "sub-01", "ses-01"), FAST_2MM)


def test_the_files_beside_a_processed_image_are_its_scans_and_another_image_is_refused(tmp_path):
    outputs = ScanOutputs.under(tmp_path, "sub-01", "ses-M00")
    assert ScanOutputs.beside(outputs.image) == outputs
    with pytest.raises(ValueError, match="sub-01_T1w.nii.gz: not an `elr-mri preprocess` output"):
        ScanOutputs.beside(tmp_path / "sub-01_T1w.nii.gz")  # a raw scan given where a processed one is wanted
