"""Participant-level splits and the leakage guard.

Scans of one person are far more alike than scans of two people, so a participant whose scans sit
in both training and test inflates every test metric. Splits are therefore drawn over
participants, stratified by each participant's diagnosis, and `check_no_leakage` refuses any pair
of splits (or a holdout and the training set) that share a participant unless explicitly allowed.

Public names: `LeakageError`, `SPLIT_NAMES`, `participant_diagnosis`, `split_participants`,
`load_splits`, `split_of_participants`, `read_run_splits`, `run_participants`, `check_no_leakage`, `split_balance`,
`check_no_shared_scans`, `check_no_shared_inputs`, `diagnoses_left_out`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from elr_mri.data.import_keys import adni_participant_key, spelled_as_numbers
from preprocess.inputs import read_csv_table

__all__ = [
    "LeakageError",
    "SPLIT_NAMES",
    "participant_diagnosis",
    "diagnoses_left_out",
    "split_participants",
    "load_splits",
    "split_of_participants",
    "read_run_splits",
    "run_participants",
    "check_no_leakage",
    "check_no_shared_scans",
    "check_no_shared_inputs",
    "split_balance",
]

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
LISTED_PARTICIPANTS = 5
# The way past a leakage refusal; evaluate and explain read the setting from the run's config.yaml, not a --set.
OVERLAP_OVERRIDE = ("data.mri.allow_participant_overlap: true (for `elr-mri evaluate` or `explain`: in the run's "
                    "config.yaml) to proceed anyway (the report will say so)")
# preprocess's digest of a scan's input voxels, in the manifests it writes (and import-cohort carries)
INPUT_DIGEST_COLUMN = "input_voxels_sha256"


class LeakageError(ValueError):
    """Two sets that must be disjoint share participants."""


def participant_diagnosis(frame: pd.DataFrame) -> pd.Series:
    """Each participant's most frequent diagnosis; a tie goes to the earliest scan's (by age, then row)."""
    order = frame.assign(_row=np.arange(len(frame))).sort_values(["age", "_row"], na_position="last", kind="stable")
    counts = order.groupby(["participant_id", "diagnosis"], sort=False).size().rename("n").reset_index()
    first_seen: dict[tuple[str, str], int] = {}
    for rank, key in enumerate(zip(order["participant_id"], order["diagnosis"])):
        first_seen.setdefault(key, rank)
    counts["first"] = [first_seen[key] for key in zip(counts["participant_id"], counts["diagnosis"])]
    best = counts.sort_values(["n", "first"], ascending=[False, True], kind="stable").drop_duplicates("participant_id")
    return best.set_index("participant_id")["diagnosis"].sort_index()


def split_participants(
    frame: pd.DataFrame, test_fraction: float, val_fraction: float, seed: int
) -> pd.Series:
    """participant_id → "train" / "val" / "test", stratified by `participant_diagnosis`.

    Within each diagnosis, round(test_fraction · n) participants go to test, then
    round(val_fraction · rest) of the remaining ones to val (the paper's 90/10 split of the
    training set); the others train.
    """
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must lie in [0, 1), got {value}")
    rng = np.random.default_rng(seed)
    diagnosis = participant_diagnosis(frame)
    split = pd.Series("train", index=diagnosis.index, name="split")
    for label in sorted(diagnosis.unique()):
        members = rng.permutation(diagnosis.index[diagnosis == label].to_numpy())
        n_test = round(test_fraction * len(members))
        n_val = round(val_fraction * (len(members) - n_test))
        split[members[:n_test]] = "test"
        split[members[n_test : n_test + n_val]] = "val"
    return split


def diagnoses_left_out(scans: pd.DataFrame, split: pd.Series, classes: Sequence[str], name: str) -> list[str]:
    """Diagnoses that scans of two or more participants carry and no scan of split `name` ("test", "val") does:
    rounding leaves a small class out (3 AD participants at test_fraction 0.15: round(0.45) = 0), and nothing there
    scores it. By scan, not by the diagnosis a participant is stratified under: a converter's later scans (MCI, MCI,
    AD) score AD in their split, and a class that only converters reach has participants to miss. None for a split
    the run has not got at all (a fraction of 0). `split`: participant_id -> split, as `split_participants` gives."""
    if not (split == name).any():
        return []
    where = scans["participant_id"].map(split)
    present = set(scans.loc[where == name, "diagnosis"])
    people = scans.groupby("diagnosis")["participant_id"].nunique()
    return [label for label in classes if label not in present and int(people.get(label, 0)) >= 2]


def load_splits(path: str | Path, participants: Iterable[str]) -> pd.Series:
    """participant_id → split from a CSV (participant_id,split); every participant must have exactly one.

    The file's IDs meet the manifest's as the leakage guard matches them (`adni_participant_key`): a file written
    from a BIDS tree (sub-ADNI011S0002) splits a manifest of ADNIMERGE's IDs (011_S_0002)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"splits file not found: {path}")
    table = _split_table(read_csv_table(path, dtype=str), path)
    groups = {name: table.loc[table["split"] == name, "participant_id"] for name in SPLIT_NAMES}
    # no override: a participant has one split, so allow_participant_overlap could not let one through
    check_no_leakage(groups, source=str(path), fix="List each participant under one split only", overridable=False)
    spelled = {adni_participant_key(participant): participant for participant in participants}
    table = table.assign(participant_id=[spelled.get(adni_participant_key(i), i) for i in table["participant_id"]])
    fix = "give each a row (participant_id,split), or remove their scans from the manifest"
    near = _near_misses(table["participant_id"], spelled.values())
    if near:  # an ID spelled by its digits alone, as a BIDS label would be (sub-02013 for 02_013)
        fix += f" ({_near_miss(*near[0], 'the file', 'the manifest')}: if one person, write the manifest's ID)"
    return split_of_participants(table, participants, path, fix=fix)


def split_of_participants(table: pd.DataFrame, participants: Iterable[str], path: Path, fix: str = "") -> pd.Series:
    """participant_id → split of a checked split table (`path`, its file, for the message); each of `participants`
    must be listed. `fix`: what to do where one is not (said after the examples)."""
    split = table.drop_duplicates("participant_id").set_index("participant_id")["split"]
    absent = sorted(set(participants) - set(split.index))
    if absent:
        examples = ", ".join(absent[:LISTED_PARTICIPANTS])
        raise ValueError(f"{path}: {len(absent)} participant(s) of the manifest have no split, e.g. {examples}"
                         + (f"; {fix}" if fix else ""))
    return split


def _split_table(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """`table` (read from `path`) with its ids and split names tidied, refused where it lacks a column or names
    a split other than train, val and test."""
    missing = [c for c in ("participant_id", "split") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected participant_id,split")
    table = table.assign(participant_id=table["participant_id"].str.strip(),  # as the manifest's ids are read
                         split=table["split"].str.strip().str.lower())
    bad = table[~table["split"].isin(SPLIT_NAMES)]
    if len(bad):
        row, value = bad.index[0] + 1, bad["split"].iloc[0]
        if pd.isna(value):  # an empty cell: read as NaN, it was named "split nan"
            raise ValueError(f"{path}: row {row}: no split for participant {bad['participant_id'].iloc[0]!r}; write "
                             f"one of {', '.join(SPLIT_NAMES)}")
        raise ValueError(f"{path}: row {row}: split {value!r} is not one of {', '.join(SPLIT_NAMES)}")
    return table


def read_run_splits(run_dir: str | Path) -> pd.DataFrame:
    """An MRI run's splits.csv (participant_id, split) as `elr-mri train` wrote it, less the participants it used no
    scan of (`used` false: left out by data.train_subset, data.test_subset or the validation panel). Every reader of a
    run's splits comes here: a truncated or hand-edited file would otherwise pass for an edited manifest, or shrink the set a
    holdout must not share, so one that is empty, lacks a column, names another split, lists a participant twice or
    an id blank, or counts other participants per split than the run's split_balance.csv is refused."""
    path = Path(run_dir) / "splits.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; it is written by `elr-mri train` for an MRI run")
    fix = "restore the file `elr-mri train` wrote there (a copy of the run), or train the run anew"
    try:
        table = _split_table(read_csv_table(path, dtype=str), path)
    except ValueError as err:  # InputError too: its advice is for tables a person saves
        raise ValueError(f"{str(err).split('; ')[0]}; the run's splits are damaged: {fix}") from err
    if "used" in table.columns:  # runs from before 2026-12-06 list only the participants they used
        table = table.loc[table["used"].str.strip().str.lower() != "false", ["participant_id", "split"]]
    problem = _run_splits_problem(table.reset_index(drop=True), Path(run_dir) / "split_balance.csv")
    if problem:
        raise ValueError(f"{path}: {problem}; the run's splits are damaged: {fix}")
    return table.reset_index(drop=True)


def _run_splits_problem(table: pd.DataFrame, balance_path: Path) -> str:
    """What is wrong with a run's split table ("" where nothing is), against its split_balance.csv where that reads."""
    if table.empty:
        return "no participants listed"
    blank = table["participant_id"].fillna("") == ""
    if blank.any():
        return f"row {blank.to_numpy().argmax() + 1}: no participant_id"
    twice = table["participant_id"][table["participant_id"].duplicated()]
    if len(twice):
        return f"participant {twice.iloc[0]} is listed more than once"
    try:
        balance = pd.read_csv(balance_path, dtype={"split": str}).set_index("split")["participants"]
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return ""  # runs from before split_balance.csv, or a damaged one: the table's own checks stand
    counted = table["split"].value_counts()
    for name, expected in balance.items():
        if int(counted.get(name, 0)) != int(expected):
            return (f"it lists {int(counted.get(name, 0))} {name} participant(s) where the run's split_balance.csv "
                    f"counts {int(expected)}")
    return ""


def run_participants(run_dir: str | Path) -> pd.Series:
    """Every participant an MRI run trained, validated or tested on (its splits.csv), the set a
    holdout cohort must not share. Read as text: ids such as 0042 must not become 42."""
    return read_run_splits(run_dir)["participant_id"]


def check_no_leakage(
    groups: Mapping[str, Iterable[str]], allow: bool = False, source: str = "splits", fix: str = "Fix the splits",
    overridable: bool = True,
) -> list[str]:
    """Refuse participants shared by any two of `groups` (name → participant ids).

    IDs are matched on the key the ADNI importer joins on (`sub-` and `ADNI` prefixes, case and
    separators ignored, but for one between digits; IDs of digits alone as numbers): cohorts spell one person's ID
    differently, 011_S_0002 in ADNIMERGE and sub-ADNI011S0002 in BIDS, 007 in one table and 7 in a re-saved one.
    With `allow` the overlap is returned as lines for the run's report instead of raised; an empty list means the
    groups are disjoint. `fix`: what to change (a holdout's own rows, not the splits). `overridable`: whether the
    error offers data.mri.allow_participant_overlap (not for a splits file, which can give a participant one split
    only).
    """
    spellings = {name: {adni_participant_key(i): str(i) for i in ids} for name, ids in groups.items()}
    names = list(spellings)
    notes = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            near = _near_misses(spellings[first].values(), spellings[second].values())
            if near:
                more = f" (and {len(near) - 1} more such pair(s))" if len(near) > 1 else ""
                log.warning("%s: %s, so they are taken for two people%s; if one, write one ID for both and run again",
                            source, _near_miss(*near[0], first, second), more)
            shared = sorted(spellings[first].keys() & spellings[second].keys())
            if not shared:
                continue
            pairs = [(spellings[first][key], spellings[second][key]) for key in shared[:LISTED_PARTICIPANTS]]
            line = (
                f"{source}: {len(shared)} participant(s) are in both {first} and {second}, "
                f"e.g. {', '.join(_same_person(*pair) for pair in pairs)}{_as_numbers_note(pairs)}"
            )
            if not overridable:
                raise LeakageError(f"{line}; results would be inflated. {fix}")
            if not allow:
                raise LeakageError(
                    f"{line}; results would be inflated. {fix}, or set {OVERLAP_OVERRIDE}"
                )
            notes.append(f"{line} (allowed by data.mri.allow_participant_overlap)")
    return notes


def check_no_shared_scans(
    training_images: Iterable[str], holdout_images: Iterable[str], allow: bool = False, source: str = "holdout"
) -> list[str]:
    """Refuse a holdout listing image files the run trained on, whatever IDs it gives them (a manifest put
    together from the training one); files are compared by their real path, links resolved. With `allow`
    the overlap is returned as a line for the report instead of raised."""
    seen = {os.path.realpath(path) for path in training_images if path}
    shared = sorted(path for path in holdout_images if path and os.path.realpath(path) in seen)
    if not shared:
        return []
    return _shared_scans_refused(f"{source}: {len(shared)} scan(s) are files of the training manifest, e.g. {shared[0]}",
                                 allow)


def check_no_shared_inputs(training: pd.DataFrame, holdout: pd.DataFrame, allow: bool = False,
                           source: str = "holdout") -> list[str]:
    """Refuse holdout scans that preprocess made from the very input voxels of a training scan (its
    `input_voxels_sha256`): the same raw scan preprocessed again into the holdout's folder under other IDs is another
    processed file, which `check_no_shared_scans` cannot see, and was scored without a word. Compared only where both
    manifests carry the digest (scans preprocessed elsewhere have none)."""
    if INPUT_DIGEST_COLUMN not in training or INPUT_DIGEST_COLUMN not in holdout:
        return []
    trained = training.dropna(subset=[INPUT_DIGEST_COLUMN]).set_index(INPUT_DIGEST_COLUMN)["participant_id"]
    trained = trained[trained.index != ""]
    shared = holdout[holdout[INPUT_DIGEST_COLUMN].isin(trained.index)]
    if shared.empty:
        return []
    first = shared.iloc[0]
    same = trained[trained.index == first[INPUT_DIGEST_COLUMN]].iloc[0]
    return _shared_scans_refused(
        f"{source}: {len(shared)} scan(s) were preprocessed from the input voxels of a training scan "
        f"({INPUT_DIGEST_COLUMN}), e.g. {first['participant_id']} {first['session_id']}, the same scan as training's {same}", allow)


def _shared_scans_refused(line: str, allow: bool) -> list[str]:
    """Raise `line` as a leakage refusal, or with `allow` return it as the report's note."""
    if not allow:
        raise LeakageError(f"{line}; results would be inflated. List other scans, or set {OVERLAP_OVERRIDE}")
    return [f"{line} (allowed by data.mri.allow_participant_overlap)"]


def _same_person(first: str, second: str) -> str:
    return first if first == second else f"{first} = {second}"


def _near_misses(first: Iterable[str], second: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of IDs, one of `first` and one of `second`, whose keys differ only in a separator between digits
    (02_013, sub-02013): two people to the guard (1.5 is not 15), yet maybe one person whose BIDS label dropped it."""
    loose = {_without_digit_separators(i): i for i in first}
    pairs = ((loose.get(_without_digit_separators(i)), i) for i in second)
    return [(a, b) for a, b in pairs if a is not None and adni_participant_key(a) != adni_participant_key(b)]


def _without_digit_separators(participant: str) -> str:
    """A participant's key less the separators it keeps between digits, keyed again (02-013 less its separator is
    the number 2013): 02_013 and sub-02013 meet on it."""
    return adni_participant_key(adni_participant_key(participant).replace("-", ""))


def _near_miss(first: str, second: str, first_place: str, second_place: str) -> str:
    return (f"{first_place}'s {first} and {second_place}'s {second} differ only in a separator between digits, as "
            "1.5 and 15 do")


def _as_numbers_note(pairs: list[tuple[str, str]]) -> str:
    """Why 007 = 7 among the examples: IDs of digits alone meet as numbers, since a spreadsheet re-saves 007 as 7;
    said so that two people numbered so are told from one person re-saved."""
    if not any(spelled_as_numbers(*pair) for pair in pairs):
        return ""
    return (" (IDs of digits alone are compared as numbers, as a spreadsheet drops leading zeros: give two people IDs "
            "that are not one number)")


def split_balance(frame: pd.DataFrame, split: pd.Series, classes: Sequence[str]) -> pd.DataFrame:
    """One row a split: participants, scans, participants per diagnosis, age mean ± sd, share female.

    Saved with an MRI run (split_balance.csv) so a reader sees the splits are comparable in
    diagnosis, age and sex.
    """
    by_scan = frame.assign(split=frame["participant_id"].map(split))
    diagnosis = participant_diagnosis(frame)
    rows = []
    for name in [s for s in SPLIT_NAMES if s in set(split)]:
        scans = by_scan[by_scan["split"] == name]
        people = split.index[split == name]
        row: dict[str, object] = {"split": name, "participants": len(people), "scans": len(scans)}
        row.update({label: int((diagnosis[people] == label).sum()) for label in classes})
        first_scan = scans.sort_values("age", na_position="last").drop_duplicates("participant_id")
        row["age_mean"] = round(float(first_scan["age"].mean()), 1)
        row["age_sd"] = round(float(first_scan["age"].std(ddof=0)), 1)
        sex = first_scan["sex"].astype(str).str.upper().str[:1] if "sex" in first_scan else pd.Series(dtype=str)
        known = sex.isin(["F", "M"])
        row["female_fraction"] = round(float((sex[known] == "F").mean()), 3) if known.any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
