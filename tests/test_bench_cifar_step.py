"""bench/bench_cifar_step.py on the CPU: a device call's deadline (SIGTERM) keeps each plan's row once it is timed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The profiled plan alone, first: the deadline arrives as its profile starts (the kernels the profiler would list
# are not what is tested). Its row was written only after the profile, so a call cut there lost a timed plan.
CUT_DURING_THE_PROFILE = """
import os, signal, sys
import bench_cifar_step as bench
bench.PLANS = {bench.PROFILED: bench.PLANS[bench.PROFILED] + ["train.batch_size=8"]}
bench.busiest_kernels = lambda run, device: os.kill(os.getpid(), signal.SIGTERM)
sys.argv = ["bench/bench_cifar_step.py", "--device", "cpu", "--steps", "1", "--warmup", "1", "--eval-images", "1",
            "--out", sys.argv[1]]
bench.main()
"""


def test_a_run_stopped_during_the_profile_keeps_the_row_it_timed(tmp_path: Path) -> None:
    out = tmp_path / "cifar_step_cpu.md"
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CUT_DURING_THE_PROFILE, str(out)], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGTERM, done.stderr[-3000:]
    printed = next(line for line in done.stdout.splitlines() if line.startswith("| compile's default mode"))
    text = out.read_text()
    assert f"\n{printed}\n" in text and "(its plan timed, its profile not finished)" in text
    assert not list(tmp_path.glob(".tmp*"))
