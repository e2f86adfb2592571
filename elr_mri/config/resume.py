"""What a resumed run may change, and the paths a run records absolute so that it resumes from anywhere."""

from __future__ import annotations

import copy
import functools
import os
import shlex
from pathlib import Path
from typing import Any

from elr_mri.config.schema import ConfigError, RunConfig, flat_settings
from elr_mri.config.unread import reads_setting

# What `--resume` may change: how long the run trains, and how and where it runs. Everything else
# would make one run directory hold epochs trained under two different settings.
RESUME_MAY_CHANGE = frozenset({
    "train.epochs", "train.eval_batch_size", "train.device", "train.precision", "train.loader", "train.compile",
    "train.compile_mode", "train.compile_step", "train.fused_optimizer", "train.channels_last", "train.cudnn_benchmark",
    "train.phase_grid_convs",
    "train.threads", "train.checkpoint_seconds", "train.tensorboard", "train.progress", "data.root", "data.num_workers",
    "data.mri.cache", "data.mri.cache_dir", "data.mri.blur_on",
})

# Settings that name files or folders. A run records them absolute, so `evaluate`, `explain` and
# `--resume` find the data from any working directory, not only the one training started in.
PATH_KEYS = (
    "data.root", "data.noise.transition_matrix", "data.noise.human_labels", "data.mri.manifest",
    "data.mri.holdout_manifest", "data.mri.splits", "data.mri.val_labels", "data.mri.cache_dir",
    "model.pretrained_checkpoint",
)


def with_absolute_paths(cfg: RunConfig) -> RunConfig:
    """A copy of `cfg` whose PATH_KEYS are absolute, taken from the current directory when relative."""
    cfg = copy.deepcopy(cfg)
    for key in PATH_KEYS:
        *sections, name = key.split(".")
        node = functools.reduce(getattr, sections, cfg)
        value = getattr(node, name)
        if value is not None:
            setattr(node, name, os.path.abspath(os.path.expanduser(value)))
    return cfg


def refuse_resume_changes(saved: RunConfig, wanted: RunConfig, run_dir: str | Path, fix: str | None = None) -> None:
    """Stop a resume that would change what the run computes (a loss, a rate, the data), naming the key.

    `fix` says how to start a new run instead (default: the `elr-mri train` command)."""
    change = first_resume_change(saved, wanted)
    if change:
        key, before, after = change
        config_file = shlex.quote(str(Path(run_dir) / "config.yaml"))
        fix = fix or f"elr-mri train --config {config_file} --set {key}=... --out NEW_RUN_DIR"
        raise ConfigError(
            f"{run_dir} was trained with {key} = {before!r}; a resumed run keeps its settings (only "
            f"train.epochs and how it runs may change), so start a new run for {key} = {after!r}: {fix}")


def first_resume_change(saved: RunConfig, wanted: RunConfig) -> tuple[str, Any, Any] | None:
    """(key, saved value, wanted value) of the first setting, in the config's order, that `wanted` changes and that
    changes what a run computes; paths compared absolute (the same spelled either way). None where there is none.
    A setting neither run reads is no change: `--set loss.lam=2` beside the CE run of a comparison refused that
    run, finished, as "trained with loss.lam = 3.0", and told to delete it and train the same CE again."""
    before = flat_settings(with_absolute_paths(saved))
    after = flat_settings(with_absolute_paths(wanted))
    return next(((key, before.get(key), after[key]) for key in after
                 if after[key] != before.get(key) and key not in RESUME_MAY_CHANGE
                 and (reads_setting(saved, key) or reads_setting(wanted, key))), None)
