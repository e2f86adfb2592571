"""`train`'s refusals made from a run's settings and folder alone, before torch is imported."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from elr_mri.config import ConfigError, RunConfig, ScheduleConfig, TrainLoopConfig
from elr_mri.engine.start import (_refuse_unfingerprinted_run, finished_at, refuse_stretched_cosine,
                                  refuse_threads_past_cpus)


def _run(epochs: int, schedule: str = "cosine") -> RunConfig:
    return RunConfig(train=TrainLoopConfig(epochs=epochs), schedule=ScheduleConfig(name=schedule))


def test_four_threads_a_cpu_are_allowed() -> None:
    """The bar is more than four a CPU: four a CPU itself starts."""
    refuse_threads_past_cpus(4 * (os.cpu_count() or 1))


def test_a_run_has_finished_only_at_the_epochs_its_summary_records(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    (tmp_path / "summary.json").write_text(json.dumps({"epochs": 3}))
    assert [finished_at(tmp_path, epochs) for epochs in (2, 3, 4)] == [False, True, False]


def test_a_cosine_run_is_not_shortened_on_resume_either(tmp_path: Path) -> None:
    """Its rates so far followed a decay over 4 epochs: another length, shorter as longer, gives neither run."""
    with pytest.raises(ConfigError, match="its cosine schedule spans train.epochs = 4"):
        refuse_stretched_cosine(_run(4), _run(2), tmp_path)
    refuse_stretched_cosine(_run(4, "multistep"), _run(2, "multistep"), tmp_path)  # step decay: no length in it


def test_an_old_runs_resume_at_its_own_length_is_told_the_command_without_a_setting(tmp_path: Path) -> None:
    """A plain `--resume` of an unfinished run from before the training labels were recorded: the new run to start
    is the same config, no `--set train.epochs` (which the refusal names only where the resume asked for another)."""
    (tmp_path / "data_shape.json").write_text(json.dumps({"train_examples": 10}))
    with pytest.raises(ConfigError) as refused:
        _refuse_unfingerprinted_run(_run(5), _run(5), tmp_path)
    assert str(refused.value).endswith(f"--config {shlex.quote(str(tmp_path / 'config.yaml'))} --out NEW_RUN_DIR")
