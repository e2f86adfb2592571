"""Train one config over several seeds, each in a throw-away run folder: the loop the accuracy benchmarks share.

Seed s sets the training seed, the label-noise draw and the validation split together, so two
settings compared at the same s see the same noisy labels and the same split.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from elr_mri.config import ConfigError, load_config
from elr_mri.engine.start import train

QUIET = ["train.progress=false", "train.tensorboard=false"]


def add_overrides_option(parser: argparse.ArgumentParser) -> None:
    """--set, as the accuracy benchmarks on one config take it: its quick check names --out, since the default --out
    is the published file, which a 2-epoch check replaced."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="applied to every run, e.g. --set train.epochs=2 --out /tmp/check.md for a quick check "
                             "(the default --out is the published figures)")


def checked_epochs(parser: argparse.ArgumentParser, args: argparse.Namespace, config: Path,
                   losses: Sequence[str] = ()) -> int:
    """The epochs each run of `config` trains (the report's figure), with --seeds and the --set overrides checked now,
    under each of `losses` the benchmark trains: a bad value is refused before the first run, not after hours of them
    (a `--set loss.lam_ramp_steps` that CE refuses had ended the MRI one in a traceback after its cohort's draw)."""
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: must be at least 1")
    try:
        for loss in losses:
            load_config(config, [f"loss.name={loss}", *args.overrides])
        return load_config(config, args.overrides).train.epochs
    except ConfigError as error:
        parser.error(str(error))


def train_seeds(config: Path, overrides: list[str], seeds: int,
                read_run: Callable[[Path], dict[str, Any]] | None = None) -> list[dict]:
    """One run summary per seed (test_acc_last, test_acc_at_best, wall_seconds, …), with what `read_run` takes from the
    run folder (its checkpoints) before the folder is thrown away. Its time is the run's own
    `wall_seconds` (data loading and training), not the call's: the process's first run also imports the training
    loop's modules (torch._dynamo among them), 33 s of that call's 38 on a loaded 2-core machine (1.6 s of training),
    which the first row's mean took as its own."""
    summaries = []
    for seed in range(seeds):
        seeded = [*overrides, f"seed={seed}", f"data.noise.seed={seed}", f"data.split_seed={seed}", *QUIET]
        with tempfile.TemporaryDirectory() as run_dir:
            summaries.append(train(load_config(config, seeded), Path(run_dir)))
            summaries[-1].update(read_run(Path(run_dir)) if read_run else {})
        print(f"{' '.join(overrides) or config.name}, seed {seed}: test acc (last) "
              f"{summaries[-1]['test_acc_last']:.4f}, {summaries[-1]['wall_seconds']:.0f} s",
              flush=True)  # a long benchmark shows it is moving
    return summaries


def percent_mean_std(values: np.ndarray) -> str:
    """Fractions as "mean ± std" in percent points (population std, ddof 0), the form the benchmark tables use."""
    return f"{100 * values.mean():.2f} ± {100 * values.std():.2f}"


def percent_or_dash(fraction: float) -> str:
    """A fraction in percent points to one decimal; "–" where undefined (NaN: the precision of a table that flags
    nothing), as the digits benchmark writes it."""
    return "–" if math.isnan(fraction) else f"{100 * fraction:.1f}"
