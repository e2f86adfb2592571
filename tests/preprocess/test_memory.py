"""The memory a run may still take: the node's MemAvailable, no more than a job's cgroup limit leaves."""

from __future__ import annotations

from pathlib import Path

from preprocess.memory import available_memory

MEMINFO = "MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n"


def _node(tmp_path: Path, own: str, files: dict[str, str]) -> tuple[Path, Path, Path]:
    """A /proc/meminfo, a cgroup mount under tmp_path/fs holding `files`, and a /proc/self/cgroup naming `own`."""
    for name, content in {**files, "../meminfo": MEMINFO, "../cgroup": own}.items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(content)
    return tmp_path / "meminfo", tmp_path / "fs", tmp_path / "cgroup"


def test_a_slurm_jobs_cgroup_limit_is_what_is_available_not_the_nodes_memory(tmp_path) -> None:
    """SLURM's --mem=8G sets the job's memory.max: the node's 20 GB free are not the job's, and the OOM killer ends it
    at 8 GB. Page cache it holds (inactive files) is reclaimed first, so it counts as available."""
    files = {"job/memory.max": f"{8 * 2**30}\n", "job/memory.current": f"{3 * 2**30}\n",
             "job/memory.stat": f"anon 1000\ninactive_file {2**30}\n", "memory.max": "max\n"}
    assert available_memory(*_node(tmp_path, "0::/job\n", files)) == 6 * 2**30


def test_without_a_cgroup_limit_memavailable_holds(tmp_path) -> None:
    """cgroup v1 writes "no limit" as 2**63 rounded down to a page; a node without cgroups has MemAvailable alone."""
    files = {"memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": "5000\n",
             "memory/memory.stat": "total_inactive_file 0\n"}
    assert available_memory(*_node(tmp_path, "4:memory:/docker/abc\n", files)) == 20000000 * 1024
    assert available_memory(tmp_path / "none", tmp_path, tmp_path / "none") is None  # macOS: nothing to read


def test_a_cgroup_over_its_limit_leaves_no_memory_not_less_than_none(tmp_path) -> None:
    """cgroup v1 lets usage pass the limit for a moment before it reclaims or kills: what is left is then 0 bytes,
    which a pre-flight message can say, not a negative size."""
    files = {"memory/memory.limit_in_bytes": f"{2**30}\n", "memory/memory.usage_in_bytes": f"{2**31}\n",
             "memory/memory.stat": "total_inactive_file 0\n"}
    assert available_memory(*_node(tmp_path, "4:memory:/\n", files)) == 0
