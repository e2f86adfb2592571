"""How much memory this process may still take: what a run's pre-flight check compares its needs with.

The kernel's MemAvailable is the node's; a SLURM job's --mem, a container's --memory or a Kubernetes limit is a cgroup
limit below it, and the OOM killer enforces that one. Imports nothing heavy (no torch), as `preprocess.cores`.
"""

from __future__ import annotations

from pathlib import Path

from preprocess.cores import CGROUP_ROOT, PROC_CGROUP, cgroup_folders

__all__ = ["available_memory", "gigabytes"]

MEMINFO = Path("/proc/meminfo")

# per cgroup version: the limit, the usage, and the usage's page cache that the kernel reclaims before it kills
_FILES = {2: ("memory.max", "memory.current", "inactive_file"),
          1: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}


def available_memory(meminfo: Path = MEMINFO, cgroup_root: Path = CGROUP_ROOT,
                     proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """Bytes this process may still allocate: the node's MemAvailable, no more than any cgroup limit above it leaves
    (limit − usage + its reclaimable page cache); None where neither can be read (macOS)."""
    room = [_mem_available(meminfo)] + [_cgroup_room(version, folder)
                                        for version, folder in cgroup_folders("memory", cgroup_root, proc_cgroup)]
    known = [value for value in room if value is not None]
    return max(0, min(known)) if known else None


def gigabytes(size: float) -> str:
    """`size` bytes as the one-line messages say it: '24.6 GB'."""
    return f"{size / 1e9:.1f} GB"


def _mem_available(meminfo: Path) -> int | None:
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    values = [line.split()[1:3] for line in lines if line.startswith("MemAvailable:")]
    return int(values[0][0]) * 1024 if values and values[0][1:] == ["kB"] else None


def _cgroup_room(version: int, folder: Path) -> int | None:
    """What the cgroup at `folder` leaves under its memory limit; None without a limit there."""
    limit_file, usage_file, cache_key = _FILES[version]
    try:
        limit = (folder / limit_file).read_text().strip()
        usage = int((folder / usage_file).read_text())
        stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines() if line.count(" ") == 1)
    except (OSError, ValueError):
        return None
    if not limit.isdigit() or int(limit) >= 2**62:  # "max" (v2), or v1's page-rounded 2**63 − 1: no limit
        return None
    return int(limit) - usage + int(stat.get(cache_key, 0))
