"""The line `train` ends each epoch with where stderr is a file or a pipe."""

from __future__ import annotations

import io
import os
import re

import pytest

from elr_mri.engine.epoch_lines import EpochLines, draws_bars

ROW = {"lr": 0.02, "train_loss": 0.51234, "train_acc_given": 0.8, "val_acc": 0.75, "val_balanced_acc": float("nan"),
       "test_acc": 0.7, "test_top5": 0.9, "test_ilsvrc12_acc": 0.6}


def _begun(epochs: int, first_epoch: int, select: str, call_seconds: float, epoch_seconds: float) -> EpochLines:
    """Lines of a call that began `call_seconds` ago, its current epoch `epoch_seconds` ago."""
    lines = EpochLines(epochs, first_epoch, select)
    lines.started -= call_seconds
    lines.last = lines.started + call_seconds - epoch_seconds
    return lines


def test_an_epoch_line_says_its_scores_its_own_seconds_and_the_time_the_remaining_epochs_take() -> None:
    """Resumed after epoch 4 of 10, the call took 20 min for epochs 5 and 6, the 6th 5 min of them: 10 min an epoch,
    so the 4 epochs left take 40 min. Scores as metrics.csv names them, a test column of another set included, one
    with no value (NaN) left out."""
    line = _begun(10, 4, "val_acc", call_seconds=1200, epoch_seconds=300).line({"epoch": 6, **ROW}, is_best=True)
    assert re.fullmatch(r"\d\d:\d\d:\d\d epoch 6/10: lr 0\.02, train_loss 0\.5123, train_acc_given 0\.8, val_acc 0\.75, "
                        r"test_acc 0\.7, test_ilsvrc12_acc 0\.6 \(best val_acc so far\); 5 min, 40 min left", line), line


def test_the_last_epoch_says_so_and_a_run_keeping_its_last_epoch_names_no_best() -> None:
    """Without a validation split (its row has no val_ columns), as a run keeping its last epoch may be."""
    row = {key: value for key, value in ROW.items() if not key.startswith("val_")}
    line = _begun(10, 4, "last", call_seconds=1200, epoch_seconds=300).line({"epoch": 10, **row}, is_best=True)
    assert line.endswith(": lr 0.02, train_loss 0.5123, train_acc_given 0.8, test_acc 0.7, test_ilsvrc12_acc 0.6; "
                         "5 min, the last epoch"), line


def test_bars_are_drawn_only_where_asked_for_and_stderr_is_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a file or a pipe
    assert not draws_bars(True) and not draws_bars(False)
    leader, follower = os.openpty()
    with os.fdopen(leader, "w"), os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr("sys.stderr", terminal)
        assert draws_bars(True) and not draws_bars(False)
