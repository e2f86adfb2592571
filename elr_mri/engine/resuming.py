"""What a `--resume` reads back from its run folder, and the resumes it refuses or warns of: those that would
shorten the run, restart without a checkpoint, continue on another CPU thread count, or finish without the weights
its summary names. Apart from the epoch loop, which only calls `restore_last_checkpoint` and prints these notes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from elr_mri.config import ConfigError, RunConfig, config_from_dict, refuse_resume_changes
from elr_mri.distributed import DistContext, part_rank_streams
from elr_mri.engine.checkpoint import load_checkpoint, restore_rng
from elr_mri.engine.methods import Method
from elr_mri.engine.start import refuse_stretched_cosine
from elr_mri.engine.tracking import PredictionTracker

if TYPE_CHECKING:  # annotations only: the runner, which holds RunState, imports this module
    from elr_mri.engine.runner import RunState

__all__ = ["refuse_shortening", "starting_over_note", "thread_count_note", "restore_last_checkpoint"]


def refuse_shortening(out_dir: Path, epochs: int) -> None:
    """Before the data, which an MRI cohort takes minutes to load: a resume trains on from last.pt's epoch, never
    back. An mmap look reads the epoch alone."""
    path = out_dir / "checkpoints" / "last.pt"
    trained = load_checkpoint(path, mmap=True).get("epoch", 0) if path.exists() else 0
    if epochs < trained:
        raise ConfigError(f"{out_dir} has trained {trained} epochs, so train.epochs = {epochs} cannot shorten it; "
                          f"pass more than {trained} to continue it, or {trained} to end it where it stands (its summary and "
                          "mislabel table are written from the last epoch)")


def starting_over_note(out_dir: Path, diverged: tuple[int, str] | None) -> str:
    """The line of a --resume that finds no checkpoint: it starts over, and the epochs a killed (or diverged) attempt
    logged in metrics.csv, which no checkpoint kept, are trained again and their rows replaced, not mixed with the
    new ones. `diverged`: `read_divergence`'s."""
    logged = len(_read_metrics(out_dir))
    several = logged != 1
    kept = (f"the {logged} epoch{'s' if several else ''} metrics.csv logged then had no checkpoint and "
            f"{'are' if several else 'is'} trained again, {'their rows' if several else 'its row'} replaced" if logged
            else "no epoch had been logged, so nothing is lost")
    how = f"training diverged in epoch {diverged[0]}" if diverged else "stopped"
    return (f"{out_dir}: no checkpoint yet ({how} before its first was written), so training starts again from "
            f"epoch 1 with the run's settings; {kept}")


def thread_count_note(state: RunState, device: torch.device) -> list[str]:
    """A CPU resume under another thread count than its last.pt was written with: torch's CPU kernels split their
    sums by thread, so the run goes on, but not bit for bit. `train.threads: 0` takes the cores the machine gives
    the run (or OMP_NUM_THREADS), which a resume on another node may change without a setting saying so."""
    running = torch.get_num_threads()
    if device.type != "cpu" or state.threads_before in (None, running):
        return []
    return [f"note: last.pt was written by a run with {state.threads_before} CPU thread"
            f"{'s' if state.threads_before != 1 else ''} and this resume runs {running}, which sum in another order: "
            f"the run continues, but not bit for bit; --set train.threads={state.threads_before} keeps it exact"]


def restore_last_checkpoint(out_dir: Path, cfg: RunConfig, method: Method, tracker: PredictionTracker,
                            state: RunState, dist: DistContext) -> None:
    """Load last.pt into the method, the tracker and `state`; nothing to load means start over in place.

    `cfg` comes from the run's config.yaml, which a hand edit may have changed since: the settings the
    checkpoint was trained with (recorded in it) are compared, as `--set` changes are."""
    path = out_dir / "checkpoints" / "last.pt"
    if not path.exists():  # killed before the first checkpoint was written (check_run_dir made sure; said then)
        part_rank_streams(cfg.seed, 0, dist)  # as a new run's
        return
    ckpt = load_checkpoint(path)
    lacking = [key for key in ("method", "tracker_probs", "epoch", "best_val", "best_epoch", "wall_seconds")
               if key not in ckpt]
    if lacking:
        raise ValueError(f"{path}: not a last.pt of `elr-mri train` (it lacks {', '.join(lacking)}: a best.pt copied "
                         "over it?); restore last.pt from a copy, or train the run again")
    if "config" in ckpt:  # checkpoints from before it was recorded have none
        trained_with = config_from_dict(ckpt["config"], str(path))
        refuse_resume_changes(trained_with, cfg, out_dir,
                              fix=f"restore {out_dir / 'config.yaml'} to the settings {path.name} was trained with, "
                                  "or start a new run with the new ones")
        refuse_stretched_cosine(trained_with, cfg, out_dir)
    method.load_state_dict(ckpt["method"])
    tracker.load(ckpt["tracker_probs"])
    state.epoch, state.best_val, state.best_epoch = ckpt["epoch"], ckpt["best_val"], ckpt["best_epoch"]
    state.seconds_before = ckpt["wall_seconds"]
    state.threads_before = ckpt.get("cpu_threads")  # checkpoints before 2026-12-06 lack it
    _refuse_lost_best(out_dir, state.best_epoch)
    _refuse_best_beyond(out_dir, state.epoch, cfg.train.epochs)
    state.rows = [row for row in _read_metrics(out_dir) if row["epoch"] <= state.epoch]
    if [row["epoch"] for row in state.rows] != list(range(1, state.epoch + 1)):  # the summary is built from them
        raise ValueError(f"{out_dir / 'metrics.csv'}: lacks rows of the {state.epoch} epochs that {path.name} has "
                         "trained (damaged or removed since); restore it from a copy, or train the run again")
    by_rank = ckpt.get("rng_by_rank")
    if by_rank is not None and len(by_rank) == dist.world_size:
        restore_rng(by_rank[dist.rank])
    else:  # under another number of processes every rank takes rank 0's state, and the others part from it again
        restore_rng(ckpt["rng"])
        part_rank_streams(cfg.seed, state.epoch, dist)


def _refuse_lost_best(out_dir: Path, best_epoch: int) -> None:
    """last.pt records a best epoch, whose weights went to best.pt before it: without best.pt the run would finish
    with a summary naming weights no file holds, and `evaluate` would fail only then."""
    path = out_dir / "checkpoints" / "best.pt"
    if best_epoch and not path.exists():
        raise FileNotFoundError(f"{path} is missing, though last.pt records epoch {best_epoch} as the best; restore "
                                "it from a copy of the run, or train the run again")


def _refuse_best_beyond(out_dir: Path, resumed_epoch: int, epochs: int) -> None:
    """best.pt is written before last.pt: a run stopped between the two leaves a best.pt of a later epoch, over the
    best weights of the epochs before. Training that epoch again writes it again (the resume is exact); a run that
    would end before it would present those weights as its own."""
    path = out_dir / "checkpoints" / "best.pt"
    if not path.exists():
        return
    best_epoch = load_checkpoint(path, mmap=True).get("epoch", 0)
    if best_epoch > resumed_epoch and epochs < best_epoch:
        raise ValueError(f"{path} holds epoch {best_epoch}, written after last.pt's epoch {resumed_epoch} by a run "
                         f"stopped between the two, over the best weights before it; train that epoch again: "
                         f"--set train.epochs={best_epoch} or more")


def _read_metrics(out_dir: Path) -> list[dict[str, Any]]:
    """The complete rows of metrics.csv (it is written whole, so a last line without its newline was cut
    short); none when the file is missing, empty or unreadable (a resume then says so)."""
    path = out_dir / "metrics.csv"
    try:
        text = path.read_text()
        table = pd.read_csv(io.StringIO(text[:text.rfind("\n") + 1]))
    except (FileNotFoundError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return []
    readable = "epoch" in table.columns and pd.api.types.is_integer_dtype(table["epoch"])
    return table.to_dict("records") if readable else []
