"""The scans a scoring reads, checked against what the run recorded of its training: a test split rebuilt from a
training manifest changed since (other participants, relabelled or added scans, another voxel grid), and a holdout's
participants, grid, preprocessing, and the classes and ages the run never trained on.

Apart from `evaluate`, which loads the run and predicts: `explain` and `--baselines` read the same holdout checks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from elr_mri.config import DataConfig
from elr_mri.data.grid import VolumeGrid, read_grid
from elr_mri.data.splits import read_run_splits, run_participants
from elr_mri.engine.run_records import (PREPROCESSING_KEY, TEST_DIAGNOSES_KEY, TRAIN_AGE_RANGE_KEY,
                                       TRAIN_CLASS_COUNTS_KEY, read_data_shape)
from elr_mri.models.widened_cnn import age_bins

if TYPE_CHECKING:  # MONAI's import is left to the commands that read scans
    from elr_mri.data.mri import HoldoutRows, MRIScans

__all__ = ["check_test_split", "holdout_warnings", "load_run_holdout", "run_grid"]


def check_test_split(run_dir: Path, manifest: str, test: MRIScans, grid: VolumeGrid | None) -> None:
    """Refuse a test split rebuilt from `manifest` that the run did not test on, or on another grid; warn of its
    scans relabelled, added or lost since training."""
    _require_run_test_split(run_dir, manifest, test.frame["participant_id"])
    _warn_of_relabelled_test_scans(run_dir, manifest, test)
    _warn_of_other_test_scans(run_dir, manifest, test.frame)
    _require_run_grid(run_dir, manifest, grid)


def holdout_warnings(run_dir: Path, manifest: str, scans: pd.DataFrame, with_age: bool) -> list[str]:
    """What a holdout's scans hold that the run never trained on: classes, and (`with_age`: a run that reads age)
    ages; a warning each, none where there is nothing to say."""
    warnings = [_untrained_classes_warning(run_dir, manifest, scans),
                _untrained_ages_warning(run_dir, manifest, scans) if with_age else None]
    return [warning for warning in warnings if warning]


def load_run_holdout(run_dir: Path, data: DataConfig, manifest: Path, require_age: bool = False) -> HoldoutRows:
    """The holdout `manifest` checked against what `run_dir` trained on: its participants, its voxel grid and its
    scans' preprocessing as the run recorded them. One path for `evaluate`, `explain` and `--baselines`: the baselines
    compared participants alone, and scored a holdout on another grid or normalised otherwise without a word."""
    from elr_mri.data.mri import load_holdout_manifest

    return load_holdout_manifest(manifest, data, run_participants(run_dir), require_age, _holdout_grid(run_dir, data),
                                 trained_preprocessing=read_data_shape(run_dir).get(PREPROCESSING_KEY))


def _untrained_classes_warning(run_dir: Path, manifest: str, scans: pd.DataFrame) -> str | None:
    """The holdout's diagnoses that none of the run's training scans had (None: none): the network never learned
    them, so their recall is ~0 by construction and the balanced accuracy counts it; training warned only at its
    start. Runs from before the counts were recorded are not checked."""
    counts = read_data_shape(run_dir).get(TRAIN_CLASS_COUNTS_KEY)
    if counts is None:
        return None
    held = scans["diagnosis"].value_counts()
    untrained = [name for name, count in counts.items() if not count and held.get(name, 0)]
    if not untrained:
        return None
    scored = ", ".join(f"{held[name]} {name}" for name in untrained)
    return (f"{manifest}: {scored} scan(s) of a class none of {run_dir}'s training scans had; the network never "
            f"learned {' or '.join(untrained)}, so its recall is ~0 by construction and pulls the balanced accuracy "
            "down: train again on a manifest with such scans, or with data.mri.classes set to the classes it has "
            "(a holdout's scans of other classes are then left out)")


def run_grid(run_dir: Path) -> VolumeGrid | None:
    """The voxel grid an MRI run trained on, with where its scans lay (None for image runs and runs from before the
    grid was recorded; no place for runs from before 2026-12-06)."""
    shape = read_data_shape(run_dir)
    recorded = shape.get("volume_grid")
    return None if recorded is None else VolumeGrid.from_dict(recorded, shape.get("volume_ras_affine"))


def _holdout_grid(run_dir: Path, data: DataConfig) -> VolumeGrid | None:
    """The grid a holdout's scans must be on: the run's recorded one or, for a run from before that record
    (2026-12-03), the grid of the first scan of its training manifest still on disk, since a holdout all on another
    grid was otherwise scored as nonsense without a word; None where neither is there."""
    recorded = run_grid(run_dir)
    if recorded is not None:
        return recorded
    from elr_mri.data.mri import training_manifest_images

    on_disk = next((path for path in training_manifest_images(data) if Path(path).is_file()), None)
    return None if on_disk is None else read_grid(on_disk)


def _require_run_grid(run_dir: Path, manifest: str, grid: VolumeGrid | None) -> None:
    """The manifest's scans were preprocessed again on another grid since training: the run cannot read them."""
    trained = run_grid(run_dir)
    if trained is not None and grid is not None and not grid.matches(trained):
        raise ValueError(f"{run_dir}: the scans of {manifest} are now {grid.describe()}, the run trained on "
                         f"{trained.describe()}; restore the scans the run trained on, or train a new run on these")


def _require_run_test_split(run_dir: Path, manifest: str, scored: pd.Series) -> None:
    """The test split is rebuilt from the manifest as it is now; refuse it when that manifest changed
    since training so that participants the run trained or validated on would be scored as test, and say so
    when it lost test participants (a fixed data.mri.splits keeps the rest where they were): fewer are scored."""
    splits = read_run_splits(run_dir)
    tested = set(splits.loc[splits["split"] == "test", "participant_id"])
    foreign = sorted(set(scored.astype(str)) - tested)
    if foreign:
        raise ValueError(
            f"{run_dir}: {manifest} has changed since training: {len(foreign)} "
            f"participant(s) now land in the test split that the run did not test on (e.g. {foreign[0]}, see "
            "splits.csv); restore the manifest the run trained on, or score other scans with --manifest HOLDOUT.csv")
    lost = sorted(tested - set(scored.astype(str)))
    if lost:
        print(f"warning: {manifest} has lost {len(lost)} of the {len(tested)} participants {run_dir} tested on "
              f"(e.g. {lost[0]}, see its splits.csv); only the other {len(tested) - len(lost)} are scored: restore "
              "the manifest the run trained on to score them all", file=sys.stderr)


def _warn_of_relabelled_test_scans(run_dir: Path, manifest: str, test: MRIScans) -> None:
    """Say how many test scans the training manifest now gives another diagnosis than the run trained with (a fixed
    data.mri.splits keeps them in the test split). `evaluate` scores them, and `explain` maps them, with the diagnoses
    as they are now, which may be the point (a revised diagnosis), so this warns rather than refuses: nothing is chosen on these labels, as
    `--baselines` chooses C on the validation labels it refuses relabelled; yet the figures then differ from the
    test_acc of the run's metrics.csv. Runs from before the diagnoses were recorded are not checked; the
    validation panel (data.mri.val_labels) relabels validation scans only, so it plays no part here."""
    then = _tested_scans(run_dir)
    if then is None:
        return
    classes = read_data_shape(run_dir)["class_names"]
    now = zip(test.frame["participant_id"], test.frame["session_id"], test.labels)
    changed = [(participant, session, then[participant, session], classes[label]) for participant, session, label in now
               if (participant, session) in then and then[participant, session] != classes[label]]
    if changed:
        participant, session, before, after = changed[0]
        print(f"warning: {manifest} now gives {len(changed)} of the {len(test.labels)} test scans another diagnosis "
              f"than {run_dir} trained with (e.g. {participant} {session}: {before} then, {after} now; "
              f"{TEST_DIAGNOSES_KEY} in its data_shape.json); they are taken as they are now, unlike the test_acc of "
              "its metrics.csv: restore the manifest the run trained on to use the labels it was tested on",
              file=sys.stderr)


def _warn_of_other_test_scans(run_dir: Path, manifest: str, scans: pd.DataFrame) -> None:
    """Say how many scans of the participants the run tested on the training manifest now lists that the run did not
    test on (a later visit added since) or no longer lists: `_require_run_test_split` compares participants, so these
    were scored without a word, and the figures differ from the test_acc of the run's metrics.csv. Scans of test
    participants lost altogether are said there. Runs from before the test scans were recorded are not checked."""
    then = _tested_scans(run_dir)
    if then is None:
        return
    now = set(zip(scans["participant_id"].astype(str), scans["session_id"].astype(str)))
    scored = {participant for participant, _ in now}
    added = sorted(now - then.keys())
    lost = sorted(key for key in then.keys() - now if key[0] in scored)
    if not added and not lost:
        return
    whose = f"{run_dir}'s test participants"
    said = ([f"lists {len(added)} scan(s) of {whose} that the run did not test on (e.g. {' '.join(added[0])})"]
            if added else [])
    said += ([f"lacks {len(lost)} scan(s) of {'them' if added else whose} that it tested on (e.g. {' '.join(lost[0])})"]
             if lost else [])
    print(f"warning: {manifest} now {' and '.join(said)} ({TEST_DIAGNOSES_KEY} in its data_shape.json); the test "
          "split is scored as the manifest lists it now, so the figures differ from the test_acc of its metrics.csv: "
          "restore the manifest the run trained on to score the scans it was tested on", file=sys.stderr)


def _untrained_ages_warning(run_dir: Path, manifest: str, scans: pd.DataFrame) -> str | None:
    """How many scans have an age in a half-year bin outside those of the run's training scans (None: none): the age
    encoding learned no offset for such bins, so a holdout of another age span (NACC has 45-year-olds, ADNI none under
    55) is scored with offsets no training scan shaped. Runs from before the range was recorded are not checked."""
    recorded = read_data_shape(run_dir).get(TRAIN_AGE_RANGE_KEY)
    if recorded is None:
        return None
    youngest, oldest = age_bins(torch.tensor(recorded, dtype=torch.float64)).tolist()
    bins = age_bins(torch.tensor(scans["age"].to_numpy(dtype=np.float64))).numpy()
    outside = np.flatnonzero((bins < youngest) | (bins > oldest))
    if not outside.size:
        return None
    first = scans.iloc[outside[0]]
    return (f"{manifest}: {outside.size} of {len(scans)} scans are aged outside the {recorded[0]:g}-"
            f"{recorded[1]:g} years of {run_dir}'s training scans (e.g. {first['participant_id']} "
            f"{first['session_id']}, {first['age']:g}); the age encoding learned nothing for those ages, so their "
            "predictions add an untrained age offset: read them apart, or compare with a run without age "
            "(model.use_age: false)")


def _tested_scans(run_dir: Path) -> dict[tuple[str, str], str] | None:
    """(participant, session) -> diagnosis of each scan the run tested on, as its data_shape.json records them (None
    for runs from before they were recorded)."""
    recorded = read_data_shape(run_dir).get(TEST_DIAGNOSES_KEY)
    if recorded is None:
        return None
    return {(str(participant), str(session)): diagnosis for participant, session, diagnosis in recorded}
