"""Words for a `configs/...` file found neither here nor among elr-mri's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from elr_mri.shipped import nearest_own_config

ROOT = Path(__file__).resolve().parents[1]


def test_a_name_near_none_of_elr_mris_configs_is_told_only_where_they_are(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert nearest_own_config(Path("configs/zzzz/qqqq.yaml")) == f"; elr-mri's own configs are in {ROOT / 'configs'}"
