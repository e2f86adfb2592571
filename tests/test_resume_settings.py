"""What a resumed run may change, and the file settings a run records absolute, against the README's words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from elr_mri.config import RunConfig
from elr_mri.config.resume import RESUME_MAY_CHANGE, with_absolute_paths

README = Path(__file__).resolve().parents[1] / "README.md"


def test_a_resume_may_change_what_the_readme_lists_and_nothing_else() -> None:
    """README: "Besides `train.epochs` ..., a resume may change only how and where the run runs (`train.device`,
    `precision`, ...; `data.root`, ...)": names without a section are train's."""
    listed = re.search(r"a resume may change only how and where the run\s+runs \((.*?)\); any other",
                       README.read_text(), re.S).group(1)
    names = re.findall(r"`([\w.]+)`", listed)
    assert {"train.epochs", *(name if "." in name else f"train.{name}" for name in names)} == RESUME_MAY_CHANGE


def test_every_file_setting_of_an_mri_run_is_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """So that `evaluate` and `--resume` find them from any directory (README, config.yaml)."""
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig()
    mri = cfg.data.mri
    mri.manifest, mri.holdout_manifest, mri.splits, mri.val_labels, mri.cache_dir = (
        "prep/manifest.csv", "holdout.csv", "splits.csv", "panel.csv", "cache")
    recorded = with_absolute_paths(cfg).data.mri
    assert [recorded.manifest, recorded.holdout_manifest, recorded.splits, recorded.val_labels, recorded.cache_dir] == [
        str(tmp_path / name) for name in ("prep/manifest.csv", "holdout.csv", "splits.csv", "panel.csv", "cache")]
