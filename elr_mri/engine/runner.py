"""The training loop shared by every run: data, method, epochs, evaluation, checkpoints, reports.

A run directory holds everything needed to read or continue a run: the resolved `config.yaml`, the record of
what it trained on (`data_shape.json`; for MRI runs `splits.csv` and `split_balance.csv`: `run_records`),
`metrics.csv` (and `tensorboard/`), `checkpoints/last.pt` and `best.pt`, `summary.json`, the suspected-mislabel table
and the memorization plot. `--resume` reloads `last.pt` (models, EMA copies, optimizers, loss
targets, RNG state: `resuming`) and finishes with the same metrics an uninterrupted run would have.

The loop's other parts live beside it: each epoch's validation and test scores in `split_scores`, the check that
stops a diverged run and what it suggests in `divergence`.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from elr_mri.config import SELECTION_RULE_KEY, ConfigError, RunConfig, config_to_dict
from elr_mri.data import build_data
from elr_mri.distributed import (DistContext, barrier, gather_objects, gather_rows, init_distributed, leave_distributed,
                                 mean_over_ranks, part_rank_streams, scaled_to_global_batch, share_rank0_buffers)
from elr_mri.data.device_blur import blurs_on_device
from elr_mri.data.images import NoisyImageData
from elr_mri.data.noise import require_cifar10_classes
from elr_mri.atomic_files import atomic_write_json, atomic_write_text
from elr_mri.tensor_files import atomic_save
from elr_mri.engine.checkpoint import capture_rng, host_copy, load_checkpoint
from elr_mri.engine.diagnostics import collapse_warnings
from elr_mri.engine.divergence import diverging_again_note, refuse_divergence
from elr_mri.engine.epoch_lines import EpochLines, draws_bars
from elr_mri.engine.execution import (ExecutionPlan, busy_cores_note, limit_cpu_threads, precision_note,
                                     process_settings_kept, resolve_device)
from elr_mri.engine.feeding import BatchFeeder, serves_from_device
from elr_mri.engine.methods import Method, build_method
from elr_mri.engine.run_dir import (check_run_dir, exclusive_run_dir, read_divergence, record_divergence,
                                    remove_leftovers, remove_scores_made_while_training, reopen_run_dir, start_run_dir)
from elr_mri.engine.resuming import refuse_shortening, restore_last_checkpoint, starting_over_note, thread_count_note
from elr_mri.engine.run_records import record_run_data, require_same_data
from elr_mri.engine.start import finished_at
from elr_mri.engine.schedule import lr_at
from elr_mri.engine.selection import selection_rule  # in __all__: imported from here before selection.py
from elr_mri.engine.split_scores import (SplitPredictions, SplitScore, evaluate_split, predict_split,  # in __all__:
                                         scores_on_test_sets)  # imported from here before split_scores.py
from elr_mri.engine.tracking import PredictionTracker, memorization_fractions
from elr_mri.losses import sigmoid_rampup
from elr_mri.mislabels import mislabel_precision_recall, suspected_mislabels
from elr_mri.models import lacks_the_papers_pretrained_weights, uses_age
from elr_mri.stopping import holding_ctrl_c, interrupted, stop_if_terminated, terminated

if TYPE_CHECKING:  # annotations only: TensorBoard is imported when a run logs to it
    from elr_mri.engine.scalar_log import ScalarLog

__all__ = ["train_checked", "cuda_graphs_tested", "evaluate_split", "predict_split", "SplitPredictions", "SplitScore",
           "selection_rule", "RunState", "CheckpointWriter"]


@process_settings_kept()  # the threads and seed it sets are the run's, not the calling notebook's
def train_checked(cfg: RunConfig, out_dir: Path, resume: bool, notes: Sequence[str]) -> dict[str, Any]:
    """`elr_mri.engine.start.train` once its refusals passed (`cfg`'s paths absolute): the run itself."""
    stop_if_terminated()  # one that came while torch was imported (seconds): before any data is read
    state = RunState()  # its clock starts here: data loading counts in the run's wall time
    _seed_everything(cfg.seed)
    limit_cpu_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    notes = [*notes, *busy_cores_note(cfg.train.threads, device)]
    dist = init_distributed(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    notes = [*notes, *precision_note(cfg.train.precision, device)]
    if resume and not os.access(out_dir, os.W_OK) and finished_at(out_dir, cfg.train.epochs):
        leave_distributed()  # read-only storage: no lock can be taken there, and nothing would be written
        return _already_finished(out_dir, dist)
    with ExitStack() as held:
        _main_rank_does(dist, lambda: held.enter_context(exclusive_run_dir(out_dir, create=not resume)))
        if resume and finished_at(out_dir, cfg.train.epochs):  # read under the lock: not while an extension runs
            leave_distributed()
            return _already_finished(out_dir, dist)
        return _train_into(out_dir, cfg, resume, state, device, dist, notes)


def _already_finished(out_dir: Path, dist: DistContext) -> dict[str, Any]:
    """A plain --resume of a finished run: its summary as it was. Finishing it again would add this call's time to
    its wall_seconds and record this machine as the one it trained on."""
    if not dist.is_main:
        return {}
    print(f"{out_dir}: finished at its train.epochs (summary.json), nothing to train; to continue it pass a larger "
          "--set train.epochs=N", file=sys.stderr)
    return json.loads((out_dir / "summary.json").read_text())


def _main_rank_does(dist: DistContext, action: Callable[[], Any]) -> None:
    """`action` (taking or starting the run folder) on rank 0 alone, then every rank learns whether it was refused:
    the others stop quietly beside rank 0's one line, rather than at their first collective with a traceback of
    the connection rank 0 closed."""
    refused: Exception | None = None
    if dist.is_main:
        try:
            action()
        except Exception as err:  # re-raised below, once the other ranks know
            refused = err
    went_ahead = gather_objects(refused is None)[0]
    if refused is not None:
        raise refused
    if not went_ahead:
        raise SystemExit(2)  # rank 0 says why


def cuda_graphs_tested(cfg: RunConfig, data: NoisyImageData, dist: DistContext) -> bool:
    """Whether the run is the kind CUDA graphs were tested and timed on, where `train.compile_mode: auto` takes
    them: one trained network (ELR+'s two, in one tree of graphs, have not run on a GPU yet; the other losses run
    outside the graphed network, as ELR's does without `compile_step`) in one process (not yet under torchrun;
    runs one after another in a process each compile afresh), on device-resident image batches (the small-image
    step whose host time was the limit; a step fed from files or on volumes waits on its loader or on the GPU's
    arithmetic instead)."""
    return cfg.loss.name != "elr_plus" and not dist.enabled and serves_from_device(data, cfg)


def _train_into(out_dir: Path, cfg: RunConfig, resume: bool, state: RunState, device: torch.device,
                dist: DistContext, notes: Sequence[str]) -> dict[str, Any]:
    """The run itself, once `train` holds its directory."""
    _check_before_the_data(out_dir, cfg, resume, device, dist)
    blur_on_device = blurs_on_device(cfg.data, device)
    show_progress = draws_bars(cfg.train.progress) and dist.is_main
    data = build_data(cfg.data, require_age=uses_age(cfg), blur_on_device=blur_on_device, progress=show_progress)
    _require_validation(data, cfg)
    plan = _execution_plan(cfg, device, data, dist)
    method = build_method(cfg, data.input_shape, data.num_classes, len(data.train), plan, dist)
    feeder = BatchFeeder(data, cfg, dist, device, channels_last=plan.channels_last, blur_on_device=blur_on_device,
                         compile_assembly=plan.compiled_function if plan.compiles_step else None)
    tracker = PredictionTracker(len(data.train), data.num_classes, device)
    run = RunContext(out_dir, cfg, data, method, tracker, state, plan, dist)
    steps_per_epoch = feeder.steps_per_epoch()
    notes = [*notes, *feeder.subset_note(), *_unreached_lam_start_note(cfg, steps_per_epoch),
             *_unfinished_ramp_notes(cfg, steps_per_epoch)]

    if resume:
        _pick_up_run(run, notes)
    else:
        _start_run(out_dir, cfg, data, dist, notes)
    _train_epochs(run, feeder, show_progress)
    if not dist.is_main:
        return {}
    return _finish(run)


def _train_epochs(run: RunContext, feeder: BatchFeeder, show_progress: bool) -> None:
    """The epochs from the run's state to train.epochs, each logged to metrics.csv and checkpointed; then the
    method's end of training, and the other processes of a torchrun job let go."""
    out_dir, cfg, method, tracker, state, plan, dist = (run.out_dir, run.cfg, run.method, run.tracker, run.state,
                                                        run.plan, run.dist)
    writer = _tensorboard(out_dir, state.epoch) if cfg.train.tensorboard and dist.is_main else None
    checkpoints = CheckpointWriter(out_dir, cfg.train.checkpoint_seconds, config_to_dict(cfg))
    lines = EpochLines(cfg.train.epochs, state.epoch, cfg.train.select) if cfg.train.progress and dist.is_main else None

    epochs = range(state.epoch, cfg.train.epochs)
    for epoch in tqdm(epochs, desc="epochs", disable=not show_progress, initial=state.epoch,
                      total=cfg.train.epochs):
        lr = lr_at(epoch, cfg)
        method.set_lr(lr)
        epoch_started = time.perf_counter()
        tracker.new_epoch()
        batches = feeder.train_epoch(epoch, method.batch_streams, method.streams_in_turn)
        train_loss = _train_epoch(method, batches, epoch, tracker, show_progress)
        refuse_divergence(method, train_loss, epoch, cfg, out_dir, plan,
                          keep_best=lambda: _record_divergence(out_dir, epoch + 1, plan, checkpoints, state)
                          if dist.is_main else 0)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                               "epoch_seconds": round(time.perf_counter() - epoch_started, 3),
                               **_epoch_scores(run, feeder)}
        is_best = state.record_epoch(row, cfg.train.select)
        # each rank's generators: seeded apart (part_rank_streams), and uneven slices draw unequal amounts
        rng_by_rank = gather_objects(capture_rng()) if dist.enabled else None
        if dist.is_main:
            _write_metrics(out_dir, state.rows, writer)
            checkpoints.after_epoch(method, tracker, state, is_best, final=state.epoch == cfg.train.epochs,
                                    rng_by_rank=rng_by_rank)
        if lines is not None:
            lines.say(row, is_best)
        barrier()  # nobody runs ahead of the checkpoint a resume would start from
    method.end_training()
    leave_distributed()  # the rest is rank 0's alone
    if writer is not None:
        writer.close()


def _execution_plan(cfg: RunConfig, device: torch.device, data: NoisyImageData, dist: DistContext) -> ExecutionPlan:
    """How the run's networks run (precision, layout, compilation), with torch's backends set for it."""
    plan = ExecutionPlan.from_config(cfg.train, device, volumetric=len(data.input_shape) == 4,
                                     graphs_tested=cuda_graphs_tested(cfg, data, dist))
    plan.configure_backends()
    if plan.compile:  # each run compiles as in a fresh process, the way its CUDA graphs were tested: not on top of
        torch.compiler.reset()  # an earlier run's graphs in this process (reproduce_paper_table.py, --jobs 1)
    return plan


def _check_before_the_data(out_dir: Path, cfg: RunConfig, resume: bool, device: torch.device,
                           dist: DistContext) -> None:
    """The folder's refusals and a resume's notes, before the data, which an MRI cohort takes minutes to load: a
    refusal comes at once, and a resume that starts over or will diverge again says so before the wait."""
    _main_rank_does(dist, lambda: check_run_dir(out_dir, resume))
    if resume:
        _main_rank_does(dist, lambda: refuse_shortening(out_dir, cfg.train.epochs))
    if dist.is_main and resume:  # (a new run's folder: start_run_dir, once the data is read)
        diverged = read_divergence(out_dir)  # before remove_leftovers, which removes its record
        remove_leftovers(out_dir)
        if not (out_dir / "checkpoints" / "last.pt").exists():
            print(starting_over_note(out_dir, diverged), file=sys.stderr)
        for note in diverging_again_note(out_dir, cfg, device, diverged):
            print(note, file=sys.stderr)


def _pick_up_run(run: RunContext, notes: Sequence[str]) -> None:
    """A resume, once its data is read: last.pt restored into the run's method, tracker and state, and the folder
    reopened for the epochs left, or brought back to the checkpoint's length where none is left."""
    out_dir, cfg, state, is_main = run.out_dir, run.cfg, run.state, run.dist.is_main
    require_same_data(out_dir, run.data)
    restore_last_checkpoint(out_dir, cfg, run.method, run.tracker, state, run.dist)
    if is_main and state.epoch < cfg.train.epochs:
        reopen_run_dir(out_dir, _config_text(cfg))
        for note in [*notes, *thread_count_note(state, run.plan.device)]:  # as a new run's: a precision switched to
            print(note, file=sys.stderr)  # here, a --set that changes nothing
    elif is_main:
        # nothing left to train, perhaps after an extension was stopped before its next checkpoint: the run ends
        # at the checkpoint's length, so its config and metrics say that length, not the stopped extension's
        atomic_write_text(_config_text(cfg), out_dir / "config.yaml")
        _write_metrics(out_dir, state.rows, None)
    if is_main and state.epoch == 0:  # killed before the first checkpoint, perhaps before these records
        record_run_data(out_dir, run.data, record_ages=uses_age(cfg))


def _start_run(out_dir: Path, cfg: RunConfig, data: NoisyImageData, dist: DistContext, notes: Sequence[str]) -> None:
    """A new run, once its data is read: its folder written (config, data records) and its notes said."""
    part_rank_streams(cfg.seed, 0, dist)
    require_cifar10_classes(cfg.data.noise, data.class_names)
    _main_rank_does(dist, lambda: start_run_dir(out_dir, _config_text(cfg), data, record_ages=uses_age(cfg)))
    for note in notes if dist.is_main else ():
        print(note, file=sys.stderr)
    if dist.is_main and lacks_the_papers_pretrained_weights(cfg):
        print(f"note: {cfg.model.name} starts from random weights (model.pretrained_checkpoint is unset); the "
              "paper starts Clothing1M from ImageNet weights: --set model.pretrained_checkpoint=PATH",
              file=sys.stderr)


def _epoch_scores(run: RunContext, feeder: BatchFeeder) -> dict[str, Any]:
    """An epoch's metrics.csv columns after its training loss: accuracy on the given labels of the training examples
    it drew, the validation and test scores and the seconds they took, and, where the clean labels are known, the
    memorisation shares."""
    method, tracker, data = run.method, run.tracker, run.data
    pred, seen = tracker.predictions(), tracker.seen_this_epoch()
    row: dict[str, Any] = {"train_acc_given": float((pred == data.train_labels)[seen].mean()) if seen.any()
                           else float("nan")}
    evaluation_started = time.perf_counter()
    share_rank0_buffers(method.networks())  # each rank scores a share of each split, all with rank 0's networks
    val = evaluate_split(method, feeder.evaluation("val"))
    row["val_acc"], row["val_balanced_acc"] = val.accuracy, val.balanced_accuracy
    row["val_top_class_share"], row["val_label_top_share"] = val.top_class_share, val.label_top_share
    row["val_top_class"] = val.top_class
    row.update(scores_on_test_sets(method, feeder, data))
    # what a fast GPU epoch spends besides training (the rest of wall_seconds: start-up, checkpoints)
    row["eval_seconds"] = round(time.perf_counter() - evaluation_started, 3)
    if data.train_clean_labels is not None:  # benchmarks and simulated cohorts know the training examples' truth
        row.update(memorization_fractions(pred, data.train_labels, data.train_clean_labels, seen))
    return row


def _config_text(cfg: RunConfig) -> str:
    """The run's config.yaml: the resolved settings and, in words, how its kept checkpoint is chosen."""
    resolved = config_to_dict(cfg)
    resolved[SELECTION_RULE_KEY] = selection_rule(cfg)
    return yaml.safe_dump(resolved, sort_keys=False)


def _require_validation(data: NoisyImageData, cfg: RunConfig) -> None:
    """A selection rule needs validation examples: without any, no epoch is ever best and no best.pt is written."""
    if cfg.train.select != "last" and (data.val is None or len(data.val) == 0):
        raise ConfigError(
            f"the validation split is empty (data.val_fraction = {cfg.data.val_fraction}, {len(data.train)} training "
            f"examples), so train.select = {cfg.train.select} has no epoch to pick: raise data.val_fraction, add "
            "data, or set train.select=last")


@dataclass(frozen=True)
class RunContext:
    """What the epoch loop, a resume's pick-up and the run's end all act on, built once the data is read: passed as
    one, since these went from function to function together."""

    out_dir: Path
    cfg: RunConfig
    data: NoisyImageData
    method: Method
    tracker: PredictionTracker
    state: RunState  # the counters the epochs advance (the context itself is not reassigned)
    plan: ExecutionPlan
    dist: DistContext


class RunState:
    """Counters that a checkpoint carries besides the method: where we are and what was best."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.epoch = 0
        self.best_val = float("-inf")
        self.best_epoch = 0
        self.seconds_before = 0.0  # wall time of earlier calls (a resumed run)
        self.threads_before: int | None = None  # torch's CPU threads when that run's last.pt was written
        self.rows: list[dict[str, Any]] = []

    def record_epoch(self, row: dict[str, Any], select: str) -> bool:
        """Count the finished epoch whose metrics.csv row is `row`, and whether it is the best so far by `select`
        (a metrics column, or `last`: each epoch is)."""
        self.rows.append(row)
        is_best = select == "last" or _improves(row[select], self.best_val)
        if is_best:
            self.best_val, self.best_epoch = row.get(select, float("nan")), row["epoch"]
        self.epoch = row["epoch"]
        return is_best


def _train_epoch(method: Method, batches: Iterable[dict[str, torch.Tensor]], epoch: int,
                 tracker: PredictionTracker, show_progress: bool) -> float:
    """The epoch's mean training loss over the global batches: under torchrun each rank's slice mean is weighted
    by its share of the global batch and the ranks' sums averaged once, so metrics.csv does not log rank 0's
    slice alone."""
    total, steps = None, 0
    for batch in tqdm(batches, desc=f"epoch {epoch + 1}", leave=False, disable=not show_progress):
        stop_if_terminated()  # a SIGTERM (`elr-mri train`) stops the run here, between steps
        loss, logits = method.train_step(batch)
        if logits is not None:  # ELR+ in epoch turns: network 1's half is not tracked
            index = batch["index"].to(logits.device, non_blocking=True)
            tracker.record(*gather_rows(index, logits, global_size=batch.get("global_batch_size")))
        loss = scaled_to_global_batch(loss, len(batch["index"]), batch.get("global_batch_size"))
        total = loss if total is None else total + loss  # summed on the device, read once an epoch
        steps += 1
    return float(mean_over_ranks(total)) / steps if total is not None else float("nan")


def _record_divergence(out_dir: Path, epoch: int, plan: ExecutionPlan, checkpoints: CheckpointWriter,
                       state: RunState) -> int:
    """The main rank's part of stopping a diverged run: the record a resume reads (`record_divergence`), and the
    selected epoch still in memory written (`CheckpointWriter.keep_best`, whose epoch it returns)."""
    record_divergence(out_dir, epoch, plan.precision)
    return checkpoints.keep_best(state)


def _improves(value: float, best: float) -> bool:
    return not np.isnan(value) and value > best


def _unreached_lam_start_note(cfg: RunConfig, steps_per_epoch: int) -> list[str]:
    """ELR's loss.lam_start_steps counts batches, not epochs: one at or past the run's last step leaves λ at 0, and
    the run trains plain cross-entropy under ELR's name without a word."""
    steps = cfg.train.epochs * steps_per_epoch
    if cfg.loss.name != "elr" or cfg.loss.lam == 0 or cfg.loss.lam_start_steps < steps:
        return []
    return [f"note: loss.lam_start_steps = {cfg.loss.lam_start_steps} counts training steps (batches), and this run "
            f"takes {steps} ({cfg.train.epochs} epoch{'s' if cfg.train.epochs != 1 else ''} of {steps_per_epoch}), so "
            "λ stays 0: it trains plain cross-entropy; lower loss.lam_start_steps or raise train.epochs"]


def _unfinished_ramp_notes(cfg: RunConfig, steps_per_epoch: int) -> list[str]:
    """ELR+'s ramps count each network's steps, as its official configs do (40,000: 114 CIFAR-10 epochs): a run far
    shorter (the digits' 150 epochs take 2,700) ends with λ, or the weight averages' momentum, near 0, averages that
    barely average, under ELR+'s name without a word. ELR's loss.lam_ramp_steps counts batches too, from
    loss.lam_start_steps (`loss.lam_ramp_steps: 100000` on the digits left λ below 1% of its value, plain
    cross-entropy). Said where the ramp ends below half its full value."""
    steps, plus = cfg.train.epochs * steps_per_epoch, cfg.elr_plus
    ramps = []
    if cfg.loss.name == "elr" and cfg.loss.lam and cfg.loss.lam_start_steps < steps:  # else the start's own note
        ramps.append(("loss.lam_ramp_steps", cfg.loss.lam_ramp_steps, "training steps after loss.lam_start_steps",
                      "λ", sigmoid_rampup(steps - 1 - cfg.loss.lam_start_steps, cfg.loss.lam_ramp_steps)))
    if cfg.loss.name == "elr_plus" and cfg.loss.lam:
        ramps.append(("elr_plus.coef_step", plus.coef_step, "each network's training steps", "λ",
                      sigmoid_rampup(steps, plus.coef_step)))
    if cfg.loss.name == "elr_plus" and plus.ema_schedule == "ramp" and plus.ema_decay:  # n-th step ramps at n + 1
        ramps.append(("elr_plus.ema_ramp_steps", plus.ema_ramp_steps, "each network's training steps",
                      "the weight averages' momentum", sigmoid_rampup(steps + 1, plus.ema_ramp_steps)))
    run = f"{steps} ({cfg.train.epochs} epoch{'s' if cfg.train.epochs != 1 else ''} of {steps_per_epoch})"
    return [f"note: {key} = {length} counts {counted}, and this run takes {run}, so {ramped} ends at {reached:.2g} of "
            f"its full value; lower {key} or raise train.epochs" for key, length, counted, ramped, reached in ramps
            if reached < 0.5]


class CheckpointWriter:
    """Writes last.pt, and best.pt when a better epoch came, at the end of an epoch once `every_seconds`
    have passed since the last write, and always after the final epoch.

    Why not every epoch: a GPU trains a CIFAR epoch in a few seconds, and writing the model, optimizer
    and targets (172 MB for ResNet-34, 0.2–0.6 s on a CPU machine) each time would add about a tenth;
    a killed run loses at most `every_seconds` plus the epoch in flight and resumes to the same result; one
    stopped by SIGTERM during an epoch's evaluation keeps that epoch.
    """

    def __init__(self, out_dir: Path, every_seconds: float, config: dict[str, Any]) -> None:
        self.folder = out_dir / "checkpoints"
        self.every_seconds = every_seconds
        self.config = config  # the run's settings, kept in last.pt: a resume compares them with config.yaml
        self.written_at = time.perf_counter()
        self.best: dict[str, Any] | None = None  # a better epoch's weights, not on disk yet

    def after_epoch(self, method: Method, tracker: PredictionTracker, state: RunState, is_best: bool,
                    final: bool, rng_by_rank: list[dict[str, Any]] | None = None) -> None:
        """`rng_by_rank`: every process's generator states under torchrun (None: this process's alone)."""
        # a SIGTERM (or a dropped Ctrl-C) recorded during the epoch stops the run at the next step: keep this epoch
        write_now = (final or terminated() or interrupted()
                     or time.perf_counter() - self.written_at >= self.every_seconds)
        if is_best:
            weights = method.state_dict()
            self.best = {"method": weights if write_now else host_copy(weights), "epoch": state.epoch}
        if not write_now:
            return
        with holding_ctrl_c():  # both files or, killed in between, best.pt first: a resume trains that epoch again
            self._write(method, tracker, state, rng_by_rank)
        self.written_at = time.perf_counter()

    def keep_best(self, state: RunState) -> int:
        """Write the better epoch waiting in host memory for a run that stops without another checkpoint (diverged:
        its weights are no longer numbers); the epoch best.pt then holds, 0 without one."""
        self._write_best(state)
        return state.best_epoch if (self.folder / "best.pt").exists() else 0

    def _write_best(self, state: RunState) -> None:
        if self.best is not None:  # with the epoch it is written at: a run stopped before last.pt is then known
            atomic_save({**self.best, "written_at_epoch": state.epoch}, self.folder / "best.pt")
            self.best = None

    def _write(self, method: Method, tracker: PredictionTracker, state: RunState,
               rng_by_rank: list[dict[str, Any]] | None) -> None:
        self._write_best(state)
        atomic_save({
            "method": method.state_dict(),
            "tracker_probs": tracker.probs,
            "epoch": state.epoch,
            "best_val": state.best_val,
            "best_epoch": state.best_epoch,
            "wall_seconds": state.seconds_before + time.perf_counter() - state.started,
            "rng": capture_rng() if rng_by_rank is None else rng_by_rank[0],
            # a CPU run's threads, rank 0's under torchrun: a resume under another count is not bit for bit
            **({"cpu_threads": torch.get_num_threads()} if _trains_on_cpu(method) else {}),
            **({} if rng_by_rank is None else {"rng_by_rank": rng_by_rank}),
            "config": self.config,
        }, self.folder / "last.pt")


def _trains_on_cpu(method: Method) -> bool:
    """Whether the CPU threads decide the run's arithmetic: a GPU run's host threads do not."""
    return next(method.networks()[0].parameters()).device.type == "cpu"


def _write_metrics(out_dir: Path, rows: list[dict[str, Any]], writer: ScalarLog | None) -> None:
    atomic_write_text(pd.DataFrame(rows).to_csv(index=False), out_dir / "metrics.csv")
    if writer is not None:
        row = rows[-1]
        writer.add({key: value for key, value in row.items()
                    if key != "epoch" and isinstance(value, float) and not np.isnan(value)}, row["epoch"])
        writer.flush()


def _tensorboard(out_dir: Path, epochs_kept: int) -> ScalarLog:
    """The run's event log; it purges the points an interrupted attempt logged after the last checkpoint
    (after `epochs_kept`; all of them when it was killed before its first), which this one trains again, so
    TensorBoard shows each epoch once."""
    from elr_mri.engine.scalar_log import ScalarLog  # imported late: TensorBoard's protobufs are slow to load

    return ScalarLog(out_dir / "tensorboard", purge_from=epochs_kept + 1)


def _finish(run: RunContext) -> dict[str, Any]:
    """Write summary.json, the suspected-mislabel table and the memorization plot."""
    out_dir, cfg, data, method, state, plan = run.out_dir, run.cfg, run.data, run.method, run.state, run.plan
    metrics = pd.DataFrame(state.rows)
    best = metrics.loc[metrics["epoch"] == state.best_epoch].iloc[0] if state.best_epoch else metrics.iloc[-1]
    summary: dict[str, Any] = {
        "loss": cfg.loss.name,
        "epochs": int(metrics["epoch"].max()),
        "train_examples": len(data.train),
        SELECTION_RULE_KEY: selection_rule(cfg),
        "best_epoch": int(best["epoch"]),
        "val_acc_at_best": float(best["val_acc"]),
        "val_balanced_acc_at_best": float(best.get("val_balanced_acc", float("nan"))),
        **{f"{column}_{which}": float(row[column]) for column in metrics.columns if column.startswith("test_")
           for which, row in (("at_best", best), ("last", metrics.iloc[-1]))},
        "device": _device_name(plan.device),
        "processes": run.dist.world_size,  # torchrun's, of this call, as execution is (a resume may change it)
        "execution": plan.describe(method.networks()),  # how the networks ran on that device (this call's plan)
        "wall_seconds": round(state.seconds_before + time.perf_counter() - state.started, 2),
    }
    found = [*collapse_warnings(metrics, int(best["epoch"]), cfg.loss.name, data.class_names, out_dir),
             *_best_checkpoint_warnings(out_dir, int(best["epoch"]))]
    if found:
        summary["warnings"] = found
    table = _mislabel_table(method, run.tracker, data)
    summary["suspected_mislabels_epoch"] = summary["epochs"]  # the last epoch's targets, not the selected epoch's
    atomic_write_text(table.to_csv(index=False), out_dir / "suspected_mislabels.csv")
    if data.train_clean_labels is not None:
        summary["mislabels"] = mislabel_precision_recall(table["index"].to_numpy(), table["suggested_label"].to_numpy(),
                                                         data.train_labels, data.train_clean_labels)
        from elr_mri.plots import plot_memorization

        plot_memorization(metrics, out_dir / "memorization.png", title=f"{cfg.loss.name}, {cfg.data.name}")
    remove_scores_made_while_training(out_dir)
    atomic_write_json(summary, out_dir / "summary.json")
    return summary


def _best_checkpoint_warnings(out_dir: Path, selected: int) -> list[str]:
    """best.pt missing (its folder removed while the run trained), or holding another epoch than the selected one:
    written after last.pt (a run stopped between the two, or one that diverged), its epoch is trained again by a
    resume, which rewrites it only if that epoch is selected again; under other execution settings it may not be."""
    path = out_dir / "checkpoints" / "best.pt"
    if not path.exists():
        return [f"checkpoints/best.pt is missing (deleted while the run trained?), so the weights of the selected epoch "
                f"{selected} are gone: evaluate with --checkpoint last, or train the run again"]
    held = load_checkpoint(path, mmap=True).get("epoch", selected)  # best.pt files before it was recorded: trusted
    if held == selected:
        return []
    return [f"checkpoints/best.pt holds epoch {held}, not the selected epoch {selected}: a call before the resume "
            f"wrote it, and the resume, which trained that epoch again otherwise (other execution settings or CPU "
            f"threads), did not select it; epoch {selected}'s weights are gone: evaluate with --checkpoint last, or "
            "train the run again"]


def _mislabel_table(method: Method, tracker: PredictionTracker, data: NoisyImageData) -> pd.DataFrame:
    """From ELR targets when the loss keeps them, else from the last epoch's predictions."""
    targets = method.targets()
    scores = (targets if targets is not None else tracker.probs.nan_to_num(0.0)).detach().float().cpu()
    table = suspected_mislabels(scores.numpy(), data.train_labels, data.class_names)
    rows = table["index"].to_numpy()
    frame = getattr(data.train, "frame", None)  # MRI scans: who and which visit, for clinical re-review
    if frame is not None:
        who = frame[["participant_id", "session_id"]].iloc[rows].reset_index(drop=True)
        table = pd.concat([table.iloc[:, :1], who, table.iloc[:, 1:]], axis=1)
    paths = getattr(data.train, "paths", None)  # images read from files (Clothing1M): which file to look at
    if paths is not None:
        table.insert(1, "path", [paths[i] for i in rows])
    if data.train_ids is not None:  # "index" counts the training split after subsetting and the hold-out
        table.insert(1, "original_index", data.train_ids[rows])
    table["source"] = "elr_target" if targets is not None else "last_epoch_prediction"  # which kind of evidence
    return table


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
