"""The reproduction scripts' run helper: a finished run is read back only when it is the run asked for."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from elr_mri.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "configs" / "digits" / "elr_sym40.yaml"
QUIET = ["train.progress=false", "train.tensorboard=false", "train.device=cpu"]


def test_a_run_is_read_back_continued_or_refused_by_its_settings(import_script, tmp_path: Path) -> None:
    paper_runs = import_script("paper_runs")
    run = tmp_path / "elr-seed0"
    first = paper_runs.run_or_resume(DIGITS, ["train.epochs=1", *QUIET], run)
    written = (run / "metrics.csv").stat().st_mtime_ns
    assert paper_runs.run_or_resume(DIGITS, ["train.epochs=1", *QUIET], run) == first  # read back, not retrained
    assert (run / "metrics.csv").stat().st_mtime_ns == written
    with pytest.raises(ConfigError, match=r"trained with loss.lam = 3.0.*pass another --out, or delete"):
        paper_runs.run_or_resume(DIGITS, ["train.epochs=1", "loss.lam=1", *QUIET], run)
    paper_runs.run_or_resume(DIGITS, ["train.epochs=2", *QUIET], run)  # more epochs continue the run
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]
    with pytest.raises(ConfigError, match=r"was asked for 2 epochs, so train.epochs = 1 cannot shorten it; pass "):
        paper_runs.run_config(DIGITS, ["train.epochs=1", *QUIET], run)  # as a dry run checks it, training nothing
    settings = (run / "config.yaml").read_text()
    half = "".join(settings.splitlines(keepends=True)[:settings.count("\n") // 2])
    for cut in (settings[:settings.index("selection_rule:")], half):  # its last key lost, or half its lines
        (run / "config.yaml").write_text(cut)  # read with defaults: read back as the run, or "made with other settings"
        with pytest.raises(ConfigError, match=r"config.yaml: no selection_rule, .* so the file is cut short"):
            paper_runs.run_or_resume(DIGITS, ["train.epochs=2", *QUIET], run)


def test_a_setting_the_run_does_not_read_leaves_it_read_back(import_script, tmp_path: Path) -> None:
    """`cifar10n_cpu.py --set loss.lam=2` into the folder of an earlier call refused its finished CE run, which reads
    no λ, as "trained with loss.lam = 3.0" and told to delete it: the same CE would have trained again. Only the ELR
    run, which reads λ, is a run of other settings."""
    paper_runs = import_script("paper_runs")
    run = tmp_path / "ce-seed0"
    first = paper_runs.run_or_resume(DIGITS, ["loss.name=ce", "train.epochs=1", *QUIET], run)
    written = (run / "metrics.csv").stat().st_mtime_ns
    for unread in ("loss.lam=2", "elr_plus.ema_decay=0.99", "schedule.eta_min=0.5"):  # CE, a multistep schedule
        assert paper_runs.run_or_resume(DIGITS, ["loss.name=ce", unread, "train.epochs=1", *QUIET], run) == first
    assert (run / "metrics.csv").stat().st_mtime_ns == written  # read back, not retrained
    with pytest.raises(ConfigError, match=r"trained with loss.name = 'ce'.*start a new run for loss.name = 'elr'"):
        paper_runs.run_config(DIGITS, ["loss.lam=2", "train.epochs=1", *QUIET], run)  # ELR reads it: a new run


def test_a_new_run_is_refused_for_what_train_refuses_at_a_runs_start(import_script, tmp_path: Path) -> None:
    """run_config says it refuses a new run as `train` would at its start; it checked the noise settings alone, so an
    MRI run's flips without augmentation (mri_demo's, mri_n1200's --set) passed it and stopped in `train` instead."""
    config = ROOT / "configs" / "adni" / "cpu_small.yaml"  # data.augment: false
    with pytest.raises(ConfigError, match=r"^data.mri.flip not read with data.augment: false"):
        import_script("paper_runs").run_config(config, ["data.mri.flip=true"], tmp_path / "new")


def test_ctrl_c_in_a_script_is_one_line_saying_how_to_go_on(import_script, capsys) -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        import_script("paper_runs").run_script(interrupted)
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip().endswith(
        "interrupted; run the same command again: finished runs are read back and the interrupted ones continue "
        "from their last checkpoint")


def test_a_figure_some_seeds_lack_says_how_many_seeds_it_covers(import_script) -> None:
    """A CE run that flags no label has no mislabel precision: the digits table's pair40 CE cell read '100.0' among
    three-seed figures when it was one seed's."""
    mean_std = import_script("paper_runs").mean_std
    assert mean_std([1.0, None, float("nan")], 1) == "100.0 (1 of 3 seeds)"
    assert mean_std([0.9, 1.0, None], 1) == "95.0 ± 5.0 (2 of 3 seeds)"
    assert mean_std([0.9, 1.0, 0.95], 1) == "95.0 ± 4.1"
    assert mean_std([None, float("nan")], 1) == "–"
    assert mean_std(iter([0.5, 0.7]), 1) == "60.0 ± 10.0"  # any iterable, read once


def test_a_seeds_folder_and_words_name_the_seeds_apart_wherever_any_two_differ(import_script) -> None:
    """`seeds_used` gives (model, noise, split): one number where all three agree, each named where any differs."""
    paper_runs = import_script("paper_runs")
    assert (paper_runs.seed_folder(2, []), paper_runs.seed_in_words(2, [])) == ("seed2", "seed 2")
    assert paper_runs.seed_folder(0, ["seed=3", "data.noise.seed=3"]) == "seed3-noise3-split0"
    assert paper_runs.seed_in_words(0, ["data.noise.seed=5"]) == "seed 0 (noise 5, split 0)"


def test_a_run_killed_after_its_last_checkpoint_is_resumed_from_it(import_script, tmp_path: Path) -> None:
    """The module's promise: killed runs resume from their last checkpoint (a new start would refuse the folder)."""
    paper_runs = import_script("paper_runs")
    run = tmp_path / "elr-seed0"
    first = paper_runs.run_or_resume(DIGITS, ["train.epochs=1", *QUIET], run)
    (run / "summary.json").unlink()  # killed after last.pt, before the summary
    assert paper_runs.run_status(run) == "resume"
    resumed = paper_runs.run_or_resume(DIGITS, ["train.epochs=1", *QUIET], run)
    assert resumed["best_epoch"] == first["best_epoch"] == 1
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1]


def test_a_markdown_tables_delimiter_row_has_a_cell_for_every_column(import_script) -> None:
    """GitHub's Markdown reads lines as a table only where the delimiter row has as many cells as the header."""
    table = import_script("paper_runs").markdown_table(["row", "ELR"], [["sym40", 0.5]])
    assert table == "| row | ELR |\n|---|---|\n| sym40 | 0.5 |"


def test_a_figure_over_seeds_is_their_mean_not_their_median(import_script) -> None:
    """0.5, 0.6 and 1.0: mean 0.7, population std √(0.14 / 3) ≈ 0.216 (the median, 0.6, is no mean)."""
    assert import_script("paper_runs").mean_std([0.5, 0.6, 1.0], 1) == "70.0 ± 21.6"
