"""ADNIMERGE's import: its baseline rows, its dotted column names and DXSUM's change codes."""

from __future__ import annotations

import pandas as pd

from elr_mri.data.adni_import import DXCHANGE_CODES_HINT, import_adnimerge, with_adnimerge_spellings


def adnimerge(viscode: str, dx: str) -> pd.DataFrame:
    """One participant's one ADNIMERGE row, a blank Years_bl, as a baseline row may leave it."""
    return pd.DataFrame({"PTID": ["011_S_0002"], "VISCODE": [viscode], "DX": [dx], "DX_bl": ["LMCI"], "AGE": ["74.3"],
                         "Years_bl": [""]})


def scans() -> pd.DataFrame:
    """The participant's baseline scan, processed."""
    return pd.DataFrame({"participant_id": ["sub-ADNI011S0002"], "session_id": ["ses-M00"], "path": ["/s.nii.gz"],
                         "processed_path": ["/p.nii.gz"], "status": ["ok"]})


def test_a_baseline_visit_code_with_spaces_around_is_the_baseline():
    """' bl ' (a cell padded by a spreadsheet) meets the scan at ses-M00, and as the baseline its empty DX takes DX_bl
    and its blank Years_bl is year 0, as 'bl' is."""
    manifest = import_adnimerge(adnimerge(" bl ", ""), scans()).manifest
    assert manifest[["diagnosis", "age"]].values.tolist() == [["MCI", 74.3]]


def test_a_dxchange_code_of_9_is_named_as_one():
    """DXCHANGE 9 (Dementia to NL, a reversion) as DX is a change code like 4 to 8: the summary says so with the fix."""
    assert import_adnimerge(adnimerge("bl", "9"), scans()).hint == DXCHANGE_CODES_HINT


def test_a_dotted_name_beside_its_underscored_spelling_is_not_renamed():
    """A table holding both DX.bl and DX_bl keeps both: renaming one to the other would make two columns of one name."""
    table = pd.DataFrame({"DX.bl": ["CN"], "DX_bl": ["AD"], "Years.bl": ["0"]})
    assert list(with_adnimerge_spellings(table).columns) == ["DX.bl", "DX_bl", "Years_bl"]
