"""What the reproduction scripts share: run a config into a directory (or pick up where it stopped),
and print mean ± std tables in Markdown.

Each run directory is self-describing (the engine writes the resolved config.yaml there), so a
script that is killed can simply be started again: finished runs are read back, killed ones resume
from their last checkpoint, and only missing ones start from the config file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from elr_mri.config import RunConfig, load_config
from elr_mri.engine.runner import train

__all__ = ["ROOT", "run_status", "run_config", "run_or_resume", "percent", "mean_std", "markdown_table"]

ROOT = Path(__file__).resolve().parents[1]


def run_status(run_dir: Path) -> str:
    """'done' (summary.json written), 'resume' (a checkpoint to continue from) or 'new'."""
    if (run_dir / "summary.json").exists():
        return "done"
    if (run_dir / "checkpoints" / "last.pt").exists():
        return "resume"
    return "new"


def run_config(config: Path, overrides: list[str], run_dir: Path) -> RunConfig:
    """The validated config a run will use: its own saved copy when resuming, else the file + overrides."""
    if run_status(run_dir) == "resume":
        return load_config(run_dir / "config.yaml")
    return load_config(config, overrides)


def run_or_resume(config: Path, overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """Train `config` with `overrides` into `run_dir` unless it already finished; returns summary.json."""
    status = run_status(run_dir)
    if status != "done":
        train(run_config(config, overrides, run_dir), run_dir, resume=status == "resume")
    return json.loads((run_dir / "summary.json").read_text())


def percent(value: float | None, digits: int = 2) -> str:
    """A fraction or a paper figure already in percent (> 1) as 'xx.xx'; '–' when unknown."""
    if value is None or np.isnan(value):
        return "–"
    return f"{(value if value > 1 else 100 * value):.{digits}f}"


def mean_std(values: Iterable[float], digits: int = 2) -> str:
    """Percent mean ± std over seeds (just the mean for one seed); '–' when nothing is defined."""
    finite = [v for v in values if v is not None and not np.isnan(v)]
    if not finite:
        return "–"
    mean = 100 * float(np.mean(finite))
    return f"{mean:.{digits}f}" if len(finite) == 1 else f"{mean:.{digits}f} ± {100 * float(np.std(finite)):.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
