"""Run the rows of one table of the ELR paper and print our test accuracy beside the paper's figure.

Tables: 1 (ELR, CIFAR-10 and CIFAR-100, ResNet-34), 2 (ELR+, PreAct ResNet-18), 3 (Clothing1M), 4 (mini
WebVision and ILSVRC12), cifar10n (ELR on CIFAR-10N human labels; the paper has no such row). Each row is a config under
configs/ with the appendix hyperparameters; every run lands in OUT/<row>/seed<k> (named by the seeds it trains
with, seed<s>-noise<n>-split<p>, where a --set beside --seeds 1 gives it others), and a row whose
summary.json exists is read back, a killed one resumes, so the script can be restarted at will.
Seed k is one noise realisation: it sets the initial weights (seed), the noisy labels (data.noise.seed; the human
and web labels of cifar10n, Clothing1M and WebVision are fixed) and the validation split (data.split_seed). The
labels depend on nothing else than the data set, the noise mode and rate, so a rerun draws them again alike, and a
row of table 1 and table 2's row of that name train seed k on the same noisy labels and split: ELR against ELR+ on
equal terms (each run's data_shape.json holds train_labels_sha256 to compare).
These are GPU-sized runs: a CIFAR-10 ELR run took 6.6 minutes on an H200 with CUDA graphs (what
`train.compile_mode: auto` takes for ELR there; ~20 minutes in compile's default mode, which ELR+ keeps), and would
take about two days on 2 CPU cores (3.9 s a step); `--dry-run` validates every config and prints the plan.
`--jobs N` trains N runs at once, each an `elr-mri train` process spread over the visible GPUs (round robin;
restrict them with CUDA_VISIBLE_DEVICES), its output in OUT/<row>/seed<k>.log.

Data (the configs' paths are relative to the directory you run from, normally the project root;
`--data-root DIR` moves everything they expect under data/ to DIR):
  data/cifar10/{train,test}/<class>/*.jpg   mkdir -p data && tar -xJf ../shared/data/cifar/cifar10-jpeg.tar.xz -C data/
      or data/cifar-10-batches-py           curl -L https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz | tar -xz -C data/
  data/cifar-100-python                     curl -L https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz | tar -xz -C data/
  data/clothing1m/                          the official release (images/; label lists beside it, in annotations/ or images/),
                                            --set model.pretrained_checkpoint=IMAGENET_RESNET50.pt
  data/webvision/                           WebVision 1.0 resized images + info/ lists, imagenet/ for
                                            ILSVRC12 (configs/webvision/elr_plus.yaml says the layout)
  data/CIFAR-10_human.npz                   mkdir -p data && cp ../shared/data/cifar/CIFAR-10_human.npz data/
                                            (or the release's .pt: --set data.noise.human_labels=PATH.pt;
                                            CIFAR-10_human.pt of github.com/UCSC-REAL/cifar-10-100n)
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from paper_runs import (ROOT, WALL_TIME_COUNTED, ListOption, markdown_table, mean_std, output_folder,
                        refuse_seed_overrides, run_config, planned_status, run_or_resume, run_script, run_status,
                        seed_folder)
from parallel_runs import PlannedRun, train_in_parallel

from elr_mri.atomic_files import atomic_write_text
from elr_mri.config import ConfigError, RunConfig, load_config
from elr_mri.data.image_sources import (CLOTHING1M_LISTS, CLOTHING1M_VAL_LIST, IMAGENET_VAL_LIST, WEBVISION_LISTS,
                                        cifar_download_command, clothing1m_lists_dir, load_source)
from elr_mri.data.noise import CIFAR10_ASYMMETRIC_MODES
from elr_mri.engine.run_dir import read_divergence
from elr_mri.engine.start import refuse_threads_past_cpus
from elr_mri.models import lacks_the_papers_pretrained_weights
from preprocess.user_errors import USER_ERRORS, nonempty_path


@dataclass(frozen=True)
class Row:
    """One line of a paper table: the config that reproduces it and the paper's figure (percent), as text: printed
    with the decimals the paper gives (93.8, not the 93.80 a float printed to two places made of it)."""

    name: str
    config: str  # relative to configs/
    paper: str | None  # None: no paper figure recorded for this row
    overrides: tuple[str, ...] = ()
    # further figures of the same runs: (label, summary.json column without _at_best/_last, paper figure)
    also: tuple[tuple[str, str, str | None], ...] = ()
    # False where README's "Reference figures to check" says the figure is not yet matched to the paper itself
    paper_checked: bool = True



def _paper_figure(figure: str | None) -> str:
    """A paper figure as the table prints it: as given, or '–' where the row has none (as ours print an unknown)."""
    return "–" if figure is None else figure

TABLES: dict[str, tuple[str, list[Row]]] = {
    "1": ("Table 1: ELR, ResNet-34, test accuracy (%)", [
        Row("cifar10-sym20", "cifar10/elr_sym20.yaml", "91.16"),
        Row("cifar10-sym40", "cifar10/elr_sym40.yaml", "89.15"),
        Row("cifar10-sym60", "cifar10/elr_sym60.yaml", "86.12"),
        Row("cifar10-sym80", "cifar10/elr_sym80.yaml", "73.86"),
        Row("cifar10-asym40", "cifar10/elr_asym40.yaml", "90.12"),
        Row("cifar100-sym20", "cifar100/elr_sym20.yaml", "74.21"),
        Row("cifar100-sym40", "cifar100/elr_sym40.yaml", "68.28"),
        Row("cifar100-sym60", "cifar100/elr_sym60.yaml", "59.28"),
        Row("cifar100-sym80", "cifar100/elr_sym80.yaml", "29.78"),
        Row("cifar100-asym40", "cifar100/elr_asym40.yaml", "73.26"),
    ]),
    "2": ("Table 2: ELR+, PreAct ResNet-18, test accuracy (%)", [
        Row("cifar10-sym20", "cifar10/elr_plus_sym20.yaml", "94.6", paper_checked=False),
        Row("cifar10-sym50", "cifar10/elr_plus_sym50.yaml", "93.8", paper_checked=False),
        Row("cifar10-sym80", "cifar10/elr_plus_sym80.yaml", "91.1", paper_checked=False),
        Row("cifar10-sym90", "cifar10/elr_plus_sym90.yaml", "75.2", paper_checked=False),
        Row("cifar10-asym40", "cifar10/elr_plus_asym40.yaml", "92.7", paper_checked=False),
        Row("cifar100-sym20", "cifar100/elr_plus_sym20.yaml", None),
        Row("cifar100-sym50", "cifar100/elr_plus_sym50.yaml", None),
        Row("cifar100-sym80", "cifar100/elr_plus_sym80.yaml", None),
        Row("cifar100-sym90", "cifar100/elr_plus_sym90.yaml", None),
        Row("cifar100-asym40", "cifar100/elr_plus_asym40.yaml", None),
    ]),
    "3": ("Table 3: Clothing1M (ResNet-50, ImageNet weights), test accuracy (%)", [
        Row("elr", "clothing1m/elr.yaml", "72.87"),
        Row("elr_plus", "clothing1m/elr_plus.yaml", "74.81"),
    ]),
    "4": ("Table 4: mini WebVision (InceptionResNetV2), test accuracy (%): top-1 on WebVision's validation images "
          "unless named", [
        Row("webvision-elr_plus", "webvision/elr_plus.yaml", "77.78", also=(
            ("top-5", "test_top5", "91.68"), ("ILSVRC12 top-1", "test_ilsvrc12_acc", "70.29"),
            ("ILSVRC12 top-5", "test_ilsvrc12_top5", "89.76")), paper_checked=False),
    ]),
    "cifar10n": ("CIFAR-10N human labels, ELR, ResNet-34 (no paper figure), test accuracy (%)", [
        Row("worst", "cifar10n/elr.yaml", None, ("data.noise.human_key=worse_label",)),
        Row("aggre", "cifar10n/elr.yaml", None, ("data.noise.human_key=aggre_label",)),
        Row("random1", "cifar10n/elr.yaml", None, ("data.noise.human_key=random_label1",)),
    ]),
}

# what `elr_mri.data.image_sources` looks for first under data.root
_DATA_MARKERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "imagefolder": "train",
                 "clothing1m": "images", "webvision": "info/train_filelist_google.txt"}
# The shared copies of CIFAR-10 and its CIFAR-N labels beside the project, named absolute in the commands a dry run
# prints: those run from the current directory, where ../shared was the wrong folder anywhere but the project's root.
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar"
# the CIFAR-N labels where a clone has no ../shared: the official release
RELEASE_LABELS = "CIFAR-10_human.pt of github.com/UCSC-REAL/cifar-10-100n"
# how to get each data set into data.root (given that folder; the tables' image-folder rows are all CIFAR-10 as JPEGs)
_HOW_TO_GET: dict[str, Callable[[Path], str]] = {
    "cifar10": lambda root: cifar_download_command("cifar10", root),
    "cifar100": lambda root: cifar_download_command("cifar100", root),
    "imagefolder": lambda root: _jpeg_or_pickles_command(root),  # defined below
    "clothing1m": lambda root: f"put the official Clothing1M release in {root} (images/ there; the label lists beside "
                              "it, in annotations/ or in images/)",
    "webvision": lambda root: f"put WebVision 1.0's resized images and info/ lists in {root}"}


def _jpeg_or_pickles_command(root: Path) -> str:
    """Extract the shared JPEG archive where this workplace has it; else download torchvision's pickles beside
    `root`, which a CIFAR-10 row reads where the JPEGs are absent: a clone with no ../shared was told to extract an
    archive that was not there."""
    archive = SHARED_CIFAR / "cifar10-jpeg.tar.xz"
    if not archive.is_file():
        return f"{cifar_download_command('cifar10', root.parent)} (the python version, read where the JPEGs are absent)"
    return shlex.join(["mkdir", "-p", str(root.parent)]) + " && " + shlex.join(["tar", "-xJf", str(archive), "-C",
                                                                                str(root.parent)])


def _human_labels_source(labels: str) -> str:
    """Where to get a missing CIFAR-N label file: the shared copy where this workplace has one, else the release."""
    shared = SHARED_CIFAR / Path(labels).name
    release = "--set data.noise.human_labels=PATH/CIFAR-10_human.pt"
    if shared.is_file():
        copy = shlex.join(["cp", str(shared), labels])
        return f"the CIFAR-N human labels; {copy}, or the official release's .pt: {release}"
    return f"the CIFAR-N human labels (no copy at {shared}); download {RELEASE_LABELS}, then {release}"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    title, rows = TABLES[args.table]
    if args.rows:
        unknown = sorted(set(args.rows) - {r.name for r in rows})
        if unknown:
            raise ValueError(f"--rows: no row {unknown[0]!r} in table {args.table}; rows: "
                             + ", ".join(r.name for r in rows))
        rows = [r for r in rows if r.name in args.rows]
    out = args.out or ROOT / "runs" / f"table{args.table}"
    plan = [(row, seed, out / row.name / seed_folder(seed, args.overrides))
            for row in rows for seed in range(args.seeds)]
    configs = _row_configs(plan, args)
    _unreadable_release.cache_clear()  # read again at each call: the user may have extracted the images since
    print(_plan_table(plan, configs))
    missing = dict(item for cfg in configs.values() for item in _missing_inputs(cfg))
    for path, how in missing.items():
        print(f"missing {path}: {how}")
    stopping = {path: how for path, how in missing.items() if _stops_a_run(path)}
    unweighted = sorted({row.name for row, _, _ in plan if lacks_the_papers_pretrained_weights(configs[(row.name, 0)])})
    for name in unweighted:
        print(f"note: {name} starts from random weights (model.pretrained_checkpoint is unset); the paper "
              "starts Clothing1M from ImageNet weights", file=sys.stderr)
    if args.dry_run:
        counted = f"the {len(missing)}" if len(stopping) == len(missing) else f"{len(stopping)} of the {len(missing)}"
        stop = (f", but they would stop at {counted} missing input(s) above" if stopping else
                ", but without the missing input(s) above lines of the table stay empty" if missing else "")
        print(f"\ndry run: {len(plan)} run(s) validated{stop}; nothing trained")
        return 1 if stopping else 0  # `--dry-run && sbatch ...` goes on only where every run could finish

    train_all = _train_side_by_side if args.jobs > 1 else _train_in_turn
    summaries, failures = train_all(plan, args)
    overridden = f"\n\nEvery row with --set {' '.join(args.overrides)}." if args.overrides else ""
    if unweighted:  # the title names the paper's setting, which these rows did not have
        overridden += f"\n\nStarted from random weights, not ImageNet's: {', '.join(unweighted)}."
    text = f"{title}\n\n{_results_table(rows, summaries, args.seeds)}{overridden}\n"
    print("\n" + text)
    report = out / _report_name(args.table, rows)
    if failures:  # a table of holes would replace a finished one
        print(f"{report} not written{_earlier_table(report)}: {len(failures)} run(s) did not finish; "
              f"{_how_to_go_on(stopping, failures)}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(text, report)
    print(f"written to {report}")
    return 0


def _seed_name(run_dir: Path) -> str:
    """Which seed(s) the run in `run_dir` trains with, as the plan and the progress lines say it: '3', or
    '3-noise0-split0' where a --set made them differ."""
    return run_dir.name.removeprefix("seed")


def _report_name(table: str, rows: list[Row]) -> str:
    """results.md for the whole table, results-<row>+<row>.md for some of its rows (--rows): a row rerun alone wrote
    its one line over the whole table's file."""
    if len(rows) == len(TABLES[table][1]):
        return "results.md"
    return "results-" + "+".join(row.name for row in rows) + ".md"


def _earlier_table(report: Path) -> str:
    """What the `report` left in place is: an earlier call's table, with its date and --set line, so that it is not
    read as this call's."""
    if not report.is_file():
        return ""
    written = time.strftime("%Y-%m-%d %H:%M", time.localtime(report.stat().st_mtime))
    settings = next((line.rstrip(".") for line in report.read_text(errors="replace").splitlines()
                     if line.startswith("Every row with --set ")), "Every row as its config gives it")
    return f" (the one there is an earlier call's table, written {written}: {settings[0].lower()}{settings[1:]})"


def _stops_a_run(missing: str) -> bool:
    """Whether a run stops at its start without this missing input: all but WebVision's ILSVRC12 list, without which
    it trains for days and leaves the table's ILSVRC12 lines empty (the dry run said it would stop there)."""
    return not missing.endswith(IMAGENET_VAL_LIST)


def _how_to_go_on(missing: dict[str, str], failed: list[Path]) -> str:
    """What finishes the table: a rerun alone where the runs were stopped, but a run that stopped for its data stops
    again until the data is there (the table said "the same command continues them" then too), and one that diverged
    (its `diverged.json`) diverges again: its own line gives the remedy."""
    again = "the same command continues them" if not missing else (
        f"put the data listed as missing above in place first ({', '.join(missing)}; the Data section of --help and "
        "README's 'Reproducing the paper' say where each goes), then run the same command")
    diverged = [run for run in failed if read_divergence(run) is not None]
    if not diverged:
        return again
    remedy = (f"{len(diverged)} diverged ({', '.join(map(str, diverged))}), as a rerun would again: "
              "each one's line above gives the remedy")
    return remedy if len(diverged) == len(failed) else f"{remedy}; for the other {len(failed) - len(diverged)}, {again}"


def _train_in_turn(plan: list[tuple[Row, int, Path]],
                   args: argparse.Namespace) -> tuple[dict[str, list[dict]], list[Path]]:
    """Each run in this process, one after the other: (summaries by row, folders of the runs not finished)."""
    summaries: dict[str, list[dict]] = {row.name: [] for row, _, _ in plan}
    failures: list[Path] = []
    for row, seed, run_dir in plan:
        started = time.perf_counter()
        try:
            config, overrides, _ = _row_args(row, seed, run_dir, args)
            status = planned_status(run_dir, load_config(config, overrides).train.epochs)
            print(f"\n== {row.name} seed {_seed_name(run_dir)} ({status}) -> {run_dir}", flush=True)
            summaries[row.name].append(run_or_resume(config, overrides, run_dir))
        except USER_ERRORS as err:  # missing data or weights, a run folder taken...: report, go on, as --jobs does
            failures.append(run_dir)
            print(f"{row.name} seed {_seed_name(run_dir)}: not finished: {err}", file=sys.stderr)
        print(f"{row.name} seed {_seed_name(run_dir)}: {time.perf_counter() - started:.0f} s", flush=True)
    return summaries, failures


def _train_side_by_side(plan: list[tuple[Row, int, Path]],
                        args: argparse.Namespace) -> tuple[dict[str, list[dict]], list[Path]]:
    """--jobs runs at a time, each a process of its own (`parallel_runs`): as `_train_in_turn`."""
    summaries: dict[str, list[dict]] = {row.name: [] for row, _, _ in plan}
    rows = {}
    for row, seed, run_dir in plan:
        config, overrides, _ = _row_args(row, seed, run_dir, args)
        rows[PlannedRun(f"{row.name} seed {_seed_name(run_dir)}", config, tuple(overrides), run_dir)] = row
    failures: list[Path] = []
    for run, outcome in train_in_parallel(list(rows), args.jobs).items():
        if isinstance(outcome, dict):
            summaries[rows[run].name].append(outcome)
        else:
            failures.append(run.run_dir)
            print(f"{run.name}: not finished: {outcome}", file=sys.stderr)
    return summaries, failures


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, choices=list(TABLES), help="the paper's table to run (below)")
    parser.add_argument("--rows", nargs="+", action=ListOption, metavar="ROW",
                        help="only these rows (default: all of the table)")
    parser.add_argument("--data-root", type=_data_folder, metavar="DIR",
                        help="the folder that holds the data sets, in place of the configs' data/")
    parser.add_argument("--out", type=output_folder,
                        help="run directories go here (default: runs/table<N> in the project, whatever the current "
                             "directory)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value in every row, e.g. --set train.epochs=2 (repeatable)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per row (model, noise and split; default 1)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate every row's config, print the plan; exit 1 if a run would stop at a missing input")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once, each a process of its own, spread over the visible GPUs; its "
                             "output goes to RUN_DIR.log (default 1: one after the other, in this process)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    refuse_seed_overrides(parser, args.overrides, args.seeds, "model, noise and split")
    data_sets = [item for item in args.overrides if item.split("=", 1)[0] in ("data.name", "data.root")]
    if data_sets:  # CIFAR-100 rows trained on CIFAR-10, reported beside the paper's CIFAR-100 figures
        parser.error(f"--set {data_sets[0]} would give every row one data set; put each data set where its rows "
                     "look (--data-root DIR: DIR/cifar10 as JPEGs or DIR/cifar-10-batches-py, DIR/cifar-100-python, "
                     "...)")
    return args


def _data_folder(text: str) -> Path:
    """--data-root (argparse type), refused where it names a file: the shared archive passed for the folder it is
    extracted into was planned as `mkdir -p ARCHIVE && ... tar -xz -C ARCHIVE`, which fails, and every run stopped at
    "image folder not found" under it."""
    path = nonempty_path(text)
    if path.is_file():
        raise argparse.ArgumentTypeError(f"{path} is a file; pass the folder that holds the data sets (an archive: "
                                         f"mkdir -p data && tar -xf {shlex.quote(str(path))} -C data, then "
                                         "--data-root data)")
    return path


def _row_args(row: Row, seed: int, run_dir: Path, args: argparse.Namespace) -> tuple[Path, list[str], Path]:
    """(config file, overrides, run directory) of one run: row settings, seed, data location, --set."""
    config = ROOT / "configs" / row.config
    overrides = [*row.overrides, f"seed={seed}", f"data.noise.seed={seed}", f"data.split_seed={seed}",
                 *args.overrides]
    # the config as the row gives it, not checked against run_dir: a run there holds the moved paths (data/ itself
    # moves nowhere, but its CIFAR-10 pickles stand in for absent JPEGs as another folder's do)
    overrides += _data_root_overrides(load_config(config, overrides), args.data_root or Path("data"))
    return config, overrides, run_dir


def _row_configs(plan: list[tuple[Row, int, Path]], args: argparse.Namespace) -> dict[tuple[str, int], RunConfig]:
    """Each run's validated config by (row, seed). Where a row's runs were made with other settings (another
    --set), the refusal names every one of them: it named seed0 alone, and each seed folder deleted in turn was
    followed by the same refusal for the next."""
    made_otherwise: dict[str, list[Path]] = {}
    for row, seed, run_dir in plan:
        if run_status(run_dir) != "new" and not _fits(row, seed, run_dir, args):
            made_otherwise.setdefault(row.name, []).append(run_dir)
    return {(row.name, seed): _row_config(row, seed, run_dir, args, _start_afresh(made_otherwise.get(row.name, [])))
            for row, seed, run_dir in plan}


def _fits(row: Row, seed: int, run_dir: Path, args: argparse.Namespace) -> bool:
    """Whether the run in `run_dir` can be read back or continued with the settings asked for."""
    try:
        run_config(*_row_args(row, seed, run_dir, args))
    except ConfigError:
        return False
    return True


def _start_afresh(runs: list[Path]) -> str | None:
    """How to start a row afresh whose `runs` were made with other settings: one command for them all; None (the
    refusal's own words) for one run."""
    if len(runs) < 2:
        return None
    remove = shlex.join(["rm", "-r", *map(str, runs)])
    return f"pass another --out, or delete the row's {len(runs)} runs made so: {remove}"


def _row_config(row: Row, seed: int, run_dir: Path, args: argparse.Namespace, fix: str | None = None) -> RunConfig:
    """The run's validated config, with what `train` would refuse at its start said before anything trains (a
    CIFAR-10 noise mode on a CIFAR-100 row, `--set data.noise.mode=none` beside a row's rate, more train.threads
    than this machine's CPUs take), naming the row;
    `fix` as `run_config`'s."""
    try:
        cfg = run_config(*_row_args(row, seed, run_dir, args), fix)
        refuse_threads_past_cpus(cfg.train.threads)  # this machine's limit, which a row's config cannot know
    except ConfigError as err:
        raise ConfigError(f"row {row.name}: {err}") from None
    if cfg.data.noise.mode in CIFAR10_ASYMMETRIC_MODES and cfg.data.name == "cifar100":
        raise ConfigError(f"row {row.name}: data.noise.mode = {cfg.data.noise.mode} flips CIFAR-10's classes, and this "
                          "row is CIFAR-100's; pass --rows with the CIFAR-10 rows only")
    return cfg


def _data_root_overrides(cfg: RunConfig, data_root: Path) -> list[str]:
    """Move the config's paths under data/ to `data_root`.

    A CIFAR-10 row reads the JPEG image folder DIR/cifar10; when that is absent but torchvision's
    python folder DIR/cifar-10-batches-py is there, the row reads that instead.
    """
    overrides = []
    for key, value in (("data.root", cfg.data.root), ("data.noise.human_labels", cfg.data.noise.human_labels)):
        if value is not None and Path(value).parts[:1] == ("data",) and data_root != Path("data"):
            overrides.append(f"{key}={data_root.joinpath(*Path(value).parts[1:])}")
    if cfg.data.name == "imagefolder" and cfg.data.root == "data/cifar10" \
            and not (data_root / "cifar10" / "train").is_dir() and (data_root / "cifar-10-batches-py").is_dir():
        overrides = [o for o in overrides if not o.startswith("data.root=")]
        overrides += ["data.name=cifar10", f"data.root={data_root}"]
    return overrides


def _plan_table(plan: list[tuple[Row, int, Path]], configs: dict[tuple[str, int], RunConfig]) -> str:
    lines = []
    for row, seed, run_dir in plan:
        cfg = configs[(row.name, seed)]
        missing = ", ".join(path for path, _ in _missing_inputs(cfg))
        lines.append([row.name, _seed_name(run_dir), row.config, cfg.data.name, str(cfg.data.root),
                      f"missing {missing}" if missing else "found", cfg.model.name, cfg.loss.name,
                      str(cfg.train.epochs), _paper_figure(row.paper), planned_status(run_dir, cfg.train.epochs),
                      str(run_dir)])
    header = ["row", "seed", "config", "data", "data root", "inputs", "model", "loss", "epochs", "paper %", "status",
              "run dir"]
    return markdown_table(header, lines)


def _missing_inputs(cfg: RunConfig) -> list[tuple[str, str]]:
    """(path, how to get it) of each input a run would stop at, or (ILSVRC12's list) leave lines of the table empty
    without: a cheap look for the file or folder the data set's reader needs first, then its label lists
    (`_missing_lists`), for a human-noise row's CIFAR-N label file, and for the pretrained weights named (a dry run
    said "found" and every Clothing1M run then stopped at a mistyped path)."""
    root = Path(cast(str, cfg.data.root))  # load_config refuses an image data set without one
    missing = []
    marker = root / _DATA_MARKERS.get(cfg.data.name, "")
    if not marker.exists():
        how = _HOW_TO_GET.get(cfg.data.name, lambda _: "see the Data section of --help")
        missing.append((str(marker), how(root)))
    else:
        missing += _missing_lists(cfg.data.name, root)
    labels = cfg.data.noise.human_labels if cfg.data.noise.mode == "human" else None
    if labels is not None and not Path(labels).is_file():
        missing.append((labels, _human_labels_source(labels)))
    weights = cfg.model.pretrained_checkpoint
    if weights is not None and not Path(weights).is_file():
        missing.append((weights, "the ImageNet weights, a state dict saved with torch.save(model.state_dict(), PATH); "
                                 "--set model.pretrained_checkpoint=PATH names it"))
    return missing


def _missing_lists(name: str, root: Path) -> list[tuple[str, str]]:
    """(path, how to get it) of the lists a Clothing1M or WebVision folder that is there lacks: a dry run said "found"
    for images/ without the label lists, or without clean_val_key_list.txt, which a new run is refused without; and
    WebVision trains without ILSVRC12's list, leaving the table's two ILSVRC12 lines empty after 100 epochs. With the
    lists a run cannot start without there, the release is read as a run reads it (`_unreadable_release`)."""
    if name == "clothing1m":
        lists = clothing1m_lists_dir(root)
        required = [lists / file for file in CLOTHING1M_LISTS]
        missing = [(str(path), "restore it from the Clothing1M release (the label lists lie beside images/, in "
                               "annotations/ or in images/)")
                   for path in (*required, lists / CLOTHING1M_VAL_LIST) if not path.is_file()]
    elif name == "webvision":
        required = [root / file for file in WEBVISION_LISTS]
        missing = [(str(path), f"extract WebVision 1.0's info/ folder into {root}")
                   for path in required if not path.is_file()]
        if not (root / IMAGENET_VAL_LIST).is_file():
            missing.append((str(root / IMAGENET_VAL_LIST), "without it the ILSVRC12 lines stay empty; "
                            ".venv/bin/python scripts/webvision_ilsvrc12_list.py --imagenet-val DIR --webvision "
                            f"{shlex.quote(str(root))} writes it from ImageNet's validation images sorted one folder "
                            "per synset"))
    else:
        return []
    if all(path.is_file() for path in required):
        missing += _unreadable_release(name, root)
    return missing


@functools.cache
def _unreadable_release(name: str, root: Path) -> list[tuple[str, str]]:
    """(what, the loader's error) where `train` would stop reading a release whose lists are there: images still in
    the release's tar archives, listed images missing or empty (WebVision's ILSVRC12 ones too, its list there), a
    malformed list. A dry run that looked at the lists alone said "found", and every run stopped at its start; the
    loader itself looks, as a run does (it stats every listed file: seconds for Clothing1M's million), once per folder
    and call however many rows and seeds read it."""
    try:
        load_source(name, root)
    except USER_ERRORS as err:
        return [(f"readable images under {root}", str(err))]
    return []


def _results_table(rows: list[Row], summaries: dict[str, list[dict]], seeds: int) -> str:
    """Paper figure beside ours (mean ± std over the finished runs of the `seeds` asked for: a row some of whose
    seeds failed says how many of them its figures cover), with the runs' wall times added up (what the row cost;
    side by side it took less time than that) and their device."""
    lines = []
    for row in rows:
        runs = summaries[row.name]
        wall = sum(s["wall_seconds"] for s in runs)
        devices = ", ".join(sorted({s["device"] for s in runs})) or "–"
        lines.append([row.name, _paper_figure(row.paper), *_ours(runs, "test_acc"),
                      str(len(runs)) if len(runs) == seeds else f"{len(runs)} of {seeds}",
                      f"{wall / 3600:.2f}" if runs else "–", devices])
        lines += [[f"{row.name} {label}", _paper_figure(paper), *_ours(runs, column), "", "", ""]
                  for label, column, paper in row.also]  # the same runs: their count and time are on the line above
    header = ["row", "paper", "ours (selected epoch)", "ours (last epoch)", "seeds", "wall h", "device"]
    note = (f"\n\nOurs: mean ± population std (ddof 0) over the seeds.{_selection(rows, summaries)} Wall time: the "
            f"row's runs added up (side by side, --jobs, they took less), {WALL_TIME_COUNTED}.{_unchecked(rows)}")
    return markdown_table(header, lines) + note + _executions(summaries)


def _unchecked(rows: list[Row]) -> str:
    """A sentence naming the rows whose paper column README's "Reference figures to check" doubts: the table file is
    what gets quoted, and it printed them as the paper's without a word."""
    names = [row.name for row in rows if not row.paper_checked]
    if not names:
        return ""
    return (f" Paper figures not yet checked against the paper itself (README, \"Reference figures to check\"): "
            f"{', '.join(names)}; check them before quoting a comparison.")


def _selection(rows: list[Row], summaries: dict[str, list[dict]]) -> str:
    """How the runs chose their selected epoch, as their summary.json says (rows grouped by rule): a fixed sentence
    said "best accuracy on the noisy 10% validation split" under runs that `--set train.select=last` had made keep
    their last epoch. Runs from before the rule was recorded are left out."""
    by_rule: dict[str, list[str]] = {}
    for row in rows:
        for rule in dict.fromkeys(s["selection_rule"] for s in summaries[row.name] if "selection_rule" in s):
            by_rule.setdefault(rule, []).append(row.name)
    if len(by_rule) < 2:
        return "".join(f" Selected epoch: {rule}." for rule in by_rule)
    return " Selected epoch: " + "; ".join(f"{', '.join(names)}: {rule}" for rule, names in by_rule.items()) + "."


def _executions(summaries: dict[str, list[dict]]) -> str:
    """How each row's runs ran (summary.json's `execution`: what the speed switches' `auto` chose, and whether
    torch.compile worked), by device: whether a row's wall time had CUDA graphs behind it. Runs from before the field
    was recorded are left out."""
    counts = Counter((row, s["device"], s["execution"]) for row, runs in summaries.items() for s in runs
                     if "execution" in s)
    if not counts:
        return ""
    lines = [f"- {row} on {device}: {execution} ({count} run{'s' * (count > 1)})"
             for (row, device, execution), count in sorted(counts.items())]
    return "\n\nHow the runs ran:\n" + "\n".join(lines)


def _ours(runs: list[dict], column: str) -> list[str]:
    """Our figure of `column` at the selected and at the last epoch, mean ± std over the runs."""
    return [mean_std(s.get(f"{column}_{which}", float("nan")) for s in runs) for which in ("at_best", "last")]


if __name__ == "__main__":
    run_script(main)
