"""The scans of a batch: a CSV manifest or a BIDS tree, and the deterministic shard of it a job runs.

A CSV needs `participant_id, session_id, path` (relative paths are read against the CSV's folder);
other columns (diagnosis, age, sex, site...) are carried to the output manifest. A BIDS tree gives
one row per `sub-*/[ses-*/]anat/*_T1w.nii[.gz]`, with `participants.tsv` columns joined when present:
a data set without sessions gets session_id NO_SESSION, and a session with several T1s (runs,
acquisitions) one row each, its session_id extended by the file's other entities (ses-01_run-2).
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .dicom import DICOM_SUFFIXES, first_file_below, is_dicom
from .steps import MAX_SEED, REGISTRATION_SEED, ants_unsafe
from .user_errors import not_a_file

__all__ = ["REQUIRED", "InputError", "read_inputs", "read_csv_table", "read_csv_header", "parse_shard", "select_shard",
           "windows_separators_read", "registration_seed"]

REQUIRED = ("participant_id", "session_id", "path")
SCAN_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr", ".mgz", ".mgh")  # an image passed where a table of them is wanted
NO_SESSION = "ses-none"  # session_id of the scans of a BIDS data set that has no session level
_CHECKED_ROWS = 1000  # rows parsed at a time to check them: ~60 MB of a 1000-column table
_DICOM_PROBE_FILES = 100  # files opened to find a DICOM series named without suffixes in a folder given as --input


class InputError(ValueError):
    """The batch's input as a whole is unusable (as opposed to one bad scan)."""


def read_csv_table(path: str | Path, **options: object) -> pd.DataFrame:
    """`pd.read_csv`, failing with one line that names the file and says how to fix it: an empty file, a
    spreadsheet export in another encoding, a table separated by tabs or semicolons in a .csv, or rows with
    values past the header's columns (empty ones are dropped; pandas alone would take each row's first value as its
    index and shift every value one column left). `usecols` reads only those columns, every row still checked whole,
    one chunk at a time where a quick look cannot rule out a long row: a NACC UDS export has ~1000 columns."""
    with _unreadable_as_a_table(path, options):
        options = {**options, **_header_names(path, options)}
        if not _no_line_past_the_header(path, str(options.get("sep", ","))):
            _refuse_values_past_the_header(path, options)
        with warnings.catch_warnings():  # "loss of data" where rows end in empty values: checked above
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            return pd.read_csv(path, index_col=False, **options)


def read_csv_header(path: str | Path, **options: object) -> list[str]:
    """The names `read_csv_table` gives the columns of `path`, from its first line alone: a reader of a few columns
    of a wide table still names the others where it refuses it."""
    with _unreadable_as_a_table(path, options):
        options = {**options, **_header_names(path, options)}
        return pd.read_csv(path, nrows=0, index_col=False, **options).columns.tolist()


@contextlib.contextmanager
def _unreadable_as_a_table(path: str | Path, options: dict[str, object]) -> Iterator[None]:
    """pandas' refusals of a file as one line naming it, with how to save it instead."""
    table_kind, separated = ("TSV", "tab-separated") if options.get("sep") == "\t" else ("CSV", "comma-separated")
    try:
        yield
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        reason = (str(err).strip().splitlines() or [""])[0]
        raise InputError(f"{path}: cannot be read as a {table_kind} table ({reason}); save it as {separated} UTF-8 "
                         "text with a header row") from err


def _header_names(path: str | Path, options: dict[str, object]) -> dict[str, object]:
    """The options that read a header typed with spaces around its names ("participant_id, session_id") under the
    names alone, so that a `dtype` given by name reaches its column: read as " session_id", ids such as 01 became
    the number 1 and every reader of the table missed the column. A name given twice is refused: pandas reads the
    second as "diagnosis.1", and every reader took the first without a word."""
    if options.get("sep", ",") == ",":
        _refuse_other_separators(path)  # from the header: a row's decimal comma ("73,5") splits a semicolon row
    parsing = {key: options[key] for key in ("sep", "skipinitialspace") if key in options}
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, **parsing).iloc[0].tolist()
    stripped = [name.strip() for name in header]
    named = [name for name in stripped if name]  # blank cells, as a separator ending the header, name no column
    twice = next((name for i, name in enumerate(named) if name in named[:i]), None)
    if twice is not None:
        raise InputError(f"{path}: the header names column {twice!r} twice, and only the first would be read; keep "
                         "one of them, or rename the other")
    if stripped == header:
        return {}
    return {"header": 0, "names": [name or f"Unnamed: {i}" for i, name in enumerate(stripped)]}


def _refuse_other_separators(path: str | Path) -> None:
    """A .csv whose header has no comma but tabs or semicolons (a European spreadsheet export, whose decimal commas
    then split its rows), told from its first line, before pandas meets a row it cannot split."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline().rstrip("\r\n")
    except OSError:
        return  # the read below names it
    if "," in header:
        return
    for name, separator in (("tab", "\t"), ("semicolon", ";")):
        if separator in header:
            raise InputError(f"{path}: looks {name}-separated (one column, {header!r}); save it "
                             "comma-separated (with decimal points, not commas)")


def _no_line_past_the_header(path: str | Path, separator: str) -> bool:
    """Whether no line of the file holds more separators than its first, the header, told from its bytes alone
    (no parse): then no row is longer than the header, and `_refuse_values_past_the_header`, a whole parse, is not
    needed. A quote anywhere (a quoted separator, a value over two lines) leaves it to that parse, and so do lines
    ended by a lone carriage return (old Mac spreadsheets), which pandas splits rows at: the header is the first."""
    mark = separator.encode()
    try:
        with open(path, "rb") as handle:
            header = handle.readline()
            if b'"' in header or b"\r" in header.rstrip(b"\r\n"):
                return False
            width = header.count(mark)
            return all(line.count(mark) <= width and b'"' not in line for line in handle)
    except OSError:
        return True  # the read names it


def _refuse_values_past_the_header(path: str | Path, options: dict[str, object]) -> None:
    """Parse the file as pandas reads it by default, a chunk of rows at a time (with `usecols`, pandas lets longer
    rows pass without a word): a row longer than the first is its ParserError; where the first is longer, pandas
    takes each row's first values as its index, the rest under the header. Empty last values (a separator ending
    every row, as spreadsheets write) are then dropped by the read; anything else is refused, naming its row: an
    unquoted separator inside a value, an unnamed column, or R's row names (`write.table(sep = ",")` writes no
    header cell for them), which numeric ids 1..n cannot be told from."""
    whole = {key: value for key, value in options.items() if key != "usecols"}
    rows_before = 0
    with pd.read_csv(path, chunksize=_CHECKED_ROWS, **whole) as chunks:
        for shifted in chunks:
            if not isinstance(shifted.index, pd.RangeIndex):
                _refuse_filled_past_the_header(path, shifted, rows_before)
            rows_before += len(shifted)


def _refuse_filled_past_the_header(path: str | Path, shifted: pd.DataFrame, rows_before: int) -> None:
    """Refuse rows of `shifted` (read with their first values as the index) whose last values are not empty."""
    past = shifted.iloc[:, -shifted.index.nlevels:].astype("string").fillna("").apply(lambda column: column.str.strip())
    filled = (past != "").any(axis=1).to_numpy()
    if filled.any():
        raise InputError(f"{path}: data row {rows_before + int(filled.argmax()) + 1} has more values than the header "
                         "has columns; quote values that hold the separator (\"a,b\"), name the extra column in the "
                         "header, or from R write the table with row.names = FALSE")


def read_inputs(source: str | Path) -> pd.DataFrame:
    """Rows to process, in a stable order, with an extra `resolved_path` column (absolute)."""
    source = Path(source)
    if source.is_dir():
        table, base = _read_bids(source), source
    elif _is_scan(source):
        first = "convert its series to NIfTI (`dcm2niix -z y`), then " if is_dicom(source) else ""
        raise InputError(f"{source}: --input takes a CSV table of scans (columns {', '.join(REQUIRED)}) or a BIDS "
                         f"folder, not a scan; {first}list the scan in a CSV and pass that")
    elif source.is_file():
        table, base = read_csv_table(source, dtype=str, keep_default_na=False, skipinitialspace=True), source.parent
    elif source.exists():
        raise InputError(f"{source}: {not_a_file(source)}")
    else:
        raise InputError(f"{source}: no such CSV file or BIDS folder; check --input")
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing} (found {list(table.columns)}); the CSV needs "
                         f"{list(REQUIRED)}")
    if table.empty and source.is_dir():
        _refuse_scans_outside_bids(source)
        _refuse_folder_named_as_table(source)
    if table.empty:
        raise InputError(f"{source}: no scans listed; add rows (or *_T1w.nii.gz files under sub-*/ses-*/anat)")
    bad_ids = table[table[["participant_id", "session_id"]].apply(
        lambda r: any(not v.strip() or v != v.strip() or "/" in v or v.startswith(".") or not v.isprintable()
                      for v in r), axis=1)]
    if not bad_ids.empty:
        raise InputError(f"{source}: row {bad_ids.index[0] + 1} has an empty, space-padded, path-like or control-"
                         "character (a line break?) participant/session id; ids name output folders, use e.g. "
                         "sub-002S0295 / ses-M00")
    _refuse_ids_ants_cannot_take(source, table)
    _refuse_ids_read_as_missing(source, table)
    dupes = table[table.duplicated(["participant_id", "session_id"], keep=False)]
    if not dupes.empty:
        first = dupes.iloc[0]
        raise InputError(f"{source}: {len(dupes)} rows share participant/session ids (first: "
                         f"{first.participant_id}/{first.session_id}); keep one T1 per session (import-cohort, "
                         "meeting scans by visit, leaves out every scan of a visit with several), or to process each, "
                         "make session_id unique (ses-M00_run-2)")
    _refuse_ids_alike_but_for_case(source, table)
    table["resolved_path"] = [_resolved(p.strip(), base) for p in table["path"]]  # a cell typed "scan.nii.gz "
    _refuse_repeated_scans(source, table)
    return table.sort_values(["participant_id", "session_id"], kind="stable").reset_index(drop=True)


def _refuse_ids_ants_cannot_take(source: Path, table: pd.DataFrame) -> None:
    """Ids name the output folders, into which ANTs writes each registration's transforms: an id holding a character
    its command line splits file names at failed that scan with only "Registration failed with error code 1"."""
    for row, ids in enumerate(zip(table["participant_id"], table["session_id"])):
        unsafe = ants_unsafe("".join(ids))
        if unsafe:
            raise InputError(f"{source}: row {row + 1} ({'/'.join(ids)}) has an id holding {unsafe}, which "
                             "ANTs cannot take in the output folder's path it names (its command line splits file "
                             "names there); use e.g. sub-002S0295 / ses-M00")


def _refuse_ids_read_as_missing(source: Path, table: pd.DataFrame) -> None:
    """An id such as NA, None, null or nan names an output folder here, but every table written after (the output
    manifest, volumes.csv) is read back with such text as a missing value: training refused those scans as having an
    empty participant_id, and `elr-mri volumes` wrote them with none, several scans under one blank id."""
    for column in ("participant_id", "session_id"):
        missing = _read_as_missing(table[column])
        if missing.any():
            row = int(missing.argmax())
            raise InputError(f"{source}: row {row + 1} has {column} {table[column][row]!r}, which tables read as a "
                             "missing value (pandas, R, and so training); rename it, e.g. sub-NA / ses-01")


def _read_as_missing(values: pd.Series) -> np.ndarray:
    """Which of the texts `values` (a column of a table with rows) pandas' CSV reader takes for a missing value by
    default (NA, None, null, nan, N/A, #N/A, ... and ''), asked of the reader itself, whose list may change."""
    lines = io.StringIO()
    csv.writer(lines, quoting=csv.QUOTE_ALL).writerows([value] for value in values)
    return pd.read_csv(io.StringIO(lines.getvalue()), header=None, dtype=str)[0].isna().to_numpy()


def _refuse_ids_alike_but_for_case(source: Path, table: pd.DataFrame) -> None:
    """Two rows whose ids differ only in case (sub-AB, sub-ab): on a disk that ignores case (macOS, Windows, their
    shares) their outputs are one file, so the later scan overwrote the earlier and both rows named it; either way
    they are most likely one participant typed two ways, whom a split by participant would put on both sides."""
    folded = table[["participant_id", "session_id"]].apply(lambda column: column.str.casefold())
    alike = table[folded.duplicated(keep=False)]
    if alike.empty:
        return
    first, second = (f"{row.participant_id}/{row.session_id}" for row in alike.iloc[:2].itertuples())
    raise InputError(f"{source}: rows {alike.index[0] + 1} ({first}) and {alike.index[1] + 1} ({second}) have ids that "
                     "differ only in case, which name one output folder on a disk that ignores case (macOS, Windows); "
                     "spell each participant's and session's id one way")


def _is_scan(path: Path) -> bool:
    """An image passed where a table of them is wanted, by its name in any case (a Windows export's SCAN.NII) or as
    a DICOM file: read as a CSV, its bytes made a header kilobytes long or a decoding error."""
    return _named_as_scan(path) or path.is_file() and is_dicom(path)


def _named_as_scan(path: Path) -> bool:
    """A NIfTI, Analyze, MGH or DICOM file by its name, in any case."""
    return path.name.lower().endswith(SCAN_SUFFIXES + DICOM_SUFFIXES)


def _refuse_scans_outside_bids(root: Path) -> None:
    """A folder without BIDS T1s that holds scans below it, as an ADNI download does (002_S_0295/MPRAGE/<date>/
    S13408/ADNI_...nii, or a DICOM series there): said as such, with the way from it to an input, where "no scans
    listed" sent the user looking for a mistake in a folder that is full of scans."""
    # by name, else by the content of the first files, for DICOM files named without a suffix (IM0001, as scanners
    # export them): opening every file of a mistyped folder would be slow
    found = first_file_below(root, _named_as_scan) or first_file_below(root, is_dicom, files=_DICOM_PROBE_FILES)
    if found is None:
        return
    example = found.relative_to(root)
    if is_dicom(found):
        raise InputError(f"{root}: holds DICOM files (e.g. {example}), not NIfTI scans; convert them first (an ADNI "
                         "download to a BIDS folder with Clinica's `clinica convert adni-to-bids`, or each series "
                         "with `dcm2niix -z y` and list the .nii.gz files in a CSV table, columns "
                         f"{', '.join(REQUIRED)}), and pass that to --input")
    raise InputError(f"{root}: holds scans (e.g. {example}), but not in BIDS' layout (sub-*/ses-*/anat/*_T1w.nii.gz; "
                     f"an ADNI download's folders are not); list them in a CSV table (columns {', '.join(REQUIRED)}; "
                     "one T1 per session) or convert the download to BIDS (Clinica's `clinica convert adni-to-bids`), "
                     "and pass that to --input")


def _refuse_folder_named_as_table(root: Path) -> None:
    """A folder named x.csv (an unzipped x.csv.zip, Spark's folder of part-*.csv files) holding no BIDS scans: said
    as such, where "no scans listed" made the user look for missing rows in a table that was never read."""
    if root.suffix.lower() not in (".csv", ".tsv", ".tab", ".txt"):
        return
    tables = sorted(root.glob(f"*{root.suffix}"))
    inside = f"pass the table inside it (e.g. {tables[0]})" if tables else "pass the CSV file itself"
    raise InputError(f"{root}: is a folder named like a table ({root.suffix}), not a CSV file, and holds no BIDS scans; "
                     f"{inside}")


def _resolved(path: str, base: Path) -> str:
    """An absolute path, `~` expanded as on the command line, relative ones taken from `base` (the table's folder);
    '' stays '' (fails on its row). Only the folders of a relative path are resolved, not a link at its end: nibabel
    finds a pair's .img beside the file it is given, and DataLad (git-annex) keeps each file as a link to an object
    named otherwise, so a resolved `scan.hdr` lost its `scan.img` and a failure named an object the table never
    listed."""
    if not path:
        return ""
    path = os.path.expanduser(windows_separators_read(path, base))
    if Path(path).is_absolute():
        return path
    given = base / path
    return str(given.parent.resolve() / given.name)


def windows_separators_read(path: str, base: Path) -> str:
    """`path`, or with Windows' `\\` read as `/` where only that spelling names a file (relative ones from `base`): a
    table made on Windows lists `scans\\sub-01.nii.gz`, which Linux and macOS took for one file name, not found."""
    if os.sep == "\\" or "\\" not in path or (base / path).exists():
        return path
    posix = path.replace("\\", "/")
    return posix if (base / posix).exists() else path


def _refuse_repeated_scans(source: Path, table: pd.DataFrame) -> None:
    """One scan file listed under two ids would be processed twice and, split by participant, could train and test
    a model at once. Compared as files (device, inode), so links and paths spelled differently count as one."""
    seen: dict[tuple[int, int], int] = {}
    for row, path in enumerate(table["resolved_path"]):
        identity = _file_identity(path)
        if identity is None:
            continue
        if identity in seen:
            first, again = table.iloc[seen[identity]], table.iloc[row]
            raise InputError(f"{source}: rows {seen[identity] + 1} ({first.participant_id}/{first.session_id}) and "
                             f"{row + 1} ({again.participant_id}/{again.session_id}) list the same scan file "
                             f"{first.resolved_path}; keep the row whose ids are right and remove the other")
        seen[identity] = row


def _file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of an existing file, None otherwise: a missing scan fails on its own row later."""
    if not path:
        return None
    try:
        status = Path(path).stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def registration_seed(given: int | None, exported: str | None,
                      override: str = "`elr-mri preprocess --seed N` overrides it") -> int:
    """--seed, else an exported ANTS_RANDOM_SEED (ANTs' own setting, which runs before the seed was an option
    honoured: a lab's reproducibility setup exports one), else the default; whichever is recorded in the sidecars.
    An export that cannot seed one is refused (ANTs failed on 'abc' or a number past 2^31 with only "stoi"), the
    refusal ending with `override`, what the command offers instead; a blank one is no export. `elr-mri volumes`
    takes it alike."""
    if given is not None:
        return given
    if exported is None or not exported.strip():
        return REGISTRATION_SEED
    try:
        seed = int(exported)
    except ValueError:
        seed = 0
    if not 1 <= seed <= MAX_SEED:
        raise InputError(f"ANTS_RANDOM_SEED={exported!r} (exported): not a whole number from 1 to {MAX_SEED}, so it "
                         f"cannot seed the registration; export one or unset it ({override})")
    return seed


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N (0-based, like SLURM's `--array=0-<N-1>`)."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: expected I/N, e.g. 0/8 (0-based, I < N)") from None
    if not 0 <= index < count:
        raise InputError(f"--shard {text!r}: need 0 <= I < N (0-based, e.g. $SLURM_ARRAY_TASK_ID/8)")
    return index, count


def select_shard(table: pd.DataFrame, index: int, count: int) -> pd.DataFrame:
    """Every `count`-th row from `index` of the sorted table: shards are disjoint, cover all rows,
    and differ in size by at most one scan."""
    return table.iloc[index::count]


def _read_bids(root: Path) -> pd.DataFrame:
    found = [(p, p.parts[-4] if p.parts[-3].startswith("ses-") else p.parts[-3],
              p.parts[-3] if p.parts[-3].startswith("ses-") else NO_SESSION)
             for pattern in ("sub-*/ses-*/anat/*_T1w.nii*", "sub-*/anat/*_T1w.nii*")
             for p in sorted(root.glob(pattern))
             if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith(".")]  # ._* : macOS resource forks
    stems = [path.with_name(path.name.removesuffix(".gz")) for path, _, _ in found]
    twice = next((stem for stem in stems if stems.count(stem) > 1), None)
    if twice is not None:
        raise InputError(f"{twice} is there both as .nii and as .nii.gz: one T1 saved twice; remove one of the files")
    per_session = pd.Series([(subject, session) for _, subject, session in found]).value_counts()
    _warn_of_sessions_with_several_t1s(root, per_session)
    rows = [{"participant_id": subject, "session_id": session if per_session[(subject, session)] == 1
             else f"{session}_{_other_entities(path, subject, session)}", "path": str(path.relative_to(root))}
            for path, subject, session in found]
    table = pd.DataFrame(rows, columns=list(REQUIRED))
    participants = root / "participants.tsv"
    if participants.exists():
        table = _join_participants_tsv(table, participants)
    return table


def _warn_of_sessions_with_several_t1s(root: Path, per_session: pd.Series) -> None:
    """Say before the registrations that sessions with several T1s (an ADNI visit's MPRAGE and its repeat, as runs)
    are each processed, and that `import-cohort`, which meets scans by visit, then leaves out every scan of such a
    visit: told only there, after hours of processing, the visit was lost."""
    several = per_session[per_session > 1].sort_index()
    if several.empty:
        return
    (subject, session), count = next(iter(several.items()))
    print(f"warning: {root}: {len(several)} session(s) hold more than one *_T1w file (first: {subject}/{session}, "
          f"{count}); each is processed as a session of its own, but import-cohort leaves out every scan of a visit "
          "that has several: to keep one, pass a CSV that lists it", file=sys.stderr)


def _join_participants_tsv(table: pd.DataFrame, participants: Path) -> pd.DataFrame:
    """`table` with the columns of BIDS' participants.tsv (age, diagnosis...) joined by participant_id, saying
    which participants it has no row for: their columns stay empty, and the training that reads them later
    would refuse a scan without an age or a diagnosis far from this cause."""
    extra = read_csv_table(participants, sep="\t", dtype=str, keep_default_na=False)
    extra.columns = [str(column).strip() for column in extra.columns]
    if "participant_id" not in extra.columns:
        return table
    repeated = extra["participant_id"][extra["participant_id"].duplicated()]
    if not repeated.empty:
        raise InputError(f"{participants}: participant {repeated.iloc[0]} has more than one row; keep one "
                         "row per participant")
    clashing = [column for column in extra.columns if column in REQUIRED and column != "participant_id"]
    if clashing:
        raise InputError(f"{participants}: its column(s) {clashing} are the scan table's, which the BIDS tree "
                         f"gives; rename them there (e.g. {clashing[0]}_note)")
    carried = [column for column in extra.columns if column != "participant_id"]
    unlisted = sorted(set(table["participant_id"]) - set(extra["participant_id"]))
    if carried and unlisted:
        print(f"warning: {participants} has no row for {len(unlisted)} participant(s) (e.g. {unlisted[0]}; BIDS "
              f"spells them sub-<label> there too), so their {', '.join(carried)} are left empty", file=sys.stderr)
    return table.merge(extra, on="participant_id", how="left")


def _other_entities(path: Path, subject: str, session: str) -> str:
    """What tells one T1 of a session from another: the name's entities after sub- and ses- (acq-, run-), or
    `T1w` for the one without any beside a `run-2`."""
    name = path.name.split(".nii")[0].removesuffix("_T1w")
    entities = [part for part in name.split("_") if part not in (subject, session)]
    return "_".join(entities) or "T1w"
