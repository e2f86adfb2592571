"""Fixtures shared by several test files."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="session")
def import_script() -> Iterator[Callable[[str], ModuleType]]:
    """Import a file of scripts/ as a module (scripts/ is not a package; its files import each other)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(SCRIPTS))
