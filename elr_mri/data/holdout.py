"""A holdout cohort's manifest (e.g. NACC), checked against the run that will score it before any scan is read: no
participant, image file or input scan (by its voxels' digest) of its training manifest, the run's voxel grid, its
preprocessing. A run checks its data.mri.holdout_manifest so at its start, `evaluate` and `explain` again;
`elr_mri.data.mri` turns the checked rows into the dataset the network reads.

Public names: `HoldoutRows`, `load_holdout_manifest`, `training_manifest_images`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, NamedTuple

import pandas as pd

from elr_mri.config import DataConfig
from elr_mri.data.cohort import IMAGE_COLUMN, ManifestError, kept_warnings, load_manifest, warn_once
from elr_mri.data.grid import VolumeGrid, common_grid, require_grid
from elr_mri.data.preprocessing import cohort_preprocessing, compare_preprocessing
from elr_mri.data.splits import check_no_leakage, check_no_shared_inputs, check_no_shared_scans

__all__ = ["HoldoutRows", "load_holdout_manifest", "training_manifest_images"]

log = logging.getLogger(__name__)


class HoldoutRows(NamedTuple):
    """A holdout manifest as checked for scoring."""

    frame: pd.DataFrame  # its validated rows
    notes: list[str]  # participant-overlap notes, non-empty only when data.mri.allow_participant_overlap let one in
    warnings: list[str]  # given about its scans (QC flags, other preprocessing, no sidecars), for summary.json


def load_holdout_manifest(
    manifest: str | Path, cfg: DataConfig, training_participants: Iterable[str], require_age: bool = False,
    grid: VolumeGrid | None = None, training_scans: pd.DataFrame | None = None,
    trained_preprocessing: dict[str, dict] | None = None,
) -> HoldoutRows:
    """The holdout's validated rows, overlap notes and the warnings given about its scans; refuses participants seen
    in training and image files of the training manifest, or scans preprocessed from its scans' input voxels
    (`training_scans`, default: the rows of `cfg.mri.manifest` where it still is) unless
    `cfg.mri.allow_participant_overlap`, scans off the training `grid` when one is given,
    and scans preprocessed otherwise (`compare_preprocessing`: another normalisation, brain mask, registration or
    template) than the run recorded (`trained_preprocessing`) or, for a run from before that record, than those
    files, unless `cfg.mri.allow_other_preprocessing` (then a warning). The training manifest is read first, so that its own warnings are not kept as the holdout's."""
    training = training_manifest_scans(cfg) if training_scans is None else training_scans
    images = training[IMAGE_COLUMN]
    with kept_warnings() as warnings:
        frame = load_manifest(manifest, cfg.mri.classes, require_age=require_age)
        if frame.empty:
            raise ManifestError(f"{manifest}: no scans to score (no rows, or only scans whose status says "
                                "preprocessing failed); pass a manifest with at least one usable scan")
        if grid is not None:
            require_grid(frame[IMAGE_COLUMN], grid, source=str(manifest))
        else:  # a run from before its grid was recorded: the holdout's scans must still share one, and one place
            common_grid(frame[IMAGE_COLUMN], source=str(manifest))
        allow = cfg.mri.allow_participant_overlap
        notes = check_no_leakage({"training": training_participants, "holdout": frame["participant_id"]},
                                 allow=allow, source=str(manifest), fix=f"Remove their scans from {manifest}")
        notes += check_no_shared_scans(images, frame[IMAGE_COLUMN], allow, source=str(manifest))
        notes += check_no_shared_inputs(training, frame, allow, source=str(manifest))
        trained = cohort_preprocessing(images) if trained_preprocessing is None else trained_preprocessing
        for warning in compare_preprocessing(trained, frame[IMAGE_COLUMN], str(manifest),
                                             allow=cfg.mri.allow_other_preprocessing):
            warn_once(warning)
    return HoldoutRows(frame, notes, warnings)


def training_manifest_images(cfg: DataConfig) -> list[str]:
    """The image files of a run's manifest; none when it has moved or no longer loads."""
    return training_manifest_scans(cfg)[IMAGE_COLUMN].tolist()


def training_manifest_scans(cfg: DataConfig) -> pd.DataFrame:
    """The rows of a run's manifest, for the holdout's checks; none when it has moved or no longer loads (the
    participant check still runs). Its QC warning is not repeated: none of its scans is scored here."""
    path = cfg.mri.manifest
    none = pd.DataFrame(columns=["participant_id", IMAGE_COLUMN])
    if not path:
        return none
    if not Path(path).is_file():
        log.warning("%s has moved, so holdout scans are not compared with its files; participants still are", path)
        return none
    try:
        return load_manifest(path, cfg.mri.classes, check_files=False, warn_qc=False)
    except ManifestError as err:
        log.warning("%s no longer loads (%s), so holdout scans are not compared with its files; participants "
                    "still are", path, str(err).splitlines()[0])
        return none
