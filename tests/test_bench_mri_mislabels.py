"""bench/bench_mri_mislabels.py's cohort and noise, as training reads them: a cohort drawn on another grid than the
preprocessed scans' or a matrix of other than neighbouring flips would measure the table on another problem."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elr_mri.data.cohort import load_manifest
from elr_mri.data.grid import read_grid
from elr_mri.data.noise import load_transition_matrix

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> object:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("bench_mri_mislabels")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_the_flips_go_to_a_neighbouring_stage_only(tmp_path: Path) -> None:
    matrix = load_transition_matrix(_bench().write_neighbour_matrix(tmp_path / "flips.csv", 0.3))
    expected = [[0.7, 0.3, 0.0], [0.15, 0.7, 0.15], [0.0, 0.3, 0.7]]  # CN, MCI, AD: never CN↔AD
    np.testing.assert_allclose(matrix, expected)


def test_the_drawn_cohort_is_on_the_grid_the_network_reads_with_its_truth(tmp_path: Path) -> None:
    manifest = _bench().write_cohort(tmp_path, 3, 1.6)
    frame = load_manifest(manifest, ["CN", "MCI", "AD"], require_age=True)
    assert len(frame) == 3
    grid = read_grid(str(frame["image_path"].iloc[0]))
    assert grid.shape == (72, 72, 72) and grid.voxel_size_mm == (2.0, 2.0, 2.0)
    written = pd.read_csv(manifest)
    assert (written["true_diagnosis"] == written["diagnosis"]).all()  # each run injects its own flips


def test_a_setting_one_of_the_losses_refuses_ends_before_the_cohort_is_drawn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--set loss.lam_ramp_steps=2000` passes under the config's ELR but CE refuses it: that ended the benchmark in a
    traceback at CE's first run, after the cohort's ten-minute draw. Each loss's settings are checked first now."""
    bench = _bench()
    monkeypatch.setattr(sys, "argv", ["bench_mri_mislabels.py", "--losses", "elr", "ce", "--set",
                                      "loss.lam_ramp_steps=2000", "--out", str(tmp_path / "out.md")])
    monkeypatch.setattr(bench, "write_cohort", lambda *_: pytest.fail("the cohort was drawn"))
    with pytest.raises(SystemExit) as stop:
        bench.main()
    assert stop.value.code == 2
    assert "loss.lam_ramp_steps = 2000 is an ELR setting that loss.name = ce does not read" in capsys.readouterr().err


def test_the_report_counts_one_seed_in_the_singular() -> None:
    args = argparse.Namespace(subjects=480, atrophy_scale=2.0, noise=0.2, seeds=1)
    assert ", 30 epochs, 1 seed (`" in _bench()._report(args, 30, [], 0.0, 60.0)
