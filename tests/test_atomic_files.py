"""JSON outputs as strict JSON, whatever holds their undefined figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from elr_mri.atomic_files import atomic_write_json


def test_an_undefined_figure_inside_a_tuple_is_written_as_null(tmp_path: Path) -> None:
    """A (low, high) interval is a tuple: its NaN end is null as a list's is, not a refused write."""
    atomic_write_json({"auc_interval": (0.5, np.float64("nan")), "nested": [(float("inf"),)]}, tmp_path / "a.json")
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text) == {"auc_interval": [0.5, None], "nested": [[None]]}
    assert text.endswith("}\n")  # a text file's last line ends as its others: `cat` leaves the prompt on a line of its own
