"""What an epoch's short last batch costs a compiled network: plain torch.compile against the engine's wrapper.

Why: 45,000 CIFAR-10 training images in batches of 128 leave a last batch of 72. Plain torch.compile
meets that new shape by compiling a second, dynamic-shape graph; the engine's `CompiledForFullBatches`
keeps one graph for the full batches and runs the short one eagerly. Both variants train CIFAR
ResNet-34 steps (SGD) in a fresh process with an empty inductor cache, so neither reuses the other's
compiled code: full batches first, then the short batch, then full batches again (does the plain
variant's later step run the slower dynamic graph?). Writes bench/results/compile_tail_<device>.md.

    .venv/bin/python bench/bench_compile_tail.py                                   # CPU: batches of 16 and 9
    python bench/bench_compile_tail.py --device cuda --batch-size 128 --tail 72    # a GPU machine
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from results_file import command_line, load_line, print_child_result, read_child_result, write_report
from torch import nn

from elr_mri.config import ModelConfig
from elr_mri.engine.execution import CompiledForFullBatches
from elr_mri.models import build_model
from preprocess.user_errors import output_file

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"plain": "plain torch.compile", "engine": "engine: compiled full batches, eager short batch"}
REPEATS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=16, help="full batch (the engine's CIFAR runs: 128)")
    parser.add_argument("--tail", type=int, default=9, help="the epoch's short last batch (CIFAR-10: 72)")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=output_file, help="default bench/results/compile_tail_<device>.md")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    if not 1 <= args.tail < args.batch_size:
        parser.error(f"--tail {args.tail} --batch-size {args.batch_size}: "
                     "need 1 <= tail < batch size (a short last batch)")
    if args.child:
        print_child_result(time_steps(args.child, torch.device(args.device), args.batch_size, args.tail))
        return
    results, load_start = {}, os.getloadavg()[0]
    for variant in VARIANTS:  # each a few minutes on a CPU: say each as it ends
        results[variant] = _in_fresh_process(variant, args)
        print(f"{VARIANTS[variant]}: {results[variant]}", flush=True)
    text = _report(results, args, load_start)
    print(text)
    out = args.out or ROOT / "bench" / "results" / f"compile_tail_{args.device}.md"
    write_report(out, text)


def time_steps(variant: str, device: torch.device, batch_size: int, tail: int) -> dict[str, float]:
    """Seconds of each phase's SGD steps: the first full batch (compiles), full batches, the first
    and a repeated short batch, full batches after it."""
    torch.manual_seed(0)
    network = build_model(ModelConfig(name="resnet34"), (3, 32, 32), 10).to(device).train()
    run = torch.compile(network) if variant == "plain" else CompiledForFullBatches(network)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.02, momentum=0.9)
    step = _stepper(run, optimizer, device)
    seconds = {"first full batch": step(batch_size),
               "full batch": statistics.median(step(batch_size) for _ in range(REPEATS)),
               "first short batch": step(tail),
               "short batch again": step(tail),
               "full batch after": statistics.median(step(batch_size) for _ in range(REPEATS))}
    return {phase: round(value, 4) for phase, value in seconds.items()}


def _stepper(run: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer, device: torch.device) -> Callable[[int], float]:
    def step(size: int) -> float:
        images = torch.randn(size, 3, 32, 32, device=device)
        labels = torch.randint(0, 10, (size,), device=device)
        _synchronise(device)
        started = time.perf_counter()
        loss = nn.functional.cross_entropy(run(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _synchronise(device)
        return time.perf_counter() - started

    return step


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _in_fresh_process(variant: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
        command = [sys.executable, __file__, "--child", variant, "--device", args.device,
                   "--batch-size", str(args.batch_size), "--tail", str(args.tail)]
        done = subprocess.run(command, env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache},
                              capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} child failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return read_child_result(done.stdout, f"{variant} child")


def _report(results: dict[str, dict[str, float]], args: argparse.Namespace, load_start: float) -> str:
    """The results file; `load_start`: the 1-min load average before the first child."""
    phases = list(next(iter(results.values())))
    plain, engine = results["plain"], results["engine"]
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} CPU cores"
    rows = [f"| {VARIANTS[variant]} | " + " | ".join(f"{seconds[phase]:.3f}" for phase in phases) + " |"
            for variant, seconds in results.items()]
    saved = plain["first short batch"] - engine["first short batch"]
    return "\n".join([
        f"# The short last batch under torch.compile, CIFAR ResNet-34 ({args.device})", "",
        f"Command: `{command_line()}`", "",
        f"Machine: {platform.machine()}, {device}, torch {torch.__version__}, Python {platform.python_version()}. "
        f"{load_line(load_start)}",
        f"Full batch {args.batch_size}, short batch {args.tail}; seconds of one SGD step (medians of {REPEATS} "
        "for the full-batch rows); each variant in a fresh process with an empty inductor cache.", "",
        "| variant | " + " | ".join(f"{phase} (s)" for phase in phases) + " |",
        "|---|" + "---|" * len(phases), *rows, "",
        f"The short batch's first step: {plain['first short batch'] / engine['first short batch']:.0f}× longer "
        f"under plain torch.compile, {saved:.1f} s more per trained network per run; full batches after it: "
        f"{plain['full batch after'] / engine['full batch after']:.2f}× the engine's step time.", ""])


if __name__ == "__main__":
    main()
