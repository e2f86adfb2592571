"""CPU time of `elr-mri evaluate`'s bootstrap on an image-sized test set (CIFAR-100's: 10,000 images, 100 classes).

Each resample of an image set draws every image anew, so a resample used to be scored like a new set: its 100
per-class AUCs and its micro AUC (1,000,000 scores) sorted afresh, 0.3 CPU-s, over 5 CPU-minutes for the default
1000 resamples. `bootstrap_metrics` now sorts the set's scores once and scores each resample through how often it
drew each image. This prints the CPU seconds per resample of both ways, on the same resamples, their ratio, and
whether they agreed to the bit on every value, and writes them to bench/results/bootstrap.md (README quotes it).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
from results_file import command_line, write_report

from elr_mri.evaluation.point_metrics import confusion_counts
from elr_mri.evaluation.resampling import Resampling, participant_resamples, resampled_metrics
from preprocess.user_errors import output_file

ROOT = Path(__file__).resolve().parents[1]

Scored = tuple[dict[str, float], np.ndarray]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--resamples", type=int, default=20, help="resamples timed each way (default 20)")
    parser.add_argument("--out", type=output_file, default=ROOT / "bench" / "results" / "bootstrap.md")
    args = parser.parse_args()
    if min(args.examples, args.classes) < 2 or args.resamples < 1:  # else a traceback, or a file of no figures
        parser.error(f"--examples {args.examples}, --classes {args.classes}, --resamples {args.resamples}: a test set "
                     "needs at least 2 examples and 2 classes, and the timing at least 1 resample")
    labels, proba = test_set(args.examples, args.classes)
    draws = list(participant_resamples(np.arange(args.examples).astype(str), args.resamples,
                                       np.random.default_rng(0)))
    k = args.classes

    def plain(rows: np.ndarray) -> Scored:
        return resampled_metrics(labels, proba, rows, k), confusion_counts(labels[rows], proba[rows].argmax(1), k)

    start = time.process_time()
    resampling = Resampling(labels, proba, k)
    setup = time.process_time() - start
    before, old = timed(plain, draws)
    after, new = timed(lambda rows: (resampling.metrics(rows), resampling.counts(rows)), draws)
    text = (f"Bootstrap resamples of an image-sized test set (`{command_line()}`): {args.examples:,} examples × {k} "
            f"classes, {args.resamples} resamples, load average {os.getloadavg()[0]:.1f}\n\n"
            f"sorting each resample (resampled_metrics): {before:.4f} CPU-s a resample\n"
            f"multiplicities over one sort (bootstrap_metrics): {after:.4f} CPU-s a resample, after {setup:.2f} "
            f"CPU-s once\nspeed-up {before / after:.1f}×; every value alike to the bit: {alike(old, new)}\n")
    print(text, end="")
    write_report(args.out, text)


def test_set(examples: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities of a network right about half the time, with no ties (as a float32 softmax
    has few)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, examples)
    logits = rng.normal(size=(examples, classes))
    logits[np.arange(examples), labels] += 2.5
    proba = np.exp(logits)
    return labels, proba / proba.sum(1, keepdims=True)


def timed(score: Callable[[np.ndarray], Scored], draws: list[np.ndarray]) -> tuple[float, list[Scored]]:
    """CPU seconds per resample of `score`, and what it gave."""
    start = time.process_time()
    scored = [score(rows) for rows in draws]
    return (time.process_time() - start) / len(draws), scored


def alike(old: list[Scored], new: list[Scored]) -> bool:
    """Every metric (NaN included) and every confusion count the same bits."""
    def bits(values: dict[str, float]) -> bytes:
        return np.array(list(values.values())).tobytes()
    return all(bits(a) == bits(b) and list(a) == list(b) and (m == n).all() for (a, m), (b, n) in zip(old, new))


if __name__ == "__main__":
    main()
