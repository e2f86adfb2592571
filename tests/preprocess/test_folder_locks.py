"""The one-run-per-folder locks name the run holding a folder, so that a refused second run says which to wait for."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from preprocess.folder_locks import held_lock, holder_named_in, lock_or_refuse

ROOT = Path(__file__).parents[2]


def test_a_refused_run_names_the_process_and_job_holding_the_folder(tmp_path: Path) -> None:
    """A SLURM array started twice, or a rerun while the first still ran: the refusal said 'another run' only, and
    on a cluster that one may be any node's job. A second process holds the lock (lockf locks of one process do not
    conflict), as a train or simulate-cohort there does."""
    holding = ("import sys, time; from pathlib import Path; from preprocess.folder_locks import lock_or_refuse; "
               "handle = open(Path(sys.argv[1]) / '.train.lock', 'a'); "
               "lock_or_refuse(handle, Path(sys.argv[1]), 'x'); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", holding, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env={**os.environ, "SLURM_JOB_ID": "4242"})
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with open(tmp_path / ".train.lock", "a") as handle, pytest.raises(FileExistsError) as refused:
            lock_or_refuse(handle, tmp_path, "`elr-mri train`")
    finally:
        holder.kill()
        holder.wait()
    assert str(refused.value) == (f"{tmp_path}: another `elr-mri train` is writing there (PID {holder.pid} on "
                                  f"{socket.gethostname()}, SLURM job 4242); let it finish (or stop it) first, or "
                                  "choose another --out")


def test_a_lock_let_go_names_no_one(tmp_path: Path) -> None:
    """The line naming the holder goes with the lock: left there, two cohorts simulated with one seed would differ in
    their lock file, and the line would name a process long gone."""
    with held_lock(tmp_path / ".simulate.lock", tmp_path, "simulate-cohort"):
        assert (tmp_path / ".simulate.lock").read_text().startswith(f"PID {os.getpid()} on ")
    assert (tmp_path / ".simulate.lock").read_bytes() == b""


def test_a_holder_replaces_a_killed_runs_line_and_names_a_job_only_in_one(tmp_path: Path, monkeypatch) -> None:
    """A run killed by SIGKILL leaves its line in the lock file; the next holder's line must stand first, alone,
    or a refused run names the dead one. Outside a batch job there is no job to name."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    (tmp_path / ".simulate.lock").write_text("PID 1 on a-node-long-gone, SLURM job 7\n")
    with held_lock(tmp_path / ".simulate.lock", tmp_path, "simulate-cohort"):
        assert (tmp_path / ".simulate.lock").read_text() == f"PID {os.getpid()} on {socket.gethostname()}\n"


def test_a_lock_file_not_naming_a_pid_names_no_holder(tmp_path: Path) -> None:
    """An earlier version's or another tool's lock file holds other text: a refusal then names no holder rather
    than quoting it as one."""
    (tmp_path / ".train.lock").write_text("locked\n")
    assert holder_named_in(tmp_path / ".train.lock") == ""
    assert holder_named_in(tmp_path / "missing.lock") == ""


def test_without_fcntl_as_on_windows_the_commands_load_and_run_unguarded(tmp_path: Path) -> None:
    """Windows has no fcntl: imported at the top of the lock module, it stopped every command, `elr-mri --help`
    too. Imitated by a process in which importing it fails."""
    code = ("import sys; sys.modules['fcntl'] = None\n"
            "from pathlib import Path; import elr_mri.cli; from preprocess.batch import output_lock; "
            "from preprocess.folder_locks import held_lock\n"
            "folder = Path(sys.argv[1])\n"
            "with held_lock(folder / '.train.lock', folder, 'train'), output_lock(folder, (0, 2), 'run'): print('ran')")
    ran = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "ran\n", "")
