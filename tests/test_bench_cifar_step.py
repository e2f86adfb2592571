"""bench/bench_cifar_step.py on the CPU: a device call's deadline (SIGTERM) keeps each plan's row once it is timed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_a_file_written_before_the_last_plan_says_how_many_plans_are_still_to_come() -> None:
    """Rewritten after each plan for a device call that may be cut, the file read as a finished table of fewer plans."""
    import argparse
    import importlib

    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        bench = importlib.import_module("bench_cifar_step")  # bench/ is not a package
    finally:
        sys.path.remove(str(ROOT / "bench"))
    args = argparse.Namespace(steps=1, warmup=1, eval_images=1)
    timed = {"warmup": 1.0, "loop": 2.0, "batch": 0.1, "train_step": 1.5, "record": 0.1, "host": 1.0, "eval": 0.5}
    first = next(iter(bench.PLANS))
    text = bench.report(args, torch.device("cpu"), "random uint8", {first: timed}, "", 0.0, {})
    assert f"Still to measure when this was written: {len(bench.PLANS) - 1} plan(s)." in text.splitlines()
    assert "Still to measure" not in bench.report(args, torch.device("cpu"), "random uint8",
                                                  {plan: timed for plan in bench.PLANS}, "", 0.0, {})


# A plan that fails (here at its config: a precision the engine has not), then fp32 eager at batch 8. A failed plan
# ended the bench with a traceback, the plans after it never timed: on a GPU the first plan is the one never run there.
FAILED_FIRST = """
import sys
import bench_cifar_step as bench
bench.PLANS = {"fp8 (no such precision)": ["train.precision=fp8"],
               "fp32 eager": bench.PLANS["fp32 eager"] + ["train.batch_size=8"]}
sys.argv = ["bench/bench_cifar_step.py", "--device", "cpu", "--steps", "1", "--warmup", "1", "--eval-images", "1",
            "--out", sys.argv[1]]
bench.main()
"""


@pytest.mark.slow  # ResNet-34 built and stepped in a fresh process: 10-15 s on 2 busy cores
def test_a_failed_plan_leaves_the_later_plans_timed_and_the_exit_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "cifar_step_cpu.md"
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", FAILED_FIRST, str(out)], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"bench_cifar_step: error: 1 failed (the rest are in {out}): fp8 (no such precision): ")
    text = out.read_text()
    assert "\n| fp32 eager | " in text and "\nFailed: fp8 (no such precision): " in text
    assert "Still to measure" not in text
