"""One table of every method scored on one evaluation set: the CNN run and the baselines beside it.

Reads the summary.json files `elr-mri evaluate` wrote under RUN/eval-<name>/ (the CNN) and
RUN/eval-<name>/baselines/*/ (the linear baselines), so what is compared was scored by the same
code, on the same participants, with the same bootstrap. Two methods' separate intervals overlap
far more than the interval of their difference does, so each method is also set against the CNN
with a paired bootstrap of its predictions.csv.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from elr_mri.config import RunConfig, load_config
from elr_mri.data.splits import read_run_splits
from elr_mri.atomic_files import atomic_write_json
from elr_mri.engine.run_dir import not_the_run_folder
from elr_mri.evaluation import N_BOOT
from elr_mri.evaluation.metrics_report import Interval
from elr_mri.evaluation.truth import mean_paired_difference
from preprocess.sidecar import file_sha256

__all__ = ["HEADLINE_METRICS", "COMPARISON_FILES", "comparison_table", "paired_differences", "run_labels",
           "require_same_scans", "require_same_splits", "record_comparison", "remove_comparisons_citing", "wide_table"]

# the calibration figures too: two methods of one accuracy can differ in how far their probabilities can be trusted
HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "auc_micro", "auc_macro", "ece", "brier")
COMPARISON_FILES = ("comparison.csv", "paired_differences.csv")  # what `evaluate --compare-with` writes
COMPARED_IN = "compared_in.json"  # in a compared run's scoring folder: the comparisons that read it
# a metric a summary.json lacks: a baseline scored before ece and brier were (2026-12-07), which a rescoring with
# --baselines fills in; NaN in the table rather than a KeyError for the whole comparison or demo report
_NOT_SCORED = {"estimate": None, "low": None, "high": None, "resamples": None}


def comparison_table(eval_dir: Path, cnn_name: str, level: str = "participant",
                     metrics: Sequence[str] = HEADLINE_METRICS, others: dict[str, Path] | None = None,
                     baselines: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows: method, level, metric, estimate, low, high, resamples (those the metric was defined in), participants
    (scored): the CNN first, the `others` (name: evaluation
    folder of another run on the same set, e.g. ELR beside CE), then the `baselines` named (None: each
    one found in eval_dir/baselines/, including those an earlier command fitted)."""
    rows = []
    for method, folder in _scored_methods(Path(eval_dir), cnn_name, others, baselines):
        summary = json.loads((folder / "summary.json").read_text())
        people = len(_participants(folder))
        rows += [{"method": method, "level": level, "metric": m, **summary[level].get(m, _NOT_SCORED),
                  "participants": people} for m in metrics]
    table = pd.DataFrame(rows, columns=["method", "level", "metric", "estimate", "low", "high", "resamples",
                                        "participants"])
    return table.astype({"estimate": float, "low": float, "high": float})  # null (undefined) in summary.json: NaN


def paired_differences(eval_dir: Path, cnn_name: str, others: dict[str, Path] | None = None,
                       baselines: Sequence[str] | None = None, n_boot: int = N_BOOT,
                       metrics: Sequence[str] = HEADLINE_METRICS) -> pd.DataFrame:
    """Rows: method, minus, level, metric, estimate, low, high, resamples (those the difference was defined in),
    participants (those both scored): each method of `comparison_table` but the CNN,
    minus the CNN, at participant level on the labels of the evaluated set, with a 95% interval from
    resampling participants, each resample scoring both methods on the same participants."""
    eval_dir = Path(eval_dir)
    cnn_predictions = eval_dir / "predictions.csv"
    if not cnn_predictions.is_file():
        raise FileNotFoundError(f"{cnn_predictions} not found: score the run first (`elr-mri evaluate`)")
    given = pd.read_csv(cnn_predictions, dtype={"participant_id": str, "session_id": str})
    given = given[["participant_id", "session_id", "given"]].rename(columns={"given": "true_diagnosis"})
    rows = []
    for method, folder in _scored_methods(eval_dir, cnn_name, others, baselines)[1:]:
        pair = [(cnn_predictions, folder / "predictions.csv")]
        people = len(_participants(eval_dir) & _participants(folder))
        rows += [{"method": method, "minus": cnn_name, "level": "participant", "metric": metric,
                  **vars(mean_paired_difference(pair, given, n_boot, metric=metric)), "participants": people}
                 for metric in metrics]
    return pd.DataFrame(rows, columns=["method", "minus", "level", "metric", "estimate", "low", "high", "resamples",
                                       "participants"])


def _participants(folder: Path) -> set[str]:
    """The participants an evaluation folder's predictions.csv scored: the tables' n, which summary.json lacks."""
    return set(pd.read_csv(folder / "predictions.csv", usecols=["participant_id"], dtype=str)["participant_id"])


def wide_table(table: pd.DataFrame) -> str:
    """A method × metric text table of 'estimate [low, high]' ×100 (`PRINTED_UNITS`) of a `comparison_table` or
    `paired_differences`, methods and metrics in their order there (the CSV's), not sorted by name."""
    cells = table.assign(value=[str(Interval(r.estimate, r.low, r.high)) for r in table.itertuples()])
    wide = cells.pivot(index="method", columns="metric", values="value")
    return wide.loc[table["method"].unique(), table["metric"].unique()].to_string()


def _scored_methods(eval_dir: Path, cnn_name: str, others: dict[str, Path] | None,
                    baselines: Sequence[str] | None) -> list[tuple[str, Path]]:
    """(method, evaluation folder) of each method with results: the CNN, the `others`, the `baselines`
    found in eval_dir/baselines/ (None: all of them)."""
    folders = [(cnn_name, eval_dir), *((name, Path(folder)) for name, folder in (others or {}).items())]
    found = sorted(path.parent for path in eval_dir.glob("baselines/*/summary.json"))
    folders += [(folder.name, folder) for folder in found if baselines is None or folder.name in baselines]
    return [(method, folder) for method, folder in folders if (folder / "summary.json").is_file()]


def run_labels(runs: Sequence[Path]) -> list[str]:
    """The shortest trailing part of each run's path that no other run's path ends with (runs/x/elr and
    other/elr give x/elr and other/elr; a unique folder name stays as it is), so that runs kept in
    folders of one name stay separate rows of a comparison."""
    paths = [Path(os.path.abspath(run)) for run in runs]
    twice = next((path for i, path in enumerate(paths) if path in paths[:i]), None)
    if twice is not None:
        raise ValueError(f"{twice}: the same run twice in one comparison; compare it with another run")
    return [_distinct_suffix(path, [other for other in paths if other != path]) for path in paths]


def _distinct_suffix(path: Path, others: Sequence[Path]) -> str:
    """The last k parts of `path` for the least k at which no path of `others` has the same last k parts."""
    distinct = (k for k in range(1, len(path.parts)) if all(other.parts[-k:] != path.parts[-k:] for other in others))
    k = next(distinct, len(path.parts))  # all parts: the whole absolute path, which tells any two apart
    return Path(*path.parts[-k:]).as_posix()


def require_same_scans(eval_dir: Path, others: dict[str, Path]) -> None:
    """Refuse to set side by side evaluations that scored other scans or other given diagnoses (runs on one
    split of participants whose manifests list other sessions, or other labels): their figures are not of
    one test set."""
    keys = ["participant_id", "session_id", "given"]

    def scored(folder: Path) -> set[tuple[str, ...]]:
        frame = pd.read_csv(Path(folder) / "predictions.csv", dtype=str)
        return set(frame[keys].itertuples(index=False, name=None))

    ours = scored(eval_dir)
    for folder in others.values():
        theirs = scored(folder)
        if theirs != ours:
            example = " ".join(min(theirs ^ ours))
            raise ValueError(f"{folder} scored other scans than {eval_dir} ({len(theirs ^ ours)} scan(s) with their "
                             f"given diagnosis in one only, e.g. {example}); train and score the runs on one manifest")


def require_same_splits(run: Path, other: Path) -> None:
    """Refuse to compare two runs trained on different participant splits (their test sets differ)."""
    for folder in (run, other):
        if not (Path(folder) / "splits.csv").is_file():
            _refuse_image_run(Path(folder))
            raise FileNotFoundError(not_the_run_folder(Path(folder)) or f"{folder}: no splits.csv, so not an MRI run "
                                    "directory of `elr-mri train`; pass the --out of an MRI run")
    ours, theirs = (_splits(r) for r in (run, other))
    if not ours.equals(theirs):
        _refuse_subset_run(Path(run), Path(other), ours, theirs)
        raise ValueError(f"{other} used other participant splits than {run}; train both on one manifest with one "
                         "data.split_seed")


def _splits(run: Path) -> pd.DataFrame:
    """The run's splits.csv (participant_id, split), sorted by participant."""
    return read_run_splits(run).sort_values("participant_id").reset_index(drop=True)


def _run_config(run: Path) -> RunConfig | None:
    """The run's config.yaml (None: it has none, so nothing more can be said of it)."""
    path = run / "config.yaml"
    return load_config(path) if path.is_file() else None


def _refuse_image_run(run: Path) -> None:
    """An image run has no participants to match: say that comparison is for MRI runs, not that a file is missing."""
    cfg = _run_config(run)
    if cfg is not None and cfg.data.name != "mri":
        raise ValueError(f"{run} trained on {cfg.data.name}, not MRI scans: --compare-with and --drop-suspected are "
                         "for MRI runs only (they match runs by participant splits); score this run on its own")


def _refuse_subset_run(run: Path, other: Path, ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """A run trained or tested on a data.train_subset/test_subset lists only the participants it kept in splits.csv,
    so it differs from a run on the same manifest and data.split_seed: say that, not that the splits differ."""
    listed = {run: ours["split"].value_counts(), other: theirs["split"].value_counts()}
    for folder, beside in ((run, other), (other, run)):
        cfg = _run_config(folder)
        if cfg is None:
            continue
        for split, size, done, kind in (("train", cfg.data.train_subset, "trained", "training"),
                                        ("test", cfg.data.test_subset, "tested", "test")):
            if size is not None:
                raise ValueError(
                    f"{folder} {done} on a data.{split}_subset of {size} {kind} scans, so its splits.csv lists "
                    f"{listed[folder].get(split, 0)} {kind} participants where {beside} lists "
                    f"{listed[beside].get(split, 0)}; compare runs {done} on the whole {kind} split (no "
                    f"data.{split}_subset)")


def record_comparison(eval_dir: Path, others: dict[str, Path]) -> None:
    """Note in the scoring folder of each run compared in `eval_dir` that this comparison read it, with the SHA-256
    of its comparison.csv: when that run trains on, its scores are removed, and `remove_comparisons_citing` then
    removes this comparison too, which would otherwise go on presenting the run's earlier weights as its result."""
    digest = _sha256(eval_dir / COMPARISON_FILES[0])
    for folder in others.values():
        cited = _comparisons_cited(folder)
        cited[str(eval_dir.resolve())] = digest
        atomic_write_json(cited, folder / COMPARED_IN)


def remove_comparisons_citing(folder: Path) -> list[Path]:
    """Remove the comparisons that read the scores in `folder` (a compared run's scoring, about to be removed) and
    are unchanged since; one made again since (with this run's new scores, or without this run) is not this one's.
    Returns the folders they were in."""
    removed = []
    for eval_dir, digest in _comparisons_cited(folder).items():
        if _sha256(Path(eval_dir) / COMPARISON_FILES[0]) != digest:
            continue
        for name in COMPARISON_FILES:
            (Path(eval_dir) / name).unlink(missing_ok=True)
        removed.append(Path(eval_dir))
    return removed


def _comparisons_cited(folder: Path) -> dict[str, str | None]:
    try:
        cited = json.loads((folder / COMPARED_IN).read_text())
    except (OSError, ValueError):
        return {}
    return cited if isinstance(cited, dict) else {}


def _sha256(path: Path) -> str | None:
    """The file's SHA-256; None once it is gone."""
    try:
        return file_sha256(path)
    except OSError:
        return None
