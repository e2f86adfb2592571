"""The `elr-mri` command: one entry point with a subcommand per stage.

Heavy imports (torch, ANTs) happen inside the subcommand that needs them, so `elr-mri preprocess`
never loads torch and `elr-mri --help` is instant. This module parses and dispatches, and turns an interrupt or a
user's mistake into one line and an exit status; the commands themselves are in `elr_mri.commands`.
"""

from __future__ import annotations

import argparse
import difflib
import io
import logging
import os
import re
import select
import shlex
import signal
import stat
import sys

from elr_mri import __version__
from elr_mri.commands.cohort import import_cohort_command, volumes_command
from elr_mri.commands.evaluate import evaluate_command, explain_command
from elr_mri.commands.problems import user_problem
from elr_mri.commands.train import HoldoutScoringStopped, train_command, train_run_dir
from elr_mri.evaluation import N_BOOT
from elr_mri.shipped import shipped_copy
from elr_mri.stopping import (Terminated, forget_recorded_signals, interrupted, terminated,
                              terminating_at_safe_points)
from preprocess.arguments import near_option, options_of, unknown_option, values_without_option
from preprocess.progress import NO_PROGRESS_HELP
from preprocess.signals import sigterm_as_ctrl_c
from preprocess.user_errors import StorageError, debugging, nonempty_path, report_user_error, with_rerun_note

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run `elr-mri ARGV` and return its exit status; a reader that closed the pipe early is no failure."""
    argv = sys.argv[1:] if argv is None else argv
    _print_logged_warnings()
    _stdout_by_line()
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


class _WarningLines(logging.Handler):
    """The library's logged warnings as lines like the commands' own, `warning: ...` on stderr: without a handler
    Python printed them bare. stderr is looked up at each line, so one redirected since (tests) gets them."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def _print_logged_warnings() -> None:
    """Give the `elr_mri` loggers their one handler; `main` runs many times in one process (tests, scripts)."""
    logger = logging.getLogger("elr_mri")
    if not any(isinstance(handler, _WarningLines) for handler in logger.handlers):
        logger.addHandler(_WarningLines(logging.WARNING))


def _stdout_by_line() -> None:
    """Write stdout a line at a time, as stderr is: into a file (nohup, SLURM's log) Python held it in 8 KB blocks,
    so a run's summary came after the holdout scoring's notes that followed it, or was lost with a job killed then."""
    if isinstance(sys.stdout, io.TextIOWrapper):  # not a test's or a notebook's replacement
        sys.stdout.reconfigure(line_buffering=True)


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
    if not argv:  # argparse's "required: COMMAND" would not say which commands there are
        parser.print_help(sys.stderr)
        return 2
    mistake = _mistyped(parser, argv)
    if mistake is not None:  # before argparse, whose check of required arguments would blame those instead
        print(mistake, file=sys.stderr)
        return 2
    args, stray = parser.parse_known_args(argv)
    if stray:  # one line naming the command, not the top-level usage argparse would print
        print(f"elr-mri {args.command}: unrecognized arguments: {' '.join(stray)}{_stray_hint(argv, stray)}",
              file=sys.stderr)
        return 2
    _use_shipped_copies(args)
    training = args.command == "train"  # the signals recorded (`terminated`, `interrupted`) are training's
    try:
        with terminating_at_safe_points() if training else sigterm_as_ctrl_c():
            return args.handler(args)
    except KeyboardInterrupt as stop:
        if (training and terminated()) or isinstance(stop, Terminated):
            return _say_terminated(args, stop)
        return _say_interrupted(args, stop)
    except Exception as err:
        if training and terminated():  # e.g. a DataLoader worker the same SIGTERM ended
            return _say_terminated(args)
        if training and interrupted():  # a DataLoader worker the same Ctrl-C (a terminal's, to the group) ended
            return _say_interrupted(args)
        if training and _lost_another_process(err):
            return _say_lost_process(args)
        problem = user_problem(err) or _out_of_memory(err, args)
        if problem is None or debugging():
            raise
        return report_user_error(f"elr-mri {args.command}", _rerun_said_for_the_run(args, problem))
    finally:
        forget_recorded_signals()  # read above; a `train` called next in this process (a notebook's) must not stop


def _rerun_said_for_the_run(args: argparse.Namespace, problem: BaseException) -> BaseException:
    """A full disk's line, for `train`, ending in what reruns this run: before its first checkpoint `--resume` has
    nothing to continue from (a run stopped before its config.yaml is "no run there"), and the same command again
    starts it over. A listed image found unreadable mid-epoch ends in the same way on, which its dataset cannot
    name: the same command again is refused once the run has a checkpoint."""
    if args.command == "train" and _unreadable_listed_image(problem):
        return type(problem)(f"{problem}; {_after_interrupt(args)}")
    if args.command != "train" or not isinstance(problem, StorageError):
        return problem
    run_dir = train_run_dir(args)
    advice = (f"continue from the last checkpoint with: elr-mri train --resume {shlex.quote(str(run_dir))}"
              if (run_dir / "checkpoints" / "last.pt").exists() else "no checkpoint was written yet: it starts over")
    return with_rerun_note(problem, advice)


def _unreadable_listed_image(problem: BaseException) -> bool:
    """Whether `problem` is a listed image's decoding error (a DataLoader worker's comes back as a ValueError); read
    from the image module only where it is loaded, so that a mistake in a config does not import torch to be said."""
    images = sys.modules.get("elr_mri.data.images")
    return images is not None and isinstance(problem, ValueError) and str(problem).endswith(images.LISTED_IMAGE_FIX)


def _mistyped(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """One line naming what argparse leaves unnamed behind a missing required argument or its list of every command: a
    misspelt command (`tarin`) or option (`train --confg x`), an option put before the command (`--config x train`),
    or a value typed without its option (`train configs/x.yaml`); None where argparse's own message says it."""
    commands = _command_parsers(parser)
    if argv[0].startswith("-"):
        if unknown_option(parser, argv[:1]) is None:  # -h, --version
            return None
        owners = [name for name, command in commands.items() if argv[0].partition("=")[0] in options_of(command)]
        hint = near_option(parser, argv[0]) or (f" (it goes after the command: elr-mri {owners[0]} {argv[0]} ...)"
                                                if owners else "")
        return f"elr-mri: unrecognized arguments: {argv[0]}{hint}"
    if argv[0] not in commands:
        near = difflib.get_close_matches(argv[0], commands, n=1, cutoff=0.6)
        return f"elr-mri: unknown command {argv[0]} (did you mean {near[0]}?)" if near else None
    stray = unknown_option(commands[argv[0]], argv[1:])
    if stray is not None:
        hint = near_option(commands[argv[0]], stray[0]) or _stray_hint(argv, stray)
        return f"elr-mri {argv[0]}: unrecognized arguments: {' '.join(stray)}{hint}"
    unplaced = values_without_option(commands[argv[0]], argv[1:])
    return None if unplaced is None else f"elr-mri {argv[0]}: {unplaced}"


def _stray_hint(argv: list[str], stray: list[str]) -> str:
    """How to say what the first stray argument seems meant for: `--set train.epochs 2` leaves the 2 over,
    `--set a=1 b=2` the b=2, and `--epochs 3` names a setting as if it were an option."""
    for flag, key, value in zip(argv, argv[1:], argv[2:]):
        if flag == "--set" and "=" not in key and value == stray[0]:
            return f" (--set takes KEY=VALUE with no space: --set {key}={value})"
        if flag == "--set" and value == stray[0] and _unclosed(key):
            return f" (quote a --set value that holds spaces: --set {shlex.quote(_rejoined(key, stray))})"
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


def _unclosed(text: str) -> bool:
    """Whether `text` opens more YAML brackets than it closes: a list or mapping the shell split at a space."""
    return text.count("[") + text.count("{") > text.count("]") + text.count("}")


def _rejoined(value: str, stray: list[str]) -> str:
    """A --set `value` the shell split at its spaces (`schedule.milestones=[40,` `80]`), joined with the words
    that followed it until its brackets close."""
    for word in stray:
        if not _unclosed(value):
            break
        value = f"{value} {word}"
    return value


def _say_interrupted(args: argparse.Namespace, stop: BaseException | None = None) -> int:
    """Ctrl-C: one line saying how to go on, exit 130."""
    if _speaks_for_the_run():
        print(f"elr-mri {args.command}: interrupted; {_after_interrupt(args, stop)}", file=sys.stderr)
    return 130


def _say_terminated(args: argparse.Namespace, stop: BaseException | None = None) -> int:
    """SIGTERM, the usual end of a job on a cluster (its time limit): Ctrl-C's line, exit 143."""
    if _speaks_for_the_run():
        print(f"elr-mri {args.command}: stopped by SIGTERM (a job's time limit, scancel or kill); "
              f"{_after_interrupt(args, stop)}", file=sys.stderr)
    return 128 + signal.SIGTERM


def _lost_another_process(err: Exception) -> bool:
    """Under torchrun, whether `err` is this rank's collective failing because another rank has gone."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or debugging():
        return False
    from elr_mri.distributed import lost_another_process  # torch is loaded: the run got as far as a collective

    return lost_another_process(err)


def _say_lost_process(args: argparse.Namespace) -> int:
    """Another rank ended (its own error line, or a kill that torchrun's report names) and this one's next collective
    failed: rank 0 says so once, as one line with the way on, where each rank printed a traceback of the connection
    the gone rank had closed. The ranks left exit 1, as torchrun does."""
    if _speaks_for_the_run():
        print(f"elr-mri {args.command}: error: another process of this torchrun job stopped (its own error is above, "
              "or torchrun's report below names the signal that killed it), so this one could not go on; "
              f"{_after_interrupt(args)}", file=sys.stderr)
    return 1


def _speaks_for_the_run() -> bool:
    """Under torchrun every process gets the Ctrl-C: rank 0 alone says so, once. An error may be one rank's or one
    machine's alone (its GPU out of memory, a scan of its slice unreadable, a path missing on that node), so each
    rank says its own."""
    return os.environ.get("RANK", "0") == "0"


def _after_interrupt(args: argparse.Namespace, stop: BaseException | None = None) -> str:
    """What a user does after Ctrl-C (`stop`, where it was raised): training resumes from its last checkpoint, a
    holdout's scoring after training is finished by the same resume, the rest reruns."""
    if args.command == "train":
        run_dir = train_run_dir(args)
        if (run_dir / "checkpoints" / "last.pt").exists():
            resume = f"train --resume {shlex.quote(str(run_dir))}"
            if isinstance(stop, HoldoutScoringStopped):
                return (f"training had finished, the scoring of its holdout was cut short; finish it with: "
                        f"elr-mri {resume}")
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
    """A GPU's out-of-memory error, or the machine's refusal of an allocation past its memory, as one line naming the
    settings to lower (a batch, a crop or a network too large is a setting, not a bug); None for any other error.
    Only the batch sizes of scoring may change on a resume."""
    what = _memory_refused(err)
    if what is None or args.command not in ("train", "evaluate", "explain"):
        return None
    if args.command == "train":
        return MemoryError(f"{what}; {_training_memory_fix(args)}")
    others = " (and in those of the runs compared with it)" if getattr(args, "compare_with", None) else ""
    return MemoryError(f"{what}; lower train.eval_batch_size in {args.run / 'config.yaml'}{others} and run the command "
                       "again")


def _training_memory_fix(args: argparse.Namespace) -> str:
    """The settings that fit a run in memory, and how to rerun it. A run that ran out before its folder had a
    config.yaml (building its network) was never scored and has nothing to resume: `--resume` there is "no run
    there", so the same command with a smaller setting starts it."""
    balanced = _balanced_batches(args)
    smaller = (f"a smaller {f'data.balanced_batches (here {balanced:,}), ' if balanced else ''}train.batch_size, "
               "data.mri.crop_size or network (model.hidden, model.widening), or train.precision bf16")
    run_dir = train_run_dir(args)
    if not (run_dir / "config.yaml").is_file():
        return f"{smaller}, fits; nothing was written yet: run the same command with one of them (--set KEY=VALUE)"
    return (f"{smaller}, fits in a new run; if it ran out while scoring, a smaller train.eval_batch_size continues "
            f"this one: elr-mri train --resume {shlex.quote(str(run_dir))} --set train.eval_batch_size=N")


def _balanced_batches(args: argparse.Namespace) -> int | None:
    """The run's data.balanced_batches (None where unset or its config cannot be read again): its epoch of that many
    batches is drawn as one table of indexes, which a count mistyped (1000000000) made past any machine's memory."""
    from elr_mri.config import ConfigError, load_config

    config = args.resume / "config.yaml" if args.resume is not None else args.config
    try:
        return load_config(config, args.overrides).data.balanced_batches
    except (ConfigError, OSError):
        return None


# torch's CPU allocator refusing a request past the machine's memory (`model.hidden: 10000000000`: 2.5 TB of weights)
_CPU_ALLOCATION = re.compile(r"DefaultCPUAllocator: can't allocate memory: you tried to allocate (\d+) bytes")


def _memory_refused(err: BaseException) -> str | None:
    """What ran out, in words, where `err` is the GPU's or the machine's memory running out; else None."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(err, torch.OutOfMemoryError):
        return f"the GPU ran out of memory ({'. '.join(str(err).split('. ')[:2])})"  # torch's "... Tried to allocate"
    refused = _CPU_ALLOCATION.search(str(err)) if isinstance(err, RuntimeError) else None
    if refused is not None:
        return f"the machine's memory cannot hold one allocation of {int(refused.group(1)) / 2**30:,.1f} GiB"
    if not isinstance(err, MemoryError):
        return None
    return f"the machine ran out of memory ({err})" if str(err) else "the machine ran out of memory"


def _command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's own parser, by name."""
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(commands.choices)


_DESCRIPTION = ("Classifiers trained on noisy labels with Early-Learning Regularization (ELR): raw T1 MRI scans to\n"
                "template space, diagnoses joined to them, training, and scores on a holdout cohort; or image data "
                "sets\n(CIFAR, Clothing1M, WebVision, digits) from a config.")
# Lines that parse as they stand (tests/test_cli_output.py); README's "The MRI pipeline" has every step.
_EPILOG = """examples:
  elr-mri train --config configs/digits/elr_sym40.yaml      # a run in seconds on a CPU, into runs/elr_sym40
  elr-mri evaluate --run runs/elr_sym40
  elr-mri preprocess --input scans.csv --output prep --jobs 2
  elr-mri import-cohort --scans prep/manifest.csv --adnimerge ADNIMERGE.csv --out adni.csv
  elr-mri train --config configs/adni/cpu_small.yaml --set data.mri.manifest=adni.csv --out runs/adni

Relative paths, those in a config too, are read from the current directory (the examples': the project's).
`elr-mri COMMAND --help` says what each command takes. Exit status: 0 done; 1 some scans failed (preprocess,
volumes: the failures CSV says why), shards that cannot be joined (preprocess-merge: none, some missing, or
run with other settings), a worker process that died (simulate-cohort) or another process of a torchrun job that
stopped (train); 2 a mistake in the command line, a path, a table or a config (one line on stderr says which);
130 Ctrl-C; 141 the output's reader closed the pipe (`| head`); 143 SIGTERM."""


def _use_shipped_copies(args: argparse.Namespace) -> None:
    """`--config` and `--mapping` given as `configs/...` where there is no such file, as after a pip install outside
    the repository: the installed copy (`shipped_copy`). After parsing, which runs argparse's types twice."""
    for name in ("config", "mapping"):
        if getattr(args, name, None) is not None:
            setattr(args, name, shipped_copy(getattr(args, name)))


def _parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, each with its handler; the forwarded ones (`_FORWARDED`) parse their own."""
    parser = argparse.ArgumentParser(prog="elr-mri", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"elr-mri {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_evaluate(commands)
    _add_explain(commands)
    _add_import_cohort(commands)
    _add_volumes(commands)
    commands.add_parser("preprocess", help="raw T1 scans to template space (see `elr-mri preprocess --help`)")
    commands.add_parser("preprocess-merge", help="join the manifests of preprocessing shards")
    commands.add_parser("simulate-cohort", help="write a simulated ADNI-like + NACC-like cohort (see --help)")
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
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
    train.set_defaults(handler=train_command)


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("evaluate", help="score a run on its test split or on a holdout cohort",
                                   description="Score a run on its test split or on a holdout cohort (--manifest).")
    evaluate.add_argument("--run", type=nonempty_path, required=True, metavar="RUN_DIR",
                          help="a run of `elr-mri train` (its --out; one still training is scored from its checkpoint "
                               "so far, with a note)")
    evaluate.add_argument("--manifest", type=nonempty_path, help="holdout cohort manifest (e.g. NACC); default: the run's test split")
    evaluate.add_argument("--test-set", default="test", metavar="NAME",
                          help="an image run's test set: test (default) or a further one of its data set "
                               "(WebVision: ilsvrc12); results go to RUN_DIR/eval-NAME")
    evaluate.add_argument("--checkpoint", choices=["best", "last"], default="best",
                          help="best (default): the epoch the run's selection rule chose (config.yaml says which); last: "
                               "the final epoch")
    evaluate.add_argument("--bootstrap", type=int, default=N_BOOT,
                          help="bootstrap resamples for the 95%% intervals, of participants (an image run's: of "
                               "images) (default %(default)s)")
    evaluate.add_argument("--baselines", action="store_true",
                          help="MRI runs only: also fit the linear baselines on the run's splits and put them in the "
                               "same table")
    evaluate.add_argument("--volumes", type=nonempty_path, nargs="+", default=[], metavar="CSV",
                          help="with --baselines: `elr-mri volumes` CSVs of the training cohort and the holdout (for "
                               "the volume baseline)")
    evaluate.add_argument("--drop-suspected", type=nonempty_path, metavar="ELR_RUN",
                          help="with --baselines: also fit them without the training scans ELR_RUN flagged as "
                               "mislabelled (by ELR targets; a CE run's last-epoch predictions with a warning)")
    evaluate.add_argument("--compare-with", type=nonempty_path, nargs="+", default=[], metavar="RUN_DIR",
                          help="MRI runs only: other runs on the same participant splits (e.g. ELR beside CE), scored "
                               "and put in the same table")
    evaluate.set_defaults(handler=evaluate_command)


def _add_explain(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser("explain", help="input-gradient saliency maps of an MRI run, per given diagnosis",
                                  description="Input-gradient saliency maps of an MRI run, each the mean over the scans "
                                              "given one diagnosis, whatever the network predicts of them.")
    explain.add_argument("--run", type=nonempty_path, required=True, metavar="RUN_DIR",
                         help="an MRI run of `elr-mri train` (its --out)")
    explain.add_argument("--manifest", type=nonempty_path, help="scans to explain (default: the run's test split)")
    explain.add_argument("--checkpoint", choices=["best", "last"], default="best",
                         help="the selected epoch's weights (best.pt, default) or the last epoch's")
    explain.set_defaults(handler=explain_command)


def _add_import_cohort(commands: argparse._SubParsersAction) -> None:
    importer = commands.add_parser("import-cohort", help="diagnoses + ages (ADNIMERGE or a mapped table) joined to scans",
                                   description="Join diagnoses and ages (ADNIMERGE, or a table through a mapping) to preprocessed scans.")
    importer.add_argument("--scans", type=nonempty_path, required=True, help="manifest written by `elr-mri preprocess`")
    table = importer.add_mutually_exclusive_group(required=True)
    table.add_argument("--adnimerge", type=nonempty_path, help="ADNIMERGE.csv as downloaded from ADNI, or as its R package writes it")
    table.add_argument("--table", type=nonempty_path, help="another cohort's table (e.g. NACC UDS), read through --mapping")
    importer.add_argument("--mapping", type=nonempty_path, help="column-and-value mapping YAML (see configs/nacc/nacc_mapping.yaml)")
    importer.add_argument("--baseline-diagnosis", action="store_true", help="ADNI: every scan gets DX_bl")
    importer.add_argument("--out", type=nonempty_path, required=True, help="manifest CSV for `elr-mri train` / `evaluate`")
    importer.set_defaults(handler=import_cohort_command)


def _add_volumes(commands: argparse._SubParsersAction) -> None:
    volumes = commands.add_parser("volumes", help="regional brain volumes per scan from the registration's Jacobian",
                                  description="Regional brain volumes of each preprocessed scan, from the registration's Jacobian.")
    volumes.add_argument("--manifest", type=nonempty_path, required=True, help="manifest written by `elr-mri preprocess`")
    volumes.add_argument("--out", type=nonempty_path, help="CSV to write (default: volumes.csv beside preprocess's "
                         "manifest.csv, NAME_volumes.csv beside any other manifest NAME.csv); the per-scan cache goes "
                         "beside it, so a read-only preprocessed folder needs an --out elsewhere")
    volumes.add_argument("--jobs", type=int, default=1, help="scans measured in parallel (default 1)")
    volumes.add_argument("--registration-mm", type=float, default=2.0,
                         help="grid in mm of the SyN registration run for affinely preprocessed scans (default 2)")
    volumes.add_argument("--deterministic", action="store_true",
                         help="SyN on 1 ITK thread per job: the same volumes on any machine and --jobs (pass --jobs "
                              "as many as the cores to keep the speed)")
    volumes.add_argument("--truth", type=nonempty_path, help="simulated cohort's truth.csv: report how well volumes recover it")
    volumes.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    volumes.set_defaults(handler=volumes_command)


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
