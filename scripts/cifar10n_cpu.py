"""CE against ELR on CIFAR-10 with CIFAR-10N `worse_label` (40% real human noise), on a CPU.

The full setting (ResNet-34, 50,000 images, 120 epochs) needs a GPU. This is the short version the
issue asks for: a stratified subset of the JPEG archive, a network small enough for two cores,
the same subset, noisy labels, validation split and seed for both losses, a few seeds. It writes a
Markdown report with clean test accuracy, how many wrongly labelled training examples each network
ends up predicting as their wrong label (memorization) or their true label, the precision and
recall of the suspected-mislabel table, wall time and the exact command; and the memorization plot.
Runs resume: a finished run is read back, a killed one continues from its checkpoint.
"""

from __future__ import annotations

import argparse
import lzma
import platform
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pandas as pd

from paper_runs import (ROOT, WALL_TIME_COUNTED, ListOption, markdown_table, mean_std, output_file, output_folder,
                        refuse_repeats, refuse_seed_overrides, run_or_resume, run_script, seed_folder,
                        seed_in_words)

from elr_mri.atomic_files import atomic_write_text
from elr_mri.config import RunConfig, load_config
from elr_mri.plots import plot_memorization_comparison
from preprocess.folder_locks import held_lock
from preprocess.user_errors import nonempty_path

CONFIG = ROOT / "configs" / "cifar10n" / "cpu_subset.yaml"
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar" / "cifar10-jpeg.tar.xz"
HUMAN_LABELS = ROOT.parent / "shared" / "data" / "cifar" / "CIFAR-10_human.npz"
EXTRACTING = ".cifar10-extracting-"  # the scratch folder an extraction fills before renaming its cifar10/ into place
EXTRACTION_LOCK = ".cifar10-extraction.lock"  # held (lockf) by the call extracting, so that no scratch is in use


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if not args.human_labels.is_file():
        raise FileNotFoundError(f"no CIFAR-10N labels at {args.human_labels}; pass --human-labels FILE "
                                "(CIFAR-10_human.npz or .pt; the release's .pt: github.com/UCSC-REAL/cifar-10-100n)")
    for loss in args.losses:  # a typo in --losses or --set stops here, not after the first loss has trained
        load_config(CONFIG, [f"loss.name={loss}", *args.overrides])
    data_root = _data_root(args)
    started = time.perf_counter()
    rows: list[dict] = []
    curves: dict[str, pd.DataFrame] = {}  # loss -> metrics.csv of seed 0
    for seed in range(args.seeds):
        seeds_used = seed_folder(seed, args.overrides)  # seed3-noise0-split0 for --set seed=3: not seed0's runs
        for loss in args.losses:
            run_dir = args.out / f"{loss}-{seeds_used}"
            overrides = [f"loss.name={loss}", f"seed={seed}", f"data.split_seed={seed}",
                         f"data.root={data_root}", f"data.noise.human_labels={args.human_labels}",
                         *args.overrides]
            summary = run_or_resume(CONFIG, overrides, run_dir)
            metrics = pd.read_csv(run_dir / "metrics.csv")
            curves.setdefault(loss, metrics)  # seed 0 goes into the figure
            rows.append(_row(loss, seed, summary, metrics.iloc[-1]))
            print(f"seed {seeds_used.removeprefix('seed')} {loss:4s}: test {rows[-1]['test_acc_last']:.3f} (last), "
                  f"memorized {rows[-1]['memorized']:.3f}, {summary['wall_seconds']:.0f} s", flush=True)
    figure = args.results.with_name(args.results.stem + "_memorization.png")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    cfg = load_config(CONFIG, args.overrides)
    plot_memorization_comparison(curves, figure, title=f"CIFAR-10N {cfg.data.noise.human_key} subset, "
                                 f"{seed_in_words(0, args.overrides)}")
    text = _report(pd.DataFrame(rows), args, cfg, time.perf_counter() - started, figure)
    atomic_write_text(text, args.results)
    print(text)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=nonempty_path, help="CIFAR-10 image folder, or the folder holding it as "
                        "cifar10/ (default: extract the shared JPEG archive into data/ and use data/cifar10)")
    parser.add_argument("--human-labels", type=nonempty_path, default=HUMAN_LABELS,
                        help="CIFAR-10N label file (default: ../shared/data/cifar/CIFAR-10_human.npz beside the "
                             "project)")
    parser.add_argument("--losses", nargs="+", action=ListOption, default=["ce", "elr"],
                        help="each a loss.name (default: ce elr)")
    parser.add_argument("--seeds", type=int, default=2,
                        help="seeds 0..N-1, each training every loss on the same subset, labels and split (default 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of configs/cifar10n/cpu_subset.yaml, e.g. --set train.epochs=10")
    parser.add_argument("--out", type=output_folder, default=ROOT / "runs" / "cifar10n_cpu",
                        help="run directories go here (default: runs/cifar10n_cpu in the project)")
    parser.add_argument("--results", type=output_file, default=ROOT / "bench" / "results" / "cifar10n_cpu.md",
                        help="the Markdown report, its memorization figure beside it (default: the recorded one, "
                             "bench/results/cifar10n_cpu.md; pass another file to keep that)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    refuse_seed_overrides(parser, args.overrides, args.seeds, "model and split")
    refuse_repeats(parser, "--losses", args.losses)
    return args


def _data_root(args: argparse.Namespace) -> Path:
    """The image folder the runs read: --data-root's (`_image_folder`), checked here where it lacks train/, as the
    loader's "image folder not found" named the config keys data.name and data.root, not --data-root; or the shared
    archive extracted into data/. A `--set data.name` of another reader (CIFAR-10's pickles) is left to it."""
    if args.data_root is None:
        return _extracted_archive(ROOT / "data")
    folder = _image_folder(args.data_root)
    if load_config(CONFIG, args.overrides).data.name == "imagefolder" and not (folder / "train").is_dir():
        raise FileNotFoundError(f"--data-root {args.data_root}: no CIFAR-10 images there (train/ and test/ of class "
                                f"folders, or cifar10/ holding them); {_extract_by_hand(ARCHIVE)}, or leave "
                                "--data-root out to extract that archive into data/")
    return folder


def _image_folder(data_root: Path) -> Path:
    """The CIFAR-10 image folder --data-root names: itself, or its cifar10/ where it is the folder that holds that, as
    reproduce_paper_table.py's --data-root does (the run stopped at "image folder not found" once its labels loaded)."""
    if not (data_root / "train").is_dir() and (data_root / "cifar10" / "train").is_dir():
        return data_root / "cifar10"
    return data_root


def _extract_by_hand(archive: Path) -> str:
    """The shell commands that extract `archive` where this script will not, and the option that then reads it."""
    return f"extract them with `mkdir -p DIR && tar -xJf {shlex.quote(str(archive))} -C DIR` and pass --data-root DIR"


def _refuse_unfiltered_extraction(archive: Path) -> None:
    """Refuse a Python whose tarfile has no extraction filters (PEP 706: 3.10.12, 3.11.4, 3.12 and later;
    requires-python takes 3.10.0): there `extractall(filter="data")` failed with a TypeError traceback, and extracting
    without the filter would let a replaced shared copy write outside data/."""
    if not hasattr(tarfile, "data_filter"):
        raise ValueError(f"Python {platform.python_version()}'s tarfile cannot extract the images in {archive} "
                         "safely (its extraction filters came with 3.10.12, 3.11.4 and 3.12); "
                         f"{_extract_by_hand(archive)}, or use a newer Python")


def _extracted_archive(dest: Path, archive: Path = ARCHIVE) -> Path:
    """data/cifar10 from the shared JPEG archive, extracted once (a few seconds; data/ is git-ignored).

    Extracted beside it and then renamed into place: an extraction cut short (Ctrl-C, a damaged copy) left train/
    part-filled, which every later call took as extracted, so the human labels' 'extract the data set again' could
    not be followed by running the script again."""
    folder = dest / "cifar10"
    if (folder / "train").is_dir():
        return folder
    if not archive.is_file():
        raise FileNotFoundError(f"no CIFAR-10 images: {folder / 'train'} is missing and so is {archive}; "
                                "pass --data-root DIR (a CIFAR-10 image folder with train/ and test/)")
    if folder.exists():
        raise FileExistsError(f"{folder} exists without train/ (left by an extraction cut short?); remove it and run "
                              "again to extract the archive there, or pass --data-root DIR")
    _refuse_unfiltered_extraction(archive)
    print(f"extracting {archive} into {dest}", flush=True)
    dest.mkdir(parents=True, exist_ok=True)
    with held_lock(dest / EXTRACTION_LOCK, dest, "cifar10n_cpu.py extracting the archive",
                   elsewhere=", or pass --data-root DIR"):
        if not (folder / "train").is_dir():  # a call that held the lock until just now may have extracted it
            _remove_killed_extractions(dest)
            _extract(archive, folder)
    return folder


def _remove_killed_extractions(dest: Path) -> None:
    """The scratch folders of extractions killed outright (SIGKILL, a node lost), which no cleanup ran for: each held
    up to the whole 236 MB of images and stayed in data/ through every later call. Called under the extraction lock,
    so none of them is still being filled."""
    for scratch in dest.glob(f"{EXTRACTING}*"):
        shutil.rmtree(scratch, ignore_errors=True)


def _extract(archive: Path, folder: Path) -> None:
    """The archive's cifar10/ extracted beside `folder`, then renamed into place."""
    with tempfile.TemporaryDirectory(prefix=EXTRACTING, dir=folder.parent) as scratch:
        try:
            with tarfile.open(archive, "r:xz") as tar:
                tar.extractall(scratch, filter="data")
        except (tarfile.TarError, EOFError, lzma.LZMAError) as err:
            raise ValueError(f"{archive}: cannot be extracted ({type(err).__name__}: {err}); copy the archive "
                             "again") from None
        (Path(scratch) / "cifar10").rename(folder)


def _row(loss: str, seed: int, summary: dict, last: pd.Series) -> dict:
    return {
        "loss": loss, "seed": seed,
        "test_acc_best": summary["test_acc_at_best"], "test_acc_last": summary["test_acc_last"],
        "memorized": last["noisy_pred_given"], "noisy_pred_true": last["noisy_pred_true"],
        "clean_pred_true": last["clean_pred_true"],
        "precision": summary["mislabels"]["precision"], "recall": summary["mislabels"]["recall"],
        "wrong_labels": summary["mislabels"]["truly_mislabelled"] / summary["train_examples"],
        "wall_s": summary["wall_seconds"], "device": summary["device"],
    }


def _seeds_trained(args: argparse.Namespace) -> str:
    """The seeds the runs trained with, as their folders name them (`seed_in_words`): 'Seeds 0..N-1', or one seed's,
    which a --set may have set ('Seeds 0..0' was said of `--seeds 1 --set seed=3`)."""
    if args.seeds > 1:  # no --set of a seed beside several (`refuse_seed_overrides`)
        return f"Seeds 0..{args.seeds - 1}"
    return seed_in_words(0, args.overrides).capitalize()


def _report(runs: pd.DataFrame, args: argparse.Namespace, cfg: RunConfig, seconds: float, figure: Path) -> str:
    """The Markdown results page: setting, command, table (mean ± std over seeds), figure. The label set and hold-out
    are `cfg`'s (`--set data.noise.human_key=aggre_label` was reported as worse_label), with the share of wrong
    training labels measured on the runs."""
    columns = ["test_acc_best", "test_acc_last", "memorized", "noisy_pred_true", "clean_pred_true",
               "precision", "recall"]
    lines = [[loss, *(mean_std(group[c], 1) for c in columns), f"{group['wall_s'].mean():.0f}"]
             for loss, group in runs.groupby("loss", sort=False)]
    header = ["loss", "test acc, selected epoch", "test acc, last epoch", "wrong labels predicted as given "
              "(memorized)", "wrong labels predicted as true", "clean labels predicted as true",
              "mislabel precision", "mislabel recall", "wall s / run"]
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "scripts/cifar10n_cpu.py", *sys.argv[1:]])
    key = cfg.data.noise.human_key
    wrong = mean_std(runs.groupby("seed")["wrong_labels"].first(), 1)  # every loss of a seed trains on the same labels
    return f"""# CIFAR-10N {key} on a CPU: CE against ELR

Command (from the project root): `{command}`

Setting: {cfg.data.train_subset} training images drawn stratified from the CIFAR-10 JPEG archive, their
CIFAR-10N `{key}` (real human noise; {wrong}% of the labels trained on are wrong),
{cfg.data.val_fraction:.0%} of them held out (noisy) for model selection; {cfg.data.test_subset}
clean test images. Model `{cfg.model.name}` (hidden {cfg.model.hidden}), `{cfg.optim.name}` lr {cfg.optim.lr}, momentum
{cfg.optim.momentum}, weight decay {cfg.optim.weight_decay}, {cfg.train.epochs} epochs, batch {cfg.train.batch_size},
augmentation {cfg.data.augment}; ELR β {cfg.loss.beta}, λ {cfg.loss.lam}. {_seeds_trained(args)}; per seed every
loss sees the same subset, labels and split. Device: {", ".join(sorted(set(runs["device"])))}. Wall time: {runs["wall_s"].sum():.0f} s
of training in all ({WALL_TIME_COUNTED}; this call took {seconds:.0f} s).

Mean ± population std (ddof 0) over seeds, in percent. Memorization columns are the last epoch's training predictions
(the paper's Figure 1); the mislabel columns come from ELR's (and ELR+'s) targets, for any other loss from its last
predictions.

{markdown_table(header, lines)}

![memorization]({figure.name})
"""


if __name__ == "__main__":
    run_script(main)
