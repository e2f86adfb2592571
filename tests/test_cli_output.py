"""What `elr-mri` prints beside its commands' own output."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest


def test_warnings_the_library_logs_print_as_the_commands_own_with_one_handler(capsys: pytest.CaptureFixture) -> None:
    """Logged warnings (a manifest's dropped rows, a test split without a class) printed bare, unlike the
    `warning: ...` lines the commands print; `main` gives them that form, once however often it runs."""
    from elr_mri import cli
    from elr_mri.data.cohort import warn_once

    for _ in range(2):
        with pytest.raises(SystemExit):
            cli.main(["--version"])
    capsys.readouterr()
    warn_once("a test's manifest: a warning logged while a command runs")
    assert capsys.readouterr().err == "warning: a test's manifest: a warning logged while a command runs\n"


def test_an_undefined_auc_is_said_to_need_examples_of_its_class_and_of_another(capsys: pytest.CaptureFixture) -> None:
    """On a holdout of AD participants only, auc_AD is undefined because every scan is AD: the note said the set
    lacked "an AUC of a diagnosis no scan here carries", which reads as if AD were the class missing."""
    import numpy as np

    from elr_mri.commands.evaluate import _note_undefined
    from elr_mri.evaluation.metrics import bootstrap_metrics

    proba = np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    report = bootstrap_metrics(np.array([2, 2, 2]), proba, np.array(["a", "b", "c"]), ["CN", "MCI", "AD"], n_boot=10)
    _note_undefined({"scan": report}, Path("metrics.csv"))
    assert capsys.readouterr().err == (
        "note: auc_AD, auc_CN, auc_MCI, auc_macro undefined (nan; null in summary.json): the AUC of a class needs "
        "examples given it and examples given another, and auc_macro the AUC of every class; this set has examples "
        "given AD only; auc_micro counts the scores given to the absent classes as negatives only, which can lift it "
        "above the AUCs of the classes present\n")


def test_an_image_runs_notes_and_metrics_csv_call_its_images_images(capsys: pytest.CaptureFixture) -> None:
    """An image run's bootstrap draws images, yet its metrics.csv had a `participants` column (the image count) and
    its rarely-defined note said the resamples "drew no participant of a class"; MRI runs keep both."""
    import numpy as np

    from elr_mri.commands.evaluate import _note_rarely_defined
    from elr_mri.evaluation.metrics import bootstrap_metrics

    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.2, 0.2, 0.6]])
    labels, ids = np.array([0, 1, 2, 2]), np.array(["0", "1", "2", "3"])
    image = bootstrap_metrics(labels, proba, ids, ["CN", "MCI", "AD"], n_boot=50, level="image")
    _note_rarely_defined({"image": image}, 50, Path("metrics.csv"))
    note = capsys.readouterr().err
    assert "(the others drew no image of a class); those intervals come from the rest alone: more images " in note
    assert "participant" not in note and "participants" not in image.rows()[0]
    scan = bootstrap_metrics(labels, proba, ids, ["CN", "MCI", "AD"], n_boot=50)
    _note_rarely_defined({"scan": scan}, 50, Path("metrics.csv"))
    assert "drew no participant of a class" in capsys.readouterr().err and scan.rows()[0]["participants"] == 4


def test_a_many_class_sets_notes_name_a_few_metrics_and_the_csv_holding_them_all(capsys) -> None:
    """On a WebVision-like set of 20 of its 50 classes, the undefined and rarely-defined notes each named every
    per-class AUC in one line of dozens of names; past a screen's worth they name a few, the count and metrics.csv."""
    import numpy as np

    from elr_mri.commands.evaluate import _note_rarely_defined, _note_undefined
    from elr_mri.evaluation.metrics import bootstrap_metrics

    labels = np.repeat(np.arange(20), 2)
    proba = np.random.default_rng(0).dirichlet(np.ones(50), size=40)
    report = bootstrap_metrics(labels, proba, np.arange(40).astype(str), [f"n{i:08d}" for i in range(50)],
                               n_boot=40, level="image")
    csv = Path("eval-test/metrics.csv")
    _note_undefined({"image": report}, csv)
    _note_rarely_defined({"image": report}, 40, csv)
    undefined, rare = capsys.readouterr().err.splitlines()
    assert undefined.startswith("note: auc_macro, auc_n00000020, auc_n00000021, auc_n00000022, auc_n00000023, and 26 "
                                "more (31 in all; the rows of eval-test/metrics.csv with no estimate) undefined (nan;")
    assert "and " in rare and " more (" in rare and "the rows of eval-test/metrics.csv with fewer than 38 resamples" in rare
    assert rare.count(" in ") < 12 and "auc_n00000019" not in rare


def test_the_printed_metrics_say_what_was_scored_their_unit_and_their_interval(capsys: pytest.CaptureFixture) -> None:
    """`evaluate` printed `accuracy 66.7 [33.3, 100.0]` under the folder's path alone: neither the unit (metrics.csv
    holds fractions), the interval's level and kind, what was resampled, nor the set (a holdout or the test split).
    Then "in %" alone, over a Brier score (0 to 2) printed ×100 as the others: 64.0 read as 64%."""
    from pathlib import Path

    import numpy as np

    from elr_mri.commands.evaluate import _print_metrics, _scored_set_words
    from elr_mri.evaluation.metrics import bootstrap_metrics

    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    report = bootstrap_metrics(np.array([0, 1, 1]), proba, np.array(["a", "b", "c"]), ["CN", "MCI", "AD"], n_boot=20)
    _print_metrics({"participant": report}, Path("run/eval-nacc"), _scored_set_words(Path("data/nacc.csv"), "test"))
    assert capsys.readouterr().out.splitlines()[:3] == [
        "results: run/eval-nacc (the holdout data/nacc.csv, against its given labels)",
        "  in % (brier ×100, from 0 to 200), each figure estimate [low, high]: a 95% percentile interval over 20 "
        "bootstrap resamples of "
        "participants (all scans of each)",
        "  participant level (3 examples, 3 participants):"]
    assert _scored_set_words(None, "test") == "the run's test split, against its given labels"
    one = bootstrap_metrics(np.array([0]), proba[:1], np.array(["a"]), ["CN", "MCI", "AD"], n_boot=20)
    _print_metrics({"scan": one}, Path("run/eval-colin"), _scored_set_words(Path("colin.csv"), "test"))
    assert "  scan level (1 example, 1 participant):" in capsys.readouterr().out.splitlines()  # not "1 examples"


def test_a_debug_switch_left_exported_does_not_turn_the_checked_lines_into_tracebacks(cli_in_process) -> None:
    """`ELR_MRI_DEBUG=1 make test` (the switch still exported from debugging a command) failed the tests of one-line
    errors, which got tracebacks: the suite runs without it (conftest)."""
    assert "ELR_MRI_DEBUG" not in os.environ
    result = cli_in_process("train", "--config", "missing.yaml")
    assert (result.returncode, result.stderr) == (2, "elr-mri train: error: config file not found: missing.yaml (pass an "
                                                     "existing YAML file to --config)\n")


@pytest.mark.parametrize("value", ["0", "", " 0 "])
def test_elr_mri_debug_0_or_empty_keeps_the_one_line_error(cli_in_process, monkeypatch: pytest.MonkeyPatch,
                                                          value: str) -> None:
    """ELR_MRI_DEBUG=0, the usual way to switch a flag off, switched the tracebacks on: any value but empty or 0 does."""
    monkeypatch.setenv("ELR_MRI_DEBUG", value)
    result = cli_in_process("train", "--config", "missing.yaml")
    assert (result.returncode, result.stderr) == (2, "elr-mri train: error: config file not found: missing.yaml (pass an "
                                                     "existing YAML file to --config)\n")


def test_elr_mri_debug_1_raises_the_error_as_it_came(cli_in_process, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELR_MRI_DEBUG", "1")
    with pytest.raises(ValueError, match="config file not found: missing.yaml"):  # ConfigError, raised as it came
        cli_in_process("train", "--config", "missing.yaml")


def test_no_command_lists_the_commands_and_the_examples_parse(cli_in_process) -> None:
    """`elr-mri` alone said only "the following arguments are required: COMMAND", naming none; --help had no example.
    Each example line of --help parses with its command's parser as it stands."""
    import shlex

    from elr_mri.cli import _EPILOG, _mistyped, _parser
    from preprocess.arguments import parse_naming_unknown_options
    from preprocess.cli import build_parser as preprocess_parser

    result = cli_in_process()
    assert result.returncode == 2 and result.stdout == ""
    assert all(command in result.stderr for command in ("train", "evaluate", "preprocess-merge", "examples:"))
    examples = [shlex.split(line.split("#")[0])[1:] for line in _EPILOG.splitlines() if line.startswith("  elr-mri ")]
    assert len(examples) == 5
    for argv in examples:
        if argv[0] == "preprocess":  # forwarded: its own parser, which refuses what _mistyped would
            parse_naming_unknown_options(preprocess_parser(), argv[1:])
        else:
            assert _mistyped(_parser(), argv) is None, argv
            _parser().parse_args(argv)


@pytest.mark.parametrize(("typed", "expected"), [
    (["tarin", "--config", "x.yaml"], "elr-mri: unknown command tarin (did you mean train?)"),
    (["evalute", "--run", "runs/x"], "elr-mri: unknown command evalute (did you mean evaluate?)"),
    (["--verison"], "elr-mri: unrecognized arguments: --verison (did you mean --version?)"),
    (["--config", "x.yaml", "train"], "elr-mri: unrecognized arguments: --config (it goes after the command: "
                                      "elr-mri train --config ...)"),
    (["train", "configs/digits/elr_sym40.yaml"], "elr-mri train: unrecognized arguments: configs/digits/elr_sym40.yaml "
                                                 "(a value goes after its option, and none was given to --config or "
                                                 "--resume)"),
    (["evaluate", "runs/x", "--bootstrap", "10"], "elr-mri evaluate: unrecognized arguments: runs/x (a value goes "
                                                  "after its option, and none was given to --run)"),
    (["preprocess", "scans.csv", "prep"], "elr-mri preprocess: unrecognized arguments: scans.csv prep (a value goes "
                                          "after its option, and none was given to --input and --output)"),
    (["simulate-cohort", "data/sim"], "elr-mri simulate-cohort: unrecognized arguments: data/sim (a value goes after "
                                      "its option, and none was given to --out)"),
    # a YAML list or mapping the shell split at its spaces: said only "unrecognized arguments: 80]"
    (["train", "--config", "x.yaml", "--set", "schedule.milestones=[40,", "80]"],
     "elr-mri train: unrecognized arguments: 80] (quote a --set value that holds spaces: "
     "--set 'schedule.milestones=[40, 80]')"),
    (["train", "--config", "x.yaml", "--set", "train={epochs:", "3,", "batch_size:", "4}", "--out", "y"],
     "elr-mri train: unrecognized arguments: 3, batch_size: 4} (quote a --set value that holds spaces: "
     "--set 'train={epochs: 3, batch_size: 4}')"),
])
def test_a_mistyped_command_line_is_named_not_taken_for_a_missing_argument(cli_in_process, typed: list[str],
                                                                          expected: str) -> None:
    """argparse said "one of the arguments --config --resume is required" to `elr-mri train configs/x.yaml`, as if no
    file had been typed, "required: COMMAND" to `--verison`, and listed every command for `tarin`."""
    result = cli_in_process(*typed)
    assert (result.returncode, result.stderr) == (2, expected + "\n")


def test_argparse_keeps_its_own_messages_where_they_name_the_mistake(cli_in_process) -> None:
    """A value after the required option is argparse's "unrecognized arguments", a bad value its own line, and a
    command nothing is close to its list of commands: the check above stays out of their way."""
    for typed, expected in ((["train", "--config", "x.yaml", "extra"],
                             "elr-mri train: unrecognized arguments: extra\n"),
                            (["evaluate", "--run", "x", "--bootstrap", "many", "y"], "invalid int value: 'many'"),
                            (["xyz"], "invalid choice: 'xyz' (choose from 'train', ")):
        result = cli_in_process(*typed)
        assert result.returncode == 2 and expected in result.stderr, typed


def test_commands_suggested_for_paths_with_spaces_can_be_pasted(cli_in_process, tmp_path, capsys) -> None:
    """`--resume my runs/a`, `elr-mri evaluate --run my runs/a --manifest ...` and `cp my scans.csv ...` were
    printed as they are, so the shell split each path in two; `--resume` after Ctrl-C was already quoted."""
    import shlex

    from elr_mri.commands.train import _holdout_unscored
    from preprocess.cli import main as preprocess

    run = tmp_path / "my runs" / "digits"
    train = ("train", "--config", "configs/digits/elr_sym40.yaml", "--set", "train.epochs=1", "--set",
             "train.progress=false", "--set", "train.tensorboard=false", "--out", str(run))
    assert cli_in_process(*train).returncode == 0
    again = cli_in_process(*train)
    assert again.returncode == 2 and f"continue it with --resume {shlex.quote(str(run))} or" in again.stderr
    inside = cli_in_process("train", "--resume", str(run / "config.yaml"))
    assert inside.stderr.endswith(f"pass the run's folder: --resume {shlex.quote(str(run))}\n")

    holdout = tmp_path / "my holdout.csv"
    assert not _holdout_unscored(run, holdout)
    suggested = capsys.readouterr().err.split("once it can: ")[1]
    assert shlex.split(suggested) == ["elr-mri", "evaluate", "--run", str(run), "--manifest", str(holdout)]

    out = tmp_path / "my prep"
    out.mkdir()
    (out / "manifest.csv").write_text("participant_id,session_id,path\nsub-a,ses-M00,a.nii.gz\n")
    assert preprocess(["--input", str(out / "manifest.csv"), "--output", str(out)]) == 2
    copy = capsys.readouterr().err.split("(e.g. ")[1].split(") and pass")[0]
    assert shlex.split(copy) == ["cp", str(out / "manifest.csv"), str(tmp_path / "scans.csv")]


def _options_without_help(text: str) -> list[str]:
    """The options argparse's --help `text` lists with nothing said of them."""
    lines = text.split("\noptions:\n")[1].split("\n\n")[0].splitlines()
    return [line.strip() for line, after in zip(lines, [*lines[1:], ""]) if line.startswith("  -")
            and "  " not in line.strip() and (not after.startswith("      ") or after.strip().startswith("-"))]


def test_every_option_of_every_command_and_script_says_what_it_is_for(cli_in_process, import_script, capsys,
                                                                      monkeypatch) -> None:
    """cifar10n_cpu.py's --losses, --seeds, --out and --results (the last writes over bench/results/ by default),
    digits_benchmark.py's --losses, --settings, --seeds and --epochs, reproduce_paper_table.py's --table and
    mri_n1200.py train's options were listed bare: neither what they take nor their defaults."""
    from elr_mri.cli import _FORWARDED, _command_parsers, _parser

    helps = {command: cli_in_process(command, "--help").stdout for command in [*_command_parsers(_parser())]}
    assert set(_FORWARDED) <= set(helps)
    scripts = {"cifar10n_cpu": ["--help"], "digits_benchmark": ["--help"], "reproduce_paper_table": ["--help"],
               "webvision_ilsvrc12_list": ["--help"], "mri_demo": ["--help"], "mri_n1200": ["train", "--help"]}
    for name, argv in scripts.items():
        monkeypatch.setattr("sys.argv", [f"{name}.py", *argv])  # digits_benchmark and mri_demo parse sys.argv
        main = import_script(name).main
        with pytest.raises(SystemExit):
            if name in ("digits_benchmark", "mri_demo"):
                main()
            else:
                main(argv)
        helps[name] = capsys.readouterr().out
    bare = {name: _options_without_help(text) for name, text in helps.items()}
    assert not any(bare.values()), bare


def _options_with_unsaid_defaults(parser: argparse.ArgumentParser) -> list[str]:
    """The options of `parser` that take a value by default and whose help does not say which."""
    return [action.option_strings[-1] for action in parser._actions if action.option_strings
            and not (action.default in (None, [], argparse.SUPPRESS) or action.default is False)
            and "default" not in (action.help or "")]


def test_every_option_that_has_a_default_says_it_in_its_help() -> None:
    """evaluate --checkpoint, preprocess --transform, --normalise and --dtype and simulate-cohort --anatomy listed
    their choices without the one a command takes when the option is left out."""
    from elr_mri.cli import _command_parsers, _parser
    from elr_mri.simulate.cli import _parser as simulate_parser
    from preprocess.cli import build_merge_parser, build_parser

    parsers = {**_command_parsers(_parser()), "preprocess": build_parser(), "preprocess-merge": build_merge_parser(),
               "simulate-cohort": simulate_parser()}
    unsaid = {name: _options_with_unsaid_defaults(parser) for name, parser in parsers.items()}
    assert not any(unsaid.values()), unsaid


def test_every_commands_help_opens_with_a_sentence_of_what_it_does() -> None:
    """`elr-mri simulate-cohort --help` opened with "`elr-mri simulate-cohort`: write a ...", the module docstring's
    first line, backticks and all, where every other command's says what it does ("Train a classifier ...")."""
    from elr_mri.cli import _command_parsers, _parser
    from elr_mri.simulate.cli import _parser as simulate_parser
    from preprocess.cli import build_merge_parser, build_parser

    parsers = {**_command_parsers(_parser()), "preprocess": build_parser(), "preprocess-merge": build_merge_parser(),
               "simulate-cohort": simulate_parser()}
    unlike = {name: parser.description for name, parser in parsers.items()
              if not (parser.description[0].isupper() and "elr-mri" not in parser.description.split(".")[0])}
    assert not unlike, unlike


def test_the_options_evaluate_refuses_without_baselines_say_so_in_their_help(cli_in_process) -> None:
    """`--volumes` was "CSVs ... (for the volume baseline)" and `--drop-suspected` "MRI runs only: ...", and each was
    refused when given alone, for want of --baselines."""
    from elr_mri.cli import _command_parsers, _parser

    evaluate = _command_parsers(_parser())["evaluate"]
    for option in ("--volumes", "--drop-suspected"):
        refused = cli_in_process("evaluate", "--run", "runs/x", option, "x.csv")
        assert (refused.returncode, refused.stderr) == (2, "elr-mri evaluate: error: --volumes and --drop-suspected "
                                                           "belong to --baselines; add --baselines\n")
        help_text = next(action.help for action in evaluate._actions if option in action.option_strings)
        assert help_text.startswith("with --baselines: "), help_text


def test_evaluates_run_help_does_not_ask_for_a_finished_run() -> None:
    """`--run` said "a finished training run", yet a run still training is scored from its checkpoint so far, with a
    note (test_mri_cli.py's unfinished-run test), which a user waiting for a long run's first figures wants."""
    from elr_mri.cli import _command_parsers, _parser

    evaluate = _command_parsers(_parser())["evaluate"]
    help_text = next(action.help for action in evaluate._actions if "--run" in action.option_strings)
    assert "finished" not in help_text and "one still training is scored from its checkpoint so far" in help_text


def test_version_is_the_one_pyproject_gives(cli_in_process) -> None:
    """`elr-mri --version` reads elr_mri.__version__, a second copy of pyproject.toml's: a release that bumps one
    alone would report the old version."""
    import re
    from pathlib import Path

    version = re.search(r'^version = "(.+)"$', (Path(__file__).parents[1] / "pyproject.toml").read_text(), re.M)
    result = cli_in_process("--version")
    assert (result.returncode, result.stdout) == (0, f"elr-mri {version.group(1)}\n")  # tomllib: Python 3.11+


def test_train_names_its_mislabel_table_with_its_length_and_what_the_true_labels_say(tmp_path, capsys) -> None:
    """The printed figures skip summary.json's `mislabels` mapping: a run, even one without true labels, never
    pointed at suspected_mislabels.csv, and a CE run's empty table went unnoticed."""
    import numpy as np

    from elr_mri.commands.train import _print_summary
    from elr_mri.mislabels import suspected_mislabels

    table = suspected_mislabels(np.array([[0.2, 0.8], [0.9, 0.1], [0.7, 0.3]]), np.array([0, 0, 1]), ["CN", "AD"])
    table.assign(source="elr_target").to_csv(tmp_path / "suspected_mislabels.csv", index=False)
    summary = {"epochs": 8, "train_examples": 3, "suspected_mislabels_epoch": 8,
               "mislabels": {"flagged": 2, "truly_mislabelled": 1, "precision": 0.5, "recall": 1.0}}
    _print_summary(tmp_path, summary)
    assert (f"suspected mislabels: 2 of 3 training examples, from elr_target of epoch 8, widest margin first: "
            f"{tmp_path / 'suspected_mislabels.csv'} (against the true labels 1 of them wrong, of 1 wrong in all)"
            ) in capsys.readouterr().out
    table.iloc[:0].to_csv(tmp_path / "suspected_mislabels.csv", index=False)  # a memorizing CE lists nothing
    _print_summary(tmp_path, {"epochs": 8, "train_examples": 3, "suspected_mislabels_epoch": 8})
    assert "suspected mislabels: 0 of 3 training examples of epoch 8" in capsys.readouterr().out
    (tmp_path / "suspected_mislabels.csv").write_bytes(b"")  # emptied by hand: the finished run still prints
    _print_summary(tmp_path, {"epochs": 8, "train_examples": 3, "suspected_mislabels_epoch": 8})
    assert "suspected mislabels" not in capsys.readouterr().out
    (tmp_path / "suspected_mislabels.csv").unlink()
    _print_summary(tmp_path, {"epochs": 8, "train_examples": 3, "suspected_mislabels_epoch": 8})
    assert "suspected mislabels" not in capsys.readouterr().out


def test_train_says_each_epoch_in_a_line_where_stderr_is_no_terminal(cli_in_process, tmp_path) -> None:
    """Under nohup, SLURM or `| tee` stderr is a file or a pipe: tqdm's bars went there as carriage returns and cursor
    moves, and no line said an epoch's loss or accuracy until the run ended. There a line per epoch replaces them."""
    import re

    result = cli_in_process("train", "--config", "configs/digits/elr_sym40.yaml", "--set", "data.train_subset=200",
                            "--set", "train.epochs=2", "--set", "train.tensorboard=false", "--out", str(tmp_path / "run"))
    assert result.returncode == 0 and "\r" not in result.stderr and "\x1b" not in result.stderr
    first, last = [line for line in result.stderr.splitlines() if " epoch " in line]
    scores = r"lr 0\.05, train_loss \S+, train_acc_given [\d.]+, val_acc [\d.]+, val_balanced_acc [\d.]+, test_acc [\d.]+"
    assert re.fullmatch(rf"\d\d:\d\d:\d\d epoch 1/2: {scores} \(best val_acc so far\); [\d.]+ s, [\d.]+ s left", first)
    assert re.fullmatch(rf"\d\d:\d\d:\d\d epoch 2/2: {scores}( \(best val_acc so far\))?; [\d.]+ s, the last epoch", last)


@pytest.mark.slow  # a fresh process (its imports): a block-buffered stdout is a new process's
def test_stdout_and_stderr_keep_their_order_in_one_log_file(cli_in_process, tmp_path) -> None:
    """`elr-mri ... > log 2>&1` (nohup, SLURM): Python held stdout in blocks, so the summary a command printed came
    after the stderr lines that followed it (here a finished run's warning), or never, where the job was killed."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    run = tmp_path / "run"
    assert cli_in_process("train", "--config", "configs/digits/elr_sym40.yaml", "--set", "data.train_subset=200",
                          "--set", "train.epochs=1", "--set", "train.progress=false", "--set", "train.tensorboard=false",
                          "--out", str(run)).returncode == 0
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "warnings": ["a warning printed after the summary"]}))
    batch_job = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}  # as a job's
    with open(tmp_path / "log", "w") as log:
        subprocess.run([sys.executable, "-m", "elr_mri", "train", "--resume", str(run)], stdout=log, env=batch_job,
                       stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1], check=True)
    lines = (tmp_path / "log").read_text().splitlines()
    assert lines[1] == f"run directory: {run}" and lines[-1] == "warning: a warning printed after the summary", lines


def test_a_bootstrap_past_memory_is_refused_before_the_run_is_read(tmp_path: Path, cli_in_process) -> None:
    """`evaluate --bootstrap` past 1 GiB of kept resamples was refused after the checkpoint was read and the whole set
    predicted (minutes for a holdout): the run's data_shape.json has its class count, so it is refused first, here
    before a damaged best.pt that loading would refuse."""
    from elr_mri.config import load_config
    from elr_mri.engine.start import train

    config = Path(__file__).resolve().parents[1] / "configs" / "digits" / "elr_sym40.yaml"
    run = tmp_path / "run"
    train(load_config(config, ["data.train_subset=200", "train.epochs=1", "train.progress=false",
                               "train.tensorboard=false"]), run)
    (run / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    result = cli_in_process("evaluate", "--run", str(run), "--bootstrap", "1000000000")
    assert (result.returncode, result.stdout, result.stderr) == (
        2, "", "elr-mri evaluate: error: --bootstrap 1000000000: every resample's 117 values (10 classes) are kept for "
               "the percentiles, 871.7 GiB; pass at most 1,147,160 (the default is 1000)\n")
    assert not (run / "eval-test").exists()


@pytest.mark.parametrize("arguments, shown, fix", [
    (lambda pipe, folder: ["preprocess", "--input", pipe, "--output", folder / "prep"], "", ""),
    (lambda pipe, folder: ["import-cohort", "--scans", folder / "scans.csv", "--adnimerge", pipe, "--out",
                           folder / "adni.csv"], "ADNIMERGE table (--adnimerge) ", ""),
    (lambda pipe, folder: ["volumes", "--manifest", pipe], "--manifest ", "; pass the manifest `elr-mri preprocess` wrote"),
    (lambda pipe, folder: ["train", "--config", "configs/adni/cpu_small.yaml", "--set", f"data.mri.manifest={pipe}"],
     "data.mri.manifest = ", ""),
])
def test_a_table_given_as_a_pipe_is_said_to_be_one(cli_in_process, tmp_path, arguments, shown, fix) -> None:
    """The shell's `<(grep -v sub-05 manifest.csv)` passes a pipe (/dev/fd/63), which exists but is no file: each
    command said "no such file" (or "file not found"), naming one that is there. A table is read more than once,
    which a pipe cannot be, so it is refused, unopened, saying what it is."""
    pipe = tmp_path / "table.csv"
    os.mkfifo(pipe)
    (tmp_path / "scans.csv").write_text("participant_id,session_id,path\n")
    command = [str(argument) for argument in arguments(pipe, tmp_path)]
    result = cli_in_process(*command)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, f"elr-mri {command[0]}: error: {shown}{pipe}: is a pipe or device, not a file (a shell's <(...)?); write "
           f"the table to a file and pass that{fix}")
