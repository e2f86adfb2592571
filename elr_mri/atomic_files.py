"""Text and JSON files written atomically (a temporary file renamed into place), without torch: commands
that write only tables (`import-cohort`, `volumes`) and scripts need not pay torch's import for them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from preprocess.sidecar import atomic_path

__all__ = ["atomic_write_text", "atomic_write_json"]


def atomic_write_text(text: str, path: Path) -> None:
    """`text` to a temporary file beside `path`, then renamed into place. A write the disk refused names `path`:
    the OS's error from a write, unlike one from opening, carries no file name."""
    with atomic_path(path) as tmp:
        try:
            tmp.write_text(text)
        except OSError as err:
            if err.filename is None:
                err.filename = str(path)
            raise


def atomic_write_json(payload: dict[str, Any], path: Path) -> None:
    """Indented strict JSON: an undefined figure (NaN, e.g. an AUC with one class absent) is written as
    null, since NaN is not JSON and tools other than Python's (jq, browsers) refuse the file."""
    atomic_write_text(json.dumps(_finite_or_none(payload), indent=2, allow_nan=False) + "\n", path)


def _finite_or_none(value: Any) -> Any:
    """`value` with every non-finite float (numpy's included) inside dicts and lists replaced by None."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
