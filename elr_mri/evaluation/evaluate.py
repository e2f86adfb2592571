"""`elr-mri evaluate`: score a run (finished, or from its checkpoint so far) on its test split or on an independent
holdout cohort.

The run directory says everything needed: the resolved config, the data shape, the selected
checkpoint and, for MRI runs, every participant the run saw (splits.csv), so a holdout cohort
that shares a participant with training is refused (an explicit config flag overrides, and the
report says so; `scored_scans` checks the scans). Outputs go to `RUN_DIR/eval-<name>/`
(`eval-<name>-last/` for the last checkpoint, so scoring it does not overwrite the selected one's): metrics
with 95% intervals from a bootstrap over participants, per-scan predictions, ROC curves and confusion matrices
(`evaluation_folder` names that folder and writes them).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from elr_mri.config import SELECTION_RULE_KEY, RunConfig, evaluation_batch_size, load_run_config
from elr_mri.data.images import LabelledDataset
from elr_mri.engine.checkpoint import CheckpointError, load_checkpoint
from elr_mri.engine.execution import (ExecutionPlan, limit_cpu_threads, precision_note, process_settings_kept,
                                     resolve_device)
from elr_mri.engine.methods import Method, build_method
from elr_mri.engine.run_dir import not_the_run_folder
from elr_mri.engine.run_records import read_data_shape
from elr_mri.engine.selection import SELECTION_RULES, selection_rule
from elr_mri.evaluation import N_BOOT
from elr_mri.evaluation.evaluation_folder import (MANIFEST_ROWS_KEY, WARNINGS_KEY, evaluation_dir,
                                                 manifest_rows_fingerprint, require_own_folder, scored_fingerprint,
                                                 scored_source, write_evaluation)
from elr_mri.evaluation.metrics import bootstrap_metrics, evaluate_predictions
from elr_mri.evaluation.metrics_report import MetricsReport
from elr_mri.evaluation.prediction_checks import non_finite_rows
from elr_mri.evaluation.scored_scans import check_test_split, holdout_warnings, load_run_holdout
from elr_mri.models import uses_age

if TYPE_CHECKING:  # MONAI's import is left to the MRI paths
    from elr_mri.data.mri import MRIScans

__all__ = ["LoadedRun", "load_run", "evaluate_run", "refuse_if_run_moved_on", "evaluation_set", "predict"]


CHECKPOINTS = ("best", "last")  # the weights a run folder keeps, checkpoints/<name>.pt


@dataclass
class LoadedRun:
    """A run directory's config, data shape (data_shape.json) and method with one checkpoint's weights."""

    cfg: RunConfig
    shape: dict[str, Any]
    method: Method
    epoch: int  # the epoch the checkpoint's weights are from
    finished: bool  # summary.json exists: training reached its configured length
    run_state: tuple[int, int] | None  # `_run_state` when loaded: `refuse_if_run_moved_on` compares it after writing


def load_run(run_dir: Path, checkpoint: str = "best", *, note_precision: bool = True) -> LoadedRun:
    """The run in `run_dir` with the weights of checkpoints/<checkpoint>.pt ("best" or "last"). `note_precision`: False
    where the command has said it already (`train` scoring its holdout after the epochs it printed the note for)."""
    run_dir = Path(run_dir)
    if checkpoint not in CHECKPOINTS:  # else "not found: is RUN an `elr-mri train` run directory?" blamed the folder
        raise ValueError(f"checkpoint={checkpoint!r}: a run keeps 'best' (the epoch its selection rule chose) and "
                         "'last' (its last epoch); pass one of them")
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.exists():
        raise FileNotFoundError(not_the_run_folder(run_dir) or _no_checkpoint(run_dir, path))
    run_state = _run_state(run_dir)  # before reading the weights: a run that moves on from here shows
    cfg = load_run_config(run_dir)
    cfg.train.compile = False  # one pass of inference: compiling would cost more than it saves
    shape = read_data_shape(run_dir)
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        print(f"{run_dir}: trained with train.device cuda; no CUDA device is visible here, so it is scored on the CPU",
              file=sys.stderr)
        cfg.train.device = "cpu"
    device = resolve_device(cfg.train.device)
    for note in precision_note(cfg.train.precision, device, run_dir / "config.yaml") if note_precision else ():
        print(note, file=sys.stderr)  # as slow as training there
    plan = ExecutionPlan.from_config(cfg.train, device, volumetric=len(shape["input_shape"]) == 4)
    method = build_method(cfg, tuple(shape["input_shape"]), shape["num_classes"], shape["train_examples"], plan)
    epoch = _load_weights(method, path, run_dir / "config.yaml")
    _refuse_non_finite_weights(method, path, checkpoint)
    for net in method.networks():
        net.eval()  # built for training, dropout on: a network called directly (a notebook's) varied call to call
    return LoadedRun(cfg, shape, method, epoch, (run_dir / "summary.json").exists(), run_state)


def _no_checkpoint(run_dir: Path, path: Path) -> str:
    """Why `path` is missing, in one line: a run (its config.yaml there) still before its first checkpoint, which
    evaluate then scores as any unfinished run, was asked whether it was "a finished run directory"."""
    if not run_dir.exists():  # a mistyped --run: the checkpoint's path sent a reader into a folder that is not there
        return f"{run_dir}: no such folder; pass the folder `elr-mri train` wrote the run to (its --out)"
    if not (run_dir / "config.yaml").is_file():
        return f"{path} not found: is {run_dir} an `elr-mri train` run directory (its --out)?"
    return (f"{path} not found: {run_dir} has written no {path.stem} checkpoint yet (a run writes its first at the end "
            "of the first epoch that ends train.checkpoint_seconds after its start, or of its last; one stopped "
            "before then has none): score it once it has one")


def _load_weights(method: Method, path: Path, config: Path) -> int:
    """The checkpoint's weights into `method`, and their epoch. A shared run's checkpoint may be another program's
    (a bare `model.state_dict()`, the official ELR code's) or another run's: torch said so as a KeyError or a
    traceback of every tensor's size; here one line names the file and what to restore."""
    saved = load_checkpoint(path)
    if not {"method", "epoch"} <= saved.keys():
        held = ", ".join(map(str, list(saved)[:3]))
        raise CheckpointError(f"{path}: not a checkpoint of `elr-mri train` (it holds {held or 'nothing'}, not the "
                              "method's state and its epoch; a bare model state dict or another program's file?); "
                              "restore the run's own from a copy (to start a run from other weights, set "
                              "model.pretrained_checkpoint)")
    try:
        method.load_state_dict(saved["method"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        lines = [line.strip().rstrip(".") for line in str(err).splitlines() if line.strip()]
        first = (lines[1:] or lines or [type(err).__name__])[0]  # torch's heading names only the module's class
        raise CheckpointError(f"{path}: its weights do not fit the model {config} describes ({first}); edited since "
                              f"the run trained, or {path.name} copied from another run? restore either from a "
                              "copy") from None
    return int(saved["epoch"])


def _refuse_non_finite_weights(method: Method, path: Path, checkpoint: str) -> None:
    """Weights or BatchNorm statistics that are not numbers (a run that diverged before training refused to write
    them, or a file of the user's own) would be scored: an inf running variance silently zeroes its channel, and NaN
    weights were refused only at the probabilities, as an fp16 overflow. One line naming the first such tensor."""
    nets = method.networks()
    for k, net in enumerate(nets):
        for name, tensor in (*net.named_parameters(), *net.named_buffers()):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                where = name if len(nets) == 1 else f"network {k + 1}'s {name}"
                other = "last" if checkpoint == "best" else "best"
                raise ValueError(f"{path}: {where} holds values that are not numbers (NaN or inf), so it was not "
                                 f"used; use the run's {other}.pt if it is whole (--checkpoint {other}), or train the "
                                 "run again with a lower optim.lr (the weights diverged)")


def _run_state(run_dir: Path) -> tuple[int, int] | None:
    """The run's summary.json as a file (None: none), which changes when training cleans up its eval and explain
    folders: it comes, renamed into place, when a run ends, and goes when a finished run is extended. A new checkpoint
    of a run still training is not such a change: that folder is removed when the run ends."""
    try:
        summary = (run_dir / "summary.json").stat()
    except FileNotFoundError:
        return None
    return summary.st_ino, summary.st_mtime_ns


def refuse_if_run_moved_on(run: LoadedRun, run_dir: Path, out: Path) -> None:
    """Remove `out` and stop when the run finished or was extended while `out` was being made: the run's own
    clean-up of such folders then may have come before `out` was written, which would stay, describing weights and
    a state the run no longer has. A ValueError: one line, exit 2."""
    if _run_state(run_dir) == run.run_state:
        return
    shutil.rmtree(out, ignore_errors=True)
    raise ValueError(f"{run_dir}: training finished or was extended while {out.name} was being made, so it was "
                     "removed; run the command again")


@torch.no_grad()
def predict(method: Method, dataset: Dataset, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(given labels, class probabilities) for every item of `dataset`, in order."""
    labels, probs = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        probs.append(method.predict_proba(batch).cpu().numpy())
        labels.append(batch["label"].numpy())
    return np.concatenate(labels), np.concatenate(probs)


@process_settings_kept()  # a notebook keeps its own threads and generators
def evaluate_run(run_dir: Path, manifest: Path | None = None, checkpoint: str = "best",
                 n_boot: int = N_BOOT, test_set: str = "test", *,
                 note_precision: bool = True) -> dict[str, MetricsReport]:
    """Evaluate `run_dir` on `manifest` (an independent cohort) or, without one, on its own test split
    (`test_set`: "test", or a further test set of its data such as WebVision's "ilsvrc12"); `note_precision` as
    `load_run`'s."""
    run_dir = Path(run_dir)
    out = evaluation_dir(run_dir, manifest, checkpoint, test_set)
    require_own_folder(out, manifest)
    limit_cpu_threads(0)  # torch's default threads, no more than the usable cores (a container's quota)
    run = load_run(run_dir, checkpoint, note_precision=note_precision)
    cfg, shape = run.cfg, run.shape
    dataset, _, notes, warnings = evaluation_set(run_dir, cfg, manifest, test_set)
    labels, probs = predict(run.method, dataset, evaluation_batch_size(cfg))
    frame = getattr(dataset, "frame", None)
    _refuse_non_finite(probs, frame, run_dir, checkpoint)
    classes = shape["class_names"]
    if frame is not None:
        reports = evaluate_predictions(labels, probs, frame["participant_id"].to_numpy(), classes, n_boot=n_boot)
    else:  # images: each is its own subject, so a participant level would repeat the image level
        images = np.arange(len(labels)).astype(str)
        reports = {"image": bootstrap_metrics(labels, probs, images, classes, n_boot, level="image")}
    rule = selection_rule(cfg) if checkpoint == "best" else SELECTION_RULES["last"]
    write_evaluation(out, reports, labels, probs, _row_ids(dataset, len(labels)), classes, notes,
                     {"manifest": scored_source(manifest), "manifest_sha256": scored_fingerprint(manifest),
                      MANIFEST_ROWS_KEY: manifest_rows_fingerprint(manifest), "checkpoint": checkpoint,
                      "checkpoint_epoch": run.epoch, "run_finished": run.finished,
                      SELECTION_RULE_KEY: rule, WARNINGS_KEY: warnings})
    refuse_if_run_moved_on(run, run_dir, out)
    _note_partial_balanced_accuracy(out, next(iter(reports.values())))
    return reports


def _note_partial_balanced_accuracy(out: Path, report: MetricsReport) -> None:
    """Say so when the set lacks a class of the model: its balanced accuracy is then the mean recall over fewer
    classes, with a higher chance level, and must not be compared unwittingly with one over all of them."""
    from elr_mri.plots import LEGIBLE_CLASSES

    present, every = report.balanced_accuracy_classes, report.class_names
    if not present or len(present) == len(every):
        return
    if len(present) == 1:
        alone = f"every example here is labelled {present[0]}"
        print(f"note: {out}: {one_class_balanced_accuracy(present[0], alone, 'confusion.csv')}", file=sys.stderr)
        return
    absent = [name for name in every if name not in present]
    legible = len(every) <= LEGIBLE_CLASSES  # WebVision's 50 would make a line of names
    over = ", ".join(present) if legible else f"{len(present)} of the classes"
    lacking = " or ".join(absent) if legible else f"one of the other {len(absent)}"
    print(f"note: {out}: balanced_accuracy is the mean recall over {over} only (no example here is labelled "
          f"{lacking}), so chance is {100 / len(present):.1f}, not the {100 / len(every):.1f} of all {len(every)} "
          "classes; compare it only with figures over the same classes (balanced_accuracy_classes in summary.json)",
          file=sys.stderr)


def one_class_balanced_accuracy(name: str, alone: str, recall_in: str | None) -> str:
    """On a set of one class "chance is 100.0" was true (calling every scan that class scores it) and of no use: the
    figure is that class's recall, which says nothing of telling classes apart. One wording for this note and the
    report's tables: `alone` says why the set is of `name` only, `recall_in` names the file holding that recall
    elsewhere (None where no file holds it, as for recall against the true diagnoses)."""
    shown = f" (the rate given {name}, predicted {name} in {recall_in})" if recall_in else ""
    return (f"balanced_accuracy is the recall of {name} alone ({alone}), so it equals accuracy: the share of {name} "
            f"scans called {name}, not how well the classes are told apart (calling every scan {name} scores 100.0); "
            f"compare it only with {name}'s recall elsewhere{shown}, not with a balanced accuracy over several classes")


def _refuse_non_finite(probs: np.ndarray, frame: pd.DataFrame | None, run_dir: Path, checkpoint: str) -> None:
    """Before anything is scored or written: one line naming how many items and the first, and how to score the run
    in fp32 (an fp16 forward pass is where a finite network overflows)."""
    broken = non_finite_rows(probs)
    if not broken.size:
        return
    first = (f"participant {frame['participant_id'].iloc[broken[0]]}, session {frame['session_id'].iloc[broken[0]]}"
             if frame is not None else f"image {broken[0]}")
    raise ValueError(f"{run_dir}: {checkpoint}.pt gives class probabilities that are not numbers (NaN or inf) for "
                     f"{broken.size} of {len(probs)} {'scans' if frame is not None else 'images'} (first: {first}), "
                     f"so nothing was scored; where it ran in fp16, score it in fp32: set train.precision: fp32 in "
                     f"{run_dir / 'config.yaml'}, which evaluate reads")


def evaluation_set(run_dir: Path, cfg: RunConfig, manifest: Path | None,
                   test_set: str = "test") -> tuple[LabelledDataset, str, list[str], list[str]]:
    """(dataset, name, participant-overlap notes, warnings given about the scans (a holdout's QC flags and
    preprocessing among them), which `evaluate` keeps in its summary.json for readers of the results such as the demo
    report): the holdout `manifest`, or the run's own test set `test_set`.

    MRI scans are read without a cache: each is predicted once, and a memory cache would first load
    every training and validation volume of the run to build datasets that are never read. Neither
    the holdout manifest the run checked at its start nor its validation label panel is read: scoring
    needs neither, and either may have moved since.
    """
    data = cfg.data
    if cfg.data.name == "mri":
        data = replace(data, mri=replace(data.mri, cache="none", holdout_manifest=None, val_labels=None))
    if manifest is None:
        from elr_mri.data import build_data

        built = build_data(data, require_age=uses_age(cfg))
        if test_set != "test":
            if test_set not in built.extra_tests:
                sets = ", ".join(["test", *built.extra_tests])
                where = f"{cfg.data.name}, {cfg.data.root}" if cfg.data.root else cfg.data.name
                raise ValueError(f"{run_dir}: its data ({where}) has no test set "
                                 f"{test_set!r}; it has: {sets}")
            return built.extra_tests[test_set], test_set, [], []
        if built.test is None:
            fix = ("pass --manifest HOLDOUT.csv" if cfg.data.name == "mri" else
                   f"its data.root ({cfg.data.root}) holds no test images; put them there (e.g. a test/ folder)")
            raise ValueError(f"{run_dir}: the run has no test split to score; {fix}")
        if cfg.data.name == "mri":
            # an MRI run's config names its manifest (`check_config`), and its test split holds scans
            check_test_split(run_dir, cast(str, cfg.data.mri.manifest), cast("MRIScans", built.test),
                             built.volume_grid)
        return built.test, "test", [], []
    if cfg.data.name != "mri":
        raise ValueError(f"--manifest evaluates MRI runs; {run_dir} trained on {cfg.data.name}")
    from elr_mri.data.mri import holdout_dataset

    holdout = load_run_holdout(run_dir, data, manifest, require_age=uses_age(cfg))
    warnings = holdout_warnings(run_dir, str(manifest), holdout.frame, uses_age(cfg))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return holdout_dataset(holdout.frame, data), Path(manifest).stem, holdout.notes, [*holdout.warnings, *warnings]


def _row_ids(dataset: Dataset, size: int) -> pd.DataFrame:
    """What names each scored item in predictions.csv: participant and session for scans; for images their
    position in the test set and, read from files (Clothing1M, WebVision), the file."""
    frame = getattr(dataset, "frame", None)
    if frame is not None:
        return frame[["participant_id", "session_id"]]
    ids = pd.DataFrame({"index": np.arange(size)})
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        ids["path"] = paths
    return ids
