"""Do the speed switches keep the accuracy? The plain path against device-resident batches, bf16, compile.

Issue 8 asks that the fast path (device-resident batches with batched crop/flip, bf16 autocast,
channels-last, torch.compile: the CUDA defaults) give the same accuracy as the plain path (per-item
DataLoader, fp32 eager) within noise. Each variant trains the same seeds (same noisy labels, split
and batch order); the table gives clean test accuracy, mean ± std over seeds, and the paired
difference from the plain path. Cases: the digits ELR run (no augmentation) and the CIFAR-10N
worse_label CPU subset with random crop and flip switched on (the augmentation the device path
re-implements). Runs on the CPU here; `--device cuda` on a GPU. Writes bench/results/fast_path_accuracy.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from results_file import command_line, write_report
from seeded_runs import percent_mean_std, train_seeds
from preprocess.user_errors import nonempty_path, output_file

ROOT = Path(__file__).resolve().parents[1]
CIFAR_IMAGES = ROOT / "data" / "cifar10"
HUMAN_LABELS = ROOT.parent / "shared" / "data" / "cifar" / "CIFAR-10_human.npz"  # or --human-labels
CASES = {
    "digits": (ROOT / "configs" / "digits" / "elr_sym40.yaml", []),
    "cifar10n-subset": (ROOT / "configs" / "cifar10n" / "cpu_subset.yaml",
                        ["data.augment=true", f"data.root={CIFAR_IMAGES}"]),
}
VARIANTS = {
    "plain: DataLoader, fp32, eager": ["train.loader=dataloader", "train.precision=fp32",
                                      "train.channels_last=false", "train.compile=false"],
    "device-resident, fp32, eager": ["train.loader=device", "train.precision=fp32",
                                     "train.channels_last=false", "train.compile=false"],
    "device-resident, bf16, channels-last, compiled": ["train.loader=device", "train.precision=bf16",
                                                       "train.channels_last=true", "train.compile=true"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="applied to every case and variant, e.g. --set train.epochs=10")
    parser.add_argument("--out", type=output_file, default=ROOT / "bench" / "results" / "fast_path_accuracy.md")
    parser.add_argument("--human-labels", type=nonempty_path, default=HUMAN_LABELS,
                        help="cifar10n-subset's CIFAR-10N labels (default: ../shared/data/cifar/CIFAR-10_human.npz "
                             "beside the project; or the release's CIFAR-10_human.pt of "
                             "github.com/UCSC-REAL/cifar-10-100n)")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    switched = {switch.split("=")[0] for switches in VARIANTS.values() for switch in switches} | {"train.device"}
    for override in args.overrides:  # applied last, it would make the variants alike under their own names
        if override.split("=")[0].strip() in switched:
            parser.error(f"--set {override}: each variant sets {override.split('=')[0].strip()} itself (the rows "
                         "compare them); --device picks the device")
    if "cifar10n-subset" in args.cases and not ((CIFAR_IMAGES / "train").is_dir() and args.human_labels.is_file()):
        sys.exit(f"cifar10n-subset needs {CIFAR_IMAGES} (mkdir -p data && tar -xJf ../shared/data/cifar/cifar10-jpeg.tar.xz -C data/) "
                 f"and {args.human_labels} (--human-labels FILE); or leave it out with --cases digits")
    labels = {"cifar10n-subset": [f"data.noise.human_labels={args.human_labels}"]}

    sections = []
    for case in args.cases:
        config, case_overrides = CASES[case]
        results = {}
        for variant, switches in VARIANTS.items():
            overrides = [*case_overrides, *labels.get(case, []), *switches, f"train.device={args.device}",
                         *args.overrides]
            results[variant] = train_seeds(config, overrides, args.seeds)
            accs = [run["test_acc_last"] for run in results[variant]]
            print(f"{case} | {variant}: test acc (last) {', '.join(f'{100 * a:.2f}' for a in accs)}", flush=True)
        settings = " ".join([f"`{config.relative_to(ROOT)}`", *case_overrides[:1]])
        sections.append(f"### {case} ({settings})\n\n" + _table(results))
    text = (f"# Fast-path switches against the plain path: clean test accuracy\n\n"
            f"Command: `{command_line()}`\n\n"
            f"Machine: {platform.machine()}, torch {torch.__version__}, device {args.device}. Seeds 0..{args.seeds - 1}; "
            f"seed s fixes the noisy labels, the validation split and the batch order for every variant.\n\n"
            + "\n\n".join(sections) + "\n")
    print(text)
    write_report(args.out, text)


def _table(results: dict[str, list[dict]]) -> str:
    """Accuracy at the last and the validation-selected epoch, and the paired difference from the first variant."""
    lines = ["| variant | test acc, last | test acc, selected | last − plain, paired: mean ± std (min, max) "
             "| training s / run (wall_seconds) |",
             "|---|---|---|---|---|"]
    plain = np.array([run["test_acc_last"] for run in next(iter(results.values()))])
    for variant, runs in results.items():
        last = np.array([run["test_acc_last"] for run in runs])
        selected = np.array([run["test_acc_at_best"] for run in runs])
        differences = last - plain
        spread = f"({100 * differences.min():+.2f}, {100 * differences.max():+.2f})"
        seconds = np.mean([run["wall_seconds"] for run in runs])
        lines.append(f"| {variant} | {percent_mean_std(last)} | {percent_mean_std(selected)} "
                     f"| {percent_mean_std(differences)} {spread} | {seconds:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
