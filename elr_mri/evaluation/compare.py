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

__all__ = ["HEADLINE_METRICS", "comparison_table", "format_interval"]

HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "auc_micro", "auc_macro")


def comparison_table(eval_dir: Path, cnn_name: str, level: str = "participant",
                     metrics: Sequence[str] = HEADLINE_METRICS) -> pd.DataFrame:
    """Rows: method, metric, estimate, low, high (the CNN first, then each baseline found)."""
    eval_dir = Path(eval_dir)
    sources = [(cnn_name, eval_dir / "summary.json")]
    sources += [(path.parent.name, path) for path in sorted(eval_dir.glob("baselines/*/summary.json"))]
    rows = []
    for method, path in sources:
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        rows += [{"method": method, "metric": m, **summary[level][m]} for m in metrics]
    return pd.DataFrame(rows, columns=["method", "metric", "estimate", "low", "high"])


def format_interval(estimate: float, low: float, high: float) -> str:
    """`72.5 [60.0, 85.0]`: percentages with the 95% interval."""
    return f"{100 * estimate:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
