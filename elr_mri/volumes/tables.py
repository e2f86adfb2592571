"""Reading the per-scan CSVs the volume tools take from the user (volumes.csv, truth.csv).

A wrong file passed where one of these belongs would otherwise fail deep inside a merge with a
KeyError; here it fails at once with one line naming the file, what it lacks and what to pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from preprocess.inputs import read_csv_table

__all__ = ["SCAN_ID_DTYPES", "read_scan_table", "require_columns"]

SCAN_ID_DTYPES = {"participant_id": str, "session_id": str}  # ids like 002 must stay text to join
_NAMED = 4  # missing columns spelled out before "and N more", to keep the message one readable line


def read_scan_table(path: str | Path, columns: Sequence[str], expected: str) -> pd.DataFrame:
    """The CSV at `path` with ids as text; a ValueError when it lacks any of `columns`
    (`expected` says which file has them, e.g. "the volumes.csv `elr-mri volumes` writes")."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: file not found; pass {expected}")
    table = read_csv_table(path, dtype=SCAN_ID_DTYPES)
    require_columns(table, columns, str(path), expected)
    return table


def require_columns(table: pd.DataFrame, columns: Sequence[str], source: str, expected: str) -> None:
    """Refuse `table` (read from `source`) when it lacks any of `columns`."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        more = f" and {len(missing) - _NAMED} more" if len(missing) > _NAMED else ""
        raise ValueError(f"{source}: missing column(s) {', '.join(missing[:_NAMED])}{more}; pass {expected}")
