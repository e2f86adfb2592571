"""A wrong CSV passed as volumes (`evaluate --baselines --volumes`) or as truth (`volumes --truth`) is
refused with one line naming the file, what it lacks and what to pass, not a KeyError. Seconds, no ANTs."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from elr_mri.baselines.evaluate import evaluate_baselines
from elr_mri.baselines.features import read_volumes
from elr_mri.config import config_to_dict, load_config
from elr_mri.engine.selection import selection_rule
from elr_mri.simulate.disease import REGIONS
from elr_mri.volumes.measure import volume_columns
from elr_mri.volumes.recovery import read_truth, recovery_table
from preprocess.sidecar import file_sha256
from preprocess.template import template_file_digests

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, table: dict) -> Path:
    pd.DataFrame(table).to_csv(path, index=False)
    return path


def _volumes_csv(path: Path) -> Path:
    """A volumes.csv as `elr-mri volumes` writes it (the columns the baselines read), ids with leading zeros."""
    return _write(path, {"participant_id": ["001"], "session_id": ["01"], **{c: [0.01] for c in volume_columns()}})


def test_a_missing_volumes_csv_names_the_file_and_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'nope.csv'}: file not found; pass the volumes.csv "):
        read_volumes([_volumes_csv(tmp_path / "volumes.csv"), tmp_path / "nope.csv"])


def test_a_volumes_csv_without_the_volume_columns_names_the_file_and_what_it_lacks(tmp_path: Path) -> None:
    good = _volumes_csv(tmp_path / "volumes.csv")
    junk = _write(tmp_path / "junk.csv", {"a": [1], "b": [2]})
    with pytest.raises(ValueError) as caught:
        read_volumes([good, junk])
    message = str(caught.value)
    assert message.startswith(f"{junk}: missing column(s) participant_id, session_id, hippocampus_l_per_brain")
    assert f"and {len(volume_columns()) - 2} more" in message and "`elr-mri volumes" in message
    assert str(good) not in message and "\n" not in message
    read = read_volumes([good])
    assert read.loc[0, "participant_id"] == "001" and read.loc[0, "session_id"] == "01"  # ids stay text


def test_a_scan_with_other_volumes_in_two_csvs_is_refused_naming_both(tmp_path: Path) -> None:
    """The later CSV's rows replaced the earlier ones silently: two cohorts with the same ids, or a stale CSV."""
    first = _volumes_csv(tmp_path / "adni.csv")
    again = _volumes_csv(tmp_path / "again.csv")  # the same rows passed twice: one scan, no clash
    assert len(read_volumes([first, again])) == 1
    other = _write(tmp_path / "other.csv", {"participant_id": ["001"], "session_id": ["01"],
                                             **{c: [0.02] for c in volume_columns()}})
    with pytest.raises(ValueError, match=rf"^scan 001 01 has other regional volumes in {other} than in {first} "):
        read_volumes([first, other])


def test_volumes_measured_by_other_registrations_are_refused(tmp_path: Path) -> None:
    """3 mm against 2 mm moved the hippocampus 8%: a baseline across them measured the registrations."""
    def measured(name: str, participant: str, warp: str) -> Path:
        return _write(tmp_path / name, {"participant_id": [participant], "session_id": ["01"], "warp": [warp],
                                         **{c: [0.01] for c in volume_columns()}})

    adni, nacc = measured("adni.csv", "001", "syn at 2 mm"), measured("nacc.csv", "101", "syn at 2 mm")
    assert len(read_volumes([adni, nacc])) == 2
    coarse = measured("nacc3.csv", "101", "syn at 3 mm")
    with pytest.raises(ValueError, match=rf"^the --volumes CSVs were measured by other registrations: syn at 2 mm "
                                         rf"\({adni}\), syn at 3 mm \({coarse}\); measure every cohort"):
        read_volumes([adni, coarse])


def test_volumes_of_scans_registered_to_other_templates_are_refused(tmp_path: Path) -> None:
    """Every volume is a ratio to the template's anatomy, and `warp` said "syn at 2 mm" whatever the template: a
    holdout preprocessed onto another --template on the same grid (the CNN's check compares grids only) was
    scored by a baseline fitted on volumes relative to another brain, without a word."""
    def measured(name: str, participant: str, template: str, sha256: str) -> Path:
        return _write(tmp_path / name, {"participant_id": [participant], "session_id": ["01"], "warp": ["syn at 2 mm"],
                                         "template": [template], "template_sha256": [sha256],
                                         **{c: [0.01] for c in volume_columns()}})

    adni = measured("adni.csv", "001", "/lab/study.nii.gz", "ab" * 32)
    assert len(read_volumes([adni, measured("nacc.csv", "101", "/mnt/study.nii.gz", "ab" * 32)])) == 2  # one file
    colin = measured("ppmi.csv", "201", "/lab/colin27.nii.gz", "cd" * 32)
    with pytest.raises(ValueError, match=rf"^the --volumes CSVs were of scans registered to other templates: "
                                         rf"/lab/study.nii.gz \(SHA-256 abababababab\) \({adni}\), /lab/colin27.nii.gz "
                                         rf"\(SHA-256 cdcdcdcdcdcd\) \({colin}\); preprocess every cohort with one "):
        read_volumes([adni, colin])
    older = _write(tmp_path / "older.csv", {"participant_id": ["301"], "session_id": ["01"], "warp": ["syn at 2 mm"],
                                            **{c: [0.01] for c in volume_columns()}})  # another template? method?
    with pytest.raises(ValueError, match=rf"^{older}: no template_sha256, unlike the other --volumes CSVs "):
        read_volumes([adni, older])


def test_volumes_of_a_resaved_copy_of_the_template_are_of_one_template_and_another_image_is_refused(tmp_path: Path
                                                                                                  ) -> None:
    """Preprocess tells a template by its image: a copy nibabel re-saved (other bytes, the same voxels) preprocesses
    a cohort as the original does, but the volumes carried the file's SHA-256 alone, so the baselines refused such a
    cohort as "registered to other templates". The digests are the ones preprocess records of each file. A CSV from
    before (measured from sidecars with the file's digest alone) still counts by the file, as it did."""
    study, copy, other = tmp_path / "study.nii.gz", tmp_path / "copy.nii", tmp_path / "other.nii.gz"
    voxels = np.random.default_rng(0).random((16, 17, 18), dtype=np.float32)
    nib.Nifti1Image(voxels, np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(study)
    nib.save(nib.load(study), copy)
    nib.Nifti1Image(voxels * 1.01, np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(other)

    def measured(name: str, participant: str, template: Path, content: bool = True) -> Path:
        digests = template_file_digests(str(template), None)
        return _write(tmp_path / name, {
            "participant_id": [participant], "session_id": ["01"], "warp": ["syn at 2 mm"], "template": [str(template)],
            "template_sha256": [digests["sha256"]], **{c: [0.01] for c in volume_columns()},
            **({"template_content_sha256": [digests["content_sha256"]]} if content else {})})

    adni, nacc = measured("adni.csv", "001", study), measured("nacc.csv", "101", copy)
    assert file_sha256(study) != file_sha256(copy) and len(read_volumes([adni, nacc])) == 2
    older = measured("older.csv", "201", study, content=False)
    assert len(read_volumes([adni, older])) == 2
    with pytest.raises(ValueError, match=rf"^the --volumes CSVs were of scans registered to other templates: "
                                         rf"{copy} \(SHA-256 {file_sha256(copy)[:12]}\) \({nacc}\), {study} "):
        read_volumes([nacc, older])  # older's image unknown: its file is another
    ppmi = measured("ppmi.csv", "301", other)
    with pytest.raises(ValueError, match=rf"^the --volumes CSVs were of scans registered to other templates: "
                                         rf"{study} .*\({adni}\), {other} .*\({ppmi}\); preprocess every cohort "):
        read_volumes([adni, ppmi])


def test_an_empty_volumes_file_is_named_too(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=f"^{empty}: cannot be read as a CSV table"):
        read_volumes([empty])


def test_baselines_refuse_a_wrong_volumes_csv_before_reading_the_cohort(tmp_path: Path) -> None:
    """The run's manifest does not exist: reaching it would be another error, so the CSV is checked first."""
    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config(ROOT / "configs" / "adni" / "cpu_small.yaml", [f"data.mri.manifest={tmp_path / 'none.csv'}"])
    (run / "config.yaml").write_text(yaml.safe_dump({**config_to_dict(cfg), "selection_rule": selection_rule(cfg)},
                                                   sort_keys=False))
    junk = _write(tmp_path / "junk.csv", {"participant_id": ["001"], "session_id": ["01"]})
    with pytest.raises(ValueError, match=f"^{junk}: missing column\\(s\\) hippocampus_l_per_brain"):
        evaluate_baselines(run, [junk])


def _truth(participants: list[str]) -> pd.DataFrame:
    ratios = {f"volume_ratio_{r.name}": np.linspace(0.8, 1.0, len(participants)) for r in REGIONS}
    return pd.DataFrame({"participant_id": participants, "session_id": "ses-M00",
                         "true_diagnosis": ["CN", "MCI", "AD"] * (len(participants) // 3), **ratios})


def test_a_truth_csv_of_another_kind_names_the_file_and_the_simulator(tmp_path: Path) -> None:
    manifest = _write(tmp_path / "manifest.csv", {"participant_id": ["001"], "session_id": ["ses-M00"],
                                                  "diagnosis": ["AD"]})
    with pytest.raises(ValueError) as caught:
        read_truth(manifest)
    assert str(caught.value).startswith(f"{manifest}: missing column(s) true_diagnosis, volume_ratio_")
    assert "`elr-mri simulate-cohort`" in str(caught.value)
    truth = _truth(["001", "002", "003"])
    truth.to_csv(tmp_path / "truth.csv", index=False)
    assert read_truth(tmp_path / "truth.csv")["participant_id"].tolist() == ["001", "002", "003"]


def test_recovery_table_refuses_a_truth_table_without_its_columns() -> None:
    truth = _truth(["a", "b", "c"])
    volumes = truth[["participant_id", "session_id"]].assign(**{f"{r.name}_ratio": 1.0 for r in REGIONS})
    assert len(recovery_table(volumes, truth)) == len(REGIONS)
    with pytest.raises(ValueError, match="--truth CSV: missing column\\(s\\) true_diagnosis; pass the truth.csv"):
        recovery_table(volumes, truth.drop(columns="true_diagnosis"))
    with pytest.raises(ValueError, match=r"^1 of the 3 measured scans have no row in truth.csv \(e.g. c "):
        recovery_table(volumes, truth.iloc[:2])  # another cohort's truth, whose ids coincide in part


def test_a_volumes_run_that_measures_nothing_keeps_the_earlier_csv(tmp_path: Path) -> None:
    """Scans moved or a drive unmounted: every scan fails, and the volumes an earlier run measured stay."""
    from elr_mri.volumes.measure import measure_manifest

    manifest = _write(tmp_path / "manifest.csv", {"participant_id": ["001"], "session_id": ["01"],
                                                   "processed_path": ["moved.nii.gz"], "status": ["ok"]})
    earlier = _volumes_csv(tmp_path / "volumes.csv").read_text()
    out, volumes, failures, _ = measure_manifest(manifest, progress=False)
    assert (len(volumes), len(failures)) == (0, 1) and out.read_text() == earlier
    assert (tmp_path / "volumes_failures.csv").is_file()
    with pytest.raises(IsADirectoryError, match=f"--out {tmp_path} is a folder; pass the CSV to write"):
        measure_manifest(manifest, tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="--manifest .*nope.csv: no such file"):
        measure_manifest(tmp_path / "nope.csv", progress=False)
    failed = _write(tmp_path / "failed.csv", {"participant_id": ["001"], "session_id": ["01"],
                                              "processed_path": ["x.nii.gz"], "status": ["failed"]})
    with pytest.raises(ValueError, match="failed.csv: no scan to measure"):  # nothing measured, nothing replaced
        measure_manifest(failed, progress=False)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty.csv: cannot be read as a CSV table"):
        measure_manifest(tmp_path / "empty.csv", progress=False)


def test_volumes_never_write_over_the_manifest_or_preprocess_s_files(tmp_path: Path) -> None:
    """`--out pre/manifest.csv` replaced preprocess's manifest with the volumes table, without a word."""
    from elr_mri.volumes.measure import measure_manifest

    manifest = _write(tmp_path / "manifest.csv", {"participant_id": ["001"], "session_id": ["01"],
                                                   "processed_path": ["moved.nii.gz"], "status": ["ok"]})
    kept = manifest.read_text()
    for out, written in ((manifest, "manifest.csv"), (tmp_path / "failures.csv", "failures.csv")):
        with pytest.raises(ValueError, match=f"--out {out} would write {written} over {tmp_path / written}, which the "
                                             "command reads or preprocess wrote; name a new file, e.g. "):
            measure_manifest(manifest, out, progress=False)
    assert manifest.read_text() == kept and not (tmp_path / "manifest_failures.csv").exists()


def test_rows_a_manifest_marks_as_not_usable_are_listed_as_not_measured(tmp_path: Path, caplog, capsys) -> None:
    """A row of status failed was skipped unsaid: 2 of 3 rows counted, the third in neither table; a scan QC flagged
    was measured without the warning training gives. The progress counts the rows not measured as failed, as the
    failures table lists them (it said '1/1 scans, 1 failed')."""
    from elr_mri.volumes.measure import measure_manifest

    manifest = _write(tmp_path / "cohort.csv", {"participant_id": ["001", "002", "003"], "session_id": ["01"] * 3,
                                                 "processed_path": ["moved.nii.gz", "x.nii.gz", "y.nii.gz"],
                                                 "status": ["ok", "failed", ""], "qc_flag": [True, False, False],
                                                 "qc_reason": ["NCC 0.312 < 0.45", "", ""]})
    _, volumes, failures, _ = measure_manifest(manifest)
    assert "volumes: 3/3 scans, 3 failed; all done" in capsys.readouterr().err  # stderr is no terminal here: lines
    assert "1 scan(s) flagged by preprocessing QC are used: 001/01 (NCC 0.312 < 0.45)" in caplog.text
    assert len(volumes) == 0 and failures["participant_id"].tolist() == ["002", "003", "001"]
    assert failures["error"][0] == "not measured: its status in cohort.csv is 'failed'"
    assert failures["error"][1] == "not measured: its status in cohort.csv is empty"  # a blank cell read `is nan`
    assert "moved since? point the manifest's processed_path at where it is now" in failures["error"][2]


def test_readme_names_every_region_column_of_the_volumes_csv() -> None:
    """The README listed the suffixes (`_mm3`, `_ratio`, `_per_brain`) but no region, so a user selecting the
    hippocampus had to open the CSV to learn it is `hippocampus_l` and `hippocampus_r`, and which side `_l` is."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Regional volumes and linear baselines"):]
    section = section[:section.index("\n- **Baselines**")]
    assert [region.name for region in REGIONS if f"`{region.name}`" not in section] == []
    assert "left hemisphere" in section and "`participant_id`, `session_id`" in section


def test_each_measured_scan_gives_every_region_but_the_brain_as_a_fraction_of_the_brain() -> None:
    """As the README lists the columns: each region's `_mm3`, `_ratio` and `_per_brain` (fraction of the whole brain;
    not for `brain`, always 1); a failed scan is a row of the failure list, not of the volumes."""
    from elr_mri.volumes.measure import _tables

    names = [region.name for region in REGIONS]
    regions = {name: {"mm3": 1000.0 * (i + 1), "ratio": 0.9} for i, name in enumerate(names)}
    regions["brain"]["mm3"] = 1_250_000.0
    table = pd.DataFrame({"participant_id": ["001", "002"], "session_id": ["01", "01"], "processed_path": ["a", "b"]})
    volumes, failures = _tables(table, {0: {"status": "done", "regions": regions},
                                        1: {"status": "failed", "error": "ValueError: damaged"}})
    assert volumes["participant_id"].tolist() == ["001"] and failures["participant_id"].tolist() == ["002"]
    assert [c for c in volumes.columns if c.endswith("_per_brain")] == [f"{n}_per_brain" for n in names if n != "brain"]
    assert volumes.at[0, "hippocampus_l_per_brain"] == pytest.approx(1000.0 / 1_250_000.0)
    assert volumes.at[0, "brain_mm3"] == 1_250_000.0 and volumes.at[0, "brain_ratio"] == 0.9


def test_recovery_table_gives_pearson_r_and_each_diagnosis_mean_of_both_ratios_and_no_r_for_a_constant_one() -> None:
    """r of (1, 2, 3, 4) against (1, 3, 2, 4) is 4 / sqrt(5 * 5) = 0.8; a ratio the same in every scan has no r
    (nan), said without numpy's divide warning; a diagnosis no scan truly has, nan means."""
    truth = _truth(["a", "b", "c", "d", "e", "f"]).iloc[:4].assign(true_diagnosis=["CN", "CN", "AD", "AD"])
    truth = truth.assign(**{f"volume_ratio_{r.name}": [1.0, 3.0, 2.0, 4.0] for r in REGIONS}).assign(
        volume_ratio_brain=0.9)
    volumes = truth[["participant_id", "session_id"]].assign(**{f"{r.name}_ratio": [1.0, 2.0, 3.0, 4.0]
                                                                for r in REGIONS})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = recovery_table(volumes, truth).set_index("region")
    hippocampus = table.loc["hippocampus_l"]
    assert hippocampus["pearson_r"] == pytest.approx(0.8) and np.isnan(table.loc["brain", "pearson_r"])
    assert (hippocampus["measured_CN"], hippocampus["simulated_CN"]) == (1.5, 2.0)
    assert (hippocampus["measured_AD"], hippocampus["simulated_AD"]) == (3.5, 3.0)
    assert np.isnan(hippocampus["measured_MCI"]) and np.isnan(hippocampus["simulated_MCI"])
