"""What `make setup` and environment.yml install, checked against what the code needs.

A module the code imports but pyproject.toml does not declare works only while another package happens to pull it in
(threadpoolctl came with scikit-learn); a declared one nothing imports is a download for nothing.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
CODE = ("elr_mri", "preprocess", "scripts", "bench")
# declared packages the code reaches through another one's module, not by their own import name
USED_THROUGH = {"tensorboard": "torch.utils.tensorboard"}


def _name(requirement: str) -> str:
    """`scikit-learn>=1.4` → `scikit-learn`, normalised as pip compares names."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _imports(folders: tuple[str, ...]) -> set[str]:
    """The absolute imports (full dotted names) of every Python file under `folders`."""
    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    found.add(node.module)
    return found


def _undeclared(folders: tuple[str, ...], declared: set[str]) -> list[str]:
    """Third-party top-level modules imported under `folders` that no declared distribution provides."""
    own = {"elr_mri", "preprocess"} | {path.stem for folder in folders for path in (ROOT / folder).rglob("*.py")}
    providers = importlib.metadata.packages_distributions()
    tops = {name.split(".")[0] for name in _imports(folders)} - own - set(sys.stdlib_module_names)
    return sorted(top for top in tops if not {_name(dist) for dist in providers.get(top, [top])} & declared)


def test_every_module_the_code_imports_is_declared() -> None:
    declared = {_name(requirement) for requirement in _pyproject()["project"]["dependencies"]}
    assert not _undeclared(CODE, declared), "imported, not in pyproject.toml's dependencies"


def test_every_module_the_tests_import_is_declared() -> None:
    project = _pyproject()["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    declared = {_name(requirement) for requirement in requirements}
    assert not _undeclared(("tests",), declared), "imported by tests, not in dependencies or the dev extra"


def test_every_declared_dependency_is_imported() -> None:
    imported = _imports(CODE)
    tops = {name.split(".")[0] for name in imported}
    provided: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            provided.setdefault(_name(dist), set()).add(module)
    names = [_name(requirement) for requirement in _pyproject()["project"]["dependencies"]]
    unused = [name for name in names if not provided.get(name, set()) & tops and USED_THROUGH.get(name) not in imported]
    assert not unused, "declared in pyproject.toml, imported nowhere"
