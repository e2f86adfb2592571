"""Feature tables of the two baselines, one row a scan of a manifest.

Volumes: each region's fraction of the whole brain (from `elr-mri volumes`), plus age and sex, as
the seed talk's hippocampal-volume biomarker. Voxels: the template-space image block-averaged to a
coarse grid (Wen et al. 2020's linear SVM on voxel features, made affordable), the same input the
CNN sees, without the crop.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from elr_mri.data.cohort import SCAN_KEYS
from elr_mri.data.mri import read_scan_as_the_network_does
from elr_mri.volumes.measure import volume_columns
from elr_mri.volumes.tables import read_scan_table
from preprocess.sidecar import same_template

__all__ = ["CovariateFill", "read_volumes", "require_volumes", "training_fill", "volume_features", "voxel_features"]

SEX_CODES = {"M": 1.0, "F": 0.0}  # unknown sex: the training scans' share of men (CovariateFill)


def read_volumes(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The rows of one or more `elr-mri volumes` CSVs (e.g. the training cohort's and the holdout's). A scan in two
    of them with other volumes is refused: two cohorts whose ids coincide (every simulated cohort names its first
    participant sub-ADNISIM0001), or a CSV of an earlier preprocessing, whose rows would replace the right ones."""
    expected = "the volumes.csv `elr-mri volumes --manifest MANIFEST` writes (one per cohort)"
    tables = [_numeric_volumes(read_scan_table(p, [*SCAN_KEYS, *volume_columns()], expected), p).assign(_file=str(p))
              for p in paths]
    rows = pd.concat(tables, ignore_index=True).drop_duplicates([*SCAN_KEYS, *volume_columns()])
    clash = rows[rows.duplicated(SCAN_KEYS, keep=False)]
    if not clash.empty:
        first = clash.iloc[0]
        files = clash.loc[(clash[SCAN_KEYS] == first[SCAN_KEYS]).all(axis=1), "_file"].tolist()
        raise ValueError(f"scan {first.participant_id} {first.session_id} has other regional volumes in {files[1]} "
                         f"than in {files[0]} (two cohorts with the same ids, or a CSV of another preprocessing); "
                         "pass each cohort's volumes.csv once, from its own `elr-mri volumes` run")
    _refuse_mixed_registrations(rows)
    return rows.drop(columns="_file").reset_index(drop=True)


def _numeric_volumes(table: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """`table` with its feature columns as numbers, refused naming the first missing, non-numeric or infinite one: the
    baselines used to pass it to scikit-learn, whose error came after the CNN was scored and named no scan."""
    values = table[volume_columns()].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        name = volume_columns()[column]
        first = table.iloc[row]
        value = "missing" if pd.isna(first[name]) else f"'{first[name]}'"
        raise ValueError(f"{path}: {int(bad.any(axis=1).sum())} scan(s) have a missing, non-numeric or infinite "
                         f"regional volume (first {first.participant_id} {first.session_id}: {name} {value}); "
                         "measure that cohort again with `elr-mri volumes`")
    return table.assign(**values)


def _refuse_mixed_registrations(rows: pd.DataFrame) -> None:
    """Volumes measured by other registrations (`warp`: syn at 2 mm, at 3 mm, preprocess's) differ by more than the
    diagnoses do (hippocampus +8% from 3 mm against 2 mm): a baseline fitted on one and scored on the other measured
    the registrations, and its holdout balanced accuracy fell from 30.6 to 8.3 without a word. So do volumes of scans
    registered to other templates (`_other_templates`): each is a ratio to its own template's anatomy."""
    _refuse_a_mix(_distinct(rows, "warp"), lambda row: row["warp"], "measured by other registrations", "measure "
                  "every cohort with one `elr-mri volumes --registration-mm` (and one preprocessing --transform)")
    if "template_sha256" in rows and rows["template_sha256"].notna().any() and rows["template_sha256"].isna().any():
        older = rows.loc[rows["template_sha256"].isna(), "_file"].iloc[0]
        raise ValueError(f"{older}: no template_sha256, unlike the other --volumes CSVs (an `elr-mri volumes` before "
                         "2026-12-06 wrote it, or another tool), so its template and measurement cannot be compared "
                         "with theirs; measure that cohort again with `elr-mri volumes`, which reuses what its cache "
                         "still holds")
    _refuse_a_mix(_other_templates(rows), lambda row: f"{row['template']} (SHA-256 {row['template_sha256'][:12]})",
                  "of scans registered to other templates", "preprocess every cohort with one --template (or none: "
                  "MNI152) and measure them with `elr-mri volumes`")


def _distinct(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """A row of each value of `key`; none where no row has one (a CSV of its own making, or of a version before the
    column: not compared)."""
    return rows.dropna(subset=[key]).drop_duplicates(key) if key in rows else rows.iloc[:0]


def _other_templates(rows: pd.DataFrame) -> pd.DataFrame:
    """Two rows registered to other templates, told apart as preprocess tells them (`same_template`): by their
    images' digests where both record one (`template_content_sha256`, from sidecars since 2026-12-07), else by their
    files', so that a copy of the template re-saved by nibabel (other bytes, the same image) is the same; none if
    every row's is one template."""
    if "template_sha256" not in rows:
        return rows.iloc[:0]
    recorded = [column for column in ("template_sha256", "template_content_sha256") if column in rows]
    kinds = rows.dropna(subset=["template_sha256"]).drop_duplicates(recorded)
    pairs = itertools.combinations(range(len(kinds)), 2)
    unlike = next(([first, other] for first, other in pairs if not same_template(
        _template_digests(kinds.iloc[first]), _template_digests(kinds.iloc[other]))), [])
    return kinds.iloc[unlike]


def _template_digests(row: pd.Series) -> dict[str, str]:
    """A row's template as a sidecar's "template" records it: its file's digest, and its image's where measured from a
    sidecar that records one."""
    digests = {"sha256": row["template_sha256"]}
    if pd.notna(row.get("template_content_sha256")):
        digests["content_sha256"] = row["template_content_sha256"]
    return digests


def _refuse_a_mix(kinds: pd.DataFrame, name: Callable[[pd.Series], str], what: str, fix: str) -> None:
    """Refuse rows of more than one kind (`kinds`: a row of each), naming each (`name`) and a file it came from."""
    if len(kinds) > 1:
        named = ", ".join(f"{name(row)} ({row['_file']})" for _, row in kinds.iterrows())
        raise ValueError(f"the --volumes CSVs were {what}: {named}; {fix}")


@dataclass(frozen=True)
class CovariateFill:
    """What a missing age or sex is filled with in every set: the training scans' mean (sex coded M 1, F 0: their
    share of men). Standardised, that mean is 0, so a scan without the covariate gets no push from its coefficient
    (a fixed 0.5 pushed a set without sex towards whichever sex the training scans had fewer of), and nothing of a
    scored set enters its own features."""

    age: float
    sex: float


def training_fill(train: pd.DataFrame) -> CovariateFill:
    """The training scans' CovariateFill (age 0 and sex 0.5 where none has one: the column is constant then)."""
    return CovariateFill(_mean_or(_ages(train), 0.0), _mean_or(_sexes(train), 0.5))


def volume_features(frame: pd.DataFrame, volumes: pd.DataFrame, source: str, fill: CovariateFill) -> np.ndarray:
    """(scans, regions + 2) matrix: normalised regional volumes, age and sex (missing ones: `fill`)."""
    joined = require_volumes(frame, volumes, source)
    return np.column_stack([joined[volume_columns()].to_numpy(dtype=np.float64),
                            _ages(frame).fillna(fill.age).to_numpy(dtype=np.float64),
                            _sexes(frame).fillna(fill.sex).to_numpy(dtype=np.float64)])


def _ages(frame: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(frame["age"], errors="coerce") if "age" in frame else pd.Series(np.nan, index=frame.index)


def _sexes(frame: pd.DataFrame) -> pd.Series:
    return frame["sex"].map(SEX_CODES) if "sex" in frame else pd.Series(np.nan, index=frame.index)


def _mean_or(values: pd.Series, default: float) -> float:
    return float(values.mean()) if values.notna().any() else default


def require_volumes(frame: pd.DataFrame, volumes: pd.DataFrame, source: str) -> pd.DataFrame:
    """`frame`'s scans joined to their rows of `volumes`; refused, naming the first, when a scan has none."""
    joined = frame[SCAN_KEYS].merge(volumes, on=SCAN_KEYS, how="left")
    absent = joined[volume_columns()[0]].isna()
    if absent.any():
        first = joined.loc[absent, SCAN_KEYS].iloc[0].tolist()
        raise ValueError(f"{source}: {int(absent.sum())} scans (first {first[0]} {first[1]}) have no regional "
                         "volumes; run `elr-mri volumes --manifest` on that cohort and pass its CSV too")
    return joined


def voxel_features(paths: Sequence[str], block: int) -> np.ndarray:
    """(scans, voxels) matrix of template-space images, read as the CNN reads them, averaged over `block`³ voxel
    blocks."""
    rows, shape = [], None
    for path in paths:
        volume = read_scan_as_the_network_does(path)
        if shape is not None and volume.shape != shape:
            raise ValueError(f"{path}: shape {volume.shape} differs from {shape}; preprocess every cohort onto one grid")
        shape = volume.shape
        rows.append(_block_mean(volume, block).ravel())
    return np.stack(rows)


def _block_mean(volume: np.ndarray, block: int) -> np.ndarray:
    trimmed = volume[tuple(slice(0, (n // block) * block) for n in volume.shape)]
    d, h, w = (n // block for n in trimmed.shape)
    return trimmed.reshape(d, block, h, block, w, block).mean(axis=(1, 3, 5))
