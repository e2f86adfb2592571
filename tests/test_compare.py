"""The comparison table's labels, its paired differences against the CNN and the runs it refuses. Seconds,
nothing trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from elr_mri.config import config_to_dict, load_config
from elr_mri.evaluation.compare import (HEADLINE_METRICS, comparison_table, paired_differences, record_comparison,
                                        remove_comparisons_citing, require_same_scans, require_same_splits, run_labels,
                                        wide_table)

ROOT = Path(__file__).parents[1]
CLASSES = ["CN", "MCI", "AD"]


def test_run_labels_keep_the_shortest_path_suffix_that_tells_runs_apart() -> None:
    assert run_labels([Path("runs/x/elr"), Path("other/elr"), Path("runs/ce")]) == ["x/elr", "other/elr", "ce"]
    assert run_labels([Path("a/b/elr"), Path("c/b/elr")]) == ["a/b/elr", "c/b/elr"]
    assert run_labels([Path("/elr"), Path("/x/elr")]) == ["/elr", "x/elr"]  # the root tells /elr apart
    assert run_labels([Path("runs/x/elr/"), Path("runs/y/../x/ce")]) == ["elr", "ce"]  # spelled paths normalised


def test_the_same_run_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="elr: the same run twice in one comparison"):
        run_labels([Path("runs/elr"), Path("runs/./elr")])


def _scored(folder: Path, given: list[str], predicted: list[str]) -> Path:
    """An evaluation folder as `evaluate` writes it (predictions.csv, summary.json), one scan per participant."""
    folder.mkdir(parents=True)
    probs = np.array([[0.8 if c == p else 0.1 for c in CLASSES] for p in predicted])
    frame = pd.DataFrame({"participant_id": [f"s{i:02d}" for i in range(len(given))], "session_id": "ses-M00",
                          "given": given, "predicted": predicted,
                          **{f"p_{c}": probs[:, k] for k, c in enumerate(CLASSES)}})
    frame.to_csv(folder / "predictions.csv", index=False)
    accuracy = float(np.mean(np.array(given) == np.array(predicted)))
    interval = {"estimate": accuracy, "low": accuracy, "high": accuracy}
    metrics = {m: interval for m in HEADLINE_METRICS}
    (folder / "summary.json").write_text(json.dumps({"participant": metrics}))
    return folder


def test_paired_differences_set_each_method_against_the_cnn_on_the_same_participants(tmp_path: Path) -> None:
    given = ["CN", "MCI", "AD"] * 10
    cnn = _scored(tmp_path / "eval-test", given, given[:24] + ["MCI"] * 6)  # wrong on 4 of the last 6
    other = _scored(tmp_path / "other" / "eval-test", given, given)  # right on all 30
    _scored(cnn / "baselines" / "voxels_linear_svm", given, ["MCI"] * 30)  # right on the 10 MCI
    _scored(cnn / "baselines" / "earlier_one", given, given)  # left by an earlier command, not named
    table = paired_differences(cnn, "elr", {"ce": other}, ["voxels_linear_svm"], n_boot=200)
    assert list(table["method"].unique()) == ["ce", "voxels_linear_svm"] and set(table["minus"]) == {"elr"}
    accuracy = table[table["metric"] == "accuracy"].set_index("method")
    assert accuracy.loc["ce", "estimate"] == pytest.approx(4 / 30)
    assert accuracy.loc["voxels_linear_svm", "estimate"] == pytest.approx(10 / 30 - 26 / 30)
    assert accuracy.loc["voxels_linear_svm", "high"] < 0 < accuracy.loc["ce", "high"]
    assert accuracy.loc["ce", "low"] >= 0  # ce is never wrong where the CNN is right: no resample puts it behind
    methods = comparison_table(cnn, "elr", others={"ce": other}, baselines=["voxels_linear_svm"])["method"]
    assert list(methods.unique()) == ["elr", "ce", "voxels_linear_svm"]


def test_a_baseline_scored_before_the_calibration_metrics_reads_as_undefined_there(tmp_path: Path) -> None:
    """Its summary.json has no ece or brier: the comparison (and the demo report reading it) stopped at a KeyError."""
    given = ["CN", "MCI", "AD"] * 3
    cnn = _scored(tmp_path / "eval-test", given, given)
    earlier = _scored(cnn / "baselines" / "voxels_linear_svm", given, ["MCI"] * 9) / "summary.json"
    summary = json.loads(earlier.read_text())
    summary["participant"] = {m: v for m, v in summary["participant"].items() if m not in ("ece", "brier")}
    earlier.write_text(json.dumps(summary))
    table = comparison_table(cnn, "elr").set_index(["method", "metric"])
    assert np.isnan(table.loc[("voxels_linear_svm", "ece"), "estimate"])
    assert table.loc[("voxels_linear_svm", "accuracy"), "estimate"] == pytest.approx(1 / 3)
    assert table.loc[("elr", "ece"), "estimate"] == 1.0  # as _scored writes it


def test_both_tables_name_their_level_and_how_many_participants_they_rest_on(tmp_path: Path) -> None:
    """comparison.csv had no n and paired_differences.csv neither n nor level: read apart from the printed tables,
    0.0 [-33.3, 44.4] could be of 9 participants or of 900, of scans or of participants."""
    given = ["CN", "MCI", "AD"] * 3
    cnn = _scored(tmp_path / "eval-test", given, given)
    _scored(cnn / "baselines" / "voxels_linear_svm", given, ["MCI"] * 9)
    table = comparison_table(cnn, "elr")
    paired = paired_differences(cnn, "elr", n_boot=20)
    assert set(table["participants"]) == set(paired["participants"]) == {9}
    assert set(paired["level"]) == {"participant"} and list(paired.columns[:4]) == ["method", "minus", "level", "metric"]


def test_a_paired_difference_rests_on_the_participants_both_methods_scored(tmp_path: Path) -> None:
    """A run scored on 6 of the CNN's 9 participants: their difference covers those 6, not the 9 either scored."""
    given = ["CN", "MCI", "AD"] * 3
    cnn = _scored(tmp_path / "eval-test", given, given)
    fewer = _scored(tmp_path / "other" / "eval-test", given[:6], given[:6])
    assert set(paired_differences(cnn, "elr", {"ce": fewer}, [], n_boot=20)["participants"]) == {6}

def test_the_printed_table_keeps_the_csvs_order_of_methods_and_metrics(tmp_path: Path) -> None:
    given = ["CN", "MCI", "AD"] * 4
    cnn = _scored(tmp_path / "eval-test", given, given)
    _scored(cnn / "baselines" / "voxels_linear_svm", given, ["MCI"] * 12)
    table = comparison_table(cnn, "run_ce (ce)", others={"elr": _scored(tmp_path / "elr", given, given)})
    header, _, *rows = wide_table(table).splitlines()  # pandas puts the rows' name ("method") on a line of its own
    assert header.split() == ["metric", *HEADLINE_METRICS]  # not auc_macro, auc_micro, balanced_accuracy
    assert [row.split()[0] for row in rows] == ["run_ce", "elr", "voxels_linear_svm"]
    assert rows[-1].split()[1:3] == ["33.3", "[33.3,"]


def test_paired_differences_need_the_cnn_scored(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="predictions.csv not found: score the run first"):
        paired_differences(tmp_path / "eval-test", "elr")


def test_evaluations_of_other_scans_are_refused_side_by_side(tmp_path: Path) -> None:
    given = ["CN", "MCI", "AD"] * 2
    cnn = _scored(tmp_path / "eval-test", given, given)
    same = _scored(tmp_path / "same" / "eval-test", given, ["CN"] * 6)
    require_same_scans(cnn, {"ce": same})  # other predictions of the same scans: comparable
    relabelled = _scored(tmp_path / "relabelled" / "eval-test", ["CN", "MCI", "AD", "CN", "MCI", "MCI"], given)
    with pytest.raises(ValueError, match=r"relabelled/eval-test scored other scans than .*eval-test \(2 scan\(s\) "
                                         r"with their given diagnosis in one only, e.g. s05 ses-M00 AD\)"):
        require_same_scans(cnn, {"ce": same, "other": relabelled})


def test_an_evaluation_of_fewer_scans_is_refused_side_by_side(tmp_path: Path) -> None:
    """A run that scored five of the six scans is not scored on the same test set, though each scan it has matches."""
    given = ["CN", "MCI", "AD"] * 2
    cnn = _scored(tmp_path / "eval-test", given, given)
    fewer = _scored(tmp_path / "fewer" / "eval-test", given[:5], given[:5])
    for ours, theirs in ((cnn, fewer), (fewer, cnn)):
        with pytest.raises(ValueError, match=r"scored other scans than .*\(1 scan\(s\) with their given diagnosis in "
                                             r"one only, e.g. s05 ses-M00 AD\)"):
            require_same_scans(ours, {"ce": theirs})


def _run(folder: Path, config: str, overrides: list[str], splits: dict[str, str] | None) -> Path:
    """A run folder as `elr-mri train` leaves it for comparisons: config.yaml and, for MRI runs, splits.csv."""
    folder.mkdir(parents=True)
    cfg = load_config(ROOT / "configs" / config, overrides)
    (folder / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    if splits is not None:
        pd.DataFrame({"participant_id": list(splits), "split": list(splits.values())}).to_csv(
            folder / "splits.csv", index=False)
    return folder


WHOLE = {**{f"s{i}": "train" for i in range(6)}, "s6": "val", "s7": "test"}


def test_a_run_on_a_training_subset_is_refused_as_such_not_as_other_splits(tmp_path: Path) -> None:
    """Both runs split one manifest with one seed; the subset run's splits.csv lists only the participants it kept."""
    whole = _run(tmp_path / "whole", "adni/cpu_small.yaml", [], WHOLE)
    kept = {pid: split for pid, split in WHOLE.items() if pid not in ("s4", "s5")}
    subset = _run(tmp_path / "subset", "adni/cpu_small.yaml", ["data.train_subset=4"], kept)
    message = (f"{subset} trained on a data.train_subset of 4 training scans, so its splits.csv lists 4 training "
               f"participants where {whole} lists 6; compare runs trained on the whole training split")
    for run, other in ((whole, subset), (subset, whole)):
        with pytest.raises(ValueError, match=f"^{message}"):
            require_same_splits(run, other)
    moved = _run(tmp_path / "moved", "adni/cpu_small.yaml", [], {**WHOLE, "s0": "val"})
    with pytest.raises(ValueError, match="used other participant splits than"):  # no subset: the splits differ
        require_same_splits(whole, moved)


def test_runs_whose_splits_files_list_the_same_splits_in_another_order_compare(tmp_path: Path) -> None:
    """splits.csv follows its manifest's row order; two manifests of the same participants in another order split
    them alike, and their runs are comparable."""
    first = _run(tmp_path / "first", "adni/cpu_small.yaml", [], WHOLE)
    reordered = _run(tmp_path / "reordered", "adni/cpu_small.yaml", [], dict(reversed(WHOLE.items())))
    require_same_splits(first, reordered)
    require_same_splits(reordered, first)


def test_an_image_run_is_refused_as_not_an_mri_run(tmp_path: Path) -> None:
    mri = _run(tmp_path / "mri", "adni/cpu_small.yaml", [], WHOLE)
    digits = _run(tmp_path / "digits", "digits/elr_sym40.yaml", [], None)
    for run, other in ((mri, digits), (digits, mri)):
        with pytest.raises(ValueError, match=f"^{digits} trained on digits, not MRI scans: --compare-with and "
                                             "--drop-suspected are for MRI runs only"):
            require_same_splits(run, other)
    with pytest.raises(FileNotFoundError, match="no splits.csv, so not an MRI run directory"):
        require_same_splits(mri, tmp_path / "nothing")


def test_a_comparison_goes_with_a_compared_runs_scores_unless_made_again_since(tmp_path: Path) -> None:
    """The scores of a run compared in another run's table are removed when that run trains on: the table goes with
    them, unless it was made again since (then it holds the run's new scores, or left the run out)."""
    ours, theirs, elsewhere = (tmp_path / name / "eval-HLD" for name in ("elr", "ce", "gce"))
    for folder in (ours, theirs, elsewhere):
        folder.mkdir(parents=True)
    comparisons = [ours / "comparison.csv", ours / "paired_differences.csv"]
    for table in comparisons:
        table.write_text("method\nelr\nce\n")
    record_comparison(ours, {"ce (ce)": theirs, "gce (gce)": elsewhere})
    assert json.loads((theirs / "compared_in.json").read_text()) == json.loads(
        (elsewhere / "compared_in.json").read_text())
    comparisons[0].write_text("method\nelr\ngce\n")  # made again since, without ce
    assert remove_comparisons_citing(theirs) == [] and all(table.exists() for table in comparisons)
    record_comparison(ours, {"gce (gce)": elsewhere})
    assert remove_comparisons_citing(elsewhere) == [ours.resolve()]
    assert not any(table.exists() for table in comparisons)
    assert remove_comparisons_citing(tmp_path / "never_compared") == []


def test_a_run_compared_twice_takes_both_comparisons_with_its_scores(tmp_path: Path) -> None:
    """A run's note lists every comparison that read it, kept as each new one is recorded; an unreadable note (a
    list where a mapping belongs) counts as none rather than stopping the comparison."""
    first, second, theirs = (tmp_path / name / "eval-HLD" for name in ("elr", "gce", "ce"))
    for folder in (first, second, theirs):
        folder.mkdir(parents=True)
        (folder / "comparison.csv").write_text("method\nce\n")
    (theirs / "compared_in.json").write_text("[]")
    record_comparison(first, {"ce (ce)": theirs})
    record_comparison(second, {"ce (ce)": theirs})
    assert sorted(remove_comparisons_citing(theirs)) == sorted([first.resolve(), second.resolve()])
    assert not (first / "comparison.csv").exists() and not (second / "comparison.csv").exists()


def test_a_comparison_recorded_from_a_relative_folder_is_found_from_another_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`elr-mri evaluate` may be given a run folder relative to where it is started, and the compared run trains on
    later from somewhere else: the note must name the comparison's folder absolutely, or the table is looked for
    (and not found) under the later working directory and stays, presenting the run's earlier scores."""
    ours, theirs = tmp_path / "elr" / "eval-HLD", tmp_path / "ce" / "eval-HLD"
    for folder in (ours, theirs):
        folder.mkdir(parents=True)
    (ours / "comparison.csv").write_text("method\nelr\nce\n")
    monkeypatch.chdir(tmp_path)
    record_comparison(Path("elr") / "eval-HLD", {"ce (ce)": theirs})
    monkeypatch.chdir(theirs)
    assert remove_comparisons_citing(theirs) == [ours.resolve()]
    assert not (ours / "comparison.csv").exists()
