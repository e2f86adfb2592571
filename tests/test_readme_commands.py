"""README's commands, settings and files, checked against the code: a newcomer copies them as they stand.

Every `elr-mri` command README prints must parse with that command's own parser, every script it runs must
exist and take the options given, every setting it names (`train.threads`, `data.mri.val_labels`) must be a
key of the config schema, and every project file it points to must be there. Nothing is run.
"""

from __future__ import annotations

import re
import shlex
import typing
from pathlib import Path

import pytest
import yaml

from elr_mri.cli import _parser as elr_mri_parser
from elr_mri.config import RunConfig, dotted_keys
from elr_mri.simulate.cli import _parser as simulate_parser
from preprocess.cli import build_merge_parser, build_parser as preprocess_parser

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
FORWARDED = {"preprocess": preprocess_parser, "preprocess-merge": build_merge_parser,
             "simulate-cohort": simulate_parser}
# A setting as README writes one: a section, a dot, a key (`train.threads`, `data.mri.cache_dir`); not part of a
# module path (`elr_mri.data.noise`), a file name (`elr_plus.yaml`) or a lock file (`RUN/.train.lock`)
SETTING = re.compile(r"(?<![\w./])((?:data|model|loss|elr_plus|optim|schedule|train)(?:\.\w+)+)(?!\.?\w*\.(?:yaml|py))")
SETTING_VALUES = re.compile(r"`((?:data|model|loss|elr_plus|optim|schedule|train)(?:\.\w+)+): ([\w|.-]+)`")
PROJECT_PATH = re.compile(r"(?<![\w./-])((?:bench|configs|elr_mri|preprocess|scripts|tests)/[\w./{},-]*[\w}])")


def _commands() -> list[list[str]]:
    """README's command lines: those of its code blocks (continuations joined, comments dropped) and the inline
    ones it spells out from `.venv/bin/`, as argument lists."""
    lines = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", README, re.S | re.M):
        lines += [line.split(" #")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    prose = re.sub(r"^```.*?^```", "", README, flags=re.S | re.M)
    lines += [span for span in re.findall(r"`([^`]+)`", prose) if span.startswith(".venv/bin/") and " " in span]
    wanted = re.compile(r"(\.venv/bin/(elr-mri|python (scripts|bench)/)|(scripts|bench)/\S+\.(py|sh)( |$))")
    chosen = dict.fromkeys(line.replace("$SLURM_ARRAY_TASK_ID", "0") for line in lines if wanted.match(line))
    return [shlex.split(line) for line in chosen]


def _elr_mri_commands() -> list[list[str]]:
    return [words[1:] for words in _commands() if words[0].endswith("elr-mri")]


def _script_commands() -> list[list[str]]:
    return [words[1:] if words[0].endswith("python") else words for words in _commands()
            if not words[0].endswith("elr-mri")]


def test_readme_shows_the_commands_this_test_reads() -> None:
    """The reading above finds README's commands (a change to its code blocks' layout must not empty the test)."""
    commands = {words[0] for words in _elr_mri_commands()}
    assert {"train", "evaluate", "explain", "volumes", "import-cohort", "preprocess", "preprocess-merge",
            "simulate-cohort"} <= commands
    assert any(words[0] == "scripts/reproduce_paper_table.py" for words in _script_commands())


@pytest.mark.parametrize("argv", _elr_mri_commands(), ids=" ".join)
def test_every_elr_mri_command_in_readme_parses_and_names_real_settings_and_configs(argv: list[str]) -> None:
    command, *options = argv
    if command in FORWARDED:
        FORWARDED[command]().parse_args(options)
        return
    args = elr_mri_parser().parse_args(argv)
    keys = set(dotted_keys(RunConfig))
    for override in getattr(args, "overrides", []):
        assert override.split("=")[0] in keys, f"README's --set {override}: no such setting"
    config = getattr(args, "config", None)
    if config is not None and not str(config).startswith("runs/"):  # a run's own config.yaml, made by the line above
        assert (ROOT / config).is_file(), f"README's --config {config}: no such file"


@pytest.mark.parametrize("argv", _script_commands(), ids=" ".join)
def test_every_script_readme_runs_exists_and_takes_the_options_given(argv: list[str]) -> None:
    script, *words = argv
    assert (ROOT / script).is_file(), f"README runs {script}: no such file"
    source = (ROOT / script).read_text()
    for option in {word.split("=")[0] for word in words if word.startswith("--")}:
        assert f'"{option}"' in source, f"README runs {script} {option}: the script has no such option"


def test_every_setting_readme_names_is_a_config_key() -> None:
    keys = set(dotted_keys(RunConfig))
    named = set(SETTING.findall(README))
    assert len(named) > 40  # the reading finds them
    unknown = sorted(name for name in named if name not in keys)
    assert not unknown, f"README names settings the schema lacks: {unknown}"


def test_every_choice_readme_gives_a_setting_is_one_it_takes() -> None:
    """`train.select: val_balanced_acc`, `data.mri.blur_on: auto|loader|device`: each value README writes for a
    setting of a fixed set of choices is among them."""
    wrong = []
    for key, values in SETTING_VALUES.findall(README):
        *sections, name = key.split(".")
        section = RunConfig
        for part in sections:
            section = typing.get_type_hints(section)[part]
        hint = typing.get_type_hints(section)[name]
        if typing.get_origin(hint) is typing.Literal:
            wrong += [f"{key}: {value}" for value in values.split("|")
                      if yaml.safe_load(value) not in typing.get_args(hint)]
    assert not wrong, f"README gives settings values they do not take: {wrong}"


def test_every_project_file_readme_names_is_there() -> None:
    """Paths such as `configs/adni/{ce,elr,elr_plus}.yaml` name each file of the braces."""
    missing = []
    for path in set(PROJECT_PATH.findall(README)):
        head, braces, tail = re.match(r"([^{]*)(?:\{([^}]*)\})?(.*)", path).groups()
        for name in braces.split(",") if braces else [""]:
            if not (ROOT / f"{head}{name}{tail}").exists():
                missing.append(f"{head}{name}{tail}")
    assert not missing, f"README names files that are not in the project: {sorted(missing)}"


def test_every_make_target_readme_names_is_in_the_makefile() -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`(?:\w+=\S+ )*make ([\w-]+)", README)) | set(re.findall(r"^make ([\w-]+)", README, re.M))
    assert {"demo", "test", "demo-digits"} <= named
    assert named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"


def test_readme_gives_the_exit_statuses_help_gives() -> None:
    """README's list of exit statuses says what `elr-mri --help` says: it gave 1 for failed scans only, where
    `preprocess-merge` also exits 1 for shards that cannot be joined (none, some missing, other settings), which a
    script testing for 2, README's status for a path, took for a success or another mistake."""
    epilog = " ".join(elr_mri_parser().epilog.split())
    statuses = re.search(r"Exit status: (.*)$", epilog).group(1)
    listed = re.search(r"lists the commands with examples and the exit statuses \((.*?)\);", " ".join(README.split()))
    assert listed, "README's list of exit statuses is not where this test reads it"
    codes = re.findall(r"(?:^|; )(\d+) ", statuses)
    # 1 for simulate-cohort's dead worker and train's stopped torchrun process, 141 for `| head`: once unlisted
    assert codes == ["0", "1", "2", "130", "141", "143"]  # the reading finds them
    assert codes == re.findall(r"(?:^|, )(\d+) ", listed.group(1))
    for command in ("preprocess-merge", "simulate-cohort", "torchrun"):
        assert command in statuses and command in listed.group(1)


def test_every_environment_switch_the_code_reads_is_in_readme() -> None:
    """`ELR_MRI_DEBUG`, which turns a command's one-line error back into its traceback, was read by the code and named
    in no place a user hunting a bug would look: each `ELR_MRI_*` variable the project reads must be in README."""
    read = {name for folder in ("elr_mri", "preprocess", "scripts", "bench") for path in (ROOT / folder).rglob("*.py")
            for name in re.findall(r"\bELR_MRI_[A-Z_]+\b", path.read_text())}
    assert "ELR_MRI_DEBUG" in read  # the search finds them
    missing = sorted(name for name in read if f"`{name}=" not in README)
    assert not missing, f"README does not say how to set {missing}"
