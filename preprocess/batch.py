"""Run the per-scan pipeline over a table of scans with N worker processes, and join shards.

Workers come from `workers.scan_workers` (ITK threads shared out, stopped with the run). A scan that
fails is caught in its worker and listed in `failures.csv`; the others finish. The output manifest holds the input columns plus
`processed_path`, the QC figures, `qc_flag` and `status`; it is what training reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .checks import ScanError
from .pipeline import Params, ScanOutputs, process_scan
from .sidecar import atomic_path
from .workers import run_per_scan

__all__ = ["QC_COLUMNS", "Summary", "run_batch", "merge_shards", "flag_outliers", "write_csv", "failure_table",
           "shard_names", "telling_line"]

QC_COLUMNS = ["qc_ncc", "qc_mi", "qc_mask_dice"]
# Head foregrounds of a registered scan and the template overlap by 0.73-0.88 (Dice; simulated cohort at 2 mm,
# Colin27 0.75 at 2 mm and 0.88 at 1.5 mm);
# far below is a head off the grid or an image whose background outshines it, which NCC inside the brain can miss.
MIN_HEAD_DICE = 0.5
FAILURE_COLUMNS = ["participant_id", "session_id", "path", "error"]


@dataclass(frozen=True)
class Summary:
    done: int
    skipped: int
    failed: int
    flagged: int

    def __str__(self) -> str:
        text = (f"preprocess: {self.done} processed, {self.skipped} skipped (already done), "
                f"{self.failed} failed, {self.flagged} flagged by QC")
        return text + (" - see failures.csv" if self.failed else "")


def shard_names(shard: tuple[int, int] | None) -> tuple[str, str]:
    """File names of the manifest and failure list of a whole run or of one shard."""
    if shard is None:
        return "manifest.csv", "failures.csv"
    tag = f"shard-{shard[0]}-of-{shard[1]}"
    return f"manifest-{tag}.csv", f"failures-{tag}.csv"


def run_batch(table: pd.DataFrame, out_dir: str | Path, params: Params, jobs: int = 1,
              shard: tuple[int, int] | None = None, min_ncc: float = 0.45, progress: bool = True) -> Summary:
    """Process every row of `table` (from inputs.read_inputs) and write the manifest and failures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_name, failures_name = shard_names(shard)
    # A manifest describes a finished run: from here on the scans it lists may be redone with other settings,
    # so an interrupted rerun must not leave it behind for training to read (the merged one too, for a shard).
    for name in {manifest_name, failures_name, *shard_names(None)}:
        (out_dir / name).unlink(missing_ok=True)
    arguments = {i: (row.resolved_path, out_dir, row.participant_id, row.session_id, params)
                 for i, row in zip(table.index, table.itertuples())}
    results = run_per_scan(_run_one, arguments, jobs, "preprocess", progress)
    manifest, failures = _tables(table, results)
    manifest = flag_outliers(manifest, min_ncc)
    write_csv(manifest, out_dir / manifest_name)
    write_csv(failures, out_dir / failures_name)
    counts = manifest["status"].value_counts() if len(manifest) else {}
    return Summary(done=int(counts.get("done", 0)), skipped=int(counts.get("skipped", 0)),
                   failed=len(failures), flagged=int(manifest["qc_flag"].sum()) if len(manifest) else 0)


def flag_outliers(manifest: pd.DataFrame, min_ncc: float) -> pd.DataFrame:
    """Set `qc_flag` where NCC is below `min_ncc` or the head overlap below MIN_HEAD_DICE, or (10+ scans)
    NCC is far below the batch's median: more than 3.5 robust standard deviations (1.4826 MAD). Flagged
    scans stay in the manifest."""
    manifest = manifest.copy()
    ncc = manifest["qc_ncc"].astype(float) if len(manifest) else pd.Series(dtype=float)
    dice = manifest["qc_mask_dice"].astype(float) if len(manifest) else pd.Series(dtype=float)
    flag = (ncc < min_ncc) | (dice < MIN_HEAD_DICE)
    if len(ncc) >= 10:
        median = float(np.median(ncc))
        spread = 1.4826 * float(np.median(np.abs(ncc - median)))
        flag |= ncc < median - 3.5 * max(spread, 1e-3)
    manifest["qc_flag"] = flag.astype(bool)
    return manifest[[c for c in manifest.columns if c != "status"] + ["status"]]  # status last


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as temp:
        frame.to_csv(temp, index=False)


def failure_table(table: pd.DataFrame, results: dict, columns: list[str]) -> pd.DataFrame:
    """`columns` of the rows of `table` whose result failed, plus its error, in input order."""
    bad = [i for i in table.index if results[i]["status"] == "failed"]
    failures = table.loc[bad, columns].copy()
    failures["error"] = [results[i]["error"] for i in bad]
    return failures.reset_index(drop=True)


def _tables(table: pd.DataFrame, results: dict[int, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the results into the manifest (processed scans) and the failure list, in input order."""
    carried = [c for c in table.columns if c != "resolved_path"]
    ok = [i for i in table.index if results[i]["status"] != "failed"]
    manifest = table.loc[ok, carried].copy()
    # the raw scan as an absolute path: the input's relative one was relative to the input, not to this manifest
    manifest["path"] = table.loc[ok, "resolved_path"]
    manifest["processed_path"] = [results[i]["processed_path"] for i in ok]
    for column in QC_COLUMNS:
        manifest[column] = [results[i]["qc"][column] for i in ok]
    manifest["status"] = [results[i]["status"] for i in ok]
    return manifest.reset_index(drop=True), failure_table(table, results, FAILURE_COLUMNS[:-1])


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"participant_id": str, "session_id": str}, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty (a shard cut short?); rerun that shard, then merge") from None


def _run_one(path: str, out_dir: Path, participant: str, session: str, params: Params) -> dict:
    """One scan in a worker: never raises, so one bad scan cannot stop the batch."""
    outputs = ScanOutputs.under(out_dir, participant, session)
    try:
        result = process_scan(path, outputs, params)
    except ScanError as exc:
        return {"status": "failed", "error": str(exc)}
    except Exception as exc:  # ANTs/ITK errors: keep the type and the telling line, go on with the rest
        return {"status": "failed", "error": f"{path}: {type(exc).__name__}: {telling_line(str(exc))}"}
    return {"status": result["status"], "qc": result["qc"], "processed_path": str(outputs.image.resolve())}


def telling_line(message: str) -> str:
    """The line of an error message that says what went wrong: ITK's first line is only the source file
    that raised it, the reason follows on an "ITK ERROR:" line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("ITK ERROR")), lines[0] if lines else "")


def merge_shards(out_dir: str | Path, min_ncc: float = 0.45) -> Summary:
    """Join `manifest-shard-I-of-N.csv` (and failures) of all N shards into manifest.csv and
    failures.csv, re-flagging QC outliers over the whole cohort. Refuses when a shard is missing."""
    out_dir = Path(out_dir)
    found = sorted(out_dir.glob("manifest-shard-*-of-*.csv"))
    if not found:
        raise FileNotFoundError(f"{out_dir}: no manifest-shard-I-of-N.csv files; run the shards first")
    counts = {name.stem.rsplit("-of-", 1)[1] for name in found}
    if len(counts) != 1:
        raise ValueError(f"{out_dir}: shard files of different N ({sorted(counts)}); keep one set of shards")
    count = int(counts.pop())
    names = [shard_names((i, count)) for i in range(count)]
    missing = [m for m, _ in names if not (out_dir / m).exists()]
    if missing:
        raise FileNotFoundError(f"{out_dir}: {len(missing)} of {count} shards missing ({', '.join(missing[:3])}"
                                f"{'...' if len(missing) > 3 else ''}); rerun those shards, then merge")
    manifest = pd.concat([_read_csv(out_dir / m) for m, _ in names], ignore_index=True)
    failures = pd.concat([pd.DataFrame(columns=FAILURE_COLUMNS)]
                         + [_read_csv(out_dir / f) for _, f in names if (out_dir / f).exists()], ignore_index=True)
    manifest = flag_outliers(manifest.sort_values(["participant_id", "session_id"], kind="stable"), min_ncc)
    write_csv(manifest, out_dir / "manifest.csv")
    write_csv(failures, out_dir / "failures.csv")
    statuses = manifest["status"].value_counts()
    return Summary(done=int(statuses.get("done", 0)), skipped=int(statuses.get("skipped", 0)),
                   failed=len(failures), flagged=int(manifest["qc_flag"].sum()))
