"""`elr-mri import-cohort` and `elr-mri volumes`: the tables a cohort's training and baselines read."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elr_mri.data.clinical_join import ImportResult


def import_cohort_command(args: argparse.Namespace) -> int:
    """`elr-mri import-cohort`: join diagnoses and ages to preprocessed scans, writing the manifest and its drops."""
    from elr_mri.data.import_tables import preprocess_failures
    from elr_mri.atomic_files import atomic_write_text

    result = _imported_cohort(args)
    note = preprocess_failures(args.scans)
    if note:
        print(note, file=sys.stderr)
    _warn_about_import(result, args.mapping)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    dropped = _dropped_csv(args.out)
    atomic_write_text(result.dropped.to_csv(index=False), dropped)
    if result.manifest.empty:
        stale = args.out.is_file()  # an earlier import's, beside a list of drops that is not its own
        args.out.unlink(missing_ok=True)
        raise ValueError(f"no scan of {args.scans} could be imported ({result.summary()}); the reasons "
                         f"are in {dropped}, no manifest was written{' (the earlier one removed)' if stale else ''}")
    atomic_write_text(result.manifest.to_csv(index=False), args.out)
    print(f"{args.out}: {result.summary()}" + (f" (reasons in {dropped})" if len(result.dropped) else ""))
    return 0


def _dropped_csv(out: Path) -> Path:
    """Where the scans an import leaves out are listed, with why: beside its manifest."""
    return out.with_name(f"{out.stem}_dropped.csv")


def _imported_cohort(args: argparse.Namespace) -> ImportResult:
    """The import --adnimerge, or --table through --mapping, asks for; an --out that is a folder, an input or in a
    folder that cannot be written, or an option of the other kind of import, is refused first."""
    from elr_mri.data.import_mapping import load_mapping
    from elr_mri.data.adni_import import import_adnimerge
    from elr_mri.data.mapped_import import import_mapped_table
    from preprocess.sidecar import require_writable

    if args.out.is_dir():
        raise IsADirectoryError(f"--out {args.out} is a folder; pass the manifest CSV to write, e.g. "
                                f"{args.out / 'manifest.csv'}")
    require_writable(args.out.parent, f"{args.out.name} and {_dropped_csv(args.out).name}",
                     "pass --out a CSV in a folder you can write")
    inputs = [path for path in (args.scans, args.adnimerge, args.table, args.mapping) if path is not None]
    if any(args.out.exists() and args.out.samefile(path) for path in inputs if Path(path).exists()):
        raise ValueError(f"--out {args.out} is one of the input files; name a new file for the manifest")
    if args.adnimerge is not None:
        if args.mapping is not None:
            raise ValueError(f"--mapping {args.mapping} applies to --table; ADNIMERGE's columns are known, drop it")
        return import_adnimerge(args.adnimerge, args.scans, use_baseline_diagnosis=args.baseline_diagnosis)
    if args.mapping is None:
        raise ValueError("--table needs --mapping (a YAML like configs/nacc/nacc_mapping.yaml)")
    if args.baseline_diagnosis:
        raise ValueError("--baseline-diagnosis applies to --adnimerge (its DX_bl); for --table, name the diagnosis "
                         f"column wanted under columns.diagnosis in {args.mapping}")
    return import_mapped_table(args.table, args.scans, load_mapping(args.mapping))


def _warn_about_import(result: ImportResult, mapping: Path | None) -> None:
    """Warn of imported rows that training would refuse: a participant spelled two ways, an empty processed_path, a
    processed file under two ids, an age that is no age; of --scans' own values and cohort written over; and of sex
    codes `mapping` does not list, which the manifest holds as unknown."""
    _warn_of_rows(result.two_spellings, "participant(s) are spelled two ways in --scans", "training refuses a "
                  "manifest that splits a person: write one ID per person in --scans and import again")
    _warn_of_rows(result.unprocessed, "imported scan(s) have an empty processed_path", "training refuses them: "
                  "preprocess them (or drop their rows) in --scans and import again")
    _warn_of_rows(result.one_file_twice, "processed file(s) are named by scans under two ids in --scans", "training "
                  "refuses one scan split as two: keep one row per file in --scans and import again")
    for replaced in result.replaced:
        print(f"warning: --scans' own {replaced}; the table's is written: where it is wrong, correct it and import "
              "again", file=sys.stderr)
    if result.cohort_written_over:
        keep = (f"to keep --scans' own, delete cohort: from {mapping} or" if mapping is not None
                else "an ADNIMERGE import names every scan's cohort ADNI: to keep --scans' own,")
        print(f"warning: import-cohort writes cohort {result.cohort_written_over}; {keep} give them a column of "
              "another name in --scans, which is kept as it is", file=sys.stderr)
    _warn_of_rows(result.age_problems, "imported scan(s) have an age that is not years at the scan, written as no age",
                  "a model using age refuses scans without one: correct them in the clinical table and import again")
    if result.unlisted_sex_codes:
        print(f"warning: {mapping}'s values.sex does not list {', '.join(result.unlisted_sex_codes)}, written as "
              "unknown sex: list those codes under values.sex (e.g. Male: M) and import again", file=sys.stderr)


def _warn_of_rows(rows: list[str], what: str, fix: str) -> None:
    """One warning line for the imported `rows` that share a problem: how many, the first, and the fix."""
    if rows:
        print(f"warning: {len(rows)} {what} (first: {rows[0]}); {fix}", file=sys.stderr)


def volumes_command(args: argparse.Namespace) -> int:
    """`elr-mri volumes`: regional volumes of each scan; exit 1 where a scan failed (the CSV says why)."""
    from elr_mri.volumes.measure import VolumeParams, measure_manifest
    from elr_mri.volumes.recovery import read_truth, recovery_table

    if args.jobs < 1 or not 0 < args.registration_mm < math.inf:  # nan failed every scan in ITK instead
        raise ValueError(f"--jobs must be at least 1 and --registration-mm a positive number of mm (got --jobs "
                         f"{args.jobs}, --registration-mm {args.registration_mm})")
    truth = read_truth(args.truth) if args.truth is not None else None  # a wrong file: known before measuring
    params = VolumeParams(args.registration_mm, deterministic=args.deterministic)
    out, volumes, failures, cached = measure_manifest(args.manifest, args.out, params, args.jobs, not args.no_progress)
    if len(volumes):
        how = f" ({len(volumes) - cached} now, {cached} read from the cache of an earlier run)" if cached else ""
        print(f"volumes: {len(volumes)} scans measured{how}, {len(failures)} failed -> {out}")
    else:
        kept = f"; {out} keeps what it held" if out.exists() else ""
        print(f"volumes: no scan measured, {len(failures)} failed, nothing written{kept}")
    if len(failures):
        print(f"  failed scans and why: {out.with_name(out.stem + '_failures.csv')}")
    if truth is not None and len(volumes):
        print(recovery_table(volumes, truth).round(3).to_string(index=False))
    return 1 if len(failures) else 0
