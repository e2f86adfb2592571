"""The usable cores: affinity, no more than SLURM's --cpus-per-task nor a container's CPU quota (cgroup v1 or v2)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from preprocess.cores import cgroup_cpu_quota, runnable_cores, thread_share, usable_cores

ROOT = Path(__file__).resolve().parents[2]


def _cgroup(tmp_path: Path, own: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup mount under tmp_path/fs holding `files` (path below the mount: content), and a /proc/self/cgroup."""
    for name, content in files.items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(content)
    (tmp_path / "cgroup").write_text(own)
    return tmp_path / "fs", tmp_path / "cgroup"


@pytest.mark.parametrize(("cpu_max", "quota"), [("200000 100000\n", 2.0), ("150000 100000\n", 1.5),
                                                ("50000 100000\n", 0.5), ("max 100000\n", None)])
def test_a_cgroup_v2_cpu_max_is_the_quota(tmp_path, monkeypatch, cpu_max, quota) -> None:
    """docker --cpus=2 writes "200000 100000" to the container's cpu.max, while affinity shows all the host's cores."""
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    root, own = _cgroup(tmp_path, "0::/\n", {"cpu.max": cpu_max})
    assert cgroup_cpu_quota(root, own) == quota
    rounded_up = {2.0: 2, 1.5: 2, 0.5: 1}.get(quota, runnable_cores())
    assert usable_cores(root, own) == min(runnable_cores(), rounded_up)


def test_the_least_quota_on_the_way_up_the_tree_holds(tmp_path) -> None:
    """A Kubernetes pod's limit sits on the pod's cgroup, above the container's own (which may say "max")."""
    root, own = _cgroup(tmp_path, "0::/kubepods/pod1/ctr\n", {"kubepods/pod1/ctr/cpu.max": "max 100000\n",
                                                              "kubepods/pod1/cpu.max": "100000 100000\n",
                                                              "kubepods/cpu.max": "400000 100000\n"})
    assert cgroup_cpu_quota(root, own) == 1.0
    assert usable_cores(root, own) == 1


def test_a_cgroup_v1_cfs_quota_counts_also_where_the_mount_shows_only_the_containers_own_cgroup(tmp_path) -> None:
    """Without a cgroup namespace /proc/self/cgroup names the host's path (/docker/<id>), which the container's mount
    does not hold: its own cgroup's files are at the mount's root."""
    root, own = _cgroup(tmp_path, "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
                        {"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_quota(root, own) == 1.0
    assert usable_cores(root, own) == 1
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    assert cgroup_cpu_quota(root, own) is None


def test_no_cgroup_files_no_quota(tmp_path) -> None:
    """macOS, a /proc that is not mounted, a cgroup without the cpu controller: the affinity (and SLURM) alone."""
    assert cgroup_cpu_quota(tmp_path, tmp_path / "missing") is None
    root, own = _cgroup(tmp_path, "0::/user.slice\n", {"user.slice/cpu.max": "garbled"})
    assert cgroup_cpu_quota(root, own) is None
    (root / "user.slice" / "cpu.max").write_text("100000 0\n")  # no period: no quota, not a division by zero
    assert cgroup_cpu_quota(root, own) is None


def test_a_v1_cpuacct_hierarchy_of_its_own_is_not_the_cpu_controllers(tmp_path) -> None:
    """Where cpuacct is mounted apart from cpu, its line names another cgroup; "cpu" is a controller of the list,
    not a prefix of a name in it, so that cgroup's quota in the cpu tree is not this process's."""
    root, own = _cgroup(tmp_path, "5:cpuacct:/other\n4:cpu:/mine\n",
                        {"cpu/other/cpu.cfs_quota_us": "100000\n", "cpu/other/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_quota(root, own) is None


@pytest.mark.parametrize("allocated, expected", [("1", 1), ("999", None), ("", None), ("0", None)])
def test_slurm_cpus_per_task_bounds_the_cores(monkeypatch, tmp_path, allocated, expected) -> None:
    """Without core binding a SLURM job may run on every core of its node; --cpus-per-task is what it was given."""
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", allocated)
    assert usable_cores(tmp_path, tmp_path / "missing") == (expected or runnable_cores())


def test_the_cores_are_counted_in_one_place() -> None:
    """Every pool and thread count is sized by usable_cores (the quota included): no caller counts affinity or reads
    SLURM's variable itself, nor asks nproc (which also says 1 under OMP_NUM_THREADS=1)."""
    counting = re.compile(r"sched_getaffinity|SLURM_CPUS_PER_TASK|\$\(nproc")
    sources = [path for folder in ("elr_mri", "preprocess", "scripts", "bench") for path in (ROOT / folder).rglob("*")
               if path.suffix in (".py", ".sh") and path != ROOT / "preprocess" / "cores.py"]
    assert [str(path) for path in sources if counting.search(path.read_text())] == []


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs affinity to pin the script to one core")
def test_the_adni_script_sizes_jobs_by_the_usable_cores(tmp_path) -> None:
    """It took SLURM_CPUS_PER_TASK (a stale one comes along with sbatch --export=ALL) or nproc, which also says 1
    under OMP_NUM_THREADS=1; on one usable core it ran 2 workers for SLURM_CPUS_PER_TASK=4."""
    shown = tmp_path / "python"  # the project's Python for the core count, the command line shown for the rest
    shown.write_text(f'#!/bin/sh\n[ "$1" = -c ] && exec {sys.executable} "$@"\necho "$@"\n')
    shown.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "PYTHON": str(shown), "PYTHONPATH": str(ROOT), "SLURM_CPUS_PER_TASK": "4",
           "OMP_NUM_THREADS": "1"}
    pinned = subprocess.run(["bash", str(ROOT / "scripts" / "preprocess_adni.sh"), "in.csv", "out"],
                            capture_output=True, text=True, env=env, check=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert "--jobs 1" in pinned.stdout.split("--normalise minmax")[1]
    free = subprocess.run(["bash", str(ROOT / "scripts" / "preprocess_adni.sh"), "in.csv", "out"],
                          capture_output=True, text=True, env={**env, "SLURM_CPUS_PER_TASK": ""}, check=True)
    assert f"--jobs {max(1, usable_cores() // 2)}" in free.stdout


def test_an_exported_thread_count_caps_each_processs_share(monkeypatch) -> None:
    """parallel_runs gave each run cores // jobs torch threads over a user's OMP_NUM_THREADS=1 (preprocess's workers
    so overwrote ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS): the exported count caps the share and never raises it."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr("preprocess.cores.cgroup_cpu_quota", lambda *folders: None)
    for exported, share in ((None, 4), ("1", 1), ("16", 4), ("many", 4), ("0", 4)):
        if exported is None:
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        else:
            monkeypatch.setenv("OMP_NUM_THREADS", exported)
        assert thread_share(2, "OMP_NUM_THREADS") == share, exported
    assert thread_share(16, "OMP_NUM_THREADS") == 1  # more processes than cores: each still runs a thread
