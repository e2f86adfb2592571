"""README's Python blocks, run as a reader pastes them: each in a fresh interpreter, in an empty folder.

A block that names a variable it never defines, or a name the package does not export, fails here rather than in
the hands of someone dropping the losses into their own training loop.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


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
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
