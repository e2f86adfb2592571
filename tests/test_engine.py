"""The training engine end to end on sklearn's digits: CLI, run directory, resume, errors."""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import shlex
import shutil
import os
import random
import re
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from elr_mri.cli import main
from elr_mri.config import config_to_dict, load_config
from elr_mri.atomic_files import atomic_write_json
from elr_mri.engine.checkpoint import CheckpointError, load_checkpoint
from elr_mri.tensor_files import atomic_save
from elr_mri.engine.execution import ExecutionPlan, busy_cores_note, limit_cpu_threads, precision_note
from elr_mri.engine.methods import build_method
from elr_mri.engine.run_dir import RUN_LOCK, check_run_dir, exclusive_run_dir, holds_a_run
from elr_mri.engine.runner import CheckpointWriter, RunState, _improves
from elr_mri.engine.selection import selection_rule
from elr_mri.engine.start import train
from elr_mri.engine.tracking import PredictionTracker

ROOT = Path(__file__).parents[1]
DIGITS = ROOT / "configs" / "digits" / "elr_sym40.yaml"
SMALL = ["data.train_subset=500", "train.progress=false", "train.tensorboard=false"]
Cli = Callable[..., subprocess.CompletedProcess]  # the cli_in_process fixture
Finished = Callable[..., Path]  # the finished_run fixture
Locked = Callable[[Path], contextlib.AbstractContextManager[None]]  # the lock_held_elsewhere fixture


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "elr_mri.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """`finished_run(epochs, to, *settings)`: a copy at `to` of a finished digits run of `epochs` epochs (SMALL and
    `settings`), trained once for this file. A score of tests start from such a run and each trained its own: the
    same files, as the run is seeded and none of them names its folder, so a copy is what the test's own training
    wrote."""
    trained: dict[tuple[str, ...], Path] = {}

    def copy(epochs: int, to: Path, *settings: str) -> Path:
        key = (*SMALL, f"train.epochs={epochs}", *settings)
        if key not in trained:
            trained[key] = tmp_path_factory.mktemp(f"digits-{epochs}-epochs") / "run"
            train(load_config(DIGITS, list(key)), trained[key])
        return Path(shutil.copytree(trained[key], to))

    return copy


def test_dataloader_workers_are_forked_on_linux_whatever_pythons_default() -> None:
    """Python 3.14 starts processes by forkserver on Linux: each epoch's loaders then imported torch again in every
    worker, 23 s an epoch of digits against 0.7 s forked."""
    import multiprocessing

    from elr_mri.data import build_data
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder

    cfg = load_config(DIGITS, [*SMALL, "train.loader=dataloader", "data.num_workers=1"])
    feeder = BatchFeeder(build_data(cfg.data), cfg, DistContext(), torch.device("cpu"))
    default = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("forkserver", force=True)
    try:
        loaders = [feeder.train_epoch(1).batches, feeder.evaluation("val")]
        started = [loader.multiprocessing_context.get_start_method() for loader in loaders]
        first = next(iter(loaders[0]))
    finally:
        multiprocessing.set_start_method(default, force=True)
    assert started == ["fork" if sys.platform == "linux" else "spawn"] * 2
    assert len(first["index"]) == cfg.train.batch_size


def _worker_starts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the worker processes started from now on, forked or spawned (`worker_start`), in order."""
    import multiprocessing.context

    from preprocess.workers import _WorkerDeafToCtrlC

    started: list[str] = []
    for process in (multiprocessing.context.ForkProcess, _WorkerDeafToCtrlC):
        def counted(self, start: Callable = process.start, name: str = process.__name__) -> None:
            started.append(name)
            start(self)
        monkeypatch.setattr(process, "start", counted)
    return started


def _trained_with_loader_workers(out: Path) -> Path:
    """A 2-epoch digits run on the DataLoader path with 2 workers, on one torch thread: this process's count is put
    back after, or later tests' runs here summed otherwise than their runs in subprocesses."""
    settings = [*SMALL, "train.epochs=2", "train.loader=dataloader", "data.num_workers=2", "train.threads=1"]
    threads = torch.get_num_threads()
    try:
        train(load_config(DIGITS, settings), out)
    finally:
        torch.set_num_threads(threads)
    return out


def test_loader_workers_start_once_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loaders, and so their workers, were made anew each epoch: spawned ones (macOS) imported torch and
    unpickled the split every time, 36 s an epoch of digits with 2 workers against 0.6 s forked. Kept for the run,
    2 workers each serve training, validation and test through both epochs."""
    started = _worker_starts(monkeypatch)
    _trained_with_loader_workers(tmp_path / "run")
    assert len(started) == 6, started


@pytest.mark.slow  # each spawned worker imports torch: 73 s on 2 busy cores
def test_spawned_loader_workers_train_as_forked_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers kept from epoch to epoch, each spawned as on macOS, give the forked run (Linux) bit for bit."""
    from elr_mri.engine import feeding
    from preprocess.workers import _SpawnedDeafToCtrlC

    forked = _trained_with_loader_workers(tmp_path / "forked")  # spawned too where Linux is not
    monkeypatch.setattr(feeding, "forked_on_linux", _SpawnedDeafToCtrlC)
    started = _worker_starts(monkeypatch)
    spawned = _trained_with_loader_workers(tmp_path / "spawned")

    assert started == ["_WorkerDeafToCtrlC"] * 6
    metrics = [pd.read_csv(run / "metrics.csv").drop(columns=["epoch_seconds", "eval_seconds"])
               for run in (spawned, forked)]
    pd.testing.assert_frame_equal(*metrics)
    for checkpoint in ("best.pt", "last.pt"):
        states = [load_checkpoint(run / "checkpoints" / checkpoint) for run in (spawned, forked)]
        _assert_nested_equal(*({**state, "wall_seconds": 0} for state in states))
    flagged = [(run / "suspected_mislabels.csv").read_bytes() for run in (spawned, forked)]
    assert flagged[0] == flagged[1]


def test_a_collapsed_run_selected_at_its_last_epoch_names_it_and_the_class(tmp_path: Path,
                                                                           cli_in_process: Cli) -> None:
    """A learning rate of 5 throws the digits MLP onto one class; selected at the last epoch, the warning names that
    epoch and the class and, its training loss having blown up, the learning rate (CE collapses alike there), not
    ELR's λ, nor "compare the last epoch" (itself)."""
    out = tmp_path / "run"
    sets = [*SMALL, "train.epochs=2", "optim.lr=5", "train.select=last"]
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 0, result.stderr
    last = pd.read_csv(out / "metrics.csv").iloc[-1]
    assert last["val_top_class_share"] == 1.0
    (warning,) = json.loads((out / "summary.json").read_text())["warnings"]
    assert f"last epoch 2, the selected one, gives class {int(last['val_top_class'])} to 100%" in warning
    assert "so its outputs blew up: lower optim.lr" in warning
    assert "loss.lam" not in warning and "--checkpoint last" not in warning
    assert warning in result.stderr


def test_a_collapsed_selected_epoch_names_the_run_in_its_evaluate_command(tmp_path: Path, cli_in_process: Cli) -> None:
    """The warning's command said `--run RUN_DIR` where the run's folder was known: it is filled in, ready to paste."""
    out = tmp_path / "run"
    sets = [*SMALL, "train.epochs=3", "optim.lr=5"]  # epoch 1 already at one class, and selected
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 0, result.stderr
    selected = json.loads((out / "summary.json").read_text())["warnings"][0]
    assert selected.endswith(f"compare the last epoch (elr-mri evaluate --run {out} --checkpoint last)"), selected


def test_cli_train_writes_a_complete_run_directory(tmp_path: Path, cli_in_process: Cli) -> None:
    out = tmp_path / "run"
    result = _cli("train", "--config", str(DIGITS), "--out", str(out), "--set", "train.epochs=4",
                  *[a for s in SMALL for a in ("--set", s)])
    assert result.returncode == 0, result.stderr
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3, 4]
    assert {"train_loss", "val_acc", "test_acc", "noisy_pred_given", "clean_pred_true"} <= set(metrics.columns)
    assert metrics["val_top_class_share"].between(0.1, 1.0).all()  # ten digit classes: at least a tenth
    assert metrics["val_label_top_share"].nunique() == 1  # the labels do not change between epochs
    assert metrics["val_label_top_share"].between(0.1, 0.5).all()  # ten roughly balanced digit classes
    assert metrics["val_top_class"].between(0, 9).all()  # the class a collapse warning names
    summary = json.loads((out / "summary.json").read_text())
    assert "warnings" not in summary  # digits learns; neither the selected nor the last epoch is one class
    assert summary["selection_rule"].startswith("best accuracy on the validation split")
    assert "noisy labels" in summary["selection_rule"]  # no adjudicated validation labels here
    assert 0.0 <= summary["mislabels"]["precision"] <= 1.0
    assert (out / "memorization.png").stat().st_size > 10_000
    table = pd.read_csv(out / "suspected_mislabels.csv")
    assert list(table.columns[:5]) == ["index", "original_index", "given_label", "suggested_label", "confidence"]
    assert table["original_index"].is_unique and (table["original_index"] != table["index"]).any()  # the release's
    assert (table["given_label"] != table["suggested_label"]).all()
    assert table["margin"].is_monotonic_decreasing
    assert (table["source"] == "elr_target").all()
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")  # weights_only=True
    assert ckpt["epoch"] == 4 and ckpt["method"]["loss"]["targets"].shape[1] == 10
    assert "selection_rule" in (out / "config.yaml").read_text()
    # images: one level, resampled image by image (`evaluate` started for real: test_mri_cli.py)
    result = cli_in_process("evaluate", "--run", str(out), "--bootstrap", "20")
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(out / "eval-test" / "predictions.csv")
    test_images = len(scored)
    assert scored["index"].tolist() == list(range(test_images))  # each row names its image
    assert f"  image level ({test_images} examples):" in result.stdout and "participant" not in result.stdout
    assert set(pd.read_csv(out / "eval-test" / "metrics.csv")["level"]) == {"image"}


def test_predictions_of_images_read_from_files_name_the_file() -> None:
    from types import SimpleNamespace

    from elr_mri.evaluation.evaluate import _row_ids

    ids = _row_ids(SimpleNamespace(paths=["images/0/10.jpg", "images/3/7.jpg"]), 2)
    assert ids.to_dict("list") == {"index": [0, 1], "path": ["images/0/10.jpg", "images/3/7.jpg"]}


def test_balanced_accuracy_selection_keeps_the_epoch_with_the_best_mean_recall(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(load_config(DIGITS, [*SMALL, "train.epochs=4", "train.select=val_balanced_acc"]), out)
    # pandas 2 parses floats 1 ulp off unless asked to round-trip; pandas 3 round-trips by default and deprecates asking
    exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    metrics = pd.read_csv(out / "metrics.csv", **exact)
    assert metrics["val_balanced_acc"].between(0.0, 1.0).all()
    assert not metrics["val_balanced_acc"].equals(metrics["val_acc"])  # digit classes differ in size a little
    assert summary["best_epoch"] == int(metrics.loc[metrics["val_balanced_acc"].idxmax(), "epoch"])
    assert summary["val_balanced_acc_at_best"] == metrics["val_balanced_acc"].max()
    assert summary["selection_rule"].startswith("best balanced accuracy (mean recall over the classes)")
    assert torch.load(out / "checkpoints" / "best.pt", weights_only=True)["epoch"] == summary["best_epoch"]


@pytest.mark.parametrize(("loss", "checkpoint_seconds"), [("elr", 0), ("elr_plus", 0), ("elr_plus-epoch", 0),
                                                         ("elr", 3600)])
def test_killed_run_resumes_to_the_same_result(tmp_path: Path, loss: str, checkpoint_seconds: int,
                                               cli_in_process: Cli) -> None:
    loss, _, alternation = loss.partition("-")
    # killed after epoch 3 (or 4): the resumed run crosses the learning rate's drop at 5 (12 epochs crossed no more)
    overrides = [*SMALL, f"loss.name={loss}", "train.epochs=8", "schedule.milestones=[5]",
                 "elr_plus.ema_ramp_steps=50", f"train.checkpoint_seconds={checkpoint_seconds}",
                 *([f"elr_plus.alternation={alternation}"] if alternation else [])]
    reference = train(load_config(DIGITS, overrides), tmp_path / "uninterrupted")

    out = tmp_path / "killed"
    _kill_after_epochs(3, out, "--config", str(DIGITS), "--out", str(out),
                       *[a for s in overrides for a in ("--set", s)])
    assert 3 <= _rows(out) < 8, "the run should have been killed part-way"
    last = out / "checkpoints" / "last.pt"
    if checkpoint_seconds:  # nothing written yet: the run starts over in place
        assert not last.exists() and not (out / "checkpoints" / "best.pt").exists()
    else:  # written every epoch: the resumed run starts from where it was killed (the row or the one before)
        assert load_checkpoint(last)["epoch"] >= 2

    result = cli_in_process("train", "--resume", str(out))
    assert result.returncode == 0, result.stderr
    resumed, uninterrupted = (pd.read_csv(d / "metrics.csv").drop(columns=["epoch_seconds", "eval_seconds"])
                              for d in (out, tmp_path / "uninterrupted"))
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    a = load_checkpoint(out / "checkpoints" / "last.pt")["method"]
    b = load_checkpoint(tmp_path / "uninterrupted" / "checkpoints" / "last.pt")["method"]
    _assert_nested_equal(a, b)
    assert json.loads((out / "summary.json").read_text())["test_acc_last"] == reference["test_acc_last"]


def _small_run_at_its_start() -> tuple:
    """(config, method, tracker, state) of a small CNN on 32 digits, as a checkpoint writer sees them."""
    cfg = load_config(DIGITS, ["model.name=small_cnn", "model.hidden=8"])
    method = build_method(cfg, (1, 8, 8), 10, 32, ExecutionPlan.from_config(cfg.train, torch.device("cpu")))
    return cfg, method, PredictionTracker(32, 10, torch.device("cpu")), RunState()


def test_a_better_epoch_held_back_is_written_as_it_was(tmp_path: Path) -> None:
    """Between writes the best epoch's weights wait in host memory: a copy, not the live tensors."""
    cfg, method, tracker, state = _small_run_at_its_start()
    writer = CheckpointWriter(tmp_path, every_seconds=3600, config={})
    state.epoch = state.best_epoch = 1
    writer.after_epoch(method, tracker, state, is_best=True, final=False)
    assert not (tmp_path / "checkpoints").exists(), "within the interval nothing is written"
    weights_then = {name: value.clone() for name, value in method.model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    method.train_step({"image": torch.rand(32, 1, 8, 8, generator=generator),
                       "label": torch.randint(0, 10, (32,), generator=generator), "index": torch.arange(32)})
    state.epoch = 2
    writer.after_epoch(method, tracker, state, is_best=False, final=True)
    best, last = (load_checkpoint(tmp_path / "checkpoints" / name) for name in ("best.pt", "last.pt"))
    assert best["epoch"] == 1 and last["epoch"] == 2 and last["best_epoch"] == 1
    _assert_nested_equal(best["method"]["model"], weights_then)
    assert not torch.equal(last["method"]["model"]["head.weight"], weights_then["head.weight"])

    # stopped before last.pt: its best.pt (of epoch 1, written at epoch 2, the last logged) marks a first checkpoint
    (tmp_path / "checkpoints" / "last.pt").unlink()  # left incomplete, so the folder is started over
    (tmp_path / "metrics.csv").write_text("epoch\n1\n2\n")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config_to_dict(cfg), "selection_rule": selection_rule(cfg)}))
    (tmp_path / "data_shape.json").write_text("{}")
    check_run_dir(tmp_path, resume=False)
    (tmp_path / "metrics.csv").write_text("epoch\n1\n2\n3\n")  # an epoch logged since: a later last.pt was lost
    with pytest.raises(FileExistsError, match="last.pt is missing, but best.pt beside it shows"):
        check_run_dir(tmp_path, resume=False)


def test_ctrl_c_while_best_pt_is_written_waits_for_last_pt_too(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped between the two files, a run's first checkpoint leaves best.pt without last.pt: a folder that is
    neither a run to resume nor, at first sight, one to start over."""
    import elr_mri.engine.runner as runner

    cfg, method, tracker, state = _small_run_at_its_start()
    real_save = runner.atomic_save

    def interrupted_save(obj: dict, path: Path) -> None:
        if path.name == "best.pt":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the first file is written
        real_save(obj, path)

    monkeypatch.setattr(runner, "atomic_save", interrupted_save)
    state.epoch = state.best_epoch = 1
    with pytest.raises(KeyboardInterrupt):
        CheckpointWriter(tmp_path, every_seconds=0, config={}).after_epoch(method, tracker, state, is_best=True,
                                                                          final=True)
    assert (tmp_path / "checkpoints" / "last.pt").exists() and (tmp_path / "checkpoints" / "best.pt").exists()


@pytest.mark.parametrize("loss", ["elr", "elr_plus"])
def test_a_resume_loads_every_part_of_last_pt_back(tmp_path: Path, loss: str) -> None:
    """Weights, optimizer, ELR's targets, ELR+'s EMA copies and step, the tracked predictions, the best score to beat
    and the generators: a part not brought back trains on from a fresh one, which the killed-run comparison sees
    only where that part changes the few epochs it trains (ELR+'s EMA copies are not scored)."""
    from elr_mri.distributed import DistContext
    from elr_mri.engine.resuming import restore_last_checkpoint

    cfg = load_config(DIGITS, ["model.name=small_cnn", "model.hidden=8", f"loss.name={loss}"])
    plan = ExecutionPlan.from_config(cfg.train, torch.device("cpu"))
    method, tracker, state = build_method(cfg, (1, 8, 8), 10, 32, plan), PredictionTracker(32, 10), RunState()
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        batch = {"image": torch.rand(32, 1, 8, 8, generator=generator), "index": torch.arange(32),
                 "label": torch.randint(0, 10, (32,), generator=generator)}
        method.train_step({**batch, "pair": batch} if loss == "elr_plus" else batch)
    tracker.load(torch.rand(32, 10, generator=generator))
    state.epoch, state.best_epoch, state.best_val = 1, 1, 0.75
    rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
    CheckpointWriter(tmp_path, every_seconds=0, config=config_to_dict(cfg)).after_epoch(method, tracker, state,
                                                                                        is_best=True, final=True)
    (tmp_path / "metrics.csv").write_text("epoch\n1\n")
    torch.rand(3), np.random.rand(3), random.random()  # the generators move on after the checkpoint
    again, tracked, resumed = build_method(cfg, (1, 8, 8), 10, 32, plan), PredictionTracker(32, 10), RunState()
    restore_last_checkpoint(tmp_path, cfg, again, tracked, resumed, DistContext())
    _assert_nested_equal(again.state_dict(), method.state_dict())
    # compared as held, not through state_dict, which would miss a table or copy it saved wrongly on both sides
    _assert_nested_equal(again.target_tables(), method.target_tables())
    if loss == "elr_plus":
        assert not torch.equal(method.emas[0].state_dict()["head.weight"], method.nets[0].state_dict()["head.weight"])
        _assert_nested_equal([e.state_dict() for e in again.emas], [e.state_dict() for e in method.emas])
    assert torch.equal(tracked.probs, tracker.probs) and torch.equal(torch.get_rng_state(), rng[0])
    numpy_state = np.random.get_state()
    assert np.array_equal(numpy_state[1], rng[1][1]) and numpy_state[2:] == rng[1][2:] and random.getstate() == rng[2]
    assert (resumed.epoch, resumed.best_epoch, resumed.best_val) == (1, 1, 0.75)


def test_an_epoch_ended_after_a_sigterm_is_checkpointed_before_the_run_stops(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM is acted on at the next step; an epoch whose evaluation it came during was lost with up to
    train.checkpoint_seconds of epochs before it."""
    from elr_mri.engine import runner

    monkeypatch.setattr(runner, "terminated", lambda: True)  # recorded during the epoch (test_stopping.py)
    cfg, method, tracker, state = _small_run_at_its_start()
    writer = CheckpointWriter(tmp_path, every_seconds=3600, config={})
    state.epoch = state.best_epoch = 1
    writer.after_epoch(method, tracker, state, is_best=True, final=False)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 1


def test_a_gpu_run_resumes_on_a_machine_that_sees_fewer_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint keeps the generator of the device the run used, and restores it there: one that kept every
    visible GPU's (as before) resumes where fewer are visible, rather than failing on a device that is not there."""
    from elr_mri.engine.checkpoint import capture_rng, restore_rng

    restored: list[tuple[torch.Tensor, int]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)  # e.g. torchrun's second process
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: torch.full((4,), device, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    state = capture_rng()
    assert state["cuda"].tolist() == [1, 1, 1, 1]
    restore_rng(state)
    saved_by_eight = [torch.full((4,), gpu, dtype=torch.uint8) for gpu in range(8)]
    restore_rng({**state, "cuda": saved_by_eight})  # its own device's state
    restore_rng({**state, "cuda": saved_by_eight[:1]})  # saved where one GPU was visible: that one's
    assert [(s.tolist(), device) for s, device in restored] == [([1] * 4, 1), ([1] * 4, 1), ([0] * 4, 1)]


def test_json_outputs_write_undefined_figures_as_null(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "summary.json"
    atomic_write_json({"auc": {"estimate": np.float64("nan"), "low": float("inf")}, "n": np.int64(3),
                       "rows": [np.float32(0.5), "text"]}, path)
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert json.loads(path.read_text()) == {"auc": {"estimate": None, "low": None}, "n": 3, "rows": [0.5, "text"]}


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path: Path, finished_run: Finished,
                                                        cli_in_process: Cli) -> None:
    out = tmp_path / "run"
    finished_run(2, out)
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2

    _kill_after_epochs(4, out, "--resume", str(out), "--set", "train.epochs=40")
    assert 4 <= _rows(out) < 40, "the continued run should have been killed part-way"
    assert not (out / "summary.json").exists(), "the 2-epoch summary no longer describes the run"
    assert not (out / "suspected_mislabels.csv").exists()

    reached = _rows(out)
    assert "epochs: 40" in (out / "config.yaml").read_text(), "a plain --resume would stop at 2 epochs"
    stale = [out / ".tmp999-metrics.csv", out / "checkpoints" / ".tmp999-last.pt"]  # what a kill mid-write leaves
    for path in stale:
        path.write_bytes(b"half")
    result = cli_in_process("train", "--resume", str(out), "--set", f"train.epochs={reached + 2}")
    assert result.returncode == 0, result.stderr
    assert not any(path.exists() for path in stale)
    assert list(pd.read_csv(out / "metrics.csv")["epoch"]) == list(range(1, reached + 3))
    assert json.loads((out / "summary.json").read_text())["epochs"] == reached + 2


def test_a_resume_and_an_evaluate_in_a_half_precision_this_cpu_lacks_say_so(tmp_path: Path,
                                                                             cli_in_process: Cli) -> None:
    """A new run in fp16 on a CPU without native fp16 is told it trains many times slower; a resume switched to fp16
    (train.precision may change on a resume) and an evaluate of that run, as slow, were silent."""
    cpu = torch.device("cpu")
    if not precision_note("fp16", cpu):
        pytest.skip("this CPU computes fp16 natively: nothing to note")
    out = tmp_path / "run"
    sets = [a for s in ["data.train_subset=200", "train.progress=false", "train.tensorboard=false", "train.epochs=1",
                        "model.name=small_cnn", "model.hidden=16"] for a in ("--set", s)]
    new = cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *sets)
    assert new.returncode == 0 and "train.precision" not in new.stderr, new.stderr[-2000:]
    resumed = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=2", "--set", "train.precision=fp16")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert precision_note("fp16", cpu)[0] in resumed.stderr.splitlines()
    scored = cli_in_process("evaluate", "--run", str(out), "--bootstrap", "2")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert precision_note("fp16", cpu, out / "config.yaml")[0] in scored.stderr.splitlines()


def test_a_run_brought_back_to_its_checkpoints_length_says_that_length(tmp_path: Path, finished_run: Finished,
                                                                       cli_in_process: Cli) -> None:
    """An extension stopped before its next checkpoint leaves config.yaml and metrics.csv ahead of last.pt; a resume
    at the checkpoint's length ends the run there, and its records must say so, or a later plain --resume would
    drop the summary and train the abandoned extension on."""
    out = tmp_path / "run"
    finished_run(2, out)
    kept = {name: (out / "checkpoints" / name).read_bytes() for name in ("last.pt", "best.pt")}
    assert cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3").returncode == 0
    for name, content in kept.items():  # as if the extension had been stopped before writing a checkpoint
        (out / "checkpoints" / name).write_bytes(content)
    (out / "summary.json").unlink()
    for args in (["--set", "train.epochs=2"], []):  # then a plain resume: nothing more to train
        result = cli_in_process("train", "--resume", str(out), *args)
        assert result.returncode == 0, result.stderr
        assert "epochs: 2" in (out / "config.yaml").read_text()
        assert list(pd.read_csv(out / "metrics.csv")["epoch"]) == [1, 2]
        assert json.loads((out / "summary.json").read_text())["epochs"] == 2


def test_continuing_a_run_removes_the_evaluations_of_the_checkpoints_it_replaces(tmp_path: Path, finished_run: Finished,
                                                                                 cli_in_process: Cli) -> None:
    """eval-*/ scored best.pt or last.pt as they were: kept, a later `evaluate` run beside them or a script that
    skips evaluations already written (scripts/mri_n1200.py) would report an earlier epoch's weights."""
    from elr_mri.evaluation.evaluate import evaluate_run

    out = tmp_path / "run"
    finished_run(2, out)
    for checkpoint in ("best", "last"):
        evaluate_run(out, checkpoint=checkpoint, n_boot=2)
    explained = out / "explain-test"  # what `elr-mri explain` writes for an MRI run
    explained.mkdir()
    (explained / "summary.json").write_text("{}")
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
    assert result.returncode == 0, result.stderr
    assert not any(out.glob("eval-*")) and not explained.exists()
    assert "eval-test" in result.stderr and "elr-mri evaluate" in result.stderr  # says what went and how to redo it


def test_evaluations_made_while_a_run_trained_go_when_it_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              cli_in_process: Cli) -> None:
    """An evaluation of best.pt made mid-run stayed after the run ended, and the scripts that skip what is written
    reported that epoch's weights as the run's; one made after the end stays through a rerun of the end."""
    import elr_mri.engine.runner as runner
    from elr_mri.evaluation.evaluate import evaluate_run

    out, write_metrics = tmp_path / "run", runner._write_metrics

    def evaluate_mid_run(out_dir: Path, rows: list, writer: object) -> None:
        write_metrics(out_dir, rows, writer)
        if len(rows) == 2:  # best.pt of epoch 1 exists
            evaluate_run(out_dir, n_boot=2)
            evaluate_run(out_dir, checkpoint="last", n_boot=2)

    monkeypatch.setattr(runner, "_write_metrics", evaluate_mid_run)
    train(load_config(DIGITS, [*SMALL, "train.epochs=3", "train.checkpoint_seconds=0"]), out)
    assert not any(out.glob("eval-*"))
    monkeypatch.undo()
    evaluate_run(out, n_boot=2)
    result = cli_in_process("train", "--resume", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "eval-test" / "summary.json").read_text())["run_finished"] is True


def test_an_evaluation_cut_short_while_rewriting_its_folder_leaves_no_summary(
        tmp_path: Path, finished_run: Finished, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """summary.json is what says an evaluation is complete (scripts skip a folder that has one), so a scoring
    killed after writing the new predictions must not leave the previous scoring's summary beside them."""
    import elr_mri.evaluation.evaluate as evaluate
    import elr_mri.evaluation.evaluation_folder as evaluation_folder

    out = tmp_path / "run"
    finished_run(1, out)
    evaluate.evaluate_run(out, n_boot=2)

    def killed(*args: object) -> None:
        raise KeyboardInterrupt  # stands for a kill between the last CSV or plot and the summary

    monkeypatch.setattr(evaluation_folder, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_run(out, n_boot=2)
    assert (out / "eval-test" / "predictions.csv").exists() and not (out / "eval-test" / "summary.json").exists()
    assert main(["evaluate", "--run", str(out), "--bootstrap", "2"]) == 130  # says so, rather than "nothing kept"
    assert capsys.readouterr().err == (
        "elr-mri evaluate: interrupted; an output folder it was rewriting has no summary.json, so nothing reads it "
        "as done (one it had not reached keeps its earlier results); run the command again\n")


@pytest.mark.parametrize("moved_on", ["finished", "extended", "extended and finished again", "new best.pt"])
def test_an_evaluation_the_run_moved_on_under_is_removed(tmp_path: Path, finished_run: Finished,
                                                         monkeypatch: pytest.MonkeyPatch, moved_on: str) -> None:
    """`evaluate` takes no lock: a run that ended or was extended while it scored may have cleaned up its eval folders
    before this one was written, which would then stay, describing old weights. A new checkpoint of a run still
    training is no such case: the run removes that folder when it ends."""
    import elr_mri.evaluation.evaluate as evaluate

    out = tmp_path / "run"
    finished_run(1, out)
    summary = out / "summary.json"
    if moved_on in ("finished", "new best.pt"):  # evaluated mid-run
        summary.rename(tmp_path / "summary.json")
    write_evaluation = evaluate.write_evaluation

    def while_training_goes_on(where: Path, *args: object, **kwargs: object) -> None:
        write_evaluation(where, *args, **kwargs)
        if moved_on == "extended":
            summary.unlink()
        elif moved_on == "new best.pt":  # as atomic_save writes it: a new file renamed into place
            best = out / "checkpoints" / "best.pt"
            shutil.copy(best, tmp_path / "best.pt")
            os.replace(tmp_path / "best.pt", best)
        else:  # the run's end writes its summary (again), renamed into place
            shutil.copy(tmp_path / "summary.json" if moved_on == "finished" else summary, tmp_path / "new.json")
            os.replace(tmp_path / "new.json", summary)

    monkeypatch.setattr(evaluate, "write_evaluation", while_training_goes_on)
    if moved_on == "new best.pt":
        evaluate.evaluate_run(out, n_boot=2)
        assert (out / "eval-test" / "summary.json").exists()
        return
    with pytest.raises(ValueError, match=r"training finished or was extended while eval-test was being made, so "
                                         r"it was removed; run the command again"):
        evaluate.evaluate_run(out, n_boot=2)
    assert not (out / "eval-test").exists()
    monkeypatch.undo()
    evaluate.evaluate_run(out, n_boot=2)  # a run left alone: kept
    assert (out / "eval-test" / "summary.json").exists()


@pytest.mark.parametrize("loss", ["elr", "elr_plus"])
def test_an_extended_run_ends_as_a_run_of_that_length(tmp_path: Path, loss: str) -> None:
    """With a step schedule the rate, ELR's targets, ELR+'s ramps and the best epoch depend on the epoch and step
    only, so 2 epochs continued to 4 give the 4-epoch run."""
    settings = [*SMALL, f"loss.name={loss}", "schedule.milestones=[3]", "elr_plus.ema_ramp_steps=20"]
    train(load_config(DIGITS, [*settings, "train.epochs=4"]), tmp_path / "four")
    train(load_config(DIGITS, [*settings, "train.epochs=2"]), tmp_path / "extended")
    train(load_config(tmp_path / "extended" / "config.yaml", ["train.epochs=4"]), tmp_path / "extended", resume=True)
    for name in ("last.pt", "best.pt"):
        a, b = (load_checkpoint(tmp_path / run / "checkpoints" / name) for run in ("four", "extended"))
        assert a["epoch"] == b["epoch"]
        _assert_nested_equal(a["method"], b["method"])


def test_a_cosine_run_is_not_stretched_to_more_epochs(tmp_path: Path, cli_in_process: Cli) -> None:
    """A cosine schedule spans train.epochs: more epochs would raise the rate again part-way (0.007 at epoch 4
    of 4, then 0.025) and give neither a 4- nor an 8-epoch cosine run; a step schedule extends exactly. The new
    run's command is quoted for a shell: the folder's name has a space."""
    out = tmp_path / "cosine run"
    cosine = [*SMALL, "train.epochs=2", "schedule.name=cosine", "schedule.eta_min=0"]
    train(load_config(DIGITS, cosine), out)
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=4")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "cosine schedule spans train.epochs = 2" in result.stderr
    assert shlex.split(result.stderr.split("start a new run: ")[1]) == [
        "elr-mri", "train", "--config", str(out / "config.yaml"), "--set", "train.epochs=4", "--out", "NEW_RUN_DIR"]
    assert (out / "summary.json").exists() and "epochs: 2" in (out / "config.yaml").read_text()
    result = cli_in_process("train", "--resume", str(out))  # the same length: finishes as it is
    assert result.returncode == 0, result.stderr[-2000:]


def test_resume_refuses_other_settings_a_shorter_run_and_a_missing_run(tmp_path: Path, finished_run: Finished,
                                                                       cli_in_process: Cli) -> None:
    out = tmp_path / "run"
    finished_run(2, out)
    config_before = (out / "config.yaml").read_text()
    (out / "config.yaml").write_text(config_before.replace("lam: 3.0", "lam: 0.0"))  # edited by hand
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "was trained with loss.lam = 3.0" in result.stderr and "restore" in result.stderr
    (out / "config.yaml").write_text(config_before)
    for change, message in (("loss.lam=1", "was trained with loss.lam = 3.0"),
                            ("train.epochs=1", "has trained 2 epochs, so train.epochs = 1 cannot shorten it")):
        result = cli_in_process("train", "--resume", str(out), "--set", change)
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert (out / "config.yaml").read_text() == config_before
    result = cli_in_process("train", "--resume", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no run there" in result.stderr and "--config" in result.stderr
    result = cli_in_process("train", "--resume", str(out / "config.yaml"))
    assert result.stderr == f"elr-mri train: error: --resume {out / 'config.yaml'}: is a file of the run; pass the " \
                            f"run's folder: --resume {out}\n"
    shape = json.loads((out / "data_shape.json").read_text())  # as if data.root now held other images
    (out / "data_shape.json").write_text(json.dumps({**shape, "train_examples": shape["train_examples"] + 5}))
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert f"the data now gives train_examples = {shape['train_examples']}, it trained on" in result.stderr
    # as if data.root now held another copy of the data set, of the same size, in another order
    (out / "data_shape.json").write_text(json.dumps({**shape, "train_labels_sha256": "0" * 64}))
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "the data now gives other training examples or labels" in result.stderr


def test_a_run_from_before_its_training_labels_were_recorded_is_not_trained_on(
        tmp_path: Path, cli_in_process: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run made before 2026-12-03 has no train_labels_sha256: its digits validation split (and so the noisy labels
    of its training split) was drawn otherwise then, and the resume went on silently on the labels drawn now. It is
    refused before its data is read; a plain resume of it finished still prints its summary."""
    from elr_mri.engine import runner

    out = tmp_path / "old run"
    train(load_config(DIGITS, [*SMALL, "train.epochs=1"]), out)
    shape = json.loads((out / "data_shape.json").read_text())
    del shape["train_labels_sha256"]  # as data_shape.json was written before 2026-12-03
    (out / "data_shape.json").write_text(json.dumps(shape))
    assert cli_in_process("train", "--resume", str(out)).returncode == 0  # finished: its summary, nothing trained

    def read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read")

    monkeypatch.setattr(runner, "build_data", read)
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "from before 2026-12-03, which recorded no train_labels_sha256" in result.stderr
    assert result.stderr.endswith(f"--config {shlex.quote(str(out / 'config.yaml'))} --set train.epochs=2 "
                                  "--out NEW_RUN_DIR\n")


def test_a_resume_that_would_shorten_the_run_is_refused_before_its_data_is_read(
        tmp_path: Path, finished_run: Finished, cli_in_process: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MRI cohort takes minutes to load: the refusal came only after it, and after the networks were built."""
    from elr_mri.engine import runner

    out = tmp_path / "run"
    finished_run(2, out)

    def read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read")

    monkeypatch.setattr(runner, "build_data", read)
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"{out} has trained 2 epochs, so train.epochs = 1 cannot shorten it; pass more than 2" in result.stderr
    assert "or 2 to end it where it stands" in result.stderr  # how a stopped run gets its summary and table


def test_a_damaged_checkpoint_or_metrics_file_is_one_line_naming_it(tmp_path: Path, finished_run: Finished,
                                                                    cli_in_process: Cli) -> None:
    out = tmp_path / "run"
    finished_run(2, out)
    metrics = out / "metrics.csv"
    kept = metrics.read_text()
    metrics.write_text(kept[:len(kept) * 2 // 3])  # the last row cut short
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
    assert result.returncode == 2 and f"{metrics}: lacks rows of the 2 epochs" in result.stderr, result.stderr[-2000:]
    for damaged in (b"\xff\xfe" + kept.encode()[2:], kept.replace("\n1,", "\none,", 1).encode()):  # bytes, a cell
        metrics.write_bytes(damaged)
        result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
        assert f"{metrics}: lacks rows of the 2 epochs" in result.stderr
    metrics.write_text(kept)
    last = out / "checkpoints" / "last.pt"
    intact = last.read_bytes()
    last.write_bytes((out / "checkpoints" / "best.pt").read_bytes())  # a user rolling back by hand
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert f"{last}: not a last.pt of `elr-mri train` (it lacks tracker_probs" in result.stderr
    last.write_bytes(intact)
    for lost, says in (("data_shape.json", "data_shape.json not found"), ("config.yaml", "its config.yaml is missing")):
        kept_file = (out / lost).read_bytes()
        (out / lost).unlink()
        result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
        (out / lost).write_bytes(kept_file)
    for cut in (1000, 0):  # cut short, or empty: a look at its epoch (mmap) said "saved with an old format"
        last.write_bytes(intact[:cut])
        result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
        assert f"{last}: not a readable checkpoint (BadZipFile: File is not a zip file)" in result.stderr, result.stderr
    flipped = bytearray(intact)
    flipped[len(flipped) // 2] ^= 0x40  # one bit, in the weights: the file still unpacks
    last.write_bytes(bytes(flipped))
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
    assert result.returncode == 2 and f"{last}: not a readable checkpoint (BadZipFile: Bad CRC-32" in result.stderr, \
        result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1


_STALL_S = 300.0  # the longest wait for a run's next epoch (the first: its start-up too) before calling it stuck


def _kill_after_epochs(epochs: int, out: Path, *train_args: str) -> None:
    """Start `elr-mri train` and SIGKILL it once `out/metrics.csv` has `epochs` rows. The wait follows the run's
    progress, not a clock: 2 minutes in all ran out twice at a load of ~19 on 2 cores, the run then killed too early;
    now each epoch may take `_STALL_S`, and a run that ends first, or makes no progress, fails with its stderr."""
    errors = out.parent / f"{out.name}_stderr.txt"
    with errors.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "elr_mri.cli", "train", *train_args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=stderr)
        rows, progressed = 0, time.monotonic()
        while proc.poll() is None and rows < epochs and time.monotonic() - progressed < _STALL_S:
            time.sleep(0.02)
            if _rows(out) > rows:
                rows, progressed = _rows(out), time.monotonic()
        ended, rows = proc.poll(), max(rows, _rows(out))  # a last row written as the run ended
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if rows < epochs:
        how = f"ended (exit {ended})" if ended is not None else f"logged no epoch in {_STALL_S:.0f} s"
        raise AssertionError(f"the run {how} after {rows} of the {epochs} epochs to kill it after; its stderr:\n"
                             f"{errors.read_text()[-3000:]}")


def test_a_run_to_kill_that_fails_first_is_said_to_at_once(tmp_path: Path) -> None:
    """The kill tests' helper waited out its 2 minutes for a run that had already failed, then returned as if it had
    killed it, leaving the test to fail on a row count that said nothing of why."""
    missing = tmp_path / "missing.yaml"
    with pytest.raises(AssertionError, match=rf"the run ended \(exit 2\) after 0 of the 3 epochs to kill it after; "
                                             rf"its stderr:\n.*{re.escape(str(missing))}"):
        _kill_after_epochs(3, tmp_path / "run", "--config", str(missing), "--out", str(tmp_path / "run"))


def _rows(out: Path) -> int:
    try:
        return len(pd.read_csv(out / "metrics.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def _assert_nested_equal(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_nested_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_nested_equal(x, y)
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    else:
        assert a == b


@pytest.mark.parametrize(("loader", "model"), [("dataloader", "mlp"), ("device", "mlp"), ("device", "small_cnn")])
def test_the_engine_trains_elr_as_a_plain_loop_of_the_papers_recipe(tmp_path: Path, loader: str, model: str) -> None:
    """Our ELR run is the paper's, not only our loss: three epochs of the engine end at the weights and target table of
    a loop written from the paper and the official trainer, on the same batches and initial weights: SGD with
    momentum and weight decay on every parameter, the rate set per epoch (÷10 after epochs 1 and 2), softmax
    clamped to [1e-4, 1 − 1e-4], the batch's targets t ← βt + (1 − β)p/Σp, then CE + λ·mean log(1 − ⟨t, p⟩)."""
    import torch.nn.functional as F

    from elr_mri.data import build_data
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder
    from elr_mri.models import build_model

    cfg = load_config(DIGITS, [*SMALL, "train.epochs=3", "schedule.milestones=[1, 2]", f"train.loader={loader}",
                               f"model.name={model}", "model.hidden=32", "train.checkpoint_seconds=0"])
    train(cfg, tmp_path / "run")
    engine = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["method"]

    torch.manual_seed(cfg.seed)  # as the engine, which builds its data and then its network
    data = build_data(cfg.data)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    feeder = BatchFeeder(data, cfg, DistContext(), torch.device("cpu"))  # the data path is not what is compared
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                weight_decay=cfg.optim.weight_decay)
    targets = torch.zeros(len(data.train), data.num_classes)
    beta, lam = cfg.loss.beta, cfg.loss.lam
    for epoch in range(cfg.train.epochs):
        for group in optimizer.param_groups:
            group["lr"] = cfg.optim.lr * cfg.schedule.gamma ** sum(epoch >= m for m in cfg.schedule.milestones)
        for batch in feeder.train_epoch(epoch):
            logits = model(batch["image"])
            p = F.softmax(logits, dim=1).clamp(1e-4, 1 - 1e-4)
            index = batch["index"]
            targets[index] = beta * targets[index] + (1 - beta) * p.detach() / p.detach().sum(dim=1, keepdim=True)
            loss = F.cross_entropy(logits, batch["label"]) + lam * torch.log(1 - (targets[index] * p).sum(1)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    assert engine["model"].keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(engine["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(engine["loss"]["targets"], targets, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["mlp", "small_cnn"])  # the CNN's BatchNorm: the averages use batch statistics
def test_the_engine_trains_elr_plus_as_a_plain_loop_of_the_papers_recipe(tmp_path: Path, model: str) -> None:
    """ELR+ as the official single-device code runs it (`elr_plus.alternation: epoch`), written out plainly: network
    k trains a whole epoch on its own batches, each batch's targets first blended with the softmax of the *other*
    network's weight average on the un-mixed images, then mixup (weight max(l, 1 − l), l ~ Beta(1, 1)) of images,
    one-hot labels and targets, CE + ramp(n)·λ·mean log(1 − ⟨t, p⟩) at the network's step n, an SGD step, and the
    average moved with decay ramp(n + 1)·γ. Three engine epochs end at the loop's networks, averages and targets."""
    import random

    import numpy as np
    import torch.nn.functional as F

    from elr_mri.data import build_data
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder
    from elr_mri.losses import sigmoid_rampup
    from elr_mri.models import build_model

    cfg = load_config(DIGITS, [*SMALL, "train.epochs=3", "loss.name=elr_plus", "elr_plus.alternation=epoch",
                               "elr_plus.coef_step=10", "elr_plus.ema_ramp_steps=15", f"model.name={model}",
                               "model.hidden=32", "train.checkpoint_seconds=0"])
    train(cfg, tmp_path / "run")
    engine = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["method"]

    random.seed(cfg.seed), np.random.seed(cfg.seed), torch.manual_seed(cfg.seed)  # as the engine
    data = build_data(cfg.data)
    nets = [build_model(cfg.model, data.input_shape, data.num_classes) for _ in range(2)]
    averages = [copy.deepcopy(net).requires_grad_(False) for net in nets]  # in training mode, as the official code
    optimizers = [torch.optim.SGD(net.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                  weight_decay=cfg.optim.weight_decay) for net in nets]
    targets = [torch.zeros(len(data.train), data.num_classes) for _ in range(2)]
    steps = [0, 0]
    beta, lam, plus = cfg.loss.beta, cfg.loss.lam, cfg.elr_plus
    feeder = BatchFeeder(data, cfg, DistContext(), torch.device("cpu"))  # the data path is not what is compared
    for epoch in range(cfg.train.epochs):
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = cfg.optim.lr * cfg.schedule.gamma ** sum(epoch >= m for m in cfg.schedule.milestones)
        for batch in feeder.train_epoch(epoch, streams=2, in_turn=True):
            k, x, y, index = int(batch["network"]), batch["image"], batch["label"], batch["index"]
            with torch.no_grad():
                q = F.softmax(averages[1 - k](x), dim=1)
            targets[k][index] = beta * targets[k][index] + (1 - beta) * q / q.sum(dim=1, keepdim=True)
            perm = torch.randperm(len(y))
            mix = np.random.beta(plus.mixup_alpha, plus.mixup_alpha)
            mix = max(mix, 1 - mix)
            one_hot = F.one_hot(y, data.num_classes).float()
            t = targets[k][index]
            x, one_hot, t = (mix * v + (1 - mix) * v[perm] for v in (x, one_hot, t))
            logits = nets[k](x)
            steps[k] += 1
            p = F.softmax(logits, dim=1).clamp(1e-4, 1 - 1e-4)
            loss = (-(one_hot * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
                    + sigmoid_rampup(steps[k], plus.coef_step) * lam * torch.log(1 - (t * p).sum(dim=1)).mean())
            optimizers[k].zero_grad()
            loss.backward()
            optimizers[k].step()
            decay = sigmoid_rampup(steps[k] + 1, plus.ema_ramp_steps) * plus.ema_decay
            with torch.no_grad():
                for averaged, current in zip(averages[k].parameters(), nets[k].parameters()):
                    averaged.mul_(decay).add_(current, alpha=1 - decay)

    assert engine["step"] == steps[0] == steps[1] == 3 * 8  # 450 training digits in batches of 64
    for part, modules in (("nets", nets), ("emas", averages)):
        for saved, module in zip(engine[part], modules):
            for name, value in module.state_dict().items():
                torch.testing.assert_close(saved[name], value, rtol=1e-5, atol=1e-6, msg=f"{part} {name}")
    for saved, table in zip(engine["losses"], targets):
        torch.testing.assert_close(saved["targets"], table, rtol=1e-5, atol=1e-6)


def test_existing_run_is_not_overwritten(tmp_path: Path, finished_run: Finished, cli_in_process: Cli) -> None:
    out = tmp_path / "run"
    finished_run(1, out)
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(out))
    assert result.returncode == 2 and "--resume" in result.stderr


def _files(folder: Path) -> dict[Path, bytes]:
    """Every file under `folder` with its content (a refused `train` leaves no lock file either)."""
    return {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_new_run_or_a_resume_refuses_a_folder_that_is_not_a_runs_and_leaves_it_as_it_was(
        tmp_path: Path, cli_in_process: Cli) -> None:
    """What a run's start removes or rewrites (temporary files, config.yaml, metrics.csv) and its clean-up (eval-*/
    folders) must not reach a user's own folder, even one whose files have a run's names."""
    hand_written = DIGITS.read_text()  # a config, but not one `elr-mri train` wrote (no selection_rule)
    cfg = load_config(DIGITS)
    folders = {
        "notes": ({"eval-notes/README.txt": "notes", ".tmp-draft.txt": "draft", "config.yaml": hand_written},
                  "holds files that are not a run's (.tmp-draft.txt, eval-notes); "),
        "scratch": ({"config.yaml": hand_written, "metrics.csv": "epoch\n1\n", ".tmp/scratch/notes.txt": "notes"},
                    "holds files that are not a run's (.tmp); "),
        "named": ({"config.yaml": "# mine\n" + hand_written, "metrics.csv": "epoch\n1\n"},
                  "holds config.yaml, metrics.csv but not the config.yaml and data_shape.json that `elr-mri train` "
                  "writes first"),
        "copied": ({"config.yaml": "# a run's, copied to start from\n" + yaml.safe_dump(
                       {**config_to_dict(cfg), "selection_rule": selection_rule(cfg)})},
                   "holds config.yaml but not the config.yaml and data_shape.json"),
    }
    for name, (files, says) in folders.items():
        folder = tmp_path / name
        for relative, text in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text)
        before = _files(folder)
        for args, fix in ((["--config", str(DIGITS), "--out", str(folder), "--set", "data.train_subset=300"],
                           "a new run needs a new or empty folder: move those files away"),
                          (["--resume", str(folder)], "nothing there to resume")):
            result = cli_in_process("train", *args, "--set", "train.progress=false", "--set", "train.epochs=1")
            assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
            assert f"{folder} {says}" in result.stderr and fix in result.stderr, result.stderr
            assert _files(folder) == before, name


def test_a_run_that_lost_its_checkpoints_is_neither_started_over_nor_resumed(tmp_path: Path,
                                                                             cli_in_process: Cli) -> None:
    """A finished run whose checkpoints were deleted (to save space) must not be half overwritten by a new one, nor a
    run that wrote checkpoints but lost last.pt start again from epoch 1 over its metrics and best.pt; only a run
    killed before its first checkpoint starts over, its leftover temporary files removed."""
    new_run = ["--config", str(DIGITS), "--set", "data.train_subset=300", "--set", "train.progress=false",
               "--set", "train.epochs=1"]
    finished = tmp_path / "finished"
    assert cli_in_process("train", "--out", str(finished), *new_run).returncode == 0
    killed_after_a_checkpoint = tmp_path / "killed"
    shutil.copytree(finished, killed_after_a_checkpoint)
    shutil.rmtree(finished / "checkpoints")
    for name in ("summary.json", "suspected_mislabels.csv", "memorization.png", "checkpoints/last.pt"):
        (killed_after_a_checkpoint / name).unlink()
    stopped_in_its_first_checkpoint = tmp_path / "stopped"  # killed between best.pt and last.pt: best.pt of epoch 1
    shutil.copytree(killed_after_a_checkpoint, stopped_in_its_first_checkpoint)
    with open(killed_after_a_checkpoint / "metrics.csv", "a") as metrics:  # an epoch logged since its last.pt
        metrics.write("2" + "," * (len(pd.read_csv(finished / "metrics.csv").columns) - 1) + "\n")
    for folder, new_says, resume_says in (
            (finished, "holds a finished run (summary.json) whose checkpoints are gone", "is gone, so the finished run"),
            (killed_after_a_checkpoint, "last.pt is missing, but best.pt beside it shows", "last.pt is missing, but")):
        before = _files(folder)
        for args, says in ((["--out", str(folder), *new_run], new_says), (["--resume", str(folder)], resume_says)):
            result = cli_in_process("train", *args)
            assert result.returncode == 2 and result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
        assert _files(folder) == before

    for args in (["--resume", str(stopped_in_its_first_checkpoint)],
                 ["--out", str(stopped_in_its_first_checkpoint), *new_run]):  # started over, twice
        result = cli_in_process("train", *args)
        assert result.returncode == 0 and "summary.json" in os.listdir(stopped_in_its_first_checkpoint), result.stderr
        for name in ("summary.json", "suspected_mislabels.csv", "memorization.png", "checkpoints/last.pt"):
            (stopped_in_its_first_checkpoint / name).unlink()

    killed_before = killed_after_a_checkpoint
    (killed_before / "checkpoints" / "best.pt").unlink()
    stale = [killed_before / ".tmp4242-metrics.csv", killed_before / "checkpoints" / ".tmp4242-last.pt"]
    for path in stale:
        path.write_bytes(b"half")
    result = cli_in_process("train", "--out", str(killed_before), *new_run)
    assert result.returncode == 0, result.stderr
    assert not any(path.exists() for path in stale) and (killed_before / "summary.json").exists()


def test_a_resume_does_not_end_before_the_epoch_of_a_best_pt_written_after_last_pt(tmp_path: Path,
                                                                                    cli_in_process: Cli) -> None:
    """best.pt is written before last.pt: an extension stopped between the two leaves a later epoch's best.pt over
    the run's own best weights, which a resume that ends earlier would present as the run's."""
    out = tmp_path / "run"
    train(load_config(DIGITS, [*SMALL, "train.epochs=2", "train.select=last"]), out)
    last = (out / "checkpoints" / "last.pt").read_bytes()
    assert cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3").returncode == 0
    (out / "checkpoints" / "last.pt").write_bytes(last)  # as if stopped after writing epoch 3's best.pt
    (out / "summary.json").unlink()
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "best.pt holds epoch 3, written after last.pt's epoch 2" in result.stderr
    assert "--set train.epochs=3 or more" in result.stderr and not (out / "summary.json").exists()
    assert cli_in_process("train", "--resume", str(out)).returncode == 0  # config.yaml says 3: trained again
    assert json.loads((out / "summary.json").read_text())["best_epoch"] == 3
    assert load_checkpoint(out / "checkpoints" / "best.pt")["epoch"] == 3


def test_a_resume_refuses_a_run_whose_best_pt_is_lost(tmp_path: Path, finished_run: Finished,
                                                      cli_in_process: Cli) -> None:
    """Otherwise it trains on and finishes with a summary naming a best epoch whose weights no file holds."""
    out = tmp_path / "run"
    finished_run(2, out)
    (out / "checkpoints" / "best.pt").unlink()
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "best.pt is missing, though last.pt records epoch" in result.stderr
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2  # nothing trained or rewritten


def test_a_run_whose_checkpoints_folder_was_deleted_is_not_started_over(tmp_path: Path, cli_in_process: Cli) -> None:
    """With checkpoints/ gone, the folder looked like a run killed before its first checkpoint: it started again
    from epoch 1 over metrics.csv without a word, and --resume said no checkpoint had been written yet."""
    out = tmp_path / "run"
    train(load_config(DIGITS, [*SMALL, "train.epochs=3", "train.checkpoint_seconds=0"]), out)
    for name in ("summary.json", "suspected_mislabels.csv", "memorization.png"):  # as if killed after epoch 3
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "checkpoints")
    logged = (out / "metrics.csv").read_bytes()
    for command in (["--config", str(out / "config.yaml"), "--out", str(out)], ["--resume", str(out)]):
        result = cli_in_process("train", *command)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"last.pt is missing, but {out}/metrics.csv logs 3 epochs" in result.stderr
        assert "restore checkpoints/ from a copy" in result.stderr
    assert (out / "metrics.csv").read_bytes() == logged


def test_a_run_whose_best_pt_was_deleted_while_it_trained_says_so_at_its_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It finished with a summary naming a best epoch whose weights no file held, and evaluate then called the
    finished run not a run."""
    from elr_mri.engine.runner import CheckpointWriter

    out, written = tmp_path / "run", CheckpointWriter._write

    def write_then_the_user_deletes_the_folder(self, *args, **kwargs) -> None:
        written(self, *args, **kwargs)
        if not hasattr(self, "deleted"):
            self.deleted = shutil.rmtree(self.folder)

    monkeypatch.setattr(CheckpointWriter, "_write", write_then_the_user_deletes_the_folder)
    # a learning rate too small to change a prediction: epoch 1 stays the best, written only at epoch 1
    summary = train(load_config(DIGITS, [*SMALL, "train.epochs=3", "train.checkpoint_seconds=0", "optim.lr=1e-12"]), out)
    assert summary["best_epoch"] == 1 and not (out / "checkpoints" / "best.pt").exists()
    assert summary["warnings"][-1] == ("checkpoints/best.pt is missing (deleted while the run trained?), so the weights "
                                       "of the selected epoch 1 are gone: evaluate with --checkpoint last, or train "
                                       "the run again")


def test_the_default_out_of_another_configs_run_is_refused_not_offered_for_resume(tmp_path: Path,
                                                                                 finished_run: Finished) -> None:
    """configs/cifar10/elr_sym40.yaml and configs/cifar100/elr_sym40.yaml share runs/elr_sym40: the second was told to
    continue the first's run with --resume."""
    from elr_mri.commands.train import _refuse_another_configs_run

    out = tmp_path / "elr_sym40"
    finished_run(1, out)
    _refuse_another_configs_run(load_config(DIGITS, [*SMALL, "train.epochs=3"]), out)  # its own: --resume is right
    with pytest.raises(FileExistsError, match=rf"^{out}, the default --out \(runs/<config file name>\), holds a run of "
                                              r"other settings \(loss.name = 'elr' there, 'ce' here\), .*; pass --out"):
        _refuse_another_configs_run(load_config(DIGITS, [*SMALL, "loss.name=ce"]), out)
    _refuse_another_configs_run(load_config(DIGITS), tmp_path / "nothing")


def test_a_runs_saved_config_trained_again_without_out_is_refused_not_sent_to_runs_config(
        tmp_path: Path, finished_run: Finished, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train --config runs/a/config.yaml` wrote runs/config, named after the file every run's config shares, and
    the same for runs/b's was then offered `--resume runs/config`; `--config runs/a` was told to pass the first.
    A user's own config.yaml, in no run, is no run's."""
    run = tmp_path / "runs" / "a"
    finished_run(1, run)
    monkeypatch.chdir(tmp_path)
    for given, what in (("runs/a/config.yaml", "the saved config"), ("runs/a", "the folder")):
        assert main(["train", "--config", given]) == 2
        assert capsys.readouterr().err.strip() == (
            f"elr-mri train: error: --config {given}: is {what} of the run runs/a, and without --out a new run of its "
            "settings would go to runs/config (the default is named after the config file, as every run's is); pass "
            "--config runs/a/config.yaml --out NEW_RUN_DIR, or continue that run with --resume runs/a")
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["a"]
    (tmp_path / "mine").mkdir()
    shutil.copy(run / "config.yaml", tmp_path / "mine" / "config.yaml")
    assert not holds_a_run(tmp_path / "mine") and holds_a_run(run)


def test_a_plain_resume_of_a_finished_run_on_read_only_storage_prints_its_summary(
        tmp_path: Path, finished_run: Finished, monkeypatch: pytest.MonkeyPatch) -> None:
    """Taking the run's lock needs write access, which a read-only mount (an archive of runs) refuses; checked by
    hand on a read-only bind mount, imitated here by the OS saying the folder is not writable."""
    out = finished_run(1, tmp_path / "run")
    finished = json.loads((out / "summary.json").read_text())
    (out / ".train.lock").unlink()
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK)
    assert train(load_config(out / "config.yaml"), out, resume=True) == finished
    assert not (out / ".train.lock").exists()  # no lock taken


def test_a_cpu_resume_under_another_thread_count_says_it_is_not_bit_for_bit(tmp_path: Path,
                                                                           cli_in_process: Cli) -> None:
    """Threads split torch's CPU sums (1 and 2 gave other gradients of a small CNN here), and `train.threads: 0`
    takes whatever cores the resuming machine gives: without the note such a resume looked exact and was not."""
    out, threads = tmp_path / "run", torch.get_num_threads()
    try:
        train(load_config(DIGITS, [*SMALL, "train.epochs=1", "train.threads=1", "train.device=cpu"]), out)
        assert load_checkpoint(out / "checkpoints" / "last.pt")["cpu_threads"] == 1
        same = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=2")
        assert same.returncode == 0 and "CPU thread" not in same.stderr, same.stderr
        other = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3", "--set", "train.threads=2")
    finally:
        torch.set_num_threads(threads)
    assert other.returncode == 0, other.stderr
    assert ("note: last.pt was written by a run with 1 CPU thread and this resume runs 2, which sum in another order: "
            "the run continues, but not bit for bit; --set train.threads=1 keeps it exact") in other.stderr


def test_a_plain_resume_of_a_finished_run_leaves_it_as_it_was(tmp_path: Path, finished_run: Finished,
                                                              cli_in_process: Cli) -> None:
    """Finishing it again added the call's time to wall_seconds and recorded the resuming machine as the run's."""
    out = tmp_path / "run"
    finished_run(1, out)
    before = _files(out)
    result = cli_in_process("train", "--resume", str(out))
    assert result.returncode == 0 and "finished at its train.epochs (summary.json), nothing to train" in result.stderr
    assert f"wall_seconds: {json.loads((out / 'summary.json').read_text())['wall_seconds']}" in result.stdout
    assert _files(out) == before
    config = out / "config.yaml"  # finished is what the run trained, not what its config.yaml says now
    config.write_text(config.read_text().replace("epochs: 1\n", "epochs: 2\n", 1))
    assert cli_in_process("train", "--resume", str(out)).returncode == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2


def test_a_second_train_into_a_directory_being_written_is_refused(tmp_path: Path, cli_in_process: Cli,
                                                                  lock_held_elsewhere: Locked) -> None:
    """Until its first checkpoint a run leaves nothing that marks its directory as taken but the lock."""
    out = tmp_path / "run"
    out.mkdir()
    with lock_held_elsewhere(out / RUN_LOCK):  # as a running `elr-mri train` holds it
        result = cli_in_process("train", "--config", str(DIGITS), "--out", str(out),
                                *[a for s in SMALL for a in ("--set", s)])
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-3000:]
    assert "another `elr-mri train` is writing there" in result.stderr
    assert not (out / "config.yaml").exists()
    train(load_config(DIGITS, [*SMALL, "train.epochs=1"]), out)
    with lock_held_elsewhere(out / RUN_LOCK):  # a resume of it, running: a second resume cannot go elsewhere
        result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=2")
    assert result.returncode == 2 and result.stderr.strip().endswith("let it finish (or stop it) first"), result.stderr
    (tmp_path / "file").write_text("")
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(tmp_path / "file"))
    assert result.returncode == 2 and "is a file; choose a folder for the run" in result.stderr
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(tmp_path / "file" / "run"))
    assert result.returncode == 2 and result.stderr == (  # was the OS's "[Errno 20] Not a directory: '.../file/run'"
        f"elr-mri train: error: --out {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file, so no folder can be "
        "made in it; choose another --out\n")


def test_a_lock_file_removed_between_its_opening_and_its_locking_is_taken_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused `train` removes the lock file it made; one that opened that file just before then locks a file no
    longer in the folder, beside which a third `train` could lock a new one: it locks the new one itself."""
    from elr_mri.engine import run_dir
    from preprocess import folder_locks

    out, calls = tmp_path / "run", []
    lock = folder_locks.lock_or_refuse

    def removed_first(handle, folder, runs, elsewhere):  # the refused `train` removes it after this one opened it
        calls.append(handle.name)
        if len(calls) == 1:
            (folder / run_dir.RUN_LOCK).unlink()
        lock(handle, folder, runs, elsewhere)

    monkeypatch.setattr(folder_locks, "lock_or_refuse", removed_first)
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with exclusive_run_dir(out):
        assert len(calls) == 2 and (out / run_dir.RUN_LOCK).exists()
        (out / "config.yaml").write_text("a run's")
    assert (out / run_dir.RUN_LOCK).exists()  # a run that wrote something keeps its lock file


def test_a_run_on_a_file_system_without_locks_trains_and_says_it_is_unguarded(
        tmp_path: Path, cli_in_process: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lustre without `-o flock` answers every lock with ENOSYS: training there failed with a traceback."""
    import errno
    import fcntl

    def failing_lock(code: int) -> Callable[..., None]:
        def lockf(*args: object) -> None:
            raise OSError(code, os.strerror(code))
        return lockf

    monkeypatch.setattr(fcntl, "lockf", failing_lock(errno.ENOSYS))
    out = tmp_path / "run"
    sets = [a for s in [*SMALL, "train.epochs=1"] for a in ("--set", s)]
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *sets)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {out} is on a file system without file locks (Function not implemented), so "
                        "nothing stops two `elr-mri train` runs writing into it at once: start one at a time"]
    assert (out / "summary.json").exists()
    monkeypatch.setattr(fcntl, "lockf", failing_lock(errno.EIO))
    with pytest.raises(OSError, match="Input/output error"):  # any other failure to lock is not waved through
        cli_in_process("train", "--resume", str(out), "--set", "train.epochs=2")


def test_a_gpu_out_of_memory_is_one_line_naming_the_setting_to_lower(
        tmp_path: Path, cli_in_process: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch too large for the GPU came out as torch's traceback. The error is raised by hand: a CPU has no GPU
    memory to run out of."""
    from elr_mri.engine.methods import SingleNetwork

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                                     "15.77 GiB of which 1.02 GiB is free. Including non-PyTorch memory, ...")

    out = tmp_path / "my run"
    sets = [a for s in [*SMALL, "train.epochs=1"] for a in ("--set", s)]
    assert cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *sets).returncode == 0
    with monkeypatch.context() as patched:
        patched.setattr(SingleNetwork, "train_step", out_of_memory)
        result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert result.stderr.startswith("elr-mri train: error: the GPU ran out of memory (CUDA out of memory. Tried to "
                                    "allocate 2.00 GiB); a smaller train.batch_size")
    assert f"elr-mri train --resume '{out}' --set train.eval_batch_size=N" in result.stderr  # quoted: a space
    monkeypatch.setattr("elr_mri.evaluation.evaluate.predict", out_of_memory)
    result = cli_in_process("evaluate", "--run", str(out))
    assert result.returncode == 2 and result.stderr == (
        "elr-mri evaluate: error: the GPU ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB); lower "
        f"train.eval_batch_size in {out / 'config.yaml'} and run the command again\n")


def test_a_network_past_the_machines_memory_is_one_line_naming_the_settings(tmp_path: Path,
                                                                             cli_in_process: Cli) -> None:
    """`model.hidden: 10000000000000` (a mistyped width) asked torch's CPU allocator for 2.3 PB, past any machine's
    address space, and came out as its traceback; now one line saying what could not be held and what to lower. It
    also offered `--resume` of the run, whose folder did not exist yet, "if it ran out while scoring"."""
    sets = [a for s in [*SMALL, "train.epochs=1", "model.hidden=10000000000000"] for a in ("--set", s)]
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(tmp_path / "run"), *sets)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert re.match(r"elr-mri train: error: the machine's memory cannot hold one allocation of [\d,.]+ GiB; a "
                    r"smaller train.batch_size, data.mri.crop_size or network \(model.hidden, model.widening\)",
                    result.stderr), result.stderr
    # out of memory building the network, before the run's folder: no --resume (there it is "no run there")
    assert result.stderr.endswith("or train.precision bf16, fits; nothing was written yet: run the same command with "
                                  "one of them (--set KEY=VALUE)\n"), result.stderr
    assert not (tmp_path / "run").exists()
    from elr_mri.cli import _out_of_memory  # numpy's refusal, and Python's own, which may say nothing

    scoring = argparse.Namespace(command="evaluate", run=tmp_path / "run", compare_with=[])
    numpy_said = MemoryError("Unable to allocate 2.33 TiB for an array with shape (640000000000,) and data type "
                             "float32")
    assert str(_out_of_memory(numpy_said, scoring)) == (
        f"the machine ran out of memory ({numpy_said}); lower train.eval_batch_size in "
        f"{tmp_path / 'run' / 'config.yaml'} and run the command again")
    assert str(_out_of_memory(MemoryError(), scoring)).startswith("the machine ran out of memory; lower ")


def test_a_memory_error_of_a_run_with_balanced_batches_names_that_setting(tmp_path: Path) -> None:
    """`data.balanced_batches: 1000000000` draws an epoch's indexes past the machine's memory, and the one line named
    only batch, crop and network sizes to lower; a run without the setting is not sent to it."""
    from elr_mri.cli import _out_of_memory

    def training(*overrides: str) -> argparse.Namespace:
        return argparse.Namespace(command="train", resume=None, out=tmp_path / "run", config=DIGITS,
                                  overrides=list(overrides))

    balanced = str(_out_of_memory(MemoryError(), training("data.balanced_batches=1000000000")))
    assert balanced.startswith("the machine ran out of memory; a smaller data.balanced_batches (here 1,000,000,000), "
                               "train.batch_size, data.mri.crop_size or network"), balanced
    assert "balanced_batches" not in str(_out_of_memory(MemoryError(), training()))


def test_evaluate_refuses_probabilities_that_are_not_numbers_in_one_line(tmp_path: Path, cli_in_process: Cli) -> None:
    """A forward pass that overflowed (fp16) gives NaN rows, which argmax would score as the first class."""
    out = tmp_path / "run"
    sets = [a for s in [*SMALL, "train.epochs=1"] for a in ("--set", s)]
    assert cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *sets).returncode == 0
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    weights = best["method"]["model"]
    name = next(key for key in weights if key.endswith("weight"))
    weights[name][0] = 3e38  # finite, but one hidden unit overflows to inf, and inf - inf is NaN in every image's logits
    torch.save(best, out / "checkpoints" / "best.pt")
    result = cli_in_process("evaluate", "--run", str(out), "--bootstrap", "2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert result.stderr.startswith(f"elr-mri evaluate: error: {out}: best.pt gives class probabilities that are not "
                                    "numbers (NaN or inf) for ")
    assert "(first: image 0), so nothing was scored" in result.stderr
    assert f"set train.precision: fp32 in {out / 'config.yaml'}" in result.stderr
    assert not (out / "eval-test").exists()


def test_evaluate_refuses_a_checkpoint_whose_batchnorm_statistics_are_not_numbers(tmp_path: Path,
                                                                                 cli_in_process: Cli) -> None:
    """An inf running variance (a run that diverged before training refused to write one) zeroes its channel and the
    rest was scored, garbage under a table of figures; NaN weights were refused only at the probabilities, blaming
    fp16. One line naming the file and the first such tensor, before anything is scored."""
    out = tmp_path / "run"
    train(load_config(DIGITS, [*SMALL, "model.name=small_cnn", "train.epochs=1", "data.train_subset=100"]), out)
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    best["method"]["model"]["features.4.running_var"][3] = float("inf")
    torch.save(best, out / "checkpoints" / "best.pt")
    for command in ("evaluate", "explain"):
        result = cli_in_process(command, "--run", str(out))
        assert result.returncode == 2 and result.stderr == (
            f"elr-mri {command}: error: {out / 'checkpoints' / 'best.pt'}: features.4.running_var holds values that "
            "are not numbers (NaN or inf), so it was not used; use the run's last.pt if it is whole (--checkpoint "
            "last), or train the run again with a lower optim.lr (the weights diverged)\n"), result.stderr[-3000:]
    assert not (out / "eval-test").exists() and not (out / "explain-test").exists()


def test_evaluate_refuses_another_programs_or_another_runs_checkpoint_in_one_line(tmp_path: Path,
                                                                                  cli_in_process: Cli) -> None:
    """A shared run whose best.pt is a bare `model.state_dict()` stopped at a KeyError traceback, and one whose weights
    are another model's at torch's traceback listing every tensor: one line naming the file and what to restore."""
    out = tmp_path / "run"
    train(load_config(DIGITS, [*SMALL, "train.epochs=1", "data.train_subset=100"]), out)
    path = out / "checkpoints" / "best.pt"
    best = load_checkpoint(path)
    torch.save(best["method"]["model"], path)
    result = cli_in_process("evaluate", "--run", str(out))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert result.stderr.startswith(f"elr-mri evaluate: error: {path}: not a checkpoint of `elr-mri train` (it holds "
                                    "net.1.weight, net.1.bias, net.3.weight, not the method's state and its epoch;")
    best["method"]["model"]["net.1.weight"] = torch.zeros(3, 64)
    torch.save(best, path)
    result = cli_in_process("evaluate", "--run", str(out))
    assert result.returncode == 2 and result.stderr == (
        f"elr-mri evaluate: error: {path}: its weights do not fit the model {out / 'config.yaml'} describes (size "
        "mismatch for net.1.weight: copying a param with shape torch.Size([3, 64]) from checkpoint, the shape in "
        "current model is torch.Size([256, 64])); edited since the run trained, or best.pt copied from another run? "
        "restore either from a copy\n"), result.stderr[-3000:]
    assert not (out / "eval-test").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "loss.lamda=3"], "unknown key 'loss.lamda'"),
        (["--set", "train.epochs=many"], "train.epochs must be int"),
        (["--set", "data.name=cifar10", "--set", "data.root=/nonexistent/cifar"], "/nonexistent/cifar"),
        (["--set", "data.val_fraction=0"], "the validation split is empty"),
        (["--set", "data.noise.mode=human", "--set", "data.noise.rate=0", "--set", "data.noise.human_labels=/nope.npz"],
         "data.noise.human_labels = /nope.npz: no such file"),
        (["--set", "data.name=mri", "--set", "model.name=widened_cnn3d", "--set", "data.mri.manifest=/nope.csv"],
         "data.mri.manifest = /nope.csv: no such file; for a new run correct the path in the config or with --set "
         "data.mri.manifest=PATH; a run already made (--resume, evaluate, explain) reads it from that path, so put "
         "the file back there"),
        (["--set", "data.noise.mode=none"], "data.noise.rate = 0.4 is not read by data.noise.mode = none"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str,
                                       cli_in_process: Cli) -> None:
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(tmp_path / "r"), *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_elr_beats_ce_on_digits_with_40_percent_symmetric_noise(tmp_path: Path) -> None:
    """The paper's claim at toy scale: CE memorizes the flipped labels, ELR does not. One torch thread: this MLP's
    steps are too small to share, and at torch's two threads on a busy 2-core machine the test took 148 s, not 15."""
    results, threads = {}, torch.get_num_threads()
    try:
        for loss in ("ce", "elr"):
            cfg = load_config(DIGITS, ["train.progress=false", "train.tensorboard=false", f"loss.name={loss}",
                                       "train.epochs=60", "train.select=last", "train.threads=1"])
            results[loss] = train(cfg, tmp_path / loss)
            metrics = pd.read_csv(tmp_path / loss / "metrics.csv")
            results[loss]["memorized"] = metrics["noisy_pred_given"].iloc[-1]
    finally:
        torch.set_num_threads(threads)
    assert results["elr"]["test_acc_last"] > results["ce"]["test_acc_last"] + 0.05
    assert results["elr"]["memorized"] < results["ce"]["memorized"] - 0.2


def _stopped_training(run: Path, checkpointed: bool, stop: signal.Signals, *extra: str,
                      whole_group: bool = False) -> tuple[int, str]:
    """Start `elr-mri train`, send `stop` once its first checkpoint (or only its config) is written, to it or to its
    whole process group (as a batch system does, workers included); (exit code, stderr)."""
    child = subprocess.Popen([sys.executable, "-m", "elr_mri.cli", "train", "--config", str(DIGITS),
                              "--out", str(run), "--set", "train.epochs=500", "--set", "train.progress=false",
                              "--set", f"train.checkpoint_seconds={0 if checkpointed else 3600}", *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             start_new_session=whole_group)
    waited_for = run / ("checkpoints/last.pt" if checkpointed else "config.yaml")
    # a hang guard, as `_kill_after_epochs`'s: start-up and a first epoch can take minutes at a high load, where a
    # fixed 2 minutes sent the signal anyway, before the run was where the test stops it
    deadline = time.monotonic() + _STALL_S
    while not waited_for.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if not waited_for.exists():
        ended = child.poll()
        if ended is None:
            os.killpg(child.pid, signal.SIGKILL) if whole_group else child.kill()
        how = f"ended (exit {ended})" if ended is not None else f"wrote nothing in {_STALL_S:.0f} s"
        raise AssertionError(f"the run {how} before its {waited_for.name}; its stderr:\n"
                             f"{child.communicate()[1][-3000:]}")
    if whole_group:
        os.killpg(child.pid, stop)
    else:
        child.send_signal(stop)
    try:
        _, stderr = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # the signal was lost: do not leave a 500-epoch run behind
        os.killpg(child.pid, signal.SIGKILL) if whole_group else child.kill()
        raise
    return child.returncode, stderr


@pytest.mark.parametrize("checkpointed", [True, False])
def test_ctrl_c_during_training_is_one_line_saying_how_to_go_on(tmp_path: Path, checkpointed: bool) -> None:
    run = tmp_path / "run"
    code, stderr = _stopped_training(run, checkpointed, signal.SIGINT)
    assert code == 130, stderr[-2000:]
    if checkpointed:
        assert stderr.strip() == (f"elr-mri train: interrupted; continue from the last checkpoint with: "
                                  f"elr-mri train --resume {run}")
    else:
        assert stderr.strip() == ("elr-mri train: interrupted; no checkpoint was written yet (the first comes after "
                                  "train.checkpoint_seconds and an epoch), so nothing to resume: run the same "
                                  "command again")


@pytest.mark.slow  # test_stopping.py pins its parts: the dropped Ctrl-C, the worker's error after it, the worker's
# handler; a whole group stopped with workers running: test_sigterm_during_training_stops_it_as_ctrl_c_does
def test_ctrl_c_from_a_terminal_with_dataloader_workers_stops_the_run(tmp_path: Path) -> None:
    """A terminal sends Ctrl-C to the whole group, workers included: the run stops with its line and exit 130 (it
    trained on to its end, or ended in a worker's traceback, when the interrupt landed while workers were forked).
    A smoke test: whether the signal lands in that window is chance; test_stopping.py pins the mechanism."""
    run = tmp_path / "run"
    code, stderr = _stopped_training(run, True, signal.SIGINT, "--set", "train.loader=dataloader",
                                     "--set", "data.num_workers=2", whole_group=True)
    assert code == 130, stderr[-2000:]
    assert f"elr-mri train: interrupted; continue from the last checkpoint with: elr-mri train --resume {run}" in \
        stderr.splitlines()


@pytest.mark.parametrize("whole_group", [False, True], ids=["kill", "batch-system"])
def test_sigterm_during_training_stops_it_as_ctrl_c_does(tmp_path: Path, whole_group: bool,
                                                        cli_in_process: Cli) -> None:
    """A cluster's time limit sends SIGTERM, whose default action ended a run without a word; now it gets Ctrl-C's
    one line (exit 143), with DataLoader workers running (ended by the same signal, for a batch system), and the run
    resumes."""
    run = tmp_path / "run"
    code, stderr = _stopped_training(run, True, signal.SIGTERM, "--set", "train.loader=dataloader",
                                     "--set", "data.num_workers=2", whole_group=whole_group)
    assert code == 128 + signal.SIGTERM, stderr[-2000:]
    assert stderr.strip() == (f"elr-mri train: stopped by SIGTERM (a job's time limit, scancel or kill); continue "
                              f"from the last checkpoint with: elr-mri train --resume {run}")
    epochs_done = len(pd.read_csv(run / "metrics.csv"))
    resumed = cli_in_process("train", "--resume", str(run), "--set", f"train.epochs={epochs_done + 1}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(pd.read_csv(run / "metrics.csv")) == epochs_done + 1


@pytest.mark.parametrize("loader", ["device", "dataloader"])
def test_elr_plus_second_batch_stream_walks_its_own_order(loader: str) -> None:
    """ELR+'s second network gets its own shuffle of the training set (the official code's second loader);
    the first stream is the single-network order, so adding the pair changes nothing else."""
    from elr_mri.data import build_data
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder

    cfg = load_config(DIGITS, [*SMALL, f"train.loader={loader}"])
    feeder = BatchFeeder(build_data(cfg.data), cfg, DistContext(), torch.device("cpu"))
    paired = list(feeder.train_epoch(3, streams=2))
    first, second = (torch.cat([batch[key]["index"] if key else batch["index"] for batch in paired])
                     for key in (None, "pair"))
    n = len(feeder.data.train)
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(n))  # each example once in each
    assert not torch.equal(first, second)
    assert torch.equal(first, torch.cat([batch["index"] for batch in feeder.train_epoch(3)]))
    in_turn = list(feeder.train_epoch(3, streams=2, in_turn=True))  # elr_plus.alternation: epoch
    assert [batch["network"] for batch in in_turn] == [0] * len(paired) + [1] * len(paired)
    assert torch.equal(torch.cat([batch["index"] for batch in in_turn]), torch.cat([first, second]))


def test_a_balanced_subset_is_drawn_once_capped_per_class_and_reshuffled_each_epoch() -> None:
    from elr_mri.data import build_data
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder, balanced_subset

    labels = np.array([0] * 50 + [1] * 5 + [2] * 45)
    chosen = balanced_subset(labels, 3, 60, seed=1)
    assert len(set(chosen.tolist())) == len(chosen) == 45 and np.bincount(labels[chosen]).tolist() == [20, 5, 20]
    cfg = load_config(DIGITS, [*SMALL, "data.balanced_batches=3", "data.balanced_subset=true", "train.batch_size=40"])
    feeder = BatchFeeder(build_data(cfg.data), cfg, DistContext(), torch.device("cpu"))
    epochs = [[torch.cat([b[key]["index"] if key else b["index"] for b in feeder.train_epoch(e, streams=2)])
               for key in (None, "pair")] for e in (0, 1)]
    for first, second in epochs:
        assert len(first) == 120 and len(set(first.tolist())) == 120  # without replacement
    assert set(epochs[0][0].tolist()) == set(epochs[1][0].tolist()) and not torch.equal(epochs[0][0], epochs[1][0])
    assert set(epochs[0][0].tolist()) != set(epochs[0][1].tolist())  # each ELR+ network has its own subset


def test_a_balanced_subset_smaller_than_the_split_is_said_at_the_run_start(tmp_path: Path, capfd) -> None:
    """data.balanced_subset trains every epoch on the same class-capped subset: a run on 120 of its 450 examples
    said so nowhere (train_examples in its summary is the split's 450). One line at the start says it, per class;
    a subset that keeps the whole split says nothing."""
    settings = [*SMALL, "data.balanced_subset=true", "train.batch_size=40", "train.epochs=1"]
    train(load_config(DIGITS, [*settings, "data.balanced_batches=3"]), tmp_path / "cut")
    notes = [line for line in capfd.readouterr().err.splitlines() if "balanced_subset" in line]
    assert notes == ["note: data.balanced_subset: every epoch trains on the same 120 of the 450 training examples (3 "
                     "balanced_batches × 40 batch_size, an equal share a class at most), per class: 0 12/48, 1 12/38, "
                     "2 12/43, 3 12/48, 4 12/42, 5 12/38, 6 12/46, 7 12/47, 8 12/46, 9 12/54"]
    train(load_config(DIGITS, [*settings, "data.balanced_batches=30"]), tmp_path / "whole")  # 1,200 ≥ 450
    assert "balanced_subset" not in capfd.readouterr().err


def test_a_balanced_subset_that_leaves_a_class_out_names_it_at_the_run_start(tmp_path: Path, capfd) -> None:
    """8 places over digits' 10 classes (as 12 over Clothing1M's 14) gave two classes no example, and the run trained
    without them, said only as '0/48' inside the per-class list. The official Clothing1M loader draws so too, so the
    run goes on, naming them and the sizes that keep every class; 10 places keep one of each."""
    settings = [*SMALL, "data.balanced_subset=true", "data.balanced_batches=1", "train.epochs=1"]
    train(load_config(DIGITS, [*settings, "train.batch_size=8"]), tmp_path / "eight")
    note = next(line for line in capfd.readouterr().err.splitlines() if "balanced_subset" in line)
    assert note.endswith("per class: 0 0/48, 1 1/38, 2 0/43, 3 1/48, 4 1/42, 5 1/38, 6 1/46, 7 1/47, 8 1/46, 9 1/54; "
                         "the subset holds no example of 0, 2, which it then never trains on: a multiple of the 10 "
                         "classes for balanced_batches × batch_size (8) keeps every class"), note
    train(load_config(DIGITS, [*settings, "train.batch_size=10"]), tmp_path / "ten")
    note = next(line for line in capfd.readouterr().err.splitlines() if "balanced_subset" in line)
    assert note.endswith("per class: 0 1/48, 1 1/38, 2 1/43, 3 1/48, 4 1/42, 5 1/38, 6 1/46, 7 1/47, 8 1/46, 9 1/54")


def test_a_resumed_run_logs_each_epoch_once_to_tensorboard(tmp_path: Path) -> None:
    """Epochs an interrupted run logged after its last checkpoint are trained again; their old points go."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    out = tmp_path / "run"
    settings = ["data.train_subset=300", "train.progress=false", "train.tensorboard=true"]
    train(load_config(DIGITS, [*settings, "train.epochs=2"]), out)
    _date_back(out / "tensorboard")
    interrupted = SummaryWriter(log_dir=str(out / "tensorboard"))  # epoch 3 logged, then killed before its checkpoint
    interrupted.add_scalar("val_acc", -1.0, 3)
    interrupted.close()
    _date_back(out / "tensorboard")
    train(load_config(out / "config.yaml", ["train.epochs=3"]), out, resume=True)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    points = events.Scalars("val_acc")
    assert [p.step for p in points] == [1, 2, 3] and points[-1].value >= 0


def _date_back(folder: Path) -> None:
    """Name the event files in `folder` as if written an hour earlier, as an earlier process's are: TensorBoard reads
    the files in the order of their names, which for one process in one second is that of a counter it shares
    across its writers, compared as text (writer 10's before writer 9's): depending on the tests run before, the
    purged attempt's points were read after the purge and kept."""
    prefix = "events.out.tfevents."  # then the time in seconds, the host, the process and the counter
    for path in folder.glob(f"{prefix}*"):
        stamp, rest = path.name.removeprefix(prefix).split(".", 1)
        path.rename(path.with_name(f"{prefix}{int(stamp) - 3600:010d}.{rest}"))


def test_a_run_started_over_before_its_first_checkpoint_logs_each_epoch_once(tmp_path: Path,
                                                                             finished_run: Finished) -> None:
    """Killed before its first checkpoint, a run trains again from epoch 1 (a resume, or a new run into the
    same --out): the killed attempt's points go, or TensorBoard draws two curves over each other."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    out, donor = tmp_path / "run", tmp_path / "donor"
    cfg = load_config(DIGITS, ["data.train_subset=300", "train.progress=false", "train.epochs=2"])
    finished_run(1, donor)
    out.mkdir()  # what the killed attempt wrote before its first epoch
    for name in ("config.yaml", "data_shape.json"):
        shutil.copy(donor / name, out / name)
    killed = SummaryWriter(log_dir=str(out / "tensorboard"))  # epochs 1 and 2 logged, then killed: no last.pt
    for epoch in (1, 2):
        killed.add_scalar("val_acc", -1.0, epoch)
    killed.close()
    _date_back(out / "tensorboard")
    train(cfg, out)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    points = events.Scalars("val_acc")
    assert [p.step for p in points] == [1, 2] and min(p.value for p in points) >= 0


def test_a_killed_runs_loader_workers_do_not_hold_its_lock(tmp_path: Path) -> None:
    """DataLoader workers are forked with the lock's file open and live on for seconds after `kill -9` of the
    run: an immediate --resume must not be told that another `elr-mri train` is writing the run."""
    script = textwrap.dedent("""
        import os, signal, sys, time
        from pathlib import Path
        from elr_mri.engine.run_dir import check_run_dir, exclusive_run_dir, holds_a_run
        with exclusive_run_dir(Path(sys.argv[1])):
            worker = os.fork()
            if worker == 0:  # keeps the lock's file open, as a loader worker does, but not the test's pipes
                for fd in (1, 2):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
                time.sleep(60)
                os._exit(0)
            print(worker, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = tmp_path / "run"
    worker = int(subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True,
                                cwd=ROOT).stdout)
    try:
        with exclusive_run_dir(out, create=False):  # the resume's own claim
            pass
    finally:
        os.kill(worker, signal.SIGKILL)


def test_a_diverging_run_stops_before_writing_the_epoch(tmp_path: Path, cli_in_process: Cli) -> None:
    out = tmp_path / "run"
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *(f"--set={s}" for s in SMALL),
                            "--set", "optim.lr=1e30", "--set", "train.epochs=3")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert f"{out}: training diverged in epoch 1 (training loss nan; weights, statistics or targets no longer finite)" \
           in result.stderr
    assert f"A plain --resume would diverge there again: start a new run with a lower optim.lr (now 1e+30), e.g. " \
           f"elr-mri train --config {out / 'config.yaml'} --set optim.lr=1e+29 --out NEW_RUN_DIR\n" in result.stderr
    assert not (out / "metrics.csv").exists() and not (out / "checkpoints" / "last.pt").exists()


def test_a_diverging_run_keeps_the_best_epoch_it_held_in_memory(tmp_path: Path, cli_in_process: Cli) -> None:
    """Between checkpoints (train.checkpoint_seconds) a better epoch waits in host memory: a run that diverged lost
    it with its last good epochs (here all of them: no checkpoint at all), and a resume only diverges again."""
    out = tmp_path / "run"
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *(f"--set={s}" for s in SMALL),
                            "--set", "optim.lr=200", "--set", "train.epochs=10")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    diverged = int(re.search(r"training diverged in epoch (\d+)", result.stderr).group(1))
    metrics = pd.read_csv(out / "metrics.csv")
    assert diverged > 1 and list(metrics["epoch"]) == list(range(1, diverged))
    best = int(metrics.loc[metrics["val_acc"].idxmax(), "epoch"])
    assert f"checkpoints/best.pt keeps epoch {best}, the epoch selected before it (elr-mri evaluate --run {out} " \
           "scores it)" in result.stderr
    kept = load_checkpoint(out / "checkpoints" / "best.pt")
    assert kept["epoch"] == best and all(torch.isfinite(w).all() for w in kept["method"]["model"].values())
    result = cli_in_process("evaluate", "--run", str(out), "--bootstrap", "20")
    assert result.returncode == 0 and f"best checkpoint so far, from epoch {best}" in result.stderr, result.stderr
    result = cli_in_process("train", "--resume", str(out))  # its eval-test/ was refused as "not a run's" files
    assert f"{out}: removed eval-test (they scored checkpoints/best.pt, which training anew here replaces" \
           in result.stderr and f"training diverged in epoch {diverged} " in result.stderr, result.stderr[-2000:]
    assert not (out / "eval-test").exists()
    # the resume said what happened (it read as a killed run's start) and that it would diverge again, before training
    assert f"{out}: no checkpoint yet (training diverged in epoch {diverged} before its first was written), so " \
           "training starts again from epoch 1" in result.stderr
    assert f"note: training diverged in epoch {diverged} when {out} last ran, and this resume trains it as it did " \
           "then (the same optim.lr, fp32), so it will diverge there again; to avoid that, start a new run with a " \
           f"lower optim.lr (now 200), e.g. elr-mri train --config {out / 'config.yaml'} --set optim.lr=20 --out " \
           "NEW_RUN_DIR\n" in result.stderr


def test_a_resume_of_a_diverged_run_is_warned_only_where_it_trains_as_that_run_did() -> None:
    """Another precision (the advice for fp16), or a resume that ends before the diverged epoch, may well go on."""
    from elr_mri.engine.divergence import diverging_again_note

    cpu, out = torch.device("cpu"), Path("run")
    assert diverging_again_note(out, load_config(DIGITS, ["train.epochs=5"]), cpu, (5, "fp32"))
    assert diverging_again_note(out, load_config(DIGITS, ["train.epochs=5"]), cpu, None) == []
    assert diverging_again_note(out, load_config(DIGITS, ["train.epochs=5", "train.precision=bf16"]), cpu,
                                (5, "fp32")) == []
    assert diverging_again_note(out, load_config(DIGITS, ["train.epochs=4"]), cpu, (5, "fp32")) == []


def test_a_best_checkpoint_a_resume_did_not_write_again_is_named(tmp_path: Path, cli_in_process: Cli) -> None:
    """best.pt written after last.pt (a diverged run keeps its best epoch there) is trained again by a resume, which
    rewrites it only if it selects that epoch again: under other execution settings it may not, and the summary
    would name an epoch whose weights best.pt does not hold. Here the resumed epoch 3 does not beat epoch 1."""
    out = tmp_path / "run"
    sets = [*SMALL, "train.epochs=2", "train.checkpoint_seconds=0", "optim.lr=1e-9"]  # nothing learned: epoch 1 stays
    assert cli_in_process("train", "--config", str(DIGITS), "--out", str(out),
                          *(f"--set={s}" for s in sets)).returncode == 0
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["epoch"] == 1
    atomic_save({**best, "epoch": 3, "written_at_epoch": 3}, out / "checkpoints" / "best.pt")  # an earlier call's
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
    assert result.returncode == 0, result.stderr[-2000:]
    (warning,) = json.loads((out / "summary.json").read_text())["warnings"]
    assert warning.startswith("checkpoints/best.pt holds epoch 3, not the selected epoch 1: a call before the resume "
                              "wrote it") and warning in result.stderr


def test_an_elr_run_whose_lambda_never_starts_says_it_trains_plain_cross_entropy(tmp_path: Path,
                                                                                  cli_in_process: Cli) -> None:
    """loss.lam_start_steps counts batches: 8 is a whole epoch of 450 digits at batch 64, read as 8 epochs."""
    from elr_mri.engine.runner import _unreached_lam_start_note

    out = tmp_path / "run"
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *(f"--set={s}" for s in SMALL),
                            "--set", "train.epochs=1", "--set", "loss.lam_start_steps=8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "note: loss.lam_start_steps = 8 counts training steps (batches), and this run takes 8 (1 epoch of 8), " \
           "so λ stays 0: it trains plain cross-entropy" in result.stderr
    cfg = load_config(DIGITS, [*SMALL, "train.epochs=1", "loss.lam_start_steps=7"])
    assert _unreached_lam_start_note(cfg, 8) == []  # λ comes in at the last step
    lam_0 = load_config(DIGITS, [*SMALL, "train.epochs=1", "loss.lam_start_steps=8", "loss.lam=0"])
    assert _unreached_lam_start_note(lam_0, 8) == []  # asked for: the CE control


def test_an_elr_plus_run_far_shorter_than_its_ramps_says_so(tmp_path: Path, cli_in_process: Cli) -> None:
    """ELR+'s ramps count each network's steps (the official 40,000): a run of 8 left the weight averages' momentum at
    0.7% of γ, averages that do not average, without a word. Both ramps are named where they end below half; a run
    whose ramps finish, or one whose averages use the running mean (no ramp), gets no note."""
    from elr_mri.engine.runner import _unfinished_ramp_notes

    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(tmp_path / "run"),
                            *(f"--set={s}" for s in SMALL), "--set", "train.epochs=1", "--set", "loss.name=elr_plus")
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("note: elr_plus.ema_ramp_steps = 40000 counts each network's training steps, and this run takes 8 (1 "
            "epoch of 8), so the weight averages' momentum ends at 0.0068 of its full value; lower "
            "elr_plus.ema_ramp_steps or raise train.epochs") in result.stderr
    both = load_config(DIGITS, ["loss.name=elr_plus", "train.epochs=2", "elr_plus.coef_step=100"])
    assert [note.split(" = ")[0] for note in _unfinished_ramp_notes(both, 8)] == [
        "note: elr_plus.coef_step", "note: elr_plus.ema_ramp_steps"]
    assert "takes 16 (2 epochs of 8), so λ ends at 0.029 of its full value" in _unfinished_ramp_notes(both, 8)[0]
    near_half = load_config(DIGITS, ["loss.name=elr_plus", "train.epochs=2", "elr_plus.coef_step=32",
                                     "elr_plus.ema_ramp_steps=21"])  # 16 steps: λ at 0.29, the momentum at 0.83
    notes = _unfinished_ramp_notes(near_half, 8)
    assert len(notes) == 1 and "so λ ends at 0.29 of its full value" in notes[0]
    finished = load_config(DIGITS, ["loss.name=elr_plus", "elr_plus.coef_step=1200", "elr_plus.ema_ramp_steps=1200"])
    assert _unfinished_ramp_notes(finished, 8) == []  # 150 epochs of 8: both ramps end at 1
    running_mean = load_config(DIGITS, ["loss.name=elr_plus", "train.epochs=1", "elr_plus.ema_schedule=running_average"])
    assert _unfinished_ramp_notes(running_mean, 8) == []
    asked_for = load_config(DIGITS, ["loss.name=elr_plus", "train.epochs=1", "elr_plus.coef_step=100", "loss.lam=0",
                                     "elr_plus.ema_decay=0"])
    assert _unfinished_ramp_notes(asked_for, 8) == []  # no λ, no averaging: nothing to ramp
    assert _unfinished_ramp_notes(load_config(DIGITS, ["train.epochs=1"]), 8) == []  # ELR's own ramp is off: 0


def test_an_elr_run_far_shorter_than_its_lambda_ramp_says_so() -> None:
    """`loss.lam_ramp_steps: 100000` (read as epochs?) on the digits' 2,700 steps ended λ below 1% of loss.lam: plain
    cross-entropy under ELR's name, without a word. The ramp starts at loss.lam_start_steps, so that shortens it."""
    from elr_mri.engine.runner import _unfinished_ramp_notes

    assert _unfinished_ramp_notes(load_config(DIGITS, ["loss.lam_ramp_steps=100000"]), 18) == [
        "note: loss.lam_ramp_steps = 100000 counts training steps after loss.lam_start_steps, and this run takes 2700 "
        "(150 epochs of 18), so λ ends at 0.0088 of its full value; lower loss.lam_ramp_steps or raise train.epochs"]
    assert _unfinished_ramp_notes(load_config(DIGITS, ["loss.lam_ramp_steps=1000"]), 18) == []  # finished
    late = ["loss.lam_ramp_steps=2000", "loss.lam_start_steps=2000"]  # 699 steps of the ramp: λ at 0.12
    assert "so λ ends at 0.12 of its full value" in _unfinished_ramp_notes(load_config(DIGITS, late), 18)[0]
    never = ["loss.lam_ramp_steps=2000", "loss.lam_start_steps=2700"]  # loss.lam_start_steps's own note says so
    assert _unfinished_ramp_notes(load_config(DIGITS, never), 18) == []
    assert _unfinished_ramp_notes(load_config(DIGITS, ["loss.lam_ramp_steps=100000", "loss.lam=0"]), 18) == []


def test_a_run_directory_without_its_data_record_is_named(tmp_path: Path, finished_run: Finished,
                                                         cli_in_process: Cli) -> None:
    """data_shape.json damaged: one line naming it. A run killed before its first checkpoint resumes, and one killed
    before its config.yaml (its records are written first) is started over by a new run, its records rewritten."""
    out = tmp_path / "run"
    finished_run(1, out)
    recorded = (out / "data_shape.json").read_text()
    (out / "data_shape.json").write_text("")
    for command in (("evaluate", "--run", str(out)), ("train", "--resume", str(out), "--set", "train.epochs=2")):
        result = cli_in_process(*command)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
        assert f"{out / 'data_shape.json'}: unreadable (" in result.stderr and "restore it" in result.stderr
    shutil.rmtree(out / "checkpoints")  # as a run killed before its first checkpoint: no summary either
    for name in ("summary.json", "suspected_mislabels.csv", "memorization.png"):
        (out / name).unlink()
    (out / "data_shape.json").write_text(recorded)
    result = cli_in_process("train", "--resume", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    killed_before_its_config = tmp_path / "killed"  # its records are written first
    killed_before_its_config.mkdir()
    (killed_before_its_config / "data_shape.json").write_text("{}")
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(killed_before_its_config),
                            *(f"--set={s}" for s in [*SMALL, "train.epochs=1"]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((killed_before_its_config / "data_shape.json").read_text()) == json.loads(recorded)


def test_an_empty_path_is_refused_rather_than_taken_as_this_folder(tmp_path: Path, cli_in_process: Cli,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # were the refusal to break, the run would land here, not in the repository
    result = cli_in_process("train", "--config", str(DIGITS), "--out", "", *(f"--set={s}" for s in SMALL),
                            "--set", "train.epochs=1")
    assert result.returncode == 2 and list(tmp_path.iterdir()) == []
    assert "argument --out: an empty path (an unset shell variable?); pass a file or folder" in result.stderr


def test_a_run_refused_before_writing_anything_leaves_no_folder(tmp_path: Path, cli_in_process: Cli) -> None:
    out = tmp_path / "run"
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(out), "--set", "data.name=cifar10",
                            "--set", f"data.root={tmp_path / 'nowhere'}")
    assert result.returncode == 2 and "nowhere" in result.stderr, result.stderr[-2000:]
    assert not out.exists()  # not a folder holding only the run lock


def test_a_batchnorm_variance_that_overflowed_under_a_finite_loss_is_divergence(tmp_path: Path,
                                                                               cli_in_process: Cli) -> None:
    """At lr 50 small_cnn's BatchNorm running variance overflows to inf in epoch 2 while the loss stays finite
    (1e16): the check, made only for a loss that is not finite, let the run write it to last.pt and finish."""
    out = tmp_path / "run"
    sets = [*SMALL, "model.name=small_cnn", "optim.lr=50", "train.epochs=3", "train.checkpoint_seconds=0"]
    result = cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *(f"--set={s}" for s in sets))
    assert result.returncode == 2 and "training diverged in epoch" in result.stderr, result.stderr[-2000:]
    assert "statistics or targets no longer finite" in result.stderr and "training loss nan" not in result.stderr
    for name in ("last.pt", "best.pt"):
        weights = load_checkpoint(out / "checkpoints" / name)["method"]["model"].values()
        assert all(torch.isfinite(w).all() for w in weights if w.is_floating_point()), name
    # the line offers to end the run at its last checkpoint, and that command does
    kept = load_checkpoint(out / "checkpoints" / "last.pt")["epoch"]
    end = f"elr-mri train --resume {out} --set train.epochs={kept}"
    assert f"; or end this run at epoch {kept}, its last checkpoint (summary and mislabel table from there): {end}\n" \
           in result.stderr, result.stderr[-2000:]
    assert cli_in_process(*end.split()[1:]).returncode == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == kept and not (out / "diverged.json").exists()


def test_nan_in_the_elr_targets_is_divergence_too(tmp_path: Path) -> None:
    """A float16 forward pass that overflowed writes NaN into the targets of its rows while the loss scaler keeps
    the weights finite: the run would go on with a NaN loss for good. The refusal then names fp16's range as a cause
    beside the learning rate (it named the learning rate alone)."""
    from elr_mri.engine.execution import ExecutionPlan
    from elr_mri.engine.methods import build_method
    from elr_mri.engine.divergence import refuse_divergence

    def method_and_plan(precision: str) -> tuple:
        torch.manual_seed(0)
        cfg = load_config(DIGITS, [*SMALL, "model.name=mlp", "model.hidden=8", f"train.precision={precision}"])
        plan = ExecutionPlan.from_config(cfg.train, torch.device("cpu"))
        return cfg, build_method(cfg, (1, 8, 8), 10, 20, plan), plan

    cfg, method, plan = method_and_plan("fp16")
    refuse_divergence(method, float("nan"), 0, cfg, tmp_path, plan)  # everything finite: a skipped float16 step
    with torch.no_grad():
        method.model.net[1].weight.mul_(1e5)  # the first layer's outputs pass float16's 65504
    images = torch.full((8, 1, 8, 8), 10.0)
    loss, _ = method.train_step({"image": images, "label": torch.arange(8), "index": torch.arange(8)})
    assert method.scaler.get_scale() == 2.0 ** 15  # skipped: the weights stay finite, the targets do not
    assert all(torch.isfinite(weight).all() for weight in method.model.parameters())
    assert not torch.isfinite(method.targets()[:8]).any() and torch.isfinite(method.targets()[8:]).all()
    with pytest.raises(ValueError, match=r"\(training loss 1.5; weights, statistics or targets no longer finite\)"):
        refuse_divergence(method, 1.5, 0, cfg, tmp_path, plan)  # a finite loss too: the state is what counts
    with pytest.raises(ValueError, match=r"training diverged in epoch 1 .*targets no longer finite.*lower optim.lr "
                                         r"\(now 0.05\), e.g. .*; or, as it ran in fp16 .*, go on in (bf16|fp32) "
                                         rf"\(.*\): elr-mri train --resume {tmp_path} --set train.precision=\1$"):
        refuse_divergence(method, float(loss), 0, cfg, tmp_path, plan)
    cfg, method, plan = method_and_plan("fp32")
    method.targets()[3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"targets no longer finite.*lower optim.lr \(now 0.05\), e.g. .* --set "
                                         r"optim.lr=0.005 --out NEW_RUN_DIR$"):  # fp32: no precision to change
        refuse_divergence(method, float("nan"), 0, cfg, tmp_path, plan)


def test_a_cpu_run_at_a_thread_a_core_on_a_busy_machine_is_told_to_try_one_thread(monkeypatch) -> None:
    """At load 12 on 2 cores the README's first digits run took 19 minutes at torch's default threads (its CE
    control 19 s at one)."""
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))  # fault injection: other jobs' load
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with _torch_threads(2):  # torch's default on 2 cores
        assert busy_cores_note(0, torch.device("cpu")) == [
            f"note: this machine is busy (load {cores + 3.0:.1f} on {cores} core(s)) and torch runs 2 threads, so the "
            "threads wait on each other: --set train.threads=1 is often many times faster here"]
    with _torch_threads(1):  # OMP_NUM_THREADS=1, as README advises there: the advice is taken already
        assert busy_cores_note(0, torch.device("cpu")) == []
    assert busy_cores_note(1, torch.device("cpu")) == []  # the user chose a count
    assert busy_cores_note(0, torch.device("cuda")) == []
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a job's log: no one there to act on it
    assert busy_cores_note(0, torch.device("cpu")) == []
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setattr(os, "getloadavg", lambda: (cores - 0.5, 0.0, 0.0))
    assert busy_cores_note(0, torch.device("cpu")) == []


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """torch's CPU threads set to `count` for the block (what OMP_NUM_THREADS gives a process at start)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_torchs_default_threads_are_no_more_than_the_usable_cores(tmp_path, monkeypatch) -> None:
    """train.threads 0 kept torch's thread a runnable core: in a 2-CPU container on a 64-core host, 64 threads on 2
    CPUs' time. The usable cores (here a SLURM job's one CPU) cap it, in training (last.pt records its threads) and
    in `evaluate`, which ask `limit_cpu_threads(0)` and give the caller's count back at their end; OMP_NUM_THREADS
    and train.threads stay as set."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    with _torch_threads(2):
        train(load_config(DIGITS, [*SMALL, "train.epochs=1", "train.device=cpu"]), tmp_path / "run")
        assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["cpu_threads"] == 1
        assert torch.get_num_threads() == 2
        limit_cpu_threads(0)
        assert torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's count
    with _torch_threads(2):
        limit_cpu_threads(0)
        assert torch.get_num_threads() == 2
        limit_cpu_threads(3)  # train.threads
        assert torch.get_num_threads() == 3


class _Terminal(io.StringIO):
    """stderr as a person at a terminal has it."""

    def isatty(self) -> bool:
        return True


def test_a_tied_validation_score_keeps_the_earlier_epoch() -> None:
    """Model selection: only a strictly better score replaces the best epoch, so a later epoch that ties keeps
    the earlier (less trained, less memorised) one; NaN never improves."""
    assert _improves(0.81, 0.80)
    assert not _improves(0.80, 0.80)
    assert not _improves(0.79, 0.80)
    assert not _improves(float("nan"), 0.80)


def test_a_resume_keeps_the_predictions_of_examples_the_epochs_since_did_not_draw(tmp_path: Path,
                                                                                   cli_in_process: Cli) -> None:
    """Class-balanced batches draw with replacement and skip examples each epoch, whose latest predictions are then
    an earlier epoch's: a CE run's mislabel table reads them, so a resume must restore them from last.pt."""
    overrides = [*SMALL, "loss.name=ce", "data.balanced_batches=2", "train.checkpoint_seconds=0"]
    train(load_config(DIGITS, [*overrides, "train.epochs=3"]), tmp_path / "uninterrupted")
    out = tmp_path / "resumed"
    train(load_config(DIGITS, [*overrides, "train.epochs=2"]), out)
    result = cli_in_process("train", "--resume", str(out), "--set", "train.epochs=3")
    assert result.returncode == 0, result.stderr
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt")["tracker_probs"] for d in (out, tmp_path / "uninterrupted"))
    assert torch.isnan(a[:, 0]).any() and not torch.isnan(a[:, 0]).all()  # some examples never drawn, most drawn
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    tables = [(d / "suspected_mislabels.csv").read_text() for d in (out, tmp_path / "uninterrupted")]
    assert tables[0] == tables[1]


def test_a_resume_without_a_checkpoint_says_it_starts_over_and_replaces_the_logged_epochs(
        tmp_path: Path, cli_in_process: Cli) -> None:
    """Killed after logging two epochs but before its first checkpoint: the resume says, in one line, that it trains
    from epoch 1 again and that those epochs had no checkpoint; metrics.csv then holds the new attempt's epochs
    alone, the same figures an uninterrupted run logs, not a mixture of two attempts."""
    donor, out = tmp_path / "uninterrupted", tmp_path / "run"
    settings = [*SMALL, "train.epochs=3"]
    train(load_config(DIGITS, settings), donor)
    out.mkdir()
    for name in ("config.yaml", "data_shape.json"):
        shutil.copy(donor / name, out / name)
    logged = pd.read_csv(donor / "metrics.csv")
    logged.iloc[:2].to_csv(out / "metrics.csv", index=False)  # the killed attempt's two epochs, no checkpoint
    result = cli_in_process("train", "--resume", str(out))
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "no checkpoint yet" in line]
    assert said == [f"{out}: no checkpoint yet (stopped before its first was written), so training starts again from "
                    "epoch 1 with the run's settings; the 2 epochs metrics.csv logged then had no checkpoint and are "
                    "trained again, their rows replaced"]
    timings = ["epoch_seconds", "eval_seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv").drop(columns=timings), logged.drop(columns=timings))


def test_a_run_killed_twice_before_its_first_checkpoint_resumes(tmp_path: Path, cli_in_process: Cli) -> None:
    """Killed between best.pt and last.pt of its first checkpoint, then again before the first checkpoint of the
    attempt that started it over: that attempt removes the first one's best.pt, which would otherwise look like
    the checkpoint of a run that lost its last.pt, and the run could not go on."""
    out = tmp_path / "run"
    train(load_config(DIGITS, [*SMALL, "train.epochs=1", "train.checkpoint_seconds=0"]), out)
    for written_later in ("checkpoints/last.pt", "summary.json", "suspected_mislabels.csv", "memorization.png"):
        (out / written_later).unlink()  # as if killed between the first checkpoint's two files
    _kill_after_epochs(2, out, "--resume", str(out), "--set", "train.epochs=30",
                       "--set", "train.checkpoint_seconds=3600")
    assert 2 <= _rows(out) < 30 and not (out / "checkpoints" / "last.pt").exists()
    result = cli_in_process("train", "--resume", str(out))
    assert result.returncode == 0, result.stderr
    assert _rows(out) == 30


@pytest.mark.parametrize(("seconds", "started_over"), [([10.0, 50.0], True), ([40.0, 50.0], False)])
def test_a_run_killed_writing_its_first_checkpoint_is_told_from_one_that_lost_its_checkpoints(
        tmp_path: Path, finished_run: Finished, seconds: list[float], started_over: bool) -> None:
    """With train.checkpoint_seconds 30, epochs of 10 and 50 s first write at the end of epoch 2: a run without
    checkpoints there was killed writing them and starts over. Epochs of 40 and 50 s wrote at epoch 1: the
    checkpoints were deleted since, and the folder is refused."""
    out = tmp_path / "run"
    finished_run(2, out, "train.checkpoint_seconds=30")
    for written_later in ("summary.json", "suspected_mislabels.csv", "memorization.png"):
        (out / written_later).unlink()
    shutil.rmtree(out / "checkpoints")
    metrics = pd.read_csv(out / "metrics.csv").assign(epoch_seconds=seconds, eval_seconds=0.0)
    metrics.to_csv(out / "metrics.csv", index=False)
    if started_over:
        check_run_dir(out, resume=True)
    else:
        with pytest.raises(FileExistsError, match="logs 2 epochs, 40 s of them before the last"):
            check_run_dir(out, resume=True)


def test_an_epochs_agreement_counts_the_examples_that_epoch_drew(tmp_path: Path) -> None:
    """Class-balanced batches skip examples each epoch: train_acc_given (as the Figure 1 fractions) is over the
    examples the epoch predicted, not over older epochs' predictions of the others too."""
    from elr_mri.data import build_data
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder

    cfg = load_config(DIGITS, [*SMALL, "loss.name=ce", "data.balanced_batches=2", "train.epochs=2"])
    train(cfg, tmp_path / "run")
    data = build_data(cfg.data)
    batches = BatchFeeder(data, cfg, DistContext(), torch.device("cpu")).train_epoch(1)  # the last epoch's draw
    drawn = torch.cat([batch["index"] for batch in batches]).unique()
    assert len(drawn) < len(data.train)
    predicted = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["tracker_probs"].float().argmax(dim=1)
    agreement = float((predicted[drawn].numpy() == data.train_labels[drawn.numpy()]).mean())
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["train_acc_given"].iloc[-1] == pytest.approx(agreement)


def test_a_checkpoint_with_a_bit_flipped_in_a_weight_is_refused_naming_it(tmp_path: Path) -> None:
    """torch.save writes a CRC-32 for each record but torch.load never checks it: a weight damaged on disk loaded
    as another number, and a resume trained on from it without a word."""
    path = tmp_path / "last.pt"
    atomic_save({"method": {"weight": torch.full((256,), 1.5)}, "epoch": 3}, path)
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<f", 1.5) * 256)
    assert at > 0
    data[at + 101] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: not a readable checkpoint \(BadZipFile: "
                                              r"Bad CRC-32 for file '[^']*data/0'\)"):
        load_checkpoint(path)
    assert load_checkpoint(path, mmap=True)["epoch"] == 3  # a look at the epoch reads no weight


def test_a_checkpoint_holding_code_is_not_run_and_named_another_programs(tmp_path: Path,
                                                                          code_in_a_pickle: tuple) -> None:
    """torch's refusal advised loading with weights_only=False, and the engine's line called the file damaged."""
    (code, ran), path = code_in_a_pickle, tmp_path / "best.pt"
    torch.save({"method": code, "epoch": 3}, path)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    assert str(refused.value) == (
        f"{path}: not loaded, as it holds Python objects ({os.mkdir.__module__}.mkdir) that only running code from the "
        "file could make: `elr-mri train` writes none, so it is another program's file (or one made to run code); "
        "restore the run's own from a copy")
    assert not ran.exists()


def test_a_checkpoint_that_is_no_dict_is_one_line_naming_it(tmp_path: Path) -> None:
    """Every caller looks its entries up: a list as last.pt stopped `train --resume` at an AttributeError."""
    path = tmp_path / "last.pt"
    torch.save([1, 2, 3], path)
    for mmap in (False, True):
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: not a checkpoint of `elr-mri train` \(it "
                                                  r"holds a list, not a dict\); restore the run's own from a copy$"):
            load_checkpoint(path, mmap=mmap)


def test_a_runs_config_yaml_cut_short_is_refused_not_read_with_default_settings(tmp_path: Path,
                                                                               cli_in_process: Cli) -> None:
    """train writes selection_rule as config.yaml's last key (since its first version): a file cut above it lost
    settings, which evaluate and --resume read as their defaults (here the loss, whose lam train wrote last but one)."""
    out = tmp_path / "run"
    sets = [a for s in [*SMALL, "train.epochs=1"] for a in ("--set", s)]
    assert cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *sets).returncode == 0
    lines = (out / "config.yaml").read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if line.startswith("loss:"))
    (out / "config.yaml").write_text("".join(lines[:cut]))
    assert load_config(out / "config.yaml").loss.name == "ce"  # the default, where the run trained with ELR
    for command in (("evaluate", "--run", str(out), "--bootstrap", "2"), ("train", "--resume", str(out))):
        result = cli_in_process(*command)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
        assert result.stderr == (f"elr-mri {command[0]}: error: {out / 'config.yaml'}: no selection_rule, the last "
                                 "key `elr-mri train` writes there, so the file is cut short or not the run's; restore "
                                 "the config.yaml the run was trained with\n")


def test_a_second_evaluate_of_one_run_and_manifest_is_refused_while_the_first_writes(
        tmp_path: Path, cli_in_process: Cli, lock_held_elsewhere: Locked) -> None:
    """Two at once each wrote metrics.csv, predictions.csv and summary.json: one's summary could sit beside the
    other's metrics. The first is imitated by a process holding the evaluation folder's lock."""
    out = tmp_path / "run"
    sets = [a for s in [*SMALL, "train.epochs=1"] for a in ("--set", s)]
    assert cli_in_process("train", "--config", str(DIGITS), "--out", str(out), *sets).returncode == 0
    (out / "eval-test").mkdir()
    with lock_held_elsewhere(out / "eval-test" / ".evaluate.lock"):
        result = cli_in_process("evaluate", "--run", str(out), "--bootstrap", "2")
    assert result.returncode == 2 and result.stderr == (
        f"elr-mri evaluate: error: {out / 'eval-test'}: another `elr-mri evaluate` (or `train` scoring its "
        "holdout) is writing there; let it finish (or stop it) first\n")
    assert not (out / "eval-test" / "summary.json").exists()
    result = cli_in_process("evaluate", "--run", str(out), "--bootstrap", "2")  # once the first has ended
    assert result.returncode == 0 and (out / "eval-test" / "summary.json").is_file(), result.stderr[-3000:]
    result = cli_in_process("evaluate", "--run", str(out), "--manifest", str(tmp_path / "none.csv"))
    assert result.returncode == 2 and not (out / "eval-none").exists()  # refused: no empty folder left behind
