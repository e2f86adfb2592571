"""One line for bench/gpu_checks.sh's device.txt: a row's time before its first epoch, then its first epoch's extra.

Why: a row's metrics.csv starts at its first epoch, whose epoch_seconds also hold the compilation and CUDA-graph
capture of its first steps; the time before it (the imports, the 60,000 JPEGs decoded, the model and the
device-resident batches built) was in no file of a row the deadline cut (summary.json's wall_seconds comes at the end
alone), so a GPU session could not tell a row's setup from its training. `elr-mri train` writes the run folder's
config.yaml last before its first epoch, so its time stamp marks that epoch's start. Reads the standard library only:
it runs as the row ends, at the call's deadline.

    python bench/row_setup.py RUN_DIR STARTED NAME    # STARTED: `date +%s.%N` as the row's command started
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/row_setup.py", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the row's run folder (elr-mri train --out)")
    parser.add_argument("started", type=float, help="when the row's command started, in seconds since the epoch")
    parser.add_argument("name", help="the row's name in the line")
    args = parser.parse_args(argv)
    print(setup_line(args.run, args.started, args.name, time.time()))


def setup_line(run: Path, started: float, name: str, now: float) -> str:
    """`name`'s seconds before its first epoch and, once metrics.csv has epochs, the first against the later ones."""
    config = run / "config.yaml"
    if not config.is_file():
        return f"{name}: no epoch begun in its {now - started:.0f} s (its log says why)"
    said = (f"{name}: {config.stat().st_mtime - started:.1f} s before its first epoch (imports, the images decoded, "
            "the model and batches built)")
    epochs = epoch_seconds(run / "metrics.csv")
    if len(epochs) < 2:
        return said + (f"; epoch 1 {epochs[0]:.1f} s, the only one finished" if epochs else "; no epoch finished")
    steady = statistics.median(epochs[1:])
    return said + (f"; epoch 1 {epochs[0]:.1f} s against a median of {steady:.2f} s over epochs 2-{len(epochs)}: "
                   f"{epochs[0] - steady:.1f} s more (compilation, CUDA-graph capture)")


def epoch_seconds(metrics: Path) -> list[float]:
    """metrics.csv's epoch_seconds, epoch by epoch; none before the first epoch is written."""
    if not metrics.is_file():
        return []
    with metrics.open(newline="") as rows:
        return [float(row["epoch_seconds"]) for row in csv.DictReader(rows)]


if __name__ == "__main__":
    main()
