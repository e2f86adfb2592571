"""What `load_config` tells a file that is no run config."""

from __future__ import annotations

from pathlib import Path

import pytest

from elr_mri.config import ConfigError, load_config


def test_a_column_mapping_of_only_some_of_its_keys_is_named_as_one(tmp_path: Path) -> None:
    """Named from its `columns` and its other keys all being a mapping's, not from holding all five of them."""
    path = tmp_path / "my_mapping.yaml"
    path.write_text("columns: {participant_id: PTID}\nvalues: {diagnosis: {AD: AD}}\n")
    with pytest.raises(ConfigError, match=r"a column mapping for `elr-mri import-cohort --mapping`, not a run config"):
        load_config(path)


def test_a_run_config_with_a_stray_columns_key_is_told_of_that_key(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("columns: {}\ntrain: {epochs: 2}\n")
    with pytest.raises(ConfigError, match="unknown key 'columns'"):
        load_config(path)
