"""The `elr-mri` commands at the edges of what they allow: options refused in one line before any work, and notes."""

from __future__ import annotations

import pytest

from elr_mri.cli import main


def test_volumes_with_no_worker_is_one_line(capsys: pytest.CaptureFixture) -> None:
    """`--jobs 0` measures nothing: refused before the manifest is read, as `--registration-mm 0` is."""
    assert main(["volumes", "--manifest", "never-read.csv", "--jobs", "0"]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "--jobs must be at least 1" in said and "got --jobs 0" in said
