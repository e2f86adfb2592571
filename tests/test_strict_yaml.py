"""Strict YAML's refusals where a config or a `--set` would otherwise train other settings than it shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from elr_mri.config import ConfigError
from elr_mri.config.strict_yaml import apply_overrides, read_yaml_file


def test_a_set_without_a_key_is_refused_as_one_without_a_value_is() -> None:
    with pytest.raises(ConfigError, match=r"^--set '=5': expected key=value, e.g. --set train.epochs=5$"):
        apply_overrides({}, ["=5"])


def test_a_null_word_spaced_from_its_equals_sign_sets_null() -> None:
    """`--set 'model.pretrained_checkpoint= null'` asks for null in words: not an empty value left by the shell."""
    raw: dict = {}
    apply_overrides(raw, ["model.pretrained_checkpoint= null"])
    assert raw == {"model": {"pretrained_checkpoint": None}}


def test_a_key_given_twice_in_a_mapping_merged_from_a_list_is_refused(tmp_path: Path) -> None:
    """`<<:` takes a list of mappings too; each is checked as a single merged one is."""
    (tmp_path / "run.yaml").write_text("train:\n  <<: [{epochs: 2, epochs: 3}, {batch_size: 8}]\n")
    with pytest.raises(ConfigError, match=r"line 2: the key 'epochs' is given twice in one section; keep one$"):
        read_yaml_file(tmp_path / "run.yaml")
