"""How a clinical table's diagnoses and session dates read as keys."""

from __future__ import annotations

import pandas as pd

from elr_mri.data.import_keys import adni_diagnosis, adni_session_key
from elr_mri.data.visit_dates import date_session_hint


def test_a_diagnosis_change_written_in_capitals_counts_its_new_stage():
    """'MCI TO DEMENTIA', an older ADNIMERGE's change of diagnosis re-saved in capitals, is the stage reached, AD, as
    'MCI to Dementia' is."""
    assert adni_diagnosis("MCI TO DEMENTIA") == adni_diagnosis("MCI to Dementia") == "AD"


def test_visit_dates_of_the_1990s_are_dates():
    """A table whose visits are dated 1999 holds dates: it is not told it holds none (the date keys take 19xx and
    20xx years)."""
    assert date_session_hint(pd.Series(["1999-03-04", "1998-12-01"]), "EXAMDATE") == ""


def test_a_session_with_two_bids_entities_after_it_is_its_visit():
    """ses-M12_acq-mprage_run-02, a session label with the T1's acquisition and run after it, is visit M12: every
    trailing entity is dropped, not the last alone."""
    assert adni_session_key("ses-M12_acq-mprage_run-02") == adni_session_key("M12") == "12"
