"""The lines a `--resume` prints about what it found: pure functions of the run folder and last.pt's records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elr_mri.config import ConfigError, RunConfig, config_to_dict, load_config
from elr_mri.distributed import DistContext
from elr_mri.engine.checkpoint import load_checkpoint
from elr_mri.engine.execution import ExecutionPlan
from elr_mri.engine.methods import build_method
from elr_mri.engine.resuming import restore_last_checkpoint, starting_over_note, thread_count_note
from elr_mri.engine.runner import CheckpointWriter, RunState
from elr_mri.engine.tracking import PredictionTracker

DIGITS = Path(__file__).parents[1] / "configs" / "digits" / "elr_sym40.yaml"


def test_a_resume_without_a_checkpoint_counts_the_epochs_it_trains_again_in_words(tmp_path: Path) -> None:
    """One logged epoch is said in the singular ('the 1 epoch ... is trained again, its row replaced'); none says
    nothing is lost; a divergence names its epoch."""
    start = f"{tmp_path}: no checkpoint yet (stopped before its first was written), so training starts again from " \
            "epoch 1 with the run's settings; "
    assert starting_over_note(tmp_path, None) == start + "no epoch had been logged, so nothing is lost"
    (tmp_path / "metrics.csv").write_text("epoch,train_loss\n1,2.3\n")
    assert starting_over_note(tmp_path, None) == start + (
        "the 1 epoch metrics.csv logged then had no checkpoint and is trained again, its row replaced")
    (tmp_path / "metrics.csv").write_text("epoch,train_loss\n1,2.3\n2,2.1\n")
    assert starting_over_note(tmp_path, (2, "train_loss")).startswith(
        f"{tmp_path}: no checkpoint yet (training diverged in epoch 2 before its first was written)")
    assert "the 2 epochs metrics.csv logged" in starting_over_note(tmp_path, None)


def test_a_metrics_csv_whose_epochs_are_not_whole_numbers_counts_as_no_epoch_logged(tmp_path: Path) -> None:
    """Not a table the engine wrote (its epochs are 1, 2, ...): unreadable, which a resume says, rather than rows."""
    (tmp_path / "metrics.csv").write_text("epoch,train_loss\nfirst,2.3\n")
    assert starting_over_note(tmp_path, None).endswith("no epoch had been logged, so nothing is lost")


def test_a_resume_is_told_of_another_thread_count_only_where_last_pt_recorded_one() -> None:
    """Checkpoints before 2026-12-06 lack the count (None): nothing to compare, so no note."""
    state, cpu, running = RunState(), torch.device("cpu"), torch.get_num_threads()
    assert thread_count_note(state, cpu) == []
    state.threads_before = running
    assert thread_count_note(state, cpu) == []
    state.threads_before = running + 1
    assert thread_count_note(state, torch.device("cuda")) == []  # a GPU's sums do not follow the CPU threads
    assert thread_count_note(state, cpu) == [
        f"note: last.pt was written by a run with {running + 1} CPU threads and this resume runs {running}, which sum "
        f"in another order: the run continues, but not bit for bit; --set train.threads={running + 1} keeps it exact"]


def _checkpointed(folder: Path, settings: list[str], epoch: int, best_epoch: int, seconds: float) -> RunConfig:
    """A last.pt as `elr-mri train` writes it after `epoch`, with metrics.csv's rows for it; best.pt only where an
    epoch was the best. Returns the run's config."""
    cfg = load_config(DIGITS, ["model.name=small_cnn", "model.hidden=8", *settings])
    plan = ExecutionPlan.from_config(cfg.train, torch.device("cpu"))
    state = RunState()
    state.epoch, state.best_epoch, state.seconds_before = epoch, best_epoch, seconds
    CheckpointWriter(folder, every_seconds=0, config=config_to_dict(cfg)).after_epoch(
        build_method(cfg, (1, 8, 8), 10, 32, plan), PredictionTracker(32, 10), state, is_best=bool(best_epoch),
        final=True)
    (folder / "metrics.csv").write_text("epoch\n" + "".join(f"{n}\n" for n in range(1, epoch + 1)))
    return cfg


def _resumed(folder: Path, cfg: RunConfig) -> RunState:
    plan = ExecutionPlan.from_config(cfg.train, torch.device("cpu"))
    state = RunState()
    restore_last_checkpoint(folder, cfg, build_method(cfg, (1, 8, 8), 10, 32, plan), PredictionTracker(32, 10),
                            state, DistContext())
    return state


def test_a_resume_goes_on_from_last_pts_wall_time_and_without_a_best_pt_where_no_epoch_was_best(
        tmp_path: Path) -> None:
    """Best epoch 0 (no epoch's selection score was a number) leaves no best.pt to lose; the run's wall time counts
    on from what last.pt recorded (summary.json's wall_seconds: the resumed parts included)."""
    cfg = _checkpointed(tmp_path, [], epoch=2, best_epoch=0, seconds=100.0)
    assert not (tmp_path / "checkpoints" / "best.pt").exists()
    resumed = _resumed(tmp_path, cfg)
    recorded = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["wall_seconds"]
    assert (resumed.epoch, resumed.best_epoch) == (2, 0)
    assert resumed.seconds_before == recorded >= 100.0


def test_a_cosine_run_whose_config_yaml_was_edited_to_more_epochs_is_refused_on_resume(tmp_path: Path) -> None:
    """The checkpoint records the length its cosine schedule spanned: a hand edit of config.yaml cannot stretch it."""
    cosine = ["schedule.name=cosine", "schedule.eta_min=0"]
    trained = _checkpointed(tmp_path, [*cosine, "train.epochs=2"], epoch=2, best_epoch=2, seconds=1.0)
    edited = load_config(DIGITS, ["model.name=small_cnn", "model.hidden=8", *cosine, "train.epochs=4"])
    assert trained.train.epochs == 2
    with pytest.raises(ConfigError, match="its cosine schedule spans train.epochs = 2"):
        _resumed(tmp_path, edited)
