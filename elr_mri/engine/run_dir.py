"""A run directory's contract with `elr-mri train`: one writer at a time, which folder may take a new run or a
resume, and what a run that goes on training removes (what described its earlier end, and the scores of its
checkpoints). What a run records about its data, and the resume's checks against it, are `run_records`'.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import pandas as pd
import yaml

from elr_mri.config import SELECTION_RULE_KEY
from elr_mri.data.images import NoisyImageData
from elr_mri.atomic_files import atomic_write_json, atomic_write_text
from elr_mri.engine.checkpoint import load_checkpoint
from elr_mri.engine.run_records import RUN_RECORDS, record_run_data
from preprocess.folder_locks import held_lock
from preprocess.user_errors import file_above

__all__ = ["exclusive_run_dir", "check_run_dir", "enclosing_run", "holds_a_run", "not_the_run_folder", "remove_leftovers", "start_run_dir", "reopen_run_dir",
           "remove_scores_made_while_training", "record_divergence", "read_divergence"]

RUN_LOCK = ".train.lock"  # held (lockf) by the `elr-mri train` writing the run; released when it ends
END_PRODUCTS = ("summary.json", "suspected_mislabels.csv", "memorization.png")  # written when a run ends
CHECKPOINT_PRODUCTS = ("eval-*", "explain-*")  # folders of `elr-mri evaluate` and `explain`, from best.pt or last.pt
DIVERGED = "diverged.json"  # a run that diverged: in which epoch and precision (`record_divergence`)
# what a run writes before its first checkpoint: a new run may start over in a folder that holds only these
BEFORE_FIRST_CHECKPOINT = (RUN_LOCK, "config.yaml", *RUN_RECORDS, "metrics.csv", "tensorboard", "checkpoints",
                           DIVERGED)
RUN_TEMP = re.compile(r"\.tmp\d+-.+")  # `atomic_path`'s temporary file: .tmp<pid>-<random>-<final name>


@contextmanager
def exclusive_run_dir(out_dir: Path, create: bool = True) -> Iterator[None]:
    """One `elr-mri train` at a time in a run directory: until the first checkpoint nothing marks it as
    taken, and two runs would interleave their checkpoints, config and metrics."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; choose a folder for the run")
    if create and file_above(out_dir) is not None:
        raise NotADirectoryError(f"--out {out_dir}: {file_above(out_dir)} is a file, so no folder can be made in it; "
                                 "choose another --out")
    if not create and not out_dir.is_dir():
        raise FileNotFoundError(f"{out_dir}: no such run directory to resume")
    while True:
        made = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        found = {path.name for path in out_dir.iterdir()}
        # forked DataLoader workers cannot hold it; a resume cannot go elsewhere (--out with --resume is refused)
        with held_lock(out_dir / RUN_LOCK, out_dir, "`elr-mri train`",
                       elsewhere=", or choose another --out" if create else "") as handle:
            if not _still_there(handle, out_dir / RUN_LOCK):
                continue  # a refused `train` removed the file between our open and our lock: lock the new one
            try:
                yield
            finally:  # refused before writing anything: the folder is left as it was found, without our lock file
                if RUN_LOCK not in found and {path.name for path in out_dir.iterdir()} == found | {RUN_LOCK}:
                    if made:  # removed while still locked, so no other `train` holds a lock on a removed file
                        shutil.rmtree(out_dir)
                    else:
                        (out_dir / RUN_LOCK).unlink()
            return




def _still_there(handle: IO[str], path: Path) -> bool:
    """Whether the open lock file is still the one at `path`."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def enclosing_run(path: Path) -> Path | None:
    """The run folder that `path`, a file or subfolder of a run (RUN/config.yaml, RUN/checkpoints/best.pt), lies in;
    None for any other path. Passed for the run itself, it was searched for checkpoints/best.pt inside it."""
    for parent in list(Path(path).parents)[:2]:
        if (parent / "config.yaml").is_file():
            return parent
    return None


def holds_a_run(folder: Path) -> bool:
    """Whether `folder` has a run's files beside its config.yaml (those written first, or at the end), unlike a
    folder where a user keeps configs."""
    written = [name for name in (*BEFORE_FIRST_CHECKPOINT, *END_PRODUCTS) if name != "config.yaml"]
    return (folder / "config.yaml").is_file() and any((folder / name).exists() for name in written)


def not_the_run_folder(path: Path) -> str:
    """Why `path`, passed for a run, is none, when it lies in one: '' otherwise."""
    run = enclosing_run(path)
    if run is None:
        return ""
    return f"{path}: is a {'folder' if Path(path).is_dir() else 'file'} of the run {run}; pass the run's folder, {run}"


def check_run_dir(out_dir: Path, resume: bool) -> None:
    """Before any data is read (an MRI cohort can take minutes): whether `out_dir` may take a new run, or be
    resumed. Without last.pt, only a folder where a run was killed before its first checkpoint was complete may
    (started over).

    Any other folder is refused untouched (`exclusive_run_dir` removes the lock file it made): a finished run
    whose checkpoints were deleted would be overwritten in part (its summary.json left beside the new run's
    metrics); a run that has written checkpoints but lost a later last.pt would start again from epoch 1 over its
    metrics and best weights; and a folder of the user's own files, even under a run's file names, would lose what
    a run's start removes or rewrites (temporary files, config.yaml, metrics.csv)."""
    last = out_dir / "checkpoints" / "last.pt"
    if last.exists():
        if not resume:
            raise FileExistsError(f"{out_dir} already holds a run; continue it with --resume "
                                  f"{shlex.quote(str(out_dir))} or choose another --out")
        return
    if not out_dir.is_dir():
        return  # a new run's folder, made when it is taken (a resume of none is refused when it is taken)
    if (out_dir / "summary.json").exists():
        raise FileExistsError(
            f"{last} is gone, so the finished run in {out_dir} cannot go on (its results stay); restore the checkpoint "
            "from a copy, or start a new run with another --out" if resume else
            f"{out_dir} holds a finished run (summary.json) whose checkpoints are gone; choose another --out, or move "
            "that run away to train it again there")
    best = out_dir / "checkpoints" / "best.pt"
    if best.exists() and not _stopped_writing_its_first_checkpoint(out_dir, best):
        raise FileExistsError(f"{last} is missing, but best.pt beside it shows the run in {out_dir} wrote checkpoints; "
                              "restore last.pt from a copy, or move the folder away to start that run over")
    logged = _seconds_logged_before_the_last_epoch(out_dir)
    if logged is not None:
        raise FileExistsError(f"{last} is missing, but {out_dir}/metrics.csv logs {logged[0]} epochs, {logged[1]:.0f} s "
                              "of them before the last, past train.checkpoint_seconds, so the run wrote checkpoints; "
                              "restore checkpoints/ from a copy, or move the folder away to start that run over")
    fix = ("nothing there to resume: start a new run with --config FILE --out NEW_FOLDER" if resume else
           "a new run needs a new or empty folder: move those files away, or choose another --out")
    _require_killed_before_first_checkpoint(out_dir, fix)


def _seconds_logged_before_the_last_epoch(out_dir: Path) -> tuple[int, float] | None:
    """(epochs logged, their seconds before the last) when those seconds reach the run's train.checkpoint_seconds:
    the checkpoint writer then wrote at an earlier epoch's end, so checkpoints were deleted since (a run killed while
    writing its first has logged at most one epoch past the time). None when nothing says so."""
    try:
        logged = pd.read_csv(out_dir / "metrics.csv")
        settings = yaml.safe_load((out_dir / "config.yaml").read_text()) or {}
        every = float((settings.get("train") or {}).get("checkpoint_seconds", 60.0))
        before_last = logged[["epoch_seconds", "eval_seconds"]].fillna(0).to_numpy()[:-1].sum()
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return None
    return (len(logged), float(before_last)) if len(logged) > 1 and before_last >= every else None


def _stopped_writing_its_first_checkpoint(out_dir: Path, best: Path) -> bool:
    """best.pt is written just before last.pt, after metrics.csv: a run killed between the two files of its first
    checkpoint left a best.pt written at its last logged epoch (a run that lost a later last.pt has logged epochs
    since). Its best epoch may be earlier: a better epoch waits in memory for the next checkpoint."""
    try:
        logged = pd.read_csv(out_dir / "metrics.csv")["epoch"]
        checkpoint = load_checkpoint(best, mmap=True)
        written_at = checkpoint.get("written_at_epoch", checkpoint.get("epoch"))  # best.pt files from before it
        return len(logged) > 0 and written_at == int(logged.iloc[-1])
    except (OSError, ValueError, KeyError):  # pandas' and the checkpoint's errors are ValueErrors
        return False


def _require_killed_before_first_checkpoint(out_dir: Path, fix: str) -> None:
    """Only what a run writes before its first checkpoint (and a best.pt `check_run_dir` accepted, with the eval-*/
    explain-* folders that scored it: a diverged run's, evaluated as its error line advises): its records
    alone (killed before the config), or with them a config.yaml that `elr-mri train` wrote. A run's config.yaml
    without the records is refused: the user's copy of one, which the new run would rewrite."""
    best = out_dir / "checkpoints" / "best.pt"
    leftovers = {*_run_temp_files(out_dir), *_run_temp_files(out_dir / "checkpoints"), best}
    scores = set(_scored_folders(out_dir)) if best.exists() else set()  # a run's only with what they scored
    others = sorted(path.name for path in out_dir.iterdir()
                    if path.name not in BEFORE_FIRST_CHECKPOINT and path not in leftovers | scores)
    if (out_dir / "checkpoints").is_dir():
        others += sorted(f"checkpoints/{path.name}" for path in (out_dir / "checkpoints").iterdir()
                         if path not in leftovers)
    if others:
        listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise FileExistsError(f"{out_dir} holds files that are not a run's ({listed}); {fix}")
    written = sorted(path.name for path in out_dir.iterdir() if path.name != RUN_LOCK and path not in leftovers)
    if set(written) <= set(RUN_RECORDS):  # killed before its config.yaml (`start_run_dir` writes it after these)
        return
    if not (_written_by_train(out_dir / "config.yaml") and (out_dir / "data_shape.json").is_file()):
        raise FileExistsError(f"{out_dir} holds {', '.join(written)} but not the config.yaml and data_shape.json that "
                              f"`elr-mri train` writes first, so not a run's; {fix}")


def _written_by_train(config_path: Path) -> bool:
    """config.yaml as `elr-mri train` writes it: the resolved settings and, in words, its selection rule."""
    try:
        return SELECTION_RULE_KEY in (yaml.safe_load(config_path.read_text()) or {})
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError):
        return False


def _run_temp_files(folder: Path) -> list[Path]:
    """What the run's atomic writes (`.tmp<pid>-<random>-<file name>`) left when it was killed; other `.tmp*` names (a
    user's own, folders) are not the run's to remove."""
    if not folder.is_dir():
        return []
    return [path for path in folder.glob(".tmp*") if path.is_file() and RUN_TEMP.fullmatch(path.name)]


def record_divergence(out_dir: Path, epoch: int, precision: str) -> None:
    """Leave word that the run diverged in `epoch` (from 1) under `precision`: the next `train --resume` starts again
    from the last checkpoint (or epoch 1) and, trained the same way, diverges there again, which it then says before
    the data is read rather than a start that reads as a killed run's."""
    atomic_write_json({"epoch": epoch, "precision": precision}, out_dir / DIVERGED)


def read_divergence(out_dir: Path) -> tuple[int, str] | None:
    """(epoch, precision) of `record_divergence`; None where the run did not diverge (or the record is unreadable:
    it only adds a note)."""
    try:
        record = json.loads((out_dir / DIVERGED).read_text())
        return int(record["epoch"]), str(record["precision"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_leftovers(out_dir: Path) -> None:
    """Before a run writes into a folder it was accepted into: a killed run's temporary files are never read (a
    ResNet checkpoint's is 170 MB), and without last.pt a best.pt is from a first checkpoint it did not finish (or
    a diverged run's), whose evaluations go with it. A divergence record was read by then: this call trains anew."""
    for folder in (out_dir, out_dir / "checkpoints"):
        for path in _run_temp_files(folder):
            path.unlink(missing_ok=True)
    (out_dir / DIVERGED).unlink(missing_ok=True)
    if not (out_dir / "checkpoints" / "last.pt").exists():
        (out_dir / "checkpoints" / "best.pt").unlink(missing_ok=True)
        _remove_scores(out_dir, _scored_folders(out_dir), "they scored checkpoints/best.pt, which training anew here "
                       "replaces; once it ends, run elr-mri evaluate (explain) again")


def start_run_dir(out_dir: Path, config_text: str, data: NoisyImageData, record_ages: bool) -> None:
    """Write the config and what a resume and evaluation compare with (`record_run_data`) in a folder
    `check_run_dir` accepted for a new run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    record_run_data(out_dir, data, record_ages)
    atomic_write_text(config_text, out_dir / "config.yaml")  # last: a config.yaml of train's comes with its records


def reopen_run_dir(out_dir: Path, config_text: str) -> None:
    """Before training continues: record the config it continues with (e.g. more epochs), so a later
    plain --resume goes on the same way, and drop the end products of an earlier finish: scripts read
    summary.json as "this run is done", which it is no longer; they are rewritten when the run ends.

    The evaluations and saliency maps of its checkpoints go too: they scored best.pt and last.pt as they
    were, and readers that skip what is written (scripts/mri_n1200.py) or gather every eval-*/ (the demo
    report) would otherwise present an earlier epoch's weights as the run's."""
    atomic_write_text(config_text, out_dir / "config.yaml")
    for name in END_PRODUCTS:
        (out_dir / name).unlink(missing_ok=True)
    _remove_scores(out_dir, _scored_folders(out_dir), "they scored checkpoints this run replaces as it continues; "
                   "once it ends, run elr-mri evaluate (explain) again")


def remove_scores_made_while_training(out_dir: Path) -> None:
    """When a run ends: an evaluation or saliency map made while it trained (its summary says run_finished false,
    or it has none: cut short) scored a best.pt or last.pt that may since have moved on, and the readers that skip
    what is written would present it as the run's result. Those made after an earlier end stay."""
    made_while_training = [folder for folder in _scored_folders(out_dir) if not _scored_a_finished_run(folder)]
    _remove_scores(out_dir, made_while_training, "they scored checkpoints of the run while it trained; run "
                   "elr-mri evaluate (explain) again for its final ones")


def _scored_folders(out_dir: Path) -> list[Path]:
    return sorted(path for pattern in CHECKPOINT_PRODUCTS for path in out_dir.glob(pattern) if path.is_dir())


def _scored_a_finished_run(folder: Path) -> bool:
    """Saliency folders written before they recorded run_finished count as finished: nothing says otherwise."""
    try:
        return json.loads((folder / "summary.json").read_text()).get("run_finished", True) is True
    except (OSError, ValueError):
        return False


def _remove_scores(out_dir: Path, folders: list[Path], why: str) -> None:
    """Remove `folders` and, with them, other runs' comparisons that put their scores in a table (`evaluate
    --compare-with`): those tables would go on showing this run's earlier weights beside the other run's."""
    from elr_mri.evaluation.compare import COMPARISON_FILES, remove_comparisons_citing

    comparisons = [str(table) for folder in folders for table in remove_comparisons_citing(folder)]
    for folder in folders:
        shutil.rmtree(folder)
    if folders:
        tables = (f"; and {' and '.join(COMPARISON_FILES)} in {', '.join(comparisons)}, which compared them (run that "
                  "elr-mri evaluate --compare-with again)" if comparisons else "")
        print(f"{out_dir}: removed {', '.join(path.name for path in folders)} ({why}){tables}", file=sys.stderr)
