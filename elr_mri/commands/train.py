"""`elr-mri train`: a new run from a config, or a resumed one, and its holdout cohort scored at the end."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elr_mri.commands.evaluate import evaluate_and_print, exclusive_output
from elr_mri.commands.problems import user_problem
from elr_mri.stopping import interrupted, terminated, terminating_at_once

if TYPE_CHECKING:
    from elr_mri.config import RunConfig


def train_command(args: argparse.Namespace) -> int:
    """`elr-mri train`: train a new run or resume one, print its summary, and score its holdout cohort if it has one."""
    out_dir = train_run_dir(args)
    config = _resumed_run_config(args) if args.resume is not None else _new_run_config(args, out_dir)
    from elr_mri.engine.start import finished_at, train  # torch only once its refusals passed: seconds of imports

    finished_before = args.resume is not None and finished_at(out_dir, config.train.epochs)  # scored when it ended
    notes = _unread_setting_notes(config, args.overrides)
    summary = train(config, out_dir, resume=args.resume is not None, notes=notes)
    if not summary:  # a non-zero rank of a torchrun job: rank 0 reports
        return 0
    _print_summary(out_dir, summary)
    holdout = config.data.mri.holdout_manifest if config.data.name == "mri" else None
    if holdout and (not finished_before or _holdout_unscored(out_dir, Path(holdout))):
        try:
            with terminating_at_once():
                # a run that trained here has printed its precision note; one finished before has not
                _evaluate_holdout_after_training(out_dir, Path(holdout), note_precision=finished_before)
        except BaseException as stop:
            if isinstance(stop, KeyboardInterrupt) or terminated() or interrupted():  # a loader worker ended with it
                raise HoldoutScoringStopped from stop
            raise
    return 0


class HoldoutScoringStopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while the holdout of a run that has finished training is scored: the closing line says
    that, not that training goes on from its last checkpoint (the same `--resume` finishes the scoring)."""


def train_run_dir(args: argparse.Namespace) -> Path:
    """The run directory `elr-mri train ARGS` writes: --resume's, --out, or runs/<config file name>."""
    return args.resume or args.out or Path("runs") / args.config.stem


def _resumed_run_config(args: argparse.Namespace) -> RunConfig:
    """The config of the run `--resume` names, with `--set` applied; a path that is no run folder is one line
    saying which to pass."""
    from elr_mri.config import load_config, load_run_config
    from elr_mri.engine.run_dir import enclosing_run

    if args.out is not None:
        raise ValueError(f"--out {args.out} with --resume {args.resume}: a resumed run continues in its own "
                         "directory; drop --out (or copy the run directory there first)")
    out_dir = args.resume
    run = None if (out_dir / "config.yaml").is_file() else enclosing_run(out_dir)
    if run is not None:  # RUN/config.yaml or RUN/checkpoints/last.pt for RUN
        kind = "folder" if out_dir.is_dir() else "file"
        raise ValueError(f"--resume {out_dir}: is a {kind} of the run; pass the run's folder: --resume "
                         f"{shlex.quote(str(run))}")
    if not (out_dir / "config.yaml").is_file() and (out_dir / "checkpoints" / "last.pt").is_file():
        raise FileNotFoundError(f"--resume {out_dir}: its config.yaml is missing (checkpoints/last.pt is there); "
                                "restore config.yaml from a copy of the run")
    if not (out_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"--resume {out_dir}: no run there (no config.yaml); pass the directory "
                                "`elr-mri train` wrote (its --out), or start one with --config")
    if (out_dir / "checkpoints" / "last.pt").is_file():  # a run's: cut short, it would go on with default settings
        return load_run_config(out_dir, args.overrides)
    return load_config(out_dir / "config.yaml", args.overrides)  # `check_run_dir` says what else the folder is


def _new_run_config(args: argparse.Namespace, out_dir: Path) -> RunConfig:
    """The config `--config` and `--set` give a new run in `out_dir`."""
    from elr_mri.config import load_config

    if args.out is None:
        _refuse_a_runs_config_without_out(args.config)
    config = load_config(args.config, args.overrides)
    if args.out is None:
        _refuse_another_configs_run(config, out_dir)
    return config


def _refuse_a_runs_config_without_out(path: Path) -> None:
    """A run's saved settings trained again (`--config RUN/config.yaml`) without --out went to runs/config, the
    default named after the file, which every run's saved config shares: the next run's was offered --resume there.
    `--config RUN` was told to pass RUN/config.yaml, which led there."""
    from elr_mri.engine.run_dir import holds_a_run

    run = path if path.is_dir() else path.parent
    if not holds_a_run(run) or not (path.is_dir() or path.name == "config.yaml"):
        return
    what = "the folder" if path.is_dir() else "the saved config"
    raise ValueError(f"--config {path}: is {what} of the run {run}, and without --out a new run of its settings would "
                     "go to runs/config (the default is named after the config file, as every run's is); pass "
                     f"--config {shlex.quote(str(run / 'config.yaml'))} --out NEW_RUN_DIR, or continue that run with "
                     f"--resume {shlex.quote(str(run))}")


def _print_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    """The run's summary.json in short: its plain values on stdout, its warnings on stderr."""
    print(f"run directory: {out_dir}")
    for key, value in summary.items():
        if not isinstance(value, (dict, list)):
            print(f"  {key}: {value}")
    listed = _mislabel_table_line(out_dir / "suspected_mislabels.csv", summary)
    if listed:
        print(listed)
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)


def _mislabel_table_line(table: Path, summary: dict[str, Any]) -> str | None:
    """Where the suspected-mislabel table is, how long and from what: the figures above skip summary.json's
    `mislabels` (a mapping), so a run without true labels, a clinic's own, named the table nowhere, and an empty one
    (a memorizing CE lists nothing) looked like any other. None where the table is gone or unreadable (saved over
    from a spreadsheet): the run itself is still finished."""
    import pandas as pd  # loaded already by the training this follows

    try:
        rows = pd.read_csv(table, dtype=str)
    except (OSError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    source = f", from {rows['source'].iloc[0]}" if len(rows) and "source" in rows else ""
    of_all = f" of {summary['train_examples']}" if "train_examples" in summary else ""  # older runs lack the count
    line = (f"suspected mislabels: {len(rows)}{of_all} training examples{source} of epoch "
            f"{summary.get('suspected_mislabels_epoch', summary['epochs'])}, widest margin first: {table}")
    found = summary.get("mislabels")
    if found:
        wrong = round((found["precision"] or 0.0) * found["flagged"])
        line += f" (against the true labels {wrong} of them wrong, of {found['truly_mislabelled']} wrong in all)"
    return line


def _holdout_unscored(out_dir: Path, holdout: Path) -> bool:
    """Whether a finished run's holdout lacks its results (summary.json, written last) and can be scored now: its
    scoring at the end of training was cut short (Ctrl-C, a kill, a job's time limit), and a plain `--resume`
    finishes it. Where it cannot (the manifest moved, read-only storage) a note says how, and the resume stays a
    success: training is done."""
    from elr_mri.evaluation.evaluation_folder import evaluation_dir

    if (evaluation_dir(out_dir, holdout) / "summary.json").is_file():
        return False
    if holdout.is_file() and os.access(out_dir, os.W_OK):
        return True
    reason = "the manifest is not there" if not holdout.is_file() else "the run folder is read-only"
    print(f"note: {out_dir}: the scoring of its holdout {holdout} was cut short and cannot be finished here "
          f"({reason}); once it can: {_evaluate_command(out_dir, holdout)}", file=sys.stderr)
    return False


def _refuse_another_configs_run(config: RunConfig, out_dir: Path) -> None:
    """The default --out is named after the config file alone, which configs/cifar10/ and configs/cifar100/ share
    (elr_sym40.yaml): a run of other settings there would be offered for --resume, and followed, trained on."""
    from elr_mri.config import ConfigError, first_resume_change, load_config

    try:
        there = load_config(out_dir / "config.yaml")
    except (ConfigError, OSError):  # no run there, or not one this can read: the run folder's own checks say which
        return
    change = first_resume_change(there, config)
    if change:
        key, before, after = change
        raise FileExistsError(f"{out_dir}, the default --out (runs/<config file name>), holds a run of other settings "
                              f"({key} = {before!r} there, {after!r} here), e.g. another folder's config of this name; "
                              "pass --out NEW_RUN_DIR")


def _unread_setting_notes(config: RunConfig, overrides: list[str]) -> list[str]:
    """A line for each `--set` the run's loss, schedule or another setting leaves unread (see `unread_overrides`)."""
    from elr_mri.config import setting_text, setting_value, unread_overrides

    notes = []
    for key, chooser, readers in unread_overrides(config, overrides):
        listed = f"{', '.join(readers[:-1])} and {readers[-1]}" if len(readers) > 1 else "".join(readers)
        if readers == ["null"]:  # the file it names takes the setting's place: "only null reads it" says nothing
            read_by = f"only a run without {chooser} reads it"
        elif readers:
            read_by = f"only {listed} read{'s' if len(readers) == 1 else ''} it"
        else:
            read_by = f"no {chooser.split('.')[0]} reads it"
        chosen = setting_text(setting_value(config, chooser))
        notes.append(f"note: --set {key} changes nothing in this run: {chooser} is {chosen}, and {read_by}")
    return notes


def _evaluate_holdout_after_training(out_dir: Path, holdout: Path, note_precision: bool) -> None:
    """Score the configured holdout under `evaluate`'s lock of its folder; a problem there (an unreadable scan, an
    `evaluate` of the same holdout still writing) says that training itself finished."""
    from elr_mri.evaluation.evaluation_folder import evaluation_dir

    try:
        with exclusive_output(evaluation_dir(out_dir, holdout)):
            evaluate_and_print(out_dir, holdout, note_precision=note_precision)
    except Exception as err:
        problem = user_problem(err)
        if problem is None:
            raise
        raise ValueError(f"training finished ({out_dir}), but scoring the holdout failed: {problem}; once fixed: "
                         f"{_evaluate_command(out_dir, holdout)}") from err


def _evaluate_command(out_dir: Path, holdout: Path) -> str:
    """The `elr-mri evaluate` that scores the run's holdout, its paths quoted for a shell (a space in either)."""
    return f"elr-mri evaluate --run {shlex.quote(str(out_dir))} --manifest {shlex.quote(str(holdout))}"
