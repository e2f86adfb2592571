"""Training throughput of 1 process against K data-parallel processes (torchrun, gloo on CPU, NCCL on GPU).

Runs the same config once per process count, in this one invocation, and prints examples/s of
the training pass (from metrics.csv's epoch_seconds, first epoch dropped as warm-up) and the
speed-up over one process. On a CPU the processes share the machine's cores, so the figure shows
the overhead of the distributed machinery rather than a gain; on K GPUs it is the scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "digits" / "elr_sym40.yaml")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--set", dest="overrides", action="append",
                        default=["model.name=small_cnn", "model.hidden=64", "train.batch_size=128"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ddp_scaling.md")
    args = parser.parse_args()

    rows = []
    for processes in args.processes:
        with tempfile.TemporaryDirectory() as run_dir:
            examples, seconds = _run(args, processes, Path(run_dir))
        rows.append({"processes": processes, "examples_per_s": examples / seconds})
    base = rows[0]["examples_per_s"]
    lines = ["| processes | training examples/s | speed-up |", "|---|---|---|"]
    lines += [f"| {r['processes']} | {r['examples_per_s']:.0f} | {r['examples_per_s'] / base:.2f}× |" for r in rows]
    text = (f"Data-parallel scaling, {args.config.name} with {' '.join(args.overrides)}, {args.epochs} epochs "
            f"(`python bench/bench_ddp_scaling.py`), {os.cpu_count()} CPU cores shared by the processes "
            f"(OMP threads = cores / processes), load average {os.getloadavg()[0]:.1f}:\n\n" + "\n".join(lines) + "\n")
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


def _run(args: argparse.Namespace, processes: int, run_dir: Path) -> tuple[float, float]:
    """(examples trained, seconds of training) over the epochs after the first."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    overrides = [*args.overrides, f"train.epochs={args.epochs}", "train.progress=false", "train.tensorboard=false"]
    command = [*launcher, "-m", "elr_mri.cli", "train", "--config", str(args.config), "--out", str(run_dir),
               *[a for s in overrides for a in ("--set", s)]]
    # the same cores in every run: K processes get cores // K threads each (torchrun would set 1)
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": threads})
    metrics = pd.read_csv(run_dir / "metrics.csv").iloc[1:]
    train_size = json.loads((run_dir / "summary.json").read_text())["train_examples"]
    return train_size * len(metrics), float(metrics["epoch_seconds"].sum())


if __name__ == "__main__":
    main()
