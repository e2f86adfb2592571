"""`elr-mri volumes`' scratch folders: a run killed outright leaves its own, which a later run removes, while the
folder of a run still measuring stays. Real processes and their real locks, killed with SIGKILL; seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from elr_mri.volumes.scratch import OWNER_LOCK, scratch_folder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no lockf locks on Windows: nothing is removed there")

# a run that makes its scratch folder, says where, and measures (sleeps) until killed
HOLDING = ("import time\nfrom elr_mri.volumes.scratch import scratch_folder\nwith scratch_folder() as folder:\n"
           "    print(folder, flush=True)\n    time.sleep(300)\n")


def _run_holding_scratch(tmp: Path) -> tuple[subprocess.Popen, Path]:
    """A process holding a scratch folder under `tmp` (its TMPDIR), and that folder, once made."""
    run = subprocess.Popen([sys.executable, "-c", HOLDING], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "TMPDIR": str(tmp)})
    return run, Path(run.stdout.readline().strip())


def test_a_later_run_removes_a_killed_runs_scratch_folder_and_leaves_a_running_ones(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    """SIGKILL left an elr-volumes-* folder in /tmp for good, one a killed run. Only a folder whose run is gone is
    removed: not one of a run still going, nor one without a lock file (an older version's, or one being made)."""
    running, running_folder = _run_holding_scratch(tmp_path)
    killed, killed_folder = _run_holding_scratch(tmp_path)  # started second: its own cleanup left the first's
    killed.kill()
    killed.wait()
    unowned = tmp_path / "elr-volumes-0ldr_v3r"
    unowned.mkdir()
    try:
        assert (killed_folder / OWNER_LOCK).is_file()  # no cleanup of its own ran
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        with scratch_folder() as ours:
            assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
                [Path(ours).name, running_folder.name, unowned.name])
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted([running_folder.name, unowned.name])
    finally:
        running.kill()
        running.wait()
