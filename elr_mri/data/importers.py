"""Turn the clinical tables users download (ADNIMERGE, NACC UDS) into a manifest for training.

Each importer joins a clinical table to the scans preprocess/ produced (its output manifest:
participant_id, session_id, path, processed_path, ...) by participant and session, and returns
the joined manifest together with the scans it could not use and why, so nothing disappears
silently. Diagnoses come out as CN / MCI / AD.

Participants and sessions meet by the keys of `elr_mri.data.import_keys`: ADNIMERGE's PTID and VISCODE as Clinica's
BIDS labels write them (011_S_0002 at bl is sub-ADNI011S0002 at ses-M00), a mapped table's without BIDS' prefixes.

NACC (or any cohort) goes through a YAML column-and-value mapping (configs/nacc/nacc_mapping.yaml). A scan named by
its date (ses-20120304) takes its participant's visit nearest in time where the mapping names the visits' dates
(columns.visit_date) and the widest gap (visit_window_days), with the table's age, the visit's, moved to the scan's date (`age_at`); a mapping's
columns.birth_date gives that age in decimal years from the birth's year and month (`age_from`). Relative image
paths of the scans table are made absolute against its folder. Two scans of one visit, and a clinical value that maps
to no class, are left out with the reason.

Public names: `ImportResult`, `import_adnimerge`, `import_mapped_table`, `preprocess_failures`.
"""

from __future__ import annotations

import os
import re
import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from elr_mri.data.import_keys import (DATE_KEY, adni_diagnosis, adni_participant_key, adni_session_key,
                                      bids_key, mapped_session_key)
from elr_mri.data.import_mapping import DATE_PARTS, as_column_list, load_mapping, mapping_reads
from elr_mri.data.table_values import (MAX_AGE_YEARS, as_code, blank, blanks, columns_it_has, has_usable_status,
                                        loose_name, row_age_problems, sex_letters, status_in_words)
from preprocess.inputs import InputError, read_csv_header, read_csv_table
from preprocess.user_errors import not_a_file

__all__ = [
    "ImportResult",
    "import_adnimerge",
    "import_mapped_table",
    "preprocess_failures",
]

DAYS_PER_YEAR = 365.25  # moves a visit's age to its scan's date, days_from_visit away
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
# ADNI1's DXSUM has no DIAGNOSIS, the column of the later phases: a mapping naming it was told to name "the table's
# own columns", not which
ADNI1_DXSUM_HINT = ("ADNI1's DXSUM gives the diagnosis as DXCURREN, 1 NL, 2 MCI, 3 AD (its DXCHANGE, 1 to 9, is a "
                    "change of stage): name DXCURREN as the mapping's columns.diagnosis, with values.diagnosis "
                    "{1: CN, 2: MCI, 3: AD}")
_DAY_MONTH_DATE = re.compile(r"\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?:[ T][\d:.]*)?")  # 3/4/2012: which is the month?
_RID_KEY = re.compile(r"[0-9]+")  # an ADNI participant key of digits alone: ADNIMERGE's RID, not its PTID
# ADNI's own visit codes of a phase (ADNI-GO/2's v03, ADNI3's init, y1), where ADNIMERGE's VISCODE is VISCODE2 (bl, m06)
_ADNI_PROTOCOL_VISIT = re.compile(r"V\d+|INIT|Y\d+")
ADNIMERGE_COLUMNS = ("PTID", "VISCODE", "DX", "DX_bl", "AGE", "Years_bl")  # the ones its import reads (and PTGENDER)
# a table passed to the other import: NACC's UDS ids, and ADNIMERGE's own columns
_MAPPED_TABLE_SIGNS = ("NACCID", "NACCVNUM", "NACCUDSD")
_NACC_MRI_TABLE_SIGNS = ("NACCMRFI", "MRIYR")  # NACC's MRI table: one row an MRI session (its file, its date)
# a visit's scan named by the visit's number and another named by a date that visit is nearest
NAMED_BY_NUMBER_AND_DATE = ("one of several scans of one visit, named by its number and by a date near it (e.g. ses-02 "
                            "and ses-20110901): one MRI under two names, or two MRIs that only their dates tell apart; "
                            "name each by its MRI's date, ses-YYYYMMDD, or keep one in --scans")
BIRTH_DATE = "birth date"  # age_from of an age computed from the birth date, not read from the age column


@dataclass
class ImportResult:
    """The joined manifest and the scans left out, each with a one-line reason."""

    manifest: pd.DataFrame  # the scans' columns plus diagnosis, age, sex, cohort
    dropped: pd.DataFrame  # participant_id, session_id, reason
    # "participant/session: why" for imported scans whose clinical age is not years at the scan (text, a code,
    # months), written as no age
    age_problems: list[str] = dataclasses.field(default_factory=list)
    # one person under two IDs in --scans ("011_S_0002 and sub-ADNI011S0002"), which the join reads as one person but
    # training refuses: the splits would put that person in two of them
    two_spellings: list[str] = dataclasses.field(default_factory=list)
    # "participant/session" of imported scans whose processed_path is empty, and "a/1 and b/1 (file)" of scans
    # naming one processed file: training refuses both, row by row, long after the table they came from
    unprocessed: list[str] = dataclasses.field(default_factory=list)
    one_file_twice: list[str] = dataclasses.field(default_factory=list)
    # "sex disagrees with the clinical table's in 2 imported scans (first: 011_S_0002/bl, 'F' in --scans, 'M' in the
    # table)": the scans' own values of a column the import writes (a BIDS participants.tsv's) that the table's
    # replace with others, one entry a column
    replaced: list[str] = dataclasses.field(default_factory=list)
    # "SEX 'Male' (3 scans)": imported sex codes that a mapping's values.sex does not list, written as unknown sex
    unlisted_sex_codes: list[str] = dataclasses.field(default_factory=list)
    # what many of the drops share and how to fix it, said once in the summary (DXSUM's codes 1/2/3 as DX)
    hint: str = ""

    def summary(self) -> str:
        reasons = self.dropped["reason"].value_counts()
        left_out = "; ".join(f"{count} {reason}" for reason, count in reasons.items())
        ageless = int(self.manifest["age"].isna().sum()) if "age" in self.manifest else len(self.manifest)
        sexless = int(self.manifest["sex"].isna().sum()) if "sex" in self.manifest else 0
        whole_years = _aged_without_birth_date(self.manifest)
        missing = [f"{ageless} without an age"] * bool(ageless) + [f"{sexless} without a sex"] * bool(sexless)
        missing += [whole_years] * bool(whole_years)
        count = len(self.manifest)
        imported = f"{count} scan{'s' * (count != 1)} imported" + (  # a model with age refuses those without at training
            f" ({' and '.join(missing)})" if missing else "")
        line = f"{imported}, {len(self.dropped)} left out: {left_out}" if left_out else imported
        return f"{line} ({self.hint})" if self.hint else line


def _aged_without_birth_date(manifest: pd.DataFrame) -> str:
    """'3 aged by NACCAGE, whole years, not by the birth date' where a mapping's birth_date could not date some ages
    (a missing-data code, a table without those columns), '' otherwise: said, as few read the manifest's age_from."""
    sources = manifest.get("age_from", pd.Series(dtype=object)).dropna()
    whole = sources[sources != BIRTH_DATE]
    return f"{len(whole)} aged by {whole.iloc[0]}, whole years, not by the birth date" if len(whole) else ""


SCANS = "scans manifest (--scans)"  # the table of scans both importers join their clinical rows to
COMPARED_OWN_COLUMNS = ("diagnosis", "age", "sex")  # the scans' own of these, replaced by the table's, are compared
AGES_AGREE_YEARS = 1.0  # a scan's own age this near the table's is the same age (in whole years, or at baseline)


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
    table, where = _read(adnimerge, "ADNIMERGE table (--adnimerge)")
    table = _with_adnimerge_spellings(table)
    _require(table, ADNIMERGE_COLUMNS, where,
             "this is a mapped table, such as NACC's: pass it as --table with --mapping (configs/nacc/nacc_mapping.yaml)"
             if set(table.columns) & set(_MAPPED_TABLE_SIGNS) else
             "--adnimerge takes ADNIMERGE (DXSUM has no ages: export ADNIMERGE; DXSUM as --table with a mapping "
             "meets only scans named as DXSUM names them, 011_S_0002 at bl, not sub-ADNI011S0002 at ses-M00)")
    _require_rows(table, where)
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
        "_diagnosis_problem": [_diagnosis_problem(name, value, "one ADNI uses (CN, SMC, EMCI, LMCI, MCI, "
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
    result = _join(*_read_scans(scans), clinical, adni_participant_key, adni_session_key, session_hints={
        DATE_KEY: "ADNIMERGE's sessions are visits, VISCODE bl, m06, m12: name the scan's session by its visit, e.g. "
                   "ses-M06, not by its date",
        _ADNI_PROTOCOL_VISIT: "v03, init, y1 are a phase's own visit codes; ADNIMERGE's VISCODE is their VISCODE2: "
                              "name the scan's session by it, e.g. bl or ses-M12"}, participant_hints={
        _RID_KEY: "an ID of digits alone is ADNIMERGE's RID; rows are met by PTID, as training and splits compare "
                  "participants: name the scan by its PTID, e.g. 011_S_0002 for RID 2"})
    result.hint = _dxsum_codes_hint(raw, diagnosis, clinical["_diagnosis_problem"], result.dropped["reason"])
    return result


def _dxsum_codes_hint(raw: pd.Series, diagnosis: pd.Series, problems: pd.Series, dropped: pd.Series) -> str:
    """The hint for scans dropped with DXSUM's numeric codes as DX, '' for none: DXCHANGE's where a dropped scan has
    one of its own (4 to 9), else DIAGNOSIS's (1, 2, 3), which DXCHANGE shares."""
    code = raw.map(lambda value: "" if blank(value) else as_code(value)).where(diagnosis.isna(), "")
    for codes, hint in ((DXCHANGE_CODES, DXCHANGE_CODES_HINT), (DXSUM_DIAGNOSIS_CODES, DXSUM_CODES_HINT)):
        if dropped.isin(problems[code.isin(codes)]).any():
            return hint
    return ""


def _with_adnimerge_spellings(table: pd.DataFrame) -> pd.DataFrame:
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


def preprocess_failures(scans: str | Path) -> str | None:
    """A note on the scans preprocess failed on, from the failures.csv beside its manifest (None when it
    lists none): they are not in the manifest, so no import can name them among its drops."""
    failures = Path(scans).resolve().with_name("failures.csv")  # beside the manifest itself, not a link to it
    if not failures.is_file():
        return None
    try:
        count = len(read_csv_table(failures, dtype=str))
    except InputError as err:  # a note, not a reason to lose the import
        return f"note: cannot count the scans preprocess failed on: {err}"
    if not count:
        return None
    return (f"note: preprocess failed on {count} scan(s), so they are not in {scans} and not imported; why is in "
            f"{failures} (fix them and rerun preprocess into the same folder to add them)")


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
            _require(header, (column,), where, f"the mapping's require.{label} reads it: export it with the table, or "
                                               "delete that condition from the mapping")
            codes = _allowed_codes(allowed)
            given = table[column].map(lambda value: "" if blank(value) else as_code(value))
            fails = (clinical["diagnosis"] == label) & ~given.isin(codes)
            clinical.loc[fails, "diagnosis"] = np.nan
            found = given.map(lambda value, column=column: f"{column} {value!r}" if value else f"no {column}")
            clinical.loc[fails, "_diagnosis_problem"] = [  # the row's own value: NACCALZP 7 (another cause), -4
                f"with {diagnosis} {as_code(code)!r} ({label}) but {has}, not {' or '.join(sorted(codes))} "
                "(the mapping's require)" for code, has in zip(table.loc[fails, diagnosis], found[fails])]


def _visit_finder(clinical: pd.DataFrame, table: pd.DataFrame, header: pd.DataFrame, where: str,
                  mapping: dict[str, Any], scans: pd.DataFrame) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
    """`_join`'s `nearest` where the mapping dates the visits and some scans are named by their date, adding each
    visit's day to `clinical`; None otherwise, as the dates are read only for scans that need them."""
    columns = mapping["columns"]
    if "visit_date" not in columns or not _named_by_date(scans).any():
        return None
    _require_visit_dates(header, columns["visit_date"], where, columns["session_id"])
    clinical["_visit_day"] = _visit_days(table, columns["visit_date"])
    window = float(mapping["visit_window_days"])
    return functools.partial(_nearest_visits, clinical=clinical, window=window,
                             undated=_undated_visit_reason(table, columns["visit_date"]))


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
    _require(header, tuple(column for field, column in columns.items() if field not in ("visit_date", "birth_date")),
             where, _mapped_table_fix(header, columns.get("diagnosis")))
    _require_rows(table, where)
    values = {field: {as_code(k): v for k, v in codes.items()} for field, codes in (mapping.get("values") or {}).items()}
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
        _diagnosis_problem(columns["diagnosis"], "" if blank(value) else as_code(value), "in the mapping's values.diagnosis")
        for value in table[columns["diagnosis"]]]
    _apply_requirements(clinical, table, header, where, mapping)
    if "birth_date" in columns and "age" in columns:  # a mapping file is refused one without the other
        clinical = _with_age_from_birth(clinical, table, header, columns)
    clinical["cohort"] = mapping.get("cohort", "")
    scans_table, scans_where = _read_scans(scans)
    nearest = _visit_finder(clinical, table, header, where, mapping, scans_table)
    hint = _date_session_hint(table[columns["session_id"]], columns["session_id"])
    result = _join(scans_table, scans_where, clinical, bids_key, mapped_session_key,
                   session_hints={DATE_KEY: hint} if hint else {}, nearest=nearest)
    if "age" in columns and "birth_date" not in columns:  # an imported manifest given as --scans again (dated scans
        result.manifest = result.manifest.drop(columns="age_from", errors="ignore")  # too): its age_from is stale
    if "birth_date" in columns or ("age" in columns and "days_from_visit" in result.manifest):
        result.manifest = _age_at_scan(result.manifest)
    return result


def _with_age_from_birth(clinical: pd.DataFrame, table: pd.DataFrame, header: pd.DataFrame,
                         columns: dict[str, Any]) -> pd.DataFrame:
    """`clinical` with each visit's age computed from the birth date where it can be (NACCAGE is in whole years, 0.5
    under ADNI's decimal ages on average, a bin of the model's age encoding), the age column's where it cannot (a
    missing-data code in a birth or visit date, a table exported without those columns), and age_from saying which,
    as the import's summary does."""
    dated = "visit_date" in columns and set(columns["birth_date"]) | set(as_column_list(columns["visit_date"])) <= set(
        header.columns)
    exact = (_age_from_birth(table, columns["birth_date"], _visit_days(table, columns["visit_date"])) if dated
             else pd.Series(np.nan, index=clinical.index))
    known = exact.notna()
    source = pd.Series(columns["age"], index=clinical.index, dtype=object).where(clinical["age"].notna())
    clinical = clinical.assign(age=exact.where(known, clinical["age"]), age_from=source.mask(known, BIRTH_DATE))
    clinical["_age_problem"] = clinical["_age_problem"].mask(known, "")  # the age column's code is not used there
    return clinical


def _age_from_birth(table: pd.DataFrame, birth: list[str], visit_day: pd.Series) -> pd.Series:
    """Age in years at each visit from the birth's year and month, born in the middle of the month (UDS has no day:
    the age is within half a month); NaN where a date cannot be read or the age is no person's (a code such as
    9999 or 99 in a birth part)."""
    year, month = (pd.to_numeric(table[column], errors="coerce") for column in birth)
    year = year.where(year.between(pd.Timestamp.min.year + 1, pd.Timestamp.max.year - 1))  # 9999: past a timestamp
    first = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1}), errors="coerce")
    born = first + pd.to_timedelta(first.dt.days_in_month / 2, unit="D")
    age = (visit_day - born).dt.total_seconds() / (DAYS_PER_YEAR * 86400)
    return age.where((age >= 0) & (age <= MAX_AGE_YEARS))


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
    if set(_with_adnimerge_spellings(table).columns) >= set(ADNIMERGE_COLUMNS):
        return "this is ADNIMERGE: pass it as --adnimerge, without --mapping"
    if set(_NACC_MRI_TABLE_SIGNS) <= set(table.columns):
        return ("this is NACC's MRI table, which dates the scans but holds no diagnosis: pass NACC's UDS table as "
                "--table, and name each scan's session in --scans by its MRI's date, ses-YYYYMMDD from MRIYR, MRIMO, "
                "MRIDY")
    if diagnosis_column not in table and "DXCURREN" in table:
        return ADNI1_DXSUM_HINT
    return "name the table's own columns in the mapping's columns:"


def _named_by_date(scans: pd.DataFrame) -> pd.Series:
    """Which scans' sessions are dates (ses-20120304), as a cohort without visit numbers names its MRIs."""
    if "session_id" not in scans:  # refused by the join, naming the column
        return pd.Series(False, index=scans.index)
    return scans["session_id"].map(lambda value: bool(DATE_KEY.fullmatch(mapped_session_key(value))))


def _require_visit_dates(header: pd.DataFrame, column: str | list[str], where: str, session: str) -> None:
    """Refuse a table without the visit-date columns the mapping names, read only for scans named by their date."""
    _require(header, tuple(as_column_list(column)), where, "the mapping's columns.visit_date reads it to give a scan named "
                                                     "by its date its nearest visit: export it with the table, or "
                                                     f"name the scans' sessions by {session}")


def _visit_days(table: pd.DataFrame, column: str | list[str]) -> pd.Series:
    """Each visit's date (NaT where it cannot be read: a missing-data code such as 88 for the month), from one column
    of dates or from NACC's three, year, month and day."""
    if isinstance(column, str):
        keys = table[column].map(lambda value: "" if blank(value) else mapped_session_key(value))
        return _day_of_keys(keys)
    parts = pd.DataFrame({part: pd.to_numeric(table[name], errors="coerce") for part, name in zip(DATE_PARTS, column)})
    return pd.to_datetime(parts, errors="coerce")


def _undated_visit_reason(table: pd.DataFrame, column: str | list[str]) -> str:
    """Why a scan named by its date took no visit where none of its participant's visits has a date that can be read:
    a missing-data code (VISITMO 88), or a column of dates written month or day first, which is said with its fix (it
    left every such scan out naming only the mapping's key)."""
    hint = _day_first_hint(_spellings(table[column]), column) if isinstance(column, str) else ""
    return f"without a clinical visit whose date can be read (the mapping's columns.visit_date{': ' * bool(hint)}{hint})"


def _spellings(values: pd.Series) -> list[str]:
    """A column's values as written, each once, in the table's order: a dozen visits, not 200,000 rows, to read."""
    return list(values[~blanks(values)].astype(str).str.strip().unique())


def _day_first_hint(given: list[str], column: str) -> str:
    """How to fix a column whose dates are month or day first (Excel re-saves 2012-03-04 as 3/4/2012), which no
    reader here guesses; '' where `given`, its spellings, has none."""
    example = next((v for v in given if _DAY_MONTH_DATE.fullmatch(v)), None)
    if example is None:
        return ""
    return (f"the table's {column} writes dates month or day first, e.g. {example!r}, which are not guessed: write them "
            "year first, YYYY-MM-DD, and import again")


def _day_of_keys(keys: pd.Series) -> pd.Series:
    """Session keys as dates: YYYYMMDD keys read, every other key (a visit number, an impossible date) NaT."""
    dated = keys.map(lambda key: bool(DATE_KEY.fullmatch(key)))
    return pd.to_datetime(keys.where(dated), format="%Y%m%d", errors="coerce")


def _nearest_visits(keys: pd.DataFrame, clinical: pd.DataFrame, window: float, undated: str) -> pd.DataFrame:
    """`keys` (a scan's _participant, _session) where each scan named by its date takes the session of its
    participant's visit nearest in time (the earlier of two as near), if within `window` days: an MRI is seldom taken
    on its visit's day. Adds days_from_visit (scan minus visit) and _far, why a dated scan took no visit (`undated`
    where none of its participant's visits has a date that can be read)."""
    scans = pd.DataFrame({"_row": np.arange(len(keys)), "_participant": keys["_participant"].to_numpy(),
                          "_scan_day": _day_of_keys(keys["_session"]).to_numpy()}).dropna(subset=["_scan_day"])
    pairs = scans.merge(clinical[["_participant", "_session", "_visit_day"]], on="_participant")
    pairs["_days"] = (pairs["_scan_day"] - pairs["_visit_day"]).dt.days
    pairs["_gap"] = pairs["_days"].abs()
    # per scan, its nearest visit, the earlier of two as near; a visit without a date (NaN gap) sorts last
    nearest = pairs.sort_values(["_row", "_gap", "_visit_day"], kind="stable").drop_duplicates("_row")
    keys = keys.assign(days_from_visit=np.nan, _far="")
    near = nearest[nearest["_gap"] <= window]
    keys.loc[keys.index[near["_row"]], "_session"] = near["_session"].to_numpy()
    keys.loc[keys.index[near["_row"]], "days_from_visit"] = near["_days"].to_numpy(dtype=float)
    undated_rows = nearest[nearest["_gap"].isna()]  # a missing-data code in a date part (VISITMO 88)
    keys.loc[keys.index[undated_rows["_row"]], "_far"] = undated
    far = nearest[nearest["_gap"] > window]
    keys.loc[keys.index[far["_row"]], "_far"] = [
        f"without a clinical visit within {window:g} days of its date (the nearest, {visit:%Y-%m-%d}, is {abs(days):g} "
        f"days {'before' if days > 0 else 'after'} it; the mapping's visit_window_days sets the limit)"
        for visit, days in zip(far["_visit_day"], far["_days"])]
    return keys


def _date_session_hint(sessions: pd.Series, column: str) -> str:
    """Why scans named by date meet none of the table's visits, where that is known ('' otherwise): its dates are
    month or day first (Excel re-saves 2012-03-04 as 3/4/2012), or it holds no dates at all (NACC's visit numbers,
    NACCVNUM). The generic 'spells otherwise' left the fix unsaid. Each spelling is read once, in the table's
    order."""
    given = _spellings(sessions)
    day_first = _day_first_hint(given, column)
    if day_first:
        return day_first
    if given and not any(DATE_KEY.fullmatch(mapped_session_key(v)) for v in given):
        return (f"the table's {column} holds no dates, e.g. {given[0]!r}: name the scan's session by its {column}, the "
                "visit its MRI belongs to, or name the visits' dates in the mapping (columns.visit_date with "
                "visit_window_days, as configs/nacc/nacc_mapping.yaml does) to meet the visit nearest the MRI")
    return ""


def _diagnosis_problem(column: str, value: Any, expected: str) -> str:
    """Why a clinical row gives no class (read only where it gives none): nothing there, or a value not listed."""
    if blank(value):
        return f"without a diagnosis ({column}) at that visit"
    return f"with {column} {str(value).strip()!r}, not {expected}"


def _drop_reasons(joined: pd.DataFrame, counts: pd.DataFrame, session_hints: dict[re.Pattern[str], str] | None,
                  participant_hints: dict[re.Pattern[str], str] | None) -> pd.Series:
    """Why each scan of `joined` (the scans beside their clinical rows) is left out, "" for one kept; a later reason
    overrides an earlier one, the most telling last. `counts`: how many clinical rows each key met (see `_join`)."""
    reason = pd.Series("", index=joined.index)
    no_class = joined["diagnosis"].isna()
    reason[no_class] = joined.loc[no_class, "_diagnosis_problem"]
    reason[joined["_matches"] > 1] = ("matching several clinical rows that differ (the table gives that visit two "
                                      "diagnoses, ages or sexes: keep the right row)")
    unmatched = joined["_matches"].isna()
    in_table = joined["_participant"].isin(counts["_participant"])
    reason[unmatched & in_table] = ("without a clinical row at that session (the table has the participant at other "
                                    "sessions: a visit it lacks, or one it spells otherwise)")
    reason[unmatched & ~in_table] = "without a clinical row for the participant (not in the table under that id)"
    for key, hints, lacking, what in (("_session", session_hints, unmatched & in_table, "at that session"),
                                      ("_participant", participant_hints, unmatched & ~in_table, "for the participant")):
        for pattern, hint in (hints or {}).items():
            spelled = joined[key].map(lambda value, pattern=pattern: bool(pattern.fullmatch(value)))
            reason[lacking & spelled] = f"without a clinical row {what} ({hint})"
    if "_far" in joined:
        far = unmatched & (joined["_far"] != "")
        reason[far] = joined.loc[far, "_far"]
    # preprocess did not finish it: no volume to train on, and no rival to a finished scan of the same visit
    unusable = ~has_usable_status(joined["status"]) if "status" in joined else pd.Series(False, index=joined.index)
    # MRIs of two dates that share their nearest visit are two scans (days_from_visit tells them apart), not one twice
    scan = ["_participant", "_session"] + ["days_from_visit"] * ("days_from_visit" in joined)
    same_visit = joined[~unusable].duplicated(scan, keep=False).reindex(joined.index, fill_value=False)
    reason[same_visit] = "one of several scans of one visit (e.g. bl and ses-M00): keep one in --scans"
    if "days_from_visit" in joined:
        twice = _named_by_number_and_date(joined[~unusable]).reindex(joined.index, fill_value=False)
        reason[twice] = NAMED_BY_NUMBER_AND_DATE
    if unusable.any():
        reason[unusable] = [f"its status in --scans is {status_in_words(status)}" for status in joined.loc[unusable, "status"]]
    return reason


def _join(
    scans: pd.DataFrame,
    scans_source: str,
    clinical: pd.DataFrame,
    participant_key: Callable[[Any], str],
    session_key: Callable[[Any], str],
    session_hints: dict[re.Pattern[str], str] | None = None,
    participant_hints: dict[re.Pattern[str], str] | None = None,
    nearest: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> ImportResult:
    """Attach each scan's clinical row; list scans without one, with two, or without a usable diagnosis.
    `session_hints`, `participant_hints`: why a scan whose session (participant) key the pattern matches, a date say,
    meets none of the table's sessions (participants), where that is known. `nearest`: gives scans named by date the
    session of a visit near it (`_nearest_visits`)."""
    _require(scans, ("participant_id", "session_id"), scans_source)
    keys = pd.DataFrame({"_participant": scans["participant_id"].map(participant_key),
                         "_session": scans["session_id"].map(session_key)})
    if nearest is not None:
        keys = nearest(keys)
    clinical = clinical.drop_duplicates()  # a row repeated as it is (an appended export) is still one visit
    counts = clinical.groupby(["_participant", "_session"]).size().rename("_matches").reset_index()
    clinical = clinical.drop_duplicates(["_participant", "_session"], keep=False)
    imported = [c for c in clinical.columns if not c.startswith("_")]
    # the scans' own columns of those names (an imported manifest given as --scans again) are replaced, not doubled
    written = imported + [c for c in keys.columns if not c.startswith("_")]
    own = scans[[c for c in COMPARED_OWN_COLUMNS if c in scans.columns and c in imported]].reset_index(drop=True)
    joined = pd.concat([scans.drop(columns=[c for c in written if c in scans.columns]), keys], axis=1)
    joined = joined.merge(counts, on=["_participant", "_session"], how="left").merge(
        clinical, on=["_participant", "_session"], how="left"
    )
    reason = _drop_reasons(joined, counts, session_hints, participant_hints)
    dropped = joined.loc[reason != "", ["participant_id", "session_id"]].assign(reason=reason[reason != ""])
    kept = joined[reason == ""].copy()
    problems = kept["_age_problem"].fillna("") if "_age_problem" in kept else pd.Series("", index=kept.index)
    if problems.any():
        kept.loc[problems != "", "age"] = np.nan  # every use of a manifest refuses an age out of range
    age_problems = [f"{participant}/{session}: {problem}" for participant, session, problem
                    in zip(kept["participant_id"], kept["session_id"], problems) if problem]
    spellings = kept.groupby("_participant", sort=False)["participant_id"].unique()
    two_spellings = [" and ".join(map(str, names)) for names in spellings if len(names) > 1]
    manifest = kept.drop(columns=["_participant", "_session", "_matches", "_diagnosis_problem", "_age_problem",
                                  "_sex_unlisted", "_far", "_visit_day"], errors="ignore")
    return ImportResult(manifest=manifest.reset_index(drop=True), dropped=dropped.reset_index(drop=True),
                        age_problems=age_problems, two_spellings=two_spellings,
                        unlisted_sex_codes=_counted(kept.get("_sex_unlisted")), unprocessed=_unprocessed(kept),
                        one_file_twice=_one_file_twice(kept), replaced=_replaced_disagreements(own, kept))


def _replaced_disagreements(own: pd.DataFrame, kept: pd.DataFrame) -> list[str]:
    """For each of the scans' `own` columns that the import writes over, the kept scans whose own value the table's
    replaces with another: the table's is written (a cohort's visit diagnosis is its own), but not unsaid."""
    found = []
    for column in [name for name in own.columns if name in kept.columns]:
        given, written = own[column].reindex(kept.index), kept[column]
        differs = _disagree(column, given, written)
        if differs.any():
            first = differs.idxmax()
            count = int(differs.sum())
            found.append(f"{column} disagrees with the clinical table's in {count} imported scan{'s' * (count > 1)} "
                         f"(first: {kept.at[first, 'participant_id']}/{kept.at[first, 'session_id']}, "
                         f"{given[first]!r} in --scans, {_shown(written[first])} in the table)")
    return found


def _disagree(column: str, given: pd.Series, written: pd.Series) -> pd.Series:
    """Where --scans gave a value and the table another (or none): ages within `AGES_AGREE_YEARS`, a sex spelled
    otherwise (female, F) and a diagnosis in another case agree."""
    if column == "age":
        years = pd.to_numeric(given, errors="coerce")
        return years.notna() & ~((years - pd.to_numeric(written, errors="coerce")).abs() < AGES_AGREE_YEARS)
    if column == "sex":
        given, written = sex_letters(given)[0].fillna(given), sex_letters(written)[0]
    given_text, written_text = (values.map(lambda v: "" if pd.isna(v) else str(v).strip().upper())
                                for values in (given, written))
    return (given_text != "") & (given_text != written_text)


def _shown(value: Any) -> str:
    """A written value as a warning quotes it: text quoted, a number as written (not np.float64(75.0)), none if empty."""
    return "none" if pd.isna(value) else repr(value) if isinstance(value, str) else str(value)


def _scan_names(scans: pd.DataFrame) -> list[str]:
    """"participant/session" of each scan, as the import's warnings name them."""
    return [f"{participant}/{session}" for participant, session in zip(scans["participant_id"], scans["session_id"])]


def _unprocessed(scans: pd.DataFrame) -> list[str]:
    """The scans whose processed_path is empty: no volume for training to read."""
    if "processed_path" not in scans:
        return []
    return _scan_names(scans[blanks(scans["processed_path"])])


def _one_file_twice(scans: pd.DataFrame) -> list[str]:
    """"a/1 and b/1 (file)" for each processed file that scans under two ids name: one scan split as two."""
    if "processed_path" not in scans:
        return []
    named = scans[~blanks(scans["processed_path"])]
    files = named["processed_path"].map(lambda path: os.path.realpath(str(path).strip()))
    return [f"{' and '.join(_scan_names(named[files == file]))} ({file})"
            for file in files[files.duplicated()].unique()]


def _named_by_number_and_date(scans: pd.DataFrame) -> pd.Series:
    """Whether each scan's visit is named both by its number (ses-02) and by a date near it (ses-20110901): the dated
    scan may be the numbered one under its other name, and the numbered one has no days_from_visit to tell them apart
    by, so keeping both could train on one MRI twice."""
    days = scans.groupby(["_participant", "_session"])["days_from_visit"]
    dated = days.transform("count")
    return (dated > 0) & (dated < days.transform("size"))


def _counted(codes: pd.Series | None) -> list[str]:
    """"SEX 'Male' (3 scans)" for each non-empty value, in order of the value."""
    if codes is None:
        return []
    counts = codes[codes.fillna("") != ""].value_counts().sort_index()
    return [f"{code} ({n} scan{'s' * (n > 1)})" for code, n in counts.items()]


def _read_scans(source: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The scans table, its relative image paths made absolute against its own folder: the imported manifest
    is written elsewhere (--out), where they would point nowhere."""
    table, where = _read(source, SCANS)
    if not isinstance(source, pd.DataFrame):
        folder = Path(source).absolute().parent  # the link's folder for a linked table, as load_manifest reads it
        for column in ("path", "processed_path"):
            if column in table:
                table[column] = [value if blank(value) or Path(str(value).strip()).is_absolute()
                                 else str(folder / str(value).strip()) for value in table[column]]
    return table, where


def _read(source: str | Path | pd.DataFrame, what: str) -> tuple[pd.DataFrame, str]:
    """(table, what and where it is, for messages): `what` names the table and the option it came from."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), what
    path = _table_file(source, what)
    return read_csv_table(path, dtype=str, sep=_column_separator(path)), f"{what} {path}"


def _read_mapped(source: str | Path | pd.DataFrame, mapping: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(the clinical table's columns that the mapping reads, a table of no rows under all its columns for the
    refusals that name them, what and where it is): a NACC UDS export has ~1000 columns, of which the shipped
    mapping reads 9, and ~190k visits: an import reading 30,000 of them whole took ~1 GB of memory."""
    what = "clinical table (--table)"
    if isinstance(source, pd.DataFrame):
        table, where = _read(source, what)
        return table, table.iloc[:0], where
    path = _table_file(source, what)
    separator = _column_separator(path)
    names, reads = read_csv_header(path, sep=separator), set(mapping_reads(mapping))
    table = read_csv_table(path, dtype=str, sep=separator, usecols=[name for name in names if name in reads])
    return table, pd.DataFrame(columns=names), f"{what} {path}"


def _table_file(source: str | Path, what: str) -> Path:
    """`source` as the path of a file, refused in one line where it is a folder or nothing."""
    path = Path(source)
    if path.is_dir():
        inside = path / "manifest.csv"  # preprocess's --output folder, given for the manifest it wrote there
        named = f" (the manifest preprocess wrote there is {inside})" if inside.is_file() else ""
        raise IsADirectoryError(f"{what} {path}: is a folder; pass the table's CSV file{named}")
    if not path.is_file():
        why = not_a_file(path) if path.exists() else "file not found"  # a pipe, such as the shell's <(...)
        raise FileNotFoundError(f"{what} {path}: {why}")
    return path


def _column_separator(path: Path) -> str:
    """A .tsv or .tab table is read tab-separated, any other comma-separated."""
    return "\t" if path.suffix in (".tsv", ".tab") else ","


def _require(table: pd.DataFrame, columns: tuple[str, ...], where: str, fix: str = "") -> None:
    """Refuse a table without `columns`, naming the ones it has; `fix`: how to get the right table or mapping."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        found = columns_it_has([str(c) for c in table.columns], missing)
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)} ({found}){'; ' + fix if fix else ''}")


def _require_rows(table: pd.DataFrame, where: str) -> None:
    """Refuse a clinical table of a header alone (an export that stopped, a filter that kept nothing): the join of no
    rows ended in a pandas traceback."""
    if table.empty:
        raise ValueError(f"{where}: has a header but no rows; export the table again with its visits")
