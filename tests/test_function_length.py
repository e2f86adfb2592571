"""The project's functions stay short enough to read at once: each long one was split into functions with one job,
and this keeps a new one from growing back past the limit unnoticed."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "elr_mri", "preprocess", "scripts")
MAX_LINES = 60  # signature, docstring and body; the longest left (2026-12-07) is 57


def _long_functions(source: Path) -> list[str]:
    """'path:line name (N lines)' for each function of `source` longer than `MAX_LINES`."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    return [f"{source.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_LINES]


def test_no_function_is_longer_than_the_limit():
    long = [entry for package in PACKAGES for source in sorted((ROOT / package).rglob("*.py"))
            for entry in _long_functions(source)]
    assert not long, (f"over {MAX_LINES} lines: split into functions with one job each (same behaviour, same "
                      "refusals in the same order): " + "; ".join(long))
