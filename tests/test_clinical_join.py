"""The join of a clinical table's rows to the scans: what it warns of."""

from __future__ import annotations

import pandas as pd

from elr_mri.data.clinical_join import join_to_scans


def test_one_file_named_by_three_scans_is_warned_of_once():
    """Three ids naming one processed file are one scan split three ways: one warning naming all three, not one per
    repeat of the file."""
    scans = pd.DataFrame({"participant_id": ["a", "b", "c"], "session_id": ["1", "1", "1"],
                          "processed_path": ["/data/x.nii.gz"] * 3})
    clinical = pd.DataFrame({"_participant": ["a", "b", "c"], "_session": ["1", "1", "1"], "diagnosis": ["CN"] * 3,
                             "_diagnosis_problem": [""] * 3})
    result = join_to_scans(scans, "scans.csv", clinical, str, str)
    assert result.one_file_twice == ["a/1 and b/1 and c/1 (/data/x.nii.gz)"]
