"""The dates of a mapped table's visits, read for the scans named by their MRI's date (ses-20120304): each takes its
participant's visit nearest in time within the mapping's visit_window_days (`visit_finder`), and a table whose dates
are written month or day first, or that holds none, is said so with the fix (`date_session_hint`).

Public names: `visit_finder`, `visit_days`, `date_session_hint`.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

import numpy as np
import pandas as pd

from elr_mri.data.import_keys import DATE_KEY, mapped_session_key
from elr_mri.data.import_mapping import DATE_PARTS, as_column_list
from elr_mri.data.import_tables import require_columns
from elr_mri.data.table_values import blank, blanks

__all__ = ["visit_finder", "visit_days", "date_session_hint"]


_DAY_MONTH_DATE = re.compile(r"\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?:[ T][\d:.]*)?")  # 3/4/2012: which is the month?


def visit_finder(clinical: pd.DataFrame, table: pd.DataFrame, header: pd.DataFrame, where: str,
                 mapping: dict[str, Any], scans: pd.DataFrame) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
    """`join_to_scans`'s `nearest` where the mapping dates the visits and some scans are named by their date, adding
    each visit's day to `clinical`; None otherwise, as the dates are read only for scans that need them."""
    columns = mapping["columns"]
    if "visit_date" not in columns or not _named_by_date(scans).any():
        return None
    _require_visit_dates(header, columns["visit_date"], where, columns["session_id"])
    clinical["_visit_day"] = visit_days(table, columns["visit_date"])
    window = float(mapping["visit_window_days"])
    return functools.partial(_nearest_visits, clinical=clinical, window=window,
                             undated=_undated_visit_reason(table, columns["visit_date"]))


def _named_by_date(scans: pd.DataFrame) -> pd.Series:
    """Which scans' sessions are dates (ses-20120304), as a cohort without visit numbers names its MRIs."""
    if "session_id" not in scans:  # refused by the join, naming the column
        return pd.Series(False, index=scans.index)
    return scans["session_id"].map(lambda value: bool(DATE_KEY.fullmatch(mapped_session_key(value))))


def _require_visit_dates(header: pd.DataFrame, column: str | list[str], where: str, session: str) -> None:
    """Refuse a table without the visit-date columns the mapping names, read only for scans named by their date."""
    require_columns(header, tuple(as_column_list(column)), where,
                    "the mapping's columns.visit_date reads it to give a scan named by its date its nearest visit: "
                    f"export it with the table, or name the scans' sessions by {session}")


def visit_days(table: pd.DataFrame, column: str | list[str]) -> pd.Series:
    """Each visit's date (NaT where it cannot be read: a missing-data code such as 88 for the month), from one column
    of dates or from NACC's three, year, month and day."""
    if isinstance(column, str):
        keys = table[column].map(lambda value: "" if blank(value) else mapped_session_key(value))
        return _day_of_keys(keys)
    parts = pd.DataFrame({part: pd.to_numeric(table[name], errors="coerce") for part, name in zip(DATE_PARTS, column)})
    return pd.to_datetime(parts, errors="coerce")


def _undated_visit_reason(table: pd.DataFrame, column: str | list[str]) -> str:
    """Why a scan named by its date took no visit where none of its participant's visits has a date that can be read:
    a missing-data code (VISITMO 88), or a column of dates written month or day first, which is said with its fix (it
    left every such scan out naming only the mapping's key)."""
    hint = _day_first_hint(_spellings(table[column]), column) if isinstance(column, str) else ""
    return f"without a clinical visit whose date can be read (the mapping's columns.visit_date{': ' * bool(hint)}{hint})"


def _spellings(values: pd.Series) -> list[str]:
    """A column's values as written, each once, in the table's order: a dozen visits, not 200,000 rows, to read."""
    return list(values[~blanks(values)].astype(str).str.strip().unique())


def _day_first_hint(given: list[str], column: str) -> str:
    """How to fix a column whose dates are month or day first (Excel re-saves 2012-03-04 as 3/4/2012), which no
    reader here guesses; '' where `given`, its spellings, has none."""
    example = next((v for v in given if _DAY_MONTH_DATE.fullmatch(v)), None)
    if example is None:
        return ""
    return (f"the table's {column} writes dates month or day first, e.g. {example!r}, which are not guessed: write them "
            "year first, YYYY-MM-DD, and import again")


def _day_of_keys(keys: pd.Series) -> pd.Series:
    """Session keys as dates: YYYYMMDD keys read, every other key (a visit number, an impossible date) NaT."""
    dated = keys.map(lambda key: bool(DATE_KEY.fullmatch(key)))
    return pd.to_datetime(keys.where(dated), format="%Y%m%d", errors="coerce")


def _nearest_visits(keys: pd.DataFrame, clinical: pd.DataFrame, window: float, undated: str) -> pd.DataFrame:
    """`keys` (a scan's _participant, _session) where each scan named by its date takes the session of its
    participant's visit nearest in time (the earlier of two as near), if within `window` days: an MRI is seldom taken
    on its visit's day. Adds days_from_visit (scan minus visit) and _far, why a dated scan took no visit (`undated`
    where none of its participant's visits has a date that can be read)."""
    scans = pd.DataFrame({"_row": np.arange(len(keys)), "_participant": keys["_participant"].to_numpy(),
                          "_scan_day": _day_of_keys(keys["_session"]).to_numpy()}).dropna(subset=["_scan_day"])
    pairs = scans.merge(clinical[["_participant", "_session", "_visit_day"]], on="_participant")
    pairs["_days"] = (pairs["_scan_day"] - pairs["_visit_day"]).dt.days
    pairs["_gap"] = pairs["_days"].abs()
    # per scan, its nearest visit, the earlier of two as near; a visit without a date (NaN gap) sorts last
    nearest = pairs.sort_values(["_row", "_gap", "_visit_day"], kind="stable").drop_duplicates("_row")
    keys = keys.assign(days_from_visit=np.nan, _far="")
    near = nearest[nearest["_gap"] <= window]
    keys.loc[keys.index[near["_row"]], "_session"] = near["_session"].to_numpy()
    keys.loc[keys.index[near["_row"]], "days_from_visit"] = near["_days"].to_numpy(dtype=float)
    undated_rows = nearest[nearest["_gap"].isna()]  # a missing-data code in a date part (VISITMO 88)
    keys.loc[keys.index[undated_rows["_row"]], "_far"] = undated
    far = nearest[nearest["_gap"] > window]
    keys.loc[keys.index[far["_row"]], "_far"] = [
        f"without a clinical visit within {window:g} days of its date (the nearest, {visit:%Y-%m-%d}, is {abs(days):g} "
        f"days {'before' if days > 0 else 'after'} it; the mapping's visit_window_days sets the limit)"
        for visit, days in zip(far["_visit_day"], far["_days"])]
    return keys


def date_session_hint(sessions: pd.Series, column: str) -> str:
    """Why scans named by date meet none of the table's visits, where that is known ('' otherwise): its dates are
    month or day first (Excel re-saves 2012-03-04 as 3/4/2012), or it holds no dates at all (NACC's visit numbers,
    NACCVNUM). The generic 'spells otherwise' left the fix unsaid. Each spelling is read once, in the table's
    order."""
    given = _spellings(sessions)
    day_first = _day_first_hint(given, column)
    if day_first:
        return day_first
    if given and not any(DATE_KEY.fullmatch(mapped_session_key(v)) for v in given):
        return (f"the table's {column} holds no dates, e.g. {given[0]!r}: name the scan's session by its {column}, the "
                "visit its MRI belongs to, or name the visits' dates in the mapping (columns.visit_date with "
                "visit_window_days, as configs/nacc/nacc_mapping.yaml does) to meet the visit nearest the MRI")
    return ""
