"""`elr-mri evaluate` and `elr-mri explain`: score or explain a run's checkpoint, print what the numbers rest on,
and put the runs and baselines compared with it in one table."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from elr_mri.evaluation import N_BOOT
from preprocess.folder_locks import held_lock

if TYPE_CHECKING:
    from elr_mri.evaluation.metrics_report import MetricsReport

EVALUATION_LOCK = ".evaluate.lock"  # held (lockf) by the `elr-mri evaluate` writing an evaluation folder
EVALUATION_WRITERS = "`elr-mri evaluate` (or `train` scoring its holdout)"  # who holds it, as a refusal names them
EXPLANATION_LOCK = ".explain.lock"  # held (lockf) by the `elr-mri explain` writing an explanation folder
EXPLANATION_WRITERS = "`elr-mri explain`"
NAMED_OF_MANY = 5  # the metrics a note names of a list too long for a line; metrics.csv holds them all


def evaluate_command(args: argparse.Namespace) -> int:
    """`elr-mri evaluate`: score the run, then the baselines and the runs to compare with it, if asked for. The
    compared runs' evaluation folders are held too, from the start: an `evaluate` (or `train` scoring its holdout)
    of one of them at the same time would otherwise write its files there between this command's."""
    _refuse_evaluate_arguments(args)
    _check_before_scoring(args)
    from elr_mri.evaluation.evaluation_folder import evaluation_dir

    with ExitStack() as writing:
        for run in (args.run, *args.compare_with):  # each run's folder this command writes and then reads back
            writing.enter_context(exclusive_output(evaluation_dir(run, args.manifest, args.checkpoint, args.test_set)))
        eval_dir = evaluate_and_print(args.run, args.manifest, args.checkpoint, args.bootstrap, args.test_set)
        baselines = _evaluate_baselines(args) if args.baselines else []
        if args.baselines or args.compare_with:
            _score_and_compare(args, eval_dir, baselines)
    return 0


@contextmanager
def exclusive_output(out: Path, lock: str = EVALUATION_LOCK, writers: str = EVALUATION_WRITERS) -> Iterator[None]:
    """One writer at a time in a run's output folder, holding its `lock` file: one `elr-mri evaluate` (or `train`
    scoring its holdout there at the end) in an eval-*/, one `elr-mri explain` in an explain-*/. Two would each write
    their files, leaving one's summary.json beside the other's metrics or maps. A folder it made and left empty (the
    command refused) goes again, so that readers of every such folder do not meet one without results."""
    if not out.parent.is_dir():
        yield  # no run there: loading it says so
        return
    made = not out.exists()
    out.mkdir(exist_ok=True)
    with held_lock(out / lock, out, writers, elsewhere=""):
        try:
            yield
        finally:  # removed while still locked: no other writer holds a lock on a removed file
            left = [path.name for path in out.iterdir()] if out.is_dir() else []  # a run's clean-up took it
            if made and left == [lock]:
                shutil.rmtree(out, ignore_errors=True)


def _refuse_evaluate_arguments(args: argparse.Namespace) -> None:
    """Options of `evaluate` that contradict each other, refused before anything is read."""
    if (args.volumes or args.drop_suspected) and not args.baselines:
        raise ValueError("--volumes and --drop-suspected belong to --baselines; add --baselines")
    if args.test_set != "test" and (args.manifest or args.baselines):
        raise ValueError(f"--test-set {args.test_set} scores one of an image run's own test sets; drop --manifest "
                         "and --baselines, which are for MRI runs")
    if args.bootstrap < 2:
        raise ValueError(f"--bootstrap {args.bootstrap}: the 95% intervals need resamples; pass {N_BOOT} (the default) "
                         "or at least 2")


def _check_before_scoring(args: argparse.Namespace) -> None:
    """What would stop `evaluate` part way, checked before the first run is scored (which takes minutes): runs that
    cannot be compared, an output folder another manifest's results hold, baseline inputs that are refused."""
    _refuse_resamples_past_memory(args.run, args.bootstrap)
    if args.compare_with:  # before the evaluations: a run that cannot be compared is known at once
        from elr_mri.evaluation.compare import require_same_splits, run_labels

        run_labels([args.run, *args.compare_with])  # refuses the same run twice
        for other in args.compare_with:
            require_same_splits(args.run, other)
    from elr_mri.evaluation.evaluation_folder import evaluation_dir, require_own_folder

    for run in (args.run, *args.compare_with):  # before any scoring: a folder another manifest's results hold
        require_own_folder(evaluation_dir(run, args.manifest, args.checkpoint, args.test_set), args.manifest)
    if args.baselines and (args.run / "config.yaml").is_file():  # what the baselines refuse, before the CNN is scored
        from elr_mri.baselines.evaluate import OneDiagnosisLeft, check_baseline_inputs

        try:
            check_baseline_inputs(args.run, args.volumes, args.manifest, args.drop_suspected)
        except OneDiagnosisLeft as err:  # the flagging run's property, not a typo: say how to go on
            raise OneDiagnosisLeft(f"{err}: drop --drop-suspected to fit the baselines on every training scan") from err


def _refuse_resamples_past_memory(run: Path, n_boot: int) -> None:
    """The resamples' values past memory, refused from the run's class count before its predictions (minutes on a
    holdout or a GPU-sized test set), not after them; a run without data_shape.json is refused when it loads."""
    from elr_mri.engine.run_records import read_data_shape
    from elr_mri.evaluation.metrics import refuse_resamples_past_memory

    classes = (read_data_shape(run, required=False) or {}).get("num_classes") if run.is_dir() else None
    if isinstance(classes, int):
        refuse_resamples_past_memory(n_boot, classes)


def evaluate_and_print(run_dir: Path, manifest: Path | None, checkpoint: str = "best",
                        n_boot: int = N_BOOT, test_set: str = "test", *, note_precision: bool = True) -> Path:
    """Evaluate a run's checkpoint on `manifest` (None: its test set `test_set`), print the metrics and
    return the evaluation's folder; `note_precision` as `load_run`'s."""
    from elr_mri.evaluation.evaluate import evaluate_run
    from elr_mri.evaluation.evaluation_folder import evaluation_dir

    reports = evaluate_run(run_dir, manifest, checkpoint, n_boot, test_set, note_precision=note_precision)
    eval_dir = evaluation_dir(run_dir, manifest, checkpoint, test_set)
    _note_scoring_caveats(run_dir, eval_dir)
    _print_metrics(reports, eval_dir, _scored_set_words(manifest, test_set))
    _note_undefined(reports, eval_dir / "metrics.csv")
    _note_rarely_defined(reports, n_boot, eval_dir / "metrics.csv")
    return eval_dir


def _counted(count: int, noun: str) -> str:
    """`count` `noun`s, as a sentence says them: a holdout of one scan was "1 examples, 1 participants"."""
    return f"{count} {noun}{'s' * (count != 1)}"


def _print_metrics(reports: dict[str, MetricsReport], eval_dir: Path, scored_on: str) -> None:
    """Each level's metrics with their intervals, under a line saying what was scored and how to read the figures
    (metrics.csv holds fractions, the screen percent); per-class AUCs of more classes than a screen shows stay in
    the CSV."""
    from elr_mri.plots import LEGIBLE_CLASSES

    print(f"results: {eval_dir} ({scored_on})")
    print(f"  {_interval_words(next(iter(reports.values())))}")
    for level, report in reports.items():
        people = "" if level == "image" else f", {_counted(report.n_participants, 'participant')}"
        print(f"  {level} level ({_counted(report.n_examples, 'example')}{people}):")
        many = len(report.class_names) > LEGIBLE_CLASSES
        for metric, interval in report.metrics.items():
            if not (many and metric in {f"auc_{name}" for name in report.class_names}):
                print(f"    {metric:18s} {interval}")
        if many:
            print(f"    (the {len(report.class_names)} per-class AUCs: {eval_dir / 'metrics.csv'})")


def _scored_set_words(manifest: Path | None, test_set: str) -> str:
    """Which set the printed figures are of: a holdout and a run's test split both print as `eval-<name>`."""
    scored = f"the holdout {manifest}" if manifest is not None else (
        "the run's test split" if test_set == "test" else f"the run's test set {test_set}")
    return f"{scored}, against its given labels"


def _interval_words(report: MetricsReport) -> str:
    """How to read `estimate [low, high]`: the unit, the interval's level and kind, and what was resampled."""
    from elr_mri.evaluation.metrics_report import PRINTED_UNITS

    drawn = "images" if report.unit == "image" else "participants (all scans of each)"
    return (f"in {PRINTED_UNITS}, each figure estimate [low, high]: a {100 * report.confidence:.0f}% percentile "
            f"interval over {report.n_boot} bootstrap resamples of {drawn}")


# auc_micro where a class is absent: defined, but every score given to that class is a negative, mostly an easy one
_MICRO_AMONG_ABSENT = ("; auc_micro counts the scores given to the absent classes as negatives only, which can lift it "
                       "above the AUCs of the classes present")


def _first_few(names: list[str], rest: str) -> list[str]:
    """`names` as a note lists them: past `LEGIBLE_CLASSES`, the first few, a count and `rest`, where they all are; a
    WebVision set lacking classes had a note naming each of its dozens of undefined AUCs in one line."""
    from elr_mri.plots import LEGIBLE_CLASSES

    if len(names) <= LEGIBLE_CLASSES:
        return names
    return [*names[:NAMED_OF_MANY], f"and {len(names) - NAMED_OF_MANY} more ({len(names)} in all; {rest})"]


def _note_undefined(reports: dict[str, MetricsReport], csv: Path) -> None:
    """Say why a metric is nan (on a set of any example, only an AUC can be): the set lacks the examples of a class
    it needs, or has those of its class alone (auc_AD of an AD-only holdout), and which classes the set has; a long
    list names its first few and the `csv` (metrics.csv) holding them all."""
    from elr_mri.plots import LEGIBLE_CLASSES

    undefined = sorted({metric for report in reports.values() for metric, interval in report.metrics.items()
                        if interval.estimate != interval.estimate})  # NaN
    if undefined:
        report = next(iter(reports.values()))
        present, every = report.balanced_accuracy_classes, report.class_names
        has = ", ".join(present) if len(every) <= LEGIBLE_CLASSES else f"{len(present)} of the {len(every)} classes"
        micro = report.metrics["auc_micro"].estimate
        named = _first_few(undefined, f"the rows of {csv} with no estimate")
        print(f"note: {', '.join(named)} undefined (nan; null in summary.json): the AUC of a class needs examples "
              "given it and examples given another, and auc_macro the AUC of every class; this set has examples given "
              f"{has} only{_MICRO_AMONG_ABSENT if len(present) < len(every) and micro == micro else ''}",
              file=sys.stderr)


def _note_rarely_defined(reports: dict[str, MetricsReport], n_boot: int, csv: Path) -> None:
    """Say which intervals rest on fewer than 95% of the resamples: an AUC or the balanced accuracy is undefined
    in a resample that drew no participant of a class, and its interval then comes from the resamples that drew
    every class. A set of one participant has no resamples at all. A long list names its first few and the `csv`
    (metrics.csv, column resamples) holding them all."""
    from elr_mri.evaluation.metrics_report import RARELY_DEFINED, rarely_defined_note, too_few_to_resample

    unit = next(iter(reports.values())).unit
    alone = {level: report.n_participants for level, report in reports.items() if report.n_participants < 2}
    for level, count in alone.items():
        print(f"note: no intervals at {level} level (nan): {too_few_to_resample(count, unit)}", file=sys.stderr)
    rare = [f"{metric} ({level}) in {interval.resamples}"
            for level, report in reports.items() if level not in alone for metric, interval in report.metrics.items()
            if interval.rarely_defined(n_boot)]
    if rare:
        named = _first_few(rare, f"the rows of {csv} with fewer than {RARELY_DEFINED * n_boot:g} resamples")
        print(f"note: {rarely_defined_note(named, n_boot, unit)}", file=sys.stderr)


def _note_scoring_caveats(run_dir: Path, eval_dir: Path, done: str = "scored",
                          overlap: str = "these scores count them, so they are inflated") -> None:
    """Say so when the scored run is still training (or was killed while extended): its checkpoint is not the
    run's result yet; and name the participants or scans shared with training that
    data.mri.allow_participant_overlap let through, which inflate the scores. For the run evaluated and for
    each run compared with it. `done`: what the command did with the checkpoint (`explain`: explained);
    `overlap`: what the shared scans did to its results."""
    about = json.loads((eval_dir / "summary.json").read_text())
    if not about["run_finished"]:
        print(f"note: {run_dir} has not finished training (no summary.json); {done} its {about['checkpoint']} "
              f"checkpoint so far, from epoch {about['checkpoint_epoch']}", file=sys.stderr)
    for shared in about.get("participant_overlap_notes", []):
        print(f"note: {run_dir}: {shared}: {overlap}", file=sys.stderr)


def _evaluate_baselines(args: argparse.Namespace) -> list[str]:
    """Fit and score the baselines `args` ask for; returns the names of those it scored."""
    from elr_mri.baselines.evaluate import evaluate_baselines

    if not args.volumes:
        print("baselines: no --volumes CSV, so only the voxel SVM (run `elr-mri volumes` for the volume baseline)")
    scored = list(evaluate_baselines(args.run, args.volumes, args.manifest, None, args.bootstrap, args.checkpoint))
    if args.drop_suspected:
        scored += evaluate_baselines(args.run, args.volumes, args.manifest, args.drop_suspected, args.bootstrap,
                                     args.checkpoint)
    return scored


def _score_and_compare(args: argparse.Namespace, eval_dir: Path, baselines: list[str]) -> None:
    """Score the --compare-with runs, then print the CNN, those runs and the `baselines` scored by this command in
    one table (also comparison.csv) and their paired differences; baseline results an earlier command left in
    eval_dir are not this comparison's."""
    from elr_mri.config import load_config
    from elr_mri.evaluation.compare import (comparison_table, paired_differences, record_comparison,
                                            require_same_scans, run_labels, wide_table)
    from elr_mri.evaluation.evaluate import evaluate_run
    from elr_mri.evaluation.metrics_report import PRINTED_DIFFERENCE_UNITS, PRINTED_UNITS
    from elr_mri.atomic_files import atomic_write_text

    runs = [args.run, *args.compare_with]
    labels = [f"{name} ({load_config(run / 'config.yaml').loss.name})" for run, name in zip(runs, run_labels(runs))]
    others = {}
    for other, label in zip(args.compare_with, labels[1:]):
        evaluate_run(other, args.manifest, args.checkpoint, args.bootstrap, args.test_set)
        others[label] = other / eval_dir.name
        _note_scoring_caveats(other, others[label])
    require_same_scans(eval_dir, others)
    table = comparison_table(eval_dir, labels[0], others=others, baselines=baselines)
    atomic_write_text(table.to_csv(index=False), eval_dir / "comparison.csv")
    record_comparison(eval_dir, others)  # now: a command cut short during the paired bootstrap leaves the table too
    print(f"participant level ({table['participants'].iloc[0]} participants), in {PRINTED_UNITS}, 95% intervals "
          f"({eval_dir / 'comparison.csv'}):")
    print(wide_table(table))
    paired = paired_differences(eval_dir, labels[0], others, baselines, args.bootstrap)
    atomic_write_text(paired.to_csv(index=False), eval_dir / "paired_differences.csv")
    print(f"minus {labels[0]}, paired over the same participants, in {PRINTED_DIFFERENCE_UNITS}, 95% intervals; one "
          f"that excludes 0 shows a difference ({eval_dir / 'paired_differences.csv'}):")
    print(wide_table(paired))


def explain_command(args: argparse.Namespace) -> int:
    """`elr-mri explain`: saliency maps of the run's checkpoint, with the notes `evaluate` gives on it."""
    from elr_mri.evaluation.evaluation_folder import explanation_dir, require_own_folder
    from elr_mri.evaluation.explain import explain_run

    out = explanation_dir(args.run, args.manifest, args.checkpoint)
    require_own_folder(out, args.manifest)  # a read-only run is refused before its lock file is made there
    with exclusive_output(out, EXPLANATION_LOCK, EXPLANATION_WRITERS):
        explain_run(args.run, args.manifest, args.checkpoint)
    print(f"saliency maps: {out}")
    _note_scoring_caveats(args.run, out, done="explained",
                          overlap="these maps average them in, with what the network learned of them in training")
    return 0
