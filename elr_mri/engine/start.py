"""`train`'s front: what a run is refused for from its settings and its folder alone, checked before the training
loop's module, and torch with it (seconds of imports), is loaded, so that a mistaken `--set` or resume is answered
at once, as a config error is.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Sequence

from elr_mri.config import (ConfigError, RunConfig, check_new_run_settings, load_config, refuse_resume_changes,
                            with_absolute_paths)
from elr_mri.data.image_sources import require_clothing1m_validation_list

__all__ = ["train", "finished_at", "new_run_command", "refuse_stretched_cosine", "refuse_threads_past_cpus"]

# data_shape.json's record of the training labels, written by every run since 2026-12-03 (commit b01cc99)
TRAIN_LABELS_KEY = "train_labels_sha256"


def train(cfg: RunConfig, out_dir: Path, resume: bool = False, notes: Sequence[str] = ()) -> dict[str, Any]:
    """Train as `cfg` says into `out_dir`; with `resume`, continue from `out_dir/checkpoints/last.pt`. `notes`: lines
    for stderr once a new run has its folder and data (a resumed one, its checkpoint), so that a refusal before then
    stays one line."""
    out_dir = Path(out_dir)
    cfg = with_absolute_paths(cfg)
    refuse_threads_past_cpus(cfg.train.threads)
    if resume and (out_dir / "config.yaml").exists():  # before loading data: a refused resume fails at once
        saved = load_config(out_dir / "config.yaml")
        refuse_resume_changes(saved, cfg, out_dir)
        if (out_dir / "checkpoints" / "last.pt").exists():
            refuse_stretched_cosine(saved, cfg, out_dir)
            if not finished_at(out_dir, cfg.train.epochs):  # a plain resume of a finished run only prints its summary
                _refuse_unfingerprinted_run(saved, cfg, out_dir)
    if not resume:
        check_new_run_settings(cfg.data)
        if cfg.data.name == "clothing1m" and cfg.data.root:
            require_clothing1m_validation_list(Path(cfg.data.root))
    from elr_mri.engine.runner import train_checked  # torch

    return train_checked(cfg, out_dir, resume, notes)


# train.threads above this many a CPU: the most a run here may ask for (more only wait on each other), with room for
# the count of a run made on a larger machine, kept on a resume for the same sums
_THREADS_PER_CPU = 4


def refuse_threads_past_cpus(threads: int) -> None:
    """A thread count far past the machine's CPUs, a slip of the keyboard (1000000 for 1000?): torch's OpenMP could not
    start them, and the run died in a segmentation fault once training began, its data loaded. A machine-dependent
    limit, so checked when a run starts, not when a config loads (`evaluate` reads a run's config on any machine)."""
    cpus = os.cpu_count() or 1
    if threads > _THREADS_PER_CPU * cpus:
        raise ConfigError(f"train.threads = {threads} is more than {_THREADS_PER_CPU} a CPU on this machine ({cpus} "
                          "CPUs): past one a CPU threads only wait on each other, and a count far past them killed "
                          f"the run once training began; set train.threads: {cpus} or fewer, or 0 for torch's default")


def finished_at(out_dir: Path, epochs: int) -> bool:
    """Whether the run in `out_dir` has finished at `epochs` epochs: its summary.json says so, beside its last.pt."""
    try:
        summary = json.loads((out_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return (out_dir / "checkpoints" / "last.pt").exists() and summary.get("epochs") == epochs


def refuse_stretched_cosine(trained_with: RunConfig, cfg: RunConfig, out_dir: Path) -> None:
    """A cosine schedule spans train.epochs, so the rate of every epoch trained so far depended on that length:
    another length would raise the rate again part-way and give neither run. Step schedules and warm restarts
    do not depend on it, so those runs extend exactly."""
    before, after = trained_with.train.epochs, cfg.train.epochs
    if cfg.schedule.name == "cosine" and before != after:
        raise ConfigError(
            f"{out_dir}: its cosine schedule spans train.epochs = {before}, and the epochs it trained followed it; "
            f"train.epochs = {after} would restart the decay part-way and give neither a {before}- nor a "
            f"{after}-epoch cosine run, so start a new run: {new_run_command(out_dir, f'train.epochs={after}')}")


def new_run_command(out_dir: Path, setting: str = "") -> str:
    """The command that trains a new run from `out_dir`'s settings (quoted for a shell: paths may hold spaces)."""
    changed = f" --set {setting}" if setting else ""
    return f"elr-mri train --config {shlex.quote(str(out_dir / 'config.yaml'))}{changed} --out NEW_RUN_DIR"


def _refuse_unfingerprinted_run(trained_with: RunConfig, cfg: RunConfig, out_dir: Path) -> None:
    """A run made before its training labels were recorded cannot be checked against the data rebuilt now, and
    that data did change: image data sets' validation split (and so their training split and its noisy labels)
    and ELR+'s training changed on 2026-12-03. Resumed, such a run went on silently under other labels, ELR's
    targets kept by row then belonging to other examples. `evaluate` and `explain` read the weights alone."""
    try:
        recorded = json.loads((out_dir / "data_shape.json").read_text())
    except (OSError, ValueError):
        return  # lost or damaged: the resume's own checks name the file
    if not isinstance(recorded, dict) or TRAIN_LABELS_KEY in recorded:
        return
    epochs = cfg.train.epochs
    setting = f"train.epochs={epochs}" if epochs != trained_with.train.epochs else ""
    raise ConfigError(
        f"{out_dir}: made by an elr-mri from before 2026-12-03, which recorded no {TRAIN_LABELS_KEY} in its "
        "data_shape.json, so a resume cannot check that it goes on with the training labels and splits it began "
        "with (image data sets' validation split and ELR+'s training changed that day); evaluate and explain still "
        f"read it; to train on, start a new run: {new_run_command(out_dir, setting)}")
