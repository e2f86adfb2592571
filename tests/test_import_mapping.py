"""A mapping file's refusals: the columns a manifest needs, and a column name YAML read as a number."""

from __future__ import annotations

from pathlib import Path

import pytest

from elr_mri.data.import_mapping import load_mapping


def write_mapping(tmp_path: Path, columns: str) -> Path:
    """A mapping of the given `columns:` lines that recodes one diagnosis."""
    path = tmp_path / "mapping.yaml"
    path.write_text(f"columns:\n{columns}values:\n  diagnosis: {{1: CN}}\n")
    return path


def test_a_mapping_without_the_session_column_is_refused_naming_it(tmp_path):
    """Scans meet their visits by participant and session: a mapping naming no session column is refused at once."""
    path = write_mapping(tmp_path, "  participant_id: ID\n  diagnosis: DX\n")
    with pytest.raises(ValueError, match=r"^.*mapping.yaml: columns must name the table's column for session_id$"):
        load_mapping(path)


def test_a_column_name_yaml_reads_as_a_decimal_number_is_told_to_be_quoted(tmp_path):
    """A column named 2.5 is read by YAML as a float: the refusal says to quote it, as it does for an integer."""
    path = write_mapping(tmp_path, "  participant_id: ID\n  session_id: VISIT\n  diagnosis: 2.5\n")
    with pytest.raises(ValueError, match=r"\(quote a name YAML reads as a number: diagnosis: '2.5'\)$"):
        load_mapping(path)


@pytest.mark.parametrize("columns, setting, refusal", [
    # YAML reads `yes` as True, which Python counts as 1: it is no number of days
    ("  visit_date: VDATE\n", "visit_window_days: yes",
     r"visit_window_days must be a number of days, 0 or more, e.g. 180; it is True$"),
    # no cohort's name, as a list is not: refused, not written into every row
    ("", "cohort: {name: NACC}", r"cohort must be the cohort's name, e.g. cohort: NACC; it is \{'name': 'NACC'\}$"),
])
def test_a_setting_of_the_wrong_kind_is_refused(tmp_path, columns, setting, refusal):
    """A visit window of `yes` and a cohort written as a mapping are refused in one line naming the value."""
    path = write_mapping(tmp_path, f"  participant_id: ID\n  session_id: VISIT\n  diagnosis: DX\n{columns}")
    path.write_text(path.read_text() + setting + "\n")
    with pytest.raises(ValueError, match=refusal):
        load_mapping(path)
