"""`make demo` in miniature: the whole MRI pipeline on a few simulated subjects at 2 mm, one epoch.

simulate → preprocess (ANTs) → regional volumes (SyN) → CE and ELR training → evaluation on the
test split and the NACC-like site → linear baselines → report.md. A few minutes on 2 cores (2.5-7 measured).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import pandas as pd
import pytest
import yaml

pytest.importorskip("ants")

ROOT = Path(__file__).parents[1]
DEMO = ROOT / "scripts" / "mri_demo.py"


def _run(*command: str) -> subprocess.CompletedProcess:
    """`python COMMAND...` from the project root, with this checkout first on PYTHONPATH: a script run by its path
    imports `elr_mri` and `preprocess` from the environment, which in a clone sharing another tree's editable venv is
    the other tree's code, so the demo tests tested that."""
    return subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=ROOT, env=_this_checkout())


def _this_checkout() -> dict[str, str]:
    """The environment with this checkout first on PYTHONPATH (see `_run`)."""
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *inherited])}


def _demo(*args: str) -> subprocess.CompletedProcess:
    return _run(str(DEMO), *args)


def test_scripts_run_by_the_demo_tests_import_this_checkouts_code(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"  # run by its path, as the demo: its folder, not the project, starts sys.path
    probe.write_text("import elr_mri, preprocess\nprint(elr_mri.__file__)\nprint(preprocess.__file__)\n")
    result = _run(str(probe))
    assert result.returncode == 0, result.stderr[-2000:]
    assert [Path(path).resolve().parents[1] for path in result.stdout.split()] == [ROOT.resolve()] * 2


def test_demo_runs_end_to_end_and_reports_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # The smallest cohort with a participant in each split, two given and two true diagnoses among the test
    # participants and at each site: fewer, and a split or an interval below is missing. Seed 1 has one at 9 + 2
    # subjects (seed 0, the default, needs 9 + 3). Every scan costs an ANTs registration and a SyN registration, most
    # of this test's time (the SyN at 4 mm: 24.6 s -> 5.8 s for 3 scans). 100 resamples, not the default 1000, still
    # give every interval checked below (--bootstrap reaches evaluate, the baselines and the report): the baselines
    # and evaluations took 25.9 -> 17.7 CPU s of this demo's outputs.
    flags = ["--out", str(out), "--subjects", "9", "--holdout-subjects", "2", "--seed", "1", "--epochs", "1",
             "--volumes-mm", "4", "--jobs", "2", "--bootstrap", "100"]
    result = _demo(*flags)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / "report.md").read_text()
    for heading in ("Cohort and label noise", "Preprocessing", "Regional volumes against the simulated truth",
                    "Training", "Results", "Results against the true diagnosis", "Suspected mislabels",
                    "Where the time went"):
        assert f"## {heading}" in report or f"# {heading}" in report, heading
    for method in ("| ce |", "| elr |", "| volumes_logreg |", "| voxels_linear_svm |"):
        assert method in report, method
    assert "ELR minus CE against the truth, paired over the same participants" in report
    assert "| evaluated on | accuracy | balanced accuracy | macro AUC |" in report
    paired_rows = [line for line in report.splitlines() if line.startswith(("| test | ", "| holdout_manifest | "))]
    # three differences each: an interval, or (a 1-epoch CE and ELR calling everyone alike) the count of participants
    paired_cells = [cell for line in paired_rows for cell in line.strip(" |").split(" | ")[1:]]
    assert len(paired_rows) == 2 and len(paired_cells) == 6
    assert all("[" in cell or "(identical predictions on all " in cell for cell in paired_cells), paired_cells
    assert "noisy labels (data.val_fraction), as the paper." in report  # the whole selection rule, not its first line
    seconds = json.loads((out / "demo_timings.json").read_text())  # kept for a resumed demo's report
    assert {"simulate", "preprocess", "train ce", "evaluate elr"} <= set(seconds) and seconds["train ce"] > 0
    volumes = pd.read_csv(out / "preprocessed" / "volumes.csv")
    assert len(volumes) == 11 and (volumes["brain_ratio"].between(0.7, 1.4)).all()
    assert "to MNI152 (syn at 4 mm)" in report  # --volumes-mm reached the registration, and the report says so

    rerun = _demo(*flags[:3], "12", *flags[4:])
    assert rerun.returncode == 2 and "made with --subjects 9;" in rerun.stderr  # not the old cohort reported as new
    for loss in ("ce", "elr"):
        assert (out / "runs" / loss / "eval-test" / "summary.json").exists()
        assert (out / "runs" / loss / "eval-holdout_manifest" / "summary.json").exists()


def test_settings_out_of_range_are_refused_before_the_folder_records_them(tmp_path: Path) -> None:
    """--label-noise 1.5 was written into demo_settings.json before the simulator refused it, and the corrected
    rerun was then refused as another demo's folder."""
    out = tmp_path / "demo"
    for flags in (["--label-noise", "1.5"], ["--seed", "-1"], ["--seed", str(2**32)], ["--volumes-mm", "0.5"],
                  ["--bootstrap", "1"]):
        result = _demo("--out", str(out), *flags)
        assert result.returncode == 2 and "must be" in result.stderr and not out.exists()


def test_an_out_that_is_a_file_is_called_a_file(tmp_path: Path) -> None:
    """It was "cannot create it (File exists); pass a writable folder", as if a folder were there but read-only; and,
    unlike the demo's other mistakes of its user (a read-only --out), it ended with exit 1 and no `mri_demo.py: error:`
    (as `elr-mri`'s commands and the other scripts say theirs)."""
    out = tmp_path / "demo.txt"
    out.write_text("notes\n")
    result = _demo("--out", str(out))
    assert result.returncode == 2 and result.stderr == (f"mri_demo.py: error: --out {out}: is a file; pass a folder "
                                                        "for the demo (a new one is made)\n")
    assert out.read_text() == "notes\n"


def test_a_folder_of_another_demo_is_refused_as_a_users_mistake(tmp_path: Path) -> None:
    """Refused in one line but with exit 1 and no `mri_demo.py: error:`, as if the demo had failed part way."""
    out = tmp_path / "demo"
    out.mkdir()
    settings = {"subjects": 9, "holdout_subjects": 16, "label_noise": 0.3, "epochs": 8, "seed": 0}
    (out / "demo_settings.json").write_text(json.dumps(settings))
    result = _demo("--out", str(out))
    assert result.returncode == 2 and result.stderr == (f"mri_demo.py: error: {out} holds a demo made with --subjects "
                                                        "9; rerun with those to resume it, or pass another --out (or "
                                                        "delete that folder) to start anew\n")


def test_a_second_demo_into_a_folder_one_is_writing_is_refused(tmp_path: Path) -> None:
    """`make demo` in a second terminal reran preprocess under the first (whose volumes or training then found no
    manifest.csv) and added its seconds to the first's timings. The first is imitated by a process holding the lock."""
    out = tmp_path / "demo"
    (out / "cohort").mkdir(parents=True)
    (out / "cohort" / "manifest.csv").write_text("participant_id\n")  # not simulated again: a demo let in stops soon
    holding = ("import sys, time; from pathlib import Path; from preprocess.folder_locks import held_lock\n"
               "with held_lock(Path(sys.argv[1]) / '.demo.lock', Path(sys.argv[1]), 'x'):\n"
               "    print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", holding, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = _demo("--out", str(out))
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2 and result.stderr.startswith(f"mri_demo.py: error: {out}: another mri_demo.py is "
                                                               f"writing there (PID {holder.pid} on ")
    assert result.stderr.endswith("let it finish (or stop it) first, or pass another --out\n")
    assert sorted(path.name for path in out.iterdir()) == [".demo.lock", "cohort", "demo_settings.json"]


def test_sigterm_while_simulating_says_stopped_not_failed(tmp_path: Path) -> None:
    """simulate-cohort's exit 143 read as any other code: a job's time limit printed 'simulate-cohort failed (exit
    143)' and exit 1, where Ctrl-C's 130 said how to go on. A cohort of 400 is far from simulated when SIGTERM lands."""
    out = tmp_path / "demo"
    demo = subprocess.Popen([sys.executable, str(DEMO), "--out", str(out), "--subjects", "400", "--jobs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_this_checkout())
    while demo.poll() is None and not (out / "cohort").exists():  # simulate-cohort's SIGTERM handler is set by then
        time.sleep(0.05)
    demo.send_signal(signal.SIGTERM)
    _, stderr = demo.communicate()
    assert demo.returncode == 143, stderr
    assert "failed" not in stderr
    _assert_one_way_on(stderr)


def _assert_one_way_on(stderr: str) -> None:
    """The demo's stop line alone says how to go on: a step's own (simulate-cohort's, preprocess's) told the user to
    rerun `elr-mri preprocess`, then the demo's line to rerun the demo, which is what resumes every stage."""
    assert stderr.count("run the same command again") == 1, stderr
    assert stderr.endswith("mri_demo.py: stopped by SIGTERM (a job's time limit, scancel or kill); run the same "
                           "command again: every stage resumes where it stopped\n")


@pytest.mark.slow
def test_sigterm_while_preprocessing_says_how_to_go_on_once(tmp_path: Path) -> None:
    """A demo's 11 scans simulated (about 10 s), SIGTERM lands in preprocess, which writes its folder under its own
    handler and takes minutes to register them."""
    out = tmp_path / "demo"
    demo = subprocess.Popen([sys.executable, str(DEMO), "--out", str(out), "--subjects", "9", "--holdout-subjects", "2",
                             "--seed", "1", "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=_this_checkout())
    while demo.poll() is None and not (out / "preprocessed").exists():
        time.sleep(0.05)
    demo.send_signal(signal.SIGTERM)
    _, stderr = demo.communicate()
    assert demo.returncode == 143, stderr
    _assert_one_way_on(stderr)


# A demo of stand-in stages that signal the process (argv[3]) inside the demo's stage runner and wait. With more
# arguments the first is a training stage (timed only; training acts on the signal at its next step), and the
# stages named after it follow.
_SIGNALLED_STAGE = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, "scripts")
import mri_demo
out, stage, signal_name, then_stages = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
timings = mri_demo._Timings(out / "demo_timings.json")
def demo():
    if then_stages:
        with timings.stage(stage):
            os.kill(os.getpid(), getattr(signal, signal_name))
    else:
        with mri_demo._stage(timings, stage):
            os.kill(os.getpid(), getattr(signal, signal_name))
            time.sleep(60)
    for name in then_stages:
        with mri_demo._stage(timings, name):
            print(name, "ran")
mri_demo._run_saying_how_it_ended(demo)
"""


@pytest.mark.parametrize(("stage", "signal_name", "code", "how"), [
    ("volumes", "SIGTERM", 143, "stopped by SIGTERM (a job's time limit, scancel or kill)"),
    ("baselines", "SIGINT", 130, "interrupted")])
def test_a_signal_in_any_later_stage_stops_it_saying_how_to_go_on(tmp_path: Path, stage: str, signal_name: str,
                                                                  code: int, how: str) -> None:
    """Only simulate and preprocess set a SIGTERM handler (their own): a job's time limit in the regional volumes,
    evaluation, baselines or report stage ended the demo with exit 143 and no line at all."""
    result = _run("-c", _SIGNALLED_STAGE, str(tmp_path), stage, signal_name)
    assert result.returncode == code, result.stderr
    assert result.stderr == f"mri_demo.py: {how}; run the same command again: every stage resumes where it stopped\n"
    assert stage in json.loads((tmp_path / "demo_timings.json").read_text())  # its seconds still count


def test_a_sigterm_during_training_stops_the_demo_before_its_next_stage(tmp_path: Path) -> None:
    """Training records a SIGTERM and stops at its next step; one landing after the last step (or while a finished
    run is read back) must stop the demo at the next stage's start, not be forgotten there."""
    result = _run("-c", _SIGNALLED_STAGE, str(tmp_path), "train ce", "SIGTERM", "evaluate ce")
    assert result.returncode == 143, result.stderr
    assert result.stdout == "" and result.stderr.startswith("mri_demo.py: stopped by SIGTERM")


def test_a_users_problem_is_one_line_not_a_traceback(tmp_path: Path, read_only: Callable[[Path], None]) -> None:
    """An --out on read-only storage, or a run's config.yaml cut short (refused by the report and the runs' readers),
    ended the demo with a traceback; `elr-mri` says such problems in one line."""
    out = tmp_path / "demo"
    read_only(out)
    result = _demo("--out", str(out))
    assert result.returncode == 2 and result.stderr.startswith("mri_demo.py: error: ")
    assert len(result.stderr.splitlines()) == 1 and str(out / "demo_settings.json") in result.stderr


def test_only_flags_that_leave_one_diagnosis_skip_the_baselines(tmp_path: Path,
                                                                 import_script: Callable[[str], ModuleType]) -> None:
    """Every ValueError of the baselines was printed as "baselines skipped" and the demo went on, so a run's
    config.yaml cut short (or any other problem) left a report without baselines, said only in passing on stdout."""
    from elr_mri.config import ConfigError

    demo = import_script("mri_demo")
    run = tmp_path / "ce"
    run.mkdir()
    (run / "config.yaml").write_text("data:\n  name: mri\n")  # cut short before its last key, selection_rule
    with pytest.raises(ConfigError, match="no selection_rule"):
        demo._baselines({"ce": run, "elr": run}, tmp_path / "volumes.csv", tmp_path / "holdout.csv", n_boot=200)


def _preprocessed_cohort(out: Path, scans: pd.DataFrame) -> tuple[Path, Path]:
    """The demo's preprocessed/manifest.csv and cohort/truth.csv under `out` for `scans` (their diagnoses the true
    ones), what `_split_sites` reads; returns the two folders."""
    cohort, processed = out / "cohort", out / "preprocessed"
    cohort.mkdir(parents=True)
    processed.mkdir()
    scans.to_csv(processed / "manifest.csv", index=False)
    scans.rename(columns={"diagnosis": "true_diagnosis"}).to_csv(cohort / "truth.csv", index=False)
    return processed, cohort


def test_cpu_small_trains_on_the_demos_training_site_alone(tmp_path: Path,
                                                          import_script: Callable[[str], ModuleType]) -> None:
    """configs/adni/cpu_small.yaml named the demo's preprocessed/manifest.csv, which holds both sites: the config
    run as it stands after `make demo` trained on the NACC-like holdout's 16 scans too (10 in its training split),
    and only `evaluate --manifest demo/holdout_manifest.csv` refused it, 16 participants shared."""
    demo = import_script("mri_demo")
    out = tmp_path / "demo"
    scans = pd.DataFrame({"participant_id": ["sub-ADNISIM0001", "sub-NACCSIM0001"], "session_id": ["ses-M00"] * 2,
                          "diagnosis": ["CN", "AD"], "cohort": ["adni_sim", "nacc_sim"]})
    demo._split_sites(out, *_preprocessed_cohort(out, scans))
    manifest = yaml.safe_load((ROOT / "configs" / "adni" / "cpu_small.yaml").read_text())["data"]["mri"]["manifest"]
    assert manifest.startswith("demo/")  # relative to the project, where `make demo` writes
    assert set(pd.read_csv(tmp_path / manifest)["cohort"]) == {"adni_sim"}


def test_a_full_disk_leaves_no_site_manifest_cut_short_and_names_it(tmp_path: Path,
                                                                   import_script: Callable[[str], ModuleType]) -> None:
    """The sites' manifests were written in place by pandas: a disk that refused part of one (here a file size limit,
    which refuses as a full disk does) left it cut short, where cpu_small.yaml reads it, and the OS's error named no
    file. Now the earlier manifest stays whole and the error names the file."""
    import resource

    demo = import_script("mri_demo")
    out = tmp_path / "demo"
    ids = [f"sub-ADNISIM{k:04d}" for k in range(2000)]
    scans = pd.DataFrame({"participant_id": ids, "session_id": "ses-M00", "diagnosis": "CN", "cohort": "adni_sim"})
    processed, cohort = _preprocessed_cohort(out, scans)
    train_csv, _ = demo._split_sites(out, processed, cohort)
    written = train_csv.read_bytes()
    scans.assign(diagnosis="AD").to_csv(processed / "manifest.csv", index=False)  # what the rerun writes differs
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(written) // 2, hard))
    try:
        with pytest.raises(OSError) as refused:
            demo._split_sites(out, processed, cohort)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert refused.value.filename == str(train_csv)
    assert train_csv.read_bytes() == written
    assert not list(out.glob(".tmp*"))


def test_label_noise_is_said_to_flip_the_holdout_site_too() -> None:
    """The simulator flips both sites' diagnoses at --label-noise (the report's "Share of scans' labels flipped" lists
    each), so the demo's holdout is scored against noisy labels too; --help had said only the training site's."""
    from elr_mri.simulate.cohort import HOLDOUT_SITE, plan_cohort

    holdout = [spec for spec in plan_cohort(12, 8, 0.25, seed=0) if spec.cohort == HOLDOUT_SITE]
    assert sum(spec.diagnosis != spec.true_diagnosis for spec in holdout) == 2
    result = _demo("--help")
    assert result.returncode == 0 and "training-site diagnoses" not in result.stdout
    assert "holdout site alike" in " ".join(result.stdout.split())


def test_the_report_calls_differences_chance_only_at_a_size_where_the_cnn_did_not_learn() -> None:
    """A fixed sentence said "any difference here is chance" for a 200-subject demo too, beside its own verdicts."""
    from elr_mri.report_results import _size_caveat

    assert "is chance" in _size_caveat(34) and "is chance" not in _size_caveat(140)
