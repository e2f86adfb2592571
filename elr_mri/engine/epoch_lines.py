"""What `train` shows while it runs: a line per epoch on stderr, and progress bars only where a terminal draws them.

Why: a run under nohup, SLURM, `| tee` or `!elr-mri` in a notebook writes stderr to a file or a pipe, where tqdm's
bars are carriage returns and cursor moves (redrawn ten times a second, on one ever longer line), and nothing said an
epoch's loss or accuracy until the run ended.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from tqdm import tqdm

from preprocess.progress import duration, stderr_is_terminal

__all__ = ["draws_bars", "EpochLines"]

SHOWN = ("lr", "train_loss", "train_acc_given", "val_acc", "val_balanced_acc")  # then the test columns' accuracies


def draws_bars(progress: bool) -> bool:
    """Whether `train.progress` shows bars: only on a terminal; in a file or a pipe the epoch lines stand for them."""
    return progress and stderr_is_terminal()


class EpochLines:
    """The line each epoch ends with: its time of day, its scores under metrics.csv's names (fractions, as there),
    whether it is the best so far by `train.select`, its seconds and the time the remaining epochs should take."""

    def __init__(self, epochs: int, first_epoch: int, select: str) -> None:
        self.epochs, self.first_epoch, self.select = epochs, first_epoch, select
        self.started = self.last = time.perf_counter()

    def say(self, row: dict[str, Any], is_best: bool) -> None:
        """Print the line of the epoch `row` (metrics.csv's row) above any bars, which tqdm then draws again."""
        tqdm.write(self.line(row, is_best), file=sys.stderr)

    def line(self, row: dict[str, Any], is_best: bool) -> str:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now  # training, scoring and checkpoint: the epoch as the run spent it
        epoch = row["epoch"]
        shown = [*SHOWN, *(key for key in row if key.startswith("test_") and key.endswith("_acc"))]
        scores = ", ".join(f"{key} {row[key]:.4g}" for key in shown if not math.isnan(row.get(key, math.nan)))
        best = f" (best {self.select} so far)" if is_best and self.select != "last" else ""
        left = (now - self.started) / (epoch - self.first_epoch) * (self.epochs - epoch)
        when = f"{duration(left)} left" if epoch < self.epochs else "the last epoch"
        return f"{time.strftime('%H:%M:%S')} epoch {epoch}/{self.epochs}: {scores}{best}; {duration(seconds)}, {when}"
