"""Volumes/s of a 3D model under each execution variant, fp32 eager to bf16 + compile, on this device.

Why: `train.precision`, `train.channels_last` and `train.compile` default per device (`auto`: bf16 and compile
on for CUDA, channels-last too for images but not volumes; fp32 eager on a CPU). This times one model under every variant so that the default
can be checked on the machine at hand, a CPU included; each variant trains in a fresh process
(bench_mri_models' child, the engine's step through `ExecutionPlan`), one after another.
`bench_mri_models.py --device cuda` makes the same table for the ×8 at 96³ as part of its run.

    .venv/bin/python bench/bench_execution_variants.py                  # CPU: ×8 + age at 72³
    python bench/bench_execution_variants.py --device cuda --size 96    # a GPU machine
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import bench_mri_models as steps
import torch
from results_file import busy_warning, command_line, intra_op_threads, write_report

from elr_mri.models.widened_cnn import MIN_INPUT_SIZE
from preprocess.user_errors import output_file

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"x1": steps.X1, "x8": steps.X8}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", choices=list(MODELS), default="x8")
    parser.add_argument("--size", type=int, default=72, help=f"cubic crop (at least {MIN_INPUT_SIZE}; the paper: 96)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads; 0: torch's default")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds of timed steps per variant")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="then profile this many steps of the engine's GPU `auto` variant (bf16 + compile): its "
                             "busiest kernels")
    parser.add_argument("--out", type=output_file, help="default bench/results/execution_variants_<device>.md")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    if args.size < MIN_INPUT_SIZE:
        parser.error(f"--size {args.size}: the widened CNN needs a crop of at least {MIN_INPUT_SIZE} voxels per axis")
    for flag, value in (("--batch-size", args.batch_size), ("--budget", args.budget)):
        if value <= 0:
            parser.error(f"{flag} {value}: must be above 0")
    for flag, value in (("--threads", args.threads), ("--profile", args.profile)):
        if value < 0:
            parser.error(f"{flag} {value}: must be 0 or more")
    spec, on_gpu = MODELS[args.model], args.device == "cuda"
    load_start = os.getloadavg()
    out = args.out or ROOT / "bench" / "results" / f"execution_variants_{args.device}.md"
    # fp32 eager and the engine's GPU `auto` (the last variant) first, then the phase-grid variants (not yet timed
    # on a GPU), and the file rewritten after each variant: a run cut short (a device call's time limit) keeps the
    # figures measured so far
    variants = steps.variants_on(args.device)
    anchors = (variants[0], variants[-1])
    rest = [v for v in variants if v not in anchors]
    phase_grids_fullest_first = [v for v in reversed(rest) if v.phase_grids]
    order = (*anchors, *phase_grids_fullest_first, *(v for v in rest if not v.phase_grids))
    measured: dict[str, steps.StepResult] = {}
    failed: list[str] = []
    gflop = steps.training_flops(steps.build(spec, args.size), args.size) / 1e9  # per volume, counted on meta
    for done, variant in enumerate(order, start=1):
        try:
            measured[variant.label] = steps.in_fresh_process(
                steps.StepJob(spec, args.size, args.batch_size, args.device, variant, threads=args.threads,
                              warmup=3 if on_gpu else 1, min_steps=10 if on_gpu else 3, budget_s=args.budget,
                              profile_steps=args.profile if variant == variants[-1] else 0))
        except RuntimeError as error:  # one variant failing (compile, memory) leaves the others to measure
            failed.append(f"{variant.label}: {str(error).splitlines()[-1]}")
        text = _report(args, spec, measured, failed, load_start, pending=len(order) - done, gflop=gflop)
        write_report(out, text)
    print(text)
    if failed:
        sys.exit(failure_line(failed, len(order)))


def failure_line(failed: list[str], planned: int) -> str:
    """The error line a run with failed variants exits with (status 1): bench/gpu_checks.sh flags a step by its exit
    status, and a `Failed:` line in the table alone let a device session end with figures missing unflagged."""
    return (f"bench_execution_variants: error: {len(failed)} of {planned} variant(s) failed (the others are in the "
            f"table): " + "; ".join(failed))


def _report(args: argparse.Namespace, spec: steps.ModelSpec, measured: dict[str, steps.StepResult],
            failed: list[str], load_start: tuple[float, ...], pending: int, gflop: float) -> str:
    """The results file: the variants measured so far in the table's order, then what failed or is pending, then
    the profiled variant's busiest kernels."""
    results = {v.label: measured[v.label] for v in steps.VARIANTS if v.label in measured}
    threads = next(iter(results.values())).threads if results else torch.get_num_threads()
    memory = "max_memory_allocated" if args.device == "cuda" else "peak RSS rise"
    table = steps.variant_table(results, f"{spec.label}, {args.size}³, batch {args.batch_size}", args.batch_size,
                                memory, gflop) if results else []
    profiled = [(label, result.kernels) for label, result in results.items() if result.kernels]
    return "\n".join([
        f"# Execution variants of the {spec.label} at {args.size}³ ({args.device})", "",
        f"Command: `{command_line()}`", "", steps.machine_line(args.device),
        f"CPU: {_cpu_name()}; {intra_op_threads(threads)} in the children. Load average (1 min) "
        f"{load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.{busy_warning(load_start[0])}", "",
        *table, "",
        *([] if not results or steps.FP32_EAGER.label in results else
          [f"fp32 eager did not finish: the ratios are against {next(iter(results))}.", ""]),
        f"TFLOP/s: {gflop:.1f} GFLOP a volume for forward + backward (torch.utils.flop_counter, 2 per multiply-add) "
        "× volumes/s; set it beside the device's peak for the variant's arithmetic.", "",
        *[f"Failed: {line}" for line in failed],
        *([f"Still to measure when this was written: {pending} variant(s)."] if pending else []), "",
        *[line for label, kernels in profiled
          for line in (f"Busiest kernels of {label}, {args.profile} steps:", "", "```", kernels, "```", "")]])


def _cpu_name() -> str:
    """The CPU model and its native bf16 instructions (without them bf16 autocast is emulated and slow)."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    native = [flag for flag in ("avx512_bf16", "amx_bf16") if f" {flag}" in text]
    return f"{names[0] if names else platform.processor() or 'unknown'} (bf16 instructions: {', '.join(native) or 'none'})"


if __name__ == "__main__":
    main()
