"""The `elr-mri` commands at the edges of what they allow: options refused in one line before any work, and notes."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import pytest

from elr_mri.cli import _memory_refused, _out_of_memory, main
from elr_mri.commands.evaluate import NAMED_OF_MANY, _first_few, exclusive_output
from elr_mri.commands.train import train_run_dir
from elr_mri.plots import LEGIBLE_CLASSES


def test_volumes_with_no_worker_is_one_line(capsys: pytest.CaptureFixture) -> None:
    """`--jobs 0` measures nothing: refused before the manifest is read, as `--registration-mm 0` is."""
    assert main(["volumes", "--manifest", "never-read.csv", "--jobs", "0"]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "--jobs must be at least 1" in said and "got --jobs 0" in said


def test_evaluate_with_a_single_bootstrap_resample_is_one_line(capsys: pytest.CaptureFixture) -> None:
    """One resample has no spread, so no 95% interval: the least `--bootstrap` allows is 2, said before any scoring."""
    assert main(["evaluate", "--run", "never-read", "--bootstrap", "1"]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "--bootstrap 1: the 95% intervals need resamples" in said and "at least 2" in said


def test_evaluate_of_an_image_runs_other_test_set_refuses_baselines_without_a_manifest_too(
        capsys: pytest.CaptureFixture) -> None:
    """The baselines are fitted on an MRI run's volumes and scans, which an image run's test set has none of."""
    assert main(["evaluate", "--run", "never-read", "--test-set", "ilsvrc12", "--baselines"]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "--test-set ilsvrc12 scores one of an image run's own test sets" in said


def test_a_note_names_every_metric_of_a_list_as_long_as_a_screen_shows_and_cuts_a_longer_one() -> None:
    """Up to LEGIBLE_CLASSES names are listed whole; past it the first NAMED_OF_MANY, a count and where the rest are."""
    whole = [f"auc_{k}" for k in range(LEGIBLE_CLASSES)]
    assert _first_few(whole, "metrics.csv") == whole
    longer = [*whole, "auc_last"]
    assert _first_few(longer, "metrics.csv") == [*longer[:NAMED_OF_MANY], f"and {len(longer) - NAMED_OF_MANY} more "
                                                 f"({len(longer)} in all; metrics.csv)"]


def test_an_output_folder_that_was_there_before_a_refused_command_is_kept(tmp_path: Path) -> None:
    """Only a folder the command made and left empty but for its lock goes again: one a user made stays."""
    made, theirs = tmp_path / "eval-made", tmp_path / "eval-theirs"
    theirs.mkdir()
    for folder in (made, theirs):
        with exclusive_output(folder):
            pass
    assert not made.exists() and theirs.is_dir()


def test_a_new_runs_default_folder_is_runs_slash_the_config_files_name_without_yaml() -> None:
    """`elr-mri --help`: `train --config configs/digits/elr_sym40.yaml` is a run into runs/elr_sym40."""
    config = Path("configs/digits/elr_sym40.yaml")
    assert train_run_dir(Namespace(resume=None, out=None, config=config)) == Path("runs/elr_sym40")
    assert train_run_dir(Namespace(resume=None, out=Path("elsewhere"), config=config)) == Path("elsewhere")


def test_an_allocation_the_machine_refuses_is_said_in_gib() -> None:
    """torch's CPU allocator names the bytes; 2^31 bytes are 2.0 GiB (2,048 would be MiB)."""
    refused = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 2147483648 bytes. Error code 12 (Cannot allocate memory)")
    assert _memory_refused(refused) == "the machine's memory cannot hold one allocation of 2.0 GiB"


def test_explain_running_out_of_memory_names_the_scoring_batch_to_lower_as_evaluate_does() -> None:
    """`explain` scores the run's checkpoint in batches of train.eval_batch_size, as `evaluate` does."""
    explaining = Namespace(command="explain", run=Path("runs/x"), manifest=None, checkpoint="best")
    assert str(_out_of_memory(MemoryError(), explaining)) == (
        f"the machine ran out of memory; lower train.eval_batch_size in {Path('runs/x/config.yaml')} and run the command "
        "again")
