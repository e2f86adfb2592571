"""The demo's report: one Markdown page a person reads top to bottom, with its figures beside it.

It says first that the cohort is simulated, then shows each stage's evidence: the cohort and its
label noise, preprocessing QC, the regional volumes against the simulated ones, learning curves and
memorization, the metrics with intervals on the test split and the holdout (the CNNs beside the linear
baselines), the saliency maps where `elr-mri explain` made any, the same predictions scored against the
true diagnosis (ELR − CE paired), how well each method's suspected-mislabel table finds the flipped
labels, and where the time went. The two results sections are `report_results`'.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from elr_mri.config import load_run_config
from elr_mri.atomic_files import atomic_write_text
from elr_mri.engine.diagnostics import COLLAPSED_TABLE
from elr_mri.engine.selection import selection_rule
from elr_mri.evaluation.explain import map_file_stem
from elr_mri.plots import line_style_key, plot_learning_curves, plot_memorization_comparison
from elr_mri.report_results import metrics_section, test_split_first, truth_section, warning_list
from elr_mri.simulate.disease import DIAGNOSES
from elr_mri.volumes.recovery import read_truth, recovery_table

__all__ = ["write_demo_report"]


def write_demo_report(out: Path, runs: dict[str, Path], cohort: Path, processed: Path, volumes: Path,
                      settings: dict[str, Any], timings: dict[str, float]) -> Path:
    """Write `out/report.md` (and its figures under `out/figures/`); returns the report's path."""
    figures = out / "figures"
    metrics = {loss: pd.read_csv(run / "metrics.csv") for loss, run in runs.items()}
    plot_learning_curves(metrics, figures / "learning_curves.png")
    plot_memorization_comparison(metrics, figures / "memorization.png", title="simulated cohort, training scans")
    sections = [
        _cohort_section(cohort, settings),
        _preprocess_section(processed, out),
        _volumes_section(volumes, cohort),
        _training_section(runs),
        metrics_section(runs, out),
        *_saliency_section(runs, out),
        truth_section(runs, read_truth(cohort / "truth.csv")),
        _mislabel_section(runs),
        _timing_section(timings),
    ]
    path = out / "report.md"
    atomic_write_text("\n\n".join(sections) + "\n", path)
    return path


def _cohort_section(cohort: Path, settings: dict[str, Any]) -> str:
    truth = read_truth(cohort / "truth.csv")
    flipped = (truth["diagnosis"] != truth["true_diagnosis"]).groupby(truth["cohort"]).mean()
    stages = pd.CategoricalDtype(DIAGNOSES, ordered=True)  # by stage, as the tables below: CN, MCI, AD
    truth = truth.astype({"diagnosis": stages, "true_diagnosis": stages})
    counts = pd.crosstab([truth["cohort"], truth["true_diagnosis"]], truth["diagnosis"])
    ages = truth.groupby(["cohort", "true_diagnosis"], observed=True)["age"].agg(["mean", "std"]).round(1)
    ages["std"] = ages["std"].map(lambda std: "–" if pd.isna(std) else std)  # one scan: no spread, not "nan"
    return "\n".join([
        "# elr-mri demo: CE against ELR on a simulated Alzheimer's cohort",
        "",
        "**These scans are simulated, not patients.** The cohort was made by `elr-mri simulate-cohort` from the "
        "MNI152 template: per-subject anatomy, graded hippocampal / entorhinal atrophy and ventricular enlargement "
        "for MCI and AD, random head pose, bias field and noise, written in native space. Use it to check the "
        "pipeline and to measure what label-noise methods recover, not to make clinical claims.",
        "",
        f"Settings: {json.dumps(settings, default=str)}",
        "",
        "## Cohort and label noise",
        "Scans by true diagnosis (rows) and the diagnosis the manifest gives (columns): off-diagonal cells are the "
        "simulated clinician disagreements (CN↔MCI, MCI↔AD). The true labels are used for scoring only.",
        "",
        _markdown(counts),
        "",
        "Share of scans' labels flipped: " + ", ".join(f"{site} {100 * rate:.1f}%" for site, rate in flipped.items()),
        "",
        "Age by site and true diagnosis (years):",
        "",
        _markdown(ages),
    ])


# what the preprocessing QC figures are: a reader who never ran ANTs met "NCC" and "head-foreground Dice" unexplained
QC_WORDS = ("NCC is the normalised cross-correlation of a registered scan with the template inside the template's "
            "brain (1: the same image up to brightness and contrast); Dice the overlap of the scan's head with the "
            "template's (1: the same outline). QC flags a scan for a person to look at when either is low or its NCC "
            "lies far below the batch's (`qc_reason` in the preprocessed manifest.csv says why).")


def _preprocess_section(processed: Path, out: Path) -> str:
    manifest = pd.read_csv(processed / "manifest.csv")
    failures = processed / "failures.csv"
    failed = len(pd.read_csv(failures)) if failures.exists() and failures.stat().st_size > 0 else 0
    overlays = sorted(processed.rglob("*_qc.png"))[:3]
    lines = [
        "## Preprocessing (N4 + affine registration to MNI152, 2 mm)",
        f"{len(manifest)} scans processed, {failed} failed, {int(manifest['qc_flag'].sum())} flagged by QC. "
        f"NCC with the template: mean {manifest['qc_ncc'].mean():.3f}, lowest {manifest['qc_ncc'].min():.3f}; "
        f"head-foreground Dice: mean {manifest['qc_mask_dice'].mean():.3f}. {QC_WORDS}",
        "",
        "Template contours over three registered scans:",
        "",
    ]
    lines += [f"![QC overlay]({_relative(png, out)})" for png in overlays]
    return "\n".join(lines)


def _training_section(runs: dict[str, Path]) -> str:
    rule = selection_rule(load_run_config(next(iter(runs.values()))))  # a config.yaml cut short: one line, as evaluate
    return "\n".join([
        "## Training",
        f"Same participant splits{_split_sizes_words(next(iter(runs.values())))} and seed for every method; "
        f"checkpoint selection: {rule}.",
        "",
        "Training loss, and each epoch's accuracy on the validation and test splits, scan by scan against their "
        f"given (noisy) labels ({line_style_key(runs)}):",
        "",
        "![learning curves](figures/learning_curves.png)",
        "",
        f"What the networks predict for the training scans whose given label is wrong ({line_style_key(runs)})"
        f"{_mislabelled_count_words(runs)}:",
        "",
        "![memorization](figures/memorization.png)",
        *_run_warnings(runs),
    ])


def _split_sizes_words(run: Path) -> str:
    """How many participants each split of `run` holds (its splits.csv), so that a checkpoint selected on the
    validation split is read as chosen by that many participants' noisy labels (the demo's: 5); "" without the file."""
    path = run / "splits.csv"
    if not path.is_file():
        return ""
    splits = pd.read_csv(path, dtype={"participant_id": str})
    counts = splits[splits["used"]]["split"].value_counts() if "used" in splits else splits["split"].value_counts()
    return (f" ({counts.get('train', 0)} training, {counts.get('val', 0)} validation and {counts.get('test', 0)} test "
            "participants)")


def _mislabelled_count_words(runs: dict[str, Path]) -> str:
    """How many training scans each point of the memorization figure is a share of: at the demo's smaller sizes
    it is one or two, and a curve at 1.0 read as "memorised them all" (a 6-scan run: 1 scan)."""
    for run in runs.values():
        found = json.loads((run / "summary.json").read_text()).get("mislabels")
        if found:  # the same training split for every run: the first count stands for all
            count = found["truly_mislabelled"]
            return f"; each point is a share of {count} scan{'s' * (count != 1)}"
    return ""


def _run_warnings(runs: dict[str, Path]) -> list[str]:
    """The runs' own collapse warnings (summary.json), so a class-prior network is named, not only scored."""
    lines = []
    for loss, run in runs.items():
        for warning in json.loads((run / "summary.json").read_text()).get("warnings", []):
            lines.append(f"- **{loss}**: {warning}")
    return warning_list("training", lines)


def _saliency_section(runs: dict[str, Path], out: Path) -> list[str]:
    """The maps `elr-mri explain` wrote into the runs (explain-*/ with its summary.json, written last), where a user
    made any (the demo makes none), saying what they average: a map of the scans given AD reads as the network's
    view of AD, and on a noisy cohort some of those scans are not AD and most may be predicted otherwise."""
    lines = []
    for loss, run in runs.items():
        explained = run.glob("explain-*")
        for folder in sorted(explained, key=lambda found: test_split_first(found.name.removeprefix("explain-"))):
            if (folder / "summary.json").is_file():
                summary = json.loads((folder / "summary.json").read_text())
                lines += ["", f"{loss}, {folder.name}: " + " ".join(_saliency_links(folder, summary, out))]
    return ["\n".join([
        "## Saliency maps (`elr-mri explain`)",
        "Each map is the mean |∂ log p(d) / ∂ input| over every scan whose *given* diagnosis is d, whatever the "
        "network predicted of it (where labels are noisy, some of those scans truly have another); beside "
        "each, how many scans it averages, how many of them the network predicted as given and how much of the map "
        "its largest scan gives (the gradient fades where the network is sure, so its least sure scans dominate).",
        *lines,
    ])] if lines else []


def _saliency_links(folder: Path, summary: dict[str, Any], out: Path) -> list[str]:
    """Each map's PNG with how many scans it averages, how many of them were predicted as given and how much of the
    map its largest scan gives (a mean of scans the network is sure of is mostly its least sure scan's map)."""
    scans, agreed = summary.get("scans_per_map"), summary.get("predicted_as_given_per_map")
    largest = summary.get("largest_scan_share_per_map", {})  # not recorded before 2026-12-06
    if scans is None or agreed is None:  # explained before the counts were recorded
        return ["(counts not recorded: run `elr-mri explain` again for them)",
                *(f"![saliency]({_relative(png, out)})" for png in sorted(folder.glob("saliency_*.png")))]
    return [f"given {name}, {scans[name]} scan{'s' * (scans[name] != 1)}, {agreed[name]} of them predicted {name}"
            f"{_largest_scan_words(largest.get(name), scans[name])}: "
            f"![saliency given {name}]({_relative(folder / f'{map_file_stem(name)}.png', out)})" for name in scans]


def _largest_scan_words(share: float | None, scans: int) -> str:
    return "" if share is None or scans < 2 else f", the largest scan {_percent(share)} of the map"


def _volumes_section(volumes: Path, cohort: Path) -> str:
    measured = pd.read_csv(volumes, dtype={"participant_id": str})
    warps = ", ".join(sorted(measured["warp"].dropna().unique())) if "warp" in measured else "syn"
    table = recovery_table(measured, read_truth(cohort / "truth.csv")).set_index("region").round(3)
    return "\n".join([
        "## Regional volumes against the simulated truth",
        f"`elr-mri volumes`: a SyN registration of each template-space scan to MNI152 ({warps}), its Jacobian "
        "determinant times the affine's integrated over ellipsoidal regions in MNI millimetres. Scan volume over "
        "template volume, measured and simulated, mean per true diagnosis, and Pearson r over scans:",
        "",
        _markdown(table),
    ])


# what the mislabel table's columns mean: it stood under its heading alone, its precision and recall of undefined sets,
# its flags read as the selected checkpoint's (CE's last epoch, which has memorised, flags few)
MISLABEL_WORDS = (
    "Each run lists the training scans whose given diagnosis it doubts at its last epoch, not at the checkpoint the "
    "results above score (`suspected_mislabels.csv` in its folder, for a clinician to re-read): ELR where its target "
    "for the scan (a running average of the network's own predictions) puts more on another diagnosis than on the "
    "given one; CE, which keeps no targets, where its last epoch predicts another. Each list is scored here against "
    "the simulated true diagnoses: precision is the share of the flagged scans whose given label is truly wrong, "
    "recall the share of the truly mislabelled training scans that were flagged; flagging training scans at random "
    "would reach the precision in the last column, the share of them truly mislabelled.")

# the `source` column of suspected_mislabels.csv, in the report's words
FLAG_SOURCES = {"elr_target": "ELR targets", "last_epoch_prediction": "last epoch's predictions"}


def _mislabel_section(runs: dict[str, Path]) -> str:
    lines = ["## Suspected mislabels against the true diagnoses", MISLABEL_WORDS, "",
             "| method | flagged from | training scans flagged | of them truly mislabelled | of them suggesting the "
             "true diagnosis | training scans truly mislabelled | precision | recall | precision of a random flag |",
             "|---|---|---|---|---|---|---|---|---|"]
    for loss, run in runs.items():
        summary = json.loads((run / "summary.json").read_text())
        found = summary.get("mislabels")
        if found:
            right = "0" if found["precision"] is None else f"{round(found['precision'] * found['flagged'])}"
            suggesting = found.get("suggestion_true", "–")  # a run trained before it was recorded has none
            lines.append(f"| {loss} | {_flag_source(run)}{_collapsed_words(summary)} | {found['flagged']} | {right} | {suggesting} | "
                         f"{found['truly_mislabelled']} | {_percent(found['precision'])} | "
                         f"{_percent(found['recall'])} | {_chance_precision(found, summary)} |")
    return "\n".join(lines)


def _chance_precision(found: dict[str, Any], summary: dict[str, Any]) -> str:
    """The share of training scans truly mislabelled, the precision of flagging at random: the yardstick for the
    table's: a 109-scan ELR run flagged at 34% precision where 35% of the labels were wrong, no better than chance, and
    its report could not say so (bench/results/mri_demo_scaling.md)."""
    scans = summary.get("train_examples")  # a run trained before it was recorded has none
    return _percent(found["truly_mislabelled"] / scans) if scans else "–"


def _collapsed_words(summary: dict[str, Any]) -> str:
    """Where the run warned that its last epoch collapsed onto one class (summary.json), that its table is no list
    to re-review: the demo's ELR said so under Training while its row here read as any other, 15 flags, 5 right."""
    if any(COLLAPSED_TABLE in warning for warning in summary.get("warnings", [])):
        return " of a network collapsed onto one class (Training's warnings): no list to re-review"
    return ""


def _flag_source(run: Path) -> str:
    """What the run's table flagged from: a loss without targets (CE) flags its last epoch's predictions, which
    after memorisation agree with the given labels; "–" when nothing was flagged or the table predates `source`."""
    sources = pd.read_csv(run / "suspected_mislabels.csv", usecols=lambda column: column == "source")
    return FLAG_SOURCES.get(sources["source"].iloc[0], "–") if len(sources.columns) and len(sources) else "–"


def _percent(share: float | None) -> str:
    """A share as a percentage; "–" when undefined (null in summary.json: precision with nothing flagged)."""
    return "–" if share is None else f"{100 * share:.1f}%"


def _timing_section(timings: dict[str, float]) -> str:
    return "## Where the time went\nsummed over every call that worked on this folder (a resumed demo counts " \
           "the interrupted call too): " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())


def _markdown(frame: pd.DataFrame) -> str:
    """A plain Markdown table of a (multi-)indexed frame, index levels first."""
    flat = frame.reset_index()
    header = "| " + " | ".join(str(c) for c in flat.columns) + " |"
    rule = "|" + "---|" * len(flat.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in flat.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)
