"""Cohort manifests: one row a scan, validated before anything trains on it.

A manifest is a CSV with at least participant_id, session_id, path and diagnosis; age, sex, cohort
and any other column are kept. The manifest that preprocess/ writes adds processed_path (the
template-space volume, used instead of path when present), qc_* figures and status. Every problem
is reported as one line naming the row (its 1-based data row and participant/session), all at
once, so a user fixes the CSV in one pass instead of one error per run.

Public names: `ManifestError`, `REQUIRED_COLUMNS`, `SCAN_KEYS`, `load_manifest`, `warn_qc_flagged`,
`validate_manifest`, `label_indices`, `true_label_indices`, `DIAGNOSES`, `diagnoses_left_out`, `warn_once`,
`kept_warnings`.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from elr_mri.data.import_keys import adni_participant_key, spelled_as_numbers
from elr_mri.data.table_values import (MAX_AGE_YEARS, MIN_AGE_YEARS, USABLE_STATUSES, columns_it_has,
                                       decimal_comma_hint, has_usable_status, sex_letters)
from preprocess.inputs import read_csv_table, windows_separators_read
from preprocess.user_errors import not_a_file

__all__ = [
    "ManifestError",
    "REQUIRED_COLUMNS",
    "warn_qc_flagged",
    "SCAN_KEYS",
    "load_manifest",
    "validate_manifest",
    "label_indices",
    "true_label_indices",
    "DIAGNOSES",
    "diagnoses_left_out",
    "warn_once",
    "kept_warnings",
]

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("participant_id", "session_id", "path", "diagnosis")
SCAN_KEYS = ["participant_id", "session_id"]  # what names one scan across manifests, label panels and tables
IMAGE_COLUMN = "image_path"  # the resolved absolute path of the volume to load, added on load
EITHER_IMAGE_COLUMN = "path or processed_path"  # how a refusal names the scan's column: either one will do
MAX_LISTED = 20  # problems listed in one error; the count says how many there are
# The diagnoses of this project's manifests (`import-cohort` recodes a cohort's own into these). A run's
# data.mri.classes may name fewer (CN vs AD): scans of the others are then left out, as the official code does.
DIAGNOSES = ("CN", "MCI", "AD")


class ManifestError(ValueError):
    """A manifest problem; the message lists each bad row on its own line."""


def require_manifest_file(path: Path) -> None:
    """A manifest path that names no readable file, refused in one line before anything reads it (its checksum
    included: an OS error naming no option was all a mistyped --manifest got where an earlier scoring's folder was)."""
    if not path.is_file():
        raise ManifestError(f"manifest {path}: {not_a_file(path)}")


def load_manifest(
    path: str | Path,
    classes: Sequence[str],
    require_age: bool = False,
    check_files: bool = True,
    warn_qc: bool = True,
) -> pd.DataFrame:
    """Read and validate a manifest CSV; relative paths are taken from the manifest's folder.

    Returns the rows with a usable status, diagnoses spelled as in `classes`, `age` as float
    (NaN when unknown) and an added `image_path` column holding the volume to load. `warn_qc`: name the scans QC
    flagged (off where the manifest is read for a check only, not to train or score its scans).
    """
    path = Path(path)
    require_manifest_file(path)
    frame = read_csv_table(path, dtype={"participant_id": str, "session_id": str}, keep_default_na=True)
    return validate_manifest(
        frame, classes, require_age, source=str(path), base_dir=path.parent, check_files=check_files, warn_qc=warn_qc
    )


def validate_manifest(
    frame: pd.DataFrame,
    classes: Sequence[str],
    require_age: bool = False,
    source: str = "manifest",
    base_dir: Path | None = None,
    check_files: bool = True,
    warn_qc: bool = True,
) -> pd.DataFrame:
    """Check a manifest already in memory (see `load_manifest`); raises `ManifestError` listing every bad row."""
    _require_columns(frame, require_age, source)
    frame = _usable_rows(frame.reset_index(drop=True), source)
    frame = _without_scans_of_diagnoses_left_out(frame, classes, source, say=warn_qc)
    if warn_qc:
        warn_qc_flagged(frame, source)
    image_column = "processed_path" if "processed_path" in frame.columns else "path"
    raw_age = _tidy_fields(frame, image_column, base_dir)
    problems = (_class_problems(frame, classes) + _id_problems(frame) + _age_problems(frame, raw_age, require_age)
                + _sex_problems(frame) + _duplicates(frame, image_column) + _spellings(frame))
    absent = _absent_images(frame) if check_files else []
    problems += [f"{_where(frame, i)}: {_file_problem(frame[IMAGE_COLUMN][i], image_column)}" for i in absent]
    if problems:
        raise ManifestError(_problems_message(problems, source, len(absent) == len(frame) > 1, len(frame),
                                              image_column))
    return frame.drop(columns="_row")


def _require_columns(frame: pd.DataFrame, require_age: bool, source: str) -> None:
    """Refuse a manifest lacking a column every row needs: one line for the whole file, not one per row. The
    scan's column may be `path` or `processed_path` (read instead when present), so either one will do."""
    has = set(frame.columns) | ({"path"} if "processed_path" in frame.columns else set())
    missing = [c for c in REQUIRED_COLUMNS if c not in has]
    if missing:
        found = columns_it_has([str(column) for column in frame.columns], missing)
        joined = ("; preprocess's manifest has no diagnoses: `elr-mri import-cohort` joins a cohort's (ADNIMERGE, "
                  "NACC) to it" if "diagnosis" in missing else "")
        named = [EITHER_IMAGE_COLUMN if c == "path" else c for c in missing]
        needed = [EITHER_IMAGE_COLUMN if c == "path" else c for c in REQUIRED_COLUMNS]
        raise ManifestError(f"{source}: missing column(s) {', '.join(named)} ({found}); a manifest needs "
                            f"{', '.join(needed)}{joined}")
    if require_age and "age" not in frame.columns:
        raise ManifestError(f"{source}: no age column, and the model uses age; add an age column (years at the scan), "
                            "or train a model without it (model.use_age: false)")


def _tidy_fields(frame: pd.DataFrame, image_column: str, base_dir: Path | None) -> pd.Series:
    """Strip the ids and paths, read ages as numbers and add `IMAGE_COLUMN` (`image_column` under `base_dir`), in
    place; return the ages as given, which a problem quotes (a decimal comma is lost once read as a number)."""
    for column in [name for name in ("participant_id", "session_id", "path") if name in frame.columns]:
        frame[column] = frame[column].map(lambda v: "" if pd.isna(v) else str(v).strip())
    raw_age = frame["age"] if "age" in frame else pd.Series(np.nan, index=frame.index)
    frame["age"] = pd.to_numeric(raw_age, errors="coerce")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    frame[IMAGE_COLUMN] = frame[image_column].map(lambda p: _image_under(p, base))
    return raw_age


def _image_under(cell: object, base: Path) -> str:
    """The file a path cell names, read from `base`; "" for an empty cell, which `base / ""` made the manifest's
    folder: a row left without its path was said to name a folder, and two such rows to name one file."""
    text = "" if pd.isna(cell) else str(cell).strip()
    return str(base / windows_separators_read(text, base)) if text else ""


def _class_problems(frame: pd.DataFrame, classes: Sequence[str]) -> list[str]:
    """Spell diagnosis and true_diagnosis as in `classes`, in place; list the values that are no class."""
    spelled = {c.lower(): c for c in classes}
    problems: list[str] = []
    for column in ("diagnosis", "true_diagnosis"):
        if column in frame.columns:
            raw = frame[column].map(lambda v: "" if pd.isna(v) else str(v).strip())
            frame[column] = raw.str.lower().map(spelled)
            # a true diagnosis the run leaves out (MCI in a CN-vs-AD run) is a wrong label with no right class
            outside = raw.str.lower().isin(diagnoses_left_out(classes)) & (column == "true_diagnosis")
            frame[column] = frame[column].mask(outside, raw.str.upper())
            problems += _unknown_classes(frame, raw, column, classes)
    return problems


def _id_problems(frame: pd.DataFrame) -> list[str]:
    """Rows without a participant or session: the split and every join key on them."""
    return [f"{_where(frame, i)}: no {column} (empty, or a text such as NA or None that tables read as missing)"
            for column in ("participant_id", "session_id") for i in np.flatnonzero(frame[column] == "")]


def _age_problems(frame: pd.DataFrame, raw_age: pd.Series, require_age: bool) -> list[str]:
    """Ages out of range, not numbers, or (where the model uses age) missing; `raw_age`: as the manifest gives them."""
    problems = [f"{_where(frame, i)}: age is negative" for i in np.flatnonzero(frame["age"] < 0)]
    problems += [f"{_where(frame, i)}: age {frame['age'][i]:g} is under {MIN_AGE_YEARS}, implausible in an "
                 "Alzheimer's cohort (a missing age typed as 0? leave the cell empty)"
                 for i in np.flatnonzero((frame["age"] >= 0) & (frame["age"] < MIN_AGE_YEARS))]
    problems += [f"{_where(frame, i)}: age {frame['age'][i]:g} is over {MAX_AGE_YEARS}; ages are years at the scan "
                 "(months? divide by 12; a birth year? use the scan's year minus it)"
                 for i in np.flatnonzero(frame["age"] > MAX_AGE_YEARS)]
    not_numbers = frame["age"].isna() & raw_age.notna()
    problems += [f"{_where(frame, i)}: age {raw_age[i]!r} is not a number"
                 f"{decimal_comma_hint(raw_age[i]) or ' (years at the scan)'}" for i in np.flatnonzero(not_numbers)]
    if require_age:
        problems += [
            f"{_where(frame, i)}: no age (the model uses age; fill it in, or train a model without it: "
            "model.use_age: false)"
            for i in np.flatnonzero(frame["age"].isna() & ~not_numbers)
        ]
    return problems


def _sex_problems(frame: pd.DataFrame) -> list[str]:
    """Spell a sex column as M/F, in place; list the values that are neither."""
    if "sex" not in frame.columns:
        return []
    frame["sex"], unreadable = sex_letters(frame["sex"])
    return [f"{_where(frame, i)}: sex {value!r} is neither male nor female (M/F, Male/Female); leave it "
            "empty when unknown" for i, value in unreadable.items()]


def _absent_images(frame: pd.DataFrame) -> list[int]:
    """Rows whose volume to load is not a file."""
    images = frame[IMAGE_COLUMN]
    return [i for i in range(len(frame)) if not images[i] or not Path(images[i]).is_file()]


def _problems_message(problems: list[str], source: str, none_there: bool, scans: int, image_column: str) -> str:
    """Every problem on its own line, the first `MAX_LISTED` of them; `none_there`: not one scan's file exists, which
    says more (a moved folder, an unmounted drive) than the list of them."""
    listed = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    moved = (f" (not one of the {scans} scans' files is there: did their folder move, or is its drive not "
             f"mounted? point {image_column} at where they are now)" if none_there else "")
    return f"{source}: {len(problems)} problem(s){moved}:\n  {listed}{more}"


def label_indices(diagnoses: pd.Series, classes: Sequence[str]) -> np.ndarray:
    """Class index of each (validated) diagnosis, in the order of `classes`."""
    lookup = {name: k for k, name in enumerate(classes)}
    return diagnoses.map(lookup).to_numpy(dtype=np.int64)


def true_label_indices(diagnoses: pd.Series, classes: Sequence[str]) -> np.ndarray:
    """`label_indices` of validated true diagnoses, -1 for one the run leaves out (MCI in a CN-vs-AD run): such a
    scan's given label is wrong, and no prediction is right."""
    lookup = {name: k for k, name in enumerate(classes)}
    return diagnoses.map(lookup).fillna(-1).to_numpy(dtype=np.int64)


def diagnoses_left_out(classes: Sequence[str]) -> set[str]:
    """The project's diagnoses (lower case) that `classes` leaves out; none when `classes` names anything else (a
    typo such as [CN, Alzheimer] must be refused by name, not train CN alone while AD scans go)."""
    named = {c.lower() for c in classes}
    project = {d.lower() for d in DIAGNOSES}
    return project - named if named <= project else set()


def _without_scans_of_diagnoses_left_out(frame: pd.DataFrame, classes: Sequence[str], source: str, say: bool) -> pd.DataFrame:
    """The rows whose diagnosis is not one of the project's that `classes` leaves out (MCI when a run trains CN vs
    AD); `say`: count those in one warning. Any other diagnosis stays, for the check that names it (a typo)."""
    given = frame["diagnosis"].map(lambda v: "" if pd.isna(v) else str(v).strip())
    other = given.str.lower().isin(diagnoses_left_out(classes))
    if not other.any():
        return frame
    counts = given[other].str.upper().value_counts()
    which = ", ".join(f"{name} ({n})" for name, n in counts.items()) if len(counts) > 1 else counts.index[0]
    if other.all():
        raise ManifestError(f"{source}: every scan is diagnosed {which}, which the run's classes {', '.join(classes)} "
                            "leave out (data.mri.classes); pass a manifest with scans of those classes")
    if say:
        warn_once(f"{source}: left out {int(other.sum())} scan(s) diagnosed {which}, not among the run's classes "
                  f"{', '.join(classes)} (data.mri.classes)")
    return frame[~other].reset_index(drop=True)


def _file_problem(path: str, column: str) -> str:
    if not path:
        return f"no {column} (the cell is empty); fill in the scan's .nii or .nii.gz file, or remove its row"
    if Path(path).is_dir():
        return f"{path} is a folder, not a NIfTI file; point {column} at the .nii or .nii.gz file"
    if Path(path).exists():  # a named pipe, say: "file not found" sent the user to look for one that is there
        return (f"{path} is not a regular file (a named pipe, socket or device); point {column} at the .nii or "
                ".nii.gz file")
    return f"file not found: {path}"


def _usable_rows(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Drop rows preprocess/ marked as failed, keeping each row's line in the file (the header is line 1)
    for messages."""
    frame = frame.assign(_row=np.arange(2, len(frame) + 2))
    if "status" not in frame.columns:
        return frame
    usable = has_usable_status(frame["status"])
    if not usable.all():
        dropped = frame.loc[~usable, "status"].map(_status_words).value_counts()
        log.warning(
            "%s: dropped %d scan(s) whose preprocessing status is not %s (%s)",
            source, int((~usable).sum()), "/".join(USABLE_STATUSES),
            ", ".join(f"{name}: {count}" for name, count in dropped.items()),
        )
    return frame[usable].reset_index(drop=True)


def _status_words(status: object) -> str:
    """A dropped row's status as the warning counts it: an empty cell was left out of the count, which then read
    `()` with no reason for the rows it dropped."""
    return "empty" if pd.isna(status) or not str(status).strip() else str(status).strip()


_WARNINGS_GIVEN: set[str] = set()  # one process reads a manifest many times (evaluate with baselines: 10)
_KEEPERS: list[list[str]] = []  # the lists of open `kept_warnings` blocks


def warn_qc_flagged(frame: pd.DataFrame, source: str) -> None:
    """Name the scans preprocess/ flagged as likely failed registrations: they stay in (QC flags have false
    positives, and only a look at the overlay tells), but training on a misregistered brain should be a choice. The
    advice points at preprocess's input: the manifest is rewritten from it on every run, undoing edits made to it.
    Once a process for the same manifest and scans: repeated, the warning buried the command's own output."""
    if "qc_flag" not in frame.columns:
        return
    flagged = frame["qc_flag"].astype(str).str.strip().str.lower().isin(("true", "1", "yes"))
    if flagged.any():
        reasons = frame["qc_reason"] if "qc_reason" in frame.columns else pd.Series("", index=frame.index)
        names = [f"{p}/{s}" + (f" ({why})" if isinstance(why, str) and why else "")
                 for p, s, why in zip(frame["participant_id"][flagged], frame["session_id"][flagged], reasons[flagged])]
        more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
        warning = (f"{source}: {len(names)} scan(s) flagged by preprocessing QC are used: "
                   f"{', '.join(names[:MAX_LISTED])}{more}; look at their QC overlays, then drop a bad scan's row from "
                   "preprocess's input table and run preprocess again (a row deleted, or a qc_flag set to False, only in "
                   "preprocess's manifest.csv comes back on its next run)")
        warn_once(warning)


def warn_once(warning: str) -> None:
    """Log a cohort's warning once a process: a command reads one manifest several times (training, then scoring
    its test split), and repeats buried its own output. Every open `kept_warnings` block keeps it all the same."""
    for kept in _KEEPERS:
        kept.append(warning)
    if warning not in _WARNINGS_GIVEN:
        _WARNINGS_GIVEN.add(warning)
        log.warning("%s", warning)


@contextmanager
def kept_warnings() -> Iterator[list[str]]:
    """The warnings `warn_once` is given inside the block, logged or not: results record them (summary.json) for
    a reader who never saw the log, and a warning already logged earlier in the process belongs there too."""
    kept: list[str] = []
    _KEEPERS.append(kept)
    try:
        yield kept
    finally:
        _KEEPERS.remove(kept)


def _duplicates(frame: pd.DataFrame, image_column: str) -> list[str]:
    """Rows repeating a participant and session, then rows naming a file another row names: one scan under two
    IDs would be split as two people, and could sit in training and test both."""
    problems = []
    first_scan: dict[tuple[str, str], int] = {}
    first_file: dict[str, int] = {}
    for i, (key, path) in enumerate(zip(zip(frame["participant_id"], frame["session_id"]), frame[IMAGE_COLUMN])):
        j = first_scan.setdefault(key, i)
        if j != i:
            problems.append(f"{_where(frame, i)}: duplicate of line {frame['_row'][j]} (same participant and session)")
            continue
        k = first_file.setdefault(os.path.realpath(path), i) if path else i
        if k != i:
            problems.append(f"{_where(frame, i)}: the same {image_column} file as line {frame['_row'][k]} "
                            f"({frame['participant_id'][k]!r}, {frame['session_id'][k]!r}); one scan, one row")
    return problems


def _spellings(frame: pd.DataFrame) -> list[str]:
    """One person under two IDs (011_S_0002, sub-ADNI011S0002) would be split as two, train and test both."""
    first: dict[str, int] = {}
    reported: set[str] = set()
    problems = []
    for i, participant in enumerate(frame["participant_id"]):
        j = first.setdefault(adni_participant_key(participant), i)
        if participant and participant != frame["participant_id"][j] and participant not in reported:
            reported.add(participant)
            problems.append(f"{_where(frame, i)}: the participant of line {frame['_row'][j]} spelled another way "
                            f"({_other_spelling(frame['participant_id'][j], participant)}")
    return problems


def _other_spelling(first: str, second: str) -> str:
    """The end of a two-spellings problem: `first`, and the fix; IDs one only as numbers may be two people."""
    if spelled_as_numbers(first, second):
        return (f"{first!r}: IDs of digits alone are compared as numbers, as a spreadsheet drops leading zeros); write "
                "one ID per person, or give two people IDs that are not one number")
    return f"{first!r}); write one ID per person"


def _unknown_classes(frame: pd.DataFrame, raw: pd.Series, column: str, classes: Sequence[str]) -> list[str]:
    """A problem per diagnosis outside `classes`, naming its first row and how many share it: a cohort's own code
    (Dementia, not recoded by `import-cohort`) is one line, not one per scan. The project's diagnoses that `classes`
    leaves out (MCI of a CN-vs-AD run) do not come here: their scans are left out before, in one warning."""
    unknown = np.flatnonzero(frame[column].isna())
    problems = []
    for value in dict.fromkeys(raw[i] for i in unknown):
        rows = [i for i in unknown if raw[i] == value]
        others = f" and {len(rows) - 1} more row(s)" if len(rows) > 1 else ""
        problems.append(f"{_where(frame, rows[0])}{others}: {_not_a_class(column, value, classes)}")
    return problems


def _not_a_class(column: str, value: str, classes: Sequence[str]) -> str:
    """Why `value` names no class: an empty cell was quoted as `''` with advice to recode a cohort's codes, which
    it is not."""
    if not value:
        return (f"no {column} (empty, or a text such as NA or None that tables read as missing); give the scan one of "
                f"{', '.join(classes)}, or remove its row")
    return (f"{column} {value!r} is not one of {', '.join(classes)} (the run's classes, data.mri.classes; a cohort's own "
            "codes, such as Dementia, are recoded into these by `elr-mri import-cohort`)")


def _where(frame: pd.DataFrame, i: int) -> str:
    return f"line {frame['_row'][i]} (participant {frame['participant_id'][i]!r}, session {frame['session_id'][i]!r})"
