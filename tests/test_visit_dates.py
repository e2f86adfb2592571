"""Visit dates of a mapped table: which scans read them, and the hints for dates no reader here takes."""

from __future__ import annotations

import pandas as pd

from elr_mri.data.visit_dates import date_session_hint, visit_finder


def test_dates_day_first_with_dots_are_named_as_such():
    """04.03.2012, as a German spreadsheet writes a date, is day or month first like 3/4/2012: said with the fix, not
    taken for a table without dates."""
    hint = date_session_hint(pd.Series(["04.03.2012"]), "EXAMDATE")
    assert hint.startswith("the table's EXAMDATE writes dates month or day first, e.g. '04.03.2012'")


def test_a_table_without_any_session_value_gets_no_hint():
    """No spelling to quote: no hint, rather than a failure quoting the first of none."""
    assert date_session_hint(pd.Series([None, " "], dtype=object), "VISCODE") == ""


def test_scans_without_a_session_column_read_no_visit_dates():
    """Dates are read only for scans named by their date; scans without session_id have none (the join refuses them,
    naming the column), so the finder is not built."""
    table = pd.DataFrame({"ID": ["A"], "VISIT": ["1"], "VISITDATE": ["2012-03-04"]})
    mapping = {"columns": {"session_id": "VISIT", "visit_date": "VISITDATE"}, "visit_window_days": 180}
    scans = pd.DataFrame({"participant_id": ["A"]})
    assert visit_finder(pd.DataFrame({"_participant": ["A"]}), table, table.head(0), "t.csv", mapping, scans) is None
