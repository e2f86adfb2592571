"""The join both clinical-table imports end in (`elr_mri.data.adni_import`, `elr_mri.data.mapped_import`): a clinical
table's rows attached to the scans preprocess/ produced (its output manifest: participant_id, session_id, path,
processed_path, ...) by participant and session, returned as the joined manifest together with the scans it could not
use and why (`ImportResult`), so nothing disappears silently. Diagnoses come out as CN / MCI / AD.

Participants and sessions meet by the keys of `elr_mri.data.import_keys`: ADNIMERGE's PTID and VISCODE as Clinica's
BIDS labels write them (011_S_0002 at bl is sub-ADNI011S0002 at ses-M00), a mapped table's without BIDS' prefixes.
Two scans of one visit are left out with the reason; the scans' own diagnosis, age or sex that the table's replace
are compared with them.

Public names: `ImportResult`, `join_to_scans`, `diagnosis_problem`, `BIRTH_DATE`.
"""

from __future__ import annotations

import os
import re
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from elr_mri.data.import_tables import require_columns
from elr_mri.data.table_values import blank, blanks, has_usable_status, sex_letters, status_in_words

__all__ = ["ImportResult", "join_to_scans", "diagnosis_problem", "BIRTH_DATE"]


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
    # "'ADNI' over --scans' own 'site_A', 'site_B' in 2 imported scans (first: 011_S_0001/bl)": the import's cohort
    # written over another that --scans gave, "" where it replaced none
    cohort_written_over: str = ""
    # "SEX 'Male' (3 scans)": imported sex codes that a mapping's values.sex does not list, written as unknown sex
    unlisted_sex_codes: list[str] = dataclasses.field(default_factory=list)
    # what many of the drops share and how to fix it, said once in the summary (DXSUM's codes 1/2/3 as DX), right
    # after the drop reasons it explains, `hinted`: after the last reason of all, it read as that reason's
    hint: str = ""
    hinted: tuple[str, ...] = ()

    def summary(self) -> str:
        reasons = self.dropped["reason"].value_counts()
        reasons = pd.concat([reasons[~reasons.index.isin(self.hinted)], reasons[reasons.index.isin(self.hinted)]])
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


COMPARED_OWN_COLUMNS = ("diagnosis", "age", "sex")  # the scans' own of these, replaced by the table's, are compared
AGES_AGREE_YEARS = 1.0  # a scan's own age this near the table's is the same age (in whole years, or at baseline)


def diagnosis_problem(column: str, value: Any, expected: str) -> str:
    """Why a clinical row gives no class (read only where it gives none): nothing there, or a value not listed."""
    if blank(value):
        return f"without a diagnosis ({column}) at that visit"
    return f"with {column} {str(value).strip()!r}, not {expected}"


def _drop_reasons(joined: pd.DataFrame, counts: pd.DataFrame, session_hints: dict[re.Pattern[str], str] | None,
                  participant_hints: dict[re.Pattern[str], str] | None) -> pd.Series:
    """Why each scan of `joined` (the scans beside their clinical rows) is left out, "" for one kept; a later reason
    overrides an earlier one, the most telling last. `counts`: how many clinical rows each key met (see
    `join_to_scans`)."""
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


def join_to_scans(
    scans: pd.DataFrame,
    scans_source: str,
    clinical: pd.DataFrame,
    participant_key: Callable[[Any], str],
    session_key: Callable[[Any], str],
    session_hints: dict[re.Pattern[str], str] | None = None,
    participant_hints: dict[re.Pattern[str], str] | None = None,
    nearest: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    as_written: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> ImportResult:
    """Attach each scan's clinical row; list scans without one, with two, or without a usable diagnosis.
    `session_hints`, `participant_hints`: why a scan whose session (participant) key the pattern matches, a date say,
    meets none of the table's sessions (participants), where that is known. `nearest`: gives scans named by date the
    session of a visit near it (`elr_mri.data.visit_dates.visit_finder`). `as_written`: the joined manifest as the
    import writes it (a visit's age moved to its scan's date), the values the scans' own are compared with."""
    require_columns(scans, ("participant_id", "session_id"), scans_source)
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
    if as_written is not None:
        manifest = as_written(manifest)
    return ImportResult(manifest=manifest.reset_index(drop=True), dropped=dropped.reset_index(drop=True),
                        age_problems=age_problems, two_spellings=two_spellings,
                        unlisted_sex_codes=_counted(kept.get("_sex_unlisted")), unprocessed=_unprocessed(kept),
                        one_file_twice=_one_file_twice(kept), replaced=_replaced_disagreements(own, manifest),
                        cohort_written_over=_cohort_written_over(scans.reset_index(drop=True), manifest))


def _replaced_disagreements(own: pd.DataFrame, manifest: pd.DataFrame) -> list[str]:
    """For each of the scans' `own` columns that the import writes over, the scans of `manifest` whose own value the
    table's, as written, replaces with another: the table's is written (a cohort's visit diagnosis is its own), but
    not unsaid."""
    found = []
    for column in [name for name in own.columns if name in manifest.columns]:
        given, written = own[column].reindex(manifest.index), manifest[column]
        differs = _disagree(column, given, written)
        if differs.any():
            first = differs.idxmax()
            count = int(differs.sum())
            source = _from_table(manifest, column, first)
            found.append(f"{column} disagrees with the clinical table's in {count} imported scan{'s' * (count > 1)} "
                         f"(first: {manifest.at[first, 'participant_id']}/{manifest.at[first, 'session_id']}, "
                         f"{given[first]!r} in --scans, {_shown(written[first])} {source})")
    return found


def _cohort_written_over(scans: pd.DataFrame, manifest: pd.DataFrame) -> str:
    """The import's cohort, the cohorts of --scans it replaces (three at most named), how many scans and the first, ""
    where it replaced none: a cohort names a scan's site or study, which --scans may give on purpose."""
    if "cohort" not in scans or "cohort" not in manifest:
        return ""
    given = scans["cohort"].reindex(manifest.index)
    differs = _disagree("cohort", given, manifest["cohort"])
    if not differs.any():
        return ""
    first, count = differs.idxmax(), int(differs.sum())
    replaced = sorted(set(given[differs].astype(str).str.strip()))
    named = ", ".join(map(repr, replaced[:3])) + f" and {len(replaced) - 3} more" * (len(replaced) > 3)
    return (f"{_shown(manifest.at[first, 'cohort'])} over --scans' own {named} in {count} imported "
            f"scan{'s' * (count > 1)} (first: {_scan_names(manifest.loc[[first]])[0]})")


def _from_table(manifest: pd.DataFrame, column: str, row: Any) -> str:
    """Where a written value came from: the table, or for an age moved to the scan's date (age_at), the table's visit
    age so moved, which the table itself does not show."""
    moved = column == "age" and manifest.get("age_at", pd.Series(dtype=object)).get(row) == "scan"
    return "from the table's visit age moved to the scan's date" if moved else "in the table"


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
