"""README's Python blocks, run as a reader pastes them: each in a fresh interpreter, in an empty folder; and the
`python -c` lines of its shell blocks, on small tables of the files they read.

A block that names a variable it never defines, or a name the package does not export, fails here rather than in
the hands of someone dropping the losses into their own training loop.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)


def test_readme_has_python_blocks() -> None:
    """The reading above finds them (a change to README's fences must not empty the tests below)."""
    assert any("ELRLoss" in block for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{number}" for number in range(len(BLOCKS))])
def test_readme_python_block_imports_public_names_only(block: str) -> None:
    for node in ast.walk(ast.parse(block)):
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "elr_mri":
            exported = importlib.import_module(node.module).__all__
            assert {alias.name for alias in node.names} <= set(exported), node.module


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{number}" for number in range(len(BLOCKS))])
def test_readme_python_block_runs(block: str, tmp_path: Path) -> None:
    _run(block, tmp_path)


def _run(code: str, folder: Path) -> None:
    """`code` in a fresh interpreter in `folder`, as a reader's paste runs it; it must exit 0. The limit is a hang
    guard: a block took 45 s beside other tests (torch's import alone ~35 s) at a load of 10, near the 120 s it had."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def _shell_one_liners() -> list[str]:
    """The code of each `.venv/bin/python -c "..."` line of README's bash blocks, continuation lines joined."""
    lines = [line for block in re.findall(r"^```bash\n(.*?)^```", README, re.S | re.M)
             for line in block.replace("\\\n", " ").splitlines()]
    return [shlex.split(line)[2] for line in lines if line.startswith(".venv/bin/python -c ")]


def test_readme_truth_merge_line_gives_the_training_manifest_the_true_diagnoses(tmp_path: Path) -> None:
    """The MRI pipeline's line that joins a simulated cohort's true diagnoses to the training manifest (so that a run
    scores its mislabel table) matches them by participant and session, whatever truth.csv's row order and extra
    rows, and run a second time replaces the column rather than adding another."""
    (code,) = [code for code in _shell_one_liners() if "truth.csv" in code]
    (tmp_path / "data" / "sim").mkdir(parents=True)
    ids = {"participant_id": ["sub-01", "sub-01", "sub-02"], "session_id": ["ses-M00", "ses-M12", "ses-M00"]}
    pd.DataFrame({**ids, "diagnosis": ["CN", "AD", "AD"]}).to_csv(tmp_path / "data" / "adni.csv", index=False)
    pd.DataFrame({"participant_id": ["sub-02", "sub-09", "sub-01", "sub-01"],
                  "session_id": ["ses-M00", "ses-M00", "ses-M12", "ses-M00"],
                  "diagnosis": ["AD", "CN", "AD", "CN"], "true_diagnosis": ["MCI", "CN", "MCI", "CN"]}
                 ).to_csv(tmp_path / "data" / "sim" / "truth.csv", index=False)
    for _ in range(2):
        _run(code, tmp_path)
    merged = pd.read_csv(tmp_path / "data" / "adni.csv")
    assert list(merged.columns) == ["participant_id", "session_id", "diagnosis", "true_diagnosis"]
    assert merged[["participant_id", "session_id"]].to_dict("list") == ids
    assert list(merged["true_diagnosis"]) == ["CN", "MCI", "MCI"]
