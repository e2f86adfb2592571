"""What a new run records about its data, and what a resume checks against that record (and against the
length its cosine schedule spans) before any epoch is trained again.

A resume that silently trained on other data (another copy of the images, an edited manifest, other ages)
would mix two runs in one set of weights and ELR targets; each check here names what changed and how to
start a new run instead. Evaluation reads the same record (`read_data_shape`) to score a run on what it
trained on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, cast, overload

import numpy as np
import pandas as pd

from elr_mri.data.images import NoisyImageData
from elr_mri.data.splits import read_run_splits
from elr_mri.atomic_files import atomic_write_json, atomic_write_text
from elr_mri.engine.start import TRAIN_LABELS_KEY, new_run_command

if TYPE_CHECKING:
    from elr_mri.data.mri import MRIScans

__all__ = ["PREPROCESSING_KEY", "TEST_DIAGNOSES_KEY", "TRAIN_AGE_RANGE_KEY", "TRAIN_CLASS_COUNTS_KEY", "read_data_shape",
           "record_run_data", "labels_fingerprint", "evaluation_labels_fingerprint", "require_same_data"]

RUN_RECORDS = ("data_shape.json", "splits.csv", "split_balance.csv")  # `record_run_data`'s
TEST_DIAGNOSES_KEY = "test_diagnoses"  # data_shape.json's [participant_id, session_id, diagnosis] of each test scan
TRAIN_AGE_RANGE_KEY = "train_age_range"  # data_shape.json's [youngest, oldest] training age in years (age models)
TRAIN_CLASS_COUNTS_KEY = "train_class_counts"  # data_shape.json's {class: training examples given it} (MRI runs)
PREPROCESSING_KEY = "preprocessing"  # data_shape.json's {a scan: its preprocess settings} per distinct setting (MRI)


@overload
def read_data_shape(run_dir: Path, required: Literal[True] = True) -> dict[str, Any]: ...
@overload
def read_data_shape(run_dir: Path, required: bool) -> dict[str, Any] | None: ...
def read_data_shape(run_dir: Path, required: bool = True) -> dict[str, Any] | None:
    """A run's data_shape.json (what it trained on); None when it is missing and not `required`."""
    path = Path(run_dir) / "data_shape.json"
    if not path.is_file():
        if not required:
            return None
        if (Path(run_dir) / "checkpoints").is_dir():
            raise FileNotFoundError(f"{path} not found: the run in {run_dir} lost the record of what it trained on; "
                                    "restore it from a copy, or train the run again")
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a run directory of `elr-mri train`; pass the "
                                "run's --out")
    try:
        shape = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        shape, reason = None, str(err)
    else:
        reason = "not a JSON object"
    if not isinstance(shape, dict):
        raise ValueError(f"{path}: unreadable ({reason}); `elr-mri train` writes it atomically, so something else "
                         "damaged it: restore it from a copy, or train the run again")
    return shape


def record_run_data(out_dir: Path, data: NoisyImageData, record_ages: bool) -> None:
    """data_shape.json and, for MRI runs, splits.csv and split_balance.csv. `record_ages`: the model reads
    the age, so a resume compares it too."""
    shape = {"input_shape": list(data.input_shape), "num_classes": data.num_classes,
             "train_examples": len(data.train), "class_names": list(data.class_names),
             TRAIN_LABELS_KEY: _train_labels_fingerprint(data)}
    if data.volume_grid is not None:  # evaluation refuses holdout scans on another grid, or elsewhere in space
        shape["volume_grid"] = data.volume_grid.as_dict()
        if data.volume_grid.ras_affine is not None:  # not compared on resume: runs from before it have none
            shape["volume_ras_affine"] = np.round(data.volume_grid.ras_affine, 6).tolist()
    if record_ages:
        shape["ages_sha256"] = _ages_fingerprint(data)
        shape[TRAIN_AGE_RANGE_KEY] = _training_age_range(data)
    if data.volume_grid is not None:
        shape["train_scans_sha256"] = _training_scans_fingerprint(data)
        shape[TRAIN_CLASS_COUNTS_KEY] = _training_class_counts(data)
        shape[PREPROCESSING_KEY] = _scans_preprocessing(data)  # holdouts are compared with it
    shape["evaluation_labels_sha256"] = _evaluation_labels_fingerprint(data)
    if data.volume_grid is not None and data.test is not None:
        shape[TEST_DIAGNOSES_KEY] = _test_diagnoses(data)
    atomic_write_json(shape, out_dir / "data_shape.json")
    if data.volume_grid is not None:  # MRI: evaluation refuses holdout participants seen in any of these splits
        from elr_mri.data.mri import run_splits_table, split_balance_table

        atomic_write_text(run_splits_table(data).to_csv(index=False), out_dir / "splits.csv")
        atomic_write_text(split_balance_table(data).to_csv(index=False), out_dir / "split_balance.csv")


def _training_class_counts(data: NoisyImageData) -> dict[str, int]:
    """Training examples per class, by the labels trained on: evaluate names a holdout class the run never saw
    (its recall is ~0 by construction), which training warned of only at its start."""
    counts = np.bincount(np.asarray(data.train_labels, dtype=np.int64), minlength=data.num_classes)
    return {str(name): int(count) for name, count in zip(data.class_names, counts)}


def _scans_preprocessing(data: NoisyImageData) -> dict[str, dict[str, Any]]:
    """The preprocess settings of an MRI run's scans, from their sidecars, as `compare_preprocessing` reads them: kept
    with the run, a holdout is compared with them after the training manifest has moved or its scans were made anew."""
    from elr_mri.data.cohort import IMAGE_COLUMN
    from elr_mri.data.mri import MRIScans
    from elr_mri.data.preprocessing import cohort_preprocessing

    scans = [d.frame[IMAGE_COLUMN] for d in (data.train, data.val, data.test) if isinstance(d, MRIScans)]
    return cohort_preprocessing(pd.concat(scans)) if scans else {}


def require_same_data(out_dir: Path, data: NoisyImageData) -> None:
    """Refuse a resume onto data other than the run's: its shape and training labels, for MRI runs the
    participants' splits, then (a model that reads it) the ages; each check names what changed."""
    _require_same_data_shape(out_dir, data)
    if (out_dir / "splits.csv").exists():
        _require_same_splits(out_dir, data)
    _require_same_recorded_inputs(out_dir, data)


def _require_same_data_shape(out_dir: Path, data: NoisyImageData) -> None:
    """A resumed run's data must be the data it trained on: ELR's targets hold a row per training example
    and the network a score per class, so other data fails later as a tensor size mismatch."""
    # a run with a checkpoint must have it; without one it was killed before it was written, and the resume writes it
    before = read_data_shape(out_dir, required=(out_dir / "checkpoints" / "last.pt").exists())
    if before is None:
        return
    now = {"input_shape": list(data.input_shape), "num_classes": data.num_classes, "train_examples": len(data.train)}
    if data.volume_grid is not None and "volume_grid" in before:  # scans preprocessed again at another resolution
        now["volume_grid"] = data.volume_grid.as_dict()
    if TRAIN_LABELS_KEY in before:  # runs from before it was recorded have none (a resume refuses them first)
        now[TRAIN_LABELS_KEY] = _train_labels_fingerprint(data)
    changed = [key for key, value in now.items() if before.get(key) != value]
    if changed:
        key = changed[0]
        what = ("other training examples or labels (same count, other order or content)" if key == TRAIN_LABELS_KEY
                else f"{key} = {now[key]}, it trained on {before.get(key)}")
        raise ValueError(f"{out_dir}: the data now gives {what} (data.root or the manifest changed); restore that "
                         f"data, or start a new run: {new_run_command(out_dir)}")


def _train_labels_fingerprint(data: NoisyImageData) -> str:
    return labels_fingerprint(data.train_labels, data.train_ids)


def labels_fingerprint(labels: np.ndarray, ids: np.ndarray | None = None) -> str:
    """SHA-256 of a training split's labels in order, with each example's position in the release where
    known: another copy of a data set of the same size and classes (a resume onto the wrong data.root, a
    re-extracted folder in another order) or a relabelled manifest gives another value, while reading it
    costs no image. Recorded as `train_labels_sha256` in data_shape.json."""
    digest = hashlib.sha256(np.asarray(labels, dtype=np.int64).tobytes())
    if ids is not None:
        digest.update(np.asarray(ids, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _require_same_recorded_inputs(out_dir: Path, data: NoisyImageData) -> None:
    """After the shape and split checks, which name what changed more precisely: the ages the model reads, and
    (MRI) the order of the training scans, which ELR's targets and the mislabel table follow row by row."""
    _require_recorded(out_dir, "ages_sha256", _ages_fingerprint, data,
                      "other ages for the scans of its splits (an input of the model; the manifest changed)")
    _require_recorded(out_dir, "train_scans_sha256", _training_scans_fingerprint, data,
                      "its training scans in another order (ELR's targets are kept by row; the manifest's rows moved)")
    _require_recorded(out_dir, "evaluation_labels_sha256", _evaluation_labels_fingerprint, data,
                      "other validation or test labels (a relabelled manifest or validation panel), so its best "
                      "epoch would be chosen across two sets of labels")


def _require_recorded(out_dir: Path, key: str, fingerprint: Callable[[NoisyImageData], str], data: NoisyImageData,
                      what: str) -> None:
    recorded = (read_data_shape(out_dir, required=False) or {}).get(key)
    if recorded is not None and recorded != fingerprint(data):  # runs from before it was recorded have none
        raise ValueError(f"{out_dir}: the data now gives {what}; restore the manifest the run trained on, or start a "
                         f"new run: {new_run_command(out_dir)}")


def _evaluation_labels_fingerprint(data: NoisyImageData) -> str:
    """SHA-256 of the validation and test splits' labels in order, with each scan's IDs for MRI: the selection
    compares every epoch's validation accuracy with the best so far, and metrics.csv lists the test accuracy by
    epoch, so both must be scored against the labels the run started with."""
    return evaluation_labels_fingerprint({name: None if split is None else (split.labels, getattr(split, "frame", None))
                                          for name, split in (("val", data.val), ("test", data.test))})


def evaluation_labels_fingerprint(splits: dict[str, tuple[np.ndarray, pd.DataFrame | None] | None]) -> str:
    """`evaluation_labels_sha256` of data_shape.json from {"val": (labels, scans), "test": ...} (None: no such
    split; scans None: not MRI), so that `evaluate --baselines` can check the labels it chooses C on."""
    digest = hashlib.sha256()
    for name in ("val", "test"):
        digest.update(name.encode())
        split = splits[name]
        if split is None:
            continue
        labels, frame = split
        digest.update(np.asarray(labels, dtype=np.int64).tobytes())
        if frame is not None:
            digest.update("\n".join(frame["participant_id"] + "\t" + frame["session_id"]).encode())
    return digest.hexdigest()


def _test_diagnoses(data: NoisyImageData) -> list[list[str]]:
    """Each MRI test scan's IDs and given diagnosis: `evaluate` rebuilds the test split from the manifest as it is
    then, and names the scans relabelled since training (a fingerprint could only say that some were)."""
    test = cast("MRIScans", data.test)  # called for MRI runs with a test split only
    return [[participant, session, data.class_names[label]]
            for participant, session, label in zip(test.frame["participant_id"], test.frame["session_id"], test.labels)]


def _training_scans_fingerprint(data: NoisyImageData) -> str:
    """SHA-256 of the training scans' participant and session IDs in order: two rows of one label swapped keep the
    labels' fingerprint, the splits and the ages (for a model without age), yet put each scan under another's target."""
    frame = cast("MRIScans", data.train).frame  # called for MRI runs only
    return hashlib.sha256("\n".join(frame["participant_id"] + "\t" + frame["session_id"]).encode()).hexdigest()


def _ages_fingerprint(data: NoisyImageData) -> str:
    """SHA-256 of the ages of the training, validation and test scans in order: the age is an input of the model,
    and a manifest imported again (corrected visit dates) keeps labels and splits but changes it."""
    digest = hashlib.sha256()
    for split in (data.train, data.val, data.test):
        digest.update(np.asarray(getattr(split, "ages", ()), dtype=np.float64).tobytes())
    return digest.hexdigest()


def _training_age_range(data: NoisyImageData) -> list[float]:
    """The youngest and oldest training scan's age: the age encoding learns an offset only for the half-year bins
    training fills, so evaluation says when it scores scans outside them (`evaluate`, NACC's 45-year-olds)."""
    ages = np.asarray(cast("MRIScans", data.train).ages, dtype=np.float64)  # a model reading the age: MRI
    return [float(ages.min()), float(ages.max())]


def _require_same_splits(out_dir: Path, data: NoisyImageData) -> None:
    """A resumed MRI run must see the participants of its splits.csv in the same splits: an edited manifest
    redraws the split, moving test participants into training and ELR's per-scan targets onto other scans."""
    from elr_mri.data.mri import participants_by_split

    if not (out_dir / "splits.csv").exists():
        return
    before = read_run_splits(out_dir).set_index("participant_id")["split"]
    now = participants_by_split(data).set_index("participant_id")["split"]
    moved = sorted(p for p in before.index.union(now.index) if before.get(p) != now.get(p))
    if moved:
        first = moved[0]
        raise ValueError(f"{out_dir}: the manifest has changed since training: {len(moved)} participant(s) are not in "
                         f"the split splits.csv gives them (e.g. {first}: {before.get(first, 'absent')} then, "
                         f"{now.get(first, 'absent')} now); restore the manifest the run trained on, or start a new "
                         f"run: {new_run_command(out_dir)}")
