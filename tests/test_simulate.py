"""The simulated cohort: same seed same bytes, an interrupted run that resumes to the same bytes, honest
tables, label noise only between neighbouring stages, a head pose that is a real motion in world space,
atrophy that measures as asked, and a class signal a simple classifier finds in the written scans."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from elr_mri.simulate import main
from elr_mri.simulate.acquisition import MAX_ROTATION_DEG, MAX_TRANSLATION_MM, SITES, Pose, scanner_grid
from elr_mri.simulate.anatomy import DEFORMATION_SPACING_MM, load_anatomy
from elr_mri.simulate.cli import PROGRESS, _thick_slice_note
from elr_mri.simulate.cohort import class_counts, plan_cohort, raise_label_noise
from elr_mri.simulate.disease import (CHANGE_BOUNDS, REFERENCE_AGE, REGIONS, atrophy_displacement, region_mask,
                                     volume_ratios)
from elr_mri.simulate.fields import apply_affine, box_affine, grid_points, sample
from elr_mri.simulate.render import sample_subject, subject_shape

RESOLUTION = 3.0
SEED = 7
TRAIN, HOLDOUT = 36, 4
RESUMABLE = ["--subjects", "4", "--holdout-subjects", "1", "--label-noise", "0.3", "--resolution", "4"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cohort written through the CLI, shared by the tests that read scans."""
    out = tmp_path_factory.mktemp("simulated") / "cohort"
    argv = ["--out", str(out), "--subjects", str(TRAIN), "--holdout-subjects", str(HOLDOUT), "--label-noise", "0.25",
            "--seed", str(SEED), "--resolution", str(RESOLUTION), "--jobs", "2"]
    assert main(argv) == 0
    return out


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_for_any_jobs_and_another_seed_differs(tmp_path: Path) -> None:
    common = ["--subjects", "3", "--holdout-subjects", "1", "--label-noise", "0.3", "--resolution", "4"]
    assert main(["--out", str(tmp_path / "a"), "--seed", "5", "--jobs", "1", *common]) == 0
    assert main(["--out", str(tmp_path / "b"), "--seed", "5", "--jobs", "2", *common]) == 0
    assert main(["--out", str(tmp_path / "c"), "--seed", "6", "--jobs", "1", *common]) == 0
    a, b, c = (file_hashes(tmp_path / name) for name in "abc")
    assert len([name for name in a if name.endswith(".nii.gz")]) == 4
    assert a == b
    scans = [name for name in a if name.endswith(".nii.gz")]
    assert all(a[name] != c.get(name) for name in scans)
    assert a["truth.csv"] != c["truth.csv"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """File hashes of a small cohort (seed 5) simulated in one go."""
    out = tmp_path_factory.mktemp("uninterrupted") / "cohort"
    assert main(["--out", str(out), "--seed", "5", *RESUMABLE]) == 0
    return file_hashes(out)


@pytest.mark.slow  # spawned workers import the simulator and load the anatomy: 18 s on 2 shared cores
def test_spawned_workers_as_on_macos_write_the_bytes_of_one_process(tmp_path: Path, uninterrupted: dict[str, str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawned, each worker loads the anatomy itself rather than sharing the parent's: the cohort must not change."""
    monkeypatch.setattr(sys, "platform", "darwin")
    assert main(["--out", str(tmp_path / "cohort"), "--seed", "5", "--jobs", "2", *RESUMABLE]) == 0
    assert file_hashes(tmp_path / "cohort") == uninterrupted


def interrupt_run(out: Path, seed: int, how: signal.Signals, *more: str) -> tuple[list[Path], int, str]:
    """Run simulate-cohort (with `more` arguments) in a subprocess and send its process group `how` once 2 of its 5
    scans are finished; return the finished scans, its exit status and its stderr."""
    command = [sys.executable, "-m", "elr_mri.simulate", "--out", str(out), "--seed", str(seed), *RESUMABLE, *more]
    run = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True,
                           cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 120
    while len(list((out / PROGRESS).glob("sub-*.json"))) < 2 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    os.killpg(run.pid, how)
    _, err = run.communicate(timeout=60)
    finished = [next(out.rglob(f"{record.stem}_*_T1w.nii.gz")) for record in (out / PROGRESS).glob("sub-*.json")]
    assert 2 <= len(finished) < 5 and not (out / "manifest.csv").exists(), "the run was not interrupted mid-cohort"
    return finished, run.returncode, err


def test_killed_run_resumes_to_the_same_bytes_keeping_its_finished_scans(
        tmp_path: Path, uninterrupted: dict[str, str], capsys: pytest.CaptureFixture) -> None:
    """The progress tells the kept scans apart, which took no time (they were counted as rendered: the time left
    on a resume was too short)."""
    out = tmp_path / "cohort"
    finished, _, _ = interrupt_run(out, 5, signal.SIGKILL)
    *kept, damaged = finished
    written = {scan: scan.stat().st_mtime_ns for scan in kept}
    damaged.write_bytes(damaged.read_bytes()[:1000])  # e.g. cut short by a full disk: must be rendered again
    assert main(["--out", str(out), "--seed", "5", *RESUMABLE]) == 0
    assert file_hashes(out) == uninterrupted  # no temporary files or progress records left either
    assert {scan: scan.stat().st_mtime_ns for scan in kept} == written
    assert f"simulate-cohort: 5/5 scans ({len(kept)} already done), 0 failed" in capsys.readouterr().err


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="finds the workers in /proc")
def test_a_worker_killed_mid_cohort_stops_the_run_in_one_line_and_a_rerun_finishes_it(
        tmp_path: Path, uninterrupted: dict[str, str]) -> None:
    """A worker the kernel's out-of-memory killer ends: multiprocessing.Pool waited forever for the scan it held."""
    out = tmp_path / "cohort"
    command = [sys.executable, "-m", "elr_mri.simulate", "--out", str(out), "--seed", "5", *RESUMABLE, "--jobs", "2"]
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 120
    while not list((out / PROGRESS).glob("sub-*.json")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    os.kill(children_of(run.pid)[0], signal.SIGKILL)
    try:
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()  # where it still waits for the dead worker's scan; its workers die with it
    assert run.returncode == 1 and err.splitlines()[-1] == (
        "elr-mri simulate-cohort: a worker process died (killed for memory? try fewer --jobs than 2 or a coarser "
        "--resolution); run the same command again: finished scans are kept"), err
    assert main(["--out", str(out), "--seed", "5", *RESUMABLE]) == 0
    assert file_hashes(out) == uninterrupted


def test_a_second_run_into_a_folder_being_written_is_refused(tmp_path: Path, uninterrupted: dict[str, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs with other seeds into one --out both finished (exit 0), each writing its scans over the other's
    under the truth.csv of the last to finish. The refusal names the first, a batch job's task here."""
    out = tmp_path / "cohort"
    command = [sys.executable, "-m", "elr_mri.simulate", "--out", str(out), "--seed", "5", *RESUMABLE]
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
                             env={**os.environ, "SLURM_JOB_ID": "4242"})
    deadline = time.monotonic() + 120
    while not list((out / PROGRESS).glob("sub-*.json")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before the second started"
    assert main(["--out", str(out), "--seed", "6", *RESUMABLE]) == 2
    assert capsys.readouterr().err == (f"elr-mri simulate-cohort: error: {out}: another simulate-cohort is writing "
                                       f"there (PID {first.pid} on {socket.gethostname()}, SLURM job 4242); let it "
                                       "finish (or stop it) first, or choose another --out\n")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert file_hashes(out) == uninterrupted  # the first run's cohort, untouched by the second


def test_rerun_with_other_settings_keeps_nothing_and_ctrl_c_says_how_to_go_on(tmp_path: Path,
                                                                              uninterrupted: dict[str, str]) -> None:
    out = tmp_path / "cohort"
    _, code, err = interrupt_run(out, 6, signal.SIGINT)
    assert code == 130 and "interrupted; run the same command again: finished scans are kept" in err
    assert "Traceback" not in err
    assert main(["--out", str(out), "--seed", "5", *RESUMABLE]) == 0
    assert file_hashes(out) == uninterrupted


def test_sigterm_stops_it_as_ctrl_c_does(tmp_path: Path) -> None:
    """A job's time limit (or `kill`) ended it with no word, exit -15; its forked workers, given the parent's handler,
    printed tracebacks of their own."""
    _, code, err = interrupt_run(tmp_path / "cohort", 6, signal.SIGTERM, "--jobs", "2")
    assert code == 143 and "Traceback" not in err, err
    assert err.endswith("elr-mri simulate-cohort: stopped by SIGTERM (a job's time limit, scancel or kill); run the "
                        "same command again: finished scans are kept\n")


def test_a_resolution_whose_holdout_voxels_preprocess_qc_flags_is_said_to_be_the_reason() -> None:
    """At --resolution 3 the holdout's scans are 3.75 mm left-right: preprocess flags them all as thick-sliced and
    evaluate warns of every one, which read as a broken holdout; the training site's 3 mm are within the limit."""
    sites = pd.DataFrame({"cohort": ["adni_sim", "nacc_sim"]})
    assert _thick_slice_note(sites, 2.0) is None and _thick_slice_note(sites, 2.4) is None
    assert _thick_slice_note(sites, 3.0) == (
        "at --resolution 3 the voxels of nacc_sim's up to 3.75 mm are coarser than the 3 mm above which preprocess QC "
        "flags a scan as thick-sliced, so it flags every one of them and evaluate warns of them: that is the "
        "--resolution asked for, not a bad scan; --resolution 2.4 or finer keeps every site under it")


def test_refuses_to_overwrite_a_cohort_without_the_flag(cohort: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--out", str(cohort), "--subjects", "1", "--holdout-subjects", "0"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_log_gets_a_line_of_progress_and_no_progress_gets_none(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """stderr to a file or a pipe (here, pytest's capture): the bar's carriage returns filled a cluster job's log."""
    one_scan = ["--subjects", "1", "--holdout-subjects", "0", "--resolution", "4"]
    assert main(["--out", str(tmp_path / "logged"), *one_scan]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and " simulate-cohort: 1/1 scans, 0 failed; all done in " in err
    assert main(["--out", str(tmp_path / "quiet"), *one_scan, "--no-progress"]) == 0
    assert "simulate-cohort: 1/1" not in capsys.readouterr().err


def test_overwrite_leaves_nothing_of_the_replaced_cohort(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cohort"
    assert main(["--out", str(out), "--subjects", "4", "--resolution", "4"]) == 0  # the holdout: 4 // 3 = 1 by default
    printed = capsys.readouterr()
    closing = printed.out.splitlines()[-1]  # the files the next step reads, named: no need to list --out
    note = "note: at --resolution 4 the voxels of adni_sim's up to 4 mm, nacc_sim's up to 5 mm are coarser than"
    assert printed.err.splitlines()[-1].startswith(note)  # told before preprocess flags every scan
    assert closing == (f"simulate-cohort: 5 scans -> {out / 'manifest.csv'}; by site: {out / 'manifest_adni_sim.csv'} "
                       f"(training site, 4 scans), {out / 'manifest_nacc_sim.csv'} (holdout site, 1 scan); "
                       f"{out / 'truth.csv'} for scoring only")
    assert main(["--out", str(out), "--subjects", "2", "--holdout-subjects", "0", "--resolution", "4",
                 "--overwrite"]) == 0
    assert "manifest_nacc_sim" not in capsys.readouterr().out  # the one it removed is not named
    manifest = pd.read_csv(out / "manifest.csv")
    assert not (out / "manifest_nacc_sim.csv").exists(), "a stale holdout manifest would be preprocessed"
    scans = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
    assert scans == sorted(manifest["path"]) and len(scans) == 2
    assert not (out / "nacc_sim").exists()


def test_overwrite_deletes_only_a_simulated_cohorts_own_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--overwrite deleted every file a manifest.csv in --out listed, absolute paths too: pointed at a preprocess
    folder by mistake, whose manifest lists the raw scans, it deleted the raw cohort."""
    raw = tmp_path / "raw.nii.gz"
    raw.write_bytes(b"a raw scan")
    elsewhere = tmp_path / "prep"
    elsewhere.mkdir()
    pd.DataFrame({"participant_id": ["sub-01"], "session_id": ["ses-M00"], "path": [str(raw)]}).to_csv(
        elsewhere / "manifest.csv", index=False)
    for overwrite in ([], ["--overwrite"]):  # without it, the advice was to pass --overwrite, which is then refused
        assert main(["--out", str(elsewhere), "--subjects", "1", "--holdout-subjects", "0", *overwrite]) == 2
        err = capsys.readouterr().err
        assert "no simulation.json: not a cohort simulate-cohort wrote" in err and "pass --overwrite" not in err
    assert raw.exists()
    out = tmp_path / "cohort"
    assert main(["--out", str(out), "--subjects", "2", "--holdout-subjects", "0", "--resolution", "4"]) == 0
    listed = pd.read_csv(out / "manifest.csv")
    pd.concat([listed, listed.head(1).assign(path=str(raw))]).to_csv(out / "manifest.csv", index=False)
    assert main(["--out", str(out), "--subjects", "1", "--holdout-subjects", "0", "--resolution", "4",
                 "--overwrite"]) == 0
    assert raw.exists()


def test_a_rerun_with_other_settings_removes_the_unfinished_scans_its_plan_does_not_write(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    finished, _, _ = interrupt_run(out, 6, signal.SIGINT)
    assert main(["--out", str(out), "--seed", "5", "--subjects", "1", "--holdout-subjects", "0",
                 "--resolution", "4"]) == 0
    scans = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
    assert scans == pd.read_csv(out / "manifest.csv")["path"].tolist() and len(finished) >= 1


def test_manifest_carries_noisy_labels_and_truth_keeps_the_rest(cohort: Path) -> None:
    manifest = pd.read_csv(cohort / "manifest.csv")
    truth = pd.read_csv(cohort / "truth.csv")
    # what a user of real data has, ages too (README: copy a simulated cohort's manifests instead of importing)
    assert list(manifest.columns) == ["participant_id", "session_id", "path", "diagnosis", "age", "sex", "cohort"]
    by_site = pd.concat([pd.read_csv(cohort / f"manifest_{site}.csv") for site in ("adni_sim", "nacc_sim")])
    pd.testing.assert_frame_equal(by_site.reset_index(drop=True), manifest)
    assert list(truth["participant_id"]) == list(manifest["participant_id"])
    assert (truth["diagnosis"] == manifest["diagnosis"]).all()
    assert truth["participant_id"].is_unique
    expected = {"true_diagnosis", "label_flipped", "severity", "head_scale", "intensity_scale",
                *(f"change_{r.name}" for r in REGIONS), *(f"volume_ratio_{r.name}" for r in REGIONS),
                *Pose((0, 0, 0), (0, 0, 0)).record()}
    assert expected <= set(truth.columns)
    assert set(manifest["diagnosis"]) <= {"CN", "MCI", "AD"} and set(manifest["sex"]) <= {"M", "F"}
    for site, n in (("adni_sim", TRAIN), ("nacc_sim", HOLDOUT)):
        rows = truth[truth["cohort"] == site]
        assert rows["true_diagnosis"].value_counts().to_dict() == {k: v for k, v in class_counts(n).items() if v}
        assert rows["label_flipped"].sum() == round(0.25 * n)
    assert (truth["label_flipped"] == (truth["diagnosis"] != truth["true_diagnosis"])).all()
    assert truth["age"].between(55, 95).all()
    assert truth[[f"pose_r{a}_deg" for a in "xyz"]].abs().max().max() <= MAX_ROTATION_DEG
    assert truth[[f"pose_t{a}_mm" for a in "xyz"]].abs().max().max() <= MAX_TRANSLATION_MM
    for row in manifest.itertuples():
        image = nib.load(cohort / row.path)
        profile = SITES[row.cohort]
        assert image.get_data_dtype() == np.int16
        assert "".join(nib.aff2axcodes(image.affine)) == profile.axis_codes
        assert image.header["qform_code"] == image.header["sform_code"] == 1  # scanner anatomy, for every reader
        zooms = sorted(np.round(image.header.get_zooms()[:3], 3))
        assert zooms == sorted(np.round(RESOLUTION * np.asarray(profile.voxel_factor), 3))


def test_label_noise_flips_only_neighbouring_stages_at_the_requested_rate() -> None:
    specs = plan_cohort(600, 300, 0.3, seed=1)
    for site, n in (("adni_sim", 600), ("nacc_sim", 300)):
        pairs = [(s.true_diagnosis, s.diagnosis) for s in specs if s.cohort == site]
        flips = [(t, g) for t, g in pairs if t != g]
        assert len(flips) == round(0.3 * n)
        assert not {("CN", "AD"), ("AD", "CN")} & set(flips)
        assert {("CN", "MCI"), ("MCI", "CN"), ("MCI", "AD"), ("AD", "MCI")} == set(flips)
    assert all(s.diagnosis == s.true_diagnosis for s in plan_cohort(60, 20, 0.0, seed=1))


def test_holdout_labels_are_noisy_too_whatever_the_severity_as_help_says(capsys: pytest.CaptureFixture) -> None:
    """--help said only "fraction of diagnoses flipped": nothing told a user that the holdout manifest's diagnoses are
    flipped as well, so scores against them are scores against noisy labels."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "at both sites (the holdout's too; truth.csv keeps the true ones)" in " ".join(capsys.readouterr().out.split())
    specs = [s for s in plan_cohort(60, 3000, 0.3, seed=2) if s.cohort == "nacc_sim"]
    for diagnosis in ("CN", "MCI", "AD"):  # about the rate in each class, whoever is flipped
        rows = [s for s in specs if s.true_diagnosis == diagnosis]
        flipped = [s.severity for s in rows if s.diagnosis != diagnosis]
        kept = [s.severity for s in rows if s.diagnosis == diagnosis]
        assert len(flipped) / len(rows) == pytest.approx(0.3, abs=0.04)
        assert np.mean(flipped) == pytest.approx(np.mean(kept), abs=0.03)


def test_raised_label_noise_keeps_every_earlier_flip_and_adds_only_neighbouring_ones() -> None:
    specs = plan_cohort(600, 0, 0.3, seed=1)
    truth, given = [s.true_diagnosis for s in specs], [s.diagnosis for s in specs]
    raised = raise_label_noise(np.random.default_rng(0), truth, given, 0.45)
    assert sum(t != r for t, r in zip(truth, raised)) == round(0.45 * 600)
    assert all(r == g for t, g, r in zip(truth, given, raised) if t != g)
    added = {(t, r) for t, g, r in zip(truth, given, raised) if t == g and r != t}
    assert added == {("CN", "MCI"), ("MCI", "CN"), ("MCI", "AD"), ("AD", "MCI")}
    with pytest.raises(ValueError, match="already wrong"):
        raise_label_noise(np.random.default_rng(0), truth, given, 0.2)


def test_atrophy_scale_scales_only_the_disease_and_keeps_every_other_draw() -> None:
    plain, plainer = plan_cohort(60, 0, 0.3, seed=1), plan_cohort(60, 0, 0.3, seed=1, atrophy_scale=1.6)
    for a, b in zip(plain, plainer):
        assert (a.diagnosis, a.true_diagnosis, a.age, a.severity, a.pose) == (b.diagnosis, b.true_diagnosis, b.age,
                                                                              b.severity, b.pose)
    region = next(r for r in REGIONS if r.name == "ventricle_l")
    change = np.array([(a.changes[region.name], b.changes[region.name]) for a, b in zip(plain, plainer)])
    aging = np.array([region.per_year * (a.age - REFERENCE_AGE) for a in plain])
    unclipped = ~np.isin(change, CHANGE_BOUNDS).any(axis=1)
    assert unclipped.sum() > 50
    np.testing.assert_allclose((change[:, 1] - aging)[unclipped], 1.6 * (change[:, 0] - aging)[unclipped], atol=1e-9)


def test_class_counts_keep_adnis_proportions_giving_the_leftover_scans_to_the_largest_remainders() -> None:
    """ADNI-1's 229/398/192 of 819 at its own size; of 10 scans the exact shares are 2.80/4.86/2.34, whose floors
    leave two scans for the two largest remainders, MCI's (0.86) and CN's (0.80)."""
    assert class_counts(819) == {"CN": 229, "MCI": 398, "AD": 192}
    assert class_counts(10) == {"CN": 3, "MCI": 5, "AD": 2}


def test_each_subject_is_drawn_by_its_true_diagnosis_whatever_label_it_is_given() -> None:
    """Ages (ADNI: CN 77 ± 5, MCI 76 ± 7, AD 77 ± 7), sexes (men: 52%, 64%, 53%) and disease severity (CN |N(0, 0.1)|,
    mean 0.1·√(2/π) = 0.08; MCI 0.45; AD 1, never below 0) follow the true diagnosis; a flipped label is the
    clinician's mistake, not the subject's."""
    specs = plan_cohort(3000, 0, 0.3, seed=0)
    expected = {"CN": (77.0, 5.0, 0.52, 0.1 * np.sqrt(2 / np.pi)), "MCI": (76.0, 7.0, 0.64, 0.45),
                "AD": (77.0, 7.0, 0.53, 1.0)}
    for diagnosis, (age, age_sd, men, severity) in expected.items():
        rows = [s for s in specs if s.true_diagnosis == diagnosis]
        ages, severities = np.array([s.age for s in rows]), np.array([s.severity for s in rows])
        assert ages.mean() == pytest.approx(age, abs=0.6) and ages.std() == pytest.approx(age_sd, abs=0.35)
        assert ages.min() >= 55 and ages.max() <= 95  # kept within 55-95: N(76, 7) passes 95 once in 300
        assert np.mean([s.sex == "M" for s in rows]) == pytest.approx(men, abs=0.05)
        assert severities.mean() == pytest.approx(severity, abs=0.03) and severities.min() >= 0


def test_round_rate_n_labels_flip_and_the_limits_of_the_rate_and_the_atrophy_scale_are_allowed() -> None:
    """round(rate·n) labels are flipped: 0.3 of 6 scans is 2 (1.8), not 1; the ranges --help gives, a rate in [0, 1]
    and a scale in (0, 2], include their ends: a rate of 1 flips every label."""
    assert sum(s.diagnosis != s.true_diagnosis for s in plan_cohort(6, 0, 0.3, seed=0)) == 2
    assert all(s.diagnosis != s.true_diagnosis for s in plan_cohort(10, 0, 1.0, seed=0, atrophy_scale=2.0))

@pytest.mark.parametrize(("flags", "message"), [(["--subjects", "3", "--atrophy-scale", "0"],
                                               "--atrophy-scale 0: the atrophy scale must be within (0, 2]"),
                                              (["--subjects", "3", "--label-noise", "1.5"],
                                               "--label-noise 1.5: the share of flipped diagnoses must be within"),
                                              (["--subjects", "0"], "--subjects 0: a cohort needs at least 1"),
                                              (["--holdout-subjects", "-1"], "--holdout-subjects -1: give 0 or more"),
                                              (["--subjects", "3", "--jobs", "0"], "--jobs 0: need at least 1 worker"),
                                              (["--subjects", "3", "--seed", "-1"], "--seed -1: give 0 or more")])
def test_out_of_range_flags_are_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str],
                                               message: str) -> None:
    assert main(["--out", str(tmp_path / "c"), *flags]) == 2
    printed = capsys.readouterr().err.strip()
    assert "\n" not in printed and message in printed
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(("region", "change", "untouched"), [("hippocampus_l", -0.3, "hippocampus_r"),
                                                         ("ventricle_r", 1.0, "ventricle_l"),
                                                         ("brain", -0.05, None)])
def test_atrophy_changes_region_volume_by_the_requested_amount(region: str, change: float,
                                                               untouched: str | None) -> None:
    anatomy = load_anatomy("mni152", RESOLUTION)
    changes = {r.name: 0.0 for r in REGIONS} | {region: change}
    displacement = atrophy_displacement(anatomy.grid_affine, anatomy.grid_shape, changes)
    ratios = volume_ratios(anatomy.grid_affine, displacement)
    assert ratios[region] == pytest.approx(1.0 + change, rel=0.03)
    if untouched is None:  # global atrophy shrinks every structure inside the brain
        assert all(ratio < 0.97 for ratio in ratios.values())
    else:  # a local atrophy leaves the other hemisphere alone
        assert ratios[untouched] == pytest.approx(1.0, abs=0.01)


def template_grid() -> tuple[np.ndarray, tuple[int, int, int], np.ndarray]:
    """A 3 mm RAS grid over the brain in MNI space and its world points."""
    affine, shape = box_affine(np.array([0.0, -18.0, 12.0]), np.array([150.0, 180.0, 140.0]),
                               np.full(3, RESOLUTION), "RAS")
    return affine, shape, grid_points(shape, affine)


def scan_in_template_space(scan: nib.Nifti1Image, pose: Pose, points: np.ndarray) -> np.ndarray:
    """The scan resampled at template points through the recorded pose (head y sits at x = P·y)."""
    return sample(np.asarray(scan.dataobj, np.float32), scan.affine, apply_affine(pose.matrix(), points))


def test_pose_is_a_real_motion_that_the_recorded_transform_undoes(cohort: Path) -> None:
    truth = pd.read_csv(cohort / "truth.csv")
    specs = plan_cohort(TRAIN, HOLDOUT, 0.25, SEED)
    anatomy = load_anatomy("mni152", RESOLUTION)
    affine, shape, points = template_grid()
    for index in (0, TRAIN):  # one scan per site
        row, spec = truth.iloc[index], specs[index]
        drawn = subject_shape(spec, anatomy, SEED)
        assert row["head_scale"] == pytest.approx(drawn.head_scale, abs=1e-5)  # truth.csv's, to its 5 decimals
        clean = sample_subject(anatomy, drawn, affine, shape).ravel()
        scan = nib.load(cohort / row["path"])
        undone = scan_in_template_space(scan, Pose.from_record(row), points).ravel()
        ignored = sample(np.asarray(scan.dataobj, np.float32), scan.affine, points).ravel()
        assert np.corrcoef(undone, clean)[0, 1] > 0.95
        assert np.corrcoef(ignored, clean)[0, 1] < 0.85


def test_a_large_head_is_drawn_whole_not_cut_off_at_the_edge_of_the_support() -> None:
    """Only voxels in the template's head dilated by 8 steps of a 6-neighbour cross were drawn (16 mm along an axis,
    9 mm along a diagonal): the largest head of 3000 (scale 1.13) lost 41 mL of its brain's edge at 2 mm, and 20 of the
    first 40 lost some (median 0.3 mL)."""
    anatomy = load_anatomy("mni152", RESOLUTION)
    shape = subject_shape(plan_cohort(3000, 0, 0.3, seed=0)[639], anatomy, 0)
    assert shape.head_scale > 1.12
    affine, grid = scanner_grid(SITES["adni_sim"], RESOLUTION)
    drawn = sample_subject(anatomy, shape, affine, grid)
    assert drawn.min() >= 0.0  # a magnitude: cubic interpolation's ringing below 0 at the edge is cut
    points = grid_points(grid, affine)
    displacement = sample(shape.displacement, anatomy.grid_affine, points, fill=None)
    whole = sample(anatomy.coefficients, anatomy.affine, points + displacement, order=3, prefiltered=True)
    low = anatomy.grid_affine[:3, 3]  # below it (z −72 mm) the template ends: a grown brainstem stops there
    high = low + DEFORMATION_SPACING_MM * (np.asarray(anatomy.grid_shape) - 1)
    head = (whole > 0.05) & ((points >= low) & (points <= high)).all(axis=-1)
    assert head.sum() > 50_000
    np.testing.assert_allclose(drawn[head], whole[head], rtol=1e-6)


def test_ad_and_cn_scans_differ_in_ventricular_csf_clearly_above_chance(cohort: Path) -> None:
    """A one-feature classifier on the written scans: CSF voxels around the lateral ventricles after
    undoing the pose (a crude ventricular volume) ranks true AD above true CN."""
    truth = pd.read_csv(cohort / "truth.csv")
    truth = truth[(truth["cohort"] == "adni_sim") & truth["true_diagnosis"].isin(["CN", "AD"])]
    _, _, points = template_grid()
    brain = region_mask(REGIONS[-1], points)
    around = {r.name: r.normalised_radius2(points) <= 1.5**2 for r in REGIONS}
    ventricles = around["ventricle_l"] | around["ventricle_r"]
    csf = []
    for _, row in truth.iterrows():
        volume = scan_in_template_space(nib.load(cohort / row["path"]), Pose.from_record(row), points)
        csf.append(np.sum(volume[ventricles] < 0.4 * np.percentile(volume[brain], 90)))
    assert roc_auc_score(truth["true_diagnosis"] == "AD", csf) > 0.75
