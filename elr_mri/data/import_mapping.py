"""A cohort's YAML column-and-value mapping (configs/nacc/nacc_mapping.yaml), read and checked whole before any table
is: `load_mapping` refuses, in one line naming the key, what would crash the import or quietly read the table another
way; `mapping_reads` lists the table's columns a mapping reads.

Public names: `load_mapping`, `mapping_reads`, `as_column_list`, `MAPPING_KEYS`, `DATE_PARTS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from elr_mri.config.strict_yaml import read_yaml_file
from elr_mri.data.import_keys import ADNI_DIAGNOSES
from elr_mri.data.table_values import blank
from preprocess.user_errors import not_a_file

__all__ = ["load_mapping", "mapping_reads", "as_column_list", "MAPPING_KEYS", "DATE_PARTS"]


MAPPING_KEYS = ("columns", "values", "require", "cohort", "visit_window_days")
# visit_date: the visit's date, one column of dates or NACC's [VISITYR, VISITMO, VISITDAY]; a scan named by its MRI date
# takes the visit nearest in time within visit_window_days
MAPPED_FIELDS = ("participant_id", "session_id", "diagnosis", "age", "sex", "visit_date", "birth_date")
DATE_PARTS = ("year", "month", "day")  # the order of visit_date's columns when it names three
# birth_date: NACC's [BIRTHYR, BIRTHMO], from which an age in decimal years is computed where NACCAGE has whole years
BIRTH_PARTS = ("year", "month")
RECODED_FIELDS = ("diagnosis", "age", "sex")  # the fields `values:` may recode


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read and check a YAML column-and-value mapping (see configs/nacc/nacc_mapping.yaml)."""
    path = Path(path)
    mapping = _read_mapping_file(path)
    columns = mapping.get("columns") or {}
    _require_mapped_columns(path, columns)
    _require_visit_window(path, mapping)
    values = mapping.get("values") or {}
    _require_recodings(path, values, columns)
    if isinstance(mapping.get("cohort"), (list, dict)):  # pandas read a list as a column of the wrong length
        raise ValueError(f"{path}: cohort must be the cohort's name, e.g. cohort: NACC; it is {mapping['cohort']!r}")
    classes = _mapped_classes(path, values["diagnosis"])
    _require_conditions(path, mapping.get("require") or {}, classes)
    return mapping


def _read_mapping_file(path: Path) -> dict[str, Any]:
    """The mapping file's top level, refused unless a mapping of `MAPPING_KEYS`."""
    if not path.is_file():
        raise FileNotFoundError(f"mapping file {path}: {not_a_file(path)}")
    # read as strictly as a run's config: plain YAML keeps the last of a code given twice (`3: MCI` then `3: AD` made
    # every MCI an AD) and reads a code 010 as 8
    mapping = read_yaml_file(path) or {}
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: the top level must be a mapping with columns: and values: (see "
                         "configs/nacc/nacc_mapping.yaml)")
    unknown = sorted(set(mapping) - set(MAPPING_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(MAPPING_KEYS)}")
    return mapping


def _require_mapped_columns(path: Path, columns: Any) -> None:
    """columns: names one table column for each manifest field it lists, and lists the fields a manifest needs."""
    _require_mapping(path, "columns", columns, "manifest fields to the table's columns")
    missing = [f for f in ("participant_id", "session_id", "diagnosis") if f not in columns]
    if missing:
        raise ValueError(f"{path}: columns must name the table's column for {', '.join(missing)}")
    bad = sorted(set(columns) - set(MAPPED_FIELDS))
    if bad:
        raise ValueError(f"{path}: columns.{bad[0]} is not a manifest field; allowed: {', '.join(MAPPED_FIELDS)}")
    # a list or a blank crashed the import, and a number named no column (a CSV's header is text)
    for field, column in columns.items():
        if field == "visit_date" and isinstance(column, list):
            _require_date_parts(path, column)
        elif field == "birth_date":
            _require_birth_parts(path, column, columns)
        elif not isinstance(column, str) or not column.strip():
            quote = (f" (quote a name YAML reads as a number: {field}: '{column}')" if isinstance(column, (int, float))
                     else " (write the table's column name after the colon)" if column is None else "")
            raise ValueError(f"{path}: columns.{field} must name one column of the table; it is {column!r}{quote}")


def _require_recodings(path: Path, values: Any, columns: dict[str, Any]) -> None:
    """values: recodes a mapped column's codes, one value each, and recodes the diagnosis at least."""
    _require_mapping(path, "values", values, "fields to their recodings")
    for field, codes in values.items():
        _require_mapping(path, f"values.{field}", codes, "the table's codes to values")
        for code, value in codes.items():  # one code becomes one value: a list crashed the import
            if isinstance(value, (list, dict)):
                raise ValueError(f"{path}: values.{field}.{code} must be one value; it is {value!r}")
    if not values.get("diagnosis"):
        raise ValueError(f"{path}: values.diagnosis must map the table's diagnosis codes to classes")
    for field in values:  # a misspelt field would be ignored, leaving its codes as they are
        if field not in RECODED_FIELDS or field not in columns:
            raise ValueError(f"{path}: values.{field} recodes no mapped column; values may recode "
                             f"{', '.join(f for f in RECODED_FIELDS if f in columns)} (named under columns:)")


def _mapped_classes(path: Path, diagnoses: dict[Any, Any]) -> set[Any]:
    """The classes values.diagnosis recodes into, refused unless each is a stage every run trains on."""
    classes = set(diagnoses.values())
    stages = set(ADNI_DIAGNOSES.values())  # what every run trains on; any case, as manifests read them
    odd = sorted(str(label) for label in classes if not blank(label) and str(label).strip().upper() not in stages)
    if odd:  # the import wrote such scans as imported, and every train and evaluate refused them
        raise ValueError(f"{path}: values.diagnosis maps codes to {odd[0]!r}; map them to CN, MCI or AD (a code not "
                         "listed is left out, with the reason)")
    return classes


def _require_conditions(path: Path, require: Any, classes: set[Any]) -> None:
    """require: gives conditions to classes values.diagnosis has, each a column and the codes it allows."""
    _require_mapping(path, "require", require, "a class to its conditions")
    for label, conditions in require.items():  # a misspelt class would require nothing of the one meant
        if label not in classes:
            raise ValueError(f"{path}: require.{label} names no class of values.diagnosis "
                             f"({', '.join(sorted(map(str, classes)))})")
        _require_mapping(path, f"require.{label}", conditions, "a column to its allowed codes, e.g. NACCALZP: [1]")
        for column, allowed in conditions.items():
            if isinstance(allowed, dict):
                raise ValueError(f"{path}: require.{label}.{column} must list the allowed codes, e.g. [1, 2]")


def _require_date_parts(path: Path, parts: list[Any]) -> None:
    """visit_date as three columns: NACC's UDS splits a visit's date into VISITYR, VISITMO, VISITDAY."""
    if len(parts) != len(DATE_PARTS) or not all(isinstance(part, str) and part.strip() for part in parts):
        raise ValueError(f"{path}: columns.visit_date must name one column of dates or the three columns of its "
                         f"{', '.join(DATE_PARTS)}, e.g. [VISITYR, VISITMO, VISITDAY]; it is {parts!r}")


def _require_birth_parts(path: Path, parts: Any, columns: dict[str, Any]) -> None:
    """birth_date as NACC's two columns, year and month (UDS has no day of birth), and only beside the visits' dates,
    as an age is the time from birth to a date, and the age column, the age where a birth date is a missing-data
    code."""
    if not isinstance(parts, list) or len(parts) != len(BIRTH_PARTS) or not all(
            isinstance(part, str) and part.strip() for part in parts):
        raise ValueError(f"{path}: columns.birth_date must name the two columns of the birth's "
                         f"{', '.join(BIRTH_PARTS)}, e.g. [BIRTHYR, BIRTHMO]; it is {parts!r}")
    for needed, example in (("visit_date", "[VISITYR, VISITMO, VISITDAY], the visit's date to give the age at"),
                            ("age", "NACCAGE, the age where a birth date cannot be read")):
        if needed not in columns:
            raise ValueError(f"{path}: columns.birth_date needs columns.{needed}, e.g. {needed}: {example} (or "
                             "delete birth_date)")


def _require_visit_window(path: Path, mapping: dict[str, Any]) -> None:
    """visit_date and visit_window_days come together: a date without a window would meet only scans taken on the
    visit's very day, and a window without dates has nothing to measure."""
    window = mapping.get("visit_window_days")
    has_dates = "visit_date" in mapping["columns"]
    if has_dates and window is None:
        raise ValueError(f"{path}: columns.visit_date needs visit_window_days, the most days between a scan and the "
                         "visit it takes, e.g. visit_window_days: 180")
    if window is not None and not has_dates:
        raise ValueError(f"{path}: visit_window_days needs columns.visit_date, the column(s) of the visit's date, e.g. "
                         "visit_date: [VISITYR, VISITMO, VISITDAY]")
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, float)) or not window >= 0):
        raise ValueError(f"{path}: visit_window_days must be a number of days, 0 or more, e.g. 180; it is {window!r}")


def _require_mapping(path: Path, key: str, value: Any, maps: str) -> None:
    """A mapping file's `key` given as a list or a single value: the import would crash, or quietly read it
    another way, far from the line to fix."""
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {key} must be a mapping of {maps}; it is {value!r}")


def mapping_reads(mapping: dict[str, Any]) -> list[Any]:
    """Every column the mapping reads, once: its columns (visit_date's three) and those its `require` tests."""
    named = [as_column_list(column) for column in mapping["columns"].values()]
    named += [list(conditions) for conditions in (mapping.get("require") or {}).values()]
    return list(dict.fromkeys(name for names in named for name in names))


def as_column_list(column: str | list[str]) -> list[str]:
    """A mapping's column as a list: visit_date names one column or three (year, month, day)."""
    return [column] if isinstance(column, str) else column
