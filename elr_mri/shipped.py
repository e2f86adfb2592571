"""The repository's configs/ folder as installed with the package: a wheel holds it as elr_mri/configs, so that
`--config configs/digits/elr_sym40.yaml` (the README's and `--help`'s examples) works for a user who installed elr-mri
and has no repository to run it from. In a checkout (the editable install `make setup` makes) the project's configs/
stands in for it, so the same command run from a folder of one's own finds it there too; the development data beside
the checkout (../shared) is found from `checkout_root`."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

__all__ = ["checkout_root", "nearest_own_config", "shipped_copy"]


def checkout_root(module: Path = Path(__file__)) -> Path | None:
    """The project folder (the one with pyproject.toml) that `module`, a file of the package, is run from in a
    checkout; None where the package is installed: there the folder above it is the Python installation's, and
    a path built beside it named a lib/python3.x/shared/... that no user has."""
    root = module.resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def _own_configs() -> tuple[Path, str]:
    """The folder of elr-mri's own configs and how the note names it: the checkout's configs/ where the package runs
    from one (an editable install has no elr_mri/configs: run outside the project, `--config configs/...` found
    nothing), else the copy a wheel installs inside the package."""
    root = checkout_root()
    if root is not None:
        return root / "configs", "the copy in elr-mri's checkout"
    return Path(__file__).resolve().parent / "configs", "the copy installed with elr-mri"


def shipped_copy(path: Path) -> Path:
    """`path`, or elr-mri's own copy of it (`_own_configs`) where `path` is a relative `configs/...` file missing
    here, said in one line on stderr (a file of the user's own of that name is always read)."""
    if path.exists() or path.is_absolute() or path.parts[:1] != ("configs",):
        return path
    folder, which = _own_configs()
    copy = folder.joinpath(*path.parts[1:])
    if not copy.is_file():
        return path
    print(f"note: no {path} in {Path.cwd()}; reading {which}, {copy}", file=sys.stderr)
    return copy


def nearest_own_config(path: Path) -> str:
    """For a relative `configs/...` file found neither here nor among elr-mri's own, words for its not-found line:
    the folder of elr-mri's own configs and the nearest name there. A misspelt `configs/digits/elr_sym4.yaml` from a
    pip install said only "config file not found", not where the configs it ships are."""
    if path.is_absolute() or path.parts[:1] != ("configs",):
        return ""
    folder, _ = _own_configs()
    names = sorted(found.relative_to(folder).as_posix() for found in folder.rglob("*.yaml"))
    near = difflib.get_close_matches(Path(*path.parts[1:]).as_posix(), names, n=1)
    return f"; elr-mri's own configs are in {folder}" + (f", the nearest: configs/{near[0]}" if near else "")
