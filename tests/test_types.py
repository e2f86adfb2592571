"""The type hints say what the code does: mypy (pinned in pyproject's dev extra, set up in its [tool.mypy]) finds
nothing in the package, the scripts and the benchmarks, and every function there is annotated. Hints had drifted from
the code: a parameter typed `int | None` that was always an int, a dict typed by its values' keys, a dataset typed as
torch's `Dataset` that the engine read labels from. pyflakes (pinned beside it) finds no unused or undefined name."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("elr_mri", "preprocess", "scripts", "bench", "tests")


def test_mypy_finds_no_type_errors() -> None:
    pytest.importorskip("mypy", reason="mypy comes with the dev extra: pip install -e '.[dev]'")
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_pyflakes_finds_no_unused_or_undefined_names() -> None:
    """An unused import or variable is dead code a reader must rule out; an undefined name fails only when its line
    runs, which a rarely taken error branch may never do in the tests."""
    pytest.importorskip("pyflakes", reason="pyflakes comes with the dev extra: pip install -e '.[dev]'")
    result = subprocess.run([sys.executable, "-m", "pyflakes", *CHECKED], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
