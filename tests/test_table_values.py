"""How a clinical table's cells read: ages, decimal commas, sexes, blank cells and the columns a refusal lists."""

from __future__ import annotations

import pandas as pd

from elr_mri.data.table_values import (LISTED_COLUMNS, blank, columns_it_has, decimal_comma_hint, row_age_problems,
                                       sex_letters)


def test_an_age_of_exactly_18_is_years_and_one_under_it_is_not():
    """The README's range is 18-120 inclusive: an 18-year-old is a participant, 17.5 a missing age typed wrong."""
    ages = pd.Series([18.0, 17.5, 120.0])
    assert row_age_problems({"AGE": ages}, ages) == ["", "age 17.5 is outside 18-120 years", ""]


def test_a_decimal_comma_with_two_decimals_is_named_with_both():
    """'73,25' is 73.25 years: the hint writes every decimal, not one."""
    assert decimal_comma_hint("73,25") == " (a decimal comma? write 73.25)"


def test_x_is_an_unknown_sex_not_a_spelling_to_warn_of():
    """X (as a passport writes a sex neither M nor F) is kept as unknown, like U and O, so it is not listed among the
    values the import cannot read."""
    letters, unreadable = sex_letters(pd.Series(["X", "u", "Female"]))
    assert letters.isna().tolist() == [True, True, False]
    assert unreadable.empty


def test_a_cell_of_spaces_alone_is_blank():
    """A cleared spreadsheet cell keeps its spaces: it holds nothing."""
    assert blank("   ") and blank("") and not blank(" 0 ")


def test_a_table_of_exactly_the_listed_number_of_columns_is_listed_whole():
    """Only a longer table is cut (with its count and '...'): one of exactly `LISTED_COLUMNS` shows every name."""
    names = [f"C{i}" for i in range(LISTED_COLUMNS)]
    assert columns_it_has(names, ["DX"]) == f"it has {', '.join(names)}"
    assert columns_it_has(names + ["LAST"], ["DX"]).startswith(f"it has {LISTED_COLUMNS + 1} columns: C0, ")
