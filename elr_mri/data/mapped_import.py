"""`import_mapped_table`: the import of a clinical table through a column-and-value mapping (NACC's UDS, any cohort's).

The mapping (`elr_mri.data.import_mapping`) names the table's column for each manifest field and recodes its values.
A scan named by its date (ses-20120304) takes its participant's visit nearest in time where the mapping names the
visits' dates (columns.visit_date) and the widest gap (visit_window_days), with the table's age, the visit's, moved to
the scan's date (`age_at`); a mapping's columns.birth_date gives that age in decimal years from the birth's year and
month (`age_from`). A clinical value that maps to no class is left out with the reason.

Public names: `import_mapped_table`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from elr_mri.data.adni_import import ADNIMERGE_COLUMNS, with_adnimerge_spellings
from elr_mri.data.clinical_join import BIRTH_DATE, ImportResult, diagnosis_problem, join_to_scans
from elr_mri.data.import_keys import DATE_KEY, bids_key, mapped_session_key
from elr_mri.data.import_mapping import as_column_list, load_mapping, mapping_reads
from elr_mri.data.import_tables import (column_separator, read_scans, read_table, require_columns, require_rows,
                                        table_file)
from elr_mri.data.table_values import MAX_AGE_YEARS, MIN_AGE_YEARS, as_code, blank, blanks, loose_name, row_age_problems
from elr_mri.data.visit_dates import date_session_hint, visit_days, visit_finder
from preprocess.inputs import read_csv_header, read_csv_table

__all__ = ["import_mapped_table"]


# a session key of ADNI's VISCODE (ses-M00, bl, m06, ADNI1's screening sc), met in a table that numbers its visits
_ADNI_VISIT_CODE = re.compile(r"BL|SC|SCMRI|M\d+")
DAYS_PER_YEAR = 365.25  # moves a visit's age to its scan's date, days_from_visit away
# ADNI1's DXSUM has no DIAGNOSIS, the column of the later phases: a mapping naming it was told to name "the table's
# own columns", not which
ADNI1_DXSUM_HINT = ("ADNI1's DXSUM gives the diagnosis as DXCURREN, 1 NL, 2 MCI, 3 AD (its DXCHANGE, 1 to 9, is a "
                    "change of stage): name DXCURREN as the mapping's columns.diagnosis, with values.diagnosis "
                    "{1: CN, 2: MCI, 3: AD}")
_NACC_MRI_TABLE_SIGNS = ("NACCMRFI", "MRIYR")  # NACC's MRI table: one row an MRI session (its file, its date)


def _allowed_codes(allowed: Any) -> set[str]:
    """The codes a `require` condition allows: a list of them, or one alone (NACCALZP: 1, NACCALZP: "12")."""
    return {as_code(code) for code in (allowed if isinstance(allowed, (list, tuple, set)) else [allowed])}


def _apply_requirements(clinical: pd.DataFrame, table: pd.DataFrame, header: pd.DataFrame, where: str,
                        mapping: dict[str, Any]) -> None:
    """Take the class from each clinical row that fails its class's `require` conditions, in place, saying why with
    the row's own values (NACCALZP 7: another cause)."""
    diagnosis = mapping["columns"]["diagnosis"]
    for label, conditions in (mapping.get("require") or {}).items():
        for column, allowed in conditions.items():
            require_columns(header, (column,), where, f"the mapping's require.{label} reads it: export it with the "
                                                      "table, or delete that condition from the mapping")
            codes = _allowed_codes(allowed)
            given = table[column].map(lambda value: "" if blank(value) else as_code(value))
            fails = (clinical["diagnosis"] == label) & ~given.isin(codes)
            clinical.loc[fails, "diagnosis"] = np.nan
            found = given.map(lambda value, column=column: f"{column} {value!r}" if value else f"no {column}")
            clinical.loc[fails, "_diagnosis_problem"] = [  # the row's own value: NACCALZP 7 (another cause), -4
                f"with {diagnosis} {as_code(code)!r} ({label}) but {has}, not {' or '.join(sorted(codes))} "
                "(the mapping's require)" for code, has in zip(table.loc[fails, diagnosis], found[fails])]


def import_mapped_table(
    table: str | Path | pd.DataFrame, scans: str | Path | pd.DataFrame, mapping: dict[str, Any] | str | Path
) -> ImportResult:
    """Join a clinical table (e.g. NACC's UDS export) to the scans through a column-and-value mapping.

    `mapping["columns"]` names the table's column for each manifest field, `mapping["values"]`
    recodes a field's values (a diagnosis code not listed drops its scans, with the reason; a sex code not listed is
    an unknown sex; an age not listed stays as it is), and
    `mapping["require"]` optionally adds conditions per class (e.g. AD only when NACCALZP is 1).
    """
    if not isinstance(mapping, dict):
        mapping = load_mapping(mapping)
    table, header, where = _read_mapped(table, mapping)
    columns: dict[str, Any] = mapping["columns"]
    _refuse_other_spellings(header, mapping, where)
    require_columns(header, tuple(column for field, column in columns.items()
                                  if field not in ("visit_date", "birth_date")),
                    where, _mapped_table_fix(header, columns.get("diagnosis")))
    require_rows(table, where)
    values = {field: {as_code(k): v for k, v in codes.items()}
              for field, codes in (mapping.get("values") or {}).items()}
    clinical = pd.DataFrame({"_participant": table[columns["participant_id"]].map(bids_key),
                             "_session": table[columns["session_id"]].map(mapped_session_key)})
    for field in ("diagnosis", "age", "sex"):
        if field not in columns:
            continue
        raw = table[columns[field]]
        if field not in values:
            clinical[field] = raw
        elif field == "age":  # only the listed codes change (NACC's 888 → no age): an age is no code to list
            clinical[field] = raw.map(lambda value, recode=values[field]: recode.get(as_code(value), value))
        else:  # a diagnosis code not listed leaves no diagnosis (the scan is dropped, with the reason); a sex code
            clinical[field] = raw.map(as_code).map(values[field])  # not listed, an unknown sex (NACC's 9)
    if "sex" in values and "sex" in columns:  # named at import: Male/Female read through {1: M, 2: F} erased them all
        raw = table[columns["sex"]]
        clinical["_sex_unlisted"] = [f"{columns['sex']} {as_code(v)!r}" if not blank(v) and pd.isna(sex) else ""
                                     for v, sex in zip(raw, clinical["sex"])]
    if "age" in clinical:
        clinical["age"] = pd.to_numeric(clinical["age"], errors="coerce")
        given = table[columns["age"]]  # a problem quotes the table's own value, not its recoding
        clinical["_age_problem"] = row_age_problems({columns["age"]: given}, clinical["age"])
    clinical["_diagnosis_problem"] = [
        diagnosis_problem(columns["diagnosis"], "" if blank(value) else as_code(value),
                          "in the mapping's values.diagnosis")
        for value in table[columns["diagnosis"]]]
    _apply_requirements(clinical, table, header, where, mapping)
    if "birth_date" in columns and "age" in columns:  # a mapping file is refused one without the other
        clinical = _with_age_from_birth(clinical, table, header, columns)
    if not blank(mapping.get("cohort")):  # a mapping without one keeps the scans' own (it wrote '' over them)
        clinical["cohort"] = mapping["cohort"]
    scans_table, scans_where = read_scans(scans)
    nearest = visit_finder(clinical, table, header, where, mapping, scans_table)
    return join_to_scans(scans_table, scans_where, clinical, bids_key, mapped_session_key,
                         session_hints=_session_hints(table[columns["session_id"]], columns), nearest=nearest,
                         as_written=lambda manifest: _ages_as_written(manifest, columns))


def _session_hints(sessions: pd.Series, columns: dict[str, Any]) -> dict[re.Pattern[str], str]:
    """Why scans named by a date, or by an ADNI visit code, meet none of the table's `sessions`, where known."""
    hints = {DATE_KEY: date_session_hint(sessions, columns["session_id"]),
             _ADNI_VISIT_CODE: _adni_visit_code_hint(sessions, columns["session_id"], "visit_date" in columns)}
    return {pattern: hint for pattern, hint in hints.items() if hint}


def _adni_visit_code_hint(sessions: pd.Series, column: str, dated: bool) -> str:
    """How to name a scan whose session is an ADNI visit code (ses-M00, bl) for a table that spells its visits
    otherwise (NACC numbers them, NACCVNUM 1, 2), with the table's own spelling: 'spells otherwise' named no fix.
    `dated`: the mapping names the visits' dates, so a scan named by its MRI's date meets its nearest visit."""
    spelled = list(dict.fromkeys(map(as_code, sessions[~blanks(sessions)].unique())))[:2]  # a dozen, not every row
    if not spelled:
        return ""
    by_date = ", or by its MRI's date, ses-YYYYMMDD, which meets the visit nearest it" if dated else ""
    return (f"ses-M00, bl, m06 are ADNI's visit codes; the table's {column} spells its visits as "
            f"{' and '.join(map(repr, spelled))}: name the scan's session so, e.g. ses-{spelled[0]}{by_date}")


def _ages_as_written(manifest: pd.DataFrame, columns: dict[str, Any]) -> pd.DataFrame:
    """The joined manifest's ages as the import writes them: moved to the scan's date where it is known, to 0.01
    year (the scans' own are compared with these, not with the visit's unrounded age)."""
    if "age" in columns and "birth_date" not in columns:  # an imported manifest given as --scans again (dated scans
        manifest = manifest.drop(columns="age_from", errors="ignore")  # too): its age_from is stale
    if "birth_date" in columns or ("age" in columns and "days_from_visit" in manifest):
        manifest = _age_at_scan(manifest)
    return manifest


def _with_age_from_birth(clinical: pd.DataFrame, table: pd.DataFrame, header: pd.DataFrame,
                         columns: dict[str, Any]) -> pd.DataFrame:
    """`clinical` with each visit's age computed from the birth date where it can be (NACCAGE is in whole years, 0.5
    under ADNI's decimal ages on average, a bin of the model's age encoding), the age column's where it cannot (a
    missing-data code in a birth or visit date, a table exported without those columns), and age_from saying which,
    as the import's summary does."""
    dated = "visit_date" in columns and set(columns["birth_date"]) | set(as_column_list(columns["visit_date"])) <= set(
        header.columns)
    exact = (_age_from_birth(table, columns["birth_date"], visit_days(table, columns["visit_date"])) if dated
             else pd.Series(np.nan, index=clinical.index))
    known = exact.notna()
    source = pd.Series(columns["age"], index=clinical.index, dtype=object).where(clinical["age"].notna())
    clinical = clinical.assign(age=exact.where(known, clinical["age"]), age_from=source.mask(known, BIRTH_DATE))
    clinical["_age_problem"] = clinical["_age_problem"].mask(known, "")  # the age column's code is not used there
    return clinical


def _age_from_birth(table: pd.DataFrame, birth: list[str], visit_day: pd.Series) -> pd.Series:
    """Age in years at each visit from the birth's year and month, born in the middle of the month (UDS has no day:
    the age is within half a month); NaN where a date cannot be read or the age is no participant's (a code such as
    9999 or 99 in a birth part, a birth year typed as a recent one), the range the age column is held to."""
    year, month = (pd.to_numeric(table[column], errors="coerce") for column in birth)
    year = year.where(year.between(pd.Timestamp.min.year + 1, pd.Timestamp.max.year - 1))  # 9999: past a timestamp
    first = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1}), errors="coerce")
    born = first + pd.to_timedelta(first.dt.days_in_month / 2, unit="D")
    age = (visit_day - born).dt.total_seconds() / (DAYS_PER_YEAR * 86400)
    return age.where(age.between(MIN_AGE_YEARS, MAX_AGE_YEARS))


def _age_at_scan(manifest: pd.DataFrame) -> pd.DataFrame:
    """The visit's age (NACCAGE's, or the birth date's), moved by days_from_visit to the scan's date where the join
    knows it (a scan named by its date), and age_at saying which age each row holds (age_from, from what, beside it):
    a visit is up to visit_window_days from its MRI, and the model tells ages half a year apart. A scan named by its
    visit's number keeps the visit's age."""
    days = manifest.get("days_from_visit", pd.Series(np.nan, index=manifest.index))
    at = pd.Series(np.where(days.notna(), "scan", "visit"), index=manifest.index).where(manifest["age"].notna())
    manifest = manifest.drop(columns="age_at", errors="ignore")  # the scans' own, from an earlier import
    manifest = manifest.assign(age=(manifest["age"] + days.fillna(0) / DAYS_PER_YEAR).round(2))
    manifest.insert(manifest.columns.get_loc("age") + 1, "age_at", at)
    if "age_from" in manifest:  # none where the age column's value was a code (NACCAGE -4), written as no age
        source = manifest.pop("age_from").where(manifest["age"].notna())
        manifest.insert(manifest.columns.get_loc("age_at") + 1, "age_from", source)
    return manifest


def _refuse_other_spellings(table: pd.DataFrame, mapping: dict[str, Any], where: str) -> None:
    """Refuse a table that spells the mapping's columns in another case or with other separators (a NACC export in
    lower case, naccid for NACCID), naming every such column at once: refused a part at a time, the user renamed the
    mapping's columns, then its visit dates, then met require.AD told to export a NACCALZP the table had. Names are
    not matched loosely, as a table may hold both spellings. A visit-date column is named only beside another, as
    the import reads those dates only for scans named by date."""
    dates = as_column_list(mapping["columns"].get("visit_date") or [])
    spelled: dict[Any, str] = {}
    for name in mapping_reads(mapping):
        found = [str(column) for column in table.columns if loose_name(str(column)) == loose_name(str(name))]
        if name not in table.columns and found:
            spelled[name] = found[0]
    if set(spelled) - set(dates):
        raise ValueError(f"{where}: it spells the mapping's {', '.join(map(str, spelled))} otherwise, as "
                         f"{', '.join(map(repr, spelled.values()))}: write them so in the mapping, or the table's "
                         "header as the mapping does (names are matched as written: a table may hold both)")


def _mapped_table_fix(table: pd.DataFrame, diagnosis_column: str | None) -> str:
    """How to fix a --table without the mapping's columns: it may be another table the user has beside it, ADNIMERGE
    or NACC's MRI table (delivered with the UDS one), or ADNI1's DXSUM, which codes its diagnosis in DXCURREN, where
    'name the table's own columns' sent them to the mapping."""
    if set(with_adnimerge_spellings(table).columns) >= set(ADNIMERGE_COLUMNS):
        return "this is ADNIMERGE: pass it as --adnimerge, without --mapping"
    if set(_NACC_MRI_TABLE_SIGNS) <= set(table.columns):
        return ("this is NACC's MRI table, which dates the scans but holds no diagnosis: pass NACC's UDS table as "
                "--table, and name each scan's session in --scans by its MRI's date, ses-YYYYMMDD from MRIYR, MRIMO, "
                "MRIDY")
    if diagnosis_column not in table and "DXCURREN" in table:
        return ADNI1_DXSUM_HINT
    return "name the table's own columns in the mapping's columns:"


def _read_mapped(source: str | Path | pd.DataFrame, mapping: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(the clinical table's columns that the mapping reads, a table of no rows under all its columns for the
    refusals that name them, what and where it is): a NACC UDS export has ~1000 columns, of which the shipped
    mapping reads 9, and ~190k visits: an import reading 30,000 of them whole took ~1 GB of memory."""
    what = "clinical table (--table)"
    if isinstance(source, pd.DataFrame):
        table, where = read_table(source, what)
        return table, table.iloc[:0], where
    path = table_file(source, what)
    separator = column_separator(path)
    names, reads = read_csv_header(path, sep=separator), set(mapping_reads(mapping))
    table = read_csv_table(path, dtype=str, sep=separator, usecols=[name for name in names if name in reads])
    return table, pd.DataFrame(columns=names), f"{what} {path}"
