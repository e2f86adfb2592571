"""Batch behaviour: failures isolated and listed, reruns skip, a killed run resumes, shards merge."""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from preprocess.cli import main, merge_main
from preprocess.inputs import InputError, read_csv_table, read_inputs, select_shard
from preprocess.pipeline import PIPELINE_VERSION
from preprocess.sidecar import file_sha256

FAST = ["--resolution", "2", "--no-progress"]
BAD_SCANS = {  # participant -> (writer, words its error must contain)
    "sub-corrupt": (lambda p: p.write_bytes(gzip.compress(b"garbage")), "cannot be read as NIfTI"),
    "sub-empty": (lambda p: _nifti(np.zeros((40, 40, 40)), p), "is empty"),
    "sub-flat": (lambda p: _nifti(np.ones((40, 40)), p), "expected a 3D volume"),
    "sub-nan": (lambda p: _nifti(np.full((40, 40, 40), np.nan), p), "NaN/inf"),
}


def _nifti(data, path):
    nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4)).to_filename(path)


def _csv(tmp_path: Path, scans: dict[str, Path | str]) -> Path:
    rows = [{"participant_id": pid, "session_id": "ses-M00", "path": str(path), "diagnosis": "CN", "age": 71.5}
            for pid, path in scans.items()]
    out = tmp_path / "scans.csv"
    pd.DataFrame(rows).to_csv(out, index=False)
    return out


def _absent_scans(folder: Path, *participants: str) -> dict[str, Path]:
    """Listed scans that are not on disk: a run fails them as it starts, spawning no worker, so the shard and lock
    tests finish at once (an unreadable file is failed in a worker, about 2 s of CPU for each run)."""
    return {pid: folder / f"{pid}.nii.gz" for pid in participants}


@pytest.fixture(scope="module")
def good_scans(tmp_path_factory, moved_template) -> dict[str, Path]:
    """One image under two ids, saved once as .nii.gz and once as .nii: two files, one image."""
    folder = tmp_path_factory.mktemp("good")
    image = nib.load(moved_template)
    nib.Nifti1Image(image.get_fdata(dtype=np.float32), image.affine, image.header).to_filename(folder / "scan2.nii")
    return {"sub-01": shutil.copy(moved_template, folder / "scan1.nii.gz"), "sub-02": folder / "scan2.nii"}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, good_scans):
    folder = tmp_path_factory.mktemp("mixed")
    scans = dict(good_scans)
    for pid, (write, _) in BAD_SCANS.items():
        write(folder / f"{pid}.nii.gz")
        scans[pid] = folder / f"{pid}.nii.gz"
    (folder / "dicom").mkdir()
    (folder / "dicom" / "IM0001.dcm").write_bytes(b"DICM")
    scans["sub-dicom"] = folder / "dicom"
    scans["sub-blank"] = ""  # a row whose path cell was left empty
    out = folder / "out"
    code = main(["--input", str(_csv(folder, scans)), "--output", str(out), "--jobs", "2", *FAST])
    return folder, scans, out, code


def test_bad_scans_fail_alone_with_their_own_reason(mixed_run, good_scans):
    _, _, out, code = mixed_run
    assert code == 1
    failures = pd.read_csv(out / "failures.csv")
    reasons = dict(zip(failures.participant_id, failures.error))
    expected = {pid: words for pid, (_, words) in BAD_SCANS.items()} | {"sub-dicom": "DICOM", "sub-blank": "`path` cell is empty"}
    assert set(reasons) == set(expected)
    for pid, words in expected.items():
        assert words in reasons[pid], reasons[pid]
    manifest = pd.read_csv(out / "manifest.csv", dtype={"participant_id": str})
    assert list(manifest.participant_id) == sorted(good_scans)
    assert {"participant_id", "session_id", "path", "diagnosis", "age", "processed_path", "input_sha256", "qc_ncc",
            "qc_mi", "qc_mask_dice", "qc_flag", "status"} <= set(manifest.columns)
    assert list(manifest.columns)[-3:] == ["qc_flag", "qc_reason", "status"]
    assert (manifest.status == "done").all()
    # the two good scans hold one image in two files: the image under two ids is flagged (QC figures flag neither)
    assert manifest.input_sha256.tolist() == [file_sha256(good_scans[pid]) for pid in manifest.participant_id]
    assert manifest.input_voxels_sha256.nunique() == 1 and manifest.input_sha256.nunique() == 2
    assert manifest.qc_reason.tolist() == ["same image as sub-02/ses-M00", "same image as sub-01/ses-M00"]
    assert all(Path(p).exists() for p in manifest.processed_path)


def test_a_listed_scan_that_is_not_there_fails_without_a_worker_and_the_others_run(tmp_path, monkeypatch, capsys):
    """A missing file (or a DataLad link not fetched) started a worker process only to say so; it is found when the
    batch starts, fails alone with the checks' message, and the others still go to the workers. The progress counts
    it too: its last line said "1/1 scans, 1 failed" where the summary said 3 failed."""
    import preprocess.batch

    given = []

    def recording(work, arguments, *rest, **named):
        given.extend(arguments)
        return run_per_scan(work, arguments, *rest, **named)

    run_per_scan = preprocess.batch.run_per_scan
    monkeypatch.setattr(preprocess.batch, "run_per_scan", recording)
    BAD_SCANS["sub-corrupt"][0](tmp_path / "corrupt.nii.gz")
    (tmp_path / "unfetched.nii.gz").symlink_to(".git/annex/objects/x")
    scans = {"sub-a": tmp_path / "gone.nii.gz", "sub-b": tmp_path / "corrupt.nii.gz",
             "sub-c": tmp_path / "unfetched.nii.gz"}
    assert main(["--input", str(_csv(tmp_path, scans)), "--output", str(tmp_path / "out"), "--resolution", "2"]) == 1
    assert given == [1]  # the corrupt scan's row alone
    assert "preprocess: 3/3 scans, 3 failed; all done" in capsys.readouterr().err
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert failures.participant_id.tolist() == ["sub-a", "sub-b", "sub-c"]
    assert failures.error[0] == (f"{scans['sub-a']}: file not found; check the `path` column (relative paths are "
                                 "resolved against the input CSV's folder)")
    assert "cannot be read as NIfTI" in failures.error[1]
    assert failures.error[2].startswith(f"{scans['sub-c']}: is a link to .git/annex/objects/x, which does not exist")


def test_more_jobs_than_the_memory_holds_are_noted_before_the_batch(tmp_path, monkeypatch, capsys):
    """A job peaks at about 1.4 GB on a raw scan's 256×256×176 grid (1.0 GB on Colin27's 181×217×181, the figure the
    note gave, so 2 jobs were let through where 2.5 GB was free): --jobs 8 where 4 GB is free would have the OOM
    killer end workers, whose scans run again one at a time, the batch slowed without a word of why."""
    import preprocess.cli

    monkeypatch.setattr(preprocess.cli, "available_memory", lambda: int(2.5e9))
    scans = _csv(tmp_path, {"sub-a": tmp_path / "gone.nii.gz", "sub-b": tmp_path / "gone-too.nii.gz"})
    assert main(["--input", str(scans), "--output", str(tmp_path / "out"), "--jobs", "4", *FAST]) == 1
    assert ("note: --jobs 2: a job peaks at about 1.4 GB (measured on a 256×256×176 1 mm head), so 2 need about 2.8 GB "
            "but 2.5 GB of memory is available; workers the OOM killer ends have their scans run again one at a time; "
            "--jobs 1 fits") in capsys.readouterr().err  # two scans start two workers, whatever --jobs
    assert main(["--input", str(scans), "--output", str(tmp_path / "out"), "--jobs", "1", *FAST]) == 1
    assert "note: --jobs" not in capsys.readouterr().err


def test_jobs_whose_peaks_just_fit_the_memory_are_not_noted_and_the_note_never_offers_fewer_than_one(capsys):
    from preprocess.cli import JOB_PEAK_BYTES, note_memory_for_jobs

    note_memory_for_jobs(3, int(3 * JOB_PEAK_BYTES))
    assert capsys.readouterr().err == ""
    note_memory_for_jobs(3, int(3 * JOB_PEAK_BYTES) - 1)
    assert capsys.readouterr().err.endswith("; --jobs 2 fits\n")
    note_memory_for_jobs(2, int(JOB_PEAK_BYTES / 2))  # one job still runs, on swap or until the OOM killer
    assert capsys.readouterr().err.endswith("; --jobs 1 fits\n")


def test_rerun_skips_finished_scans(mixed_run, capsys, tmp_path):
    folder, _, shared_out, _ = mixed_run
    out = shutil.copytree(shared_out, tmp_path / "out")  # the other tests read the first run's outputs
    # what a run killed on a finished scan (with other settings) or while writing the manifest leaves
    left = [out / "sub-01" / "ses-M00" / ".tmp-registration-x1", out / "sub-01" / "ses-M00" / ".tmp7-sub-01.nii.gz",
            out / ".tmp7-manifest.csv"]
    left[0].mkdir()
    for path in left[1:]:
        path.write_text("half")
    code = main(["--input", str(folder / "scans.csv"), "--output", str(out), *FAST])
    assert code == 1  # the bad scans still fail
    assert not any(path.exists() for path in left)
    manifest = pd.read_csv(out / "manifest.csv")
    assert (manifest.status == "skipped").all() and len(manifest) == 2
    out = capsys.readouterr().out
    assert "2 skipped" in out and "  sub-01/ses-M00: same image as sub-02/ses-M00 - " in out


def test_a_rerun_says_why_it_redoes_finished_scans(mixed_run, capsys, tmp_path):
    """A changed option (or a new nilearn, or a damaged output) redid scans for hours with only a count to show."""
    folder, _, shared_out, _ = mixed_run
    out = shutil.copytree(shared_out, tmp_path / "out")
    sidecar = out / "sub-01" / "ses-M00" / "sub-01_ses-M00_space-template_T1w.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "params": {**meta["params"], "normalise": "zscore"}}))
    capsys.readouterr()
    main(["--input", str(folder / "scans.csv"), "--output", str(out), *FAST])
    printed = capsys.readouterr().out
    assert "preprocess: 1 processed, 1 skipped (already done)" in printed
    assert [line for line in printed.splitlines() if "redone" in line] == [  # none for the skipped or failed scans
        "  1 of them redone, not skipped: other settings (normalise: 'zscore' then, 'minmax' now) "
        "(e.g. sub-01/ses-M00)"]
    assert printed.splitlines()[-1] == f"manifest: {out / 'manifest.csv'}"  # the file the next step reads


def test_shards_cover_every_scan_once_and_merge(mixed_run, tmp_path, capsys):
    folder, scans, shared_out, _ = mixed_run
    out = shutil.copytree(shared_out, tmp_path / "out space")
    table = read_inputs(folder / "scans.csv")
    parts = [select_shard(table, i, 3) for i in range(3)]
    ids = sorted(pid for part in parts for pid in part.participant_id)
    assert ids == sorted(scans) and max(map(len, parts)) - min(map(len, parts)) <= 1
    for i in range(3):
        main(["--input", str(folder / "scans.csv"), "--output", str(out), "--shard", f"{i}/3", *FAST])
    assert not (out / "manifest.csv").exists(), "a shard run makes the merged manifest stale"
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"manifest of shard 2/3: {out / 'manifest-shard-2-of-3.csv'}; once every shard has run, their manifest.csv: "
        f"elr-mri preprocess-merge --output '{out}'")
    assert merge_main(["--output", str(out)]) == 1  # merged, but the bad scans are still failures
    assert capsys.readouterr().out.splitlines()[-1] == f"manifest: {out / 'manifest.csv'}"
    merged = pd.read_csv(out / "manifest.csv")
    assert sorted(merged.participant_id) == sorted(p for p in scans if p.startswith("sub-0"))
    assert len(pd.read_csv(out / "failures.csv")) == len(BAD_SCANS) + 2  # and the DICOM folder, the blank path


def _shard_record(folder: Path, index: int, count: int, qc_min_ncc: float = 0.45,
                  version: int | None = PIPELINE_VERSION) -> None:
    """What a shard run writes beside its manifest (see batch.shard_record_name), for hand-made shards."""
    record = {"params": {"resolution": 2.0}, "template": {}, "inputs_sha256": "same", "qc_min_ncc": qc_min_ncc,
              "pipeline_version": version}
    (folder / f"shard-{index}-of-{count}.json").write_text(json.dumps(record))


@pytest.mark.parametrize("command, typed, expected", [
    (main, ["--inptu", "in.csv", "--output", "out"], "preprocess: unrecognized arguments: --inptu in.csv "
                                                    "(did you mean --input?)"),
    (merge_main, ["--outptu=out"], "preprocess-merge: unrecognized arguments: --outptu=out (did you mean --output?)"),
    (main, ["--input", "in.csv", "--output", "out", "--bogus"], "preprocess: unrecognized arguments: --bogus"),
])
def test_a_misspelt_option_is_named_before_the_required_ones_it_hides(command, typed, expected, capsys):
    with pytest.raises(SystemExit) as stop:
        command(typed)
    assert (stop.value.code, capsys.readouterr().err) == (2, f"elr-mri {expected}\n")


def test_merge_refuses_missing_shard(tmp_path, capsys):
    pd.DataFrame({"participant_id": ["a"], "session_id": ["b"], "qc_ncc": [0.9], "qc_mask_dice": [0.75], "status": ["done"]}).to_csv(
        tmp_path / "manifest-shard-0-of-2.csv", index=False)
    assert merge_main(["--output", str(tmp_path)]) == 1
    assert "manifest-shard-1-of-2.csv" in capsys.readouterr().err
    assert merge_main(["--output", str(tmp_path / "gone")]) == 2  # a typo in the folder: the command line's fault
    assert capsys.readouterr().err == (f"elr-mri preprocess-merge: error: --output {tmp_path / 'gone'}: no such "
                                       "folder; pass the output folder the shards wrote to\n")
    manifest = tmp_path / "manifest-shard-0-of-2.csv"
    assert merge_main(["--output", str(manifest)]) == 2  # a file of the folder, not the folder: not "no such folder"
    assert capsys.readouterr().err == (f"elr-mri preprocess-merge: error: --output {manifest}: is a file; pass the "
                                       "output folder the shards wrote to\n")


def test_merging_a_run_without_shards_says_there_is_nothing_to_merge(tmp_path, capsys):
    """A folder a whole run wrote was answered "run the shards first", sending its user to preprocess again."""
    pd.DataFrame({"participant_id": ["a"], "session_id": ["b"], "status": ["done"]}).to_csv(tmp_path / "manifest.csv",
                                                                                          index=False)
    assert merge_main(["--output", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"elr-mri preprocess-merge: error: {tmp_path}: no manifest-shard-I-of-N.csv "
                                       "files, and its manifest.csv is that of a run without --shard: nothing to "
                                       "merge; read that manifest.csv\n")
    assert (tmp_path / "manifest.csv").is_file()


def test_merge_names_an_empty_shard_and_needs_no_failures_files(tmp_path, capsys):
    shard = pd.DataFrame({"participant_id": ["a"], "session_id": ["b"], "qc_ncc": [0.9], "qc_mask_dice": [0.75],
                          "rid": ["0042"], "status": ["done"]})
    shard.to_csv(tmp_path / "manifest-shard-0-of-2.csv", index=False)
    (tmp_path / "manifest-shard-1-of-2.csv").write_text("")
    for index in range(2):
        _shard_record(tmp_path, index, 2)
    assert merge_main(["--output", str(tmp_path)]) == 1
    assert "manifest-shard-1-of-2.csv: empty" in capsys.readouterr().err
    shard.assign(participant_id="c", rid="1e3").to_csv(tmp_path / "manifest-shard-1-of-2.csv", index=False)
    assert merge_main(["--output", str(tmp_path)]) == 0  # no failures-shard files: none failed
    assert list(pd.read_csv(tmp_path / "failures.csv").columns) == ["participant_id", "session_id", "path", "error"]
    assert (tmp_path / "manifest.csv").read_text().splitlines()[1:] == [  # carried columns as the shards wrote them
        "a,b,0.9,0.75,0042,False,,done", "c,b,0.9,0.75,1e3,False,,done"]


def test_a_merge_of_shards_without_processed_path_names_them_and_what_training_then_does(tmp_path, capsys):
    """Every shard `elr-mri preprocess` writes has processed_path; one made or edited by hand was merged without a
    word, and training on the merge read the raw scans (or refused blank cells) far from this cause. Merged all the
    same (the minimal shards of the tests above lack the column on purpose), with one line saying so."""
    for index in range(2):
        pd.DataFrame({"participant_id": [f"p{index}"], "session_id": ["b"], "qc_ncc": [0.9], "qc_mask_dice": [0.75],
                      "processed_path": [f"/prep/p{index}.nii.gz"], "status": ["done"]}).to_csv(
            tmp_path / f"manifest-shard-{index}-of-2.csv", index=False)
        _shard_record(tmp_path, index, 2)
    assert merge_main(["--output", str(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().err
    hand_made = pd.read_csv(tmp_path / "manifest-shard-1-of-2.csv").drop(columns="processed_path")
    hand_made.to_csv(tmp_path / "manifest-shard-1-of-2.csv", index=False)
    assert merge_main(["--output", str(tmp_path)]) == 0
    assert capsys.readouterr().err == (
        f"warning: {tmp_path}: 1 of 2 shard manifest(s) have no processed_path column (first: manifest-shard-1-of-2"
        ".csv; `elr-mri preprocess` writes it in every shard): their scans' processed_path is blank in manifest.csv, "
        "and training on it refuses those scans; rerun such shards (finished scans are skipped), then merge\n")
    assert pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False)["processed_path"].tolist() == [
        "/prep/p0.nii.gz", ""]
    hand_made.assign(participant_id="p0").to_csv(tmp_path / "manifest-shard-0-of-2.csv", index=False)
    assert merge_main(["--output", str(tmp_path)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {tmp_path}: 2 of 2 shard manifest(s) have no processed_path column (first: manifest-shard-0-of-2"
        ".csv; `elr-mri preprocess` writes it in every shard): manifest.csv has none either, so training on it reads "
        "each scan's `path` as it is (the raw scan); rerun such shards (finished scans are skipped), then merge"]
    assert "processed_path" not in pd.read_csv(tmp_path / "manifest.csv").columns


def test_shards_of_two_counts_in_one_folder_are_not_merged(tmp_path, capsys):
    """Shards run again with another N leave the first N's files beside theirs (a shard removes its own alone):
    merging either set would take its scans as they were then, or call the other set's shards missing."""
    for index, count in ((0, 2), (1, 2), (0, 3)):
        pd.DataFrame({"participant_id": [f"sub-{index}{count}"], "session_id": ["ses-M00"], "qc_ncc": [0.8],
                      "qc_mask_dice": [0.8], "status": ["done"]}).to_csv(
            tmp_path / f"manifest-shard-{index}-of-{count}.csv", index=False)
        _shard_record(tmp_path, index, count)
    assert merge_main(["--output", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"elr-mri preprocess-merge: error: {tmp_path}: shard files of different N "
                                       "(['2', '3']); keep one set of shards\n")
    assert not (tmp_path / "manifest.csv").exists()


def test_merged_tables_are_in_the_order_a_single_run_lists_them(tmp_path):
    """A single run lists scans and failures by participant and session; the merge listed them shard by shard."""
    failed = {0: ["sub-01", "sub-03"], 1: ["sub-02"]}  # --shard I/2 takes every second row of the sorted table
    done = {0: ["sub-04", "sub-06"], 1: ["sub-05"]}
    for index, participants in failed.items():
        pd.DataFrame({"participant_id": done[index], "session_id": "ses-M00", "qc_ncc": 0.7, "qc_mask_dice": 0.75,
                      "status": "done"}).to_csv(tmp_path / f"manifest-shard-{index}-of-2.csv", index=False)
        pd.DataFrame({"participant_id": participants, "session_id": "ses-M00", "path": "/x.nii.gz",
                      "error": "bad"}).to_csv(tmp_path / f"failures-shard-{index}-of-2.csv", index=False)
        _shard_record(tmp_path, index, 2)
    assert merge_main(["--output", str(tmp_path)]) == 1
    assert pd.read_csv(tmp_path / "failures.csv").participant_id.tolist() == ["sub-01", "sub-02", "sub-03"]
    assert pd.read_csv(tmp_path / "manifest.csv").participant_id.tolist() == ["sub-04", "sub-05", "sub-06"]


def test_merge_uses_the_shards_qc_threshold_and_refuses_a_shard_without_its_record(tmp_path, capsys):
    for index, ncc in enumerate((0.7, 0.9)):
        pd.DataFrame({"participant_id": [f"p{index}"], "session_id": ["b"], "qc_ncc": [ncc], "qc_mask_dice": [0.75],
                      "processed_path": [f"/prep/p{index}_b_space-template_T1w.nii.gz"], "status": ["done"]}).to_csv(tmp_path / f"manifest-shard-{index}-of-2.csv", index=False)
    _shard_record(tmp_path, 0, 2, qc_min_ncc=0.8)
    assert merge_main(["--output", str(tmp_path)]) == 1
    assert "shard(s) 1/2 have no readable shard-I-of-N.json" in capsys.readouterr().err
    (tmp_path / "shard-0-of-2.json").unlink()
    assert merge_main(["--output", str(tmp_path)]) == 1
    assert "shard(s) 0/2, 1/2 have no readable" in capsys.readouterr().err  # all of them at once
    _shard_record(tmp_path, 0, 2, qc_min_ncc=0.8)
    _shard_record(tmp_path, 1, 2, qc_min_ncc=0.8)
    assert merge_main(["--output", str(tmp_path)]) == 0
    assert pd.read_csv(tmp_path / "manifest.csv")["qc_flag"].tolist() == [True, False]  # 0.7 < the shards' 0.8
    assert merge_main(["--output", str(tmp_path), "--qc-min-ncc", "0.5"]) == 0  # a threshold given wins
    assert pd.read_csv(tmp_path / "manifest.csv")["qc_flag"].tolist() == [False, False]
    _shard_record(tmp_path, 1, 2, version=None)  # a shard run by code from before versions were recorded
    assert merge_main(["--output", str(tmp_path)]) == 1
    assert f"shards 0 and 1 of 2 ran different pipeline versions ({PIPELINE_VERSION} vs None" in capsys.readouterr().err


def test_shards_of_two_qc_thresholds_are_merged_only_at_one_given(tmp_path, capsys):
    """Which of the shards' thresholds a merge would flag the whole cohort at is not for it to pick."""
    for index, ncc in enumerate((0.8, 0.6)):
        pd.DataFrame({"participant_id": [f"p{index}"], "session_id": ["b"], "qc_ncc": [0.7], "qc_mask_dice": [0.75],
                      "processed_path": [f"/prep/p{index}_b_space-template_T1w.nii.gz"], "status": ["done"]}).to_csv(
            tmp_path / f"manifest-shard-{index}-of-2.csv", index=False)
        _shard_record(tmp_path, index, 2, qc_min_ncc=ncc)
    assert merge_main(["--output", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"elr-mri preprocess-merge: error: {tmp_path}: the shards ran with different "
                                       "--qc-min-ncc; give the threshold to merge with (preprocess-merge "
                                       "--qc-min-ncc X)\n")
    assert not (tmp_path / "manifest.csv").exists()
    assert merge_main(["--output", str(tmp_path), "--qc-min-ncc", "0.75"]) == 0
    assert pd.read_csv(tmp_path / "manifest.csv")["qc_flag"].tolist() == [True, True]


def test_shards_of_other_settings_or_an_edited_table_are_not_merged(tmp_path, capsys):
    """Array tasks that started apart may see an edited table or another command line: overlaps, gaps, mixed grids."""
    scans = _absent_scans(tmp_path, "sub-a", "sub-b", "sub-c")
    table, out = _csv(tmp_path, scans), tmp_path / "out"
    main(["--input", str(table), "--output", str(out), "--shard", "0/2", *FAST])
    main(["--input", str(table), "--output", str(out), "--shard", "1/2", "--resolution", "3", "--no-progress"])
    assert merge_main(["--output", str(out)]) == 1
    assert "ran with different params (resolution: 2.0 vs 3.0)" in capsys.readouterr().err
    edited = tmp_path / "edited.csv"
    pd.read_csv(table).iloc[::-1].to_csv(edited, index=False)  # the same rows, another order: no change
    main(["--input", str(edited), "--output", str(out), "--shard", "1/2", *FAST])
    assert merge_main(["--output", str(out)]) == 1  # every scan failed, but merged
    pd.read_csv(table).assign(diagnosis="AD").to_csv(edited, index=False)
    main(["--input", str(edited), "--output", str(out), "--shard", "1/2", *FAST])
    assert merge_main(["--output", str(out)]) == 1
    assert "shards 0 and 1 of 2 read different input tables" in capsys.readouterr().err
    assert not (out / "manifest.csv").exists()
    main(["--input", str(table), "--output", str(out), *FAST])  # a whole run: the shards' files would be stale
    assert not list(out.glob("*shard-*"))
    failures = pd.read_csv(out / "failures.csv")
    assert len(failures) == 3 and all(Path(p).is_absolute() for p in failures["path"])


def test_shards_registered_with_another_seed_are_not_merged_and_older_records_count_as_the_default(
        tmp_path, capsys, monkeypatch):
    """The registration's seed changes its transform, but came from an exported ANTS_RANDOM_SEED and was recorded
    nowhere: shards of nodes exporting other seeds merged, and a rerun with another seed kept the old outputs."""
    scans = _absent_scans(tmp_path, "sub-a", "sub-b")
    table, out = str(_csv(tmp_path, scans)), tmp_path / "out"
    monkeypatch.setenv("ANTS_RANDOM_SEED", "not a number")
    assert main(["--input", table, "--output", str(out), *FAST]) == 2
    assert "ANTS_RANDOM_SEED='not a number' (exported): not a whole number" in capsys.readouterr().err
    monkeypatch.setenv("ANTS_RANDOM_SEED", "7")
    main(["--input", table, "--output", str(out), "--shard", "0/2", *FAST])
    monkeypatch.delenv("ANTS_RANDOM_SEED")
    main(["--input", table, "--output", str(out), "--shard", "1/2", *FAST])
    assert merge_main(["--output", str(out)]) == 1
    assert "ran with different params (seed: 7 vs 123)" in capsys.readouterr().err
    main(["--input", table, "--output", str(out), "--shard", "0/2", "--seed", "123", *FAST])
    record = out / "shard-0-of-2.json"
    older = json.loads(record.read_text())
    del older["params"]["seed"]  # written before the seed was recorded
    record.write_text(json.dumps(older))
    assert merge_main(["--output", str(out)]) == 1  # merged: every scan failed
    assert "ran with different" not in capsys.readouterr().err and len(pd.read_csv(out / "failures.csv")) == 2
    main(["--input", table, "--output", str(out), "--shard", "1/2", "--seed", "7", *FAST])
    assert merge_main(["--output", str(out)]) == 1  # the older record's seed is said as counted, not as None
    assert "ran with different params (seed: 123 vs 7)" in capsys.readouterr().err


def test_shards_given_one_template_under_two_spellings_merge(tmp_path, capsys, monkeypatch):
    """The shards' settings compared the --template path as typed: ./t.nii.gz and /abs/t.nii.gz were other runs."""
    from nilearn.datasets import MNI152_FILE_PATH

    shutil.copyfile(MNI152_FILE_PATH, tmp_path / "t.nii.gz")
    monkeypatch.chdir(tmp_path)
    scans = _absent_scans(tmp_path, "sub-a", "sub-b")
    table, out = str(_csv(tmp_path, scans)), tmp_path / "out"
    for shard, template in (("0/2", str(tmp_path / "t.nii.gz")), ("1/2", "t.nii.gz")):
        assert main(["--input", table, "--output", str(out), "--shard", shard, "--template", template, *FAST]) == 1
        assert f"1 failed (see {out / f'failures-shard-{shard[0]}-of-2.csv'}), 0 flagged by QC" in capsys.readouterr().out
    assert merge_main(["--output", str(out)]) == 1  # merged: every scan failed
    assert "ran with different" not in capsys.readouterr().err and len(pd.read_csv(out / "failures.csv")) == 2


def test_shards_given_a_template_and_a_re_saved_copy_merge_and_another_image_is_refused(tmp_path, capsys):
    """Shards compared the template files' SHA-256: a node given a copy re-saved by nibabel (the same image) was
    refused as another template."""
    from nilearn.datasets import MNI152_FILE_PATH

    original = nib.load(MNI152_FILE_PATH)
    templates = {"copy": tmp_path / "copy.nii", "other": tmp_path / "other.nii"}
    nib.Nifti1Image(original.dataobj, original.affine, original.header).to_filename(templates["copy"])
    nib.Nifti1Image(original.get_fdata(dtype=np.float32)[:, ::-1].copy(), original.affine).to_filename(
        templates["other"])  # y reversed: the template is symmetric in x
    table = str(_csv(tmp_path, _absent_scans(tmp_path, "sub-a", "sub-b")))
    for second, merged in (("copy", True), ("other", False)):
        out = tmp_path / second
        for shard, template in (("0/2", str(MNI152_FILE_PATH)), ("1/2", str(templates[second]))):
            main(["--input", table, "--output", str(out), "--shard", shard, "--template", template, *FAST])
        assert merge_main(["--output", str(out)]) == 1  # every scan failed: merged, or refused
        assert (out / "manifest.csv").exists() == merged
        assert ("ran with different template (content_sha256: " in capsys.readouterr().err) != merged


def test_shards_of_pipeline_versions_that_write_alike_merge_and_others_are_refused(tmp_path, capsys):
    """Array tasks of one cohort that straddled the upgrade to version 4 (a --template's outputs coded as its space)
    were refused as "different pipeline versions" even where version 3 wrote the same outputs, which a rerun keeps:
    those of the default template or of one coded MNI152. A version 3 shard is the record that code wrote (the same
    keys, checked against it), with its version."""
    from nilearn.datasets import MNI152_FILE_PATH

    nilearns = nib.load(MNI152_FILE_PATH)
    coded_mni = nib.Nifti1Image(np.asanyarray(nilearns.dataobj), nilearns.affine)
    coded_mni.set_sform(nilearns.affine, 4)
    coded_mni.set_qform(nilearns.affine, 4)
    coded_mni.to_filename(tmp_path / "mni.nii.gz")
    shutil.copyfile(MNI152_FILE_PATH, tmp_path / "other.nii.gz")  # nilearn's file is coded 5, another template
    table = str(_csv(tmp_path, _absent_scans(tmp_path, "sub-a")))  # shard 1 has no scan
    for name, template, version, alike in (("default", None, 3, True), ("mni", "mni.nii.gz", 3, True),
                                           ("other", "other.nii.gz", 3, False), ("older", None, 2, False)):
        out = tmp_path / name
        if name == "older":  # the default template's shards, the first from before version 3
            shutil.copytree(tmp_path / "default", out)
            (out / "manifest.csv").unlink()
        for shard in ("0/2", "1/2") if name != "older" else ():
            flags = [] if template is None else ["--template", str(tmp_path / template)]
            main(["--input", table, "--output", str(out), "--shard", shard, *flags, *FAST])
        record = json.loads((out / "shard-0-of-2.json").read_text())
        (out / "shard-0-of-2.json").write_text(json.dumps({**record, "pipeline_version": version}))
        capsys.readouterr()
        assert merge_main(["--output", str(out)]) == 1  # every scan failed: merged, or refused
        refused = f"shards 0 and 1 of 2 ran different pipeline versions ({version} vs {PIPELINE_VERSION};"
        assert (refused in capsys.readouterr().err) is not alike and (out / "manifest.csv").exists() is alike, name
    (tmp_path / "mni.nii.gz").unlink()  # its code can no longer be read: refused as before
    assert merge_main(["--output", str(tmp_path / "mni")]) == 1
    assert "ran different pipeline versions (3 vs" in capsys.readouterr().err


def test_killed_run_resumes(tmp_path, good_scans):
    scans = dict(good_scans)  # --jobs 1 takes them in turn: killed once the first is written, during the second
    csv, out = _csv(tmp_path, scans), tmp_path / "out"
    table = pd.read_csv(csv)  # one path relative to the input table, as users write them
    table.loc[0, "path"] = os.path.relpath(table.loc[0, "path"], tmp_path)
    table.to_csv(csv, index=False)
    out.mkdir()
    (out / "manifest.csv").write_text("participant_id,session_id,processed_path,status\n")  # of an earlier run
    command = [sys.executable, "-m", "preprocess", "--input", str(csv), "--output", str(out), *FAST]
    run = subprocess.Popen(command, start_new_session=True, cwd=Path(__file__).resolve().parents[2])
    # a hang guard: the first scan took 37 s at a load average of ~10; after a fixed 120 s a busier machine's run would
    # be killed before it, failing as "not interrupted mid-batch"
    deadline = time.monotonic() + 600
    sidecars = "*/*/[!.]*.json"  # not the temporary file a sidecar is written to before its rename
    while not list(out.glob(sidecars)) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    finished = len(list(out.glob(sidecars)))
    assert 1 <= finished < len(scans), "the run was not interrupted mid-batch"
    assert not (out / "manifest.csv").exists(), "an earlier run's manifest outlived a rerun cut short"
    assert main(["--input", str(csv), "--output", str(out), *FAST]) == 0
    manifest = pd.read_csv(out / "manifest.csv")
    assert (manifest.status == "skipped").sum() == finished and len(manifest) == len(scans)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in manifest.path)  # valid wherever the manifest is
    assert not list(out.glob("*/*/.tmp*"))


def test_bad_input_table_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("subject,path\n1,a.nii\n")
    assert main(["--input", str(tmp_path / "x.csv"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing column(s) ['participant_id', 'session_id']" in err and "\n" not in err
    (tmp_path / "afile").write_text("")
    assert main(["--input", str(tmp_path / "x.csv"), "--output", str(tmp_path / "afile")]) == 2
    assert "--output " + str(tmp_path / "afile") + ": is a file; give a folder" in capsys.readouterr().err
    for text, message in (("", "cannot be read as a CSV table"),
                          ("participant_id\tsession_id\tpath\n", "looks tab-separated"),
                          ("participant_id;session_id;path\n", "looks semicolon-separated"),
                          ("participant_id;session_id;path;age\nsub-a;ses-1;a.nii;73,5\n",  # a decimal comma
                           "looks semicolon-separated"),
                          ("participant_id;session_id;path;age\nsub-a;ses-1;a.nii;70\nsub-b;ses-1;b.nii;73,5\n",
                           "looks semicolon-separated")):
        (tmp_path / "x.csv").write_text(text)
        with pytest.raises(InputError, match=rf"{tmp_path / 'x.csv'}: {message}"):
            read_inputs(tmp_path / "x.csv")
    (tmp_path / "x.csv").write_bytes("participant_id,session_id,path\nJosé,ses-M00,a.nii\n".encode("latin-1"))
    with pytest.raises(InputError, match="save it as comma-separated UTF-8"):
        read_inputs(tmp_path / "x.csv")
    # an ADNI visit's MPRAGE and its repeat: made unique, an import by visit would leave both out, as it says
    with pytest.raises(InputError, match=r"2 rows share participant/session ids \(first: sub-a/ses-M00\); keep one T1 "
                                         r"per session \(import-cohort, meeting scans by visit, leaves out every scan "
                                         r"of a visit with several\), or to process each, make session_id unique"):
        _csv(tmp_path, {"sub-a": "a.nii"})
        table = pd.read_csv(tmp_path / "scans.csv")
        pd.concat([table, table]).to_csv(tmp_path / "scans.csv", index=False)
        read_inputs(tmp_path / "scans.csv")


@pytest.mark.parametrize(("flags", "message"), [
    (["--template", "{d}/missing.nii.gz"], "--template {d}/missing.nii.gz: file not found; pass a 3D T1 template"),
    (["--template", "{d}/flat.nii.gz"], "--template {d}/flat.nii.gz: has shape (40, 40), expected a 3D volume"),
    (["--template", "{d}/head.nii.gz", "--template-mask", "{d}/scans.csv"],
     "--template-mask {d}/scans.csv: cannot be read as NIfTI"),
    (["--template-mask", "{d}/head.nii.gz"], "needs --template"),
    (["--template", "{d}/head.nii.gz", "--template-mask", "{d}/far_mask.nii.gz"],  # of another template's space
     "--template-mask {d}/far_mask.nii.gz: marks no voxel within --template's field of view"),
    (["--template", "{d}/head.nii.gz", "--template-mask", "{d}/faint_mask.nii.gz"],  # probabilities below 0.5
     "--template-mask {d}/faint_mask.nii.gz: has no voxel of at least 0.5 (values 0 to 0.4)"),
    (["--shape", "10", "-5", "10"], "shape=(10, -5, 10): need 3 voxel counts of at least 1"),
    (["--shape", "10", "0", "10"], "shape=(10, 0, 10): need 3 voxel counts of at least 1"),
    (["--resolution", "2", "--shape", "121", "1450", "121"], "spans 2900 mm, more than the 400 mm any head needs"),
    (["--qc-min-ncc", "45"], "--qc-min-ncc 45.0: an NCC threshold lies between -1 and 1"),
    (["--qc-min-ncc", "-1"], "--qc-min-ncc -1.0: an NCC threshold lies between -1 and 1"),  # flags no scan
    (["--jobs", "0"], "--jobs 0: need at least 1 worker"),
    (["--output", "{d}/out[v2]"],
     "--output {d}/out[v2]: holds '[' ']', which ANTs cannot take in the path of the folder it writes each "
     "registration's transforms into")])
def test_bad_run_wide_option_is_one_line_before_any_scan(tmp_path, capsys, flags, message):
    """Checked once, not met again by every scan of the batch: no output folder, no failures.csv."""
    _nifti(np.random.default_rng(0).random((40, 40, 40)), tmp_path / "head.nii.gz")
    _nifti(np.ones((40, 40)), tmp_path / "flat.nii.gz")
    brain, elsewhere = np.pad(np.ones((20, 20, 20)), 10), np.eye(4)
    elsewhere[0, 3] = 500  # mm beyond the template's 40 mm
    nib.Nifti1Image(brain.astype(np.float32), elsewhere).to_filename(tmp_path / "far_mask.nii.gz")
    _nifti(0.4 * brain, tmp_path / "faint_mask.nii.gz")
    csv = _csv(tmp_path, {"sub-01": tmp_path / "head.nii.gz", "sub-02": tmp_path / "head.nii.gz"})
    flags = [flag.format(d=tmp_path) for flag in flags]
    assert main(["--input", str(csv), "--output", str(tmp_path / "out"), *flags, *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("elr-mri preprocess: error: ") and "\n" not in err
    assert message.format(d=tmp_path) in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out[v2]").exists()


def test_bids_tree_is_read_with_participants_columns(tmp_path):
    for sub, ses in (("sub-02", "ses-M00"), ("sub-01", "ses-M12"), ("sub-01", "ses-M00")):
        anat = tmp_path / sub / ses / "anat"
        anat.mkdir(parents=True)
        (anat / f"{sub}_{ses}_T1w.nii.gz").write_bytes(b"")
    (tmp_path / "participants.tsv").write_text("participant_id\tdiagnosis\nsub-01\tAD\nsub-02\tCN\n")
    table = read_inputs(tmp_path)
    assert list(zip(table.participant_id, table.session_id)) == [
        ("sub-01", "ses-M00"), ("sub-01", "ses-M12"), ("sub-02", "ses-M00")]
    assert list(table.diagnosis) == ["AD", "AD", "CN"] and Path(table.resolved_path[0]).is_absolute()


def test_bids_runs_of_one_session_and_data_sets_without_sessions_are_read(tmp_path, capsys):
    names = ["sub-01/ses-01/anat/sub-01_ses-01_run-1_T1w.nii.gz", "sub-01/ses-01/anat/sub-01_ses-01_run-2_T1w.nii.gz",
             "sub-01/ses-02/anat/sub-01_ses-02_run-1_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii",
             "sub-02/anat/sub-02_T1w.json", "sub-03/ses-01/anat/sub-03_ses-01_T1w.nii.gz",
             "sub-03/ses-01/anat/sub-03_ses-01_run-2_T1w.nii.gz",
             "sub-02/anat/._sub-02_T1w.nii"]  # a macOS resource fork: copied from a Mac, not a scan
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    table = read_inputs(tmp_path)
    assert list(zip(table.participant_id, table.session_id, table.path)) == [
        ("sub-01", "ses-01_run-1", names[0]), ("sub-01", "ses-01_run-2", names[1]),
        ("sub-01", "ses-02", names[2]), ("sub-02", "ses-none", names[3]),
        ("sub-03", "ses-01_T1w", names[5]), ("sub-03", "ses-01_run-2", names[6])]
    # an import by visit leaves out both scans of such a session: said before hours of registrations, not only then
    assert capsys.readouterr().err == (f"warning: {tmp_path}: 2 session(s) hold more than one *_T1w file (first: "
                                       "sub-01/ses-01, 2); each is processed as a session of its own, but "
                                       "import-cohort leaves out every scan of a visit that has several: to keep one, "
                                       "pass a CSV that lists it\n")


def test_inputs_that_are_not_a_table_of_scans_are_named_as_such(tmp_path, capsys):
    scan = tmp_path / "flat" / "head.nii.gz"
    scan.parent.mkdir()
    _nifti(np.ones((40, 40, 40)), scan)
    with pytest.raises(InputError, match="--input takes a CSV table of scans .* or a BIDS folder, not a scan"):
        read_inputs(scan)
    with pytest.raises(InputError, match=r"holds scans \(e\.g\. head\.nii\.gz\), but not in BIDS' layout .*list "
                                         "them in a CSV table"):
        read_inputs(scan.parent)
    anat = tmp_path / "bids" / "sub-01" / "ses-01" / "anat"
    anat.mkdir(parents=True)
    for name in ("sub-01_ses-01_T1w.nii", "sub-01_ses-01_T1w.nii.gz"):
        (anat / name).write_bytes(b"")
    with pytest.raises(InputError, match=f"{anat / 'sub-01_ses-01_T1w.nii'} is there both as .nii and as .nii.gz"):
        read_inputs(tmp_path / "bids")
    (tmp_path / "afile").write_text("")
    csv = _csv(tmp_path, {"sub-a": scan})
    assert main(["--input", str(csv), "--output", str(tmp_path / "afile" / "out"), *FAST]) == 2
    assert capsys.readouterr().err == (f"elr-mri preprocess: error: --output {tmp_path / 'afile' / 'out'}: "
                                       f"{tmp_path / 'afile'} is a file, so no folder can be made in it; give another "
                                       "--output\n")


ADNI_SERIES = "002_S_0295/MPRAGE/2006-04-18_08_20_30.0/S13408"  # an ADNI download: participant/series/date/image


@pytest.mark.parametrize("name, payload, expected", [
    ("ADNI_002_S_0295_MR_MPRAGE_br_raw_1_S13408_I45108.nii", None,
     "holds scans (e.g. {series}/ADNI_002_S_0295_MR_MPRAGE_br_raw_1_S13408_I45108.nii), but not in BIDS' layout"),
    ("ADNI_002_S_0295_MR_MPRAGE_br_raw_1_S13408_I45108.dcm", bytes(128) + b"DICM",
     "holds DICOM files (e.g. {series}/ADNI_002_S_0295_MR_MPRAGE_br_raw_1_S13408_I45108.dcm), not NIfTI scans; "
     "convert them first"),
    ("IM0001", bytes(128) + b"DICM",  # a scanner's export names its DICOM files without a suffix
     "holds DICOM files (e.g. {series}/IM0001), not NIfTI scans; convert them first"),
])
def test_an_adni_download_folder_as_input_is_named_with_the_way_to_an_input(tmp_path, capsys, name, payload,
                                                                           expected):
    """Its scans lie four folders down, not in BIDS' layout: the run said "no scans listed" of a folder full of them."""
    scan = tmp_path / "ADNI" / ADNI_SERIES / name
    scan.parent.mkdir(parents=True)
    (tmp_path / "ADNI" / "._002_S_0001.nii").write_bytes(b"")  # a Mac's copy of a file's metadata: no scan
    _nifti(np.ones((40, 40, 40)), scan) if payload is None else scan.write_bytes(payload)
    assert main(["--input", str(tmp_path / "ADNI"), "--output", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert expected.format(series=ADNI_SERIES) in err and "clinica convert adni-to-bids" in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, payload, first", [
    ("HEAD.NII", None, ""), ("HEAD.NII.GZ", None, ""),
    ("T1.mgh", nib.MGHImage(np.ones((2, 2, 2), np.float32), np.eye(4)).to_bytes(), ""),  # FreeSurfer's, uncompressed
    ("IM0001", bytes(128) + b"DICM" + bytes(400), "convert its series to NIfTI (`dcm2niix -z y`), then ")])
def test_a_scan_in_capitals_or_a_dicom_file_as_input_is_named_as_a_scan(tmp_path, capsys, name, payload, first):
    """Read as a CSV, a NIfTI's header bytes made an error line kilobytes long, and a DICOM's a "missing column"."""
    scan = tmp_path / name
    if payload is None:
        _nifti(np.ones((40, 40, 40)), tmp_path / name.lower())
        (tmp_path / name.lower()).rename(scan)
    else:
        scan.write_bytes(payload)
    assert main(["--input", str(scan), "--output", str(tmp_path / "out"), *FAST]) == 2
    assert capsys.readouterr().err == (f"elr-mri preprocess: error: {scan}: --input takes a CSV table of scans "
                                       "(columns participant_id, session_id, path) or a BIDS folder, not a scan; "
                                       f"{first}list the scan in a CSV and pass that\n")


@pytest.mark.parametrize("inside, advice", [
    (None, "pass the CSV file itself"), ("part-00000.csv", "pass the table inside it (e.g. {folder}/part-00000.csv)")])
def test_a_folder_named_like_a_table_as_input_is_said_to_be_one(tmp_path, capsys, inside, advice):
    """An unzipped x.csv.zip or Spark's folder of part-*.csv files, read as a BIDS folder, was "no scans listed"."""
    folder = tmp_path / "x.csv"
    folder.mkdir()
    if inside:
        (folder / inside).write_text("participant_id,session_id,path\n")
    assert main(["--input", str(folder), "--output", str(tmp_path / "out"), *FAST]) == 2
    assert capsys.readouterr().err == (f"elr-mri preprocess: error: {folder}: is a folder named like a table (.csv), "
                                       f"not a CSV file, and holds no BIDS scans; {advice.format(folder=folder)}\n")


def test_a_path_cell_with_trailing_blanks_names_the_scan(tmp_path):
    (tmp_path / "x.csv").write_text("participant_id,session_id,path\nsub-a,ses-M00,a.nii.gz \n")
    assert read_inputs(tmp_path / "x.csv")["resolved_path"][0] == str(tmp_path / "a.nii.gz")


def test_a_table_made_on_windows_finds_its_scans_by_backslashed_relative_paths(tmp_path):
    """Written on Windows, `scans\\a.nii.gz` was one file name on Linux and macOS: every scan failed, not found."""
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.nii.gz").write_bytes(b"")
    (tmp_path / "x.csv").write_bytes(b"participant_id,session_id,path\r\nsub-a,ses-M00,scans\\a.nii.gz\r\n")
    assert read_inputs(tmp_path / "x.csv")["resolved_path"][0] == str(tmp_path / "scans" / "a.nii.gz")


@pytest.mark.parametrize("shard", [None, "1/2"])
def test_an_input_table_that_the_run_would_remove_from_its_output_is_refused(tmp_path, capsys, shard):
    """A manifest.csv reused as the scan list into its own folder was removed at the start, so an interrupted run
    left nothing to run again from."""
    out = tmp_path / "out"
    out.mkdir()
    name = "manifest.csv" if shard is None else "manifest-shard-1-of-2.csv"
    csv = _csv(tmp_path, {"sub-a": tmp_path / "a.nii.gz"}).rename(out / name)
    kept = csv.read_bytes()
    assert main(["--input", str(csv), "--output", str(out), *FAST, *(["--shard", shard] if shard else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"elr-mri preprocess: error: --input {csv}: is a file this run removes from --output {out} "
                          "before it redoes the scans; copy it elsewhere first") and err.count("\n") == 1
    assert csv.read_bytes() == kept


def test_a_full_output_disk_stops_the_run_rather_than_failing_every_scan_after_it(tmp_path, monkeypatch):
    """Each scan after the disk filled failed in turn, listed in failures.csv as if the scan were at fault."""
    import errno

    from preprocess import batch
    from preprocess.pipeline import Params
    from preprocess.user_errors import StorageError

    def failing(error: OSError):
        def process_scan(*args: object) -> dict:
            raise error
        return process_scan

    monkeypatch.setattr(batch, "process_scan", failing(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(StorageError, match=rf"No space left on device \({tmp_path / 'sub-a' / 'ses-M00'}\); free "):
        batch._run_one("a.nii.gz", tmp_path, "sub-a", "ses-M00", Params())
    monkeypatch.setattr(batch, "process_scan", failing(OSError(errno.EIO, "Input/output error")))
    failed = batch._run_one("a.nii.gz", tmp_path, "sub-a", "ses-M00", Params())  # this scan's own trouble
    assert failed["status"] == "failed" and failed["error"] == "a.nii.gz: OSError: [Errno 5] Input/output error"


@pytest.mark.parametrize("name", ["manifest.csv", "failures.csv"])
def test_a_folder_where_a_table_goes_is_refused_before_any_scan_with_its_fix(tmp_path, capsys, name):
    """Refused by the removal of the earlier table, as "[Errno 21] Is a directory: PATH", which said no fix."""
    (tmp_path / "out" / name).mkdir(parents=True)
    csv = _csv(tmp_path, {"sub-a": tmp_path / "gone.nii.gz"})
    assert main(["--input", str(csv), "--output", str(tmp_path / "out"), *FAST]) == 2
    assert capsys.readouterr().err == ("elr-mri preprocess: error: [Errno 21] Is a directory where this file goes: "
                                       f"move or remove that folder and run the command again: '{tmp_path / 'out' / name}'\n")


def test_a_disk_that_fills_between_the_two_tables_leaves_no_manifest(tmp_path, capsys):
    """manifest.csv was written before failures.csv: a disk that filled between them (a file size limit here, as a
    disk does) left a new manifest beside no failure list, so `import-cohort` said nothing of the failed scans."""
    import resource

    csv = _csv(tmp_path, {"sub-a": tmp_path / "gone.nii.gz", "sub-b": tmp_path / "gone-too.nii.gz"})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (250, hard))  # the manifest of no scan fits, two failures do not
    try:
        main(["--input", str(csv), "--output", str(tmp_path / "out"), *FAST])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "File too large" in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.csv").exists() and not (tmp_path / "out" / "failures.csv").exists()


@pytest.fixture
def full_disk(tmp_path: Path):
    """A small tmpfs filled to the last byte: a real full disk (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        (mount / "out").mkdir()
        with open(mount / "filler", "wb") as filler, pytest.raises(OSError, match="No space left"):
            while True:
                filler.write(bytes(2**16))
                filler.flush()
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_disk_full_from_the_start_stops_the_run_at_its_first_scan_naming_its_folder(
        tmp_path, moved_template, full_disk, capsys):
    """ANTs could not write the registration's transforms, said so only on stderr, and every scan failed in turn as
    'antsApplyTransforms returned non-zero exit code 1' after its full N4 and registration."""
    second = shutil.copyfile(moved_template, tmp_path / "second.nii.gz")
    csv = _csv(tmp_path, {"sub-a": moved_template, "sub-b": second})
    assert main(["--input", str(csv), "--output", str(full_disk / "out"), "--jobs", "1", *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"elr-mri preprocess: error: [Errno 28] No space left on device "
                          f"({full_disk / 'out' / 'sub-a' / 'ses-M00'}); free space there")
    assert err.endswith("run the command again (finished scans are skipped)")  # not a training run's --resume
    assert not (full_disk / "out" / "sub-b").exists()  # never started
    assert not any(full_disk.rglob(".space-probe"))


@pytest.mark.parametrize("participant", ["  ", " sub-1 ", "sub\n1"])
def test_an_id_of_blanks_padded_with_them_or_broken_by_a_line_is_refused(tmp_path, participant):
    (tmp_path / "x.csv").write_text(f'participant_id,session_id,path\n"{participant}",ses-M00,a.nii\n')
    with pytest.raises(InputError, match="row 1 has an empty, space-padded, path-like or control-character"):
        read_inputs(tmp_path / "x.csv")


def test_an_id_that_ants_cannot_take_in_a_path_is_refused(tmp_path):
    """The id names the folder ANTs writes the registration into: "sub-a,b" failed with "error code 1" alone."""
    (tmp_path / "x.csv").write_text('participant_id,session_id,path\nsub-1,ses-M00,a.nii\n"sub-a,b",ses-M00,b.nii\n')
    with pytest.raises(InputError, match=r"row 2 \(sub-a,b/ses-M00\) has an id holding ',', which ANTs cannot take"):
        read_inputs(tmp_path / "x.csv")


@pytest.mark.parametrize("column, text", [("participant_id", "NA"), ("participant_id", "None"),
                                          ("session_id", "null"), ("session_id", "nan")])
def test_an_id_that_tables_read_as_missing_is_refused(tmp_path, column, text):
    """Such an id named its output folder, but every table after read it as missing: training refused its scans as
    having an empty participant_id, and `elr-mri volumes` wrote three such scans under one blank id."""
    ids = {"participant_id": "sub-1", "session_id": "ses-M00", column: text}
    (tmp_path / "x.csv").write_text("participant_id,session_id,path\n007,01,a.nii\n"
                                    f"{ids['participant_id']},{ids['session_id']},b.nii\n")
    with pytest.raises(InputError, match=f"row 2 has {column} '{text}', which tables read as a missing value"):
        read_inputs(tmp_path / "x.csv")


def test_a_home_folder_in_the_path_column_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "x.csv").write_text("participant_id,session_id,path\nsub-1,ses-M00,~/scans/a.nii\n")
    assert read_inputs(tmp_path / "x.csv")["resolved_path"].tolist() == [str(tmp_path / "home" / "scans" / "a.nii")]


def test_a_pair_of_links_listed_relative_to_the_table_is_read_as_the_pair(tmp_path):
    """DataLad (git-annex) keeps each file as a link to an object named otherwise: a relative `scan.hdr` resolved to
    its object lost the `scan.img` beside it, and the failure named the object, a path the table never listed."""
    from preprocess.checks import load_scan

    (tmp_path / "objects").mkdir()
    nib.Nifti1Pair(np.arange(16.0 ** 3, dtype=np.float32).reshape(16, 16, 16), np.eye(4)).to_filename(
        tmp_path / "objects" / "scan.hdr")
    for part, key in (("hdr", "SHA256E-s348--01"), ("img", "SHA256E-s16384--02")):
        (tmp_path / "objects" / f"scan.{part}").rename(tmp_path / "objects" / f"{key}.{part}")
        (tmp_path / f"scan.{part}").symlink_to(Path("objects") / f"{key}.{part}")
    (tmp_path / "x.csv").write_text("participant_id,session_id,path\nsub-1,ses-M00,scan.hdr\n")
    listed = read_inputs(tmp_path / "x.csv")["resolved_path"][0]
    assert listed == str(tmp_path.resolve() / "scan.hdr")
    assert load_scan(listed).shape == (16, 16, 16)


def test_a_header_typed_with_spaces_is_read(tmp_path):
    (tmp_path / "x.csv").write_text("participant_id, session_id , path\nsub-1, ses-M00, a.nii\n")
    assert read_inputs(tmp_path / "x.csv")[["session_id", "path"]].values.tolist() == [["ses-M00", "a.nii"]]
    (tmp_path / "x.csv").write_text("participant_id,session,path\nsub-1,ses-M00,a.nii\n")
    with pytest.raises(InputError, match=r"missing column\(s\) \['session_id'\] \(found \['participant_id', 'session'"):
        read_inputs(tmp_path / "x.csv")


def test_a_participant_listed_twice_in_participants_tsv_is_named(tmp_path):
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-01_T1w.nii.gz").write_bytes(b"")
    (tmp_path / "participants.tsv").write_text("participant_id\tage\nsub-01\t70\nsub-01\t71\n")
    with pytest.raises(InputError, match=r"participants.tsv: participant sub-01 has more than one row"):
        read_inputs(tmp_path)


def test_a_separator_ending_every_row_is_dropped_not_read_as_a_shift_of_every_value(tmp_path):
    """pandas takes the first value of rows longer than the header as an index and shifts the rest left: the
    ids would become ses-01 / a.nii.gz and the path empty."""
    (tmp_path / "x.csv").write_text("participant_id,session_id,path\nsub-01,ses-01,a.nii.gz,\nsub-02,ses-01,b.nii,\n")
    table = read_inputs(tmp_path / "x.csv")
    assert table[["participant_id", "session_id", "path"]].values.tolist() == [
        ["sub-01", "ses-01", "a.nii.gz"], ["sub-02", "ses-01", "b.nii"]]
    (tmp_path / "x.csv").write_text("participant_id,session_id,path\nsub-01,ses-01,my,scan.nii\n")
    with pytest.raises(InputError, match=r"x.csv: data row 1 has more values than the header has columns; quote"):
        read_inputs(tmp_path / "x.csv")
    # R's write.table(sep = ","): row names 1..n first with no header cell, which numeric ids cannot be told from
    (tmp_path / "x.csv").write_text('"participant_id","session_id","path"\n"1","sub-01","ses-1","a.nii"\n'
                                    '"2","sub-02","ses-1","b.nii"\n')
    with pytest.raises(InputError, match=r"x.csv: data row 1 has more values .* from R write the table with "
                                         r"row.names = FALSE"):
        read_inputs(tmp_path / "x.csv")


def test_rows_past_the_header_are_told_when_only_some_columns_are_read(tmp_path):
    """A NACC import reads 9 of ~1000 columns (`usecols`), where pandas lets a row longer than the header pass
    without a word, and a separator ending every row put each row's values one column left in the columns read."""
    path, some = tmp_path / "x.csv", ["participant_id", "session_id"]
    path.write_text("participant_id,session_id,path\nsub-01,ses-01,a.nii,\nsub-02,ses-02,b.nii,\n")
    assert read_csv_table(path, dtype=str, usecols=some).values.tolist() == [["sub-01", "ses-01"], ["sub-02", "ses-02"]]
    path.write_text('participant_id,session_id,path\nsub-01,ses-01,"my,scan.nii"\n')
    assert read_csv_table(path, dtype=str, usecols=["path"])["path"].tolist() == ["my,scan.nii"]
    path.write_text("participant_id,session_id,path\nsub-01,ses-01,a.nii\nsub-02,ses-01,my,scan.nii\n")
    with pytest.raises(InputError, match=r"x.csv: cannot be read as a CSV table \(.*Expected 3 fields in line 3, saw "
                                         r"4\); save it as comma-separated"):
        read_csv_table(path, dtype=str, usecols=some)
    path.write_text('"participant_id","session_id","path, as written"\nsub-01,ses-01,a.nii,x\n')  # a quoted header
    with pytest.raises(InputError, match=r"x.csv: data row 1 has more values than the header has columns"):
        read_csv_table(path, dtype=str, usecols=some)
    path.write_bytes(b"participant_id,session_id,path\rsub-01,ses-01,a.nii,x\rsub-02,ses-01,b.nii,\r")  # old Mac
    with pytest.raises(InputError, match=r"x.csv: data row 1 has more values than the header has columns"):
        read_csv_table(path, dtype=str, usecols=some)
    rows = ['"sub-01",ses-01,a.nii,'] * 1500  # quoted: checked by a parse, a chunk of rows at a time
    rows[1199] += "x"
    path.write_text("participant_id,session_id,path\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"x.csv: data row 1200 has more values than the header has columns"):
        read_csv_table(path, dtype=str, usecols=some)


def _bids_of(tmp_path: Path, participants_tsv: str) -> Path:
    for subject in ("sub-01", "sub-02"):
        (tmp_path / subject / "anat").mkdir(parents=True)
        (tmp_path / subject / "anat" / f"{subject}_T1w.nii.gz").write_bytes(b"")
    (tmp_path / "participants.tsv").write_text(participants_tsv)
    return tmp_path


def test_participants_missing_from_participants_tsv_are_named(tmp_path, capsys):
    table = read_inputs(_bids_of(tmp_path, "participant_id\tage\nsub-01\t70\n"))
    assert table["age"].iloc[0] == "70" and pd.isna(table["age"].iloc[1])
    assert ("participants.tsv has no row for 1 participant(s) (e.g. sub-02; BIDS spells them sub-<label> there "
            "too), so their age are left empty") in capsys.readouterr().err


@pytest.mark.parametrize(("tsv", "message"), [
    ("participant_id\tage\nsub-01\t70\nsub-02\t71\tx\n", r"participants.tsv: cannot be read as a TSV table "
     r"\(.*\); save it as tab-separated UTF-8 text"),
    ("participant_id\tage\nsub-01\t70\tx\nsub-02\t71\t\n", r"participants.tsv: data row 1 has more values than the "
     r"header has columns"),
    ("participant_id\tsession_id\nsub-01\tses-1\nsub-02\tses-1\n", r"participants.tsv: its column\(s\) "
     r"\['session_id'\] are the scan table's"),
])
def test_an_unusable_participants_tsv_is_one_line_naming_it(tmp_path, tsv, message):
    with pytest.raises(InputError, match=message):
        read_inputs(_bids_of(tmp_path, tsv))


def test_the_largest_seed_ants_reads_and_the_last_shard_are_taken_and_one_past_either_is_refused():
    """antsRegistration reads its seed as a C int (at most 2**31 - 1); shards are 0-based, so N/N is past the last."""
    from preprocess.inputs import parse_shard, registration_seed

    assert registration_seed(None, "2147483647") == 2147483647
    with pytest.raises(InputError, match="not a whole number from 1 to 2147483647"):
        registration_seed(None, "2147483648")
    assert parse_shard("1/2") == (1, 2)
    with pytest.raises(InputError, match=r"--shard '2/2': need 0 <= I < N"):
        parse_shard("2/2")


def test_workers_share_the_cores_this_process_may_use_not_the_machines():
    probe = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
             "from preprocess.cores import usable_cores; print(usable_cores())")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "1"


def test_an_itk_error_is_reported_by_its_reason_not_its_source_line():
    from preprocess.batch import telling_line

    message = ("/project/itksource/Modules/Filtering/Thresholding/include/itkBinaryThresholdImageFilter.hxx:221:\n"
               "ITK ERROR: BinaryThresholdImageFilter(0x5581): Lower threshold cannot be greater than upper threshold.")
    assert telling_line(message).startswith("ITK ERROR: BinaryThresholdImageFilter")
    assert telling_line("plain message\nmore") == "plain message" and telling_line("") == ""


def test_a_head_that_barely_overlaps_the_template_is_flagged_whatever_its_ncc():
    from preprocess.qc_flags import with_qc_flags

    manifest = pd.DataFrame({"qc_ncc": [0.63, 0.62], "qc_mask_dice": [0.0009, 0.75], "status": ["done", "done"]})
    assert with_qc_flags(manifest, 0.45)["qc_flag"].tolist() == [True, False]  # the offset scan an audit found


def test_a_scan_of_thick_slices_is_flagged_though_it_registers_well():
    """A 1×1×10 mm head reached NCC 0.52 (above 0.45): its output is that scan blurred along the slices."""
    from preprocess.qc_flags import with_qc_flags

    manifest = pd.DataFrame({"qc_ncc": [0.8] * 3, "qc_mask_dice": [0.8] * 3, "qc_input_voxel_mm": [1.2, 10.0, np.nan],
                             "status": ["done"] * 3})
    flagged = with_qc_flags(manifest, 0.45)
    assert flagged["qc_flag"].tolist() == [False, True, False]  # NaN: a scan finished before the column existed
    assert flagged["qc_reason"][1] == "input voxels up to 10 mm > 3 (thick slices: blurred along them)"
    older = with_qc_flags(manifest.drop(columns="qc_input_voxel_mm"), 0.45)  # a shard written before the column
    assert not older["qc_flag"].any()


def test_a_scan_whose_field_of_view_missed_part_of_the_brain_is_flagged_with_the_share():
    """Colin27 with the top 10% of its head cut off registered well (NCC 0.61) with the brain's top slices empty; 20%
    off measured NCC 0.42, flagged only as a poorer match."""
    from preprocess.qc_flags import with_qc_flags

    manifest = pd.DataFrame({"qc_ncc": [0.6, 0.42, 0.65, 0.65], "qc_mask_dice": [0.75] * 4,
                             "qc_brain_coverage": [0.98774, 0.91797, 0.99859, np.nan], "status": ["done"] * 4})
    flagged = with_qc_flags(manifest, 0.45)
    assert flagged["qc_flag"].tolist() == [True, True, False, False]  # NaN: finished before the column existed
    assert flagged["qc_reason"][0] == "brain 1.2% outside the scan's field of view > 1% (head cut off?)"
    assert flagged["qc_reason"][1] == ("NCC 0.420 < 0.45; brain 8.2% outside the scan's field of view > 1% "
                                       "(head cut off?)")
    assert not with_qc_flags(manifest.drop(columns="qc_brain_coverage").iloc[[0, 2]], 0.45)["qc_flag"].any()


def test_one_image_under_two_ids_is_flagged_by_its_file_or_its_voxels():
    """The same file copied, or the same voxels saved as .nii and .nii.gz: either way one scan counted as two people.
    A scan finished before the voxel hash existed (empty) is still found by its file's hash."""
    from preprocess.qc_flags import with_qc_flags

    manifest = pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03", "sub-04", "sub-05", "sub-06"],
                             "session_id": ["ses-M00"] * 6, "qc_ncc": [0.8] * 6, "qc_mask_dice": [0.8] * 6,
                             "input_sha256": ["f1", "f1", "f2", "f3", "f4", "f5"],
                             "input_voxels_sha256": ["v1", "", "v1", "v2", "", ""], "status": ["done"] * 6})
    reasons = with_qc_flags(manifest, 0.45)["qc_reason"].tolist()
    assert reasons == ["same image as sub-02/ses-M00, sub-03/ses-M00", "same image as sub-01/ses-M00",
                       "same image as sub-01/ses-M00", "", "", ""]  # empty voxel hashes (old sidecars) match nothing
    assert with_qc_flags(manifest.drop(columns="input_voxels_sha256"), 0.45)["qc_reason"].tolist()[:3] == [
        "same image as sub-02/ses-M00", "same image as sub-01/ses-M00", ""]  # a shard written before the column


def test_the_flagged_report_says_what_to_do_about_each_kind_of_flag_it_lists(tmp_path):
    """"Look at each one's QC image" was the one advice for every flag, though a duplicate's or a thick-sliced scan's
    image looks right; and "drop the rows" meant the manifest's, which the next run writes again with them."""
    from preprocess.batch import flagged_report, write_csv
    from preprocess.qc_flags import with_qc_flags

    ids = ["sub-01", "sub-02", "sub-03", "sub-04"]
    manifest = with_qc_flags(pd.DataFrame({
        "participant_id": ids, "session_id": ["ses-M00"] * 4, "qc_ncc": [0.8, 0.8, 0.8, 0.8],
        "qc_mask_dice": [0.8] * 4, "qc_input_voxel_mm": [1.0, 1.0, 5.0, 1.0], "input_sha256": ["a", "a", "b", "c"],
        "processed_path": [f"/p/{pid}_ses-M00_space-template_T1w.nii.gz" for pid in ids], "status": ["done"] * 4}), 0.45)
    write_csv(manifest, tmp_path / "manifest.csv")
    report = flagged_report(tmp_path / "manifest.csv")
    assert "keep the row of the participant it belongs to and drop the others" in report
    assert "use the session's 3D T1" in report
    assert "anticorrelated" not in report and "head cut off" not in report and "NCC or head overlap" not in report
    assert report.splitlines()[-1].startswith("Drop a row from the input table")


def test_the_summary_points_at_the_failure_list_only_when_a_scan_failed():
    """A run without failures has no failure list worth reading: "(see failures.csv)" stands beside a count above 0."""
    from preprocess.batch import Summary

    assert str(Summary(done=2, skipped=1, failed=0, flagged=0)) == (
        "preprocess: 2 processed, 1 skipped (already done), 0 failed, 0 flagged by QC")
    assert "1 failed (see failures.csv), 0 flagged" in str(Summary(done=2, skipped=0, failed=1, flagged=0))


def test_the_flagged_report_lists_as_many_scans_as_its_limit_without_a_line_of_none_more(tmp_path):
    """`limit` scans are listed whole; "… and N more" is for the ones past it, and there are none."""
    from preprocess.batch import flagged_report, write_csv
    from preprocess.qc_flags import with_qc_flags

    ids = ["sub-01", "sub-02"]
    write_csv(with_qc_flags(pd.DataFrame({
        "participant_id": ids, "session_id": ["ses-M00"] * 2, "qc_ncc": [0.2, 0.3], "qc_mask_dice": [0.8] * 2,
        "processed_path": [f"/p/{pid}_ses-M00_space-template_T1w.nii.gz" for pid in ids], "status": ["done"] * 2}),
        0.45), tmp_path / "manifest.csv")
    report = flagged_report(tmp_path / "manifest.csv", limit=2)
    assert "sub-01/ses-M00: NCC 0.200" in report and "sub-02/ses-M00: NCC 0.300" in report and "more" not in report


def test_a_merged_manifest_without_processed_path_names_it_in_one_line_when_scans_are_flagged(tmp_path, capsys):
    """The flagged scans' report reads each one's QC image from its processed_path: a shard without that column
    (edited by hand) ended the merge in an AttributeError's traceback, after manifest.csv was written."""
    pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "session_id": ["ses-M00"] * 2, "qc_ncc": [0.2, 0.8],
                  "qc_mask_dice": [0.8] * 2, "status": ["done"] * 2}).to_csv(tmp_path / "manifest-shard-0-of-1.csv",
                                                                           index=False)
    _shard_record(tmp_path, 0, 1)
    assert merge_main(["--output", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == (f"elr-mri preprocess-merge: error: {tmp_path / 'manifest.csv'}: QC flagged 1 scan(s), but it has no "
                   "processed_path column, beside whose files their QC images lie; `elr-mri preprocess` writes one: "
                   "rerun the run (or the shards) that made it, finished scans are skipped\n")
    assert pd.read_csv(tmp_path / "manifest.csv")["qc_flag"].tolist() == [True, False]  # the merge's work is kept


def _held(lock: Path, mode: int):
    """`lock` flock'ed as another run holds it: a second open file description conflicts even in this process."""
    import fcntl

    handle = open(lock, "a")
    fcntl.flock(handle, mode | fcntl.LOCK_NB)
    return handle


def test_a_run_into_a_folder_another_run_holds_is_refused_and_shards_share_it(tmp_path, capsys):
    """Two runs over the same scans removed each other's temporary files; the shards of one run process other scans."""
    import fcntl

    table, out = str(_csv(tmp_path, _absent_scans(tmp_path, "sub-a", "sub-b"))), tmp_path / "out"
    out.mkdir()
    (out / "manifest.csv").write_text("participant_id\nsub-a\n")  # the other run's, kept
    run_lock, shard_lock = out / ".preprocess.lock", out / ".preprocess-shard-0-of-2.lock"
    refusal = f"{out} is in use by another preprocess run (lock {{}}); wait for it or choose another --output"
    with _held(run_lock, fcntl.LOCK_EX):  # a whole run
        for shard in ([], ["--shard", "1/2"]):
            assert main(["--input", table, "--output", str(out), *shard, *FAST]) == 2
            assert capsys.readouterr().err == f"elr-mri preprocess: error: {refusal.format(run_lock)}\n"
        assert (out / "manifest.csv").exists()
    with _held(run_lock, fcntl.LOCK_SH), _held(shard_lock, fcntl.LOCK_EX):  # shard 0/2
        assert main(["--input", table, "--output", str(out), "--shard", "0/2", *FAST]) == 2
        assert refusal.format(shard_lock) in capsys.readouterr().err
        assert main(["--input", table, "--output", str(out), *FAST]) == 2
        assert refusal.format(run_lock) in capsys.readouterr().err
        assert main(["--input", table, "--output", str(out), "--shard", "1/2", *FAST]) == 1  # ran, failing its scan
    for _ in range(2):  # a run lets go of the folder when it ends
        assert main(["--input", table, "--output", str(out), *FAST]) == 1


def test_a_refused_run_names_the_whole_run_holding_the_folder_but_no_shard(tmp_path, capsys, monkeypatch):
    """The refusal said 'another preprocess run' only, and on a cluster that may be any node's job. Shards share the
    folder's lock, so none is named there (not the PID an earlier whole run left in the file either)."""
    import socket

    from preprocess.batch import output_lock

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)  # not a batch job's run, even where the tests run in one
    table, out = str(_csv(tmp_path, _absent_scans(tmp_path, "sub-a"))), tmp_path / "out"
    out.mkdir()
    refusal = f"{out} is in use by another preprocess run (lock {out / '.preprocess.lock'}{{}}); wait for it"
    with output_lock(out, None):  # a whole run, in this process: flock's locks of two opens conflict
        assert main(["--input", table, "--output", str(out), *FAST]) == 2
        assert refusal.format(f", held by PID {os.getpid()} on {socket.gethostname()}") in capsys.readouterr().err
    with output_lock(out, (0, 2), "run"):
        assert main(["--input", table, "--output", str(out), *FAST]) == 2
        assert refusal.format("") in capsys.readouterr().err


def test_shards_of_another_run_are_refused_while_shards_of_the_same_run_share_the_folder(tmp_path, capsys):
    """Shards of another N (or other settings or table) would process the same scans at once as these and remove each
    other's temporary files: a good scan failed with an empty StopIteration."""
    import fcntl

    table, out = str(_csv(tmp_path, _absent_scans(tmp_path, "sub-a", "sub-b", "sub-c"))), tmp_path / "out"
    assert main(["--input", table, "--output", str(out), "--shard", "0/2", *FAST]) == 1
    run_lock, = out.glob(".preprocess-sharded-run-*.lock")
    with _held(out / ".preprocess.lock", fcntl.LOCK_SH), _held(run_lock, fcntl.LOCK_SH):  # shard 0/2 running
        assert main(["--input", table, "--output", str(out), "--shard", "1/2", *FAST]) == 1  # ran, failing its scans
        # another QC threshold changes no output (the merge flags again): the same run
        assert main(["--input", table, "--output", str(out), "--shard", "1/2", "--qc-min-ncc", "0.6", *FAST]) == 1
        capsys.readouterr()
        for other in (["--shard", "0/3"], ["--shard", "1/2", "--normalise", "zscore"]):
            assert main(["--input", table, "--output", str(out), *other, *FAST]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"elr-mri preprocess: error: {out} is in use by the shards of another preprocess "
                                  "run (another --shard N, other settings or another input table; lock ") and \
                err.count("\n") == 1
    assert main(["--input", table, "--output", str(out), "--shard", "0/3", *FAST]) == 1  # once those ended


def test_a_shard_started_again_while_it_runs_is_refused_and_its_siblings_are_not(tmp_path, capsys):
    """An array task resubmitted while the first still runs would process the same scans at once. The shard running
    holds the folder as `output_lock` does, not by a lock mode the test picks: a shard's own lock taken shared let
    its double in beside it."""
    from preprocess.batch import output_lock

    table, out = str(_csv(tmp_path, _absent_scans(tmp_path, "sub-a", "sub-b"))), tmp_path / "out"
    shard = ["--input", table, "--output", str(out), "--shard", "0/2", *FAST]
    assert main(shard) == 1  # ran, failing its scan
    run_lock, = out.glob(".preprocess-sharded-run-*.lock")
    identity = run_lock.name.removeprefix(".preprocess-sharded-run-").removesuffix(".lock")
    capsys.readouterr()
    with output_lock(out, (0, 2), identity):  # shard 0/2 still running
        assert main(shard) == 2
        assert f"(lock {out / '.preprocess-shard-0-of-2.lock'}" in capsys.readouterr().err
        assert main(["--input", table, "--output", str(out), "--shard", "1/2", *FAST]) == 1


def test_a_shard_flags_scans_below_the_documented_default_ncc(tmp_path):
    """README: `qc_flag` where NCC < 0.45; the merge flags the cohort at the threshold its shards recorded."""
    table, out = str(_csv(tmp_path, _absent_scans(tmp_path, "sub-a", "sub-b"))), tmp_path / "out"
    assert main(["--input", table, "--output", str(out), "--shard", "0/2", *FAST]) == 1
    assert json.loads((out / "shard-0-of-2.json").read_text())["qc_min_ncc"] == 0.45


def test_a_whole_run_removes_the_files_of_shards_run_before_it(tmp_path):
    """A later merge would put the shards' manifests back over the whole run's manifest.csv; and what a killed run
    was writing (a manifest's temporary file) only takes space."""
    table, out = str(_csv(tmp_path, _absent_scans(tmp_path, "sub-a", "sub-b"))), tmp_path / "out"
    for shard in ("0/2", "1/2"):
        assert main(["--input", table, "--output", str(out), "--shard", shard, *FAST]) == 1
    (out / ".tmp4242-0a1b2c3d-manifest.csv").write_text("participant_id\n")
    assert main(["--input", table, "--output", str(out), *FAST]) == 1
    assert sorted(path.name for path in out.iterdir()) == [".preprocess.lock", "failures.csv", "manifest.csv"]


def test_a_registration_that_wrote_no_transform_names_the_cause(tmp_path: Path) -> None:
    from preprocess.pipeline import _written_transform

    with pytest.raises(RuntimeError, match=r"ANTs registration wrote no \*\.mat transform into /w \(the folder "):
        _written_transform(["/w/reg_0GenericAffine.mat"], ".mat", "/w")  # listed, but not on disk (nor its folder)
    (tmp_path / "reg_0GenericAffine.mat").touch()  # what ANTs leaves on a full disk
    with pytest.raises(RuntimeError, match="wrote no"):
        _written_transform([str(tmp_path / "reg_0GenericAffine.mat")], ".mat", str(tmp_path))
    assert list(tmp_path.iterdir()) == [tmp_path / "reg_0GenericAffine.mat"]  # the space probe is gone


def test_a_run_on_a_file_system_without_locks_goes_on_with_one_warning(tmp_path, capsys, monkeypatch):
    """Lustre without `-o flock` answers every flock with ENOSYS: preprocessing there failed with a traceback."""
    import errno
    import fcntl

    def flock_unsupported(*args):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(fcntl, "flock", flock_unsupported)
    table, out = _csv(tmp_path, _absent_scans(tmp_path, "sub-a")), tmp_path / "out"
    # a shard takes two locks: still one warning
    for shard, failures in (([], "failures.csv"), (["--shard", "0/2"], "failures-shard-0-of-2.csv")):
        assert main(["--input", str(table), "--output", str(out), *shard, *FAST]) == 1
        warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
        assert warnings == [f"warning: {out} is on a file system without file locks (Function not implemented), so "
                            "nothing stops two preprocess runs (or a run and a merge) writing into it at once: start "
                            "one at a time"]
        assert "sub-a" in (out / failures).read_text()


def test_merge_is_refused_while_a_run_or_shard_holds_the_folder(tmp_path, capsys):
    """A merge while a shard still ran joined that shard's older manifest (or said it was missing), and a run
    started during a merge could rewrite the shard files being read."""
    import fcntl

    pd.DataFrame({"participant_id": ["sub-01"], "session_id": "ses-M00", "processed_path": "/prep/x.nii.gz",
                  "qc_ncc": 0.8, "qc_mask_dice": 0.8, "status": "done"}).to_csv(
        tmp_path / "manifest-shard-0-of-1.csv", index=False)
    _shard_record(tmp_path, 0, 1)
    run_lock = tmp_path / ".preprocess.lock"
    for mode in (fcntl.LOCK_SH, fcntl.LOCK_EX):  # a shard still running; a whole run
        with _held(run_lock, mode):
            assert merge_main(["--output", str(tmp_path)]) == 1  # merge's status for every refusal
            assert capsys.readouterr().err == (f"elr-mri preprocess-merge: error: {tmp_path} is in use by another "
                                               f"preprocess run (lock {run_lock}); wait for it or choose another "
                                               "--output\n")
            assert not (tmp_path / "manifest.csv").exists()
    assert merge_main(["--output", str(tmp_path)]) == 0  # the merge let go of the folder: a run may start
    with _held(run_lock, fcntl.LOCK_EX):
        pass


def test_flagged_scans_are_named_with_their_reason_and_qc_image(tmp_path, capsys):
    """A count of flagged scans alone left them in the training data unseen."""
    ids = [f"sub-{i:02d}" for i in range(25)]
    pd.DataFrame({"participant_id": ids, "session_id": "ses-M00",
                  "processed_path": [f"/prep/{i}/ses-M00/{i}_ses-M00_space-template_T1w.nii.gz" for i in ids],
                  "qc_ncc": [0.3, 0.8] + [0.3] * 21 + [0.8] * 2, "qc_mask_dice": [0.2, 0.2] + [0.75] * 23,
                  "status": "done"}).to_csv(tmp_path / "manifest-shard-0-of-1.csv", index=False)
    _shard_record(tmp_path, 0, 1)
    assert merge_main(["--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "23 flagged by QC" in out
    assert "  sub-00/ses-M00: NCC 0.300 < 0.45; head overlap 0.200 < 0.5 - /prep/sub-00/ses-M00/sub-00_ses-M00_qc.png" in out
    assert "  sub-01/ses-M00: head overlap 0.200 < 0.5 - " in out and "  sub-19/ses-M00: NCC 0.300 < 0.45 - " in out
    assert "sub-20/ses-M00" not in out and f"… and 3 more; see {tmp_path / 'manifest.csv'}" in out
    assert "  NCC or head overlap: look at the QC image: a brain off the red template outline" in out
    assert "same image" not in out and "Drop a row from the input table" in out
    manifest = pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False)
    assert manifest.qc_flag.tolist() == [True] * 23 + [False] * 2
    assert manifest.qc_reason[1] == "head overlap 0.200 < 0.5" and manifest.qc_reason[23] == ""
    from preprocess.qc_flags import qc_reasons

    outlier = qc_reasons(np.array([0.8, 0.81, 0.79, 0.8, 0.82, 0.78, 0.8, 0.81, 0.79, 0.6]), np.full(10, 0.8), 0.45)
    assert outlier[:9] == [""] * 9 and outlier[9].startswith("NCC 0.600 far below the batch's (outliers < 0.695)")


def test_a_batch_of_near_identical_good_scans_flags_none_of_its_slightly_lower_ones():
    """A review's batch of NCC 0.625 flagged good scans at 0.614-0.620 (spread floor 1e-3); a scan about 5 mm
    off (0.11-0.19 lower on Colin27) still stands out."""
    from preprocess.qc_flags import qc_reasons

    batch = np.array([0.625] * 8 + [0.614, 0.62])
    assert qc_reasons(batch, np.full(10, 0.8), 0.45) == [""] * 10
    flagged = qc_reasons(np.append(batch, 0.515), np.full(11, 0.8), 0.45)
    assert flagged[:10] == [""] * 10 and flagged[10] == "NCC 0.515 far below the batch's (outliers < 0.520)"


def test_the_outlier_limit_of_a_widely_spread_batch_is_3_5_standard_deviations_read_from_the_mad():
    """1.4826 MAD is a normal batch's standard deviation: a batch of good scans spread by several scanners (MAD 0.1)
    flags below 0.7 - 3.5 × 0.148 = 0.181, and its scan at 0.3 is not an outlier (3.5 MADs would have said so)."""
    from preprocess.qc_flags import qc_reasons

    batch = np.array([0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.6, 0.7, 0.8])
    assert qc_reasons(np.append(batch, 0.3), np.full(11, 0.8), 0.1)[10] == ""
    flagged = qc_reasons(np.append(batch, 0.15), np.full(11, 0.8), 0.1)[10]
    assert flagged == "NCC 0.150 far below the batch's (outliers < 0.181)"


def test_a_scan_below_the_ncc_limit_is_given_that_one_reason_not_also_the_batchs():
    """One figure, one reason: "NCC 0.300 < 0.45" says all there is; "far below the batch's" after it repeated it."""
    from preprocess.qc_flags import qc_reasons

    batch = np.array([0.8, 0.81, 0.79, 0.8, 0.82, 0.78, 0.8, 0.81, 0.79, 0.3])
    assert qc_reasons(batch, np.full(10, 0.8), 0.45)[9] == "NCC 0.300 < 0.45"


def test_a_scan_exactly_at_the_coverage_or_voxel_size_limit_is_not_flagged():
    """The limits are what a scan may reach: 99% of the template's brain in view, voxels of 3 mm (a common clinical
    slice thickness), each passes; just beyond, each is flagged."""
    from preprocess.qc_flags import coarse_inputs, cut_off_brains

    assert coarse_inputs(pd.DataFrame({"qc_input_voxel_mm": [3.0, 3.001]})) == [
        "", "input voxels up to 3.001 mm > 3 (thick slices: blurred along them)"]
    at_limit, beyond = cut_off_brains(pd.DataFrame({"qc_brain_coverage": [0.99, 0.98999]}))
    assert at_limit == "" and beyond.startswith("brain 1.0% outside the scan's field of view")


def test_a_scan_exactly_at_the_ncc_or_head_overlap_limit_is_not_flagged():
    """README: qc_flag is True where NCC < --qc-min-ncc or head overlap < 0.5; a scan reaching either limit passes,
    one just below is flagged."""
    from preprocess.qc_flags import qc_reasons

    assert qc_reasons(np.array([0.45, 0.8]), np.array([0.8, 0.5]), 0.45) == ["", ""]
    assert qc_reasons(np.array([0.449, 0.8]), np.array([0.8, 0.499]), 0.45) == [
        "NCC 0.449 < 0.45", "head overlap 0.499 < 0.5"]


def test_the_default_template_is_mirror_symmetric_so_no_asymmetry_check_could_see_a_left_right_flip():
    """README says QC cannot catch a mirrored head and that comparing its asymmetry with the template's could not
    either: nilearn's MNI152 2009 template (the symmetric variant) has no asymmetry to compare with."""
    from nilearn import datasets

    template = datasets.load_mni152_template(resolution=1)  # what the pipeline registers to, as it loads it
    centre = -template.affine[0, 3] / template.affine[0, 0]  # the voxel index of x = 0
    assert centre == int(centre) and template.affine[0, 1:3].tolist() == [0, 0]
    data = template.get_fdata()
    width = int(min(centre, data.shape[0] - 1 - centre))
    left, right = data[int(centre) - width:int(centre)], data[int(centre) + 1:int(centre) + width + 1][::-1]
    assert np.abs(data).mean() > 0.1 and np.array_equal(left, right)


def test_a_scan_anticorrelated_with_the_template_is_said_to_be_another_contrast():
    """Colin27 with its intensities inverted (a T2 look-alike) registered well (MI 0.49, a T1's 0.55) and measured NCC
    -0.25: 'NCC -0.250 < 0.45' alone read as a failed registration; gross misplacements measured 0.07 to 0.30."""
    from preprocess.qc_flags import qc_reasons

    reasons = qc_reasons(np.array([-0.25, 0.07, -0.05, 0.65]), np.full(4, 0.75), 0.45)
    assert reasons[0] == "NCC -0.250 < 0.45, anticorrelated: not a T1 contrast (a T2 or FLAIR?)"
    assert reasons[1:] == ["NCC 0.070 < 0.45", "NCC -0.050 < 0.45", ""]
    assert qc_reasons(np.array([-0.25]), np.full(1, 0.75), -0.5) == [""]  # above a limit set lower


@pytest.mark.parametrize("second", ["scans/../a.nii.gz", "link.nii.gz"])
def test_one_scan_file_under_two_ids_is_refused_naming_both_rows(tmp_path, second):
    """It was processed twice, and a split by participant could put the one scan in training and test."""
    (tmp_path / "a.nii.gz").write_bytes(b"a scan")
    (tmp_path / "scans").mkdir()
    (tmp_path / "link.nii.gz").symlink_to(tmp_path / "a.nii.gz")
    (tmp_path / "x.csv").write_text(f"participant_id,session_id,path\nsub-b,ses-M00,a.nii.gz\n"
                                    f"sub-c,ses-M00,missing.nii.gz\nsub-a,ses-M12,{second}\n")
    with pytest.raises(InputError, match=r"x.csv: rows 1 \(sub-b/ses-M00\) and 3 \(sub-a/ses-M12\) list the same scan "
                                         rf"file {tmp_path / 'a.nii.gz'}; keep the row whose ids are right"):
        read_inputs(tmp_path / "x.csv")


def test_ids_that_differ_only_in_case_are_refused_naming_both_rows(tmp_path):
    """On a disk that ignores case (macOS, Windows) the two rows' outputs were one file: the later scan overwrote the
    earlier one, and both manifest rows named it."""
    (tmp_path / "x.csv").write_text("participant_id,session_id,path\nsub-AB,ses-M00,a.nii.gz\nsub-c,ses-M00,c.nii.gz\n"
                                    "sub-ab,SES-m00,b.nii.gz\nsub-ab,ses-M12,d.nii.gz\n")
    with pytest.raises(InputError, match=r"x.csv: rows 1 \(sub-AB/ses-M00\) and 3 \(sub-ab/SES-m00\) have ids that "
                                         "differ only in case, which name one output folder"):
        read_inputs(tmp_path / "x.csv")


def test_the_adni_script_gives_an_array_task_its_shard_of_the_count_given_not_of_the_arrays_bounds(tmp_path):
    """A failed task resubmitted alone (sbatch --array=3,7) was given shard 4/5 of a new count instead of 7/16."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "preprocess_adni.sh"

    def run(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), "in.csv", "out"], capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"], "PYTHON": "echo", "JOBS": "1", **env})

    resubmitted = run(SLURM_ARRAY_TASK_ID="7", SLURM_ARRAY_TASK_MIN="3", SLURM_ARRAY_TASK_MAX="7", SHARDS="16")
    # last, with no --no-progress after it: the task's log gets a progress line a minute
    assert resubmitted.returncode == 0 and resubmitted.stdout.endswith(" --shard 7/16\n")
    unsized = run(SLURM_ARRAY_TASK_ID="7", SLURM_ARRAY_TASK_MAX="15")
    assert unsized.returncode == 2 and unsized.stdout == ""
    assert unsized.stderr.startswith("preprocess_adni.sh: error: an array task needs SHARDS")
    one_based = run(SLURM_ARRAY_TASK_ID="16", SHARDS="16")  # --array=1-16: shard 0 would never run
    assert one_based.returncode == 2 and "task ids are the shards' 0-based indices, --array=0-15" in one_based.stderr


def test_the_adni_script_run_by_sbatch_from_slurms_copy_finds_the_projects_python(tmp_path):
    """sbatch runs a copy of the script from its spool folder, where `$0/../.venv` is nothing: every array task of the
    documented `sbatch ... scripts/preprocess_adni.sh IN OUT` died with exit 127, 'No such file or directory'."""
    root = Path(__file__).resolve().parents[2]
    spool = tmp_path / "slurmd" / "job42"
    spool.mkdir(parents=True)
    copy = shutil.copy(root / "scripts" / "preprocess_adni.sh", spool / "slurm_script")
    task = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "42", "SLURM_ARRAY_TASK_ID": "0", "SHARDS": "2"}

    def run(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(copy), "missing.csv", "out"], capture_output=True, text=True,
                              cwd=tmp_path, env={**task, **env})

    submitted = run(SLURM_SUBMIT_DIR=str(root))  # sbatch run from the project's root: its Python reads the table
    assert submitted.returncode == 2, submitted.stderr
    assert submitted.stderr.startswith("elr-mri preprocess: error: missing.csv: no such CSV file")
    elsewhere = run(SLURM_SUBMIT_DIR=str(tmp_path))
    assert elsewhere.returncode == 2 and elsewhere.stderr.count("\n") == 1
    assert elsewhere.stderr.startswith(f"preprocess_adni.sh: error: no Python at {tmp_path}/.venv/bin/python; run")


@pytest.mark.parametrize(("raised", "message", "status"), [
    (OSError(30, "Read-only file system", "/prep/.preprocess.lock"),
     "error: [Errno 30] Read-only file system (/prep/.preprocess.lock); write elsewhere (another output folder)\n", 1),
    (PermissionError(13, "Permission denied", "/prep/.preprocess.lock"),
     "error: [Errno 13] Permission denied: '/prep/.preprocess.lock'; check that path's permissions (outputs "
     "writable, inputs readable) or use another\n", 1),
    (KeyboardInterrupt(), "interrupted; run the same command again: it merges again from the shards' files\n", 130),
])
def test_merge_reports_an_unwritable_folder_and_ctrl_c_in_one_line(tmp_path, capsys, monkeypatch, raised, message,
                                                                   status):
    """They came out as tracebacks: the merge caught only its own refusals. The OS errors are raised by hand: this
    test runs as root on these machines, which no permission stops."""
    def failing(*args: object) -> None:
        raise raised

    monkeypatch.setattr("preprocess.cli.merge_shards", failing)
    assert merge_main(["--output", str(tmp_path)]) == status
    assert capsys.readouterr().err == f"elr-mri preprocess-merge: {message}"
    assert merge_main(["--output", str(tmp_path), "--qc-min-ncc", "5"]) == 2  # the command line: 2, as documented


def test_an_output_link_to_a_missing_folder_is_named(tmp_path, capsys):
    (tmp_path / "scratch").symlink_to(tmp_path / "purged")
    csv = _csv(tmp_path, {"sub-a": tmp_path / "a.nii.gz"})
    assert main(["--input", str(csv), "--output", str(tmp_path / "scratch"), *FAST]) == 2
    assert capsys.readouterr().err == (f"elr-mri preprocess: error: --output {tmp_path / 'scratch'}: is a link to "
                                       f"{tmp_path / 'purged'}, which does not exist; create that folder, or give "
                                       "another --output\n")


def test_an_atomic_write_reaches_the_disk_before_its_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Renamed before its data was on the disk, a file can come back empty after a power cut."""
    from preprocess import sidecar

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}')}"),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append(f"replace {src}"), real_replace(src, dst))[1])
    sidecar.write_json(tmp_path / "scan.json", {"status": "done"})
    (temp,) = {event.split()[1] for event in events}
    assert re.fullmatch(rf"{tmp_path}/\.tmp{os.getpid()}-[0-9a-f]{{8}}-scan\.json", temp)
    assert events == [f"fsync {temp}", f"replace {temp}"]
    assert json.loads((tmp_path / "scan.json").read_text()) == {"status": "done"}


def test_an_atomic_write_never_writes_through_a_file_already_under_its_temporary_name(tmp_path: Path) -> None:
    """The temporary name was .tmp<pid>-<name>: in a folder others write (a shared cache), a link planted under it
    had the write land on its target, another user's file, and left the output a link to it; two jobs of the same
    process id on shared storage wrote into one file. The file is made exclusively, under a name of its own, with
    the umask's mode as any file's."""
    from preprocess import sidecar

    elsewhere = tmp_path / "notes.txt"
    elsewhere.write_text("not the cache's\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / f".tmp{os.getpid()}-scan.json").symlink_to(elsewhere)
    previous = os.umask(0o027)
    try:
        with sidecar.atomic_path(shared / "scan.json") as first, sidecar.atomic_path(shared / "scan.json") as second:
            first.write_text("1\n")
            second.write_text("2\n")
    finally:
        os.umask(previous)
    assert first != second and elsewhere.read_text() == "not the cache's\n"
    final = shared / "scan.json"
    assert not final.is_symlink() and final.read_text() == "1\n" and final.stat().st_mode & 0o777 == 0o640


def test_an_atomic_write_draws_another_temporary_name_where_its_first_is_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The random part makes a taken name unlikely, not impossible (a link planted under each name a process id may
    draw, a second job of that id on shared storage): the file is made exclusively, so a taken name is passed over,
    never written through."""
    from preprocess import sidecar

    elsewhere = tmp_path / "notes.txt"
    elsewhere.write_text("not the cache's\n")
    drawn = iter(["0badc0de", "600dc0de"])
    monkeypatch.setattr(sidecar.secrets, "token_hex", lambda size: next(drawn))
    (tmp_path / f".tmp{os.getpid()}-0badc0de-scan.json").symlink_to(elsewhere)
    sidecar.write_json(tmp_path / "scan.json", {"status": "done"})
    assert elsewhere.read_text() == "not the cache's\n" and not (tmp_path / "scan.json").is_symlink()
    assert json.loads((tmp_path / "scan.json").read_text()) == {"status": "done"}


def test_a_full_disk_seen_only_when_flushing_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On NFS a full disk or quota often shows first at fsync, whose error names no file."""
    import errno

    from preprocess import sidecar

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left on device") as info:
        sidecar.write_json(tmp_path / "scan.json", {"status": "done"})
    assert info.value.filename == str(tmp_path / "scan.json") and not list(tmp_path.iterdir())  # nothing left


def test_a_refused_rename_names_the_file_written_not_its_temporary_one(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """os.replace's error names the temporary file first, which is gone by the time the user reads it."""
    import errno

    from preprocess import sidecar

    def refused(source: str, target: str) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(source), None, str(target))

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(PermissionError) as info:
        sidecar.write_json(tmp_path / "scan.json", {"status": "done"})
    assert info.value.filename == str(tmp_path / "scan.json") and not list(tmp_path.iterdir())


def test_a_scan_exactly_at_the_batchs_outlier_limit_is_not_flagged():
    """The reason reads "outliers < limit": nine scans at 0.8 (MAD 0, so the spread floor 0.03) put the limit at
    0.8 − 3.5 × 0.03, which the tenth scan reaches and so passes."""
    from preprocess.qc_flags import qc_reasons

    assert qc_reasons(np.array([0.8] * 9 + [0.8 - 3.5 * 0.03]), np.full(10, 0.8), 0.45) == [""] * 10


def test_one_image_under_three_ids_names_both_others_for_each():
    from preprocess.qc_flags import repeated_images

    manifest = pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03"], "session_id": ["ses-M00"] * 3,
                             "input_sha256": ["f1"] * 3})
    assert repeated_images(manifest) == ["same image as sub-02/ses-M00, sub-03/ses-M00",
                                         "same image as sub-01/ses-M00, sub-03/ses-M00",
                                         "same image as sub-01/ses-M00, sub-02/ses-M00"]


def test_a_head_overlap_flag_alone_gets_the_advice_to_look_at_the_qc_image():
    from preprocess.qc_flags import ACTIONS, actions_for

    assert actions_for(["head overlap 0.200 < 0.5"]) == [ACTIONS[-1][1]]
    assert actions_for(["head overlap 0.200 < 0.5"])[0].startswith("NCC or head overlap: look at the QC image")


def test_qc_columns_come_before_status_and_figures_read_back_as_text_are_numbers():
    """A merged manifest read back holds its QC figures as text, empty where a scan predates the column: empty is
    never flagged, the others are compared as numbers. `status` stays the manifest's last column."""
    from preprocess.qc_flags import with_qc_flags

    manifest = pd.DataFrame({"status": ["done"] * 3, "qc_ncc": [0.8] * 3, "qc_mask_dice": [0.8] * 3,
                             "qc_input_voxel_mm": ["1.2", "", "10"], "qc_brain_coverage": ["0.98", "", "1.0"]})
    flagged = with_qc_flags(manifest, 0.45)
    assert flagged["qc_flag"].tolist() == [True, False, True]
    assert list(flagged.columns)[-3:] == ["qc_flag", "qc_reason", "status"]


def test_an_exported_seed_of_1_seeds_and_a_blank_export_is_no_export():
    """The docstring's range is 1 to 2^31 − 1, both ends taken; a blank ANTS_RANDOM_SEED is as if none was exported."""
    from preprocess.inputs import registration_seed
    from preprocess.steps import REGISTRATION_SEED

    assert registration_seed(None, "1") == 1
    assert registration_seed(None, "  ") == REGISTRATION_SEED


def test_a_header_naming_a_column_twice_is_refused_and_blank_header_cells_are_not_names(tmp_path):
    """pandas read the second `diagnosis` as `diagnosis.1` and every reader took the first; blank cells (a separator
    ending the header and its rows, as spreadsheets write) name no column, so two of them are no name given twice."""
    (tmp_path / "x.csv").write_text("participant_id,session_id,path,diagnosis,diagnosis\nsub-1,ses-M00,a.nii,CN,AD\n")
    with pytest.raises(InputError, match=r"x\.csv: the header names column 'diagnosis' twice, and only the first"):
        read_csv_table(tmp_path / "x.csv")
    (tmp_path / "x.csv").write_text("participant_id,session_id,path,,\nsub-1,ses-M00,a.nii,,\n")
    assert read_csv_table(tmp_path / "x.csv")["path"].tolist() == ["a.nii"]


def test_a_comma_separated_header_with_a_semicolon_in_a_name_is_read_as_comma_separated(tmp_path):
    """Only a header without a comma is taken for a semicolon- or tab-separated export."""
    (tmp_path / "x.csv").write_text("participant_id,session_id,path,visit;note\nsub-1,ses-M00,a.nii,baseline\n")
    assert read_csv_table(tmp_path / "x.csv")["visit;note"].tolist() == ["baseline"]
