"""The demo report's results: the runs' participant-level metrics on each set they were scored on (the CNNs beside
the linear baselines), and the same predictions scored against the simulated true diagnosis with ELR − CE paired;
each table with the notes its figures need (rarely defined intervals, sets too small to resample, a class absent).

Apart from `report`, which lays out the whole page: these two sections read the runs' eval-* folders and rescore
them, the rest of the report reads the cohort, preprocessing and training records.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from elr_mri.engine.run_records import read_data_shape
from elr_mri.evaluation import N_BOOT
from elr_mri.evaluation.calibration import CALIBRATION_BINS
from elr_mri.evaluation.compare import HEADLINE_METRICS, comparison_table
from elr_mri.evaluation.evaluate import one_class_balanced_accuracy
from elr_mri.evaluation.evaluation_folder import WARNINGS_KEY
from elr_mri.evaluation.metrics_report import (PRINTED_UNITS, Interval, MetricsReport, rarely_defined_note,
                                             too_few_to_resample)
from elr_mri.evaluation.truth import mean_paired_difference, participants_predicted_alike, rescore_against_truth

# ELR − CE against the truth, column by column: the decision-free AUC tells a shifted decision from a better one
PAIRED_METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "auc_macro": "macro AUC"}
LAST_CHECKPOINT = " (last checkpoint)"  # after a set scored with last.pt (`evaluate --checkpoint last`: eval-<set>-last)

__all__ = ["metrics_section", "truth_section", "test_split_first", "warning_list"]


def warning_list(stage: str, lines: list[str]) -> list[str]:
    """A stage's warnings as a list under a heading line; nothing where there are none."""
    return ["", f"Warnings from {stage}:", "", *lines] if lines else []


def metrics_section(runs: dict[str, Path], out: Path) -> str:
    """The runs' participant-level metrics, a block of rows per set scored (the run's test split first) with the
    networks in the runs' order before the baselines, as the truth table below orders them; then the figures."""
    tables = _MetricsTables()
    figures = []
    for loss, run in runs.items():
        for evaluation in sorted(run.glob("eval-*"), key=lambda folder: test_split_first(_scored_set(folder))):
            tables.add_set(loss, evaluation)
            figures.append(f"{loss}, {evaluation.name}: ![ROC]({os.path.relpath(evaluation / 'roc.png', out)}) "
                           f"![confusion]({os.path.relpath(evaluation / 'confusion_participant.png', out)}) "
                           f"![reliability]({os.path.relpath(evaluation / 'reliability_participant.png', out)})")
    return "\n".join([
        f"## Results (participant level, {PRINTED_UNITS}, 95% bootstrap intervals over participants)",
        _metrics_words(runs, tables.rows),
        "",
        *tables.lines(list(runs)),
        "",
        "### ROC curves (scan level), confusion matrices and reliability diagrams (participant level)",
        FIGURE_WORDS,
        "",
        *figures,
    ])


# what the metrics section's figures show, and how their participants are counted as the table counts them
FIGURE_WORDS = (
    "Each ROC curve is drawn over scans; each confusion matrix counts participants (a participant's scans' mean "
    "probability; one a diagnosis for a participant whose diagnosis changed between scans), as the table above "
    "does; each reliability diagram sets the participants' accuracy against their confidence (the probability of "
    f"the predicted class) in bins of {1 / CALIBRATION_BINS:g}, with each bin's count: on the diagonal, a stated 0.9 is right 90% of "
    "the time; `ece` above is the participant-weighted mean gap, `brier` the mean squared distance of the "
    "probabilities from the given diagnosis (both lower is better; brier is 0 for a network sure and right, 200 for "
    "one sure and wrong). On sets of a few dozen participants or fewer the ECE is biased upwards and its interval is "
    "its spread, not bounds on the true ECE: a calibrated network (true ECE 0.2) scored 15.6 on average on 30 "
    "participants in the README's simulation; compare ECEs on sets of one size only, and lean on brier here.")


def _metrics_words(runs: dict[str, Path], sets: Iterable[str]) -> str:
    """What the metrics table's sets and methods are, and what its figures cannot say (the labels are noisy)."""
    return (
        "`test` is the held-out participants of the training site (their labels as given, i.e. noisy); the "
        "holdout manifest is the NACC-like site (nacc_sim above), scored against its given labels, which are noisy "
        "too (the share flipped at each site is given above): neither set's figures here say how often a method "
        "finds the true diagnosis, the section after them does. Each network is one training run of one seed: "
        "the intervals cover which participants were scored, not how another seed's training would differ. "
        "Beside the CNNs: "
        "`volumes_logreg` (logistic regression on brain-normalised regional volumes + age + sex) and "
        "`voxels_linear_svm` (linear SVM on voxels averaged to 6 mm), fitted on the same training participants "
        "with the same noisy labels; `*_without_suspected` leaves out the training scans ELR flagged (absent when "
        "those flags leave a single diagnosis to train on)" + _without_suspected_words(runs) + "."
        + _last_checkpoint_words(sets))


@dataclass
class _MetricsTables:
    """The metrics table as it fills, run by run and set by set, with what its notes need."""

    rows: dict[str, dict[str, str]] = field(default_factory=dict)  # evaluated on -> method -> table row
    rare: dict[int, list[str]] = field(default_factory=dict)
    lacking: dict[str, str] = field(default_factory=dict)  # evaluated on -> what its lacking class does to the metrics
    alone: dict[str, int] = field(default_factory=dict)  # evaluated on -> its participants, where fewer than two
    warned: list[str] = field(default_factory=list)  # what `evaluate` warned of each scoring (holdout ages untrained)

    def add_set(self, loss: str, evaluation: Path) -> None:
        """The rows of one of `loss`'s eval-* folders: its network's, and each baseline's not listed yet."""
        where = _scored_set(evaluation)
        table = comparison_table(evaluation, loss)
        summary = json.loads((evaluation / "summary.json").read_text())
        given = pd.read_csv(evaluation / "predictions.csv", dtype={"participant_id": str})
        participants = given["participant_id"].nunique()
        scans = where.removesuffix(LAST_CHECKPOINT)  # its participants, whichever weights scored them
        self.add_notes(loss, where, summary, given, participants)
        for method, values in table.groupby("method", sort=False):
            shown = where if method == loss else scans  # a baseline has no checkpoint: once, beside the selected
            if method in self.rows.get(shown, {}):  # a baseline scored beside each run: the first run's row stands
                continue
            n_boot = _bootstrap_resamples(evaluation if method == loss else evaluation / "baselines" / method)
            cells = [_cell(Interval(r.estimate, r.low, r.high, None if pd.isna(r.resamples) else int(r.resamples)),
                           n_boot, f"{r.metric} on {shown}", self.rare) for r in values.itertuples()]
            self.rows.setdefault(shown, {})[method] = f"| {method} | {shown} | {participants} | {' | '.join(cells)} |"

    def add_notes(self, loss: str, where: str, summary: dict[str, Any], given: pd.DataFrame, participants: int) -> None:
        """What a scored set needs said under the table: too few participants, a class absent, evaluate's warnings."""
        scans = where.removesuffix(LAST_CHECKPOINT)
        if participants < 2:
            self.alone[scans] = participants
        every = [column.removeprefix("p_") for column in given.columns if column.startswith("p_")]
        note = _lacking_class_note(scans, summary.get("balanced_accuracy_classes", every), every, "is labelled",
                                   "confusion.csv")
        if note:
            self.lacking.setdefault(scans, note)
        self.warned += [f"- **{loss}** on {where}: {warning}" for warning in summary.get(WARNINGS_KEY, [])]

    def lines(self, networks: list[str]) -> list[str]:
        """The table, each set's networks in `networks`' order before its baselines, and its notes."""
        rank = {loss: place for place, loss in enumerate(networks)}
        ordered = [row for where in sorted(self.rows, key=test_split_first)
                   for _, row in sorted(self.rows[where].items(), key=lambda item: rank.get(item[0], len(networks)))]
        lacking = [self.lacking[where] for where in sorted(self.lacking, key=test_split_first)]
        return ["| method | evaluated on | participants | " + " | ".join(HEADLINE_METRICS) + " |",
                "|---|---|---|" + "---|" * len(HEADLINE_METRICS), *ordered, *_rare_notes(self.rare),
                *_alone_notes(self.alone), *_notes(lacking), *warning_list("scoring", self.warned)]


def _without_suspected_words(runs: dict[str, Path]) -> str:
    """How many training scans the `*_without_suspected` baselines kept, as their summary.json records it: where ELR
    flags most of a small training split (a 6-scan demo: 4), such a baseline is fitted on the few left, and its row
    read as the plain baseline's on cleaner labels."""
    fits = set()
    for run in runs.values():
        for path in run.glob("eval-*/baselines/*_without_suspected/summary.json"):
            about = json.loads(path.read_text())
            if "train_scans" in about and "dropped_suspected" in about:  # both recorded since the baselines began
                fits.add((about["train_scans"], about["dropped_suspected"]))
    return "".join(f"; here fitted on {kept} training scan{'s' * (kept != 1)}, the {dropped} flagged left out"
                   for kept, dropped in sorted(fits))


def _bootstrap_resamples(scored: Path) -> int:
    """The resamples a method's intervals were drawn from, as its own summary.json records them: the CNN rescored
    with another `--bootstrap` beside baselines the demo fitted with the default is no count for both."""
    return json.loads((scored / "summary.json").read_text()).get("bootstrap_resamples", N_BOOT)


def truth_section(runs: dict[str, Path], truth: pd.DataFrame) -> str:
    """The same predictions scored against the simulated true diagnosis, and ELR − CE paired."""
    tables = _TruthTables()
    first = next(iter(runs.values()))
    for evaluation in sorted(first.glob("eval-*"), key=lambda folder: test_split_first(_scored_set(folder))):
        tables.add_set(runs, evaluation, truth)
    return "\n".join([
        "## Results against the true diagnosis",
        "The same predictions scored against the simulated truth (which a real cohort never has): on a noisy "
        "cohort this, not the table above, says which method learned the disease rather than the noise. Participant "
        f"level, {PRINTED_UNITS}, 95% bootstrap intervals over participants.",
        "",
        *tables.truth_lines(),
        "",
        "ELR minus CE against the truth, paired over the same participants (percentage points, 95% bootstrap "
        "interval). Balanced accuracy weighs each true diagnosis equally; the macro AUC does not depend on where "
        "the decision between classes falls, so a gain in accuracy without one in AUC is a shift of the "
        "decision rather than a better ranking of the participants.",
        "",
        *tables.paired_lines(),
        "",
        _size_caveat(read_data_shape(first)["train_examples"]),
        MRI_N1200_FINDINGS,
    ])


# what `bench/results/mri_n1200.md` found, for a reader of the demo's few scans to weigh its tables against
MRI_N1200_FINDINGS = (
    "`bench/results/mri_n1200.md` in the repository measures them, over several seeds, on about 1000 training "
    "scans of the same simulator. With 30% of diagnoses flipped, ELR holds back memorisation, and with "
    "checkpoints selected on the noisy validation split (the paper's protocol) it is ahead of CE on 200 new "
    "participants of each site by about 3 points of accuracy over three seeds (large in one seed, level or "
    "behind in the others), and not reliably at the last epoch. With 45% flipped, "
    "a noisy validation split scores a perfect network no higher than the majority class, so it cannot select; "
    "validate on adjudicated labels there (data.mri.val_labels). There, scored on 200 new participants of each "
    "site, CE stopped at its best validation epoch is the better network on the training site in every "
    "setting tried, and ELR's earlier leads on a 40-participant holdout did not hold up; run to the end, "
    "ELR ranks the participants better than CE, which has memorised (macro AUC a few points higher).")


@dataclass
class _TruthTables:
    """The truth section's two tables (each method against the truth; ELR − CE paired) as they fill set by set, with
    what their notes need: one object, so that the walk over the sets and each table's rows are functions apart."""

    rows: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    rare_rows: dict[int, list[str]] = field(default_factory=dict)
    rare_differences: dict[int, list[str]] = field(default_factory=dict)
    lacking: list[str] = field(default_factory=list)
    alone: dict[str, int] = field(default_factory=dict)  # evaluated on -> its participants, where fewer than two
    listed: set[tuple[str, str]] = field(default_factory=set)  # (method, set) of the baselines' rows so far

    def add_set(self, runs: dict[str, Path], evaluation: Path, truth: pd.DataFrame) -> None:
        """The rows of one eval-* folder: each run's and each baseline's not listed yet, and ELR − CE where both
        scored it."""
        where = _scored_set(evaluation)
        scans = where.removesuffix(LAST_CHECKPOINT)
        scored = {loss: run / evaluation.name / "predictions.csv" for loss, run in runs.items()}
        baselines = {path.parent.name: path for path in sorted(evaluation.glob("baselines/*/predictions.csv"))}
        scored.update({name: path for name, path in baselines.items() if (name, scans) not in self.listed})
        for method, predictions in scored.items():
            if predictions.exists():
                shown = where
                if method in baselines:  # a baseline has no checkpoint: listed once a set, under its plain name
                    shown = scans
                    self.listed.add((method, scans))
                n_boot = _bootstrap_resamples(predictions.parent)
                self.add_row(method, shown, scans, rescore_against_truth(predictions, truth, n_boot))
        if {"ce", "elr"} <= scored.keys() and all(scored[loss].exists() for loss in ("ce", "elr")):
            self.add_difference(where, scored["ce"], scored["elr"], truth)

    def add_row(self, method: str, shown: str, scans: str, report: MetricsReport) -> None:
        """A method's row on a set (`shown` as the table names it; `scans`, without the checkpoint, as its notes
        do), and the notes its set needs: a true class absent, too few participants to resample."""
        note = _lacking_class_note(scans, report.balanced_accuracy_classes, report.class_names, "truly has", None)
        if note and note not in self.lacking:
            self.lacking.append(note)
        if report.n_participants < 2:
            self.alone[scans] = report.n_participants
        self.rows.append(f"| {method} | {shown} | {report.n_participants} | " + " | ".join(
            _cell(report.metrics[m], report.n_boot, f"{m} on {shown}", self.rare_rows)
            for m in HEADLINE_METRICS) + " |")

    def add_difference(self, where: str, ce: Path, elr: Path, truth: pd.DataFrame) -> None:
        """The row of ELR − CE on a set, paired over its participants, with as many resamples as evaluate drew for
        CE there."""
        n_boot = _bootstrap_resamples(ce.parent)
        cells = {name: mean_paired_difference([(ce, elr)], truth, n_boot, metric=metric)
                 for metric, name in PAIRED_METRIC_NAMES.items()}
        alike = participants_predicted_alike(ce, elr, truth)
        self.differences.append(f"| {where} | " + " | ".join(
            _difference_cell(cell, n_boot, f"{name} on {where}", self.rare_differences, alike)
            for name, cell in cells.items()) + " |")

    def truth_lines(self) -> list[str]:
        """The table of each method against the truth, with its notes."""
        return ["| method | evaluated on | participants | " + " | ".join(HEADLINE_METRICS) + " |",
                "|---|---|---|" + "---|" * len(HEADLINE_METRICS),
                *self.rows, *_rare_notes(self.rare_rows), *_alone_notes(self.alone), *_notes(self.lacking)]

    def paired_lines(self) -> list[str]:
        """The table of ELR − CE with its notes, or why there is none: "Not available." alone left a CE-only report's
        reader to guess."""
        if not self.differences:
            return ["Not available: no set here was scored by both a CE run and an ELR run."]
        return ["| evaluated on | " + " | ".join(PAIRED_METRIC_NAMES.values()) + " |",
                "|---|" + "---|" * len(PAIRED_METRIC_NAMES), *self.differences, *_rare_notes(self.rare_differences),
                *_alone_notes(self.alone)]


# measured (bench/results/mri_demo_scaling.md): with this many training scans or fewer the CNN did not learn the
# disease even from the true labels, in 8 or 30 epochs
UNLEARNED_TRAINING_SCANS = 41


def _size_caveat(trained_on: int) -> str:
    """What the paired differences above can say at this training size (not a fixed sentence: a larger demo
    would contradict its own verdicts)."""
    if trained_on <= UNLEARNED_TRAINING_SCANS:
        return (f"These networks trained on {trained_on} scans. At that size (the demo's default is 34) the CNN does "
                f"not learn the disease; at {UNLEARNED_TRAINING_SCANS} it did not learn it even from the true labels "
                "in 8 or 30 epochs (`bench/results/mri_demo_scaling.md`), so any difference between them here is "
                "chance.")
    return (f"These networks trained on {trained_on} scans, more than the {UNLEARNED_TRAINING_SCANS} with which the CNN "
            "did not learn the disease even from the true labels (`bench/results/mri_demo_scaling.md`): read the "
            "differences above by their intervals.")


def _cell(interval: Interval, n_boot: int, name: str, rare: dict[int, list[str]]) -> str:
    """An interval as the tables print it, marked † and named in `rare` (metric and set, with its count of
    resamples) when it rests on fewer than 95% of them: unmarked, 33.3 [33.3, 33.3] from 78 of 200 resamples reads
    as a settled figure. The methods scored on a set share its participants and so its counts: named once. One with
    no resample at all is of a set of one participant, which `_alone_notes` names ("in 0" read as a set that drew
    no participant of a class)."""
    if interval.resamples == 0 or not interval.rarely_defined(n_boot):
        return str(interval)
    which = rare.setdefault(n_boot, [])
    if f"{name} in {interval.resamples}" not in which:
        which.append(f"{name} in {interval.resamples}")
    return f"{interval} †"


def _rare_notes(rare: dict[int, list[str]]) -> list[str]:
    """The note under a table for its † intervals, as `elr-mri evaluate` prints it (a line per resample count)."""
    return ["", *(f"† {rarely_defined_note(which, n_boot)}." for n_boot, which in rare.items())] if rare else []


def _alone_notes(alone: dict[str, int]) -> list[str]:
    """The note under a table for its sets too small to resample, in `elr-mri evaluate`'s words."""
    return [line for where in sorted(alone, key=test_split_first)
            for line in ("", f"No intervals on {where} (nan): {too_few_to_resample(alone[where])}.")]


def test_split_first(where: str) -> tuple[bool, str, bool]:
    """The order of the sets in every table: the run's test split, then the holdouts by name, each scored with the
    selected checkpoint before the last."""
    scans = where.removesuffix(LAST_CHECKPOINT)
    return scans != "test", scans, where != scans


def _scored_set(evaluation: Path) -> str:
    """The set an eval-* folder scored, as the tables name it: eval-test-last is the test split scored with last.pt
    (its summary.json's checkpoint; the name's -last where it has none, or no summary.json yet), not a set named
    test-last."""
    name = evaluation.name.removeprefix("eval-")
    summary = evaluation / "summary.json"
    recorded = json.loads(summary.read_text()).get("checkpoint") if summary.is_file() else None
    if (recorded or ("last" if name.endswith("-last") else "best")) != "last":
        return name
    return name.removesuffix("-last") + LAST_CHECKPOINT


def _last_checkpoint_words(sets: Iterable[str]) -> str:
    """What the tables' "(last checkpoint)" means, where a set is so marked."""
    if not any(where.endswith(LAST_CHECKPOINT) for where in sets):
        return ""
    return (" A set marked (last checkpoint) is the same participants scored with the networks' last epoch "
            "(`elr-mri evaluate --checkpoint last`); unmarked, with the checkpoint each run selected (see Training). "
            "A baseline has no checkpoint: it is listed once, under the unmarked set.")


def _lacking_class_note(where: str, present: list[str], every: list[str], has: str,
                        recall_in: str | None) -> str | None:
    """What a set without a participant of some class does to its metrics, as `elr-mri evaluate` notes it: its
    balanced accuracy averages fewer recalls, so chance is higher (50.0 for CN, MCI), or with one class left is that
    class's recall (`recall_in` holds it elsewhere); its macro AUC is nan, as are the AUCs of the absent classes; with
    one class left, its own AUC too (it needs participants of another). Its micro AUC stays defined but ranks every
    score given to an absent class among the negatives, the easy ones of a model that rarely predicts that class: a
    demo holdout without AD read 78 micro beside per-class AUCs of 25."""
    absent = [name for name in every if name not in present]
    if not absent or not present:
        return None
    undefined = (f"the AUC of every class ({present[0]}'s too: the AUC of a class needs participants of it and of "
                 "another)" if len(present) == 1 else f"the AUC of {' and '.join(absent)}")
    balanced = (one_class_balanced_accuracy(present[0], f"every participant here {has} {present[0]}", recall_in)
                if len(present) == 1 else f"balanced_accuracy is the mean recall over {', '.join(present)} only, so "
                f"chance is {100 / len(present):.1f}, not {100 / len(every):.1f}")
    return (f"On {where} no participant {has} {' or '.join(absent)}: {balanced}; auc_macro is undefined (nan) there, "
            f"as is {undefined}; auc_micro counts the scores given to {' and '.join(absent)} as negatives only, which "
            "can lift it above the AUCs of the classes present.")


def _notes(notes: list[str]) -> list[str]:
    """Notes under a table, a paragraph each."""
    return [line for note in notes for line in ("", note)]


def _difference_cell(difference: Interval, n_boot: int, name: str, rare: dict[int, list[str]],
                     alike: int | None) -> str:
    """A paired difference with its verdict, as `_cell` prints it; where CE and ELR gave each of the `alike`
    participants the same diagnosis and so differ by 0 in every resample, that: "0.0 [0.0, 0.0] (no difference shown
    at this size)" read as a precise result of two runs that both called every participant MCI."""
    if alike is not None and difference.estimate == difference.low == difference.high == 0:
        return f"0.0 (identical predictions on all {alike} participants)"
    return f"{_cell(difference, n_boot, name, rare)} ({_verdict(difference)})"


def _verdict(difference: Interval) -> str:
    """What the paired interval of ELR − CE supports, in words the report can print as it is."""
    if np.isnan(difference.estimate):
        return "not defined: a true diagnosis is missing here"
    if np.isnan(difference.low) or np.isnan(difference.high):  # no resample, or none that drew every diagnosis
        return "no interval: too few participants of each true diagnosis to resample"
    if difference.low > 0:
        return "ELR above CE"
    if difference.high < 0:
        return "ELR below CE"
    return "no difference shown at this size"
