"""Runs in folders of one name get distinct labels in the comparison table. Seconds, nothing trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from elr_mri.evaluation.compare import run_labels


def test_run_labels_keep_the_shortest_path_suffix_that_tells_runs_apart() -> None:
    assert run_labels([Path("runs/x/elr"), Path("other/elr"), Path("runs/ce")]) == ["x/elr", "other/elr", "ce"]
    assert run_labels([Path("a/b/elr"), Path("c/b/elr")]) == ["a/b/elr", "c/b/elr"]
    assert run_labels([Path("/elr"), Path("/x/elr")]) == ["/elr", "x/elr"]  # the root tells /elr apart
    assert run_labels([Path("runs/x/elr/"), Path("runs/y/../x/ce")]) == ["elr", "ce"]  # spelled paths normalised


def test_the_same_run_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="elr: the same run twice in one comparison"):
        run_labels([Path("runs/elr"), Path("runs/./elr")])
