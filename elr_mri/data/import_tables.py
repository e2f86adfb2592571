"""The tables an import reads (the scans manifest, a clinical table) and its refusals of them in one line: a folder or
a pipe given for a file, a column missing (naming those the table has), a header without rows; and the note on the
scans preprocess failed on, which no import can list among its drops.

Public names: `read_table`, `read_scans`, `table_file`, `column_separator`, `require_columns`, `require_rows`,
`preprocess_failures`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from elr_mri.data.table_values import blank, columns_it_has
from preprocess.inputs import InputError, read_csv_table
from preprocess.user_errors import not_a_file

__all__ = ["read_table", "read_scans", "table_file", "column_separator", "require_columns", "require_rows",
           "preprocess_failures"]


SCANS = "scans manifest (--scans)"  # the table of scans both importers join their clinical rows to


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


def read_scans(source: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The scans table, its relative image paths made absolute against its own folder: the imported manifest
    is written elsewhere (--out), where they would point nowhere."""
    table, where = read_table(source, SCANS)
    if not isinstance(source, pd.DataFrame):
        folder = Path(source).absolute().parent  # the link's folder for a linked table, as load_manifest reads it
        for column in ("path", "processed_path"):
            if column in table:
                table[column] = [value if blank(value) or Path(str(value).strip()).is_absolute()
                                 else str(folder / str(value).strip()) for value in table[column]]
    return table, where


def read_table(source: str | Path | pd.DataFrame, what: str) -> tuple[pd.DataFrame, str]:
    """(table, what and where it is, for messages): `what` names the table and the option it came from."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), what
    path = table_file(source, what)
    return read_csv_table(path, dtype=str, sep=column_separator(path)), f"{what} {path}"


def table_file(source: str | Path, what: str) -> Path:
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


def column_separator(path: Path) -> str:
    """A .tsv or .tab table is read tab-separated, any other comma-separated."""
    return "\t" if path.suffix in (".tsv", ".tab") else ","


def require_columns(table: pd.DataFrame, columns: tuple[str, ...], where: str, fix: str = "") -> None:
    """Refuse a table without `columns`, naming the ones it has; `fix`: how to get the right table or mapping."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        found = columns_it_has([str(c) for c in table.columns], missing)
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)} ({found}){'; ' + fix if fix else ''}")


def require_rows(table: pd.DataFrame, where: str) -> None:
    """Refuse a clinical table of a header alone (an export that stopped, a filter that kept nothing): the join of no
    rows ended in a pandas traceback."""
    if table.empty:
        raise ValueError(f"{where}: has a header but no rows; export the table again with its visits")
