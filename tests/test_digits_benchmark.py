"""The digits benchmark's report: the published table (bench/results/digits.md) must say how it was made."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def test_the_report_records_its_command_and_threads(import_script, tmp_path: Path, monkeypatch) -> None:
    """Its figures move with the CPU and the thread count (README, Digits), so the file names the command line and
    the threads beside the table, as every other file in bench/results names its command."""
    argv = ["--settings", "sym40", "--losses", "ce", "--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "runs"),
            "--results", str(tmp_path / "digits.md")]
    monkeypatch.setattr(sys, "argv", ["scripts/digits_benchmark.py", *argv])
    import_script("digits_benchmark").main()
    report = (tmp_path / "digits.md").read_text()
    assert f"Command (from the project root): `.venv/bin/python scripts/digits_benchmark.py {' '.join(argv)}`" in report
    assert "intra-op thread(s)" in report
    assert "| sym40 | ce | " in report
    # summary.json's wall_seconds: a resume adds to the last checkpoint's, so a stopped call's lost part is not in it
    assert "resumed parts included, but not what a stopped call trained past its last checkpoint" in report
    assert "every call" not in report


def test_elr_plus_runs_take_the_settings_scaled_to_a_digits_run(import_script, tmp_path: Path, monkeypatch,
                                                                capfd) -> None:
    """They ran with the config's ramp of 40,000 steps against a 150-epoch run's 2,700, with no option to change it,
    and so gave other figures than bench_mislabel_source's ELR+ runs of the same digits. Then a fixed 1,500 steps
    outlasted a shorter --epochs (30 epochs: the averages' momentum ended at 0.13 of its value, the engine said): the
    ramp is the official 57% of the run's own steps, and the published 150 epochs keep their 1,500."""
    monkeypatch.setattr(sys, "argv", ["scripts/digits_benchmark.py", "--settings", "sym40", "--losses", "elr_plus",
                                      "--seeds", "1", "--epochs", "2", "--out", str(tmp_path)])
    benchmark = import_script("digits_benchmark")
    benchmark.main()
    settings = yaml.safe_load((tmp_path / "sym40" / "elr_plus-seed0" / "config.yaml").read_text())["elr_plus"]
    assert (settings["alternation"], settings["ema_ramp_steps"]) == ("epoch", 20)  # 57% of 2 epochs of 18 steps
    assert "ema_ramp_steps" not in capfd.readouterr().err  # the engine's note of a ramp the run does not finish
    assert benchmark.digits_elr_plus_settings(benchmark.BASE_CONFIG, ["loss.name=elr_plus"]) == [
        "elr_plus.alternation=epoch", "elr_plus.ema_ramp_steps=1500"]


def test_losses_and_settings_given_twice_run_every_one(import_script, tmp_path: Path, monkeypatch) -> None:
    """`--losses ce --losses elr` ran ELR alone, as argparse keeps the last list of an option given twice, and the
    table had no CE row to compare it with."""
    monkeypatch.setattr(sys, "argv", ["scripts/digits_benchmark.py", "--settings", "sym40", "--losses", "ce",
                                      "--losses", "elr", "--seeds", "1", "--epochs", "1", "--out", str(tmp_path)])
    import_script("digits_benchmark").main()
    report = (tmp_path / "results.md").read_text()
    assert "| sym40 | ce | " in report and "| sym40 | elr | " in report
