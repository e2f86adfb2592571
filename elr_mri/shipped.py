"""The repository's configs/ folder as installed with the package: a wheel holds it as elr_mri/configs, so that
`--config configs/digits/elr_sym40.yaml` (the README's and `--help`'s examples) works for a user who installed elr-mri
and has no repository to run it from. In a checkout (an editable install too) configs/ is read from the project,
and the development data beside it (../shared) is found from `checkout_root`."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["SHIPPED_CONFIGS", "checkout_root", "shipped_copy"]

SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


def checkout_root(module: Path = Path(__file__)) -> Path | None:
    """The project folder (the one with pyproject.toml) that `module`, a file of the package, is run from in a
    checkout; None where the package is installed: there the folder above it is the Python installation's, and
    a path built beside it named a lib/python3.x/shared/... that no user has."""
    root = module.resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def shipped_copy(path: Path) -> Path:
    """`path`, or the installed copy of it where `path` is a relative `configs/...` file missing here that the
    installed package holds, said in one line on stderr (a file of the user's own of that name is always read)."""
    if path.exists() or path.is_absolute() or path.parts[:1] != ("configs",):
        return path
    copy = SHIPPED_CONFIGS.joinpath(*path.parts[1:])
    if not copy.is_file():
        return path
    print(f"note: no {path} in {Path.cwd()}; reading the copy installed with elr-mri, {copy}", file=sys.stderr)
    return copy
