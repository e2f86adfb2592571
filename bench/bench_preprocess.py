"""Benchmark of preprocess/: the default (`fast`) profile against a reference pipeline, same run.

Reference: ANTsPy's default N4 + `antsRegistrationSyNQuick[a]` to the 1 mm template (Clinica
t1-linear's stages). Input: the real Colin27 head (../shared/data/mri, or --colin PATH) moved by known head poses
and bias fields, at 1 mm. Part 1 times both profiles in this process, alternating their order scan
by scan so that machine load drifts hit both, and compares their NCC to the template. Part 2 runs
the default as a batch (spawned workers, ITK threads = cores // jobs) at 1 mm and 1.5 mm with 1 and
2 workers (1 alone for --scans 1); its s/scan includes worker start and template loading. Writes
bench/results/preprocess.md.

    .venv/bin/python bench/bench_preprocess.py [--scans 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
COLIN = ROOT / ".." / "shared" / "data" / "mri" / "colin27_ch2_t1.nii.gz"
sys.path.insert(0, str(ROOT))
from preprocess.batch import run_batch  # noqa: E402
from preprocess.cores import usable_cores  # noqa: E402
from preprocess.inputs import read_inputs  # noqa: E402
from preprocess.pipeline import Params, ScanOutputs, process_scan  # noqa: E402
from preprocess.steps import to_nifti  # noqa: E402
from preprocess.synthetic import move_and_bias, pose_transform  # noqa: E402
from preprocess.template import load_template  # noqa: E402
from preprocess.user_errors import nonempty_path, output_file  # noqa: E402
from results_file import busy_warning, command_line, write_report  # noqa: E402


def make_scans(folder: Path, count: int, head: Path) -> Path:
    """`count` moved and biased copies of Colin27 (`head`; poses differ), listed in a CSV."""
    import ants

    colin = ants.image_read(str(head))
    rows = ["participant_id,session_id,path"]
    for i in range(count):
        sign = -1 if i % 2 else 1
        pose = pose_transform(degrees=(9.0 * sign, -7.0 + 2 * i, 5.0), shift_mm=(7.0, -5.0 * sign, 6.0 - i))
        path = folder / f"colin_pose{i}.nii.gz"
        to_nifti(move_and_bias(colin, pose, strength=1.0 - 0.2 * i)).to_filename(path)
        rows.append(f"sub-{i:02d},ses-01,{path}")
    (folder / "scans.csv").write_text("\n".join(rows) + "\n")
    return folder / "scans.csv"


def compare_profiles(table: pd.DataFrame, work: Path) -> dict:
    """Seconds and NCC per scan of both profiles at 1 mm, in this process, templates preloaded."""
    params = {name: Params(resolution=1.0, profile=name) for name in ("reference", "fast")}
    for p in params.values():
        load_template(*p.template_key())
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in params}  # (seconds, NCC) per scan
    for i, row in enumerate(table.itertuples()):
        for name in (("reference", "fast") if i % 2 == 0 else ("fast", "reference")):
            started = time.perf_counter()
            result = process_scan(row.resolved_path, ScanOutputs.under(work / name, row.participant_id, "ses-01"),
                                  params[name])
            runs[name].append((time.perf_counter() - started, result["qc"]["qc_ncc"]))
            print(f"  {name:9s} {row.participant_id}: {runs[name][-1][0]:.1f} s, NCC {runs[name][-1][1]:.4f}",
                  flush=True)
    return runs


def batch_workers(scans: int) -> tuple[int, ...]:
    """The worker counts the batch is timed with: 2 only where there are scans to share, as one scan runs in one
    worker whatever the pool (on half the cores' ITK threads), which a "2 workers" figure would misreport."""
    return (1, 2) if scans > 1 else (1,)


def throughput(table: pd.DataFrame, work: Path) -> dict:
    """Wall-clock s/scan of the default profile as a batch, per (resolution, jobs)."""
    out = {}
    for resolution in (1.0, 1.5):
        for jobs in batch_workers(len(table)):
            started = time.perf_counter()
            summary = run_batch(table, work / f"batch-{resolution}-{jobs}", Params(resolution=resolution),
                                jobs=jobs, progress=False)
            if summary.failed:
                sys.exit(f"bench_preprocess.py: error: {resolution} mm, {jobs} worker(s): {summary}")
            out[(resolution, jobs)] = (time.perf_counter() - started) / len(table)
            print(f"  {resolution} mm, {jobs} worker(s): {out[(resolution, jobs)]:.1f} s/scan", flush=True)
    return out


def report(runs: dict, rates: dict, scans: int, loads: tuple) -> str:
    mean = statistics.mean
    ref_s, fast_s = (mean([s for s, _ in runs[n]]) for n in ("reference", "fast"))
    ref_ncc, fast_ncc = (mean([c for _, c in runs[n]]) for n in ("reference", "fast"))
    lines = [
        "# preprocess benchmark", "",
        f"Machine: {platform.machine()}, {usable_cores()} cores, Python {platform.python_version()}; "
        f"load average {loads[0]:.1f} at start, {loads[1]:.1f} at end (other work shares the machine, "
        f"so compare ratios taken in the same run, not absolute times across runs).{busy_warning(loads[0])}",
        f"Input: Colin27 (real head, 1 mm) moved by {scans} known poses and bias fields.", "",
        "## Default (fast) against the reference pipeline, 1 mm output, same run, 1 process", "",
        "| pipeline | s/scan | NCC to template (brain mask) |", "|---|---|---|",
        f"| reference: ANTsPy default N4 + antsRegistrationSyNQuick[a], 1 mm template | {ref_s:.1f} | {ref_ncc:.4f} |",
        f"| default `fast`: N4 shrink 6 in head mask + same stages, 2 mm template | {fast_s:.1f} | {fast_ncc:.4f} |",
        "",
        f"Time ratio fast/reference: **{fast_s / ref_s:.2f}** (target <= 0.6); "
        f"NCC difference fast - reference: **{fast_ncc - ref_ncc:+.4f}** (target >= -0.005).", "",
        "## Default profile as a batch (wall clock / scans, includes worker start and template loading)", "",
        "| output grid | 1 worker | 2 workers |", "|---|---|---|",
        *(f"| {r} mm | {_rate(rates, r, 1)} | {_rate(rates, r, 2)} |" for r in (1.0, 1.5)),
        *([] if scans > 1 else ["", "2 workers: not run, one scan cannot be shared; pass --scans 2 or more."]),
        "", f"Reproduce: `{command_line()}`", "",
    ]
    return "\n".join(lines)


def _rate(rates: dict, resolution: float, jobs: int) -> str:
    """A table cell: the s/scan of (resolution, jobs), or n/a where it was not run (`batch_workers`)."""
    return f"{rates[(resolution, jobs)]:.1f} s/scan" if (resolution, jobs) in rates else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=2, help="moved copies of Colin27 per measurement")
    parser.add_argument("--out", type=output_file, default=ROOT / "bench" / "results" / "preprocess.md")
    parser.add_argument("--colin", type=nonempty_path, default=COLIN.resolve(),
                        help="Colin27, the head the benchmark moves (default: ../shared/data/mri/colin27_ch2_t1.nii.gz "
                             "beside the project)")
    args = parser.parse_args()
    if args.scans < 1:
        parser.error(f"--scans {args.scans}: must be at least 1")
    if not args.colin.is_file():  # an error, not a skip: a run that measured nothing must not pass for one that did
        parser.error(f"no Colin27 at {args.colin}: the benchmark moves copies of it; pass --colin PATH (not in the "
                     "repository: ANTsPy's ants.get_ants_data('ch2') downloads it)")
    # here, not at import: a test importing this module set ITK's thread count for every later test of its session
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(usable_cores()))  # before ANTs is imported
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-preproc-") as tmp:
        work = Path(tmp)
        table = read_inputs(make_scans(work, args.scans, args.colin))
        print("same-run comparison at 1 mm:", flush=True)
        runs = compare_profiles(table, work / "compare")
        print("batch throughput of the default profile:", flush=True)
        rates = throughput(table, work)
    loads.append(os.getloadavg()[0])
    text = report(runs, rates, args.scans, tuple(loads))
    print(text)
    write_report(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
