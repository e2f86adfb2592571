"""README's figures, checked against the files in bench/results that recorded them: a figure copied by hand drifts
from its source when either is edited, and the project reports only what was run and seen.

The digits table must be its results file's, cell for cell; every interval of the Results section ("+6.8 [1.8,
11.7]") must be in a results file, and each row of the MRI table that names its file in that file; each command of
the CPU benchmarks table must be the one its file records, and the command each results file records must name a
script that exists and takes the options given. Nothing is run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results"
README = (ROOT / "README.md").read_text()
INTERVAL = re.compile(r"[+-]?\d+\.\d+ \[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]")
RECORDED = re.compile(r"`((?:\.venv/bin/)?python (?:bench|scripts)/[^`]+)`")


def _plain(text: str) -> str:
    """Minus signs and dashes as ASCII, whitespace (line breaks included) as one space."""
    return re.sub(r"\s+", " ", text.replace("−", "-").replace("–", "-"))


def _section(heading: str) -> str:
    """README from `heading` to the next heading of the same level or above."""
    start = README.index(f"\n{heading}") + 1
    body = README.index("\n", start)
    level = len(heading.split(" ")[0])
    end = re.search(r"^#{1,%d} " % level, README[body:], re.M)
    return README[start:body + end.start()] if end else README[start:]


def _table(text: str) -> list[str]:
    """The first Markdown table of `text`, its lines."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| "))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def _interval_sources(text: str) -> list[tuple[str, str]]:
    """(interval, the context it was found in) for every interval of `text`."""
    plain = _plain(text)
    return [(match.group(0), plain[max(0, match.start() - 80):match.end()]) for match in INTERVAL.finditer(plain)]


def _in(interval: str, text: str) -> bool:
    """`interval` in `text`, with or without its plus sign, or negated ("7.8 [1.6, 14.1] points below" quotes
    -7.8 [-14.1, -1.6])."""
    value, low, high = (float(number) for number in re.findall(r"[+-]?\d+\.\d+", interval))
    digits = len(interval.split(" ")[0].split(".")[1])
    negated = f"{-value:.{digits}f} [{-high:.{digits}f}, {-low:.{digits}f}]"
    return any(form in text for form in (interval, interval.lstrip("+"), negated, negated.lstrip("+")))


def test_readme_digits_table_is_its_results_file_cell_for_cell() -> None:
    readme = _table(_section("### Digits"))
    recorded = _table((RESULTS / "digits.md").read_text())
    assert len(readme) == 14  # the header, its rule and 12 rows: the reading finds the table
    assert readme == recorded, "README's digits table differs from bench/results/digits.md: copy the file's"


def test_every_interval_in_readme_results_is_in_a_results_file() -> None:
    recorded = _plain(" ".join(path.read_text() for path in RESULTS.glob("*.md")))
    found = _interval_sources(_section("## Results"))
    assert len(found) > 100
    missing = [context for interval, context in found if not _in(interval, recorded)]
    assert not missing, "README quotes intervals no file in bench/results holds:\n" + "\n".join(missing)


def test_each_mri_table_row_quotes_the_file_it_names() -> None:
    rows = [line for line in _section("### Does ELR beat CE on MRI?").splitlines()
            if line.startswith("| ") and re.search(r"`(\w+\.md)` \|$", line)]
    assert len(rows) > 15
    wrong = []
    for row in rows:
        name = re.search(r"`(\w+\.md)` \|$", row).group(1)
        recorded = _plain((RESULTS / name).read_text())
        wrong += [f"{name}: {interval} ({row[:60]}…)" for interval, _ in _interval_sources(row)
                  if not _in(interval, recorded)]
    assert not wrong, "README's MRI table quotes figures its named file lacks:\n" + "\n".join(wrong)


def test_each_cpu_benchmark_command_is_the_one_its_file_records() -> None:
    table = _table(_section("### Other CPU benchmarks"))[2:]
    commands = [re.search(r"`\.venv/bin/(python bench/\S+\.py[^`]*)`", row).group(1) for row in table]
    assert len(commands) == len(table) > 5
    recorded = [command.removeprefix(".venv/bin/") for path in RESULTS.glob("*.md")
                for command in RECORDED.findall(path.read_text())]
    unmatched = [command for command in commands  # the same, or more options but the default --out (the table's file)
                 if not any(line == command or line.startswith(f"{command} ") and "--out" not in line
                            for line in recorded)]
    assert not unmatched, f"README's benchmark commands no file in bench/results records: {unmatched}"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.md")), ids=lambda path: path.name)
def test_the_command_a_results_file_records_still_runs_as_written(path: Path) -> None:
    """The script exists and takes each option given (an option renamed since leaves a command that fails)."""
    for command in RECORDED.findall(path.read_text()):
        _, script, *words = shlex.split(command.removeprefix(".venv/bin/"))
        assert (ROOT / script).is_file(), f"{path.name} records `{command}`: {script} is not in the project"
        source = _option_source(ROOT / script)
        for option in {word.split("=")[0] for word in words if word.startswith("--")}:
            assert f'"{option}"' in source, f"{path.name} records `{command}`: {script} has no {option}"


def _option_source(script: Path) -> str:
    """The script's text and that of the modules beside it that it imports: several benchmarks take their --set from
    bench/seeded_runs.py."""
    text = script.read_text()
    helpers = [script.parent / f"{name}.py" for name in re.findall(r"^from (\w+) import", text, re.M)]
    return text + "".join(path.read_text() for path in helpers if path.is_file())


def test_the_bootstrap_timing_at_a_thousand_classes_names_the_most_resamples_evaluate_takes_there() -> None:
    """README timed one resample of a 50,000 × 1000 set as if the default 1000 resamples ran there, beside the
    refusal of a count whose kept values pass 1 GiB, which at 1000 classes refuses any count past 134."""
    from elr_mri.evaluation.metrics import refuse_resamples_past_memory

    with pytest.raises(ValueError, match=r"pass at most (\d+) ") as refused:
        refuse_resamples_past_memory(10**6, 1000)
    most = re.search(r"pass at most (\d+) ", str(refused.value)).group(1)
    timing = re.search(r"50,000 images × 1000 classes [^;]*", _plain(README))
    assert timing and f"at 1000 classes `--bootstrap` takes at most {most}," in timing.group(0), timing
