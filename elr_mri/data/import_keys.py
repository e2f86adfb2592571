"""The keys a clinical table's rows and the scans meet by: a participant and a session spelled the table's way or
BIDS' reduce to one key, and an ADNI diagnosis to its stage.

Join rule for ADNI (`adni_participant_key`, `adni_session_key`):
- participant: ADNIMERGE's PTID ("011_S_0002") matches a scan's participant_id written either the
  same way or as Clinica's BIDS label ("sub-ADNI011S0002"): both reduce to "011S0002". An ID of digits alone is
  ADNIMERGE's RID, which is not matched (training and splits compare participants by their PTID key): its scans are
  dropped saying to name them by PTID.
- session: VISCODE "bl" and "m06" match "ses-M00"/"M00"/"bl" and "ses-M06"/"M06"/"m06" (BIDS months,
  with or without zero padding, "M000" included): both reduce to the number of months. A scan of the
  screening visit ("sc", "scmri") is the baseline scan, as in ADNI1.

A mapped table's (`bids_key`, `mapped_session_key`): participants and sessions match after stripping BIDS
"sub-"/"ses-" prefixes (and the zero padding of one of digits alone: "ses-01" is visit 1, "sub-007" the table's
participant 7); a date is one key however written (ses-20120304, 2012-03-04), a `DATE_KEY`.

Public names: `ADNI_DIAGNOSES`, `adni_participant_key`, `spelled_as_numbers`, `adni_session_key`, `adni_diagnosis`,
`mapped_session_key`, `bids_key`, `DATE_KEY`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np

from elr_mri.data.table_values import as_code, blank

__all__ = ["ADNI_DIAGNOSES", "adni_participant_key", "spelled_as_numbers", "adni_session_key", "adni_diagnosis",
           "mapped_session_key", "bids_key", "DATE_KEY"]


# ADNIMERGE's visit diagnosis DX (CN, MCI, Dementia) and baseline DX_bl (CN, SMC, EMCI, LMCI, AD); older
# ADNIMERGE and TADPOLE tables spell normal "NL" and a visit where the diagnosis changed "NL to MCI" (the new
# stage counts, see `adni_diagnosis`). SMC (significant memory concern) participants are cognitively normal
# by ADNI's criteria.
ADNI_DIAGNOSES = {
    "CN": "CN", "NL": "CN", "SMC": "CN", "EMCI": "MCI", "LMCI": "MCI", "MCI": "MCI", "Dementia": "AD", "AD": "AD",
}
_ADNI_DIAGNOSES_UPPER = {spelling.upper(): stage for spelling, stage in ADNI_DIAGNOSES.items()}
# ADNI's screening visit: in ADNI1 its MRI is the baseline scan, and ADNIMERGE has no "sc" row to join it to.
ADNI_SCREENING_VISITS = ("SC", "SCMRI")
# year first (03/04/2012 is ambiguous), month and day padded or not (2012/3/4: spreadsheets in East Asian locales)
_ISO_DATE = re.compile(r"(\d{4})[-_/.](\d{1,2})[-_/.](\d{1,2})(?:[ T][\d:.]*)?")
DATE_KEY = re.compile(r"(?:19|20)\d{6}")  # a session key that is a date (ses-20120304)
_SEPARATORS = re.compile(r"[\W_]+")  # what a participant ID's key drops (or, between digits, keeps as one "-")
_FLOAT_OF_INTEGER = re.compile(r"\d+\.0")  # a participant ID 7 as a float column writes it


def adni_participant_key(value: Any) -> str:
    """"011_S_0002" and "sub-ADNI011S0002" → "011S0002". Separators go, letters of any alphabet stay: sub-Ä01 and
    sub-Ö01 are two people. Composed first (NFC): an Ä typed as A plus a combining mark (macOS file names) is the same
    Ä, where the mark alone would go as a separator and make it sub-A01. A separator between two digits stays (as
    "-"): 1.5 and 15, 12.0 and 120 are two people. An ID of digits alone is a number, as a spreadsheet or a float
    column re-saves it: 007, 7 and 7.0 are one person (`spelled_as_numbers` says when that joined two IDs)."""
    text = re.sub(r"^sub-", "", unicodedata.normalize("NFC", str(value).strip()), flags=re.IGNORECASE)
    text = re.sub(r"^ADNI", "", text, flags=re.IGNORECASE)
    if _FLOAT_OF_INTEGER.fullmatch(text):
        text = text[:-2]
    key = _SEPARATORS.sub(_separator, text).upper()
    return str(int(key)) if key.isdecimal() else key


def spelled_as_numbers(first: Any, second: Any) -> bool:
    """Whether two IDs are one participant only as numbers (007 and 7): a spreadsheet's doing, or two people whose
    IDs differ only in leading zeros; messages name both spellings then, where "write one ID" may be the wrong fix."""
    key = adni_participant_key(first)
    digits = [re.sub(r"\D", "", str(value)) for value in (first, second)]
    return key == adni_participant_key(second) and key.isdecimal() and digits[0] != digits[1]


def adni_session_key(value: Any) -> str:
    """"bl", "sc", "M00", "ses-M000" → "0"; "m06", "ses-M06", "M6", "ses-M06_run-2" → "6"; anything else
    upper-cased as is. The entities preprocess adds to a session with several T1s (`_run-2`) name no visit."""
    text = _without_entities(re.sub(r"^ses-", "", str(value).strip(), flags=re.IGNORECASE)).upper()
    if text == "BL" or text in ADNI_SCREENING_VISITS:
        return "0"
    months = re.fullmatch(r"M(\d+)", text)
    return str(int(months.group(1))) if months else text


def adni_diagnosis(value: Any) -> str | float:
    """CN / MCI / AD of an ADNI diagnosis ("Dementia", "EMCI", "NL to MCI": the stage reached), NaN if none."""
    text = str(value).strip() if not blank(value) else ""
    reached = re.split(r"\s+to\s+", text, flags=re.IGNORECASE)[-1].upper()  # a table re-saved as "dementia"
    return _ADNI_DIAGNOSES_UPPER.get(reached, np.nan)


def mapped_session_key(value: Any) -> str:
    """A mapped table's visit and a scan's session: "ses-01", "01", "1", 1.0 and "ses-01_run-2" are one visit; so are
    a date written as BIDS sessions write it ("ses-20120304") and as a clinical export does ("2012-03-04",
    "2012/03/04 00:00:00", "2012/3/4")."""
    text = _without_entities(bids_key(value))
    date = _ISO_DATE.fullmatch(text)
    if date:
        year, month, day = date.groups()
        return f"{year}{int(month):02d}{int(day):02d}"
    return str(int(text)) if text.isdigit() else text


def _separator(match: re.Match[str]) -> str:
    """A run of separators in a participant ID as its key keeps it: "-" between two digits, nothing elsewhere."""
    text, start, end = match.string, match.start(), match.end()
    return "-" if 0 < start and end < len(text) and text[start - 1].isdecimal() and text[end].isdecimal() else ""


def _without_entities(session: str) -> str:
    """"M06_run-2" → "M06": only trailing BIDS key-value entities go ("visit_2" and dates keep their parts)."""
    return re.sub(r"(_[A-Za-z]+-[A-Za-z0-9]+)+$", "", session)


def bids_key(value: Any) -> str:
    """A participant or session as a join key: without BIDS' sub-/ses- and in one case, since BIDS labels are often
    lower-cased copies of a table's ids (sub-nacc0002 for NACC0002), as the ADNI join reads them too; one of digits
    alone as a number (sub-007 for a table's 7), as the leakage guard reads participants."""
    text = re.sub(r"^(sub|ses)-", "", unicodedata.normalize("NFC", as_code(value)), flags=re.IGNORECASE).upper()
    return str(int(text)) if text.isdecimal() else text
