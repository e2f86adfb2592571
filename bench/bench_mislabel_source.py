"""Which ELR targets make the better suspected-mislabel table: the selected epoch's (best.pt) or the last epoch's?

`suspected_mislabels.csv` is made from the targets at the end of training, while the network scored on the holdout
is the selected epoch's. Both are in the run folder (the targets are part of the loss's state in each checkpoint), so
each run here scores both tables against the clean labels: digits with injected noise, ELR and ELR+, several seeds.
Writes one row per setting, loss and seed to bench/results/mislabel_source.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from results_file import command_line, intra_op_threads, write_report
from seeded_runs import add_overrides_option, checked_epochs, percent_or_dash, train_seeds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from paper_runs import digits_elr_plus_settings  # noqa: E402  (scripts/ is not a package)

from elr_mri.data import build_data  # noqa: E402
from elr_mri.evaluation.evaluate import load_run  # noqa: E402
from elr_mri.mislabels import (mislabel_precision_recall,  # noqa: E402
                               suspected_mislabels)
from preprocess.user_errors import output_file  # noqa: E402

CONFIG = ROOT / "configs" / "digits" / "elr_sym40.yaml"
SETTINGS = {"sym40": ("symmetric", 0.4), "pair40": ("pair", 0.4), "sym60": ("symmetric", 0.6)}
SOURCES = ("best", "last")
HEADER = ("| setting | loss | seed | source | flagged | truly mislabelled | precision | recall | suggesting the true "
          "label | flagged by this source alone (of them truly mislabelled) |\n|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=["sym40", "pair40"], choices=list(SETTINGS))
    parser.add_argument("--losses", nargs="+", default=["elr", "elr_plus"], choices=["elr", "elr_plus"])
    add_overrides_option(parser)
    parser.add_argument("--out", type=output_file, default=ROOT / "bench" / "results" / "mislabel_source.md")
    args = parser.parse_args()
    epochs = checked_epochs(parser, args, CONFIG, args.losses)
    rows: list[str] = []
    for setting in args.settings:
        mode, rate = SETTINGS[setting]
        for loss in args.losses:
            noise = [f"loss.name={loss}", f"data.noise.mode={mode}", f"data.noise.rate={rate}"]
            plus = digits_elr_plus_settings(CONFIG, [*noise, *args.overrides]) if loss == "elr_plus" else []
            noise = [*noise, *plus, *args.overrides]  # an --set of the ramp still wins
            for seed, run in enumerate(train_seeds(CONFIG, noise, args.seeds, tables_from_both_sources)):
                rows += [_row(setting, loss, seed, run, source) for source in SOURCES]
            text = (f"Suspected-mislabel table from the selected epoch's ELR targets (best) and the last epoch's "
                    f"(last, the one `train` writes), digits, {args.seeds} seeds, {epochs} epochs "
                    f"(`{command_line()}`):\n\n{HEADER}\n" + "\n".join(rows) + "\n\n"
                    f"Machine: {platform.machine()}, torch {torch.__version__}, "
                    f"{intra_op_threads(torch.get_num_threads())}; the figures move with the CPU and the threads.\n")
            write_report(args.out, text)  # after each loss: a cut run keeps what it measured


def tables_from_both_sources(run_dir: Path) -> dict[str, Any]:
    """Each checkpoint's table scored against the clean labels, with the epoch it holds and the rows that only it
    lists (how many, and of them truly mislabelled): whether one table is the other and more."""
    tables, epochs = {}, {}
    for source in SOURCES:
        run = load_run(run_dir, source, note_precision=False)
        labels = build_data(run.cfg.data)  # digits: read in a moment
        targets = cast(torch.Tensor, run.method.targets())  # ELR's and ELR+'s runs: each has a target table
        tables[source] = suspected_mislabels(targets, labels.train_labels)
        epochs[source] = run.epoch
    clean = cast(np.ndarray, labels.train_clean_labels)  # digits' true labels are known
    wrong = labels.train_labels != clean
    found: dict[str, Any] = {}
    for source, other in zip(SOURCES, reversed(SOURCES)):
        table = tables[source]
        alone = np.setdiff1d(table["index"], tables[other]["index"])
        found[source] = {"epoch": epochs[source], "alone": alone.size, "alone_wrong": int(wrong[alone].sum()),
                         **mislabel_precision_recall(table["index"].to_numpy(), table["suggested_label"].to_numpy(),
                                                     labels.train_labels, clean)}
    return found


def _row(setting: str, loss: str, seed: int, run: dict[str, Any], source: str) -> str:
    found = run[source]
    return (f"| {setting} | {loss} | {seed} | {source} (epoch {found['epoch']}) "
            f"| {found['flagged']} | {found['truly_mislabelled']} | {percent_or_dash(found['precision'])} "
            f"| {percent_or_dash(found['recall'])} | {found['suggestion_true']} "
            f"| {found['alone']} ({found['alone_wrong']}) |")


if __name__ == "__main__":
    main()
