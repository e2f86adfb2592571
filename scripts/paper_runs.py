"""What the reproduction scripts share: run a config into a directory (or pick up where it stopped),
and print mean ± std tables in Markdown.

Each run directory is self-describing (the engine writes the resolved config.yaml there), so a
script that is killed can simply be started again: finished runs are read back, killed ones resume
from their last checkpoint, and only missing ones start from the config file. A run directory made
with other settings (another λ, noise rate...) is refused rather than read back as if it were the
run asked for; more epochs continue it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

import numpy as np
import torch

from elr_mri.config import (ConfigError, RunConfig, check_new_run_settings, load_config, load_run_config,
                            refuse_resume_changes)
from elr_mri.data import build_data
from elr_mri.distributed import DistContext
from elr_mri.engine.feeding import BatchFeeder
from elr_mri.engine.run_dir import check_run_dir
from elr_mri.engine.start import train
from elr_mri.stopping import terminating_at_safe_points
from preprocess.signals import Terminated
from preprocess.user_errors import USER_ERRORS, nonempty_path, output_file, report_user_error

__all__ = ["ROOT", "digits_elr_plus_settings", "run_script", "output_folder", "output_file", "refuse_seed_overrides",
           "seeds_used", "seed_folder", "seed_in_words", "refuse_repeats", "ListOption", "run_status", "planned_status",
           "run_config", "training_needed", "run_or_resume", "mean_std", "markdown_table", "WALL_TIME_COUNTED"]

ROOT = Path(__file__).resolve().parents[1]
SEED_KEYS = ("seed", "data.noise.seed", "data.split_seed")  # what --seeds sets, run by run
# The official CIFAR-10 ELR+ ramps its weight averages' momentum over 40,000 of its 70,400 steps (200 epochs of 352)
OFFICIAL_EMA_RAMP_SHARE = 40_000 / 70_400
# what summary.json's wall_seconds holds, as the reports say it: a resume adds its time to the last checkpoint's, so
# the part of a stopped call past that checkpoint is in no run's time
WALL_TIME_COUNTED = ("resumed parts included, but not what a stopped call trained past its last checkpoint (redone "
                     "when resumed)")


def digits_elr_plus_settings(config: Path, overrides: list[str]) -> list[str]:
    """ELR+ as its official CIFAR-10 runs take it, scaled to the digits run `config` with `overrides` makes
    (digits_benchmark.py, bench/'s bench_mislabel_source.py): the networks alternate by epoch, and the averages'
    momentum ramps over the official share of the run's steps, to two significant figures (1,500 of the 2,700 that
    150 epochs of 18 batches take). A fixed length ended the ramp at 13% of its value in a 30-epoch run; the config's
    default 40,000 would leave it at about 0.013 of it in 150 epochs."""
    cfg = load_config(config, overrides)
    per_epoch = BatchFeeder(build_data(cfg.data), cfg, DistContext(), torch.device("cpu")).steps_per_epoch()
    ramp = float(f"{OFFICIAL_EMA_RAMP_SHARE * cfg.train.epochs * per_epoch:.2g}")
    return ["elr_plus.alternation=epoch", f"elr_plus.ema_ramp_steps={max(1, round(ramp))}"]


def run_script(main: Callable[[], int | None]) -> NoReturn:
    """Exit with `main()`'s code; a mistake in a config, a flag or a path (ValueError, missing file) is
    one line and exit 2, and Ctrl-C one line and exit 130, as `elr-mri train` does (ELR_MRI_DEBUG=1 shows
    the traceback). SIGTERM (a batch system's time limit) stops the runs as Ctrl-C does, at their next step: its
    default action ended the script without a word and left `--jobs` runs training as orphans."""
    kept = "finished runs are read back and the interrupted ones continue from their last checkpoint"
    again = f"run the same command again: {kept}"
    try:
        with terminating_at_safe_points():
            sys.exit(main())
    except USER_ERRORS as err:
        sys.exit(report_user_error(Path(sys.argv[0]).name, err, rerun_keeps=kept))
    except Terminated:
        print(f"{Path(sys.argv[0]).name}: stopped by SIGTERM (a job's time limit, scancel or kill); {again}",
              file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print(f"{Path(sys.argv[0]).name}: interrupted; {again}", file=sys.stderr)
        sys.exit(130)


def output_folder(text: str) -> Path:
    """An --out option's folder (argparse type), refused where a file has its name: every run under it failed with
    "Not a directory" one after the other, and the table said the same command would continue them."""
    path = nonempty_path(text)
    if path.is_file():
        raise argparse.ArgumentTypeError(f"{path} is a file; pass a folder (a new one is made)")
    return path


def refuse_seed_overrides(parser: argparse.ArgumentParser, overrides: list[str], seeds: int, seeded: str) -> None:
    """Stop (`parser.error`) at a --set of a seed that --seeds sets run by run (`seeded` says which, in words), where
    there are several seeds: it gave every seed's run that seed, and the table's mean ± std over "seeds" came from
    runs that shared it."""
    fixed = next((item for item in overrides if item.split("=", 1)[0].strip() in SEED_KEYS), None)
    if fixed and seeds > 1:
        parser.error(f"--set {fixed} would give all {seeds} seeds' runs that seed; --seeds N sets seeds 0..N-1 "
                     f"({seeded}), one a run")


def seeds_used(seed: int, overrides: list[str]) -> tuple[str, str, str]:
    """The model, noise and split seeds (`SEED_KEYS`) that seed k's runs train with: k for each, but where a --set
    (taken beside --seeds 1) gives one of them another value."""
    used = {key: str(seed) for key in SEED_KEYS}
    for key, _, value in (item.partition("=") for item in overrides):
        if key.strip() in used:
            used[key.strip()] = value.strip()
    model, noise, split = (used[key] for key in SEED_KEYS)
    return model, noise, split


def seed_folder(seed: int, overrides: list[str]) -> str:
    """seed<k>, the name of seed k's runs; seed<s>-noise<n>-split<p> where the `seeds_used` differ: run folders and
    plans said seed0 for `--set seed=3`, and a later --seeds 2 found that seed0 made with other settings."""
    model, noise, split = seeds_used(seed, overrides)
    return f"seed{model}" if model == noise == split else f"seed{model}-noise{noise}-split{split}"


def seed_in_words(seed: int, overrides: list[str]) -> str:
    """'seed k', or 'seed s (noise n, split p)' where the `seeds_used` differ, for reports and figure titles: they
    said seed 0 for the runs of `--seeds 1 --set seed=3`."""
    model, noise, split = seeds_used(seed, overrides)
    return f"seed {model}" if model == noise == split else f"seed {model} (noise {noise}, split {split})"


class ListOption(argparse.Action):
    """A list option (`--rows`, `--losses`) that may be given again, as --set is: `--losses ce --losses elr` runs
    both. argparse's own nargs="+" kept the last one's values alone, so the rows or losses named first went
    untrained without a word; its "extend" added them to the default list. Use it with nargs="+"."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        given = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*(given if given is not self.default else []), *values])


def refuse_repeats(parser: argparse.ArgumentParser, option: str, values: list[str]) -> None:
    """Stop (`parser.error`) at a value given twice to a list option (`--losses ce ce`): both runs went to one
    run directory, the second read back the first, and the table showed one run as two seeds, ± 0."""
    repeated = next((value for index, value in enumerate(values) if value in values[:index]), None)
    if repeated is not None:
        parser.error(f"{option}: {repeated} is given twice; name each once")


def run_status(run_dir: Path) -> str:
    """'done' (summary.json written), 'resume' (a checkpoint to continue from) or 'new'."""
    if (run_dir / "summary.json").exists():
        return "done"
    if (run_dir / "checkpoints" / "last.pt").exists():
        return "resume"
    return "new"


def planned_status(run_dir: Path, epochs: int) -> str:
    """`run_status` of a run to be brought to `epochs`, where a finished run asked for more epochs is said to be
    continued: a dry run's plan called it 'done', read as nothing left to train."""
    status = run_status(run_dir)
    trained = load_run_config(run_dir).train.epochs if status == "done" else epochs
    return status if trained >= epochs else f"continue {trained} → {epochs} epochs"


def run_config(config: Path, overrides: list[str], run_dir: Path, fix: str | None = None) -> RunConfig:
    """The validated config (file + overrides) of a run, refused where `train` would refuse `run_dir` at its start
    (a new run's folder holding files that are not a run's), or when `run_dir` already holds a run
    made with settings that differ in what they compute (its config.yaml cut short is refused as such: read with
    defaults for what it lost, it was "made with other settings", or a model that cannot take the data). `fix`:
    how to start afresh instead (default: another --out, or delete `run_dir`)."""
    wanted = load_config(config, overrides)
    if run_status(run_dir) == "new":
        check_new_run_settings(wanted.data)  # what `train` checks when a run starts: a dry run says so too
        check_run_dir(run_dir, resume=False)  # a folder of other files: planned 'new', then refused at its start
        return wanted
    saved = load_run_config(run_dir)
    fix = fix or f"pass another --out, or delete {run_dir}"
    refuse_resume_changes(saved, wanted, run_dir, fix=fix)
    if wanted.train.epochs < saved.train.epochs:
        raise ConfigError(f"{run_dir} was asked for {saved.train.epochs} epochs, so train.epochs = "
                          f"{wanted.train.epochs} cannot shorten it; {fix}")
    return wanted


def training_needed(config: Path, overrides: list[str], run_dir: Path) -> RunConfig | None:
    """The validated config of a run still to train (new, killed, or finished with fewer epochs than asked:
    continued); None when `run_dir` finished with these settings."""
    wanted = run_config(config, overrides, run_dir)
    if run_status(run_dir) == "done" and wanted.train.epochs == load_run_config(run_dir).train.epochs:
        return None
    return wanted


def run_or_resume(config: Path, overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """Train `config` with `overrides` into `run_dir` unless it already finished with these settings
    (more epochs than it trained continue it); returns its summary.json."""
    wanted = training_needed(config, overrides, run_dir)
    if wanted is not None:
        train(wanted, run_dir, resume=run_status(run_dir) != "new")
    return json.loads((run_dir / "summary.json").read_text())


def mean_std(values: Iterable[float], digits: int = 2) -> str:
    """Percent mean ± std over seeds (just the mean for one seed); '–' when nothing is defined. The std is the
    population one (numpy's default, ddof 0), as every figure recorded in bench/results and the README: the tables
    that print it say so, since a paper's "± std" over five runs may be the sample one (×1.12 for five). Where only
    some seeds define the figure (a mislabel precision where a run flagged nothing), the cell says how many: a
    bare '100.0' in a three-seed table read as all three seeds' when it was one's."""
    values = list(values)
    finite = [v for v in values if v is not None and not np.isnan(v)]
    if not finite:
        return "–"
    mean = 100 * float(np.mean(finite))
    text = f"{mean:.{digits}f}"
    if len(finite) > 1:
        text += f" ± {100 * float(np.std(finite)):.{digits}f}"
    return text if len(finite) == len(values) else f"{text} ({len(finite)} of {len(values)} seeds)"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":  # a library of the scripts beside it, not a command: say so instead of doing nothing
    print(__doc__.strip() + "\n\nRun a script beside it (reproduce_paper_table.py, cifar10n_cpu.py, "
          "digits_benchmark.py, mri_demo.py); they import this module.")
    sys.exit(2)
