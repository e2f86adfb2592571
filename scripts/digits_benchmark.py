"""CE against ELR (and the GCE / SCE baselines) on sklearn's handwritten digits, on a CPU in minutes.

The digits are 1,797 real 8×8 images that ship with scikit-learn, so this runs anywhere. Each
setting (noise mode × rate) is trained with every loss and several seeds on the same noisy labels;
the table reports clean test accuracy at the validation-selected epoch and at the last epoch, how
many flipped labels the network ends up predicting (memorization), and the precision/recall of the
suspected-mislabel table. `make demo-digits` runs it. Runs resume as the paper reproductions do
(scripts/paper_runs.py): a finished run is read back, one made with other settings is refused.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from paper_runs import (ROOT, WALL_TIME_COUNTED, ListOption, digits_elr_plus_settings, mean_std, output_file,
                        output_folder, refuse_repeats, run_or_resume, run_script)

from elr_mri.atomic_files import atomic_write_text
from elr_mri.plots import plot_memorization_comparison

BASE_CONFIG = ROOT / "configs" / "digits" / "elr_sym40.yaml"
SETTINGS = {"sym40": ("symmetric", 0.4), "sym60": ("symmetric", 0.6), "pair40": ("pair", 0.4)}
LOSSES = ("ce", "gce", "sce", "elr", "elr_plus")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=output_folder, default=ROOT / "demo" / "digits",
                        help="run directories and results.md go here (default: demo/digits in the project)")
    parser.add_argument("--losses", nargs="+", action=ListOption, default=["ce", "gce", "sce", "elr"], choices=LOSSES,
                        help="(default: ce gce sce elr)")
    parser.add_argument("--settings", nargs="+", action=ListOption, default=list(SETTINGS), choices=list(SETTINGS),
                        help="label noise: symmetric 40%% or 60%%, pair flips 40%% (default: all three)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of each loss and setting (default 3)")
    parser.add_argument("--epochs", type=int, default=150, help="epochs of each run (default 150)")
    parser.add_argument("--results", type=output_file, default=None,
                        help="also write the Markdown table here (it is always in OUT/results.md)")
    args = parser.parse_args()
    if args.seeds < 1 or args.epochs < 1:
        parser.error("--seeds and --epochs must be at least 1")
    refuse_repeats(parser, "--losses", args.losses)
    refuse_repeats(parser, "--settings", args.settings)

    rows = []
    started = time.perf_counter()
    for setting in args.settings:
        mode, rate = SETTINGS[setting]
        for seed in range(args.seeds):
            for loss in args.losses:
                run_dir = args.out / setting / f"{loss}-seed{seed}"
                rows.append({"setting": setting, "loss": loss, "seed": seed,
                             **_run(run_dir, loss, mode, rate, seed, args.epochs)})
                print(f"{setting} seed {seed} {loss:4s}: test acc {rows[-1]['test_acc_last']:.3f} (last), "
                      f"memorized {rows[-1]['memorized']:.3f}")
    table = _summarise(pd.DataFrame(rows))
    training_s = sum(row["wall_s"] for row in rows)
    command = shlex.join([".venv/bin/python", "scripts/digits_benchmark.py", *sys.argv[1:]])
    text = (f"Digits benchmark: {args.seeds} seeds, {args.epochs} epochs, MLP, {training_s:.0f} s of training in all "
            f"({WALL_TIME_COUNTED}; this call took {time.perf_counter() - started:.0f} s).\n\n"
            f"Command (from the project root): `{command}`\n\n"
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op thread(s); the figures move with the CPU and the thread count.\n\n"
            f"{table}\n")
    print(text)
    atomic_write_text(text, args.out / "results.md")
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(text, args.results)
    _plot_first_setting(args, args.results.parent if args.results else args.out)


def _plot_first_setting(args: argparse.Namespace, folder: Path) -> None:
    """CE against ELR on the first setting and seed: the memorization figure README shows."""
    setting = args.settings[0]
    runs = {loss: pd.read_csv(args.out / setting / f"{loss}-seed0" / "metrics.csv")
            for loss in ("ce", "elr") if loss in args.losses}
    if not runs:
        print("figure: none (it compares ce and elr; neither is in --losses)")
        return
    path = folder / f"digits_memorization_{setting}.png"
    plot_memorization_comparison(runs, path, title=f"digits, {setting} label noise, seed 0")
    print(f"figure: {path}")


def _run(run_dir: Path, loss: str, mode: str, rate: float, seed: int, epochs: int) -> dict:
    """Train one run, or read it back when it already finished (the benchmark is resumable). ELR+ takes the settings
    that scale it to the run's steps: the config's default ramp of its weight averages outlasts 150 epochs 15 times."""
    overrides = [f"loss.name={loss}", f"data.noise.mode={mode}", f"data.noise.rate={rate}",
                 f"data.noise.seed={seed}", f"data.split_seed={seed}", f"seed={seed}",
                 f"train.epochs={epochs}", "train.progress=false", "train.tensorboard=false"]
    if loss == "elr_plus":
        overrides += digits_elr_plus_settings(BASE_CONFIG, overrides)
    summary = run_or_resume(BASE_CONFIG, overrides, run_dir)
    last = pd.read_csv(run_dir / "metrics.csv").iloc[-1]
    return {
        "test_acc_best": summary["test_acc_at_best"],
        "test_acc_last": summary["test_acc_last"],
        "memorized": last["noisy_pred_given"],
        "mislabel_precision": summary["mislabels"]["precision"],
        "mislabel_recall": summary["mislabels"]["recall"],
        "wall_s": summary["wall_seconds"],
    }


def _summarise(runs: pd.DataFrame) -> str:
    """Mean ± population std over seeds, one row per (setting, loss), as a Markdown table."""
    metrics = ["test_acc_best", "test_acc_last", "memorized", "mislabel_precision", "mislabel_recall"]
    lines = ["| setting | loss | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for (setting, loss), group in runs.groupby(["setting", "loss"], sort=False):
        cells = [mean_std(group[m], digits=1) for m in metrics]
        lines.append(f"| {setting} | {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    run_script(main)
