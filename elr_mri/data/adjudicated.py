"""Adjudicated (consensus) diagnoses for the validation scans: `data.mri.val_labels`.

Model selection scores checkpoints on the validation split. When its labels are as noisy as the
training labels, selection fails exactly where ELR should help most: with 45% of diagnoses flipped,
a perfect network and "MCI for everyone" score the same on noisy validation labels
(`bench/results/mri_n1200.md`). The paper meets this on Clothing1M with a small clean validation set;
for a cohort, the clean set is a consensus panel's re-read of the validation participants. This file
reads such labels and lines them up with the validation scans; training labels are never touched.

Public names: `load_adjudicated_labels`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from elr_mri.data.cohort import SCAN_KEYS, diagnoses_left_out, true_label_indices
from elr_mri.data.import_keys import adni_participant_key, adni_session_key
from preprocess.inputs import read_csv_table

__all__ = ["load_adjudicated_labels"]

# the adjudicated column, first found: `true_diagnosis` lets the simulator's truth.csv serve as a perfect
# panel, and comes first because that file also holds `diagnosis`, the noisy label the manifest gives
DIAGNOSIS_COLUMNS = ("true_diagnosis", "diagnosis")
LEFT_OUT = "(a diagnosis the run's classes leave out)"  # listed, unlike a scan the file lacks
# panel and manifest rows meet on these: one person and visit spelled two ways (011_S_0002 / sub-ADNI011S0002,
# bl / ses-M00) is one scan, as the manifest's own check and the leakage guard count it
MATCH_KEYS = ["_participant", "_session"]


def _refuse_two_diagnoses_of_one_scan(path: Path, table: pd.DataFrame) -> None:
    """A panel merged from two raters may list a scan twice: with the same diagnosis that is one row, with two the
    first row would win silently."""
    distinct = table.drop_duplicates(MATCH_KEYS + ["adjudicated"])
    clash = distinct[distinct.duplicated(MATCH_KEYS, keep=False)]
    if not clash.empty:
        first = clash.iloc[0]
        rows = clash[(clash[MATCH_KEYS] == first[MATCH_KEYS]).all(axis=1)]
        raise ValueError(f"data.mri.val_labels {path}: data rows {' and '.join(str(i + 1) for i in rows.index[:2])} "
                         f"give scan {first.participant_id} {first.session_id} two diagnoses "
                         f"({', '.join(rows['adjudicated'])}); keep the adjudicated one")


def load_adjudicated_labels(path: str | Path, scans: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Class index of each row of `scans` (validation scans), read from the CSV at `path`; -1 for a diagnosis the
    run's classes leave out (MCI in a CN-vs-AD run: the simulator's truth.csv lists it), which no class scores.

    The CSV has participant_id, session_id and true_diagnosis or diagnosis; rows for scans outside
    `scans` are ignored, so one file may cover the whole cohort. Raises ValueError naming the first
    scan without a usable diagnosis.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data.mri.val_labels: file not found: {path}")
    table = read_csv_table(path, dtype={key: str for key in SCAN_KEYS})
    column = next((name for name in DIAGNOSIS_COLUMNS if name in table.columns), None)
    missing = [key for key in SCAN_KEYS if key not in table.columns]
    if missing or column is None:
        needed = ", ".join(SCAN_KEYS) + " and diagnosis"
        raise ValueError(f"data.mri.val_labels {path}: needs the columns {needed}; it has {', '.join(table.columns)}")
    spelled = {name.lower(): name for name in classes} | {name: LEFT_OUT for name in diagnoses_left_out(classes)}
    written = table[column].map(lambda value: "" if pd.isna(value) else str(value).strip())
    table = table.assign(**{key: table[key].str.strip() for key in SCAN_KEYS},  # as the manifest's are
                         written=written, adjudicated=written.str.lower().map(spelled))
    table = _with_match_keys(_rows_naming_a_scan(path, table, column))
    readable = table.dropna(subset=["adjudicated"])
    _refuse_two_diagnoses_of_one_scan(path, readable)
    joined = _with_match_keys(scans[SCAN_KEYS].astype(str)).merge(
        readable.drop_duplicates(MATCH_KEYS)[MATCH_KEYS + ["adjudicated"]], on=MATCH_KEYS, how="left")
    absent = joined["adjudicated"].isna().to_numpy()
    if absent.any():
        _refuse_unreadable_diagnoses(path, joined[absent], table, column, classes, len(joined))
        first = joined.loc[absent, SCAN_KEYS].iloc[0]
        # a panel's re-read of the flagged training scans (suspected_mislabels.csv) lists no validation scan
        elsewhere = (f"; none of its {len(table)} rows is a validation scan: it labels the validation split alone, "
                     "training scans keep the manifest's diagnoses" if absent.all() and len(table) else "")
        raise ValueError(
            f"data.mri.val_labels {path}: no diagnosis among {', '.join(classes)} for validation scan "
            f"{first.participant_id} {first.session_id} ({int(absent.sum())} of {len(joined)} lack one{elsewhere}); "
            "list every validation scan, or drop data.mri.val_labels to validate on the manifest's labels"
        )
    return true_label_indices(joined["adjudicated"], classes)


def _rows_naming_a_scan(path: Path, table: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows with both IDs; a diagnosis on a row without one is refused, naming the row: it was dropped, and the
    scan it meant reported as missing from the file."""
    blank = table[SCAN_KEYS].isna() | (table[SCAN_KEYS] == "")
    unnamed = blank.any(axis=1) & (table["written"] != "")
    if unnamed.any():
        row = unnamed.to_numpy().nonzero()[0]
        lacking = " and ".join(key for key in SCAN_KEYS if blank.iloc[row[0]][key])
        raise ValueError(f"data.mri.val_labels {path}: data row {row[0] + 1} gives {column} "
                         f"{table['written'].iloc[row[0]]!r} but no {lacking} ({len(row)} such row(s)); fill in "
                         "both IDs of every scan the panel read")
    return table[~blank.any(axis=1)]


def _refuse_unreadable_diagnoses(path: Path, absent: pd.DataFrame, table: pd.DataFrame, column: str,
                                 classes: Sequence[str], total: int) -> None:
    """Validation scans the file lists with a blank or unknown diagnosis (`Dementia`, a code such as 3) are named
    with what it says: "no diagnosis ... list every validation scan" sent a panel looking for rows it had."""
    written = table[table["adjudicated"].isna()].drop_duplicates(MATCH_KEYS)[MATCH_KEYS + ["written"]]
    listed = absent.merge(written, on=MATCH_KEYS, how="inner")
    if listed.empty:
        return
    first = listed.iloc[0]
    says = f"a blank {column}" if first.written == "" else f"{column} {first.written!r}"
    known = list(classes) + sorted(name.upper() for name in diagnoses_left_out(classes))
    raise ValueError(f"data.mri.val_labels {path}: validation scan {first.participant_id} {first.session_id} has {says} "
                     f"({len(listed)} of {total} validation scans have a blank one or one that is none of "
                     f"{', '.join(known)}); write each scan's diagnosis as one of those")


def _with_match_keys(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(_participant=table["participant_id"].map(adni_participant_key),
                        _session=table["session_id"].map(adni_session_key))
