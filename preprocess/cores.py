"""How many CPU cores this process may use: the one count every pool and thread setting is sized from.

os.cpu_count() is the node's, and affinity (taskset, SLURM's binding) leaves out what a SLURM job without binding was
given (--cpus-per-task) and a container's CPU quota (docker --cpus, a Kubernetes limit): in a 2-CPU container on a
64-core host both say 64, and workers × threads sized from them run 64 threads on 2 CPUs' time. Imports nothing
heavy (no torch, no ANTs), so preprocess's workers and the training engine share it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["runnable_cores", "usable_cores", "thread_share", "exported_count", "cgroup_cpu_quota", "cgroup_folders"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def runnable_cores() -> int:
    """The cores the scheduler may run this process on (its affinity), without the limits on how much of them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def usable_cores(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The runnable cores, no more than a SLURM job's --cpus-per-task (SLURM without core binding, TaskPlugin
    task/none, lets a job run on every core of its node) nor its cgroup's CPU quota, rounded up (1.5 CPUs: 2)."""
    cores = runnable_cores()
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if allocated.isdigit() and int(allocated) > 0:
        cores = min(cores, int(allocated))
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def thread_share(jobs: int, cap_variable: str) -> int:
    """Threads for each of `jobs` processes: the usable cores // `jobs`, no more than the count exported in
    `cap_variable` (ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS, OMP_NUM_THREADS), a node's rule or a user sparing cores
    for other work: each process's variable is set to the share, which overwrote the user's lower count."""
    share = max(1, usable_cores() // jobs)
    return min(share, exported_count(cap_variable) or share)


def exported_count(variable: str) -> int | None:
    """The positive whole number exported in `variable`, None where unset or anything else (ITK and OpenMP ignore
    such a value too)."""
    value = os.environ.get(variable, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs' worth of time this process's cgroup and those above it allow (the least of them), None without a
    quota. cgroup v2: cpu.max "200000 100000" is 2 CPUs, "max 100000" none; v1: cpu.cfs_quota_us over
    cpu.cfs_period_us, -1 none. Where /proc/self/cgroup names a path that the mount does not show (a container
    without its own cgroup namespace sees its own cgroup at the root), the root's files still count."""
    found = [quota for quota in (_v2_quota(folder) if version == 2 else _v1_quota(folder)
                                 for version, folder in cgroup_folders("cpu", cgroup_root, proc_cgroup))
             if quota is not None]
    return min(found) if found else None


def cgroup_folders(controller: str, cgroup_root: Path = CGROUP_ROOT,
                   proc_cgroup: Path = PROC_CGROUP) -> list[tuple[int, Path]]:
    """(cgroup version, folder) of this process's cgroup and each one above it, where `controller`'s limits may be
    (a limit set on any of them holds): v2's unified tree, and v1's tree of `controller` where it is mounted."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    folders: list[tuple[int, Path]] = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2's unified hierarchy
            folders += [(2, folder) for folder in _up_to(cgroup_root, path)]
        elif controller in controllers.split(","):
            folders += [(1, folder) for folder in _up_to(cgroup_root / controller, path)]
    return folders


def _up_to(root: Path, path: str) -> list[Path]:
    """`root`/`path` and every folder above it, `root` included."""
    folder = root / path.strip("/")
    return [folder, *[parent for parent in folder.parents if parent.is_relative_to(root)]]


def _v2_quota(folder: Path) -> float | None:
    try:
        limit, period = (folder / "cpu.max").read_text().split()
        return int(limit) / int(period) if limit != "max" and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        limit = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return limit / period if limit > 0 and period > 0 else None
    except (OSError, ValueError):
        return None
