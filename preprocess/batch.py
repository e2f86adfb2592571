"""Run the per-scan pipeline over a table of scans with N worker processes, and join shards.

Workers come from `workers.scan_workers` (ITK threads shared out, stopped with the run). A scan that
fails is caught in its worker and listed in `failures.csv`; the others finish. The output manifest holds the input columns
plus `processed_path`, `input_sha256`, `input_voxels_sha256`, the QC figures, `qc_flag`, `qc_reason` and `status`; it
is what training reads.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterator, Mapping

import numpy as np
import pandas as pd

from .checks import ScanError, not_found
from .folder_locks import fcntl  # None on Windows
from .folder_locks import forget_holder, holder_named_in, locks_unsupported, name_holder, warn_unlocked
from .inputs import InputError, select_shard
from .pipeline import PIPELINE_VERSION, Params, ScanOutputs, process_scan, versions_writing_alike
from .qc_flags import actions_for, with_qc_flags
from .sidecar import (atomic_path, compared_template_digests, refuse_a_folder_at, remove_stale_temps, template_identity,
                      write_json)
from .template import space_code, template_file_digests
from .user_errors import as_storage_error, storage_error_or_raise
from .workers import leave_if_starting_a_worker, run_per_scan

__all__ = ["QC_COLUMNS", "Summary", "run_batch", "files_removed_at_start", "merge_shards", "write_csv", "failure_table",
           "shard_names", "telling_line", "flagged_report", "redone_lines"]

QC_COLUMNS = ["qc_ncc", "qc_mi", "qc_mask_dice", "qc_brain_coverage", "qc_input_voxel_mm"]
FAILURE_COLUMNS = ["participant_id", "session_id", "path", "error"]


@dataclass(frozen=True)
class Summary:
    done: int
    skipped: int
    failed: int
    flagged: int
    failures: Path = Path("failures.csv")  # the failure list written (a shard's own)
    redone: tuple[str, ...] = ()  # a line per reason finished scans were done again (`redone_lines`)

    def __str__(self) -> str:
        """The counts; the failure list named beside the failed count, since the flagged scans are not in it (placed
        after "flagged by QC", it sent a reader there to look for them)."""
        failed = f"{self.failed} failed" + (f" (see {self.failures})" if self.failed else "")
        text = (f"preprocess: {self.done} processed, {self.skipped} skipped (already done), "
                f"{failed}, {self.flagged} flagged by QC")
        return "\n".join([text, *self.redone])


def redone_lines(ids: list[str], reasons: list[str]) -> tuple[str, ...]:
    """One line per reason scans finished before were processed again, with their count and first id: a rerun that
    redoes hours of scans after a changed option (or a new nilearn) must say so, not look like a broken resume."""
    by_reason: dict[str, list[str]] = {}
    for scan, reason in zip(ids, reasons):
        if reason:
            by_reason.setdefault(reason, []).append(scan)
    return tuple(f"  {len(scans)} of them redone, not skipped: {reason} (e.g. {scans[0]})"
                 for reason, scans in by_reason.items())


def shard_names(shard: tuple[int, int] | None) -> tuple[str, str]:
    """File names of the manifest and failure list of a whole run or of one shard."""
    if shard is None:
        return "manifest.csv", "failures.csv"
    tag = f"shard-{shard[0]}-of-{shard[1]}"
    return f"manifest-{tag}.csv", f"failures-{tag}.csv"


def shard_record_name(shard: tuple[int, int]) -> str:
    """The JSON a shard writes with its manifest: the settings and input table merge checks the shards share."""
    return f"shard-{shard[0]}-of-{shard[1]}.json"


RUN_LOCK = ".preprocess.lock"  # flock'ed by every run into the folder: exclusively by a whole run, shared by shards
PROBE_LOCK = ".preprocess-probe.lock"  # held while a shard tests other sharded runs' locks
# The shards' files: a whole run removes them all; their locks too, which no run can hold while it holds RUN_LOCK.
SHARD_FILE_PATTERNS = ("manifest-shard-*-of-*.csv", "failures-shard-*-of-*.csv", "shard-*-of-*.json",
                       ".preprocess-shard-*-of-*.lock", ".preprocess-sharded-run-*.lock", PROBE_LOCK)


@contextlib.contextmanager
def output_lock(out_dir: Path, shard: tuple[int, int] | None, sharded_run: str = "") -> Iterator[None]:
    """Hold `out_dir` for one run: two runs over the same scans would remove each other's temporary files (each scan
    clears its folder's `.tmp*` before registering) and replace each other's outputs. The shards of one run
    (`sharded_run`: what identifies it, see `_sharded_run_identity`) process disjoint scans and so may share the
    folder, but not with a whole run, nor a shard with its own double, nor with the shards of another run (another
    N, settings or input table), whose scans overlap theirs. A run leaves its lock files (removing one would let a
    later run lock a new file while another still holds the old). On Windows, without file locks, nothing is held."""
    if fcntl is None:
        yield
        return
    with contextlib.ExitStack() as held:
        locked = _hold(held, out_dir / RUN_LOCK, fcntl.LOCK_EX if shard is None else fcntl.LOCK_SH)
        if shard is not None and locked:
            _hold_refusing_other_sharded_runs(held, out_dir, sharded_run)
            _hold(held, out_dir / f".preprocess-shard-{shard[0]}-of-{shard[1]}.lock", fcntl.LOCK_EX)
        yield


def _hold_refusing_other_sharded_runs(held: contextlib.ExitStack, out_dir: Path, sharded_run: str) -> None:
    """Hold this sharded run's lock shared, then refuse if another sharded run's is held. Each shard locks its own
    before it looks at the others', so of two that start together at least one sees the other."""
    own = out_dir / f".preprocess-sharded-run-{sharded_run}.lock"
    _hold(held, own, fcntl.LOCK_SH)
    # one shard at a time tests the others' locks: two shards of one run testing the same file would see each other
    with open(out_dir / PROBE_LOCK, "a") as probing:
        fcntl.flock(probing, fcntl.LOCK_EX)
        for other in sorted(out_dir.glob(".preprocess-sharded-run-*.lock")):
            if other == own:
                continue
            with open(other, "a") as handle:  # closing it lets go of the test lock
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise InputError(f"{out_dir} is in use by the shards of another preprocess run (another --shard "
                                     f"N, other settings or another input table; lock {other}), whose scans overlap "
                                     "these: wait for them, or choose another --output") from None


def _hold(held: contextlib.ExitStack, lock: Path, mode: int) -> bool:
    """flock `lock` in `mode` until `held` closes, or refuse at once: a run waiting silently looks hung. Workers are
    spawned, not forked, so none inherits the lock and outlives the run holding it. Held alone, the file names this
    process meanwhile, for a refused run to say. False, after a warning, where the file system has no locks."""
    handle = held.enter_context(open(lock, "a"))
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = holder_named_in(lock)
        raise InputError(f"{lock.parent} is in use by another preprocess run (lock {lock}"
                         f"{f', held by {holder}' if holder else ''}); wait for it or choose another --output") from None
    except OSError as err:
        if not locks_unsupported(err):
            raise
        warn_unlocked(lock.parent, err, "preprocess runs (or a run and a merge)")
        return False
    if mode == fcntl.LOCK_EX:
        name_holder(handle)
    else:
        forget_holder(handle)  # a line a whole run killed outright left: a shard is one of several holders
    held.callback(forget_holder, handle)  # let go: before the file is closed
    return True


def files_removed_at_start(out_dir: Path, shard: tuple[int, int] | None) -> list[Path]:
    """What a run (or a `shard` of one) removes from `out_dir` before its scans. A manifest describes a finished run:
    from then on the scans it lists may be redone with other settings, so an interrupted rerun must not leave it
    behind for training to read (the merged one too, for a shard); a whole run removes the shards' files too, which a
    later merge would put back over its manifest."""
    names = [*shard_names(shard), *shard_names(None)]
    if shard is None:
        names += [found.name for pattern in SHARD_FILE_PATTERNS for found in out_dir.glob(pattern)]
    else:
        names.append(shard_record_name(shard))
    return [out_dir / name for name in dict.fromkeys(names)]


def run_batch(table: pd.DataFrame, out_dir: str | Path, params: Params, jobs: int = 1,
              shard: tuple[int, int] | None = None, min_ncc: float = 0.45, progress: bool = True) -> Summary:
    """Process every row of `table` (from inputs.read_inputs), or of its `shard` (I, N), and write the
    manifest and failures (a shard: its own, plus the record `merge_shards` checks)."""
    leave_if_starting_a_worker()  # before the folder lock, which the parent running this same call holds
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = _shard_settings(table, params, min_ncc)
    with output_lock(out_dir, shard, _sharded_run_identity(record, shard)):
        manifest_name, failures_name = shard_names(shard)
        if shard is None:
            remove_stale_temps(out_dir)  # a killed run's half-written manifest; no shard can be writing its own now
        for path in files_removed_at_start(out_dir, shard):
            refuse_a_folder_at(path)  # said with its fix, before any scan
            path.unlink(missing_ok=True)
        if shard is not None:
            table = select_shard(table, *shard)
        results = _missing_scans(table)
        arguments = {i: (row.resolved_path, out_dir, row.participant_id, row.session_id, params)
                     for i, row in zip(table.index, table.itertuples()) if i not in results}
        results.update(run_per_scan(_run_one, arguments, jobs, "preprocess", progress, failed_before=len(results)))
        manifest, failures = _tables(table, results)
        manifest = with_qc_flags(manifest, min_ncc)
        write_tables(manifest, failures, out_dir / manifest_name, out_dir / failures_name)
        if shard is not None:
            write_json(out_dir / shard_record_name(shard), record)
        counts = manifest["status"].value_counts() if len(manifest) else {}
        ids = [f"{row.participant_id}/{row.session_id}" for row in table.itertuples()]
        return Summary(done=int(counts.get("done", 0)), skipped=int(counts.get("skipped", 0)),
                       failed=len(failures), flagged=int(manifest["qc_flag"].sum()) if len(manifest) else 0,
                       failures=out_dir / failures_name,
                       redone=redone_lines(ids, [results[i].get("redone", "") for i in table.index]))


def _missing_scans(table: pd.DataFrame) -> dict[Hashable, dict]:
    """The failed results of the rows whose scan file is not there, found here: a worker process (seconds to start,
    minutes of queueing behind other scans) was started only to say so. The message is the one the scan's checks give."""
    return {i: {"status": "failed", "error": str(not_found(Path(path)))}
            for i, path in zip(table.index, table["resolved_path"]) if str(path).strip() and not Path(path).exists()}


def flagged_report(manifest_path: Path, limit: int = 20) -> str:
    """The scans `manifest_path` flags, one line each (id, reason, QC image; `limit` at most), and what to do
    about them: they stay in the manifest, so training reads them unless someone looks. A manifest without
    processed_path (a shard's edited, then merged) is refused in one line: the QC images lie beside those files."""
    manifest = _read_csv(manifest_path)
    flagged = manifest[manifest["qc_flag"] == "True"]
    if flagged.empty:
        return ""
    if "processed_path" not in manifest.columns:
        raise ValueError(f"{manifest_path}: QC flagged {len(flagged)} scan(s), but it has no processed_path column, "
                         "beside whose files their QC images lie; `elr-mri preprocess` writes one: rerun the run (or "
                         "the shards) that made it, finished scans are skipped")
    lines = [f"QC flagged {len(flagged)} scan(s) (qc_flag True in {manifest_path}; qc_reason says why):"]
    lines += [f"  {row.participant_id}/{row.session_id}: {row.qc_reason} - "
              f"{ScanOutputs.beside(row.processed_path).overlay}" for row in flagged.head(limit).itertuples()]
    if len(flagged) > limit:
        lines.append(f"  … and {len(flagged) - limit} more; see {manifest_path}")
    lines.append("They stay in the manifest, and training reads every row. What to do:")
    lines += [f"  {advice}" for advice in actions_for(flagged["qc_reason"].tolist())]
    lines.append("Drop a row from the input table (a BIDS folder: list its scans in a CSV), then run again (finished "
                 "scans are skipped): each run writes the manifest anew from its input, so a row deleted from "
                 "the manifest comes back.")
    return "\n".join(lines)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as temp:
        frame.to_csv(temp, index=False)


def write_tables(manifest: pd.DataFrame, failures: pd.DataFrame, manifest_path: Path, failures_path: Path) -> None:
    """The failure list first, the manifest last: the manifest marks a finished run, so a disk that fills between
    them leaves no manifest, not a new one beside a failure list missing (removed at the start) or left by an earlier
    run, which `import-cohort`'s note on the failed scans would have read as this run's."""
    write_csv(failures, failures_path)
    write_csv(manifest, manifest_path)


def failure_table(table: pd.DataFrame, results: Mapping[Hashable, dict], columns: list[str]) -> pd.DataFrame:
    """`columns` of the rows of `table` whose result failed, plus its error, in input order."""
    bad = [i for i in table.index if results[i]["status"] == "failed"]
    failures = table.loc[bad, columns].copy()
    failures["error"] = [results[i]["error"] for i in bad]
    return failures.reset_index(drop=True)


def _tables(table: pd.DataFrame, results: Mapping[Hashable, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the results into the manifest (processed scans) and the failure list, in input order."""
    carried = [c for c in table.columns if c != "resolved_path"]
    ok = [i for i in table.index if results[i]["status"] != "failed"]
    manifest = table.loc[ok, carried].copy()
    # the raw scan as an absolute path: the input's relative one was relative to the input, not to this manifest
    manifest["path"] = table.loc[ok, "resolved_path"]
    manifest["processed_path"] = [results[i]["processed_path"] for i in ok]
    manifest["input_sha256"] = [results[i]["input_sha256"] for i in ok]
    manifest["input_voxels_sha256"] = [results[i]["input_voxels_sha256"] for i in ok]
    for column in QC_COLUMNS:  # a scan finished before a column existed has none in its sidecar: empty
        manifest[column] = [results[i]["qc"].get(column, np.nan) for i in ok]
    manifest["status"] = [results[i]["status"] for i in ok]
    failures = failure_table(table.assign(path=table["resolved_path"]), results, FAILURE_COLUMNS[:-1])
    return manifest.reset_index(drop=True), failures


def _shard_settings(table: pd.DataFrame, params: Params, min_ncc: float) -> dict:
    """What every shard of one cohort must share: the parameters, the template files, the whole input table
    (before sharding; a table edited between array tasks would shard into overlaps and gaps) and the pipeline's
    version (array tasks that started apart may run other code)."""
    rows = table.to_csv(index=False).encode()
    return {"params": params.as_dict(), "template": template_file_digests(params.template, params.template_mask),
            "inputs_sha256": hashlib.sha256(rows).hexdigest(), "qc_min_ncc": min_ncc,
            "pipeline_version": PIPELINE_VERSION}


def _versions_alike(first: dict, other: dict) -> bool:
    """Whether two shards' pipeline versions wrote their outputs alike: the same version, or this one and an earlier
    one whose outputs of the shards' template it keeps (`versions_writing_alike`), as after an upgrade between array
    tasks that changed nothing for that template."""
    versions = {first.get("pipeline_version"), other.get("pipeline_version")}
    return len(versions) == 1 or versions <= {PIPELINE_VERSION, *versions_writing_alike(_recorded_space_code(first))}


def _recorded_space_code(record: dict) -> int | None:
    """The space code of the outputs of a shard, read from its --template (none: nilearn's MNI152); None where that
    file is gone or no longer the one the shard recorded (a path relative to another folder, an image replaced)."""
    template = (record.get("params") or {}).get("template")
    if template is not None and not (Path(template).is_file() and template_file_digests(template, None)["sha256"]
                                     == (record.get("template") or {}).get("sha256")):
        return None
    return space_code(template)


def _sharded_run_identity(record: dict, shard: tuple[int, int] | None) -> str:
    """A digest of what the shards of one run share (`_shard_settings`) and their number: shards that agree on it
    process disjoint scans. The QC threshold is left out: it changes no output, and the merge flags again."""
    if shard is None:
        return ""
    processing = {key: value for key, value in record.items() if key != "qc_min_ncc"}
    processing["params"] = Params.comparable(processing["params"])
    processing["template"] = template_identity(processing["template"])
    text = json.dumps({"shards": shard[1], **processing}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_csv(path: Path) -> pd.DataFrame:
    """A shard's table as written: every column text, so merging never retypes carried columns (0042, 1e3)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty (a shard cut short?); rerun that shard, then merge") from None


def _run_one(path: str, out_dir: Path, participant: str, session: str, params: Params) -> dict:
    """One scan in a worker: a bad scan fails alone, in its result, so it cannot stop the batch. A full, over-quota or
    read-only output disk is raised instead (`StorageError`), stopping the run: every scan after it would fail
    alike, each listed as if the scan were at fault."""
    outputs = ScanOutputs.under(out_dir, participant, session)
    try:
        result = process_scan(path, outputs, params)
    except ScanError as exc:
        return {"status": "failed", "error": str(exc)}
    except Exception as exc:  # ANTs/ITK errors: keep the type and the telling line, go on with the rest
        if isinstance(exc, OSError) and as_storage_error(exc) is not None:
            if exc.filename is None:  # where this scan's outputs were being written
                exc.filename = str(outputs.image.parent)
            raise storage_error_or_raise(exc) from None
        return {"status": "failed", "error": f"{path}: {type(exc).__name__}: {telling_line(str(exc))}"}
    return {"status": result["status"], "qc": result["qc"], "processed_path": str(outputs.image.resolve()),
            "input_sha256": result["input_sha256"],
            # none in a sidecar written before 2026-12-06: only its file's hash then finds the scan's twins
            "input_voxels_sha256": result.get("input_voxels_sha256", ""), "redone": result.get("redone", "")}


def telling_line(message: str) -> str:
    """The line of an error message that says what went wrong: ITK's first line is only the source file
    that raised it, the reason follows on an "ITK ERROR:" line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("ITK ERROR")), lines[0] if lines else "")


def merge_shards(out_dir: str | Path, min_ncc: float | None = None) -> Summary:
    """Join `manifest-shard-I-of-N.csv` (and failures) of all N shards into manifest.csv and
    failures.csv, re-flagging QC outliers over the whole cohort (at `min_ncc`, by default the shards'
    --qc-min-ncc). Refuses when a shard is missing or the shards ran on other settings or input tables."""
    out_dir = Path(out_dir)
    found = sorted(out_dir.glob("manifest-shard-*-of-*.csv"))
    if not found and (out_dir / "manifest.csv").is_file():  # "run the shards first" sent a user to redo a whole run
        raise FileNotFoundError(f"{out_dir}: no manifest-shard-I-of-N.csv files, and its manifest.csv is that of a run "
                                "without --shard: nothing to merge; read that manifest.csv")
    if not found:
        raise FileNotFoundError(f"{out_dir}: no manifest-shard-I-of-N.csv files; run the shards first")
    with output_lock(out_dir, None):  # as a whole run: no shard may still write what is read here, nor start
        return _merge(out_dir, found, min_ncc)


def _merge(out_dir: Path, found: list[Path], min_ncc: float | None) -> Summary:
    """`merge_shards` once it holds the folder."""
    counts = {name.stem.rsplit("-of-", 1)[1] for name in found}
    if len(counts) != 1:
        raise ValueError(f"{out_dir}: shard files of different N ({sorted(counts)}); keep one set of shards")
    count = int(counts.pop())
    names = [shard_names((i, count)) for i in range(count)]
    missing = [m for m, _ in names if not (out_dir / m).exists()]
    if missing:
        raise FileNotFoundError(f"{out_dir}: {len(missing)} of {count} shards missing ({', '.join(missing[:3])}"
                                f"{'...' if len(missing) > 3 else ''}); rerun those shards, then merge")
    recorded_ncc = _shared_settings(out_dir, count)
    min_ncc = recorded_ncc if min_ncc is None else min_ncc
    if min_ncc is None:
        raise ValueError(f"{out_dir}: the shards ran with different --qc-min-ncc; give the threshold to merge with "
                         "(preprocess-merge --qc-min-ncc X)")
    shards = {name: _read_csv(out_dir / name) for name, _ in names}
    manifest = pd.concat(shards.values(), ignore_index=True)
    failures = pd.concat([pd.DataFrame(columns=FAILURE_COLUMNS)]
                         + [_read_csv(out_dir / f) for _, f in names if (out_dir / f).exists()], ignore_index=True)
    by_scan = ["participant_id", "session_id"]  # a single run's order: its input table is sorted so
    manifest = with_qc_flags(manifest.sort_values(by_scan, kind="stable"), min_ncc)
    _warn_of_shards_without_processed_path(out_dir, shards, bool(manifest["qc_flag"].any()))
    failures = failures.sort_values(by_scan, kind="stable")
    write_tables(manifest, failures, out_dir / "manifest.csv", out_dir / "failures.csv")
    statuses = manifest["status"].value_counts()
    return Summary(done=int(statuses.get("done", 0)), skipped=int(statuses.get("skipped", 0)),
                   failed=len(failures), flagged=int(manifest["qc_flag"].sum()), failures=out_dir / "failures.csv")


def _warn_of_shards_without_processed_path(out_dir: Path, shards: dict[str, pd.DataFrame], flagged: bool) -> None:
    """Say which shard manifests lack processed_path and what the merged one then does: every shard `elr-mri
    preprocess` writes has the column (an all-failed one too), so such a shard was made or edited by hand, and
    training on the merge went on from the raw scans with a warning far from this cause. A warning, not a refusal:
    the merge loses nothing, and the user may know that those paths are preprocessed already. Not where no shard has
    the column and a scan is `flagged`: `flagged_report` then refuses the merge in its own line, with the same fix."""
    lacking = [name for name, shard in shards.items() if "processed_path" not in shard.columns]
    if not lacking or (flagged and len(lacking) == len(shards)):
        return
    follows = ("manifest.csv has none either, so training on it reads each scan's `path` as it is (the raw scan)"
               if len(lacking) == len(shards) else "their scans' processed_path is blank in manifest.csv, and "
               "training on it refuses those scans")
    print(f"warning: {out_dir}: {len(lacking)} of {len(shards)} shard manifest(s) have no processed_path column "
          f"(first: {lacking[0]}; `elr-mri preprocess` writes it in every shard): {follows}; rerun such shards "
          "(finished scans are skipped), then merge", file=sys.stderr)


def _shared_settings(out_dir: Path, count: int) -> float | None:
    """Refuse shards that ran on other settings or input tables; return their common --qc-min-ncc (None: differs)."""
    records, unrecorded = [], []
    for index in range(count):
        try:
            records.append(json.loads((out_dir / shard_record_name((index, count))).read_text()))
        except (OSError, ValueError):
            unrecorded.append(f"{index}/{count}")
    if unrecorded:  # shards of an interrupted run, or run before shards recorded their settings
        raise ValueError(f"{out_dir}: shard(s) {', '.join(unrecorded)} have no readable shard-I-of-N.json (the "
                         "record of a shard's settings); rerun them (finished scans are skipped), then merge")
    first = records[0]
    for index, record in enumerate(records[1:], start=1):
        if record.get("inputs_sha256") != first.get("inputs_sha256"):
            raise ValueError(f"{out_dir}: shards 0 and {index} of {count} read different input tables (edited "
                             "between them?); rerun every shard on one table, then merge")
        if not _versions_alike(first, record):
            raise ValueError(f"{out_dir}: shards 0 and {index} of {count} ran different pipeline versions "
                             f"({first.get('pipeline_version')} vs {record.get('pipeline_version')}; none: before "
                             "versions were recorded); rerun the older shards with this code, then merge")
        templates = compared_template_digests(first.get("template") or {}, record.get("template") or {})
        for section, ours, theirs, comparable in (
                ("params", first.get("params") or {}, record.get("params") or {}, Params.comparable),
                ("template", *templates, dict)):
            changed = sorted(key for key in ours.keys() | theirs.keys()
                             if comparable(ours).get(key) != comparable(theirs).get(key))
            if changed:
                key = changed[0]  # as recorded, or as counted where a shard from before recorded none
                first_value, other_value = (side.get(key, comparable(side).get(key)) for side in (ours, theirs))
                raise ValueError(f"{out_dir}: shards 0 and {index} of {count} ran with different {section} "
                                 f"({key}: {first_value!r} vs {other_value!r}); rerun the shards with one "
                                 "command line, then merge")
    thresholds = {record.get("qc_min_ncc") for record in records}
    return thresholds.pop() if len(thresholds) == 1 else None
