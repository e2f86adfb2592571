"""Seeds of one config trained one after the other against side by side (`reproduce_paper_table.py --jobs`).

Both ways run each seed as its own `elr-mri train` process (`scripts/parallel_runs.py`): first the seeds in turn,
each with the whole machine, then all at once, sharing it (on a CPU each gets its share of the cores; on one GPU
they share the GPU). The figure that matters is the steady epoch rate, which the first epoch's start-up (decoding,
torch.compile, whose cache the later runs find warm) does not enter: the median seconds of epochs 2.. of each run, and
the ratio seeds × (median alone) / (median side by side), the throughput gained by running side by side. Wall
times are printed too. Writes bench/results/side_by_side.md (or --out).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from results_file import command_line, load_line, repository_path, write_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from parallel_runs import PlannedRun, train_in_parallel  # noqa: E402  (scripts/ is not a package)

from elr_mri.config import ConfigError, load_config  # noqa: E402
from preprocess.user_errors import nonempty_path, output_file  # noqa: E402


def train_seeds(config: Path, overrides: list[str], seeds: int, jobs: int, folder: Path,
                keep_logs: Path | None) -> tuple[float, list[float]]:
    """Wall seconds for training `seeds` seeds `jobs` at a time, and each run's median epoch seconds (epochs 2..).
    A failed run's log is copied into `keep_logs` first, if given: `folder` is a temporary one."""
    runs = [PlannedRun(f"{folder.name} seed {seed}", config, (*overrides, f"seed={seed}", f"data.noise.seed={seed}"),
                       folder / f"seed{seed}") for seed in range(seeds)]
    started = time.perf_counter()
    for group in [runs] if jobs > 1 else [[run] for run in runs]:  # in turn: stop at the first run that fails
        failed = {run: outcome for run, outcome in train_in_parallel(group, jobs).items() if not isinstance(outcome, dict)}
        if failed:
            copies = keep_failed_logs(list(failed), keep_logs) if keep_logs is not None else {}
            sys.exit("bench_side_by_side: error: "
                     + "; ".join(failure(run, why, copies.get(run)) for run, why in failed.items()))
    wall = time.perf_counter() - started
    medians = [statistics.median(pd.read_csv(run.run_dir / "metrics.csv")["epoch_seconds"].iloc[1:]) for run in runs]
    return wall, medians


def keep_failed_logs(runs: list[PlannedRun], folder: Path) -> dict[PlannedRun, Path]:
    """Copy the failed `runs`' logs into `folder` (side_by_side_in_turn_seed0.log, …: a few files, only the failed
    ones, as a device call brings back few) before their temporary folder goes; each run's copy."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = {run: folder / f"side_by_side_{run.run_dir.parent.name}_{run.log.name}" for run in runs}
    for run, copy in copies.items():
        shutil.copyfile(run.log, copy)
    return copies


def failure(run: PlannedRun, why: str, copy: Path | None) -> str:
    """A failed run's line with where its log is now: the `copy` --keep-logs made, or gone with the temporary folder
    (the line named the log in that folder, deleted by the time it was read)."""
    if copy is not None:
        return f"{run.name}: {why.replace(str(run.log), str(copy))}"
    return f"{run.name}: " + why.replace(f"see {run.log}", "its log went with the temporary run folder: "
                                                           "pass --keep-logs DIR to keep a failed run's log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=nonempty_path, default=ROOT / "configs/cifar10n/cpu_subset.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (e.g. train.epochs=6)")
    parser.add_argument("--seeds", type=int, default=2, help="runs, and how many run side by side")
    parser.add_argument("--out", type=output_file, default=ROOT / "bench/results/side_by_side.md")
    parser.add_argument("--keep-logs", type=nonempty_path, metavar="DIR",
                        help="copy a failed run's log here (the runs' folders are temporary)")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2: one run has nothing to run beside")
    try:
        epochs = load_config(args.config, args.overrides).train.epochs
    except ConfigError as error:
        parser.error(str(error))
    quiet = ["train.tensorboard=false", *args.overrides]
    if epochs < 2:
        parser.error("train.epochs must be at least 2: the first epoch (compilation, warm-up) is not timed")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        alone = train_seeds(args.config, quiet, args.seeds, 1, Path(scratch) / "in_turn", args.keep_logs)
        write_report(args.out, _report(args, load_start, alone, None))  # kept should the side-by-side runs be cut
        together = train_seeds(args.config, quiet, args.seeds, args.seeds, Path(scratch) / "together", args.keep_logs)
    text = _report(args, load_start, alone, together)
    print(text)
    write_report(args.out, text)


def _report(args: argparse.Namespace, load_start: float, alone: tuple[float, list[float]],
            together: tuple[float, list[float]] | None) -> str:
    """The results file; `together` None: the runs one after the other alone, the side-by-side ones still to come."""
    alone_wall, alone_epochs = alone
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    text = f"""# {args.seeds} seeds one after the other against side by side

Command: `{command_line()}`

Machine: {platform.machine()}, {device}, torch {torch.__version__}. Config `{repository_path(args.config)}`{', with ' + ' '.join(args.overrides) if args.overrides else ''}.
{load_line(load_start)}

| way | wall s | median epoch s of each run (epochs 2..) |
|---|---|---|
| one after the other (each run alone) | {alone_wall:.0f} | {_listed(alone_epochs)} |
"""
    if together is None:
        return text + "| side by side | not run yet | |\n"
    together_wall, together_epochs = together
    gain = args.seeds * statistics.median(alone_epochs) / statistics.median(together_epochs)
    return text + f"""| side by side ({args.seeds} at once) | {together_wall:.0f} | {_listed(together_epochs)} |

Epoch throughput side by side against alone: **{gain:.2f}×** ({args.seeds} × the median epoch alone / the median
epoch side by side); wall time {alone_wall / together_wall:.2f}× (start-up included).
"""


def _listed(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


if __name__ == "__main__":
    main()
