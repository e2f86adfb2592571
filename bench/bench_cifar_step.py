"""Where a CIFAR-10 ELR training step spends its time: the engine's own method, batches and tracker.

Why: the first timed CIFAR-10 sym-40 row on a GPU ran at about 9.5 s an epoch, several times what the
arithmetic allows, and a whole 120-epoch run is too long to find the cause in. This runs the pieces an
epoch is made of (device-resident batch, `train_step`, `PredictionTracker.record`) for a few dozen steps
under five execution plans, on random uint8 images of CIFAR's shape (timing does not depend on the
pixels), and reports per plan:
  - seconds of the first steps (compilation: a run pays it once a network);
  - ms per step of the whole loop, one wait for the device at the end (what an epoch costs);
  - ms per step of each piece with a wait after each (its device time plus its launch time);
  - host ms per step with no wait at all, measured on the eager plans only (how long Python takes to
    queue a step: when this is near the loop's time, the GPU waits on the host);
and, for compile's default mode, the profiler's busiest device kernels. Also the un-augmented evaluation pass
over 15,000 images (val + test) that follows every epoch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import torch
from bench_device_batches import load_train
from kernel_profile import busiest_kernels
from results_file import command_line, failures_line, load_line, said_failed, write_report

from elr_mri.config import RunConfig, evaluation_batch_size, load_config
from elr_mri.data.device_batches import DeviceImageBatches
from elr_mri.data.images import InMemoryImages
from elr_mri.distributed import GlobalBatchSampler
from elr_mri.engine.execution import ExecutionPlan
from elr_mri.engine.methods import build_method
from elr_mri.engine.tracking import PredictionTracker
from preprocess.user_errors import output_file

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "cifar10" / "elr_sym40.yaml"
EVAL_IMAGES = 15_000  # 5,000 validation + 10,000 test images after each CIFAR-10 epoch
NO_GRAPHS = "train.compile_mode=default"
PLANS = {  # name: config overrides, the most informative first (a device call may cut the bench short)
    "engine auto + the rest of the step compiled (compile_step)": ["train.compile_step=true"],
    "engine auto (bf16, channels-last, compile with CUDA graphs)": [],
    "compile's default mode, no CUDA graphs": [NO_GRAPHS],
    "bf16 + channels-last, eager": ["train.compile=false"],
    "fp32 eager": ["train.precision=fp32", "train.channels_last=false", "train.compile=false"],
}
PROFILED = "compile's default mode, no CUDA graphs"  # its busiest kernels are listed (a graph replays as one)
REFERENCE = "engine auto (bf16, channels-last, compile with CUDA graphs)"  # what a run gets: the others' loops against it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps first (compilation, cuDNN search)")
    parser.add_argument("--eval-images", type=int, default=EVAL_IMAGES, help="images in the timed evaluation pass")
    parser.add_argument("--out", type=output_file, default=None,
                        help="default bench/results/cifar_step_<device>.md")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is visible to torch (--device cpu times the CPU)")
    for name in ("steps", "warmup", "eval_images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    device = torch.device(args.device)
    args.out = args.out or ROOT / "bench" / "results" / f"cifar_step_{device.type}.md"  # as published
    train, source = load_train(None)  # random pixels: see the docstring
    if args.eval_images > len(train):
        parser.error(f"--eval-images {args.eval_images}: the data has {len(train):,} images")
    load_start = os.getloadavg()[0]
    measured: dict[str, dict[str, float]] = {}
    failed: dict[str, str] = {}  # plan (or its profile): the error's first line
    kernels = ""

    def write() -> None:
        write_report(args.out, report(args, device, source, measured, kernels, load_start, failed))

    for name, overrides in PLANS.items():
        try:  # one plan failing (compile, CUDA graphs, memory) leaves the later plans to time
            timer, measured[name] = time_plan(load_config(CONFIG, overrides), train, device, args)
            print(rows(measured)[-1], flush=True)
        except Exception as error:  # noqa: BLE001 - whatever it is, the next plan is still worth timing
            failed[name] = said_failed(name, error)
        write()  # after each plan: a call may be cut
        if name == PROFILED and name in measured:  # its row is written above: a deadline here loses no timing
            try:
                kernels = busiest_kernels(lambda: timer.run(min(args.steps, 20)), device)
            except Exception as error:  # noqa: BLE001 - as a plan's: the plans after it still run
                failed[f"{name}, its profile"] = said_failed(f"{name}, its profile", error)
            write()
    if failed:  # exit 1: bench/gpu_checks.sh flags a failed step by its exit status
        sys.exit(failures_line("bench_cifar_step", [f"{name}: {why}" for name, why in failed.items()], args.out))


def time_plan(cfg: RunConfig, train: InMemoryImages, device: torch.device,
              args: argparse.Namespace) -> tuple[StepTimer, dict[str, float]]:
    """One plan's timer and figures: the first steps, the loop, its pieces, the host's share and the evaluation."""
    plan = ExecutionPlan.from_config(cfg.train, device, graphs_tested=True)  # an ELR step on device batches
    plan.configure_backends()
    torch.compiler.reset()  # each plan compiles and records its CUDA graphs as a run of its own does
    timer = StepTimer(cfg, plan, train, device, args.eval_images)
    warmup = timer.warmup_s(args.warmup)
    loop = timer.loop_ms(args.steps)
    pieces = timer.pieces_ms(args.steps)
    host = timer.host_ms(args.steps) if not plan.compile else float("nan")
    return timer, {"warmup": warmup, "loop": loop, **pieces, "host": host, "eval": timer.evaluation_s()}


def rows(measured: dict[str, dict[str, float]]) -> list[str]:
    """A table row per plan timed so far, its loop against the REFERENCE plan's, timed in this run."""
    reference = measured.get(REFERENCE, {}).get("loop")
    return [f"| {name} | {m['warmup']:.1f} | {m['loop']:.1f} | {times(m['loop'], reference)} | {m['batch']:.1f} | "
            f"{m['train_step']:.1f} | {m['record']:.1f} | {m['host']:.1f} | {m['eval']:.2f} |"
            for name, m in measured.items()]


def times(value: float, reference: float | None) -> str:
    """`value` as a multiple of `reference`; "—" while the reference plan is not timed yet."""
    return "—" if reference is None else f"{value / reference:.2f}×"


def report(args: argparse.Namespace, device: torch.device, source: str, measured: dict[str, dict[str, float]],
           kernels: str, load_start: float, failed: dict[str, str]) -> str:
    """The bench's Markdown file with the plans timed so far, then those that failed."""
    pending = sum(name not in measured and name not in failed for name in PLANS)
    not_profiled = ("(failed: see above)" if any(name.startswith(PROFILED) for name in failed) else
                    "(its plan timed, its profile not finished)" if PROFILED in measured else
                    "(its plan not reached yet)")
    return (f"# Time of one CIFAR-10 ELR training step, by piece ({torch.cuda.get_device_name(device) if device.type == 'cuda' else device})\n\n"
            f"Command: `{command_line()}`\n\ntorch {torch.__version__}; data: {source}; ResNet-34, batch 128, "
            f"{args.steps} timed steps after {args.warmup} untimed. {load_line(load_start)}\n\n"
            f"| plan | first {args.warmup} steps s | loop ms/step | loop × the engine-auto plan's | batch ms | train_step ms | record ms | host-only ms/step | eval pass s ({args.eval_images:,} images) |\n"
            "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows(measured)) + "\n\n" +
            "".join(f"Failed: {name}: {why}\n\n" for name, why in failed.items()) +
            (f"Still to measure when this was written: {pending} plan(s).\n\n" if pending else "") +
            "An epoch is 352 steps. The first steps' seconds are mostly compilation (and CUDA-graph recording): what a "
            "run pays once a network at its start; a plan may reuse kernels an earlier plan of this call compiled "
            f"(inductor's cache), so the first plan's figure is the cold one. Busiest device kernels in compile's "
            f"default mode (no CUDA graphs):\n\n```\n{kernels or not_profiled}\n```\n")


class StepTimer:
    """One plan's method, batches and tracker, stepped the way `runner._train_epoch` steps them."""

    def __init__(self, cfg: RunConfig, plan: ExecutionPlan, train: InMemoryImages, device: torch.device,
                 eval_images: int) -> None:
        self.device = device
        self.eval_images = eval_images
        self.method = build_method(cfg, (3, 32, 32), 10, len(train), plan)
        self.batches = DeviceImageBatches.from_dataset(train, device, plan.channels_last,
                                                       plan.compiled_function if plan.compiles_step else None)
        self.tracker = PredictionTracker(len(train), 10, device)
        self.stream = self._endless(cfg.train.batch_size)
        self.eval_batch_size = evaluation_batch_size(cfg)

    def _endless(self, batch_size: int) -> Iterator[dict]:
        epoch = 0
        while True:
            sampler = GlobalBatchSampler(len(self.batches), batch_size, torch.Generator().manual_seed(epoch))
            full = [index for index in sampler.parts_on(self.device) if len(index) == batch_size]  # no eager tail
            yield from self.batches.batches(full, self.batches.generator(epoch))
            epoch += 1

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _step(self) -> None:
        batch = next(self.stream)
        _, logits = self.method.train_step(batch)
        self.tracker.record(batch["index"], cast(torch.Tensor, logits))  # one network's: never None

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self._step()
        self._sync()

    def warmup_s(self, steps: int) -> float:
        """Seconds of the first `steps` steps: compilation, CUDA-graph recording and cuDNN's search, paid once a run."""
        return self._timed(lambda: self.run(steps)) / 1000

    def loop_ms(self, steps: int) -> float:
        return self._timed(lambda: self.run(steps)) / steps

    def host_ms(self, steps: int) -> float:
        """Time to queue `steps` steps; the device may still be busy when it ends."""
        self._sync()
        started = time.perf_counter()
        for _ in range(steps):
            self._step()
        queued = time.perf_counter() - started
        self._sync()
        return 1000 * queued / steps

    def pieces_ms(self, steps: int) -> dict[str, float]:
        total = {"batch": 0.0, "train_step": 0.0, "record": 0.0}
        for _ in range(steps):
            batch: dict = {}
            total["batch"] += self._timed(lambda: batch.update(next(self.stream)))
            out: list = []
            total["train_step"] += self._timed(lambda: out.extend(self.method.train_step(batch)))
            total["record"] += self._timed(lambda: self.tracker.record(batch["index"], out[1]))
        return {piece: value / steps for piece, value in total.items()}

    def evaluation_s(self) -> float:
        """Seconds to predict the first `eval_images` images, no more, in evaluation batches as `evaluate_split` does:
        the last batch is cut to the count, as a split's last batch is."""
        def evaluate() -> None:
            left = self.eval_images
            for batch in self.batches.in_order(self.eval_batch_size):
                batch = {key: value[:left] for key, value in batch.items()}
                self.method.predict_proba(batch).argmax(dim=1).cpu()
                left -= len(batch["index"])
                if left == 0:
                    break
        return self._timed(evaluate) / 1000

    def _timed(self, action: Callable[[], object]) -> float:
        """Milliseconds `action` takes, the device's queue emptied before and after."""
        self._sync()
        started = time.perf_counter()
        action()
        self._sync()
        return 1000 * (time.perf_counter() - started)


if __name__ == "__main__":
    main()
