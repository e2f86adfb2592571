"""How well measured volumes recover a simulated cohort's ground truth (truth.csv of simulate-cohort).

Two checks a user of the simulator wants to see: the measured ratio (scan / template volume) of each
region correlates with the simulated one, and its mean orders the true diagnoses as the disease
model does (hippocampal loss AD > MCI > CN, ventricles the other way).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from elr_mri.simulate.disease import DIAGNOSES, REGIONS
from elr_mri.volumes.tables import read_scan_table, require_columns

__all__ = ["TRUTH_COLUMNS", "read_truth", "recovery_table"]

TRUTH_COLUMNS = ("participant_id", "session_id", "true_diagnosis", *(f"volume_ratio_{r.name}" for r in REGIONS))
_TRUTH_FILE = "the truth.csv `elr-mri simulate-cohort` wrote for the cohort these volumes measure"


def read_truth(path: str | Path) -> pd.DataFrame:
    """A simulated cohort's truth.csv, refused with one line when it is another table."""
    return read_scan_table(path, TRUTH_COLUMNS, _TRUTH_FILE)


def recovery_table(volumes: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """One row a region: Pearson r (measured vs simulated ratio), scans, and the measured mean per true diagnosis."""
    require_columns(truth, TRUTH_COLUMNS, "the --truth CSV", _TRUTH_FILE)
    joined = volumes.merge(truth, on=["participant_id", "session_id"], how="inner")
    if len(joined) < len(volumes):  # every simulated cohort has the same ids: another cohort's truth matches some
        keys = joined[["participant_id", "session_id"]].apply(tuple, axis=1)
        missing = volumes[~volumes[["participant_id", "session_id"]].apply(tuple, axis=1).isin(keys)]
        raise ValueError(f"{len(missing)} of the {len(volumes)} measured scans have no row in truth.csv (e.g. "
                         f"{missing.participant_id.iloc[0]} {missing.session_id.iloc[0]}): a truth.csv of another "
                         "cohort, whose ids coincide? pass the cohort's own truth.csv")
    rows = []
    for region in REGIONS:
        measured, simulated = joined[f"{region.name}_ratio"], joined[f"volume_ratio_{region.name}"]
        row = {"region": region.name, "scans": len(joined), "pearson_r": _pearson(measured, simulated)}
        for diagnosis in DIAGNOSES:
            in_class = joined["true_diagnosis"] == diagnosis
            row[f"measured_{diagnosis}"] = float(measured[in_class].mean()) if in_class.any() else float("nan")
            row[f"simulated_{diagnosis}"] = float(simulated[in_class].mean()) if in_class.any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _pearson(a: pd.Series, b: pd.Series) -> float:
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
