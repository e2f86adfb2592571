"""An evaluation's folder: where a scoring of a run goes (`eval-<set>/`, `explain-<set>/`), whose scoring a folder
holds, and what a scoring writes into it, removing what an earlier scoring left that would no longer describe it.

Apart from `evaluate`, which loads a run and predicts: the baselines and `explain` name and write these folders too,
and the CLI names them before it loads torch.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from elr_mri.atomic_files import atomic_write_json, atomic_write_text
from elr_mri.data.cohort import require_manifest_file
from elr_mri.evaluation.compare import COMPARISON_FILES, remove_comparisons_citing
from elr_mri.evaluation.metrics_report import MetricsReport
from preprocess.sidecar import cannot_write, file_sha256

__all__ = ["evaluation_dir", "explanation_dir", "scored_source", "scored_fingerprint", "manifest_rows_fingerprint",
           "require_own_folder", "write_evaluation", "MANIFEST_ROWS_KEY", "WARNINGS_KEY"]


def evaluation_dir(run_dir: Path, manifest: Path | None, checkpoint: str = "best", test_set: str = "test") -> Path:
    """Where the evaluation of a run's checkpoint on `manifest` (None: its test set `test_set`) is written."""
    return _output_dir("eval", run_dir, manifest, checkpoint, test_set)


def explanation_dir(run_dir: Path, manifest: Path | None, checkpoint: str = "best") -> Path:
    """Where `elr-mri explain` writes the saliency maps of a run's checkpoint on `manifest` (None: its test split)."""
    return _output_dir("explain", run_dir, manifest, checkpoint, "test")


def _output_dir(kind: str, run_dir: Path, manifest: Path | None, checkpoint: str, test_set: str) -> Path:
    name = Path(manifest).stem if manifest is not None else test_set
    return Path(run_dir) / (f"{kind}-{name}" if checkpoint == "best" else f"{kind}-{name}-{checkpoint}")


def scored_source(manifest: Path | None) -> str | None:
    """What an output folder's summary.json records as scored: the manifest's absolute path, or None
    for the run's own test set."""
    return None if manifest is None else str(Path(manifest).resolve())


def scored_fingerprint(manifest: Path | None) -> str | None:
    """The manifest's sha256 beside its path: the same file after the project moved is still the same."""
    return None if manifest is None else file_sha256(manifest)


def manifest_rows_fingerprint(manifest: Path | None) -> str | None:
    """SHA-256 of the manifest's cells, a scan's `status` "skipped" read as "done": preprocess, run again over finished
    scans, marks each one "skipped", so a copy of its manifest made after that rerun was taken for other scans, and
    the baselines and comparisons beside the holdout's scoring were removed."""
    if manifest is None:
        return None
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    if "status" in rows:
        rows["status"] = rows["status"].replace("skipped", "done")
    return hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest()


def require_own_folder(out: Path, manifest: Path | None) -> None:
    """Output folders are named after the manifest's file name, so two cohorts' `manifest.csv` (or a
    holdout named test.csv) would share one: refuse to overwrite what another manifest's scoring left.
    One that cannot be written (a run archived on read-only storage) is refused first: it failed after the scoring."""
    reason = cannot_write(out) if Path(out).parent.is_dir() else None  # no run there: loading it says so
    if reason is not None:
        raise PermissionError(f"{out}: cannot write there ({reason}); the results go into the run's folder, so copy "
                              f"the run to a folder you can write (cp -r {shlex.quote(str(Path(out).parent))} NEW_RUN_DIR) and pass that")
    summary = Path(out) / "summary.json"
    if not summary.is_file():
        return
    if manifest is not None:  # its checksum is compared below
        require_manifest_file(Path(manifest))
    recorded = json.loads(summary.read_text())
    if "manifest" not in recorded or recorded["manifest"] == scored_source(manifest):
        return  # written before the manifest was recorded, or a rescoring of the same one
    if manifest is not None and recorded.get("manifest_sha256") == scored_fingerprint(manifest):
        return  # the same file, moved
    theirs = recorded["manifest"] or "the run's own test split"
    if manifest is None:
        fix = f"move {out} aside (its holdout's file name clashes with the test split's folder) and run again"
    else:
        other_name = f"{Path(manifest).resolve().parent.name}_{Path(manifest).name}"
        fix = f"copy {manifest} to a file of another name (e.g. {other_name}) and pass that, or move {out} aside"
    raise ValueError(f"{out} holds the results for {theirs}, not {scored_source(manifest) or 'the test split'} "
                     f"(the folder is named after the file name); {fix}")


def write_evaluation(out: Path, reports: dict[str, MetricsReport], labels: np.ndarray, probs: np.ndarray,
                     ids: pd.DataFrame, classes: list[str], notes: list[str], about: dict[str, Any]) -> None:
    """metrics.csv, confusion.csv, reliability.csv, predictions.csv (`ids`' columns first, a row an item), ROC,
    confusion and reliability PNGs and summary.json (`about` first) under `out`. summary.json, which readers take as
    "complete", goes first and comes back last: a scoring killed part-way leaves no earlier scoring's summary beside
    its new files."""
    from elr_mri.plots import plot_confusion, plot_reliability, plot_roc

    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(reports.values()))
    predictions = pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])
    predictions.insert(0, "given", [classes[i] for i in labels])
    predictions.insert(1, "predicted", [classes[i] for i in probs.argmax(axis=1)])
    predictions = pd.concat([ids.reset_index(drop=True), predictions], axis=1)
    scoring = {**about, "bootstrap_resamples": first.n_boot, "interval_level": first.confidence,
               _SCORED_KEY: _scored_fingerprint(predictions, ids.columns)}
    _remove_comparisons_of_another_scoring(out, scoring, ids.columns)
    (out / "summary.json").unlink(missing_ok=True)
    rows = [row for report in reports.values() for row in report.rows()]
    atomic_write_text(pd.DataFrame(rows).to_csv(index=False), out / "metrics.csv")
    confusion = [row for report in reports.values() for row in report.confusion_rows()]
    atomic_write_text(pd.DataFrame(confusion).to_csv(index=False), out / "confusion.csv")
    reliability = [row for report in reports.values() for row in report.reliability_rows()]
    atomic_write_text(pd.DataFrame(reliability).to_csv(index=False), out / "reliability.csv")
    atomic_write_text(predictions.to_csv(index=False), out / "predictions.csv")
    plot_roc(labels, probs, classes, out / "roc.png", f"{first.level} level, {len(labels)} {first.level}s, one-vs-rest")
    for level, report in reports.items():
        plot_confusion(report.confusion, classes, out / f"confusion_{level}.png", title=f"{level} level")
        plot_reliability(report.reliability, out / f"reliability_{level}.png",
                         title=f"{level} level, ECE {100 * report.metrics['ece'].estimate:.1f}%")
    _remove_other_levels_plots(out, reports)
    summary = {**scoring, "participant_overlap_notes": notes,
               "balanced_accuracy_classes": first.balanced_accuracy_classes,
               **{level: {name: vars(v) for name, v in r.metrics.items()} for level, r in reports.items()}}
    atomic_write_json(summary, out / "summary.json")


def _remove_other_levels_plots(out: Path, reports: dict[str, MetricsReport]) -> None:
    """Image runs were scored at a scan and a participant level until 2026-12-03, now at one image level: the
    earlier scoring's confusion_scan.png and confusion_participant.png stayed beside this one's figures."""
    written = {f"confusion_{level}.png" for level in reports}
    for plot in out.glob("confusion_*.png"):
        if plot.name not in written:
            plot.unlink()


def _scored_fingerprint(predictions: pd.DataFrame, ids: pd.Index) -> str:
    """SHA-256 of what was scored: each item's `ids` columns and given label, in order. The manifest's sha256 says
    this for a holdout only; a test split rebuilt from a training manifest relabelled in place (a fixed
    data.mri.splits keeps the split) or short of a participant changes this alone."""
    return hashlib.sha256(predictions[[*ids, "given"]].to_csv(index=False).encode()).hexdigest()


_SCORED_KEY = "scored_sha256"  # summary.json's `_scored_fingerprint`
MANIFEST_ROWS_KEY = "manifest_rows_sha256"  # summary.json's `manifest_rows_fingerprint` (absent before 2026-12-07)
WARNINGS_KEY = "warnings"  # summary.json's warnings about the scans scored, as printed (absent before 2026-12-06)
# what `evaluate --baselines` and `--compare-with` add beside a run's scoring, computed from that scoring
_COMPARISON_OUTPUTS = (*COMPARISON_FILES, "baselines")
# what decides a scoring's predictions and intervals (another value of any makes the comparisons stale), each with
# how a removal names an earlier scoring's other value
_SCORING_KEYS = {"manifest_sha256": "other scans (the manifest's content changed)",
                 _SCORED_KEY: "other scans or given labels (the scored set or its labels changed)",
                 "checkpoint": "checkpoint {then} (now {now})",
                 "checkpoint_epoch": "the checkpoint's weights of epoch {then} (now {now})",
                 "bootstrap_resamples": "--bootstrap {then} (now {now})"}


def _remove_comparisons_of_another_scoring(out: Path, scoring: dict[str, Any], ids: pd.Index) -> None:
    """Remove the comparisons an earlier scoring left in `out` when this one scores other scans (a manifest
    edited in place), another checkpoint or with other resamples: they would stand beside the new results
    as theirs; so would other runs' comparisons that put the earlier scoring in their table (`--compare-with`).
    A rescoring of the same keeps them; one after an interrupted scoring cannot tell, and removes them.
    One line names what was removed and why, as `train` does for the folders it removes."""
    summary = out / "summary.json"
    earlier = json.loads(summary.read_text()) if summary.is_file() else {}
    if earlier and _SCORED_KEY not in earlier:
        earlier = {**earlier, **_fingerprint_of_earlier_predictions(out, ids)}
    changed = _changed_scoring_keys(earlier, scoring)
    if earlier and not changed:
        return
    removed = []
    for name in _COMPARISON_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(f"{name}/")
        elif path.exists():
            path.unlink()
            removed.append(name)
    removed += [str(folder / name) for folder in remove_comparisons_citing(out) for name in COMPARISON_FILES]
    if removed:
        print(f"{out}: removed {', '.join(removed)} ({_why_stale(earlier, scoring, changed)}; --baselines and "
              "--compare-with make them again)", file=sys.stderr)


def _changed_scoring_keys(earlier: dict[str, Any], scoring: dict[str, Any]) -> list[str]:
    """The `_SCORING_KEYS` whose values differ between two scorings of a folder. The manifest's rows decide where
    both scorings recorded them, not its bytes, which a preprocess rerun changes without changing a scan."""
    rows = earlier.get(MANIFEST_ROWS_KEY)
    same_rows = rows is not None and rows == scoring.get(MANIFEST_ROWS_KEY)
    return [key for key in _SCORING_KEYS if earlier.get(key) != scoring.get(key)
            and (key != _SCORED_KEY or key in earlier)  # a scoring from before it was recorded: cannot tell
            and not (key == "manifest_sha256" and same_rows)]


def _fingerprint_of_earlier_predictions(out: Path, ids: pd.Index) -> dict[str, str]:
    """`_SCORED_KEY` of the scoring in `out` from its predictions.csv, for a summary.json written before the key was
    (2026-12-06): a test split scored again after its training manifest was relabelled in place kept that scoring's
    comparison.csv and baselines/ beside the new metrics. Nothing where the file does not read as one of these."""
    try:
        earlier = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
        return {_SCORED_KEY: _scored_fingerprint(earlier, ids)}
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return {}


def _why_stale(earlier: dict[str, Any], scoring: dict[str, Any], changed: list[str]) -> str:
    """Why the comparisons beside the `earlier` scoring do not describe this one: the settings that differ."""
    if not earlier:
        return "the scoring they were made beside was cut short (no summary.json), so they may not match this one"
    said = [key for key in changed if not (key == _SCORED_KEY and "manifest_sha256" in changed)]  # "other scans" once
    differences = [_SCORING_KEYS[key].format(then=earlier.get(key), now=scoring.get(key)) for key in said]
    return f"they were made beside a scoring with {', '.join(differences)}"
