"""`import_adnimerge`: the diagnosis, visit age and sex of each scan from ADNIMERGE, ADNI's merged clinical table.

Scans meet its rows by PTID and VISCODE (`elr_mri.data.import_keys`); a table that is not ADNIMERGE (a mapped one such
as NACC's, DXSUM, an R export's dotted names) is named as such, with the way to import it.

Public names: `import_adnimerge`, `with_adnimerge_spellings`, `ADNIMERGE_COLUMNS`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from elr_mri.data.clinical_join import ImportResult, diagnosis_problem, join_to_scans
from elr_mri.data.import_keys import DATE_KEY, adni_diagnosis, adni_participant_key, adni_session_key
from elr_mri.data.import_tables import read_scans, read_table, require_columns, require_rows
from elr_mri.data.table_values import as_code, blank, row_age_problems, sex_letters

__all__ = ["import_adnimerge", "with_adnimerge_spellings", "ADNIMERGE_COLUMNS"]


# ADNIMERGE writes AGE to 0.1 year and Years_bl to 6 decimals: their sum is kept to those decimals, where the float sum
# wrote 86.1 + 1.00205 as 87.10204999999999 in the manifest and in evaluate's holdout age warning
ADNI_AGE_DECIMALS = 6
# DXSUM's DIAGNOSIS (1 CN, 2 MCI, 3 Dementia), copied into an ADNIMERGE-like table's DX: every scan was dropped
# "with DX '1'", nothing said where the codes came from
DXSUM_DIAGNOSIS_CODES = ("1", "2", "3")
DXSUM_CODES_HINT = ("DX 1, 2, 3 are DXSUM's DIAGNOSIS codes, 1 CN, 2 MCI, 3 Dementia, which ADNIMERGE writes as "
                    "words: write DX and DX_bl as CN, MCI, Dementia and import again")
# DXSUM's DXCHANGE (ADNI-GO/2): the stage since the last visit, 1-3 stable NL/MCI/AD, 4-6 a conversion, 7-9 a reversion
DXCHANGE_CODES = tuple("456789")  # those DIAGNOSIS does not share
DXCHANGE_CODES_HINT = ("DX 4 to 9 are DXSUM's DXCHANGE codes, a change of stage: the stage reached is NL for 1, 7, 9, "
                       "MCI for 2, 4, 8 and Dementia for 3, 5, 6; ADNIMERGE writes it as words: write DX and DX_bl as "
                       "CN, MCI, Dementia and import again")
_RID_KEY = re.compile(r"[0-9]+")  # an ADNI participant key of digits alone: ADNIMERGE's RID, not its PTID
# ADNI's own visit codes of a phase (ADNI-GO/2's v03, ADNI3's init, y1), where ADNIMERGE's VISCODE is VISCODE2 (bl, m06)
_ADNI_PROTOCOL_VISIT = re.compile(r"V\d+|INIT|Y\d+")
ADNIMERGE_COLUMNS = ("PTID", "VISCODE", "DX", "DX_bl", "AGE", "Years_bl")  # the ones its import reads (and PTGENDER)
# a table for the other import, through a mapping: NACC's UDS ids
_MAPPED_TABLE_SIGNS = ("NACCID", "NACCVNUM", "NACCUDSD")


def import_adnimerge(
    adnimerge: str | Path | pd.DataFrame,
    scans: str | Path | pd.DataFrame,
    use_baseline_diagnosis: bool = False,
) -> ImportResult:
    """Diagnosis, visit age and sex of each scan from ADNIMERGE (PTID, VISCODE, DX, DX_bl, AGE, Years_bl, PTGENDER).

    The diagnosis is the visit's DX (at baseline DX_bl stands in when DX is empty); with
    `use_baseline_diagnosis` every scan gets its participant's DX_bl instead. ADNIMERGE's AGE is the
    age at baseline, so the visit age is AGE + Years_bl.
    """
    table, where = read_table(adnimerge, "ADNIMERGE table (--adnimerge)")
    table = with_adnimerge_spellings(table)
    require_columns(table, ADNIMERGE_COLUMNS, where,
                    "this is a mapped table, such as NACC's: pass it as --table with --mapping "
                    "(configs/nacc/nacc_mapping.yaml)"
                    if set(table.columns) & set(_MAPPED_TABLE_SIGNS) else
                    "--adnimerge takes ADNIMERGE (DXSUM has no ages: export ADNIMERGE; DXSUM as --table with a mapping "
                    "meets only scans named as DXSUM names them, 011_S_0002 at bl, not sub-ADNI011S0002 at ses-M00)")
    require_rows(table, where)
    is_baseline = table["VISCODE"].astype(str).str.strip().str.lower() == "bl"
    visit_empty = table["DX"].map(blank)
    column = pd.Series("DX_bl" if use_baseline_diagnosis else "DX", index=table.index)
    if not use_baseline_diagnosis:  # at baseline DX_bl stands in for an empty DX, not for one it cannot read
        column[visit_empty & is_baseline] = "DX_bl"
    raw = table["DX_bl"].where(column == "DX_bl", table["DX"])
    diagnosis = raw.map(adni_diagnosis)
    clinical = pd.DataFrame({
        "_participant": table["PTID"].map(adni_participant_key),
        "_session": table["VISCODE"].map(adni_session_key),
        "diagnosis": diagnosis,
        "_diagnosis_problem": [diagnosis_problem(name, value, "one ADNI uses (CN, SMC, EMCI, LMCI, MCI, "
                                                 "Dementia, AD, NL, 'X to Y')") for name, value in zip(column, raw)],
        "age": (pd.to_numeric(table["AGE"], errors="coerce")
                + _years_since_baseline(table["Years_bl"], is_baseline)).round(ADNI_AGE_DECIMALS),
        "cohort": "ADNI",
    })
    clinical["_age_problem"] = row_age_problems({"AGE": table["AGE"], "Years_bl": table["Years_bl"]}, clinical["age"])
    if "PTGENDER" in table:  # without it the scans keep a sex column of their own
        letters, unreadable = sex_letters(table["PTGENDER"])
        clinical["sex"] = letters.combine_first(unreadable)  # kept as given: the manifest's check names the row
    # an MRI's date is weeks from its visit's EXAMDATE: no date would meet it
    result = join_to_scans(*read_scans(scans), clinical, adni_participant_key, adni_session_key, session_hints={
        DATE_KEY: "ADNIMERGE's sessions are visits, VISCODE bl, m06, m12: name the scan's session by its visit, e.g. "
                   "ses-M06, not by its date",
        _ADNI_PROTOCOL_VISIT: "v03, init, y1 are a phase's own visit codes; ADNIMERGE's VISCODE is their VISCODE2: "
                              "name the scan's session by it, e.g. bl or ses-M12"}, participant_hints={
        _RID_KEY: "an ID of digits alone is ADNIMERGE's RID; rows are met by PTID, as training and splits compare "
                  "participants: name the scan by its PTID, e.g. 011_S_0002 for RID 2"})
    result.hint, result.hinted = _dxsum_codes_hint(raw, diagnosis, clinical["_diagnosis_problem"],
                                                   result.dropped["reason"])
    return result


def _dxsum_codes_hint(raw: pd.Series, diagnosis: pd.Series, problems: pd.Series,
                      dropped: pd.Series) -> tuple[str, tuple[str, ...]]:
    """The hint for scans dropped with DXSUM's numeric codes as DX and the drop reasons it explains, ('', ()) for
    none: DXCHANGE's where a dropped scan has one of its own (4 to 9), else DIAGNOSIS's (1, 2, 3), which DXCHANGE
    shares."""
    code = raw.map(lambda value: "" if blank(value) else as_code(value)).where(diagnosis.isna(), "")
    coded = problems[code.isin(DXCHANGE_CODES + DXSUM_DIAGNOSIS_CODES)]
    for codes, hint in ((DXCHANGE_CODES, DXCHANGE_CODES_HINT), (DXSUM_DIAGNOSIS_CODES, DXSUM_CODES_HINT)):
        if dropped.isin(problems[code.isin(codes)]).any():
            return hint, tuple(sorted(set(dropped[dropped.isin(coded)])))
    return "", ()


def with_adnimerge_spellings(table: pd.DataFrame) -> pd.DataFrame:
    """ADNIMERGE as the ADNIMERGE R package exports it (write.csv), whose DX.bl and Years.bl are LONI's DX_bl and
    Years_bl: R makes names with dots, the table is the same. Refused, the user had to rename columns by hand."""
    dotted = {name: name.replace(".", "_") for name in table.columns if isinstance(name, str)}
    renamed = {name: underscored for name, underscored in dotted.items()
               if underscored != name and underscored in ADNIMERGE_COLUMNS and underscored not in table.columns}
    return table.rename(columns=renamed)


def _years_since_baseline(years: pd.Series, is_baseline: pd.Series) -> pd.Series:
    """ADNIMERGE's Years_bl as numbers, 0 where a baseline row leaves it blank (the baseline is year 0 by definition;
    a blank made that scan ageless)."""
    return pd.to_numeric(years, errors="coerce").mask(is_baseline & years.map(blank), 0.0)
