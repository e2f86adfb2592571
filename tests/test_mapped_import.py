"""A mapped table's import: a mapping whose cohort is blank."""

from __future__ import annotations

import pandas as pd

from elr_mri.data.mapped_import import import_mapped_table


def test_a_blank_cohort_in_the_mapping_keeps_the_scans_own():
    """`cohort: ' '` names no cohort, as a mapping without one: the scans' own are kept, not written over with a
    blank."""
    table = pd.DataFrame({"ID": ["A"], "VISIT": ["1"], "DX": ["1"]})
    scans = pd.DataFrame({"participant_id": ["A"], "session_id": ["1"], "path": ["/s.nii.gz"],
                          "processed_path": ["/p.nii.gz"], "cohort": ["site_A"]})
    mapping = {"columns": {"participant_id": "ID", "session_id": "VISIT", "diagnosis": "DX"},
               "values": {"diagnosis": {1: "CN"}}, "cohort": " "}
    result = import_mapped_table(table, scans, mapping)
    assert result.manifest["cohort"].tolist() == ["site_A"]
    assert result.cohort_written_over == ""


def test_a_birth_date_giving_an_age_under_18_gives_way_to_the_age_column():
    """A birth year typed as a recent one (2010 for 1938) dates the visit at 1.7 years, no participant's age: the age
    column's (74) is written, said to be from it, as where the birth date cannot be read; it was written as 1.72 from
    the birth date without a word."""
    table = pd.DataFrame({"ID": ["A"], "VISIT": ["1"], "DX": ["1"], "AGE": ["74"], "BIRTHYR": ["2010"],
                          "BIRTHMO": ["6"], "VISITYR": ["2012"], "VISITMO": ["3"], "VISITDAY": ["4"]})
    scans = pd.DataFrame({"participant_id": ["A"], "session_id": ["1"], "path": ["/s.nii.gz"],
                          "processed_path": ["/p.nii.gz"]})
    mapping = {"columns": {"participant_id": "ID", "session_id": "VISIT", "diagnosis": "DX", "age": "AGE",
                           "birth_date": ["BIRTHYR", "BIRTHMO"], "visit_date": ["VISITYR", "VISITMO", "VISITDAY"]},
               "values": {"diagnosis": {1: "CN"}}, "visit_window_days": 180}
    result = import_mapped_table(table, scans, mapping)
    assert result.manifest[["age", "age_from"]].values.tolist() == [[74.0, "AGE"]]
    assert result.summary() == "1 scan imported (1 aged by AGE, whole years, not by the birth date)"
    born_1938 = import_mapped_table(table.assign(BIRTHYR="1938"), scans, mapping).manifest
    assert born_1938[["age", "age_from"]].values.tolist() == [[73.72, "birth date"]]  # 26,925 days / 365.25
