"""scripts/mri_n1200.py assemble: the merged cohort keeps IDs unique, the evaluation participants of the
first cohort, and the noise and split sizes it promises. Small planned cohorts, no images rendered."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from elr_mri.simulate.cohort import plan_cohort


@pytest.fixture(scope="module")
def recipe(import_script):
    return import_script("mri_n1200")


def _fake_preprocessed_cohort(folder: Path, subjects: int, holdout: int, seed: int) -> None:
    """A cohort folder as simulate-cohort + preprocess leave it, with empty files standing in for volumes."""
    (folder / "cohort").mkdir(parents=True)
    (folder / "preprocessed").mkdir()
    specs = plan_cohort(subjects, holdout, 0.3, seed)
    rows = []
    for spec in specs:
        volume = folder / "preprocessed" / f"{spec.participant_id}.nii.gz"
        volume.touch()
        rows.append({"participant_id": spec.participant_id, "session_id": spec.session_id, "path": "x.nii.gz",
                     "diagnosis": spec.diagnosis, "age": spec.age, "sex": spec.sex, "cohort": spec.cohort,
                     "processed_path": str(volume), "status": "ok"})
    pd.DataFrame(rows).to_csv(folder / "preprocessed" / "manifest.csv", index=False)
    truth = [{"participant_id": s.participant_id, "true_diagnosis": s.true_diagnosis} for s in specs]
    pd.DataFrame(truth).to_csv(folder / "cohort" / "truth.csv", index=False)


def test_assemble_merges_both_cohorts_and_keeps_the_first_cohorts_evaluation_split(recipe, tmp_path: Path) -> None:
    _fake_preprocessed_cohort(tmp_path / "first", 120, 10, seed=1)
    _fake_preprocessed_cohort(tmp_path / "added", 100, 0, seed=2)
    recipe.main(["--work", str(tmp_path), "assemble"])

    given = pd.read_csv(tmp_path / "train_given.csv")
    assert len(given) == 220 and given["participant_id"].is_unique
    assert given["participant_id"].str.startswith("sub-ADNISIMB").sum() == 100
    assert (pd.read_csv(tmp_path / "train_clean.csv")["diagnosis"] == given["true_diagnosis"]).all()
    holdout = pd.read_csv(tmp_path / "holdout_manifest.csv")
    assert len(holdout) == 10 and "true_diagnosis" not in holdout
    assert pd.read_csv(tmp_path / "truth.csv")["participant_id"].is_unique

    raised = pd.read_csv(tmp_path / "train_given45.csv")
    assert (raised["diagnosis"] != raised["true_diagnosis"]).sum() == round(0.45 * 220)

    splits = pd.read_csv(tmp_path / "splits.csv").set_index("participant_id")["split"]
    added = given["participant_id"][given["participant_id"].str.startswith("sub-ADNISIMB")]
    assert (splits[added] == "train").all()
    first_counts = splits.drop(added).value_counts()
    assert first_counts["test"] == 24 and first_counts["val"] > 0
    val110 = pd.read_csv(tmp_path / "splits_val110.csv").set_index("participant_id")["split"]
    assert (val110 == "val").sum() == (splits == "val").sum() + recipe.MOVED_TO_VALIDATION
    assert (val110[splits == "test"] == "test").all()


def test_assemble_first_only_leaves_the_added_cohort_out(recipe, tmp_path: Path) -> None:
    _fake_preprocessed_cohort(tmp_path / "first", 120, 10, seed=1)  # no added cohort on disk at all
    recipe.main(["--work", str(tmp_path), "assemble", "--first-only"])
    given = pd.read_csv(tmp_path / "train_given.csv")
    assert len(given) == 120 and not given["participant_id"].str.startswith("sub-ADNISIMB").any()
    raised = pd.read_csv(tmp_path / "train_given45.csv")
    assert (raised["diagnosis"] != raised["true_diagnosis"]).sum() == round(0.45 * 120)
    splits = pd.read_csv(tmp_path / "splits.csv")
    assert len(splits) == 120 and (splits["split"] == "test").sum() == 24


def test_extra_sets_get_their_own_ids_one_manifest_per_site_and_a_truth_file(recipe, tmp_path: Path) -> None:
    _fake_preprocessed_cohort(tmp_path / "first", 120, 10, seed=1)
    _fake_preprocessed_cohort(tmp_path / "extra", 30, 20, seed=3)
    recipe.main(["--work", str(tmp_path), "assemble", "--first-only"])
    recipe.write_extra_sets(tmp_path)

    test = pd.read_csv(tmp_path / "extra_test_manifest.csv")
    holdout = pd.read_csv(tmp_path / "extra_holdout_manifest.csv")
    assert len(test) == 30 and test["participant_id"].str.startswith("sub-ADNISIMC").all()
    assert len(holdout) == 20 and holdout["participant_id"].str.startswith("sub-NACCSIMC").all()
    assert "true_diagnosis" not in test and "true_diagnosis" not in holdout
    truth = pd.read_csv(tmp_path / "truth_extra.csv")
    earlier = pd.read_csv(tmp_path / "truth.csv")
    assert len(truth) == 50 and not set(truth["participant_id"]) & set(earlier["participant_id"])


def test_a_step_run_too_early_or_a_failed_command_ends_as_a_users_mistake(recipe, tmp_path: Path) -> None:
    """A step before the one it needs ended with exit 1 and no `mri_n1200.py: error:` (a `sys.exit` of the text), and
    a failed `elr-mri` command, after its own one line, with a traceback of the call and exit 1."""
    with pytest.raises(FileNotFoundError, match=r"splits_val110.csv is missing: run `python scripts/mri_n1200.py "
                                                r"assemble` first"):
        recipe.main(["--work", str(tmp_path), "train", "x", "--loss", "ce"])
    with pytest.raises(SystemExit) as stopped:
        recipe._elr_mri("tarin")  # refused by elr-mri's parser: exit 2
    assert stopped.value.code == 2


def test_train_into_a_run_of_other_settings_is_refused_not_evaluated_as_the_run_asked_for(recipe,
                                                                                            tmp_path: Path) -> None:
    """`train NAME --loss ce` over a finished ELR run of that name evaluated the ELR run as the CE one asked for (a
    killed one was resumed as it was): the other scripts refuse a run folder of other settings, naming the setting."""
    import yaml

    from elr_mri.config import SELECTION_RULE_KEY, ConfigError, config_to_dict, load_config

    (tmp_path / "splits_val110.csv").write_text("participant_id,split\n")
    elr = ["loss.name=elr", f"data.mri.manifest={tmp_path / 'train_given.csv'}", "train.epochs=24", "seed=0",
           f"data.mri.splits={tmp_path / 'splits_val110.csv'}", "train.threads=1"]  # what `train r1 --loss elr` sets
    settings = config_to_dict(load_config(recipe.CONFIG, elr))
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({**settings, SELECTION_RULE_KEY: "best validation accuracy"}))
    (run / "summary.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"r1 was trained with loss.name = 'elr'; .* start a new run for loss.name = "
                                          r"'ce'"):
        recipe.main(["--work", str(tmp_path), "train", "r1", "--loss", "ce"])


def test_sigterm_to_the_script_stops_the_command_it_waits_on_as_ctrl_c_does(recipe, import_script, tmp_path: Path,
                                                                             capsys) -> None:
    """A job's time limit signals the script alone: the SIGTERM was recorded and left waiting while the step's
    `elr-mri` command ran on to its end, and every later step after it, and the script then ended with exit 0. The
    command is sent SIGTERM, on which every `elr-mri` command stops as on Ctrl-C: started with `&` from a script, it
    ignores the SIGINT it was sent before, and ran on until killed."""
    import signal
    import sys

    marks = tmp_path / "command.txt"
    command = ("import os, pathlib, signal, sys, time\n"
               f"marks = pathlib.Path({str(marks)!r})\n"
               "def stop(signum, frame):\n"
               "    marks.write_text(f'stopped by {signal.Signals(signum).name}')\n"
               "    sys.exit(143)\n"
               "signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `&` starts it\n"
               "signal.signal(signal.SIGTERM, stop)\n"
               "marks.write_text('started')\n"
               "os.kill(os.getppid(), signal.SIGTERM)  # as a batch system signals the script\n"
               "time.sleep(90)\n")
    from elr_mri.stopping import terminating_at_safe_points

    try:
        with pytest.raises(SystemExit) as stopped:
            import_script("paper_runs").run_script(lambda: recipe._run([sys.executable, "-c", command]))
    finally:
        with terminating_at_safe_points():  # clears the SIGTERM recorded here, which a later test's training would
            pass  # take for its own and stop at its first step
    assert stopped.value.code == 128 + signal.SIGTERM and "stopped by SIGTERM" in capsys.readouterr().err
    assert marks.read_text() == "stopped by SIGTERM"
