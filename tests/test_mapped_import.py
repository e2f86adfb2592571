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
