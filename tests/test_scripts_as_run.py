"""The scripts under scripts/ given a user's mistake: one line naming it, not a traceback, and before any work."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest


def test_a_devkit_meta_mat_cut_short_is_named_not_a_scipy_traceback(
        tmp_path: Path, import_script: Callable[[str], ModuleType]) -> None:
    """A meta.mat cut short (a download stopped part way) raised scipy's MatReadError, which is no ValueError, so the
    script ended with a traceback instead of saying which file to extract again."""
    from scipy.io import savemat

    (tmp_path / "webvision" / "info").mkdir(parents=True)
    (tmp_path / "webvision" / "info" / "synsets.txt").write_text("".join(f"n{k:08d} class{k}\n" for k in range(50)))
    data = tmp_path / "devkit" / "data"
    data.mkdir(parents=True)
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n")
    savemat(data / "meta.mat", {"synsets": [[1, 2], [3, 4]]})
    (data / "meta.mat").write_bytes((data / "meta.mat").read_bytes()[:10])
    lister = import_script("webvision_ilsvrc12_list")
    with pytest.raises(ValueError, match=r"meta.mat: not the devkit's synset table \(MatReadError: .*\); extract "
                                         r"ILSVRC2012_devkit_t12.tar.gz again$"):
        lister.main(["--imagenet-val", str(tmp_path), "--devkit", str(tmp_path / "devkit"),
                     "--webvision", str(tmp_path / "webvision")])
