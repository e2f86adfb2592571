"""A holdout cohort preprocessed otherwise than the training cohort (`elr_mri.data.preprocessing`): compared from the
sidecars `elr-mri preprocess` writes beside each scan, where the voxel grid alone cannot tell."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elr_mri.baselines.evaluate import _evaluation_rows
from elr_mri.config import DataConfig, MRIDataConfig, RunConfig
from elr_mri.data.mri import build_mri_data, build_mri_eval_dataset
from elr_mri.data.preprocessing import cohort_preprocessing
from elr_mri.engine.run_records import record_run_data
from elr_mri.evaluation.evaluate import evaluation_set
from preprocess.pipeline import PIPELINE_VERSION, Params, ScanOutputs
from preprocess.sidecar import write_json
from test_mri_data import CLASSES, CROP, SHAPE, write_volume

MNI = {"name": "MNI152-2009 (nilearn)", "sha256": "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6"}


def preprocessed_cohort(folder: Path, prefix: str, participants: int = 3, sidecars: bool = True,
                        version: int = PIPELINE_VERSION, template: dict = MNI, template_path: str | None = None,
                        **params) -> Path:
    """A manifest of scans named and recorded as `elr-mri preprocess` writes them, with `params` in their sidecars and
    `template` as the sidecar records the template (`template_path`: the --template given, None for nilearn's)."""
    rows = []
    for p in range(participants):
        outputs = ScanOutputs.under(folder, f"sub-{prefix}{p:02d}", "ses-M00")
        outputs.image.parent.mkdir(parents=True)
        write_volume(outputs.image, np.random.default_rng(p).random(SHAPE) + p)
        if sidecars:
            write_json(outputs.sidecar, {"params": Params(resolution=2.0, template=template_path, **params).as_dict(), "template": template,
                                         "pipeline_version": version})
        rows.append({"participant_id": f"sub-{prefix}{p:02d}", "session_id": "ses-M00",
                     "path": str(outputs.image), "processed_path": str(outputs.image),
                     "diagnosis": CLASSES[p % 3], "age": 70.0 + p})
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def trained_on(manifest: Path) -> DataConfig:
    return DataConfig(name="mri", val_fraction=0.25, mri=MRIDataConfig(manifest=str(manifest), cache="none",
                                                                        crop_size=CROP, test_fraction=0.25))


def test_a_holdout_normalised_or_masked_otherwise_is_refused_naming_both_settings(tmp_path):
    """On the training grid and in its place, a holdout preprocessed with --normalise zscore --brain-mask was scored
    without a word: min-max scaling its masked, z-scored voxels gives other inputs than the training scans'."""
    cfg = trained_on(preprocessed_cohort(tmp_path / "adni", "A"))
    holdout = preprocessed_cohort(tmp_path / "nacc", "N", normalise="zscore", brain_mask=True)
    with pytest.raises(ValueError, match=rf"{holdout}: its scans were preprocessed with normalise 'zscore', brain_mask "
                                         r"True \(e\.g\. .*sub-N00.*\), the run's training scans with normalise "
                                         r"'minmax', brain_mask False \(e\.g\. .*sub-A00.*\), so the network would score"):
        build_mri_eval_dataset(holdout, cfg, ["other"])


def test_a_holdout_of_a_later_pipeline_with_the_same_settings_is_scored_with_a_warning(tmp_path, caplog):
    cfg = trained_on(preprocessed_cohort(tmp_path / "adni", "A", version=PIPELINE_VERSION - 1))
    with caplog.at_level(logging.WARNING):
        assert len(build_mri_eval_dataset(preprocessed_cohort(tmp_path / "nacc", "N"), cfg, ["other"])[0]) == 3
    assert f"preprocessed with pipeline_version {PIPELINE_VERSION}" in caplog.text
    assert f"the training scans with pipeline_version {PIPELINE_VERSION - 1}" in caplog.text


def test_a_holdout_preprocessed_alike_is_scored_without_a_word(tmp_path, caplog):
    """A --template moved since (another path, the same file) is the same template."""
    def own_template(path: str) -> dict:
        return {"template": {"name": path, "sha256": "ab" * 32}, "template_path": path, "normalise": "zscore"}

    cfg = trained_on(preprocessed_cohort(tmp_path / "adni", "A", **own_template("/lab/t1.nii.gz")))
    with caplog.at_level(logging.WARNING):
        holdout = preprocessed_cohort(tmp_path / "nacc", "N", **own_template("/moved/t1.nii.gz"))
        assert len(build_mri_eval_dataset(holdout, cfg, ["other"])[0]) == 3
    assert caplog.text == ""


def test_holdout_scans_without_a_sidecar_are_scored_with_a_warning_that_they_were_not_compared(tmp_path, caplog):
    """Scans made by another pipeline on the same grid (Clinica's t1-linear, 1 mm MNI) passed every check silently."""
    cfg = trained_on(preprocessed_cohort(tmp_path / "adni", "A"))
    with caplog.at_level(logging.WARNING):
        holdout = preprocessed_cohort(tmp_path / "clinica", "C", sidecars=False)
        assert len(build_mri_eval_dataset(holdout, cfg, ["other"])[0]) == 3
    assert f"{holdout}: 3 of 3 scans have no `elr-mri preprocess` sidecar (e.g. " in caplog.text


def test_a_holdout_registered_to_another_template_file_is_refused(tmp_path):
    """Another template on the same grid and in the same place (a study template in MNI space) passes the grid check."""
    cfg = trained_on(preprocessed_cohort(tmp_path / "adni", "A"))
    holdout = preprocessed_cohort(tmp_path / "nacc", "N", template={"name": "/lab/t1.nii.gz", "sha256": "ab" * 32},
                                  template_path="/lab/t1.nii.gz")
    with pytest.raises(ValueError, match=r"preprocessed with template 'sha256 abababababab' .* the run's training scans "
                                         r"with template 'sha256 421a10e872fd \(nilearn MNI152 2009\)'"):
        build_mri_eval_dataset(holdout, cfg, ["other"])


def test_a_holdout_registered_to_a_re_saved_copy_of_the_template_is_scored_without_a_word(tmp_path, caplog):
    """The template was told by its file's SHA-256: a copy re-saved by nibabel (the same image) was another template,
    and the holdout refused. Sidecars record the image's digest too; a run or holdout from before it has the file's."""
    def made_with(path: str, file_digest: str, content: str | None = "cd" * 32) -> dict:
        template = {"name": path, "sha256": file_digest} | ({"content_sha256": content} if content else {})
        return {"template": template, "template_path": path}

    cfg = trained_on(preprocessed_cohort(tmp_path / "adni", "A", **made_with("/lab/t1.nii.gz", "ab" * 32)))
    with caplog.at_level(logging.WARNING):
        holdout = preprocessed_cohort(tmp_path / "nacc", "N", **made_with("/lab/t1_resaved.nii", "ef" * 32))
        assert len(build_mri_eval_dataset(holdout, cfg, ["other"])[0]) == 3
    assert caplog.text == ""
    older = preprocessed_cohort(tmp_path / "older", "O", **made_with("/lab/t1_resaved.nii", "ef" * 32, content=None))
    with pytest.raises(ValueError, match=r"preprocessed with template 'sha256 efefefefefef' .* training scans with "
                                         r"template 'sha256 abababababab'"):
        build_mri_eval_dataset(older, cfg, ["other"])


@pytest.mark.parametrize("content", [True, False])  # sidecars recording the images' digests, and older ones
def test_a_holdout_registered_to_the_template_with_another_brain_mask_is_refused(tmp_path, content):
    """A --template-mask is part of the template: the same image with another mask masks other voxels."""
    def made_with(mask: str) -> dict:
        template = {"name": "/lab/t1.nii.gz", "sha256": "ab" * 32, "mask_sha256": mask * 32}
        if content:
            template |= {"content_sha256": "cd" * 32, "mask_content_sha256": mask[::-1] * 32}
        return {"template": template, "template_path": "/lab/t1.nii.gz"}

    cfg = trained_on(preprocessed_cohort(tmp_path / "adni", "A", **made_with("12")))
    holdout = preprocessed_cohort(tmp_path / "nacc", "N", **made_with("34"))
    with pytest.raises(ValueError, match=r"preprocessed with template 'sha256 abababababab, mask 343434343434' .* "
                                         r"training scans with template 'sha256 abababababab, mask 121212121212'"):
        build_mri_eval_dataset(holdout, cfg, ["other"])


def test_a_holdout_registered_otherwise_is_refused_and_one_stored_otherwise_warned_of(tmp_path, caplog):
    """--transform syn moves voxels an affine registration leaves (refused); int16 storage rounds them (warned)."""
    cfg = trained_on(preprocessed_cohort(tmp_path / "adni", "A"))
    with pytest.raises(ValueError, match=r"preprocessed with transform 'syn' .* training scans with transform 'affine'"):
        build_mri_eval_dataset(preprocessed_cohort(tmp_path / "syn", "S", transform="syn"), cfg, ["other"])
    with caplog.at_level(logging.WARNING):
        assert len(build_mri_eval_dataset(preprocessed_cohort(tmp_path / "int16", "I", dtype="int16"), cfg,
                                          ["other"])[0]) == 3
    assert "preprocessed with dtype 'int16' (e.g. " in caplog.text
    assert "the training scans with dtype 'float32' (e.g. " in caplog.text


def test_training_scans_without_sidecars_leave_a_holdout_uncompared_and_unwarned(tmp_path, caplog):
    """Training scans made elsewhere record no preprocessing: a holdout's has nothing to be compared with."""
    cfg = trained_on(preprocessed_cohort(tmp_path / "clinica", "C", sidecars=False))
    with caplog.at_level(logging.WARNING):
        for holdout in (preprocessed_cohort(tmp_path / "nacc", "N", brain_mask=True),
                        preprocessed_cohort(tmp_path / "other", "O", sidecars=False)):
            assert len(build_mri_eval_dataset(holdout, cfg, ["other"])[0]) == 3
    assert caplog.text == ""


def test_a_sidecar_whose_params_are_no_record_is_a_scan_without_one(tmp_path, caplog):
    """Such a sidecar cannot say how its scan was made: the scan is scored with the warning for scans without one."""
    cfg = trained_on(preprocessed_cohort(tmp_path / "adni", "A"))
    holdout = preprocessed_cohort(tmp_path / "nacc", "N")
    sidecar = ScanOutputs.under(tmp_path / "nacc", "sub-N01", "ses-M00").sidecar
    write_json(sidecar, {"params": None, "template": MNI, "pipeline_version": PIPELINE_VERSION})
    with caplog.at_level(logging.WARNING):
        assert len(build_mri_eval_dataset(holdout, cfg, ["other"])[0]) == 3
    assert f"{holdout}: 1 of 3 scans have no `elr-mri preprocess` sidecar (e.g. " in caplog.text


def test_a_cohorts_settings_are_kept_once_each_under_the_first_scan_made_so(tmp_path):
    """data_shape.json keeps the distinct settings, not one record a scan: a cohort of one making is one entry."""
    images = pd.read_csv(preprocessed_cohort(tmp_path / "adni", "A"))["processed_path"].tolist()
    masked = pd.read_csv(preprocessed_cohort(tmp_path / "masked", "M", brain_mask=True))["processed_path"].tolist()
    settings = cohort_preprocessing(images + masked)
    assert list(settings) == [images[0], masked[0]]
    assert [made["brain_mask"] for made in settings.values()] == [False, True]


def test_a_run_compares_a_holdout_with_the_preprocessing_it_recorded_after_its_manifest_moved(tmp_path):
    """The training manifest is where the comparison's settings came from; a run archived without it (or whose
    training scans were made anew since) still knows how the scans it trained on were made (data_shape.json)."""
    cfg = recorded_run(tmp_path)
    holdout = preprocessed_cohort(tmp_path / "nacc", "N", brain_mask=True)
    with pytest.raises(ValueError, match=r"preprocessed with brain_mask True .* training scans with brain_mask False"):
        evaluation_set(tmp_path / "run", cfg, holdout)


def test_a_holdout_preprocessed_otherwise_is_scored_with_a_kept_warning_where_the_run_allows_it(tmp_path):
    """A study of the shift other preprocessing makes (a z-scored, masked holdout scored by a min-max-trained network)
    had no way through the refusal, which named none."""
    cfg = recorded_run(tmp_path)
    holdout = preprocessed_cohort(tmp_path / "nacc", "N", brain_mask=True, profile="reference")
    with pytest.raises(ValueError, match=r"or, to measure that shift, set data\.mri\.allow_other_preprocessing: true"):
        evaluation_set(tmp_path / "run", cfg, holdout)
    cfg.data.mri.allow_other_preprocessing = True
    dataset, _, _, warnings = evaluation_set(tmp_path / "run", cfg, holdout)
    assert len(dataset) == 3 and len(warnings) == 1
    assert re.fullmatch(rf"{holdout}: its scans were preprocessed with brain_mask True, profile 'reference' \(e\.g\. "
                        r".*\), the run's training scans with brain_mask False, profile 'fast' \(e\.g\. .*\); scored all "
                        r"the same \(data\.mri\.allow_other_preprocessing\), so the figures measure that shift as "
                        r"well as the network", warnings[0])


def recorded_run(tmp_path: Path) -> RunConfig:
    """A run folder holding what training records of its scans (data_shape.json, splits.csv) in tmp_path/run, its
    training manifest then moved away: the holdout is compared with the run's record alone."""
    cfg = RunConfig(data=trained_on(preprocessed_cohort(tmp_path / "adni", "A", participants=8)))
    (tmp_path / "run").mkdir()
    record_run_data(tmp_path / "run", build_mri_data(cfg.data), record_ages=False)
    (tmp_path / "adni" / "manifest.csv").rename(tmp_path / "adni" / "moved.csv")
    return cfg


def test_baselines_compare_a_holdout_with_the_preprocessing_the_run_recorded(tmp_path):
    """`evaluate --baselines` read the holdout with the participant check alone: a holdout preprocessed with
    --brain-mask was refused for the network and scored for the baselines beside it."""
    cfg = recorded_run(tmp_path)
    holdout = preprocessed_cohort(tmp_path / "nacc", "N", brain_mask=True)
    with pytest.raises(ValueError, match=r"preprocessed with brain_mask True .* training scans with brain_mask False"):
        _evaluation_rows(tmp_path / "run", cfg, pd.DataFrame(), holdout)


def test_a_holdouts_preprocessing_and_qc_warnings_are_kept_for_summary_json_each_time_it_is_scored(tmp_path):
    """They were logged once a process and kept nowhere: a reader of eval-*/summary.json could not see them, nor
    could the baselines' summaries when `evaluate --baselines` had logged them for the network's scoring."""
    cfg = recorded_run(tmp_path)
    holdout = preprocessed_cohort(tmp_path / "clinica", "C", sidecars=False)
    table = pd.read_csv(holdout).assign(qc_flag=[True, False, False], qc_reason=["low NCC", "", ""])
    table.to_csv(holdout, index=False)
    for _ in range(2):
        warnings = evaluation_set(tmp_path / "run", cfg, holdout)[3]
        assert [warning.split(": ")[1] for warning in warnings] == [
            "1 scan(s) flagged by preprocessing QC are used", "3 of 3 scans have no `elr-mri preprocess` sidecar (e.g. "
            f"{tmp_path}/clinica/sub-C00/ses-M00/sub-C00_ses-M00_space-template_T1w.nii.gz), so their normalisation, "
            "brain mask, registration and template are not compared with the training scans'"]
        assert _evaluation_rows(tmp_path / "run", cfg, pd.DataFrame(), holdout)[3] == warnings
