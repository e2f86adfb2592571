"""Fit the linear baselines on a CNN run's participant splits and score them like the CNN.

The baselines learn from exactly the training participants of the run (its splits.csv), with the
labels the run trained on, choose their regularisation on its validation participants, and are
scored on its test participants or on a holdout cohort with the same metrics, bootstrap intervals
and files as `elr-mri evaluate`. With `drop_suspected`, the training scans an ELR run flagged in
its suspected_mislabels.csv are left out: does ELR's cleaning help a simple model? A run without ELR targets (CE)
flags from its last epoch's predictions: allowed, as a control, with a warning and the source recorded.
"""

from __future__ import annotations

import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, cast

import numpy as np
import pandas as pd

from elr_mri.baselines.features import (CovariateFill, read_volumes, require_volumes, training_fill, volume_features,
                                       voxel_features)
from elr_mri.baselines.models import BASELINES, Baseline, ScaledSVM, class_scores, fit_baseline
from elr_mri.config import RunConfig, load_run_config
from elr_mri.data.adjudicated import load_adjudicated_labels
from elr_mri.data.cohort import IMAGE_COLUMN, SCAN_KEYS, label_indices, load_manifest
from elr_mri.data.import_keys import adni_participant_key
from elr_mri.data.splits import read_run_splits, run_participants, split_of_participants
from elr_mri.engine.run_dir import not_the_run_folder
from elr_mri.engine.run_records import (TEST_DIAGNOSES_KEY, evaluation_labels_fingerprint, labels_fingerprint,
                                       read_data_shape)
from elr_mri.evaluation import N_BOOT
from elr_mri.evaluation.compare import require_same_splits
from elr_mri.evaluation.scored_scans import load_run_holdout
from elr_mri.evaluation.evaluation_folder import WARNINGS_KEY, evaluation_dir, write_evaluation
from elr_mri.evaluation.metrics import evaluate_predictions
from elr_mri.evaluation.metrics_report import MetricsReport

__all__ = ["check_baseline_inputs", "evaluate_baselines", "require_baseline_run", "LAST_EPOCH_FLAGS", "VOXEL_BLOCK",
           "OneDiagnosisLeft"]

VOXEL_BLOCK = 3  # voxels averaged per axis for the SVM: 2 mm scans become 6 mm features
LAST_EPOCH_FLAGS = "last_epoch_prediction"  # suspected_mislabels.csv's source of a run without ELR targets


class OneDiagnosisLeft(ValueError):
    """The flagging run's suspected mislabels cover every training scan but those of one diagnosis: a property of
    that run's flags, not a mistake, so the demo skips these baselines for it while any other error stops it."""


def evaluate_baselines(run_dir: Path, volumes_csvs: Sequence[Path] = (), manifest: Path | None = None,
                       drop_suspected: Path | None = None, n_boot: int = N_BOOT,
                       beside_checkpoint: str = "best") -> dict[str, dict[str, MetricsReport]]:
    """Fit and score every baseline (the volume one only when `volumes_csvs` are given); results go
    to baselines/<name>/ inside the evaluation of the run's `beside_checkpoint` they are compared with
    (RUN_DIR/eval-<test|holdout>/ for the selected one). Returns {name: {level: report}}."""
    run_dir = Path(run_dir)
    inputs = _baseline_inputs(run_dir, volumes_csvs, manifest, drop_suspected)
    classes, train, val, scored = inputs.classes, inputs.train, inputs.val, inputs.scored
    if inputs.flags_source == LAST_EPOCH_FLAGS:
        print(f"warning: {drop_suspected} flagged its suspected mislabels from its last epoch's predictions (source "
              f"{LAST_EPOCH_FLAGS}: its loss keeps no ELR targets), not from ELR targets; the *_without_suspected "
              "baselines leave out the scans that network disagreed with (flags_source in their summary.json)",
              file=sys.stderr)
    if drop_suspected is not None:  # how many: the table's *_without_suspected rows alone do not say
        print(f"baselines *_without_suspected: fitted without the {len(inputs.dropped)} of "
              f"{len(train) + len(inputs.dropped)} training scans {drop_suspected} flagged (dropped_scans in their "
              f"summary.json); validated and scored as the others, on all {len(scored)} scans of {inputs.name}")
    results = {}
    for baseline in BASELINES:
        if baseline.features == "volumes" and inputs.volumes is None:
            continue
        features = _Features(baseline, inputs.volumes, training_fill(train))
        tag = baseline.name + ("_without_suspected" if drop_suspected is not None else "")
        y_train = label_indices(train["diagnosis"], classes)
        model, c, by_c = fit_baseline(baseline, features(train, "training split"), y_train,
                                      train["participant_id"].to_numpy(),
                                      features(val, "validation split") if len(val) else None,
                                      inputs.val_labels if len(val) else None, len(classes))
        _warn_if_unscaled(model, tag, len(train))
        probs = class_scores(model, features(scored, inputs.name), len(classes))
        labels = label_indices(scored["diagnosis"], classes)
        reports = evaluate_predictions(labels, probs, scored["participant_id"].to_numpy(), classes, n_boot=n_boot)
        about = {"baseline": tag, "description": baseline.description, "C": c, "train_scans": len(train),
                 "C_chosen_on_validation": bool(by_c), "validation_balanced_accuracy_by_C": by_c,  # {}: C = 1
                 "dropped_suspected": len(inputs.dropped), "dropped_scans": inputs.dropped,
                 "flags_sha256": inputs.flags_sha256,  # which suspected_mislabels.csv: the run may be trained on
                 "flags_source": inputs.flags_source,
                 "flagging_run": str(Path(drop_suspected).resolve()) if drop_suspected is not None else None,
                 **_probability_scale(model), WARNINGS_KEY: inputs.warnings}
        out = evaluation_dir(run_dir, manifest, beside_checkpoint) / "baselines" / tag
        write_evaluation(out, reports, labels, probs, scored[["participant_id", "session_id"]], classes, inputs.notes,
                         about)
        results[tag] = reports
    return results


def _probability_scale(model: object) -> dict[str, float | int | None]:
    """summary.json's record of the SVM's probabilities: the scale of its margins and the held-out training scans it
    was fitted on (null for the logistic regression, whose probabilities are its own)."""
    if not isinstance(model, ScaledSVM):
        return {"probability_scale": None, "probability_scale_scans": None}
    return {"probability_scale": model.scale, "probability_scale_scans": model.held_out}


def _warn_if_unscaled(model: object, name: str, scans: int) -> None:
    """Say when no held-out margins fitted the SVM's scale: its ece and brier are then those of raw margins."""
    if isinstance(model, ScaledSVM) and not model.held_out:
        print(f"warning: {name}: no participant-grouped fold of its {scans} training scans held every diagnosis, so "
              "its probabilities are the softmax of its raw margins (probability_scale 1), not calibrated: compare "
              "its accuracies, not its ece or brier", file=sys.stderr)


def check_baseline_inputs(run_dir: Path, volumes_csvs: Sequence[Path] = (), manifest: Path | None = None,
                          drop_suspected: Path | None = None) -> None:
    """Refuse now what `evaluate_baselines` would refuse after the CNN was scored: the run, the volume
    CSVs (every scan of the splits and of the scored set covered), the holdout, the flagging run."""
    _baseline_inputs(Path(run_dir), volumes_csvs, manifest, None)
    if drop_suspected is not None:
        _baseline_inputs(Path(run_dir), volumes_csvs, manifest, drop_suspected)


@dataclass
class _BaselineInputs:
    """The rows a baseline is fitted on and scored on, with what they need."""

    classes: list[str]
    train: pd.DataFrame
    val: pd.DataFrame
    val_labels: np.ndarray  # the labels the run validated on: the manifest's, or data.mri.val_labels'
    scored: pd.DataFrame
    name: str  # of the scored set: "test" or the holdout's
    notes: list[str]  # participant-overlap notes of the holdout
    warnings: list[str]  # given about the holdout's scans (QC flags, preprocessing), kept in summary.json
    volumes: pd.DataFrame | None
    dropped: list[str]  # training scans left out as suspected mislabels, "participant/session"
    flags_sha256: str | None  # of the suspected_mislabels.csv they came from
    flags_source: str | None  # its `source`: elr_target or last_epoch_prediction (None: not recorded, or no flags)


def _baseline_inputs(run_dir: Path, volumes_csvs: Sequence[Path], manifest: Path | None,
                     drop_suspected: Path | None) -> _BaselineInputs:
    cfg = require_baseline_run(run_dir)
    volumes = read_volumes(volumes_csvs) if volumes_csvs else None
    classes = list(cfg.data.mri.classes)
    cohort = load_manifest(cast(str, cfg.data.mri.manifest), classes)  # a run `require_baseline_run` took: MRI's
    listed = split_of_participants(read_run_splits(run_dir), _split_participants(cfg, cohort, run_dir),
                                   run_dir / "splits.csv")
    split = cohort["participant_id"].map(listed)
    train, val = cohort[split == "train"], cohort[split == "val"]
    trained_on = label_indices(train["diagnosis"], classes)
    _require_the_runs_training_labels(run_dir, cfg, trained_on)
    _require_every_training_scan(run_dir, cfg, trained_on)
    # C is chosen on the scans and labels the CNN's checkpoint was selected on
    val_labels = label_indices(val["diagnosis"], classes)
    if cfg.data.mri.val_labels:
        val_labels = load_adjudicated_labels(cfg.data.mri.val_labels, val, classes)
        val, val_labels = val[val_labels >= 0], val_labels[val_labels >= 0]  # -1: no class scores it, as in training
    _require_the_runs_evaluation_labels(run_dir, cfg, val, val_labels, cohort[split == "test"])
    dropped: list[str] = []
    flags_sha256, flags_source = None, None
    if drop_suspected is not None:
        train, dropped, flags_sha256, flags_source = _without_suspected(train, Path(drop_suspected), run_dir)
        if train["diagnosis"].nunique() < 2:
            left = " and ".join(train["diagnosis"].unique()) or "no scan"
            raise OneDiagnosisLeft(f"{drop_suspected} flagged {len(dropped)} training scans; without them only {left} "
                                   "is left, so there is nothing to fit")
    name, scored, notes, warnings = _evaluation_rows(run_dir, cfg, cohort[split == "test"], manifest)
    if volumes is not None:
        for rows, source in ((train, "training split"), (val, "validation split"), (scored, name)):
            require_volumes(rows, volumes, source)
    return _BaselineInputs(classes, train, val, val_labels, scored, name, notes, warnings, volumes, dropped,
                           flags_sha256, flags_source)


def _split_participants(cfg: RunConfig, cohort: pd.DataFrame, run_dir: Path) -> pd.Series:
    """The manifest's participants the run's splits.csv must list: all but those it validated on none of the scans
    of, as data.mri.val_labels gives each a diagnosis the run's classes leave out (MCI in a CN-vs-AD run). Any other
    participant missing there was added to the manifest since the run."""
    unlisted = cohort[~cohort["participant_id"].isin(run_participants(run_dir))]

    panel = cfg.data.mri.val_labels

    def validated_on_none(scans: pd.DataFrame, panel: str) -> bool:
        try:
            return bool((load_adjudicated_labels(panel, scans, cfg.data.mri.classes) < 0).all())
        except ValueError:  # the panel lacks a scan of theirs: not a validation participant of the run
            return False

    left_out = ({participant for participant, scans in unlisted.groupby("participant_id")
                 if validated_on_none(scans, panel)} if panel else set())
    return cohort.loc[~cohort["participant_id"].isin(left_out), "participant_id"]


def _require_the_runs_training_labels(run_dir: Path, cfg: RunConfig, labels: np.ndarray) -> None:
    """The baselines fit the training manifest's diagnoses as they are now: refuse a manifest relabelled since the
    CNN trained on it (runs from before the labels were recorded are not checked)."""
    recorded = read_data_shape(run_dir).get("train_labels_sha256")
    if recorded is not None and recorded != labels_fingerprint(labels):
        raise ValueError(f"{run_dir}: {cfg.data.mri.manifest} now gives its training scans other diagnoses (or other "
                         "scans) than the run trained on, so the baselines would fit other labels; restore that "
                         "manifest, or train a new run on this one")


def _require_every_training_scan(run_dir: Path, cfg: RunConfig, labels: np.ndarray) -> None:
    """The baselines fit every training scan: refuse a run whose network trained on a class-capped subset of them
    (data.balanced_subset smaller than the split: the dominant diagnosis cut), as data.train_subset is refused. How
    many the subset keeps depends on the class counts alone, not on its seed."""
    batches = cfg.data.balanced_batches  # given wherever data.balanced_subset is (`check_config`)
    if not cfg.data.balanced_subset or batches is None:
        return
    from elr_mri.engine.feeding import balanced_subset

    size = batches * cfg.train.batch_size
    kept = len(balanced_subset(labels, len(cfg.data.mri.classes), size, cfg.seed))
    if kept < len(labels):
        raise ValueError(f"{run_dir}: the run trained on a class-balanced subset of {kept} of its {len(labels)} "
                         f"training scans (data.balanced_subset, {cfg.data.balanced_batches} balanced_batches × "
                         f"{cfg.train.batch_size} batch_size); the baselines fit them all, so the comparison would be "
                         "unfair; compare against a run without data.balanced_subset")


def _require_the_runs_evaluation_labels(run_dir: Path, cfg: RunConfig, val: pd.DataFrame, val_labels: np.ndarray,
                                        test: pd.DataFrame) -> None:
    """C is chosen on the validation labels the CNN's checkpoint was selected on: refuse a panel
    (data.mri.val_labels) or manifest relabelled there since the run trained, as a resume does. The recorded
    fingerprint covers the test labels too; where data_shape.json lists the test diagnoses, they stand in for the
    manifest's, so a relabelled test scan alone is not refused (`evaluate` warns of it when it scores the test
    split; no baseline chooses anything on it). Runs from before the labels were recorded are not checked."""
    shape = read_data_shape(run_dir)
    recorded = shape.get("evaluation_labels_sha256")
    if recorded is None:
        return
    tested = shape.get(TEST_DIAGNOSES_KEY)
    if tested is not None:
        test = pd.DataFrame(tested, columns=[*SCAN_KEYS, "diagnosis"])
        test_labels = np.array([shape["class_names"].index(diagnosis) for diagnosis in test["diagnosis"]], dtype=int)
    else:
        test_labels = label_indices(test["diagnosis"], cfg.data.mri.classes)
    now = evaluation_labels_fingerprint({"val": (val_labels, val) if len(val) else None,
                                         "test": (test_labels, test) if len(test) else None})
    if recorded != now:
        panel = f"{cfg.data.mri.val_labels} (data.mri.val_labels) or " if cfg.data.mri.val_labels else ""
        which = ("validation scans other diagnoses than the run trained with, so" if tested is not None else
                 "validation or test scans other diagnoses than the run trained with (its data_shape.json, from "
                 f"before {TEST_DIAGNOSES_KEY} was recorded, cannot say which); if validation scans,")
        raise ValueError(f"{run_dir}: {panel}{cfg.data.mri.manifest} now gives its {which} the baselines would choose "
                         "C on other labels than its checkpoint was selected on; restore that file, or train a new run "
                         "on it")


def require_baseline_run(run_dir: Path) -> RunConfig:
    """The config of `run_dir`, refused when baselines cannot be compared with it: they fit MRI scans on the
    manifest's own labels and whole splits."""
    cfg = load_run_config(run_dir)
    if cfg.data.name != "mri":
        raise ValueError(f"{run_dir}: baselines need an MRI run; this one trained on {cfg.data.name}")
    if cfg.data.noise.mode != "none":
        raise ValueError(f"{run_dir}: the run added synthetic noise (data.noise.mode={cfg.data.noise.mode}); the "
                         "baselines train on the manifest's labels, so the comparison would be unfair")
    if cfg.data.train_subset or cfg.data.test_subset:
        raise ValueError(f"{run_dir}: the run used data.train_subset/test_subset; the baselines fit and score whole "
                         "splits, so compare against a run without them")
    return cfg


class _Features:
    """The feature matrix of a baseline for a set of manifest rows."""

    def __init__(self, baseline: Baseline, volumes: pd.DataFrame | None, fill: CovariateFill) -> None:
        self.baseline, self.volumes, self.fill = baseline, volumes, fill

    def __call__(self, rows: pd.DataFrame, source: str) -> np.ndarray:
        if self.baseline.features == "volumes":
            return volume_features(rows, self.volumes, source, self.fill)
        return voxel_features(rows[IMAGE_COLUMN].tolist(), VOXEL_BLOCK)


def _evaluation_rows(run_dir: Path, cfg: RunConfig, test: pd.DataFrame, manifest: Path | None
                     ) -> tuple[str, pd.DataFrame, list[str], list[str]]:
    """(name, rows, overlap notes, warnings about the scans): the run's test participants, or the holdout manifest's
    scans, checked as `evaluate` checks them."""
    if manifest is None:
        if test.empty:
            raise ValueError(f"{run_dir}: the run has no test split; pass --manifest HOLDOUT.csv")
        return "test", test, [], []
    frame, notes, warnings = load_run_holdout(run_dir, cfg.data, manifest)
    return Path(manifest).stem, frame, notes, warnings


def _flagged_elsewhere_fix(participant: str, training: pd.Series) -> str:
    """How to go on from a flagged scan that is not a training scan: its participant id re-spelled by hand (007 for 7,
    a spreadsheet's re-save) is said so, as "flag with a run on the same manifest" would send the user elsewhere."""
    spelled = {adni_participant_key(known): known for known in training}
    known = spelled.get(adni_participant_key(participant))
    if known is None or known == participant:
        return "flag with a run on the same manifest"
    return (f"the manifest spells that participant {known}: the table's ids are matched as `elr-mri train` wrote them, "
            "so restore them (or train the flagging run again)")


def _without_suspected(train: pd.DataFrame, flagging_run: Path, run_dir: Path
                       ) -> tuple[pd.DataFrame, list[str], str, str | None]:
    """(training rows minus the scans `flagging_run` listed as suspected mislabels, those scans as
    "participant/session", the SHA-256 of the list read: the flagging run may be trained on and flag others later,
    and the list's source: ELR targets or, for a run without them, its last epoch's predictions). Same splits
    required.

    The ids are matched as written, not by `adni_participant_key` as a user's splits or panel are: `train` writes the
    table from the manifest the baselines read, and the two runs' splits.csv must be equal as written, so a table
    spelled otherwise was edited by hand, and a session key would join the several T1s of one visit (`_run-2`)."""
    table = flagging_run / "suspected_mislabels.csv"
    if not table.exists():
        raise FileNotFoundError(not_the_run_folder(flagging_run) or
                                f"{table} not found: --drop-suspected needs a finished run directory")
    require_same_splits(run_dir, flagging_run)
    require_baseline_run(flagging_run)  # its flags are against the manifest's labels, not synthetic ones
    listed = table.read_bytes()  # hashed and read once: what was dropped is what the hash names
    flags_sha256 = hashlib.sha256(listed).hexdigest()
    flagged = pd.read_csv(io.BytesIO(listed), dtype={"participant_id": str, "session_id": str})
    source = str(flagged["source"].iloc[0]) if "source" in flagged and len(flagged) else None  # one for the table
    flagged = flagged[[*SCAN_KEYS, *(["given_name"] if "given_name" in flagged else [])]]
    joined = flagged.merge(train[[*SCAN_KEYS, "diagnosis"]], on=SCAN_KEYS, how="left")
    strangers = joined[joined["diagnosis"].isna()]
    if len(strangers):
        first = strangers.iloc[0]
        raise ValueError(f"{table}: {len(strangers)} flagged scan(s) are not training scans of {run_dir} (e.g. "
                         f"{first.participant_id}/{first.session_id}); "
                         + _flagged_elsewhere_fix(first.participant_id, train["participant_id"]))
    if "given_name" in joined:
        relabelled = joined[joined["given_name"] != joined["diagnosis"]]
        if len(relabelled):
            first = relabelled.iloc[0]
            raise ValueError(f"{table}: {first.participant_id}/{first.session_id} was flagged as {first.given_name}, "
                             f"the manifest now says {first.diagnosis} (and {len(relabelled) - 1} more); flag with a "
                             "run on the manifest as it is")
    # by membership: a scan listed twice (flags pasted together by hand) is left out once, not a length mismatch
    keep = ~pd.MultiIndex.from_frame(train[SCAN_KEYS]).isin(pd.MultiIndex.from_frame(flagged[SCAN_KEYS]))
    dropped = train.loc[~keep, SCAN_KEYS]
    return train[keep], (dropped["participant_id"] + "/" + dropped["session_id"]).tolist(), flags_sha256, source
