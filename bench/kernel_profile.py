"""The profiler's busiest kernels of a few training steps, as a text table for a results file.

Why: a step's time says how fast, not where the time goes; the kernels that take the device's time say which
switch could help (convolutions at the tensor cores' rate, or normalisation and element-wise passes over memory).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def busiest_kernels(run: Callable[[], object], device: torch.device, rows: int = 20) -> str:
    """Profile `run` (a few steps, already warmed up) and list its busiest kernels: by device time on a GPU, by
    CPU time otherwise."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profile:
        run()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return profile.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)
