"""How a table's cells and column names read, alike for a manifest's checks and a clinical table's import: a blank
cell, a code (1, 1.0 and "1" are one), a sex as M / F, a preprocessing status, an age out of range or typed with a
decimal comma, and the columns a refusal names.

Public names: `blank`, `blanks`, `as_code`, `sex_letters`, `has_usable_status`, `status_in_words`, `USABLE_STATUSES`,
`MAX_AGE_YEARS`, `MIN_AGE_YEARS`, `decimal_comma_hint`, `row_age_problems`, `columns_it_has`, `loose_name`.
"""

from __future__ import annotations

import functools
import operator
import re
from typing import Any

import pandas as pd

__all__ = ["blank", "blanks", "as_code", "sex_letters", "has_usable_status", "status_in_words", "USABLE_STATUSES",
           "MAX_AGE_YEARS", "MIN_AGE_YEARS", "decimal_comma_hint", "row_age_problems", "columns_it_has", "loose_name"]


UNKNOWN_SEX_LETTERS = ("U", "O", "X")  # unknown, other, X: kept as unknown
# preprocess/ statuses of a scan whose processed volume exists; other rows (failed) are dropped, and said so
USABLE_STATUSES = ("ok", "done", "skipped")
# Ages above this are units gone wrong (months, a birth year), not people; the age encoding's last bin, which every
# age past 119.25 shares, is 119.5 years.
MAX_AGE_YEARS = 120
# Younger is no participant of an Alzheimer's cohort (ADNI enrols from 55): most likely a missing age typed as 0
MIN_AGE_YEARS = 18


def row_age_problems(given: dict[str, pd.Series], age: pd.Series) -> list[str]:
    """For each clinical row, why its age is not years at the visit ('' when it is): text where a number belongs
    or a number out of range (a code such as NACC's -4, months, a missing age typed as 0); either is written as no
    age. Worded for the rows that have a problem only: a NACC UDS table has 200,000 rows, few of them wrong."""
    unreadable = {name: ~blanks(column) & pd.to_numeric(column, errors="coerce").isna()
                  for name, column in given.items()}
    problems = pd.Series("", index=age.index, dtype=object)
    outside = (age < MIN_AGE_YEARS) | (age > MAX_AGE_YEARS)
    problems[outside] = [f"age {years:g} is outside {MIN_AGE_YEARS}-{MAX_AGE_YEARS} years" for years in age[outside]]
    texts = functools.reduce(operator.or_, unreadable.values())
    problems[texts] = ["; ".join(f"{name} {given[name][i]!r} is not a number{decimal_comma_hint(given[name][i])}"
                                 for name in given if unreadable[name][i]) for i in age.index[texts]]
    return problems.tolist()


def decimal_comma_hint(value: Any) -> str:
    """' (a decimal comma? write 73.5)' for a number typed with one ("73,5", as a European spreadsheet writes it,
    quoted in a comma-separated table), which is text to every reader here; '' for anything else."""
    number = re.fullmatch(r"\s*(\d+),(\d+)\s*", str(value))
    return f" (a decimal comma? write {number[1]}.{number[2]})" if number else ""


def has_usable_status(status: pd.Series) -> pd.Series:
    """Whether each manifest row's preprocessing status says its scan can be read (any case, spaces around)."""
    return status.astype(str).str.strip().str.lower().isin(USABLE_STATUSES)


def status_in_words(status: Any) -> str:
    """A manifest row's status as a message quotes it: 'failed' as written, a blank cell as empty (it read `nan`, a
    value no one wrote)."""
    return "empty" if blank(status) else repr(status)


def sex_letters(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(sex as M / F / NaN, the values that are none of these): the volume baseline reads M and F alone, so a
    manifest spelling Male/female would lose the feature unnoticed. Unknown, other and X count as unknown."""
    text = raw.map(lambda v: "" if pd.isna(v) else str(v).strip())
    letter = text.str[:1].str.upper()
    unknown = (text == "") | letter.isin(UNKNOWN_SEX_LETTERS)
    readable = text.map(_spells_male_or_female)
    return letter.where(readable), raw[~readable & ~unknown]


def _spells_male_or_female(text: str) -> bool:
    """M, Male, MALE, F, fem, Female: the start of either word. A first letter alone read `missing` as M."""
    word = text.lower()
    return bool(word) and ("male".startswith(word) or "female".startswith(word))


def blank(value: Any) -> bool:
    """Whether a cell holds nothing: empty, NaN, or spaces alone, as a spreadsheet leaves a cleared one."""
    return pd.isna(value) or not str(value).strip()


def blanks(column: pd.Series) -> pd.Series:
    """`blank` of each value at once, without a Python call per row of a 200,000-row table."""
    return column.isna() | (column.astype(str).str.strip() == "")


def as_code(value: Any) -> str:
    """A table value as a string key: 1, 1.0 and "1" are the same code."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text[:-2] if re.fullmatch(r"-?\d+\.0", text) else text


LISTED_COLUMNS = 20  # a NACC UDS export has ~1000 columns: listed whole, they hid the one spelled otherwise


def columns_it_has(names: list[str], missing: list[str]) -> str:
    """The table's columns for a refusal: first those that spell a missing one in another case or with other
    separators (dx_bl, naccudsd), then the first `LISTED_COLUMNS` of them."""
    near = [repr(name) for wanted in missing for name in names if loose_name(name) == loose_name(wanted)]
    spelled = f"spelled {', '.join(near)} in it; " if near else ""
    if len(names) <= LISTED_COLUMNS:
        return f"{spelled}it has {', '.join(names)}"
    return f"{spelled}it has {len(names)} columns: {', '.join(names[:LISTED_COLUMNS])}, ..."


def loose_name(name: str) -> str:
    """A column name without case or separators: dx_bl, DX.bl and DX_BL spell one column."""
    return re.sub(r"[\W_]", "", name).upper()
