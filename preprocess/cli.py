"""`elr-mri preprocess` and `elr-mri preprocess-merge`: raw T1 scans to template space, in batch.

Exit codes: 0 all scans done or skipped; 1 some scans failed (listed in failures.csv), or the merge cannot join
the shards (none, some missing, or run with other settings or input tables); 2 the command line or the input table
is unusable; 130 Ctrl-C; 143 SIGTERM.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Callable

from . import steps
from .batch import Summary, files_removed_at_start, flagged_report, merge_shards, run_batch, shard_names
from .arguments import parse_naming_unknown_options
from .inputs import InputError, parse_shard, read_inputs, registration_seed
from .memory import available_memory, gigabytes
from .pipeline import Params
from .progress import NO_PROGRESS_HELP
from .signals import sigterm_as_ctrl_c, stopped_exit_code
from .template import check_template_files
from .user_errors import (USER_ERRORS, as_path_name_error, file_above, nonempty_text, report_user_error,
                          storage_error_or_raise)

__all__ = ["main", "merge_main", "build_parser", "build_merge_parser", "note_memory_for_jobs"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elr-mri preprocess",
        description="N4 + registration of T1 scans to a template grid, with QC, resumable and shardable.")
    parser.add_argument("--input", required=True, type=nonempty_text,
                        help="CSV (participant_id, session_id, path, ...) or BIDS folder")
    parser.add_argument("--output", required=True, type=nonempty_text,
                        help="output folder (manifest.csv, failures.csv, <participant_id>/<session_id>/)")
    parser.add_argument("--template", default=None, type=nonempty_text,
                        help="template T1 NIfTI (default: nilearn's MNI152 2009)")
    parser.add_argument("--template-mask", default=None, type=nonempty_text,
                        help="brain mask of --template (default: its voxels above its mean intensity, cleaned "
                             "up morphologically: ANTs' get_mask)")
    parser.add_argument("--resolution", type=float, default=1.5, help="output voxel size in mm (default 1.5)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="output grid in voxels, centred on the template (default: 169 208 179 at 1 mm, "
                             "121 145 121 at 1.5 mm, else the template's field of view)")
    parser.add_argument("--transform", choices=sorted(steps.TRANSFORMS), default="affine",
                        help="affine (default): rigid then affine (antsRegistrationSyNQuick[a]); syn: + deformable")
    parser.add_argument("--profile", choices=sorted(steps.PROFILES), default="fast",
                        help="fast (default) or reference (ANTsPy default N4, registration to the 1 mm template)")
    parser.add_argument("--normalise", choices=steps.NORMALISATIONS, default="minmax",
                        help="minmax (default): clip to 0.5-99.5th percentile then [0, 1]; zscore: in the brain mask; "
                             "none: the N4-corrected intensities as they are")
    parser.add_argument("--brain-mask", action="store_true", help="zero voxels outside the template brain mask")
    parser.add_argument("--dtype", choices=steps.DTYPES, default="float32",
                        help="float32 (default), or int16: scaled integers (NIfTI has no float16), half the disk")
    parser.add_argument("--deterministic", action="store_true",
                        help="reproducible registration (ANTs Repro stages, fixed seed, 1 ITK thread)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the registration's random point sampling, recorded in each sidecar (default: "
                             f"an exported ANTS_RANDOM_SEED, else {steps.REGISTRATION_SEED})")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes (default 1); ITK threads = cores // jobs, at most an exported "
                             "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS (1 with --deterministic)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="process shard I of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/8; then run the merge")
    parser.add_argument("--qc-min-ncc", type=float, default=0.45, help="flag scans whose NCC is below this (default 0.45)")
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    return parser


def main(argv: list[str] | None = None, say_how_to_go_on: bool = True) -> int:
    """Preprocess a batch; see the module docstring for the exit codes. `say_how_to_go_on`: False for a caller that
    says itself how to go on after Ctrl-C or SIGTERM (mri_demo.py, rerun as a whole), reading the exit code alone."""
    parser = build_parser()
    args = parse_naming_unknown_options(parser, sys.argv[1:] if argv is None else argv)

    def preprocess() -> int:
        if args.jobs < 1:
            raise InputError(f"--jobs {args.jobs}: need at least 1 worker")
        _require_output_folder(Path(args.output))
        require_ncc_threshold(args.qc_min_ncc)
        params = Params(template=args.template, template_mask=args.template_mask, resolution=args.resolution,
                        shape=tuple(args.shape) if args.shape else None, transform=args.transform,
                        profile=args.profile, normalise=args.normalise, brain_mask=args.brain_mask,
                        dtype=args.dtype, deterministic=args.deterministic,
                        seed=registration_seed(args.seed, os.environ.get("ANTS_RANDOM_SEED")))
        check_template_files(params.template, params.template_mask)
        shard = parse_shard(args.shard) if args.shard else None
        _require_input_kept(Path(args.input), Path(args.output), shard)
        table = read_inputs(args.input)
        note_memory_for_jobs(min(args.jobs, len(table)), available_memory())
        summary = run_batch(table, args.output, params, jobs=args.jobs, shard=shard, min_ncc=args.qc_min_ncc,
                            progress=not args.no_progress)
        print_summary(summary, Path(args.output) / shard_names(shard)[0], shard)
        return 1 if summary.failed else 0

    return _reporting_user_errors("elr-mri preprocess", preprocess, "finished scans are skipped",
                                  say_how_to_go_on=say_how_to_go_on)


# one job's peak resident memory at 1 mm, measured on Colin27: 1.34 GB padded to a scanner's 256×256×176 field of
# view (fast profile; 1.12 GB with reference), 1.0 GB as it ships (181×217×181); raw scans are the larger ones
JOB_PEAK_BYTES = 1.4e9


def note_memory_for_jobs(jobs: int, available: int | None) -> None:
    """Say when `jobs` workers at their peak outgrow the memory available: the OOM killer then ends workers, and the
    scans they held run again one at a time, the run going on at a fraction of its speed without saying why."""
    if available is None or jobs * JOB_PEAK_BYTES <= available:
        return
    print(f"note: --jobs {jobs}: a job peaks at about {gigabytes(JOB_PEAK_BYTES)} (measured on a 256×256×176 1 mm head), so "
          f"{jobs} need about {gigabytes(jobs * JOB_PEAK_BYTES)} but {gigabytes(available)} of memory is available; "
          f"workers the OOM killer ends have their scans run again one at a time; --jobs "
          f"{max(1, int(available // JOB_PEAK_BYTES))} fits", file=sys.stderr)


def _reporting_user_errors(command: str, work: Callable[[], int], on_rerun: str, status: int = 2,
                           say_how_to_go_on: bool = True) -> int:
    """`work()`'s exit status, or a user's mistake as one line (exit `status`), a full or read-only disk
    likewise, and Ctrl-C or SIGTERM as what running the command again does (`on_rerun`), unless the caller says how
    to go on itself (`say_how_to_go_on` False: the exit code alone)."""
    try:
        with sigterm_as_ctrl_c():
            return work()
    except (InputError, *USER_ERRORS) as exc:
        return report_user_error(command, exc, status, on_rerun)
    except OSError as exc:  # a full or read-only disk under --output, a path too long
        return report_user_error(command, as_path_name_error(exc) or storage_error_or_raise(exc), status, on_rerun)
    except KeyboardInterrupt as stop:  # Terminated too: SIGTERM
        return stopped_exit_code(stop, command, on_rerun, say_how_to_go_on)


def _require_output_folder(output: Path) -> None:
    """An --output that is a file, or a link whose folder is gone (a purged scratch space), named as such: the
    folder creation would say "File exists". So is one whose path ANTs cannot take: every scan failed in its
    registration with only "error code 1"."""
    unsafe = steps.ants_unsafe(str(output))
    if unsafe:
        raise InputError(f"--output {output}: holds {unsafe}, which ANTs cannot take in the path of the "
                         "folder it writes each registration's transforms into (its command line splits file names "
                         "there); give a folder whose path has none")
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output}: is a file; give a folder for the processed scans")
    under_file = file_above(output)
    if under_file is not None:
        raise InputError(f"--output {output}: {under_file} is a file, so no folder can be made in it; give another "
                         "--output")
    if output.is_symlink() and not output.exists():
        raise InputError(f"--output {output}: is a link to {os.readlink(output)}, which does not exist; create "
                         "that folder, or give another --output")


def _require_input_kept(source: Path, output: Path, shard: tuple[int, int] | None) -> None:
    """An input table that is one of the files a run removes at its start (a manifest.csv of an earlier run, reused
    as the scan list into the same folder) would be lost: an interrupted run leaves nothing to run again from."""
    if source.is_file() and any(source.resolve() == path.resolve() for path in files_removed_at_start(output, shard)
                                if path.exists()):
        copy = shlex.join(["cp", str(source), str(output.parent / "scans.csv")])
        raise InputError(f"--input {source}: is a file this run removes from --output {output} before it redoes the "
                         f"scans; copy it elsewhere first (e.g. {copy}) and pass the copy")


def print_summary(summary: Summary, manifest: Path, shard: tuple[int, int] | None = None) -> None:
    """The run's counts, then the scans QC flagged by name (a count alone leaves them in the training data unseen),
    then the manifest written: the file the next step reads, or for a shard, the merge that makes it."""
    print(summary)
    if summary.flagged:
        print(flagged_report(manifest))
    if shard is None:
        print(f"manifest: {manifest}")
    else:
        print(f"manifest of shard {shard[0]}/{shard[1]}: {manifest}; once every shard has run, their manifest.csv: "
              f"elr-mri preprocess-merge --output {shlex.quote(str(manifest.parent))}")


def require_ncc_threshold(value: float) -> None:
    """A correlation threshold outside (-1, 1) flags every scan or none: surely a typo (e.g. 45 for 0.45)."""
    if not -1 < value < 1:
        raise InputError(f"--qc-min-ncc {value}: an NCC threshold lies between -1 and 1; the default is 0.45")


def build_merge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elr-mri preprocess-merge",
                                     description="Join the manifests of all --shard I/N runs of one output folder.")
    parser.add_argument("--output", required=True, type=nonempty_text, help="the output folder the shards wrote to")
    parser.add_argument("--qc-min-ncc", type=float, default=None,
                        help="flag scans whose NCC is below this (default: the shards' --qc-min-ncc)")
    return parser


def merge_main(argv: list[str] | None = None) -> int:
    """Join the shards' manifests in an output folder into manifest.csv and failures.csv."""
    args = parse_naming_unknown_options(build_merge_parser(), sys.argv[1:] if argv is None else argv)

    try:
        if args.qc_min_ncc is not None:
            require_ncc_threshold(args.qc_min_ncc)
        if not Path(args.output).is_dir():
            what = "is a file" if Path(args.output).exists() else "no such folder"
            raise InputError(f"--output {args.output}: {what}; pass the output folder the shards wrote to")
    except InputError as exc:  # the command line: 2, where the merge's own refusals are 1
        return report_user_error("elr-mri preprocess-merge", exc)

    def merge() -> int:
        summary = merge_shards(args.output, args.qc_min_ncc)
        print_summary(summary, Path(args.output) / "manifest.csv")
        return 1 if summary.failed else 0

    return _reporting_user_errors("elr-mri preprocess-merge", merge, "it merges again from the shards' files",
                                  status=1)
