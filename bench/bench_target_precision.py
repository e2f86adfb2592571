"""Does storing the ELR target table in bf16 / fp16 cost accuracy? Digits, ELR, 40% symmetric noise (or --set's).

Half-precision storage halves the table: an ImageNet-size table (1,281,167 × 1000) is 5.1 GB in
float32 and 2.6 GB in bf16/fp16. The update arithmetic runs in float32 either way. Prints one
table of clean test accuracy per storage type, measured in this run, and writes it to
bench/results/target_precision.md.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
import torch
from results_file import command_line, load_line, write_report
from seeded_runs import add_overrides_option, checked_epochs, percent_mean_std, train_seeds

from elr_mri.config import RunConfig, load_config
from preprocess.user_errors import output_file

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "digits" / "elr_sym40.yaml"
IMAGENET_TABLE = (1_281_167, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    add_overrides_option(parser)
    parser.add_argument("--out", type=output_file, default=ROOT / "bench" / "results" / "target_precision.md")
    args = parser.parse_args()
    epochs = checked_epochs(parser, args, CONFIG)
    lines = ["| targets_dtype | table for 1,281,167 × 1000 | test acc (last), mean ± std | − float32, paired by seed "
             "| training s / run (wall_seconds) |", "|---|---|---|---|---|"]
    float32_accs, load_start, devices = None, os.getloadavg()[0], set()
    for dtype in ("float32", "bfloat16", "float16"):
        runs = train_seeds(CONFIG, [*args.overrides, f"loss.targets_dtype={dtype}"], args.seeds)  # the dtype wins
        accs, seconds = np.array([run["test_acc_last"] for run in runs]), [run["wall_seconds"] for run in runs]
        devices |= {run["device"] for run in runs}
        float32_accs = accs if float32_accs is None else float32_accs
        gigabytes = np.prod(IMAGENET_TABLE) * torch.finfo(getattr(torch, dtype)).bits / 8 / 1e9
        lines.append(f"| {dtype} | {gigabytes:.1f} GB | {percent_mean_std(accs)} "
                     f"| {percent_mean_std(accs - float32_accs)} | {np.mean(seconds):.1f} |")
    text = (f"ELR target-table storage, {_data_in_words(load_config(CONFIG, args.overrides))}, {args.seeds} seeds, "
            f"{epochs} epochs "
            f"(`{command_line()}`):\n\n" + "\n".join(lines) + "\n\n"
            f"Machine: {platform.machine()}, trained on {', '.join(sorted(devices))}, torch {torch.__version__}. "
            f"{load_line(load_start)}\n")
    print(text)
    write_report(args.out, text)


def _data_in_words(config: RunConfig) -> str:
    """'digits, 40% symmetric noise' as the runs' config has it: a --set of data.noise.* or data.name changes what the
    table measured, and its title must say so."""
    noise = config.data.noise
    if noise.mode == "none":
        return f"{config.data.name}, no label noise"
    if noise.mode in ("transition", "human"):  # rate unused: a matrix or a file of labels gives the flips
        return f"{config.data.name}, {noise.mode} noise"
    return f"{config.data.name}, {noise.rate * 100:g}% {noise.mode} noise"


if __name__ == "__main__":
    main()
