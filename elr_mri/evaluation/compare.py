"""One table of every method scored on one evaluation set: the CNN run and the baselines beside it.

Reads the summary.json files `elr-mri evaluate` wrote under RUN/eval-<name>/ (the CNN) and
RUN/eval-<name>/baselines/*/ (the linear baselines), so what is compared was scored by the same
code, on the same participants, with the same bootstrap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

__all__ = ["HEADLINE_METRICS", "comparison_table", "require_same_splits"]

HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "auc_micro", "auc_macro")


def comparison_table(eval_dir: Path, cnn_name: str, level: str = "participant",
                     metrics: Sequence[str] = HEADLINE_METRICS, others: dict[str, Path] | None = None) -> pd.DataFrame:
    """Rows: method, metric, estimate, low, high: the CNN first, the `others` (name: evaluation
    folder of another run on the same set, e.g. ELR beside CE), then each baseline found."""
    eval_dir = Path(eval_dir)
    sources = [(cnn_name, eval_dir / "summary.json")]
    sources += [(name, Path(folder) / "summary.json") for name, folder in (others or {}).items()]
    sources += [(path.parent.name, path) for path in sorted(eval_dir.glob("baselines/*/summary.json"))]
    rows = []
    for method, path in sources:
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        rows += [{"method": method, "metric": m, **summary[level][m]} for m in metrics]
    return pd.DataFrame(rows, columns=["method", "metric", "estimate", "low", "high"])


def require_same_splits(run: Path, other: Path) -> None:
    """Refuse to compare two runs trained on different participant splits (their test sets differ)."""
    for folder in (run, other):
        if not (Path(folder) / "splits.csv").is_file():
            raise FileNotFoundError(f"{folder}: no splits.csv, so not an MRI run directory of `elr-mri train`; "
                                    "pass the --out of an MRI run")
    ours, theirs = (pd.read_csv(Path(r) / "splits.csv", dtype=str).sort_values("participant_id").reset_index(drop=True)
                    for r in (run, other))
    if not ours.equals(theirs):
        raise ValueError(f"{other} used other participant splits than {run}; train both on one manifest with one "
                         "data.split_seed")
