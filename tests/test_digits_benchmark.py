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


def test_elr_plus_runs_take_the_settings_scaled_to_a_digits_run(import_script, tmp_path: Path, monkeypatch) -> None:
    """They ran with the config's ramp of 40,000 steps against a 150-epoch run's 2,700, with no option to change it,
    and so gave other figures than bench_mislabel_source's ELR+ runs of the same digits."""
    monkeypatch.setattr(sys, "argv", ["scripts/digits_benchmark.py", "--settings", "sym40", "--losses", "elr_plus",
                                      "--seeds", "1", "--epochs", "1", "--out", str(tmp_path)])
    import_script("digits_benchmark").main()
    settings = yaml.safe_load((tmp_path / "sym40" / "elr_plus-seed0" / "config.yaml").read_text())["elr_plus"]
    assert (settings["alternation"], settings["ema_ramp_steps"]) == ("epoch", 1500)
