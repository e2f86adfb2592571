"""The `elr-mri` command: one entry point with a subcommand per stage.

Heavy imports (torch, ANTs) happen inside the subcommand that needs them, so `elr-mri preprocess`
never loads torch and `elr-mri --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import select
import shlex
import signal
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elr_mri import __version__
from elr_mri.stopping import Terminated, interrupted, terminated, terminating_at_safe_points
from preprocess.arguments import near_option, unknown_option
from preprocess.signals import sigterm_as_ctrl_c
from preprocess.user_errors import USER_ERRORS, as_path_name_error, as_storage_error, nonempty_path, report_user_error

if TYPE_CHECKING:
    import pandas as pd

    from elr_mri.config import RunConfig
    from elr_mri.data.importers import ImportResult
    from elr_mri.evaluation.metrics import MetricsReport

__all__ = ["main"]

# torch re-raises a DataLoader worker's error with the worker's traceback as its text; an error of
# this project's (all are ValueErrors) is a line "elr_mri.module.NameError: message" in it.
_PROJECT_ERROR_LINE = re.compile(r"^(?:elr_mri|preprocess)\.[\w.]*Error: (.+)$", re.MULTILINE)


def main(argv: list[str] | None = None) -> int:
    """Run `elr-mri ARGV` and return its exit status; a reader that closed the pipe early is no failure."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _run_command(argv)
    except BrokenPipeError:  # `elr-mri ... | head`: the reader left; a traceback (and exit 1) would read as a failure
        if not _stdout_reader_gone():
            raise  # another pipe broke (one the command writes to itself): not this
        nowhere = os.open(os.devnull, os.O_WRONLY)
        os.dup2(nowhere, sys.stdout.fileno())  # else the exit's flush raises again
        try:
            print(f"elr-mri {' '.join(argv[:1])}: stopped writing, its output's reader closed the pipe",
                  file=sys.stderr, flush=True)
        except OSError:  # stderr is the same closed pipe (`2>&1 | head`)
            os.dup2(nowhere, sys.stderr.fileno())
        return 128 + signal.SIGPIPE


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe nobody reads any more (poll reports an error on its write end)."""
    try:
        descriptor = sys.stdout.fileno()
        if not stat.S_ISFIFO(os.fstat(descriptor).st_mode):
            return False
        poller = select.poll()
        poller.register(descriptor, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, ValueError, OSError):  # no stdout (closed at start, `>&-`), or not a real file
        return False


def _run_command(argv: list[str]) -> int:
    """Parse `argv` and run its command; Ctrl-C, SIGTERM and a user's mistake end as one line and an exit status."""
    if argv and argv[0] in _FORWARDED:  # these own their argument parsing
        return _FORWARDED[argv[0]](argv[1:])
    parser = _parser()
    command_parser = _command_parsers(parser).get(argv[0]) if argv else None
    stray = unknown_option(command_parser, argv[1:]) if command_parser is not None else None
    if stray is not None:  # before argparse, whose check of required options would blame those (`--confg x`)
        hint = near_option(command_parser, stray[0]) or _stray_hint(argv, stray)
        print(f"elr-mri {argv[0]}: unrecognized arguments: {' '.join(stray)}{hint}", file=sys.stderr)
        return 2
    args, stray = parser.parse_known_args(argv)
    if stray:  # one line naming the command, not the top-level usage argparse would print
        print(f"elr-mri {args.command}: unrecognized arguments: {' '.join(stray)}{_stray_hint(argv, stray)}",
              file=sys.stderr)
        return 2
    training = args.command == "train"  # the signals recorded (`terminated`, `interrupted`) are training's
    try:
        with terminating_at_safe_points() if training else sigterm_as_ctrl_c():
            return args.handler(args)
    except KeyboardInterrupt as stop:
        if (training and terminated()) or isinstance(stop, Terminated):
            return _say_terminated(args)
        return _say_interrupted(args)
    except Exception as err:
        if training and terminated():  # e.g. a DataLoader worker the same SIGTERM ended
            return _say_terminated(args)
        if training and interrupted():  # a DataLoader worker the same Ctrl-C (a terminal's, to the group) ended
            return _say_interrupted(args)
        problem = _user_problem(err) or _out_of_memory(err, args)
        if problem is None or os.environ.get("ELR_MRI_DEBUG"):
            raise
        return report_user_error(f"elr-mri {args.command}", problem)


def _stray_hint(argv: list[str], stray: list[str]) -> str:
    """How to say what the first stray argument seems meant for: `--set train.epochs 2` leaves the 2 over,
    `--set a=1 b=2` the b=2, and `--epochs 3` names a setting as if it were an option."""
    for flag, key, value in zip(argv, argv[1:], argv[2:]):
        if flag == "--set" and "=" not in key and value == stray[0]:
            return f" (--set takes KEY=VALUE with no space: --set {key}={value})"
    if argv[:1] != ["train"]:  # the only command with --set
        return ""
    if "=" in stray[0] and not stray[0].startswith("-"):
        return f" (each --set takes one KEY=VALUE: --set {stray[0]})"
    if stray[0].startswith("--"):
        from elr_mri.config import RunConfig, dotted_keys

        name, given, value = stray[0][2:].partition("=")
        if not given:
            value = stray[1] if len(stray) > 1 and not stray[1].startswith("-") else "VALUE"
        keys = [key for key in dotted_keys(RunConfig) if key.rsplit(".", 1)[-1] == name.replace("-", "_")]
        if keys:
            return f" (settings go through --set: --set {' or --set '.join(f'{key}={value}' for key in keys)})"
    return ""


def _say_interrupted(args: argparse.Namespace) -> int:
    """Ctrl-C: one line saying how to go on, exit 130."""
    if _speaks_for_the_run():
        print(f"elr-mri {args.command}: interrupted; {_after_interrupt(args)}", file=sys.stderr)
    return 130


def _say_terminated(args: argparse.Namespace) -> int:
    """SIGTERM, the usual end of a job on a cluster (its time limit): Ctrl-C's line, exit 143."""
    if _speaks_for_the_run():
        print(f"elr-mri {args.command}: stopped by SIGTERM (a job's time limit, scancel or kill); "
              f"{_after_interrupt(args)}", file=sys.stderr)
    return 128 + signal.SIGTERM


def _speaks_for_the_run() -> bool:
    """Under torchrun every process gets the Ctrl-C: rank 0 alone says so, once. An error may be one rank's or one
    machine's alone (its GPU out of memory, a scan of its slice unreadable, a path missing on that node), so each
    rank says its own."""
    return os.environ.get("RANK", "0") == "0"


def _train_run_dir(args: argparse.Namespace) -> Path:
    """The run directory `elr-mri train ARGS` writes: --resume's, --out, or runs/<config file name>."""
    return args.resume or args.out or Path("runs") / args.config.stem


def _after_interrupt(args: argparse.Namespace) -> str:
    """What a user does after Ctrl-C: training resumes from its last checkpoint, the rest reruns."""
    if args.command == "train":
        run_dir = _train_run_dir(args)
        if (run_dir / "checkpoints" / "last.pt").exists():
            resume = f"train --resume {shlex.quote(str(run_dir))}"
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # in one process it would go on K times slower
                return f"continue from the last checkpoint with the same torchrun launch and: {resume}"
            return f"continue from the last checkpoint with: elr-mri {resume}"
        return ("no checkpoint was written yet (the first comes after train.checkpoint_seconds and an epoch), so "
                "nothing to resume: run the same command again")
    if args.command in ("evaluate", "explain"):  # files are replaced one by one; summary.json goes first, back last
        return ("an output folder it was rewriting has no summary.json, so nothing reads it as done (one it had not "
                "reached keeps its earlier results); run the command again")
    return "nothing half-written was kept; run the command again"


def _out_of_memory(err: BaseException, args: argparse.Namespace) -> MemoryError | None:
    """A GPU's out-of-memory error as one line naming the setting to lower (a batch too large for the GPU is a
    setting, not a bug); None for any other error. Only the batch sizes of scoring may change on a resume."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(err, torch.OutOfMemoryError) or args.command not in ("train", "evaluate",
                                                                                              "explain"):
        return None
    what = ". ".join(str(err).split(". ")[:2])  # torch's "CUDA out of memory. Tried to allocate 2.00 GiB"
    if args.command == "train":
        fix = ("a smaller train.batch_size or data.mri.crop_size (or train.precision bf16) fits in a new run; if "
               "it ran out while scoring, a smaller train.eval_batch_size continues this one: elr-mri train --resume "
               f"{shlex.quote(str(_train_run_dir(args)))} --set train.eval_batch_size=N")
    else:
        others = " (and in those of the runs compared with it)" if getattr(args, "compare_with", None) else ""
        fix = f"lower train.eval_batch_size in {args.run / 'config.yaml'}{others} and run the command again"
    return MemoryError(f"the GPU ran out of memory ({what}); {fix}")


def _user_problem(err: BaseException) -> BaseException | None:
    """`err` when it is a user error, or one of this project's raised inside it: MONAI re-raises a
    transform's error (e.g. an unreadable scan) as a RuntimeError that names only the transform, and
    a DataLoader worker's error comes back as its traceback text."""
    if "in DataLoader worker process" in str(err):
        found = _PROJECT_ERROR_LINE.search(str(err))
        return ValueError(found.group(1)) if found else None
    if isinstance(err, USER_ERRORS):
        return err
    refused = as_storage_error(err) or as_path_name_error(err)  # a disk full or read-only, a path too long
    if refused is not None:
        return refused
    cause = err.__cause__
    while cause is not None:
        if isinstance(cause, USER_ERRORS) and type(cause).__module__.startswith(("elr_mri.", "preprocess.")):
            return cause
        cause = cause.__cause__
    return None


def _command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's own parser, by name."""
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(commands.choices)


def _parser() -> argparse.ArgumentParser:
    """The parser of every subcommand but the forwarded ones (`_FORWARDED`), each with its handler."""
    parser = argparse.ArgumentParser(prog="elr-mri", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"elr-mri {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train a classifier from a YAML config",
                                description="Train a classifier from a YAML config (configs/), or continue a run.")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=nonempty_path, help="YAML run configuration (see configs/)")
    source.add_argument("--resume", type=nonempty_path, metavar="RUN_DIR", help="continue a killed or finished run")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set train.epochs=5; one KEY=VALUE each, repeated for "
                            "more; VALUE is YAML (quote text YAML would read as a number or boolean: "
                            "--set \"data.root='2024'\"; a section takes a mapping: --set 'train={epochs: 5}')")
    train.add_argument("--out", type=nonempty_path, help="run directory (default: runs/<config name>)")
    train.set_defaults(handler=_train)
    evaluate = commands.add_parser("evaluate", help="score a run on its test split or on a holdout cohort",
                                   description="Score a run on its test split or on a holdout cohort (--manifest).")
    evaluate.add_argument("--run", type=nonempty_path, required=True, metavar="RUN_DIR", help="a finished training run")
    evaluate.add_argument("--manifest", type=nonempty_path, help="holdout cohort manifest (e.g. NACC); default: the run's test split")
    evaluate.add_argument("--test-set", default="test", metavar="NAME",
                          help="an image run's test set: test (default) or a further one of its data set "
                               "(WebVision: ilsvrc12); results go to RUN_DIR/eval-NAME")
    evaluate.add_argument("--checkpoint", choices=["best", "last"], default="best",
                          help="best: the run's selection rule (config.yaml says which); last: the final epoch")
    evaluate.add_argument("--bootstrap", type=int, default=1000, help="participant resamples for the 95%% intervals (default 1000)")
    evaluate.add_argument("--baselines", action="store_true",
                          help="MRI runs only: also fit the linear baselines on the run's splits and put them in the "
                               "same table")
    evaluate.add_argument("--volumes", type=nonempty_path, nargs="+", default=[], metavar="CSV",
                          help="`elr-mri volumes` CSVs of the training cohort and the holdout (for the volume baseline)")
    evaluate.add_argument("--drop-suspected", type=nonempty_path, metavar="ELR_RUN",
                          help="MRI runs only: also fit the baselines without the training scans this run flagged as "
                               "mislabelled (by ELR targets; a CE run's last-epoch predictions with a warning)")
    evaluate.add_argument("--compare-with", type=nonempty_path, nargs="+", default=[], metavar="RUN_DIR",
                          help="MRI runs only: other runs on the same participant splits (e.g. ELR beside CE), scored "
                               "and put in the same table")
    evaluate.set_defaults(handler=_evaluate)
    explain = commands.add_parser("explain", help="input-gradient saliency maps of an MRI run, per class",
                                  description="Input-gradient saliency maps of an MRI run, per class.")
    explain.add_argument("--run", type=nonempty_path, required=True, metavar="RUN_DIR",
                         help="an MRI run of `elr-mri train` (its --out)")
    explain.add_argument("--manifest", type=nonempty_path, help="scans to explain (default: the run's test split)")
    explain.add_argument("--checkpoint", choices=["best", "last"], default="best",
                         help="the selected epoch's weights (best.pt, default) or the last epoch's")
    explain.set_defaults(handler=_explain)
    importer = commands.add_parser("import-cohort", help="diagnoses + ages (ADNIMERGE or a mapped table) joined to scans",
                                   description="Join diagnoses and ages (ADNIMERGE, or a table through a mapping) to preprocessed scans.")
    importer.add_argument("--scans", type=nonempty_path, required=True, help="manifest written by `elr-mri preprocess`")
    table = importer.add_mutually_exclusive_group(required=True)
    table.add_argument("--adnimerge", type=nonempty_path, help="ADNIMERGE.csv as downloaded from ADNI")
    table.add_argument("--table", type=nonempty_path, help="another cohort's table (e.g. NACC UDS), read through --mapping")
    importer.add_argument("--mapping", type=nonempty_path, help="column-and-value mapping YAML (see configs/nacc/nacc_mapping.yaml)")
    importer.add_argument("--baseline-diagnosis", action="store_true", help="ADNI: every scan gets DX_bl")
    importer.add_argument("--out", type=nonempty_path, required=True, help="manifest CSV for `elr-mri train` / `evaluate`")
    importer.set_defaults(handler=_import_cohort)
    volumes = commands.add_parser("volumes", help="regional brain volumes per scan from the registration's Jacobian",
                                  description="Regional brain volumes of each preprocessed scan, from the registration's Jacobian.")
    volumes.add_argument("--manifest", type=nonempty_path, required=True, help="manifest written by `elr-mri preprocess`")
    volumes.add_argument("--out", type=nonempty_path, help="CSV to write (default: volumes.csv beside preprocess's "
                         "manifest.csv, NAME_volumes.csv beside any other manifest NAME.csv)")
    volumes.add_argument("--jobs", type=int, default=1, help="scans measured in parallel (default 1)")
    volumes.add_argument("--registration-mm", type=float, default=2.0,
                         help="grid in mm of the SyN registration run for affinely preprocessed scans (default 2)")
    volumes.add_argument("--truth", type=nonempty_path, help="simulated cohort's truth.csv: report how well volumes recover it")
    volumes.set_defaults(handler=_volumes)
    commands.add_parser("preprocess", help="raw T1 scans to template space (see `elr-mri preprocess --help`)")
    commands.add_parser("preprocess-merge", help="join the manifests of preprocessing shards")
    commands.add_parser("simulate-cohort", help="write a simulated ADNI-like + NACC-like cohort (see --help)")
    return parser


def _train(args: argparse.Namespace) -> int:
    """`elr-mri train`: train a new run or resume one, print its summary, and score its holdout cohort if it has one."""
    from elr_mri.engine.runner import finished_at, train

    out_dir = _train_run_dir(args)
    config = _resumed_run_config(args) if args.resume is not None else _new_run_config(args, out_dir)
    finished_before = args.resume is not None and finished_at(out_dir, config.train.epochs)  # scored when it ended
    notes = _unread_setting_notes(config, args.overrides)
    summary = train(config, out_dir, resume=args.resume is not None, notes=notes)
    if not summary:  # a non-zero rank of a torchrun job: rank 0 reports
        return 0
    _print_summary(out_dir, summary)
    holdout = config.data.mri.holdout_manifest if config.data.name == "mri" else None
    if holdout and (not finished_before or _holdout_unscored(out_dir, Path(holdout))):
        _evaluate_holdout_after_training(out_dir, Path(holdout))
    return 0


def _resumed_run_config(args: argparse.Namespace) -> RunConfig:
    """The config of the run `--resume` names, with `--set` applied; a path that is no run folder is one line
    saying which to pass."""
    from elr_mri.config import load_config

    if args.out is not None:
        raise ValueError(f"--out {args.out} with --resume {args.resume}: a resumed run continues in its own "
                         "directory; drop --out (or copy the run directory there first)")
    out_dir = args.resume
    if out_dir.is_file() and (out_dir.parent / "config.yaml").is_file():  # RUN/config.yaml for RUN
        raise ValueError(f"--resume {out_dir}: is a file of the run; pass the run's folder: --resume {out_dir.parent}")
    if not (out_dir / "config.yaml").is_file() and (out_dir / "checkpoints" / "last.pt").is_file():
        raise FileNotFoundError(f"--resume {out_dir}: its config.yaml is missing (checkpoints/last.pt is there); "
                                "restore config.yaml from a copy of the run")
    if not (out_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"--resume {out_dir}: no run there (no config.yaml); pass the directory "
                                "`elr-mri train` wrote (its --out), or start one with --config")
    return load_config(out_dir / "config.yaml", args.overrides)


def _new_run_config(args: argparse.Namespace, out_dir: Path) -> RunConfig:
    """The config `--config` and `--set` give a new run in `out_dir`."""
    from elr_mri.config import load_config

    config = load_config(args.config, args.overrides)
    if args.out is None:
        _refuse_another_configs_run(config, out_dir)
    return config


def _print_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    """The run's summary.json in short: its plain values on stdout, its warnings on stderr."""
    print(f"run directory: {out_dir}")
    for key, value in summary.items():
        if not isinstance(value, (dict, list)):
            print(f"  {key}: {value}")
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)


def _holdout_unscored(out_dir: Path, holdout: Path) -> bool:
    """Whether a finished run's holdout lacks its results (summary.json, written last) and can be scored now: its
    scoring at the end of training was cut short (Ctrl-C, a kill, a job's time limit), and a plain `--resume`
    finishes it. Where it cannot (the manifest moved, read-only storage) a note says how, and the resume stays a
    success: training is done."""
    from elr_mri.evaluation.evaluate import evaluation_dir

    if (evaluation_dir(out_dir, holdout) / "summary.json").is_file():
        return False
    if holdout.is_file() and os.access(out_dir, os.W_OK):
        return True
    reason = "the manifest is not there" if not holdout.is_file() else "the run folder is read-only"
    print(f"note: {out_dir}: the scoring of its holdout {holdout} was cut short and cannot be finished here ({reason}); "
          f"once it can: elr-mri evaluate --run {out_dir} --manifest {holdout}", file=sys.stderr)
    return False


def _refuse_another_configs_run(config: RunConfig, out_dir: Path) -> None:
    """The default --out is named after the config file alone, which configs/cifar10/ and configs/cifar100/ share
    (elr_sym40.yaml): a run of other settings there would be offered for --resume, and followed, trained on."""
    from elr_mri.config import ConfigError, load_config, settings_a_resume_would_change

    try:
        there = load_config(out_dir / "config.yaml")
    except (ConfigError, OSError):  # no run there, or not one this can read: the run folder's own checks say which
        return
    changed = settings_a_resume_would_change(there, config)
    if changed:
        key, (before, after) = next(iter(changed.items()))
        raise FileExistsError(f"{out_dir}, the default --out (runs/<config file name>), holds a run of other settings "
                              f"({key} = {before!r} there, {after!r} here), e.g. another folder's config of this name; "
                              "pass --out NEW_RUN_DIR")


def _unread_setting_notes(config: RunConfig, overrides: list[str]) -> list[str]:
    """A line for each `--set` the run's loss, schedule or another setting leaves unread (see `unread_overrides`)."""
    from elr_mri.config import setting_text, setting_value, unread_overrides

    notes = []
    for key, chooser, readers in unread_overrides(config, overrides):
        listed = f"{', '.join(readers[:-1])} and {readers[-1]}" if len(readers) > 1 else "".join(readers)
        read_by = f"only {listed} read{'s' if len(readers) == 1 else ''} it" if readers \
            else f"no {chooser.split('.')[0]} reads it"
        chosen = setting_text(setting_value(config, chooser))
        notes.append(f"note: --set {key} changes nothing in this run: {chooser} is {chosen}, and {read_by}")
    return notes


def _evaluate_holdout_after_training(out_dir: Path, holdout: Path) -> None:
    """Score the configured holdout; a problem there (an unreadable scan) says that training itself finished."""
    try:
        _evaluate_and_print(out_dir, holdout)
    except Exception as err:
        problem = _user_problem(err)
        if problem is None:
            raise
        raise ValueError(f"training finished ({out_dir}), but scoring the holdout failed: {problem}; once fixed: "
                         f"elr-mri evaluate --run {out_dir} --manifest {holdout}") from err


def _evaluate_and_print(run_dir: Path, manifest: Path | None, checkpoint: str = "best",
                        n_boot: int = 1000, test_set: str = "test") -> Path:
    """Evaluate a run's checkpoint on `manifest` (None: its test set `test_set`), print the metrics and
    return the evaluation's folder."""
    from elr_mri.evaluation.evaluate import evaluate_run, evaluation_dir

    reports = evaluate_run(run_dir, manifest, checkpoint, n_boot, test_set)
    eval_dir = evaluation_dir(run_dir, manifest, checkpoint, test_set)
    _note_scoring_caveats(run_dir, eval_dir)
    _print_metrics(reports, eval_dir)
    _note_undefined(reports)
    _note_rarely_defined(reports, n_boot)
    return eval_dir


def _print_metrics(reports: dict[str, MetricsReport], eval_dir: Path) -> None:
    """Each level's metrics with their intervals; per-class AUCs of more classes than a screen shows stay in the CSV."""
    from elr_mri.plots import LEGIBLE_CLASSES

    print(f"results: {eval_dir}")
    for level, report in reports.items():
        people = "" if level == "image" else f", {report.n_participants} participants"
        print(f"  {level} level ({report.n_examples} examples{people}):")
        many = len(report.class_names) > LEGIBLE_CLASSES
        for metric, interval in report.metrics.items():
            if not (many and metric in {f"auc_{name}" for name in report.class_names}):
                print(f"    {metric:18s} {interval}")
        if many:
            print(f"    (the {len(report.class_names)} per-class AUCs: {eval_dir / 'metrics.csv'})")


def _note_undefined(reports: dict[str, MetricsReport]) -> None:
    """Say why a metric is nan: the scored set lacks a class it needs."""
    undefined = sorted({metric for report in reports.values() for metric, interval in report.metrics.items()
                        if interval.estimate != interval.estimate})  # NaN
    if undefined:
        print(f"note: {', '.join(undefined)} undefined (nan; null in summary.json): the set lacks a class these "
              "need, e.g. an AUC of a diagnosis no scan here carries", file=sys.stderr)


def _note_rarely_defined(reports: dict[str, MetricsReport], n_boot: int) -> None:
    """Say which intervals rest on fewer than 95% of the resamples: an AUC or the balanced accuracy is undefined
    in a resample that drew no participant of a class, and its interval then comes from the resamples that drew
    every class. A set of one participant has no resamples at all."""
    alone = {level: report.n_participants for level, report in reports.items() if report.n_participants < 2}
    for level, participants in alone.items():
        print(f"note: no intervals at {level} level (nan): resampling participants needs at least two, and this "
              f"set has {participants}", file=sys.stderr)
    rare = [f"{metric} ({level}) in {interval.resamples}"
            for level, report in reports.items() if level not in alone for metric, interval in report.metrics.items()
            if not math.isnan(interval.estimate) and interval.resamples is not None
            and interval.resamples < 0.95 * n_boot]
    if rare:
        print(f"note: defined in fewer than 95% of the {n_boot} resamples: {', '.join(rare)} (the others drew no "
              "participant of a class); those intervals come from the rest alone: more participants of each class "
              "make them trustworthy", file=sys.stderr)


def _note_scoring_caveats(run_dir: Path, eval_dir: Path, done: str = "scored") -> None:
    """Say so when the scored run is still training (or was killed while extended): its checkpoint is not the
    run's result yet; and name the participants or scans shared with training that
    data.mri.allow_participant_overlap let through, which inflate the scores. For the run evaluated and for
    each run compared with it. `done`: what the command did with the checkpoint (`explain`: explained)."""
    about = json.loads((eval_dir / "summary.json").read_text())
    if not about["run_finished"]:
        print(f"note: {run_dir} has not finished training (no summary.json); {done} its {about['checkpoint']} "
              f"checkpoint so far, from epoch {about['checkpoint_epoch']}", file=sys.stderr)
    for overlap in about.get("participant_overlap_notes", []):
        print(f"note: {run_dir}: {overlap}: these scores count them, so they are inflated", file=sys.stderr)


def _evaluate(args: argparse.Namespace) -> int:
    """`elr-mri evaluate`: score the run, then the baselines and the runs to compare with it, if asked for."""
    _refuse_evaluate_arguments(args)
    _check_before_scoring(args)
    eval_dir = _evaluate_and_print(args.run, args.manifest, args.checkpoint, args.bootstrap, args.test_set)
    baselines = _evaluate_baselines(args) if args.baselines else []
    if args.baselines or args.compare_with:
        _print_comparison(args, eval_dir, baselines)
    return 0


def _refuse_evaluate_arguments(args: argparse.Namespace) -> None:
    """Options of `evaluate` that contradict each other, refused before anything is read."""
    if (args.volumes or args.drop_suspected) and not args.baselines:
        raise ValueError("--volumes and --drop-suspected belong to --baselines; add --baselines")
    if args.test_set != "test" and (args.manifest or args.baselines):
        raise ValueError(f"--test-set {args.test_set} scores one of an image run's own test sets; drop --manifest "
                         "and --baselines, which are for MRI runs")
    if args.bootstrap < 2:
        raise ValueError(f"--bootstrap {args.bootstrap}: the 95% intervals need resamples; pass 1000 (the default) "
                         "or at least 2")


def _check_before_scoring(args: argparse.Namespace) -> None:
    """What would stop `evaluate` part way, checked before the first run is scored (which takes minutes): runs that
    cannot be compared, an output folder another manifest's results hold, baseline inputs that are refused."""
    if args.compare_with:  # before the evaluations: a run that cannot be compared is known at once
        from elr_mri.evaluation.compare import require_same_splits, run_labels

        run_labels([args.run, *args.compare_with])  # refuses the same run twice
        for other in args.compare_with:
            require_same_splits(args.run, other)
    from elr_mri.evaluation.evaluate import evaluation_dir, require_own_folder

    for run in (args.run, *args.compare_with):  # before any scoring: a folder another manifest's results hold
        require_own_folder(evaluation_dir(run, args.manifest, args.checkpoint, args.test_set), args.manifest)
    if args.baselines and (args.run / "config.yaml").is_file():  # what the baselines refuse, before the CNN is scored
        from elr_mri.baselines.evaluate import check_baseline_inputs

        check_baseline_inputs(args.run, args.volumes, args.manifest, args.drop_suspected)


def _evaluate_baselines(args: argparse.Namespace) -> list[str]:
    """Fit and score the baselines `args` ask for; returns the names of those it scored."""
    from elr_mri.baselines.evaluate import evaluate_baselines

    if not args.volumes:
        print("baselines: no --volumes CSV, so only the voxel SVM (run `elr-mri volumes` for the volume baseline)")
    scored = list(evaluate_baselines(args.run, args.volumes, args.manifest, None, args.bootstrap, args.checkpoint))
    if args.drop_suspected:
        scored += evaluate_baselines(args.run, args.volumes, args.manifest, args.drop_suspected, args.bootstrap,
                                     args.checkpoint)
    return scored


def _print_comparison(args: argparse.Namespace, eval_dir: Path, baselines: list[str]) -> None:
    """The CNN, the --compare-with runs and the `baselines` scored by this command in one table (also
    comparison.csv); baseline results an earlier command left in eval_dir are not this comparison's."""
    from elr_mri.config import load_config
    from elr_mri.evaluation.compare import comparison_table, paired_differences, require_same_scans, run_labels
    from elr_mri.evaluation.evaluate import evaluate_run
    from elr_mri.engine.checkpoint import atomic_write_text

    runs = [args.run, *args.compare_with]
    labels = [f"{name} ({load_config(run / 'config.yaml').loss.name})" for run, name in zip(runs, run_labels(runs))]
    others = {}
    for other, label in zip(args.compare_with, labels[1:]):
        evaluate_run(other, args.manifest, args.checkpoint, args.bootstrap, args.test_set)
        others[label] = other / eval_dir.name
        _note_scoring_caveats(other, others[label])
    require_same_scans(eval_dir, others)
    table = comparison_table(eval_dir, labels[0], others=others, baselines=baselines)
    atomic_write_text(table.to_csv(index=False), eval_dir / "comparison.csv")
    print(f"participant level, 95% intervals ({eval_dir / 'comparison.csv'}):")
    print(_wide(table))
    paired = paired_differences(eval_dir, labels[0], others, baselines, args.bootstrap)
    atomic_write_text(paired.to_csv(index=False), eval_dir / "paired_differences.csv")
    print(f"minus {labels[0]}, paired over the same participants, 95% intervals; one that excludes 0 shows a "
          f"difference ({eval_dir / 'paired_differences.csv'}):")
    print(_wide(paired))


def _wide(table: pd.DataFrame) -> str:
    """A method × metric table of 'estimate [low, high]' in percent, methods in their order in `table`."""
    from elr_mri.evaluation.metrics import Interval

    cells = table.assign(value=[str(Interval(r.estimate, r.low, r.high)) for r in table.itertuples()])
    return cells.pivot(index="method", columns="metric", values="value").loc[table["method"].unique()].to_string()


def _import_cohort(args: argparse.Namespace) -> int:
    """`elr-mri import-cohort`: join diagnoses and ages to preprocessed scans, writing the manifest and its drops."""
    from elr_mri.data.importers import preprocess_failures
    from elr_mri.engine.checkpoint import atomic_write_text

    result = _imported_cohort(args)
    note = preprocess_failures(args.scans)
    if note:
        print(note, file=sys.stderr)
    _warn_about_import(result, args.mapping)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    dropped = args.out.with_name(f"{args.out.stem}_dropped.csv")
    atomic_write_text(result.dropped.to_csv(index=False), dropped)
    if result.manifest.empty:
        stale = args.out.is_file()  # an earlier import's, beside a list of drops that is not its own
        args.out.unlink(missing_ok=True)
        raise ValueError(f"no scan of {args.scans} matched a row of the table ({result.summary()}); the reasons "
                         f"are in {dropped}, no manifest was written{' (the earlier one removed)' if stale else ''}")
    atomic_write_text(result.manifest.to_csv(index=False), args.out)
    print(f"{args.out}: {result.summary()}" + (f" (reasons in {dropped})" if len(result.dropped) else ""))
    return 0


def _imported_cohort(args: argparse.Namespace) -> ImportResult:
    """The import --adnimerge, or --table through --mapping, asks for; an --out that is a folder or an input, or an
    option of the other kind of import, is refused first."""
    from elr_mri.data.importers import import_adnimerge, import_mapped_table, load_mapping

    if args.out.is_dir():
        raise IsADirectoryError(f"--out {args.out} is a folder; pass the manifest CSV to write, e.g. "
                                f"{args.out / 'manifest.csv'}")
    inputs = [path for path in (args.scans, args.adnimerge, args.table, args.mapping) if path is not None]
    if any(args.out.exists() and args.out.samefile(path) for path in inputs if Path(path).exists()):
        raise ValueError(f"--out {args.out} is one of the input files; name a new file for the manifest")
    if args.adnimerge is not None:
        if args.mapping is not None:
            raise ValueError(f"--mapping {args.mapping} applies to --table; ADNIMERGE's columns are known, drop it")
        return import_adnimerge(args.adnimerge, args.scans, use_baseline_diagnosis=args.baseline_diagnosis)
    if args.mapping is None:
        raise ValueError("--table needs --mapping (a YAML like configs/nacc/nacc_mapping.yaml)")
    if args.baseline_diagnosis:
        raise ValueError("--baseline-diagnosis applies to --adnimerge (its DX_bl); for --table, name the diagnosis "
                         f"column wanted under columns.diagnosis in {args.mapping}")
    return import_mapped_table(args.table, args.scans, load_mapping(args.mapping))


def _warn_about_import(result: ImportResult, mapping: Path | None) -> None:
    """Warn of imported rows that training would refuse: a participant spelled two ways, an age that is no age; and
    of sex codes `mapping` does not list, which the manifest holds as unknown."""
    if result.two_spellings:
        print(f"warning: {len(result.two_spellings)} participant(s) are spelled two ways in --scans (first: "
              f"{result.two_spellings[0]}); training refuses a manifest that splits a person: write one ID per "
              "person in --scans and import again", file=sys.stderr)
    if result.age_problems:
        print(f"warning: {len(result.age_problems)} imported scan(s) have an age that is not years at the scan, "
              f"written as no age (first: {result.age_problems[0]}); a model using age refuses scans without one: "
              "correct them in the clinical table and import again", file=sys.stderr)
    if result.unlisted_sex_codes:
        print(f"warning: {mapping}'s values.sex does not list {', '.join(result.unlisted_sex_codes)}, written as "
              "unknown sex: list those codes under values.sex (e.g. Male: M) and import again", file=sys.stderr)


def _volumes(args: argparse.Namespace) -> int:
    """`elr-mri volumes`: regional volumes of each scan; exit 1 where a scan failed (the CSV says why)."""
    from elr_mri.volumes.measure import VolumeParams, measure_manifest
    from elr_mri.volumes.recovery import read_truth, recovery_table

    if args.jobs < 1 or not 0 < args.registration_mm < math.inf:  # nan failed every scan in ITK instead
        raise ValueError(f"--jobs must be at least 1 and --registration-mm a positive number of mm (got --jobs "
                         f"{args.jobs}, --registration-mm {args.registration_mm})")
    truth = read_truth(args.truth) if args.truth is not None else None  # a wrong file: known before measuring
    out, volumes, failures = measure_manifest(args.manifest, args.out, VolumeParams(args.registration_mm), args.jobs)
    if len(volumes):
        print(f"volumes: {len(volumes)} scans measured, {len(failures)} failed -> {out}")
    else:
        kept = f"; {out} keeps what it held" if out.exists() else ""
        print(f"volumes: no scan measured, {len(failures)} failed, nothing written{kept}")
    if len(failures):
        print(f"  failed scans and why: {out.with_name(out.stem + '_failures.csv')}")
    if truth is not None and len(volumes):
        print(recovery_table(volumes, truth).round(3).to_string(index=False))
    return 1 if len(failures) else 0


def _explain(args: argparse.Namespace) -> int:
    """`elr-mri explain`: saliency maps of the run's checkpoint, with the notes `evaluate` gives on it."""
    from elr_mri.evaluation.explain import explain_run

    out = explain_run(args.run, args.manifest, args.checkpoint)
    print(f"saliency maps: {out}")
    _note_scoring_caveats(args.run, out, done="explained")
    return 0


def _simulate(argv: list[str]) -> int:
    from elr_mri.simulate.cli import main as simulate_main

    return simulate_main(argv)


def _preprocess(argv: list[str]) -> int:
    from preprocess.cli import main as preprocess_main

    return preprocess_main(argv)


def _preprocess_merge(argv: list[str]) -> int:
    from preprocess.cli import merge_main

    return merge_main(argv)


_FORWARDED = {"preprocess": _preprocess, "preprocess-merge": _preprocess_merge, "simulate-cohort": _simulate}

if __name__ == "__main__":
    sys.exit(main())
