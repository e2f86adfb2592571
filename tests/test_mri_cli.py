"""The MRI path through the CLI on tiny volumes the test writes: train → evaluate → explain."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from elr_mri.commands.problems import user_problem

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / "configs" / "adni" / "cpu_small.yaml"
CLASSES = ("CN", "MCI", "AD")
Completed = subprocess.CompletedProcess
Cli = Callable[..., Completed]  # the cli_in_process fixture
Locked = Callable[[Path], AbstractContextManager[None]]  # the lock_held_elsewhere fixture


def _cohort(folder: Path, prefix: str, per_class: int, seed: int) -> Path:
    """Random 74³ volumes whose brightness grows with the diagnosis; one scan a participant, listed as
    `elr-mri preprocess` lists its outputs (processed_path)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, diagnosis in enumerate(CLASSES):
        for i in range(per_class):
            pid = f"sub-{prefix}{k}{i:02d}"
            path = folder / f"{pid}.nii.gz"
            volume = rng.normal(100 + 20 * k, 10, size=(74, 74, 74)).astype(np.float32)
            nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 2.0, 1.0])), path)
            rows.append({"participant_id": pid, "session_id": "ses-M00", "path": f"raw/{pid}.nii.gz",
                         "processed_path": str(path),
                         "diagnosis": diagnosis, "age": float(rng.uniform(60, 90)), "sex": "F"})
    manifest = folder / f"{prefix}.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "elr_mri.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, cli_in_process: Cli) -> dict[str, Path]:
    """The module's run, trained in this process (`train` started for real: test_engine.py's complete-run test, and
    in test_mri_demo.py, an MRI run; a resume of this one below, in the SIGTERM test)."""
    folder = tmp_path_factory.mktemp("cohort")
    train_manifest = _cohort(folder, "TRN", per_class=5, seed=0)
    holdout = _cohort(folder, "HLD", per_class=2, seed=1)
    panel = folder / "panel.csv"  # adjudicated validation labels: here the given ones, so results are unchanged
    pd.read_csv(train_manifest)[["participant_id", "session_id", "diagnosis"]].to_csv(panel, index=False)
    run = folder / "run"
    result = cli_in_process("train", "--config", str(CONFIG), "--out", str(run), "--set",
                            f"data.mri.manifest={train_manifest}", "--set", f"data.mri.val_labels={panel}", "--set",
                            f"data.mri.holdout_manifest={holdout}", "--set", "train.epochs=1", "--set",
                            "train.progress=false", "--set", "train.tensorboard=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"results: {run / f'eval-{holdout.stem}'}" in result.stdout  # the configured holdout, evaluated
    assert (run / f"eval-{holdout.stem}" / "summary.json").exists()
    return {"run": run, "train": train_manifest, "holdout": holdout, "panel": panel}


def test_validation_labels_without_a_validation_scan_are_one_line_error(trained: dict[str, Path], tmp_path: Path,
                                                                       cli_in_process: Cli) -> None:
    assert yaml.safe_load((trained["run"] / "config.yaml").read_text())["data"]["mri"]["val_labels"] == str(
        trained["panel"])
    rule = json.loads((trained["run"] / "summary.json").read_text())["selection_rule"]
    assert "adjudicated labels" in rule and str(trained["panel"]) in rule  # not "its noisy labels"
    val = pd.read_csv(trained["run"] / "splits.csv").query("split == 'val'")["participant_id"]
    panel = pd.read_csv(trained["panel"])
    partial = tmp_path / "partial.csv"
    panel[~panel["participant_id"].isin(val)].to_csv(partial, index=False)
    result = cli_in_process("train", "--config", str(CONFIG), "--out", str(tmp_path / "run"), "--set",
                            f"data.mri.manifest={trained['train']}", "--set", f"data.mri.val_labels={partial}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "validation scan sub-TRN" in result.stderr


def test_a_resume_finishes_holdout_scoring_cut_short(trained: dict[str, Path], tmp_path: Path,
                                                     cli_in_process: Cli) -> None:
    """Ctrl-C or a job's time limit during the scoring after the last epoch: the printed `--resume` scores it."""
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    results = run / f"eval-{trained['holdout'].stem}" / "summary.json"
    results.unlink()  # as the scoring leaves it cut short: summary.json is written last
    resumed = cli_in_process("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "nothing to train" in resumed.stderr and results.is_file()
    scored_at = results.stat().st_mtime_ns
    again = cli_in_process("train", "--resume", str(run))
    assert again.returncode == 0 and results.stat().st_mtime_ns == scored_at  # scored once
    results.unlink()
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["mri"]["holdout_manifest"] = str(tmp_path / "moved.csv")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    moved = cli_in_process("train", "--resume", str(run))  # training is done: a success, with a note saying how
    assert moved.returncode == 0 and "the scoring of its holdout" in moved.stderr and "is not there" in moved.stderr


def test_training_then_scoring_its_holdout_notes_a_half_precision_without_native_arithmetic_once(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The note training prints is not repeated by the scoring after it; a resume that only scores says it."""
    import torch

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"cpu_name": "Intel Xeon", "avx2": True})  # no bf16
    run = tmp_path / "run"
    result = cli_in_process("train", "--config", str(CONFIG), "--out", str(run), "--set",
                            f"data.mri.manifest={trained['train']}", "--set",
                            f"data.mri.holdout_manifest={trained['holdout']}", "--set", "train.precision=bf16",
                            "--set", "train.epochs=1", "--set", "train.progress=false", "--set",
                            "train.tensorboard=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "results: " in result.stdout and result.stderr.count("has no native bf16") == 1
    (run / f"eval-{trained['holdout'].stem}" / "summary.json").unlink()  # the scoring cut short
    resumed = cli_in_process("train", "--resume", str(run))
    assert resumed.returncode == 0 and "results: " in resumed.stdout, resumed.stderr[-3000:]
    assert resumed.stderr.count("has no native bf16") == 1 and "which evaluate and explain read" in resumed.stderr


def test_the_holdouts_scoring_after_training_waits_for_no_evaluate_writing_there(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli, lock_held_elsewhere: Locked) -> None:
    """`train` scored its holdout into RUN/eval-<name>/ without the lock `evaluate` holds there, so an `evaluate` of
    the same holdout meanwhile could leave one's summary.json beside the other's metrics.csv. The `evaluate` is
    imitated by a process holding that folder's lock."""
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    scored = run / f"eval-{trained['holdout'].stem}"
    (scored / "summary.json").unlink()  # cut short: a plain --resume scores it
    with lock_held_elsewhere(scored / ".evaluate.lock"):
        refused = cli_in_process("train", "--resume", str(run))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
        f"elr-mri train: error: training finished ({run}), but scoring the holdout failed: {scored}: another "
        "`elr-mri evaluate` (or `train` scoring its holdout) is writing there; let it finish (or stop it) first; once "
        f"fixed: elr-mri evaluate --run {run} --manifest {trained['holdout']}")
    assert not (scored / "summary.json").exists()
    resumed = cli_in_process("train", "--resume", str(run))  # once the `evaluate` has ended
    assert resumed.returncode == 0 and (scored / "summary.json").is_file(), resumed.stderr[-3000:]


def test_sigterm_while_the_holdout_is_scored_after_training_stops_it_with_the_resume_line(
        trained: dict[str, Path], tmp_path: Path) -> None:
    """A job's time limit during the holdout's scoring at the end of `train`: recorded only, as between training
    steps, it let the scoring run on and the command exit 0 without a word (or die at the job's SIGKILL). It stops
    as `evaluate` does, saying training had finished and how the scoring is finished."""
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    results = run / f"eval-{trained['holdout'].stem}" / "summary.json"
    results.unlink()  # cut short before: a plain --resume scores it
    proc = subprocess.Popen([sys.executable, "-m", "elr_mri.cli", "train", "--resume", str(run)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert "nothing to train" in first  # said just before the scoring starts
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 143, first + rest
    assert rest.strip().splitlines()[-1] == (
        f"elr-mri train: stopped by SIGTERM (a job's time limit, scancel or kill); training had finished, the scoring "
        f"of its holdout was cut short; finish it with: elr-mri train --resume {run}")
    assert "Traceback" not in rest and not results.exists()


def test_a_stop_before_an_extension_trains_is_not_said_to_cut_the_holdouts_scoring(trained: dict[str, Path]) -> None:
    """A finished run keeps its summary.json while an extension (`--resume RUN --set train.epochs=N`) reads its data,
    which may take minutes: a Ctrl-C there continues from the last checkpoint; only one raised while the holdout is
    scored says that training had finished."""
    import argparse

    from elr_mri.cli import _after_interrupt
    from elr_mri.commands.train import HoldoutScoringStopped

    args = argparse.Namespace(command="train", resume=trained["run"], out=None, config=None)
    assert (trained["run"] / "summary.json").is_file()
    assert _after_interrupt(args, KeyboardInterrupt()) == (
        f"continue from the last checkpoint with: elr-mri train --resume {trained['run']}")
    assert _after_interrupt(args, HoldoutScoringStopped()).startswith("training had finished, the scoring of its "
                                                                       "holdout was cut short; finish it with: ")


def test_training_writes_splits_without_shared_participants(trained: dict[str, Path]) -> None:
    splits = pd.read_csv(trained["run"] / "splits.csv")
    assert splits["participant_id"].is_unique and set(splits["split"]) == {"train", "val", "test"}
    balance = pd.read_csv(trained["run"] / "split_balance.csv").set_index("split")
    assert balance["participants"].to_dict() == splits["split"].value_counts().to_dict()
    assert (balance[list(CLASSES)].sum(axis=1) == balance["participants"]).all()
    table = pd.read_csv(trained["run"] / "suspected_mislabels.csv")
    assert list(table.columns[:3]) == ["index", "participant_id", "session_id"]


def test_a_run_without_true_diagnoses_has_no_memorisation_figures(trained: dict[str, Path]) -> None:
    """No `true_diagnosis` column and no injected noise: nothing says which given label is wrong, so metrics.csv has
    no Figure 1 columns (not columns of NaN), no memorization.png is drawn and summary.json scores no mislabels."""
    run = trained["run"]
    columns = set(pd.read_csv(run / "metrics.csv").columns)
    assert "val_top_class" in columns and not any(c.startswith(("noisy_pred_", "clean_pred_")) for c in columns)
    assert not (run / "memorization.png").exists()
    assert "mislabels" not in json.loads((run / "summary.json").read_text())


def test_each_suspected_mislabel_names_the_training_scan_at_its_index(trained: dict[str, Path]) -> None:
    """`index` counts the training scans in manifest order; the participant, session and given class beside it must
    be that scan's, or a clinician re-reviews the wrong person."""
    manifest = pd.read_csv(trained["train"])
    splits = pd.read_csv(trained["run"] / "splits.csv")
    training = manifest[manifest["participant_id"].isin(splits.query("split == 'train'")["participant_id"])]
    training = training.reset_index(drop=True)
    table = pd.read_csv(trained["run"] / "suspected_mislabels.csv")
    assert len(table) >= 2 and not table["index"].is_monotonic_increasing  # ranked by margin, not by position
    named = training.iloc[table["index"]]
    assert table["participant_id"].tolist() == named["participant_id"].tolist()
    assert table["session_id"].tolist() == named["session_id"].tolist()
    assert table["given_name"].tolist() == named["diagnosis"].tolist()


def test_evaluate_on_a_holdout_cohort(trained: dict[str, Path]) -> None:
    result = _cli("evaluate", "--run", str(trained["run"]), "--manifest", str(trained["holdout"]), "--bootstrap", "50")
    assert result.returncode == 0, result.stderr[-3000:]
    out = trained["run"] / f"eval-{trained['holdout'].stem}"
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"accuracy", "balanced_accuracy", "auc_micro", "auc_macro", "auc_AD"} <= set(metrics["metric"])
    assert ((metrics["low"] <= metrics["estimate"] + 1e-12) & (metrics["estimate"] <= metrics["high"] + 1e-12)).all()
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 6 and np.allclose(predictions[["p_CN", "p_MCI", "p_AD"]].sum(axis=1), 1, atol=1e-5)
    for png in ("roc.png", "confusion_scan.png", "confusion_participant.png"):
        assert (out / png).stat().st_size > 5_000
    confusion = pd.read_csv(out / "confusion.csv")
    assert confusion.groupby("level")["count"].sum().to_dict() == {"participant": 6, "scan": 6}
    assert ((confusion["low"] <= confusion["rate"] + 1e-12) & (confusion["rate"] <= confusion["high"] + 1e-12)).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["participant_overlap_notes"] == [] and summary["bootstrap_resamples"] == 50
    assert summary["balanced_accuracy_classes"] == list(CLASSES) and "mean recall over" not in result.stderr
    # 2 participants a class: about a quarter of the resamples miss a class, where the AUCs are undefined
    assert summary["participant"]["accuracy"]["resamples"] == 50 > summary["participant"]["auc_macro"]["resamples"]
    assert "note: defined in fewer than 95% of the 50 resamples: " in result.stderr
    assert "auc_macro (participant) in " in result.stderr
    assert summary["selection_rule"].startswith("best accuracy on the validation split")


def test_a_notebook_predicts_a_holdout_and_one_scan_of_it_as_readme_says(trained: dict[str, Path]) -> None:
    """README's "A trained run from Python", MRI lines: a holdout manifest read as `evaluate` reads it, and one
    preprocessed scan read by the evaluation transforms and predicted with its age alone (no label, no index). The
    loaded network, called directly, predicts the same: it comes in eval mode (in training mode its age encoding's
    dropout made every call differ)."""
    import torch

    from elr_mri.data.mri import mri_transforms
    from elr_mri.evaluation.evaluate import evaluation_set, load_run, predict

    run = load_run(trained["run"])
    assert not any(net.training for net in run.method.networks())  # before anything predicts, which sets eval mode
    holdout = evaluation_set(trained["run"], run.cfg, trained["holdout"])[0]
    scan = holdout.frame.iloc[2]
    volume = mri_transforms(run.cfg.data.mri.crop_size, train=False)({"image": scan["processed_path"]})["image"]
    with torch.no_grad():
        direct = run.method.networks()[0](volume[None], age=torch.tensor([scan["age"]], dtype=torch.float32))
    labels, probs = predict(run.method, holdout, batch_size=4)
    one = run.method.predict_proba({"image": volume[None], "age": torch.tensor([scan["age"]])})
    assert len(labels) == 6 and one.shape == (1, 3)
    np.testing.assert_allclose(one[0].numpy(), probs[2], rtol=1e-5)
    torch.testing.assert_close(direct.softmax(1), one)


def test_evaluate_names_holdout_scans_aged_outside_the_training_ages(trained: dict[str, Path], tmp_path: Path,
                                                                   cli_in_process: Cli) -> None:
    """The run records its training scans' age span; a holdout scan outside it gets an age offset no training scan
    shaped, which evaluate now says (a holdout of 45-year-olds was scored without a word), and keeps in summary.json,
    as explain does in its own."""
    run = trained["run"]
    splits = pd.read_csv(run / "splits.csv")
    cohort = pd.read_csv(trained["train"])
    ages = cohort[cohort["participant_id"].isin(splits.query("split == 'train'")["participant_id"])]["age"]
    recorded = json.loads((run / "data_shape.json").read_text())["train_age_range"]
    assert recorded == [ages.min(), ages.max()]
    diagnoses = cohort[cohort["participant_id"].isin(splits.query("split == 'train'")["participant_id"])]["diagnosis"]
    assert json.loads((run / "data_shape.json").read_text())["train_class_counts"] == {  # evaluate names a class at 0
        name: int((diagnoses == name).sum()) for name in ("CN", "MCI", "AD")}
    younger = tmp_path / "younger.csv"
    pd.read_csv(trained["holdout"]).assign(age=[45.0] + [float(np.mean(recorded))] * 5).to_csv(younger, index=False)
    result = cli_in_process("evaluate", "--run", str(run), "--manifest", str(younger), "--bootstrap", "20")
    assert result.returncode == 0, result.stderr[-3000:]
    warning = f"{younger}: 1 of 6 scans are aged outside the {recorded[0]:g}-{recorded[1]:g} years"
    assert f"warning: {warning}" in result.stderr
    # kept with the scores, for readers of the folder (the demo report): it was printed only
    saved = json.loads((run / "eval-younger" / "summary.json").read_text())["warnings"]
    assert len(saved) == 1 and saved[0].startswith(warning) and saved[0] in result.stderr
    explained = cli_in_process("explain", "--run", str(run), "--manifest", str(younger))
    assert explained.returncode == 0, explained.stderr[-3000:]  # its maps average that scan in: kept there too
    assert json.loads((run / "explain-younger" / "summary.json").read_text())["warnings"] == saved


def test_evaluating_the_last_checkpoint_leaves_the_selected_ones_results_alone(trained: dict[str, Path],
                                                                              cli_in_process: Cli) -> None:
    run, holdout = trained["run"], trained["holdout"]
    selected = (run / f"eval-{holdout.stem}" / "summary.json").read_text()  # the fixture's `train` scored the holdout
    result = cli_in_process("evaluate", "--run", str(run), "--manifest", str(holdout), "--bootstrap", "20",
                            "--checkpoint", "last")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"eval-{holdout.stem}-last" in result.stdout
    assert json.loads((run / f"eval-{holdout.stem}-last" / "summary.json").read_text())["checkpoint"] == "last"
    assert (run / f"eval-{holdout.stem}" / "summary.json").read_text() == selected


def test_evaluate_refuses_a_folder_that_holds_another_manifests_results(trained: dict[str, Path], tmp_path: Path,
                                                                        cli_in_process: Cli) -> None:
    """Folders are named after the manifest's file name: another cohort's file of that name must not
    overwrite the results, and the message says how to go on."""
    run, holdout = trained["run"], trained["holdout"]
    scored = (run / f"eval-{holdout.stem}" / "summary.json").read_text()  # the fixture's `train` scored the holdout
    assert json.loads(scored)["manifest"] == str(holdout.resolve())
    namesake = tmp_path / "other" / holdout.name
    namesake.parent.mkdir()
    pd.read_csv(holdout).head(3).to_csv(namesake, index=False)
    result = cli_in_process("evaluate", "--run", str(run), "--manifest", str(namesake), "--bootstrap", "20")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-3000:]
    assert f"holds the results for {holdout.resolve()}" in result.stderr and f"other_{holdout.name}" in result.stderr
    assert (run / f"eval-{holdout.stem}" / "summary.json").read_text() == scored
    shutil.copy(holdout, namesake)  # the same file elsewhere (a moved project): its sha256 matches, so it is scored
    result = cli_in_process("evaluate", "--run", str(run), "--manifest", str(namesake), "--bootstrap", "20")
    assert result.returncode == 0, result.stderr[-3000:]


def test_evaluate_refuses_a_holdout_that_shares_participants(trained: dict[str, Path], tmp_path: Path,
                                                             cli_in_process: Cli) -> None:
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(trained["train"]))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "sub-TRN" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    copied = pd.read_csv(trained["train"]).head(3)  # training scans under new IDs: a manifest made from the run's
    column = "processed_path" if "processed_path" in copied else "path"
    copied[column] = [str((trained["train"].parent / path).resolve()) for path in copied[column]]
    copied.assign(participant_id=[f"sub-OTHER{i}" for i in range(3)]).to_csv(tmp_path / "copied.csv", index=False)
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(tmp_path / "copied.csv"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "3 scan(s) are files of the training manifest" in result.stderr


def test_evaluate_refuses_a_test_split_rebuilt_from_a_changed_manifest(trained: dict[str, Path], tmp_path: Path,
                                                                       cli_in_process: Cli) -> None:
    """The default test split comes from the manifest as it is now; renamed participants must not be scored."""
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    renamed = pd.read_csv(trained["train"]).assign(participant_id=lambda t: t["participant_id"] + "x")
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["mri"].update(manifest=str(tmp_path / "renamed.csv"), val_labels=None)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    result = cli_in_process("evaluate", "--run", str(run), "--bootstrap", "20")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "has changed since training" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (run / "eval-test").exists()
    assert cli_in_process("evaluate", "--run", str(trained["run"]), "--bootstrap", "20").returncode == 0  # unchanged


@pytest.mark.parametrize("command", ["train", "train-in-workers", "evaluate"])
def test_a_truncated_scan_is_one_line_naming_it(trained: dict[str, Path], tmp_path: Path, command: str,
                                                cli_in_process: Cli) -> None:
    manifest = pd.read_csv(trained["holdout"] if command == "evaluate" else trained["train"])
    damaged = tmp_path / "damaged.nii.gz"  # a copy cut short, as by an interrupted transfer
    damaged.write_bytes(Path(manifest.loc[1, "processed_path"]).read_bytes()[:5000])
    manifest.loc[1, "processed_path"] = str(damaged)
    manifest.to_csv(tmp_path / "damaged.csv", index=False)
    if command.startswith("train"):
        in_workers = command.endswith("workers")  # started for real: the worker's error crosses two processes
        run_cli = _cli if in_workers else cli_in_process
        result = run_cli("train", "--config", str(CONFIG), "--out", str(tmp_path / "run"),
                         "--set", f"data.mri.manifest={tmp_path / 'damaged.csv'}", "--set", "train.epochs=1",
                         "--set", "train.progress=false",
                         *["--set", "data.num_workers=1", "--set", "data.mri.cache=none"] * in_workers)
    else:
        result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(tmp_path / "damaged.csv"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"{damaged}: cannot be read as a volume" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_evaluating_an_unfinished_run_says_so(trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli) -> None:
    finished = json.loads((trained["run"] / f"eval-{trained['holdout'].stem}" / "summary.json").read_text())
    assert finished["run_finished"] is True and finished["checkpoint_epoch"] == 1
    run = tmp_path / "unfinished"
    shutil.copytree(trained["run"], run)
    (run / "summary.json").unlink()  # as while training is still going
    result = cli_in_process("evaluate", "--run", str(run), "--manifest", str(trained["holdout"]), "--bootstrap", "20")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"note: {run} has not finished training (no summary.json); scored its best checkpoint so far, from " \
           "epoch 1" in result.stderr
    assert json.loads((run / f"eval-{trained['holdout'].stem}" / "summary.json").read_text())["run_finished"] is False
    result = cli_in_process("explain", "--run", str(run), "--manifest", str(trained["holdout"]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"note: {run} has not finished training (no summary.json); explained its best checkpoint so far, from " \
           "epoch 1" in result.stderr


def test_comparing_with_an_unfinished_run_says_so(trained: dict[str, Path], tmp_path: Path,
                                                  cli_in_process: Cli) -> None:
    """A --compare-with run still training (or killed while extended) is scored on its best checkpoint so far:
    the table must not pass that off as the run's result."""
    other = tmp_path / "unfinished"
    shutil.copytree(trained["run"], other)
    (other / "summary.json").unlink()  # as while training is still going
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(trained["holdout"]),
                            "--bootstrap", "20", "--compare-with", str(other))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"note: {other} has not finished training (no summary.json); scored its best checkpoint so far, from " \
           "epoch 1" in result.stderr
    assert f"note: {trained['run']} has not finished" not in result.stderr


def test_comparing_with_a_run_another_evaluate_scores_is_refused_before_scoring(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli, lock_held_elsewhere: Locked) -> None:
    """`--compare-with` scored the other run into its eval folder without that folder's lock: with an `evaluate` of
    that run (or its `train` scoring its holdout) at the same time, one's summary.json could sit beside the other's
    metrics, and the comparison read either. The other `evaluate` is imitated by a process holding the lock."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    shutil.copytree(trained["run"], ours)
    shutil.copytree(trained["run"], theirs)
    scored, ours_scored = (run / f"eval-{trained['holdout'].stem}" for run in (theirs, ours))
    (scored / "summary.json").unlink()  # as while the other evaluate writes it
    def results() -> dict[str, int]:
        return {path.name: path.stat().st_mtime_ns for path in ours_scored.iterdir() if path.name != ".evaluate.lock"}

    before = results()
    with lock_held_elsewhere(scored / ".evaluate.lock"):
        refused = cli_in_process("evaluate", "--run", str(ours), "--manifest", str(trained["holdout"]),
                                 "--bootstrap", "20", "--compare-with", str(theirs))
    assert refused.returncode == 2 and refused.stderr == (
        f"elr-mri evaluate: error: {scored}: another `elr-mri evaluate` (or `train` scoring its holdout) is writing "
        "there; let it finish (or stop it) first\n")
    assert not (scored / "summary.json").exists()
    assert results() == before  # nothing scored


@pytest.mark.parametrize(("command", "effect"), [("evaluate", "these scores count them, so they are inflated"),
                                               ("explain", "these maps average them in, with what the network "
                                                           "learned of them in training")])
def test_an_allowed_overlap_with_training_is_named_where_the_scores_are_printed(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli, command: str, effect: str) -> None:
    """`explain` as `evaluate`: maps averaged over training scans are no more the holdout's than scores are."""
    run = tmp_path / "overlap_allowed"
    shutil.copytree(trained["run"], run)
    settings = yaml.safe_load((run / "config.yaml").read_text())
    settings["data"]["mri"]["allow_participant_overlap"] = True
    (run / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    holdout = tmp_path / "with_training.csv"
    pd.concat([pd.read_csv(trained["holdout"]), pd.read_csv(trained["train"]).head(2)]).to_csv(holdout, index=False)
    bootstrap = ["--bootstrap", "20"] if command == "evaluate" else []
    result = cli_in_process(command, "--run", str(run), "--manifest", str(holdout), *bootstrap)
    assert result.returncode == 0, result.stderr[-2000:]
    notes = [line for line in result.stderr.splitlines() if line.startswith(f"note: {run}: {holdout}: ")]
    assert len(notes) == 2 and all(note.endswith(effect) for note in notes)
    assert "2 participant(s) are in both training and holdout" in notes[0]
    assert "2 scan(s) are files of the training manifest" in notes[1]


def test_a_holdout_of_one_participant_is_scored_without_intervals(trained: dict[str, Path], tmp_path: Path,
                                                                  cli_in_process: Cli) -> None:
    """Every resample of one participant is the set itself: an interval of zero width would claim certainty."""
    holdout = tmp_path / "one_participant.csv"
    pd.read_csv(trained["holdout"]).head(1).to_csv(holdout, index=False)
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(holdout), "--bootstrap", "20")
    assert result.returncode == 0, result.stderr[-2000:]
    for level in ("scan", "participant"):
        assert (f"note: no intervals at {level} level (nan): resampling participants needs at least two, and this "
                "set has 1") in result.stderr
    assert "[nan, nan]" in result.stdout and "fewer than 95%" not in result.stderr


def test_rescoring_an_edited_manifest_removes_the_comparisons_of_the_earlier_scoring(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli) -> None:
    """A manifest edited in place is scored into the same folder; the baselines and comparison tables computed
    beside the earlier scoring would stand beside the new results as theirs."""
    holdout = tmp_path / "edited_holdout.csv"
    shutil.copy(trained["holdout"], holdout)
    scored = trained["run"] / f"eval-{holdout.stem}"
    compared = [scored / "comparison.csv", scored / "paired_differences.csv", scored / "baselines"]

    def evaluate(*extra: str) -> str:
        result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(holdout),
                                "--bootstrap", "20", *extra)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stderr

    evaluate("--baselines")
    assert all(path.exists() for path in compared)
    assert "removed" not in evaluate()  # the same scans, checkpoint and resamples: the comparisons still hold
    assert all(path.exists() for path in compared)
    pd.read_csv(holdout).iloc[1:].to_csv(holdout, index=False)
    said = evaluate()
    assert not any(path.exists() for path in compared)
    assert (f"{scored}: removed comparison.csv, paired_differences.csv, baselines/ (they were made beside a scoring "
            "with other scans (the manifest's content changed); --baselines and --compare-with make them again)"
            ) in said
    assert len(pd.read_csv(scored / "predictions.csv")) == len(pd.read_csv(holdout))


def test_a_holdout_without_a_class_names_the_classes_of_its_balanced_accuracy(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli) -> None:
    """Without AD, balanced accuracy is the mean recall over CN and MCI: chance 1/2, not the model's 1/3."""
    holdout = tmp_path / "without_ad.csv"
    frame = pd.read_csv(trained["holdout"])
    frame[frame["diagnosis"] != "AD"].to_csv(holdout, index=False)
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(holdout), "--bootstrap", "20")
    assert result.returncode == 0, result.stderr[-2000:]
    out = trained["run"] / f"eval-{holdout.stem}"
    assert (f"note: {out}: balanced_accuracy is the mean recall over CN, MCI only (no example here is labelled "
            "AD), so chance is 50.0, not the 33.3 of all 3 classes; compare it only with figures over the same "
            "classes (balanced_accuracy_classes in summary.json)\n") in result.stderr
    assert json.loads((out / "summary.json").read_text())["balanced_accuracy_classes"] == ["CN", "MCI"]


def test_a_holdout_of_several_sessions_a_participant_is_resampled_by_participant(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli) -> None:
    """Each holdout participant scanned twice (a copy of the scan as a second session): 12 scans of 6 people, whose
    sessions travel together in the bootstrap and are averaged at participant level."""
    frame = pd.read_csv(trained["holdout"])
    copies = [shutil.copy(path, tmp_path / f"m12_{Path(path).name}") for path in frame["processed_path"]]
    again = frame.assign(session_id="ses-M12", processed_path=copies)
    holdout = tmp_path / "two_sessions.csv"
    pd.concat([frame, again]).to_csv(holdout, index=False)
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(holdout), "--bootstrap", "40")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = pd.read_csv(trained["run"] / f"eval-{holdout.stem}" / "metrics.csv").set_index(["level", "metric"])
    assert metrics.loc[("scan", "accuracy"), ["n", "participants"]].tolist() == [12, 6]
    assert metrics.loc[("participant", "accuracy"), ["n", "participants"]].tolist() == [6, 6]
    scan, participant = metrics.loc[("scan", "accuracy")], metrics.loc[("participant", "accuracy")]
    for column in ("estimate", "low", "high"):  # a copy's probabilities are its original's: both levels agree
        assert scan[column] == pytest.approx(participant[column])


def test_a_holdout_on_another_voxel_grid_is_refused(trained: dict[str, Path], tmp_path: Path,
                                                    cli_in_process: Cli) -> None:
    assert json.loads((trained["run"] / "data_shape.json").read_text())["volume_grid"] == {
        "shape": [74, 74, 74], "voxel_size_mm": [2.0, 2.0, 2.0]}
    manifest = pd.read_csv(trained["holdout"])
    raw = tmp_path / "raw.nii.gz"  # a scan that never went through preprocess: 1 mm voxels
    nib.save(nib.Nifti1Image(np.ones((74, 74, 74), np.float32), np.eye(4)), raw)
    manifest.loc[0, "processed_path"] = str(raw)
    manifest.to_csv(tmp_path / "raw.csv", index=False)
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(tmp_path / "raw.csv"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert f"e.g. {raw} is 74x74x74 voxels of 1x1x1 mm and the run trained on 74x74x74 voxels of 2x2x2 mm" in (
        result.stderr)
    assert not (trained["run"] / "eval-raw").exists()


def test_a_run_from_before_its_grid_was_recorded_refuses_a_holdout_all_on_another_grid(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli) -> None:
    """A run made before 2026-12-03 has no volume_grid in data_shape.json: a holdout whose scans all shared another grid
    (a simulated NACC-like site at 2.5 mm, not preprocessed) was scored as nonsense without a word. The grid of the
    training manifest's scans stands in for the record; the run's own holdout still scores."""
    run = tmp_path / "old run"
    shutil.copytree(trained["run"], run, ignore=shutil.ignore_patterns("eval-*", "explain-*"))
    shape = json.loads((run / "data_shape.json").read_text())
    (run / "data_shape.json").write_text(json.dumps(
        {key: value for key, value in shape.items() if key not in ("volume_grid", "volume_ras_affine")}))
    manifest, rng = pd.read_csv(trained["holdout"]), np.random.default_rng(0)
    for row in manifest.index:
        coarse, volume = tmp_path / f"coarse{row}.nii.gz", rng.normal(100, 10, (60, 60, 60)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.diag([2.5, 2.5, 2.5, 1.0])), coarse)
        manifest.loc[row, "processed_path"] = str(coarse)
    manifest.to_csv(tmp_path / "coarse.csv", index=False)
    result = cli_in_process("evaluate", "--run", str(run), "--manifest", str(tmp_path / "coarse.csv"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert "is 60x60x60 voxels of 2.5x2.5x2.5 mm and the run trained on 74x74x74 voxels of 2x2x2 mm" in result.stderr
    result = cli_in_process("evaluate", "--run", str(run), "--manifest", str(trained["holdout"]), "--bootstrap", "20")
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_worker_error_is_one_line_only_when_it_is_this_projects() -> None:
    worker_text = ("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                   '  File "x.py", line 1, in f\n{}\n\nThe above exception was the direct cause of the following '
                   "exception:\n\nRuntimeError: applying transform <LoadScand>\n")
    ours = user_problem(RuntimeError(worker_text.format("elr_mri.data.mri.ScanReadError: a.nii.gz: cannot be read")))
    assert str(ours) == "a.nii.gz: cannot be read"
    assert user_problem(RuntimeError(worker_text.format("IndexError: list index out of range"))) is None


def test_evaluate_puts_another_run_and_the_voxel_baseline_in_one_table(trained: dict[str, Path],
                                                                       cli_in_process: Cli) -> None:
    other = trained["run"].with_name("run_ce")
    result = cli_in_process("train", "--config", str(CONFIG), "--out", str(other), "--set",
                            f"data.mri.manifest={trained['train']}", "--set", "loss.name=ce", "--set",
                            "train.epochs=1", "--set", "train.progress=false", "--set", "train.tensorboard=false")
    assert result.returncode == 0, result.stderr[-3000:]
    stale = trained["run"] / f"eval-{trained['holdout'].stem}" / "baselines" / "volumes_logreg"
    stale.mkdir(parents=True)  # as an earlier `evaluate --baselines --volumes` leaves it
    shutil.copy(trained["run"] / f"eval-{trained['holdout'].stem}" / "summary.json", stale)
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(trained["holdout"]),
                            "--bootstrap", "30", "--baselines", "--compare-with", str(other))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "only the voxel SVM" in result.stdout
    headers = re.findall(r"^metric +(.+)$", result.stdout, re.M)  # printed as comparison.csv lists them, not sorted
    assert [header.split() for header in headers] == [["accuracy", "balanced_accuracy", "auc_micro", "auc_macro", "ece",
                                                       "brier"]] * 2
    table = pd.read_csv(trained["run"] / f"eval-{trained['holdout'].stem}" / "comparison.csv")
    assert list(table["method"].unique()) == ["run (elr)", "run_ce (ce)", "voxels_linear_svm"]
    assert ((table["low"] <= table["estimate"] + 1e-12) & (table["estimate"] <= table["high"] + 1e-12)).all()
    assert set(table["level"]) == {"participant"} and table["resamples"].between(1, 30).all()
    paired = pd.read_csv(trained["run"] / f"eval-{trained['holdout'].stem}" / "paired_differences.csv")
    assert list(paired["method"].unique()) == ["run_ce (ce)", "voxels_linear_svm"]
    assert set(paired["minus"]) == {"run (elr)"} and "minus run (elr), paired over the same participants" in result.stdout
    # both headers were "in %" / "in percentage points" over a brier column printed ×100, from 0 to 200
    assert "participants), in % (brier ×100, from 0 to 200), 95% intervals" in result.stdout
    assert ("paired over the same participants, in percentage points (brier ×100, from -200 to 200), 95% intervals"
            in result.stdout)


def _copy_unscored(run: Path, copy: Path) -> None:
    """Copy the shared trained run without what other tests scored in it (e.g. a comparison.csv left by a
    --compare-with test), so that a test's outcome does not depend on which tests ran before it."""
    shutil.copytree(run, copy)
    for scored in [*copy.glob("eval-*"), *copy.glob("explain-*")]:
        shutil.rmtree(scored)


def test_a_comparison_is_removed_when_a_run_it_compared_trains_on(trained: dict[str, Path], tmp_path: Path,
                                                                   cli_in_process: Cli) -> None:
    """`evaluate --compare-with` puts another run's scores in this run's comparison.csv; that run, extended, removes
    its scores, and this table with them (it showed the other run's earlier weights), saying so in its one line."""
    ours, theirs = tmp_path / "elr", tmp_path / "other"
    for run in (ours, theirs):
        _copy_unscored(trained["run"], run)
    holdout = trained["holdout"].stem
    compared = cli_in_process("evaluate", "--run", str(ours), "--manifest", str(trained["holdout"]), "--bootstrap",
                              "20", "--compare-with", str(theirs))
    assert compared.returncode == 0, compared.stderr[-2000:]
    tables = [ours / f"eval-{holdout}" / name for name in ("comparison.csv", "paired_differences.csv")]
    assert all(table.is_file() for table in tables)
    extended = cli_in_process("train", "--resume", str(theirs), "--set", "train.epochs=2", "--set",
                              "train.progress=false")
    assert extended.returncode == 0, extended.stderr[-2000:]
    assert not any(table.exists() for table in tables)
    assert (f"{theirs}: removed eval-{holdout} (they scored checkpoints this run replaces as it continues; once it "
            f"ends, run elr-mri evaluate (explain) again); and comparison.csv and paired_differences.csv in "
            f"{(ours / f'eval-{holdout}').resolve()}, which compared them (run that elr-mri evaluate --compare-with "
            "again)") in extended.stderr
    assert (ours / f"eval-{holdout}" / "summary.json").is_file()  # its own scores stay: they still hold


def test_a_comparison_is_removed_when_a_run_it_compared_is_scored_otherwise(trained: dict[str, Path],
                                                                            tmp_path: Path, cli_in_process: Cli) -> None:
    """The compared run scored again on its own with other settings (here --bootstrap): this run's table, which
    showed its earlier scoring, goes in the line that names the compared run's own comparisons removed."""
    ours, theirs = tmp_path / "elr", tmp_path / "other"
    for run in (ours, theirs):
        _copy_unscored(trained["run"], run)
    holdout = trained["holdout"].stem
    evaluate = ["--manifest", str(trained["holdout"]), "--bootstrap", "20"]
    compared = cli_in_process("evaluate", "--run", str(ours), *evaluate, "--compare-with", str(theirs))
    assert compared.returncode == 0, compared.stderr[-2000:]
    again = cli_in_process("evaluate", "--run", str(theirs), *evaluate)  # the same scoring: the table stays
    assert again.returncode == 0 and (ours / f"eval-{holdout}" / "comparison.csv").is_file()
    otherwise = cli_in_process("evaluate", "--run", str(theirs), *evaluate[:2], "--bootstrap", "30")
    assert otherwise.returncode == 0, otherwise.stderr[-2000:]
    tables = [(ours / f"eval-{holdout}").resolve() / name for name in ("comparison.csv", "paired_differences.csv")]
    assert not any(table.exists() for table in tables)
    assert (f"{theirs / f'eval-{holdout}'}: removed {tables[0]}, {tables[1]} (they were made beside a scoring with "
            "--bootstrap 20 (now 30); --baselines and --compare-with make them again)") in otherwise.stderr


def test_baseline_options_without_baselines_are_one_line_errors(trained: dict[str, Path], cli_in_process: Cli) -> None:
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--volumes", "volumes.csv")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "--baselines" in result.stderr


def test_baseline_inputs_are_refused_before_the_cnn_is_scored(trained: dict[str, Path], tmp_path: Path,
                                                              cli_in_process: Cli) -> None:
    """Volumes that miss the scored scans, or a flagging run without its table: one line, nothing scored."""
    from elr_mri.volumes.measure import volume_columns

    holdout = tmp_path / "holdout_copy.csv"
    shutil.copy(trained["holdout"], holdout)
    volumes = tmp_path / "volumes.csv"
    pd.DataFrame([{"participant_id": "sub-NONE", "session_id": "ses-M00", **dict.fromkeys(volume_columns(), 1.0)}]
                 ).to_csv(volumes, index=False)
    for flags, message in ((["--volumes", str(volumes)], "have no regional volumes"),
                           (["--drop-suspected", str(tmp_path / "nothing")], "suspected_mislabels.csv not found")):
        result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(holdout), "--baselines",
                                *flags)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-3000:]
        assert message in result.stderr
        assert not (trained["run"] / "eval-holdout_copy").exists()


def test_baselines_refuse_a_training_manifest_relabelled_since_training(trained: dict[str, Path], tmp_path: Path,
                                                                        cli_in_process: Cli) -> None:
    run, manifest = tmp_path / "run", tmp_path / "relabelled.csv"
    shutil.copytree(trained["run"], run)
    training = pd.read_csv(run / "splits.csv").query("split == 'train'")["participant_id"]
    frame = pd.read_csv(trained["train"])
    first = frame.index[frame["participant_id"].isin(training)][0]
    frame.loc[first, "diagnosis"] = "AD" if frame.loc[first, "diagnosis"] != "AD" else "CN"  # a clinician's revision
    frame.to_csv(manifest, index=False)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["mri"]["manifest"] = str(manifest)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    result = cli_in_process("evaluate", "--run", str(run), "--manifest", str(trained["holdout"]), "--baselines")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert f"{manifest} now gives its training scans other diagnoses (or other scans) than the run trained on" in (
        result.stderr)


def test_evaluate_warns_of_test_scans_relabelled_since_training(trained: dict[str, Path], tmp_path: Path,
                                                               cli_in_process: Cli) -> None:
    """A fixed split keeps a relabelled test scan in the test split: it was scored against its new diagnosis without
    a word, while `--baselines` refuses the same manifest. The run's validation panel does not count as a change."""
    run, manifest, splits = tmp_path / "run", tmp_path / "relabelled.csv", tmp_path / "splits.csv"
    shutil.copytree(trained["run"], run)
    shutil.copy(run / "splits.csv", splits)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["mri"].update(manifest=str(manifest), splits=str(splits))
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    frame = pd.read_csv(trained["train"])
    frame.to_csv(manifest, index=False)
    same = cli_in_process("evaluate", "--run", str(run), "--bootstrap", "20")
    assert same.returncode == 0 and "warning" not in same.stderr, same.stderr[-2000:]
    tested = pd.read_csv(run / "splits.csv").query("split == 'test'")["participant_id"]
    first = frame.index[frame["participant_id"].isin(tested)][0]
    before = frame.loc[first, "diagnosis"]
    frame.loc[first, "diagnosis"] = after = "AD" if before != "AD" else "CN"  # a clinician's revision
    frame.to_csv(manifest, index=False)
    result = cli_in_process("evaluate", "--run", str(run), "--bootstrap", "20")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (f"warning: {manifest} now gives 1 of the {len(tested)} test scans another diagnosis than {run} trained "
            f"with (e.g. {frame.loc[first, 'participant_id']} ses-M00: {before} then, {after} now; test_diagnoses in "
            "its data_shape.json)") in result.stderr


def test_baselines_of_an_image_run_are_refused_before_it_is_scored(tmp_path: Path, cli_in_process: Cli) -> None:
    run = tmp_path / "digits_run"
    (run / "checkpoints").mkdir(parents=True)
    config = (ROOT / "configs" / "digits" / "elr_sym40.yaml").read_text()
    (run / "config.yaml").write_text(f"{config}selection_rule: best accuracy on the validation split\n")  # as train's
    result = cli_in_process("evaluate", "--run", str(run), "--baselines")
    assert result.returncode == 2 and "baselines need an MRI run; this one trained on digits" in result.stderr
    assert not (run / "eval-test").exists()


@pytest.mark.parametrize("flag", ["--compare-with", "--drop-suspected"])
def test_comparing_with_an_image_run_says_comparison_is_for_mri_runs(trained: dict[str, Path], tmp_path: Path,
                                                                     flag: str, cli_in_process: Cli) -> None:
    run = tmp_path / "digits_run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "digits" / "elr_sym40.yaml", run / "config.yaml")
    (run / "suspected_mislabels.csv").write_text("index,given_name,source\n")  # image runs flag too
    result = cli_in_process("evaluate", "--run", str(trained["run"]), flag, str(run),
                            *["--baselines"] * (flag == "--drop-suspected"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert (f"{run} trained on digits, not MRI scans: --compare-with and --drop-suspected are for MRI runs only"
            in result.stderr)
    assert not (run / "eval-test").exists()


def test_dropping_a_ce_runs_flags_warns_that_they_are_its_last_epoch_predictions(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    """A run without ELR targets flags from its last epoch's predictions: allowed, as a control, but said and
    recorded, so that its *_without_suspected rows are not read as ELR's cleaning. ELR's flags go to the baselines
    alone: the command would score the CNN again, which nothing here checks."""
    from elr_mri.baselines.evaluate import evaluate_baselines

    flagging, holdout = tmp_path / "ce", tmp_path / "flagged_holdout.csv"
    flagging.mkdir()
    for name in ("config.yaml", "splits.csv"):
        shutil.copy(trained["run"] / name, flagging)
    shutil.copy(trained["holdout"], holdout)
    training = set(pd.read_csv(trained["run"] / "splits.csv").query("split == 'train'")["participant_id"])
    scans = pd.read_csv(trained["train"])
    first = scans[scans["participant_id"].isin(training)].iloc[0]
    flags = pd.DataFrame({"index": [0], "participant_id": [first.participant_id], "session_id": [first.session_id],
                          "given_name": [first.diagnosis]})
    summary = trained["run"] / f"eval-{holdout.stem}" / "baselines" / "voxels_linear_svm_without_suspected" / (
        "summary.json")
    for source, warned in (("last_epoch_prediction", True), ("elr_target", False)):
        flags.assign(source=source).to_csv(flagging / "suspected_mislabels.csv", index=False)
        if warned:
            result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(holdout),
                                    "--bootstrap", "20", "--baselines", "--drop-suspected", str(flagging))
            assert result.returncode == 0, result.stderr[-2000:]
            out, err = result.stdout, result.stderr
        else:
            evaluate_baselines(trained["run"], [], holdout, flagging, n_boot=20)
            out, err = capsys.readouterr()
        warning = (f"warning: {flagging} flagged its suspected mislabels from its last epoch's predictions (source "
                   "last_epoch_prediction: its loss keeps no ELR targets), not from ELR targets")
        assert (warning in err) is warned
        scored = len(pd.read_csv(holdout))
        assert (f"baselines *_without_suspected: fitted without the 1 of {len(training)} training scans {flagging} "
                f"flagged (dropped_scans in their summary.json); validated and scored as the others, on all {scored} "
                f"scans of {holdout.stem}") in out  # one scan a participant here
        recorded = json.loads(summary.read_text())
        assert recorded["flags_source"] == source and recorded["dropped_suspected"] == 1


def test_flags_that_leave_one_diagnosis_are_one_line_with_the_way_on(trained: dict[str, Path], tmp_path: Path,
                                                                      cli_in_process: Cli) -> None:
    """README's step 6 on a small cohort: the ELR run flagged every training scan of two diagnoses. The line said
    "its targets agree on one class, so there is nothing to fit", and neither which diagnosis was left nor how to go
    on (README's prose: drop --drop-suspected)."""
    flagging = tmp_path / "elr"
    flagging.mkdir()
    for name in ("config.yaml", "splits.csv"):
        shutil.copy(trained["run"] / name, flagging)
    training = set(pd.read_csv(trained["run"] / "splits.csv").query("split == 'train'")["participant_id"])
    scans = pd.read_csv(trained["train"])
    scans = scans[scans["participant_id"].isin(training)]
    flagged = scans[scans["diagnosis"] != "MCI"]
    pd.DataFrame({"index": 0, "participant_id": flagged["participant_id"], "session_id": flagged["session_id"],
                  "given_name": flagged["diagnosis"], "source": "elr_target"}).to_csv(
        flagging / "suspected_mislabels.csv", index=False)
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(trained["holdout"]),
                            "--bootstrap", "20", "--baselines", "--drop-suspected", str(flagging))
    assert result.returncode == 2 and result.stdout == ""  # refused before the CNN is scored
    assert result.stderr == (f"elr-mri evaluate: error: {flagging} flagged {len(flagged)} training scans; without "
                             "them only MCI is left, so there is nothing to fit: drop --drop-suspected to fit the "
                             "baselines on every training scan\n")


def test_a_scan_flagged_twice_is_left_out_once(trained: dict[str, Path], tmp_path: Path) -> None:
    """Flags pasted together by hand may list a scan twice: the fit stopped on an IndexError traceback ("Boolean
    index has wrong length")."""
    from elr_mri.baselines.evaluate import _baseline_inputs

    flagging, training = _flagging_run(trained, tmp_path)
    first = training.iloc[[0, 0]]
    first[["participant_id", "session_id"]].assign(given_name=first["diagnosis"]).to_csv(
        flagging / "suspected_mislabels.csv", index=False)
    inputs = _baseline_inputs(trained["run"], [], None, flagging)
    assert inputs.dropped == [f"{first.participant_id.iloc[0]}/{first.session_id.iloc[0]}"]
    assert len(inputs.train) == len(training) - 1  # one scan a participant here


def _flagging_run(trained: dict[str, Path], tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """(a folder that passes for a run on the trained run's splits, to write its suspected_mislabels.csv into; the
    trained run's training scans)."""
    flagging = tmp_path / "elr"
    flagging.mkdir()
    for name in ("config.yaml", "splits.csv"):
        shutil.copy(trained["run"] / name, flagging)
    training = pd.read_csv(trained["run"] / "splits.csv").query("split == 'train'")["participant_id"]
    scans = pd.read_csv(trained["train"])
    return flagging, scans[scans["participant_id"].isin(training)]


def test_flags_whose_ids_were_respelled_by_hand_are_said_to_be_not_sent_to_another_run(
        trained: dict[str, Path], tmp_path: Path) -> None:
    """The table's ids are matched as `train` wrote them; one re-spelled by hand (sub-TRN200 saved as TRN200) was
    refused with "flag with a run on the same manifest", though the flagging run was on that manifest."""
    from elr_mri.baselines.evaluate import _baseline_inputs

    flagging, training = _flagging_run(trained, tmp_path)
    first = training.iloc[[0]]
    flags = first[["participant_id", "session_id"]].assign(given_name=first["diagnosis"])
    flags.assign(participant_id=flags["participant_id"].str.removeprefix("sub-")).to_csv(
        flagging / "suspected_mislabels.csv", index=False)
    with pytest.raises(ValueError, match=f"the manifest spells that participant {first.participant_id.iloc[0]}: "):
        _baseline_inputs(trained["run"], [], None, flagging)
    flags.assign(session_id="ses-M99").to_csv(flagging / "suspected_mislabels.csv", index=False)
    with pytest.raises(ValueError, match="are not training scans of .*; flag with a run on the same manifest$"):
        _baseline_inputs(trained["run"], [], None, flagging)


def test_explain_writes_template_space_saliency(trained: dict[str, Path]) -> None:
    result = _cli("explain", "--run", str(trained["run"]), "--manifest", str(trained["holdout"]))
    assert result.returncode == 0, result.stderr[-3000:]
    out = trained["run"] / f"explain-{trained['holdout'].stem}"
    image = nib.load(out / "saliency_AD.nii.gz")
    assert image.shape == (72, 72, 72) and np.isfinite(image.get_fdata()).all() and image.get_fdata().max() > 0
    # the centre 72³ crop of a 74³ grid starts at voxel 1: its origin moves by one 2 mm voxel
    np.testing.assert_allclose(image.affine[:3, 3], [2.0, 2.0, 2.0])
    assert (out / "saliency_CN.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["manifest"] == str(trained["holdout"].resolve()) and summary["checkpoint"] == "best"
    # each map averages every holdout scan given its class (2 each), whatever the network predicts of it
    assert summary["scans_per_map"] == {name: 2 for name in CLASSES} and summary["scans"] == 6
    assert all(0 <= summary["predicted_as_given_per_map"][name] <= 2 for name in CLASSES)
    assert all(0.5 <= summary["largest_scan_share_per_map"][name] <= 1 for name in CLASSES)  # one of two scans


def _adni_import_inputs(folder: Path) -> tuple[Path, Path]:
    """(preprocess's manifest of three scans, with a failures.csv of one more beside it; an ADNIMERGE for two)."""
    scans = folder / "scans.csv"
    pd.DataFrame({"participant_id": ["sub-ADNI011S0002", "sub-ADNI011S0003", "sub-ADNI011S0099"],
                  "session_id": ["ses-M00", "ses-M06", "ses-M00"],
                  "path": ["a.nii.gz", "b.nii.gz", "c.nii.gz"]}).to_csv(scans, index=False)
    adnimerge = folder / "ADNIMERGE.csv"
    pd.DataFrame({"PTID": ["011_S_0002", "011_S_0003", "011_S_0003"], "VISCODE": ["bl", "bl", "m06"],
                  "DX": ["CN", "MCI", "Dementia"], "DX_bl": ["CN", "LMCI", "LMCI"], "AGE": [74.3, 81.3, 81.3],
                  "Years_bl": [0.0, 0.0, 0.5], "PTGENDER": ["Male", "Female", "Female"]}).to_csv(adnimerge, index=False)
    pd.DataFrame({"participant_id": ["sub-ADNI011S0004"], "session_id": ["ses-M00"], "path": ["d.nii.gz"],
                  "error": ["d.nii.gz: not a NIfTI file"]}).to_csv(folder / "failures.csv", index=False)
    return scans, adnimerge


def test_import_cohort_warns_in_one_line_of_a_scans_own_sex_or_cohort_that_it_replaces(tmp_path: Path,
                                                                                        cli_in_process: Cli) -> None:
    """--scans' sites in its cohort column were replaced by ADNI (a mapping's cohort:) without a word."""
    scans, adnimerge = _adni_import_inputs(tmp_path)
    pd.read_csv(scans).assign(sex=["F", "F", "M"],  # as a BIDS participants.tsv gives it
                              cohort=["site_A", "site_B", "site_A"]).to_csv(scans, index=False)
    out = tmp_path / "manifest.csv"
    result = cli_in_process("import-cohort", "--scans", str(scans), "--adnimerge", str(adnimerge), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert ("warning: --scans' own sex disagrees with the clinical table's in 1 imported scan (first: "
            "sub-ADNI011S0002/ses-M00, 'F' in --scans, 'M' in the table); the table's is written: where it is wrong, "
            "correct it and import again\n") in result.stderr
    assert ("warning: import-cohort writes cohort 'ADNI' over --scans' own 'site_A', 'site_B' in 2 imported scans "
            "(first: sub-ADNI011S0002/ses-M00); an ADNIMERGE import names every scan's cohort ADNI: to keep --scans' "
            "own, give them a column of another name in --scans, which is kept as it is\n") in result.stderr
    assert pd.read_csv(out)[["sex", "cohort"]].values.tolist() == [["M", "ADNI"], ["F", "ADNI"]]
    again = cli_in_process("import-cohort", "--scans", str(out), "--adnimerge", str(adnimerge), "--out",
                           str(tmp_path / "again.csv"))
    assert again.returncode == 0 and "writes cohort" not in again.stderr  # its own ADNI is no other cohort


def test_import_cohort_joins_adnimerge_to_scans(tmp_path: Path, cli_in_process: Cli) -> None:
    scans, adnimerge = _adni_import_inputs(tmp_path)
    out = tmp_path / "out" / "manifest.csv"
    importer = ("import-cohort", "--scans", str(scans), "--adnimerge", str(adnimerge))
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "elr_mri.cli", *importer, "--out", str(out)],
                            capture_output=True, text=True, cwd=ROOT)  # the command itself; its refusals in-process
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "elr_mri.data.adni_import" in imported and "torch" not in imported  # a table's import needs no torch (2 s)
    assert f"note: preprocess failed on 1 scan(s), so they are not in {scans}" in result.stderr  # said, not lost
    (tmp_path / "failures.csv").write_text("")  # unreadable: said, and the import still written
    result = cli_in_process(*importer, "--out", str(out))
    assert result.returncode == 0 and "note: cannot count the scans preprocess failed on" in result.stderr
    manifest = pd.read_csv(out).set_index("participant_id")
    assert manifest.loc["sub-ADNI011S0003", "diagnosis"] == "AD"  # Dementia at the 6-month visit
    assert manifest.loc["sub-ADNI011S0003", "age"] == pytest.approx(81.8)  # AGE is at baseline: + Years_bl
    assert "sub-ADNI011S0099" not in manifest.index  # no ADNIMERGE row: left out, with its reason
    assert len(pd.read_csv(tmp_path / "out" / "manifest_dropped.csv")) == 1
    nothing = pd.DataFrame({"participant_id": ["sub-ADNI099S0001"], "session_id": ["ses-M00"], "path": ["x.nii.gz"]})
    nothing.to_csv(scans, index=False)
    result = cli_in_process(*importer, "--out", str(tmp_path / "none.csv"))
    assert result.returncode == 2 and "no manifest was written" in result.stderr and not (tmp_path / "none.csv").exists()
    result = cli_in_process(*importer, "--out", str(out))
    assert "no manifest was written (the earlier one removed)" in result.stderr and not out.exists()  # not stale
    pd.read_csv(adnimerge).assign(DX=[1, 2, 3], DX_bl=[1, 2, 2]).to_csv(adnimerge, index=False)  # DXSUM's codes
    nothing.assign(participant_id="sub-ADNI011S0002").to_csv(scans, index=False)
    result = cli_in_process(*importer, "--out", str(out))
    assert result.returncode == 2 and "matched" not in result.stderr  # it met its row, whose DX is a code
    assert f"no scan of {scans} could be imported (0 scans imported, 1 left out: 1 with DX '1', " in result.stderr
    assert "(DX 1, 2, 3 are DXSUM's DIAGNOSIS codes, 1 CN, 2 MCI, 3 Dementia" in result.stderr
    result = cli_in_process(*importer, "--out", str(scans))
    assert result.returncode == 2 and "is one of the input files" in result.stderr and scans.exists()
    result = cli_in_process(*importer, "--mapping", "x.yaml", "--out", str(out))
    assert result.returncode == 2 and "--mapping x.yaml applies to --table" in result.stderr
    result = cli_in_process("import-cohort", "--scans", str(scans), "--table", str(scans), "--mapping", "x.yaml",
                            "--baseline-diagnosis", "--out", str(out))  # a setting it would not read
    assert result.returncode == 2 and "--baseline-diagnosis applies to --adnimerge (its DX_bl)" in result.stderr
    before = sorted(tmp_path.rglob("*"))
    result = cli_in_process(*importer, "--out", str(tmp_path / "out"))  # a folder: nothing written, its name said
    assert result.returncode == 2 and f"--out {tmp_path / 'out'} is a folder; pass the manifest CSV" in result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_import_cohort_warns_of_an_empty_processed_path_and_of_one_file_under_two_ids(tmp_path: Path,
                                                                                    cli_in_process: Cli) -> None:
    """Both imported without a word, and training refused them row by row, far from the --scans they came from."""
    scans, adnimerge = _adni_import_inputs(tmp_path)
    table = pd.read_csv(scans)
    table.assign(processed_path=["p.nii.gz", "p.nii.gz", ""]).to_csv(scans, index=False)
    pd.read_csv(adnimerge).assign(PTID=["011_S_0002", "011_S_0003", "011_S_0099"], VISCODE=["bl", "m06", "bl"]).to_csv(
        adnimerge, index=False)
    result = cli_in_process("import-cohort", "--scans", str(scans), "--adnimerge", str(adnimerge), "--out",
                            str(tmp_path / "adni.csv"))
    assert result.returncode == 0 and len(pd.read_csv(tmp_path / "adni.csv")) == 3, result.stderr
    assert ("warning: 1 imported scan(s) have an empty processed_path (first: sub-ADNI011S0099/ses-M00); training "
            "refuses them: preprocess them (or drop their rows) in --scans and import again\n") in result.stderr
    assert ("warning: 1 processed file(s) are named by scans under two ids in --scans (first: sub-ADNI011S0002/ses-M00 "
            f"and sub-ADNI011S0003/ses-M06 ({os.path.realpath(tmp_path / 'p.nii.gz')})); training refuses one scan split as two: keep one "
            "row per file in --scans and import again\n") in result.stderr


@pytest.mark.parametrize("below", ["", "new/"])
def test_import_cohort_refuses_an_out_it_cannot_write_before_importing(tmp_path: Path, cli_in_process: Cli, read_only,
                                                                       below: str) -> None:
    """On read-only storage the import ran, said its notes, then failed naming only `*_dropped.csv`, its first write."""
    scans, adnimerge = _adni_import_inputs(tmp_path)
    read_only(tmp_path / "archive")
    out = tmp_path / "archive" / below / "adni.csv"
    result = cli_in_process("import-cohort", "--scans", str(scans), "--adnimerge", str(adnimerge), "--out", str(out))
    assert result.returncode == 2 and result.stdout == ""
    assert re.fullmatch(rf"elr-mri import-cohort: error: {re.escape(str(out.parent))}: cannot write there \((Read-only "
                        r"file system|Permission denied)\), where adni.csv and adni_dropped.csv go; pass --out a CSV "
                        r"in a folder you can write\n", result.stderr), result.stderr


def _trained_run_reading_a_copy(trained: dict[str, Path], tmp_path: Path, key: str) -> tuple[Path, Path]:
    """(a copy of the trained run, a copy of its `data.mri.<key>` file that the run's config.yaml now names), for a test
    to edit the file as if the run had trained on it, without training another run. The path differs from the one
    last.pt records, which a resume refuses too, but after the checks of the data these tests are about: each asserts
    its own check's line."""
    run, copy = tmp_path / "run", tmp_path / f"{key}.csv"
    shutil.copytree(trained["run"], run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    shutil.copy(config["data"]["mri"][key], copy)
    config["data"]["mri"][key] = str(copy)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run, copy


def _resume_to_two_epochs_is_refused(run: Path, cli_in_process: Cli, because: str) -> str:
    """The one line of `train --resume RUN --set train.epochs=2`, refused `because`, with nothing trained."""
    result = cli_in_process("train", "--resume", str(run), "--set", "train.epochs=2", "--set", "train.progress=false")
    # the fixture's panel repeats the manifest's diagnoses, which is warned of before the manifest is compared
    said = [line for line in result.stderr.strip().splitlines() if "so the run validates as without it" not in line]
    assert result.returncode == 2 and len(said) == 1, result.stderr[-2000:]
    assert because in result.stderr, result.stderr
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1]  # nothing trained
    return result.stderr


def test_a_resume_on_an_edited_manifest_is_refused(trained: dict[str, Path], tmp_path: Path,
                                                   cli_in_process: Cli) -> None:
    run, manifest = _trained_run_reading_a_copy(trained, tmp_path, "manifest")
    validated = pd.read_csv(run / "splits.csv").query("split == 'val'")["participant_id"].iloc[0]
    rows = pd.read_csv(manifest)
    rows[rows["participant_id"] != validated].to_csv(manifest, index=False)  # one validation participant dropped
    said = _resume_to_two_epochs_is_refused(run, cli_in_process, "the manifest has changed since training")
    assert " then, " in said


def test_a_resume_on_a_manifest_whose_training_rows_moved_is_refused(trained: dict[str, Path], tmp_path: Path,
                                                                     cli_in_process: Cli) -> None:
    """Two training scans of one diagnosis trading rows keep the labels, splits and ages in order, but ELR's targets
    and the mislabel table are kept by row: each scan would go on under the other's."""
    run, manifest = _trained_run_reading_a_copy(trained, tmp_path, "manifest")
    rows = pd.read_csv(manifest, dtype={"session_id": str})
    training = set(pd.read_csv(run / "splits.csv").query("split == 'train'")["participant_id"])
    same_label = rows[rows["participant_id"].isin(training) & (rows["diagnosis"] == "CN")].index[:2]
    scan = ["participant_id", "session_id", "path"]
    rows.loc[same_label, scan] = rows.loc[same_label[::-1], scan].to_numpy()
    rows.to_csv(manifest, index=False)
    _resume_to_two_epochs_is_refused(run, cli_in_process, "the data now gives its training scans in another order")


def test_a_resume_on_a_manifest_with_other_ages_is_refused(trained: dict[str, Path], tmp_path: Path,
                                                           cli_in_process: Cli) -> None:
    """Age is an input of the model (×1 + age): a manifest whose ages changed since training (an import redone
    with corrected visit dates) would feed the resumed epochs other inputs than the first ones."""
    run, manifest = _trained_run_reading_a_copy(trained, tmp_path, "manifest")
    rows = pd.read_csv(manifest)
    rows.assign(age=rows["age"] + 1.0).to_csv(manifest, index=False)
    _resume_to_two_epochs_is_refused(run, cli_in_process, "the data now gives other ages")


def test_a_resume_on_an_edited_validation_panel_is_refused(trained: dict[str, Path], tmp_path: Path,
                                                           cli_in_process: Cli) -> None:
    """The selection compares each epoch's validation accuracy with the best so far: a panel relabelled since
    training would pick the best epoch across two sets of labels."""
    run, panel = _trained_run_reading_a_copy(trained, tmp_path, "val_labels")
    splits = pd.read_csv(run / "splits.csv")
    validated = set(splits.loc[splits["split"] == "val", "participant_id"])
    rows = pd.read_csv(panel)
    moved = rows["participant_id"].isin(validated)
    rows.loc[moved, "diagnosis"] = rows.loc[moved, "diagnosis"].map({"CN": "MCI", "MCI": "AD", "AD": "CN"})
    rows.to_csv(panel, index=False)
    _resume_to_two_epochs_is_refused(run, cli_in_process, "the data now gives other validation or test labels")


def test_contradicting_resume_and_out_is_one_line(trained: dict[str, Path], tmp_path: Path,
                                                  cli_in_process: Cli) -> None:
    result = cli_in_process("train", "--resume", str(trained["run"]), "--out", str(tmp_path / "elsewhere"))
    assert result.returncode == 2 and "a resumed run continues in its own directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(("flag", "inside"), [("--run", "checkpoints/best.pt"), ("--run", "checkpoints"),
                                             ("--compare-with", "config.yaml"), ("--drop-suspected", "config.yaml"),
                                             ("explain", "config.yaml"), ("--resume", "checkpoints/last.pt")])
def test_a_file_or_folder_of_a_run_passed_for_the_run_names_the_run(trained: dict[str, Path], cli_in_process: Cli,
                                                                      flag: str, inside: str) -> None:
    """A tab-completed RUN/checkpoints/best.pt was searched for RUN/checkpoints/best.pt/checkpoints/best.pt, and
    the line asked whether it was a run directory instead of naming the run it lies in."""
    run, holdout = trained["run"], str(trained["holdout"])
    given = run / inside
    kind = "folder" if given.is_dir() else "file"
    argv = {"--run": ("evaluate", "--run", str(given), "--bootstrap", "20"),
            "--compare-with": ("evaluate", "--run", str(run), "--manifest", holdout, "--compare-with", str(given)),
            "--drop-suspected": ("evaluate", "--run", str(run), "--manifest", holdout, "--baselines",
                                 "--drop-suspected", str(given)),
            "explain": ("explain", "--run", str(given)),
            "--resume": ("train", "--resume", str(given))}[flag]
    result = cli_in_process(*argv)
    said = (f"--resume {given}: is a {kind} of the run; pass the run's folder: --resume {run}" if flag == "--resume"
            else f"{given}: is a {kind} of the run {run}; pass the run's folder, {run}")
    assert result.returncode == 2 and result.stderr == f"elr-mri {argv[0]}: error: {said}\n", result.stderr[-2000:]


def test_evaluate_refuses_too_few_bootstrap_resamples(trained: dict[str, Path], cli_in_process: Cli) -> None:
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--bootstrap", "0")
    assert result.returncode == 2 and "--bootstrap 0: the 95% intervals need resamples" in result.stderr


def test_compare_with_a_folder_that_is_no_mri_run_is_one_line_before_evaluating(trained: dict[str, Path],
                                                                                 tmp_path: Path,
                                                                                 cli_in_process: Cli) -> None:
    result = cli_in_process("evaluate", "--run", str(trained["run"]), "--manifest", str(trained["holdout"]),
                            "--compare-with", str(tmp_path / "nope"))
    assert result.returncode == 2 and f"{tmp_path / 'nope'}: no splits.csv" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""  # nothing evaluated first


def test_the_test_split_is_scored_without_the_holdout_and_panel_training_checked(trained: dict[str, Path],
                                                                                  tmp_path: Path,
                                                                                  cli_in_process: Cli) -> None:
    """Neither is read to score the test split, so one moved since training must not stop it; a run trained with
    train.device cuda is scored on the CPU of a machine without a GPU."""
    run = tmp_path / "moved"
    shutil.copytree(trained["run"], run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["mri"].update(holdout_manifest=str(tmp_path / "gone/NACC.csv"),
                                 val_labels=str(tmp_path / "gone/panel.csv"))
    config["train"]["device"] = "cuda"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "eval-test").mkdir(exist_ok=True)
    (run / "eval-test" / "summary.json").unlink(missing_ok=True)
    result = cli_in_process("evaluate", "--run", str(run), "--bootstrap", "20")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run / "eval-test" / "summary.json").is_file()
    gpu = __import__("torch").cuda.is_available()
    assert gpu or f"{run}: trained with train.device cuda; no CUDA device is visible here, so it is scored on the " \
                  "CPU" in result.stderr


@pytest.mark.parametrize("command", ["evaluate", "explain"])
def test_a_holdout_without_a_usable_scan_is_one_line(trained: dict[str, Path], tmp_path: Path, command: str,
                                                     cli_in_process: Cli) -> None:
    pd.read_csv(trained["holdout"]).iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    result = cli_in_process(command, "--run", str(trained["run"]), "--manifest", str(tmp_path / "empty.csv"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"elr-mri {command}: error: {tmp_path / 'empty.csv'}: no scans to score (no rows, or "
                                                  "only scans whose status says preprocessing failed); pass a manifest "
                                                  "with at least one usable scan"]


def test_explaining_again_keeps_no_map_of_a_class_the_new_scans_lack(trained: dict[str, Path], tmp_path: Path,
                                                                     cli_in_process: Cli) -> None:
    run, manifest = tmp_path / "run", tmp_path / "cohort.csv"
    shutil.copytree(trained["run"], run)
    holdout = pd.read_csv(trained["holdout"])
    holdout.to_csv(manifest, index=False)
    first = cli_in_process("explain", "--run", str(run), "--manifest", str(manifest))
    assert first.returncode == 0, first.stderr[-2000:]
    out = run / "explain-cohort"
    assert {p.name for p in out.glob("saliency_AD*")} == {"saliency_AD.nii.gz", "saliency_AD.png"}
    holdout[holdout["diagnosis"] != "AD"].to_csv(manifest, index=False)
    (out / "saliency_MCI").mkdir()  # as code before percent-encoded names left a class `MCI/AD`'s map
    (out / "saliency_MCI" / "AD.png").write_bytes((out / "saliency_AD.png").read_bytes())
    (out / "saliency_notes.txt").write_text("the user's")
    result = cli_in_process("explain", "--run", str(run), "--manifest", str(manifest))
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list(out.glob("saliency_AD*")) and (out / "saliency_CN.nii.gz").is_file()
    assert (out / "saliency_MCI").is_dir() and (out / "saliency_notes.txt").read_text() == "the user's"
    assert json.loads((out / "summary.json").read_text())["scans"] == 4


def test_a_second_explain_of_one_run_and_manifest_is_refused_while_the_first_writes(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli, lock_held_elsewhere: Locked) -> None:
    """Two `explain`s of one run and manifest each removed the other's maps and wrote their own, leaving one's
    summary.json beside a mix of both. The first is imitated by a process holding the folder's lock."""
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    out = run / f"explain-{trained['holdout'].stem}"
    shutil.rmtree(out, ignore_errors=True)  # what an earlier test's explain of the shared run left
    out.mkdir()
    with lock_held_elsewhere(out / ".explain.lock"):
        refused = cli_in_process("explain", "--run", str(run), "--manifest", str(trained["holdout"]))
    assert refused.returncode == 2 and refused.stderr == (
        f"elr-mri explain: error: {out}: another `elr-mri explain` is writing there; let it finish (or stop it) "
        "first\n")
    assert not list(out.glob("saliency_*")) and not (out / "summary.json").exists()
    result = cli_in_process("explain", "--run", str(run), "--manifest", str(trained["holdout"]))  # the first ended
    assert result.returncode == 0 and (out / "summary.json").is_file(), result.stderr[-2000:]


def test_a_class_whose_name_holds_a_slash_gets_its_map_under_a_file_name(trained: dict[str, Path], tmp_path: Path,
                                                                        cli_in_process: Cli) -> None:
    """A class `MCI/AD` (a cohort's own grouping) trained and scored, then failed in explain when its map was written,
    after every gradient had been computed."""
    run, manifest = tmp_path / "run", tmp_path / "cohort.csv"
    shutil.copytree(trained["run"], run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["mri"]["classes"] = ["CN", "MCI/AD", "AD"]  # the run's classes, renamed: same network
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    shape = json.loads((run / "data_shape.json").read_text())
    (run / "data_shape.json").write_text(json.dumps({**shape, "class_names": ["CN", "MCI/AD", "AD"]}))
    pd.read_csv(trained["holdout"]).replace({"diagnosis": {"MCI": "MCI/AD"}}).to_csv(manifest, index=False)
    result = cli_in_process("explain", "--run", str(run), "--manifest", str(manifest))
    assert result.returncode == 0, result.stderr[-2000:]
    names = {p.name for p in (run / "explain-cohort").glob("saliency_*")}
    assert names == {f"saliency_{name}.{ext}" for name in ("CN", "MCI%2FAD", "AD") for ext in ("nii.gz", "png")}


def test_an_unreadable_holdout_scan_after_training_says_the_run_finished(trained: dict[str, Path], tmp_path: Path,
                                                                          cli_in_process: Cli) -> None:
    holdout = pd.read_csv(trained["holdout"])
    damaged = tmp_path / "damaged.nii.gz"  # its header reads (checked at the start), its voxels do not
    damaged.write_bytes(Path(holdout.loc[1, "processed_path"]).read_bytes()[:5000])
    holdout.loc[1, "processed_path"] = str(damaged)
    holdout.to_csv(tmp_path / "nacc.csv", index=False)
    run = tmp_path / "run"
    result = cli_in_process("train", "--config", str(CONFIG), "--out", str(run), "--set",
                            f"data.mri.manifest={trained['train']}", "--set", f"data.mri.holdout_manifest={tmp_path / 'nacc.csv'}",
                            "--set", "train.epochs=1", "--set", "train.progress=false", "--set", "train.tensorboard=false")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]  # after the run's own warnings, if any
    assert last.startswith(f"elr-mri train: error: training finished ({run}), but scoring the holdout failed: "
                           f"{damaged}: cannot be read")
    assert f"once fixed: elr-mri evaluate --run {run} --manifest {tmp_path / 'nacc.csv'}" in result.stderr
    assert (run / "summary.json").is_file()


def test_training_with_the_blur_on_the_device_trains_as_the_loaders_blur(trained: dict[str, Path], tmp_path: Path,
                                                                          cli_in_process: Cli,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`data.mri.blur_on: device` (the default on a GPU) against the loader's blur, both on this CPU."""
    from elr_mri.engine import feeding

    blurred_batches = []

    def counted(*args, **kwargs):
        blurred_batches.append(1)
        return feeding_blur(*args, **kwargs)

    feeding_blur = feeding.blur_and_trim
    monkeypatch.setattr(feeding, "blur_and_trim", counted)
    losses = {}
    for where in ("loader", "device"):
        run = tmp_path / where
        result = cli_in_process("train", "--config", str(CONFIG), "--out", str(run), "--set",
                                f"data.mri.manifest={trained['train']}", "--set", "data.augment=true", "--set",
                                f"data.mri.blur_on={where}", "--set", "train.epochs=1", "--set", "train.progress=false",
                                "--set", "train.tensorboard=false")
        assert result.returncode == 0, result.stderr[-3000:]
        losses[where] = pd.read_csv(run / "metrics.csv")["train_loss"].iloc[0]
        assert bool(blurred_batches) == (where == "device")
    assert losses["device"] == pytest.approx(losses["loader"], abs=1e-4)


def test_training_on_phase_grids_trains_as_the_dilated_kernels(trained: dict[str, Path], tmp_path: Path,
                                                               cli_in_process: Cli) -> None:
    """`train.phase_grid_convs`: the same sums in another order, so the same losses and predictions, recorded. The
    module's run is the one with dilated kernels: one epoch of the same scans and seed (its validation panel holds the
    given labels), whose later steps already train on what the first computed through the phase grids."""
    run = tmp_path / "phase_grids"
    result = cli_in_process("train", "--config", str(CONFIG), "--out", str(run), "--set",
                            f"data.mri.manifest={trained['train']}", "--set", "train.phase_grid_convs=true",
                            "--set", "train.epochs=1", "--set", "train.progress=false", "--set",
                            "train.tensorboard=false")
    assert result.returncode == 0, result.stderr[-3000:]
    on, off = (pd.read_csv(folder / "metrics.csv") for folder in (run, trained["run"]))
    for column in ("train_loss", "val_acc", "test_acc"):
        np.testing.assert_allclose(on[column], off[column], rtol=1e-4, atol=1e-4)
    assert "dilated convolutions on phase grids" in json.loads((run / "summary.json").read_text())["execution"]


def test_evaluate_refuses_a_run_whose_splits_csv_was_cut_short_not_blaming_the_manifest(
        trained: dict[str, Path], tmp_path: Path, cli_in_process: Cli) -> None:
    """A splits.csv cut at a row's end still parsed: evaluate said the manifest had changed since training."""
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    rows = (run / "splits.csv").read_text().splitlines(keepends=True)
    (run / "splits.csv").write_text("".join(rows[:-2]))
    result = cli_in_process("evaluate", "--run", str(run), "--bootstrap", "20")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert result.stderr.startswith(f"elr-mri evaluate: error: {run / 'splits.csv'}: it lists ")
    assert "the run's splits are damaged" in result.stderr and "has changed since training" not in result.stderr
