"""Training throughput and memory of the MRI models, and whether data loading keeps up, in one run.

Why: issue 5 asks what the widened 3D CNN (×1/×2/×8, with age) and the MONAI baselines cost to
train, and whether the cached MONAI loader or the network is the bottleneck. Parameters,
activation memory per volume (`model_report`) and FLOPs (`FlopCounterMode`) come from the meta
device at 96³, the paper's input, so they are exact and free. Throughput is measured: each model
trains (forward + backward + SGD step, batch 4, through `ExecutionPlan` as the engine does) in a
fresh subprocess, one after another, so that one model's allocations and oneDNN caches cannot help
or hurt the next and the process's peak memory belongs to that model alone. On a CPU the timed
crop is 72³ (the widened CNN needs at least 71³), with torch's default intra-op threads and with
one thread, back to back per model: on a shared machine whose load exceeds its cores, threads that
wait for each other at every op can cost more than they give. The ×8 at 96³ is timed for a couple
of steps only when the 72³ figure predicts that to take under two minutes.

Peak memory: on CUDA, `torch.cuda.max_memory_allocated`. A CPU has no such counter, and
`getrusage().ru_maxrss` does not work per subprocess: Linux carries the parent's high-water mark
through fork + exec, so a small model shows no rise at all. The child therefore resets its own
high-water mark (`/proc/self/clear_refs`), reads VmRSS just before building the model and VmHWM
after the last step: the rise includes allocator slack and oneDNN workspaces, what the machine must
have rather than what autograd keeps.

The loader: synthetic scans (nilearn's MNI152 template resampled to the run's voxel size plus
noise, written as int16 NIfTI as preprocess/ writes them) in an `MRIScans` dataset with the RAM
cache and the training transforms (blur σ ~ U(0, 1), random crop), batch 4; epochs after the
first are timed, right after the ×1 model (the fastest) so that the ratio compares like with like.

`--device cuda` times every model at 96³, then the ×8 + age model under fp32 eager (and with TF32
off, strict fp32), bf16 autocast, channels-last 3D and torch.compile (each in a fresh process), and writes
bench/results/mri_models_cuda.md.

    .venv/bin/python bench/bench_mri_models.py                 # CPU, ~8 minutes on 2 loaded cores
    python bench/bench_mri_models.py --device cuda             # a GPU machine
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from kernel_profile import busiest_kernels
from results_file import (busy_warning, command_line, intra_op_threads, print_child_result, read_child_result,
                          write_report)
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elr_mri.engine.execution import ExecutionPlan  # noqa: E402
from elr_mri.models.widened_cnn import MIN_INPUT_SIZE, WidenedCNN3D, model_report, monai_baseline  # noqa: E402
from preprocess.user_errors import output_file  # noqa: E402

if TYPE_CHECKING:  # MONAI's import is left to the loader rows
    from elr_mri.data.mri import MRIScans

PAPER_SIZE = 96
PAPER_GRID_1_5MM = (121, 145, 121)  # the ML4H paper's 1.5 mm MNI grid (preprocess/ DEFAULT_SHAPES)
NUM_CLASSES = 3
SLOW_LIMIT_S = 120.0  # the longest the CPU may spend on the timed steps of the ×8 at 96³
LOADER_BUDGET_S = 5.0
MIB = 2**20
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ModelSpec:
    """One network of the comparison: a widened CNN (with its factor) or a MONAI baseline."""

    label: str
    kind: Literal["widened", "resnet18", "densenet121"]
    widening: int = 0


MODELS = (
    ModelSpec("widened ×1 + age", "widened", 1),
    ModelSpec("widened ×2 + age", "widened", 2),
    ModelSpec("widened ×8 + age", "widened", 8),
    ModelSpec("MONAI ResNet-18 3D", "resnet18"),
    ModelSpec("MONAI DenseNet-121 3D", "densenet121"),
)
X1, X8 = MODELS[0], MODELS[2]


@dataclass(frozen=True)
class Variant:
    """An execution setting of `ExecutionPlan`: autocast dtype, channels-last 3D, torch.compile."""

    label: str
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    tf32: bool = True  # torch's default: cuDNN runs fp32 convolutions on TF32 tensor cores (GPU only)
    phase_grids: bool = False  # `train.phase_grid_convs`: dilated convolutions on the input's phase grids


FP32_EAGER = Variant("fp32 eager")
STRICT_FP32 = Variant("fp32 eager, TF32 off (strict fp32)", tf32=False)
VARIANTS = (
    FP32_EAGER,
    STRICT_FP32,
    Variant("bf16 autocast", "bf16"),
    Variant("bf16 + channels-last 3D", "bf16", channels_last=True),
    Variant("bf16 + channels-last 3D + compile", "bf16", channels_last=True, compile=True),
    Variant("fp32 + phase-grid convolutions", phase_grids=True),
    Variant("bf16 + phase-grid convolutions", "bf16", phase_grids=True),
    Variant("bf16 + torch.compile + phase-grid convolutions", "bf16", compile=True, phase_grids=True),
    # last: the engine's `auto` on a GPU for volumes (channels-last 3D was 3-4% slower on an H200)
    Variant("bf16 + torch.compile (engine's GPU `auto` for volumes)", "bf16", compile=True),
)


@dataclass(frozen=True)
class StepJob:
    """What a child process times: one model, crop size, batch, execution variant and thread count."""

    model: ModelSpec
    size: int
    batch: int
    device: str
    variant: Variant = FP32_EAGER
    threads: int = 0  # intra-op threads; 0 leaves torch's default
    warmup: int = 1
    min_steps: int = 2
    max_steps: int = 50
    budget_s: float = 8.0
    profile_steps: int = 0  # after timing, this many steps under the profiler (StepResult.kernels)


@dataclass(frozen=True)
class StepResult:
    """Seconds of every step (warm-up first), peak memory in bytes and the 1-min load around it."""

    warmup: int
    step_times: list[float]
    peak_bytes: int
    threads: int
    load_before: float
    load_after: float
    kernels: str = ""  # the profiler's busiest kernels, when the job asked for them

    @property
    def timed(self) -> list[float]:
        return self.step_times[self.warmup:]

    @property
    def step_s(self) -> float:
        return statistics.median(self.timed)


# ---------------------------------------------------------------------------------------- models


def build(spec: ModelSpec, size: int) -> nn.Module:
    """The network for a cubic crop of `size` (the widened CNN's first linear layer depends on it)."""
    if spec.kind == "widened":
        return WidenedCNN3D(1, NUM_CLASSES, widening=spec.widening, use_age=True, input_size=(size,) * 3)
    return monai_baseline(spec.kind, in_channels=1, num_classes=NUM_CLASSES)


def training_flops(model: nn.Module, size: int) -> int:
    """FLOPs of forward + backward for one volume, counted by shape on the meta device (2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta").train()
    counter = FlopCounterMode(display=False)
    with counter:
        logits = meta(torch.empty(1, 1, size, size, size, device="meta"), age=torch.empty(1, device="meta"))
        logits.sum().backward()
    return int(counter.get_total_flops())


def static_figures(spec: ModelSpec, size: int) -> dict[str, float]:
    """Parameters, activations per volume and training GFLOP per volume of `spec` at `size`³."""
    model = build(spec, size)
    report = model_report(model, (1, size, size, size))
    return {"parameters": report.parameters, "activation_bytes": report.activation_bytes,
            "gflop": training_flops(model, size) / 1e9}


def proc_status_kb(key: str) -> int:
    """A kB field of /proc/self/status (VmRSS: resident now, VmHWM: resident high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_rss_peak() -> int:
    """Reset this process's VmHWM to its current RSS (Linux ≥ 4.0) and return the RSS in kB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # VmHWM then also covers the imports, which a fresh process keeps small
    return proc_status_kb("VmRSS")


def peak_memory(device: torch.device, rss_before_kb: int) -> int:
    """Peak bytes of the training steps: CUDA's allocator counter, or the RSS high-water rise on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return (proc_status_kb("VmHWM") - rss_before_kb) * 1024


def train_step(plan: ExecutionPlan, trained: nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, batch: dict[str, torch.Tensor]) -> None:
    """One engine step (`SingleNetwork.train_step` with cross-entropy): place, forward, backward, update."""
    device = plan.device
    images = plan.place_input(batch["image"])
    labels = batch["label"].to(device, non_blocking=True)
    age = batch["age"].to(device, dtype=torch.float32, non_blocking=True)
    with plan.autocast():
        logits = trained(images, age=age)
    loss = nn.functional.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_batch(job: StepJob) -> dict[str, torch.Tensor]:
    """A batch as the loader hands it over: CPU tensors (pinned for a GPU), ages in years."""
    generator = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(job.batch, 1, job.size, job.size, job.size, generator=generator),
             "label": torch.randint(0, NUM_CLASSES, (job.batch,), generator=generator),
             "age": 55.0 + 35.0 * torch.rand(job.batch, generator=generator)}
    if job.device == "cuda":
        batch = {key: value.pin_memory() for key, value in batch.items()}
    return batch


def run_steps(job: StepJob) -> StepResult:
    """Time `job` in this process (a fresh child): warm-up steps, then steps until budget and minimum."""
    if job.threads:
        torch.set_num_threads(job.threads)
    load_before = os.getloadavg()[0]
    device = torch.device(job.device)
    variant = job.variant
    # compile_required: a failed torch.compile fails the variant (listed as failed) instead of timing eager steps
    plan = ExecutionPlan(device=device, autocast_dtype=DTYPES[variant.precision], compile=variant.compile,
                         compile_required=variant.compile, channels_last=variant.channels_last,
                         phase_grid_convs=variant.phase_grids,
                         cudnn_benchmark=device.type == "cuda")  # as the engine's `auto`
    plan.configure_backends()
    torch.backends.cudnn.allow_tf32 = variant.tf32  # matmuls stay off TF32, torch's default
    batch = random_batch(job)
    rss_before_kb = reset_rss_peak()
    torch.manual_seed(0)
    model = plan.place_model(build(job.model, job.size))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    trained = plan.compiled(model).train()
    scaler = plan.grad_scaler()
    times: list[float] = []
    while len(times) < job.warmup + job.min_steps or (
            sum(times[job.warmup:]) < job.budget_s and len(times) < job.warmup + job.max_steps):
        started = time.perf_counter()
        train_step(plan, trained, optimizer, scaler, batch)
        times.append(time.perf_counter() - started)
    peak_bytes, load_after = peak_memory(device, rss_before_kb), os.getloadavg()[0]
    def profiled_steps() -> None:
        for _ in range(job.profile_steps):
            train_step(plan, trained, optimizer, scaler, batch)

    kernels = busiest_kernels(profiled_steps, device) if job.profile_steps else ""
    return StepResult(warmup=job.warmup, step_times=times, peak_bytes=peak_bytes, threads=torch.get_num_threads(),
                      load_before=load_before, load_after=load_after, kernels=kernels)


def in_fresh_process(job: StepJob) -> StepResult:
    """Run `job` in a new Python process; its last stdout line is the result as JSON."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(asdict(job))]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{job.model.label} ({job.variant.label}, {job.size}³) failed:\n{done.stderr[-3000:]}")
    result = StepResult(**read_child_result(done.stdout, f"{job.model.label} ({job.variant.label}, {job.size}³)"))
    log(f"{job.model.label}, {job.variant.label}, {job.size}³, {result.threads} thread(s): "
        f"{', '.join(f'{t:.2f}' for t in result.step_times)} s")
    return result


def child_main(text: str) -> None:
    """Entry point of a child: the job as JSON in, the result as JSON on the last stdout line."""
    raw = json.loads(text)
    job = StepJob(**{**raw, "model": ModelSpec(**raw["model"]), "variant": Variant(**raw["variant"])})
    print_child_result(asdict(run_steps(job)))


# ---------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoaderResult:
    """Volumes/s of cached training epochs, with the one-off cache fill and first epoch for context."""

    num_workers: int
    threads: int  # intra-op threads of the process that runs the transforms
    volumes_per_s: float
    epochs: int
    cache_fill_s: float
    first_epoch_s: float
    load_before: float
    load_after: float


def template_volume(resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """nilearn's MNI152 (2009) T1 template at `resolution` mm, cropped to the paper's grid at 1.5 mm."""
    from nilearn import datasets
    from scipy import ndimage

    image = datasets.load_mni152_template(resolution=1)
    data = ndimage.zoom(np.asarray(image.get_fdata(), dtype=np.float32), 1.0 / resolution, order=1)
    affine = image.affine.copy()
    affine[:3, :3] *= resolution
    if resolution == 1.5:
        start = [(have - want) // 2 for have, want in zip(data.shape, PAPER_GRID_1_5MM)]
        data = data[tuple(slice(s, s + w) for s, w in zip(start, PAPER_GRID_1_5MM))]
        affine[:3, 3] += affine[:3, :3] @ np.asarray(start, dtype=float)
    return data, affine


def write_volumes(folder: Path, count: int, resolution: float) -> tuple[list[Path], tuple[int, ...]]:
    """`count` noisy copies of the template as int16 NIfTI (scaled), each with its own noise."""
    import nibabel as nib

    data, affine = template_volume(resolution)
    scale = float(data.max())
    paths = []
    for k in range(count):
        noisy = data + np.random.default_rng(k).normal(0.0, 0.05 * scale, data.shape).astype(np.float32)
        image = nib.Nifti1Image(noisy, affine)
        image.set_data_dtype(np.int16)
        path = folder / f"sub-{k:03d}_T1w.nii.gz"
        nib.save(image, path)
        paths.append(path)
    return paths, data.shape


def scans_dataset(paths: list[Path], crop: int, blur_on_device: bool = False) -> tuple[MRIScans, float]:
    """An `MRIScans` training split over `paths` with the RAM cache; returns it and the fill seconds.
    `blur_on_device`: its items leave the blur to the batch's device (`data.mri.blur_on: device`)."""
    import pandas as pd

    from elr_mri.data.cohort import IMAGE_COLUMN
    from elr_mri.data.mri import MRIScans, mri_transforms

    frame = pd.DataFrame({IMAGE_COLUMN: [str(p) for p in paths], "age": np.linspace(60.0, 85.0, len(paths))})
    started = time.perf_counter()
    transform = mri_transforms((crop,) * 3, train=True, blur_on_device=blur_on_device)
    dataset = MRIScans(frame, np.arange(len(paths)) % NUM_CLASSES, transform, cache="memory")
    return dataset, time.perf_counter() - started


def epoch_seconds(dataset: MRIScans, batch: int, num_workers: int, seed: int, blur_device: str | None = None) -> float:
    """Wall time to draw one shuffled epoch, the DataLoader made per epoch and each scan augmented from its own
    seed, as the engine does; with `blur_device`, each batch then blurred there as the engine's feeder does."""
    from torch.utils.data import DataLoader

    from elr_mri.data.device_blur import kernel_radius
    from elr_mri.data.seeded_items import SeededItems
    from elr_mri.engine.feeding import BlurredOnDevice, worker_start

    started = time.perf_counter()
    loader = DataLoader(SeededItems(dataset, seed), batch_size=batch, shuffle=True, num_workers=num_workers,
                        multiprocessing_context=worker_start(num_workers), generator=torch.Generator().manual_seed(seed),
                        pin_memory=torch.cuda.is_available())
    batches = loader if blur_device is None else BlurredOnDevice(loader, torch.device(blur_device), kernel_radius(1.0))
    for _ in batches:
        pass
    if blur_device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def loader_rate(paths: list[Path], crop: int, batch: int, num_workers: int, threads: int,
                blur_device: str | None = None) -> LoaderResult:
    """Volumes/s over cached epochs (after a first, untimed one): at least 3 epochs, about 5 s.

    `threads` applies to this process; DataLoader workers run with one intra-op thread each. `blur_device`:
    the workers leave the blur (σ_max 1) to that device, where each batch is blurred.
    """
    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        load_before = os.getloadavg()[0]
        dataset, fill_s = scans_dataset(paths, crop, blur_on_device=blur_device is not None)
        first = epoch_seconds(dataset, batch, num_workers, seed=0, blur_device=blur_device)
        times: list[float] = []
        while len(times) < 3 or (sum(times) < LOADER_BUDGET_S and len(times) < 100):
            times.append(epoch_seconds(dataset, batch, num_workers, seed=len(times) + 1, blur_device=blur_device))
    finally:
        torch.set_num_threads(default)
    result = LoaderResult(num_workers=num_workers, threads=1 if num_workers else threads,
                          volumes_per_s=len(paths) * len(times) / sum(times), epochs=len(times), cache_fill_s=fill_s,
                          first_epoch_s=first, load_before=load_before, load_after=os.getloadavg()[0])
    log(f"loader, num_workers={num_workers}, {threads} thread(s): {result.volumes_per_s:.1f} volumes/s")
    return result


# ---------------------------------------------------------------------------------------- measuring


def thread_settings(device: str) -> tuple[int, ...]:
    """Torch's default intra-op threads and one thread on a CPU; the default only on a GPU."""
    default = torch.get_num_threads()
    return (default, 1) if device == "cpu" and default > 1 else (default,)


def measure_model(args: argparse.Namespace, spec: ModelSpec) -> dict[int, StepResult]:
    """One model at the timed crop, fp32 eager, one fresh process per thread setting, back to back."""
    gpu = args.device == "cuda"
    return {threads: in_fresh_process(StepJob(spec, args.size, args.batch_size, args.device, threads=threads,
                                              warmup=3 if gpu else 1, min_steps=10 if gpu else 2,
                                              budget_s=10.0 if gpu else args.budget))
            for threads in thread_settings(args.device)}


def fastest(results: dict[int, StepResult]) -> StepResult:
    return min(results.values(), key=lambda r: r.step_s)


def slow_job(x8: StepResult, small: dict, paper: dict, batch: int, size: int) -> tuple[StepJob | None, str]:
    """The ×8 at 96³ on a CPU (faster thread setting), if two steps are predicted to fit `SLOW_LIMIT_S`; `x8` and
    `small` are its step and figures at the timed crop of `size`³."""
    predicted = x8.step_s * paper["gflop"] / small["gflop"]
    note = f"predicted {predicted:.0f} s/step (the {size}³ step scaled by FLOPs)"
    if 2 * predicted > SLOW_LIMIT_S:
        return None, f"skipped: {note}; two steps would exceed {SLOW_LIMIT_S:.0f} s"
    job = StepJob(X8, PAPER_SIZE, batch, "cpu", threads=x8.threads, warmup=1, min_steps=2, max_steps=2, budget_s=0.0)
    return job, note


def variants_on(device: str) -> tuple[Variant, ...]:
    """Every variant on a GPU; on a CPU, where TF32 does not exist, the strict-fp32 one is fp32 eager again."""
    return VARIANTS if device == "cuda" else tuple(v for v in VARIANTS if v is not STRICT_FP32)


@dataclass
class Measurements:
    """Everything one run measured so far, in the order it was measured (the report is written after each part)."""

    paper: dict[str, dict]
    small: dict[str, dict]
    resolution: float
    timed: dict[str, dict[int, StepResult]] = field(default_factory=dict)
    loaders: list[LoaderResult] = field(default_factory=list)
    volume_shape: tuple[int, ...] = ()
    slow: StepResult | None = None
    slow_note: str = ""
    variants: dict[str, StepResult] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # "<variant>: <its error's last line>", the table leaves them out
    finished: bool = False


def measure(args: argparse.Namespace, measured: Callable[[Measurements], object]) -> Measurements:
    """×1 (both thread settings), the loader, the other models, then the ×8 at 96³ or the GPU variants; `measured`
    is called after each part, so a run cut short (a device call's time limit) leaves what it measured."""
    m = Measurements(paper={s.label: static_figures(s, PAPER_SIZE) for s in MODELS},
                     small={s.label: static_figures(s, args.size) for s in MODELS},
                     resolution=2.0 if args.device == "cpu" else 1.5)
    m.timed[X1.label] = measure_model(args, X1)
    measured(m)
    with tempfile.TemporaryDirectory() as folder:
        paths, m.volume_shape = write_volumes(Path(folder), args.volumes, m.resolution)
        for workers, threads in [(0, threads) for threads in thread_settings(args.device)] + [(2, 1)]:
            m.loaders.append(loader_rate(paths, args.size, args.batch_size, workers, threads))
    measured(m)
    for spec in MODELS[1:]:
        m.timed[spec.label] = measure_model(args, spec)
        measured(m)
    if args.device == "cpu":
        job, m.slow_note = slow_job(fastest(m.timed[X8.label]), m.small[X8.label], m.paper[X8.label], args.batch_size,
                                    args.size)
        m.slow = in_fresh_process(job) if job is not None else None
    else:
        measure_variants(args, m, measured)
    m.finished = True
    return m


def measure_variants(args: argparse.Namespace, m: Measurements, measured: Callable[[Measurements], object]) -> None:
    """The ×8 + age at 96³ under each execution variant, into `m.variants`, or `m.failed` for one that failed: one
    variant failing (compile, memory) leaves the others to measure, and the run's exit status names it."""
    for variant in variants_on(args.device):
        try:
            m.variants[variant.label] = in_fresh_process(StepJob(X8, PAPER_SIZE, args.batch_size, args.device,
                                                                 variant, warmup=3, min_steps=10, budget_s=10.0))
        except RuntimeError as error:  # in_fresh_process and read_child_result put the reason last
            log(f"{variant.label}: failed, left out of the table: {error}")
            m.failed.append(f"{variant.label}: {str(error).strip().splitlines()[-1]}")
        measured(m)


def failure_line(m: Measurements, out: Path) -> str:
    """The error line a run with failed variants exits with (status 1), as bench_execution_variants' does: it exited 0
    with variants missing from the table, so a device session's script, which reads the exit status, called it done."""
    planned = len(m.variants) + len(m.failed)
    return (f"bench_mri_models: error: {len(m.failed)} of {planned} variant(s) failed (the others are in {out}): "
            + "; ".join(m.failed))


# ---------------------------------------------------------------------------------------- report


MODEL_HEADER = ("| model | timed crop | threads | parameters at 96³ | activations / volume at 96³ (MiB) | "
                "train GFLOP / volume at timed crop | s / step, batch {batch}: median (min–max, steps) | "
                "volumes/s | GFLOP/s | peak memory (MiB), measured / estimate | load avg (1 min) |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|")


def model_row(spec: ModelSpec, size: int, paper: dict, small: dict, result: StepResult | None, batch: int,
              device: str, note: str = "") -> str:
    """One line of the model table (parameters and activations at 96³; timing at the timed size)."""
    cells = [spec.label, f"{size}³", "", f"{paper['parameters'] / 1e6:.2f} M",
             f"{paper['activation_bytes'] / MIB:,.0f}", f"{small['gflop']:.1f}"]
    if result is None:
        return "| " + " | ".join(cells + [note, "", "", "", ""]) + " |"
    cells[2] = str(result.threads)
    expected = batch * small["activation_bytes"] + 3 * 4 * small["parameters"]
    kind = "CUDA peak" if device == "cuda" else "RSS rise"
    cells += [f"{result.step_s:.2f} ({min(result.timed):.2f}–{max(result.timed):.2f}, {len(result.timed)})",
              f"{batch / result.step_s:.3g}", f"{batch * small['gflop'] / result.step_s:.0f}",
              f"{result.peak_bytes / MIB:,.0f} {kind} / {expected / MIB:,.0f}",
              f"{result.load_before:.1f} → {result.load_after:.1f}"]
    return "| " + " | ".join(cells) + " |"


def model_lines(args: argparse.Namespace, m: Measurements) -> list[str]:
    lines = [MODEL_HEADER.format(batch=args.batch_size)]
    for spec in MODELS:
        for result in m.timed.get(spec.label, {}).values():
            lines.append(model_row(spec, args.size, m.paper[spec.label], m.small[spec.label], result,
                                   args.batch_size, args.device))
    if args.device == "cpu" and m.finished:
        lines.append(model_row(X8, PAPER_SIZE, m.paper[X8.label], m.paper[X8.label], m.slow, args.batch_size,
                               args.device, m.slow_note))
    return lines


def model_notes(args: argparse.Namespace, m: Measurements) -> list[str]:
    """Sentences the table needs: the ×8's parameters by crop size, the memory method, the slow row."""
    notes = [f"The widened CNN's first linear layer follows the crop: the ×8 + age has "
             f"{m.paper[X8.label]['parameters'] / 1e6:.2f} M parameters at 96³ but "
             f"{m.small[X8.label]['parameters'] / 1e6:.2f} M at {args.size}³ (the timed model). Estimate = "
             "model_report's activations at the timed crop × batch + parameters, gradients and momentum in fp32."]
    if args.device == "cpu":
        notes.append("Peak memory on the CPU: VmHWM (resident high-water mark, reset through "
                     "/proc/self/clear_refs) after the last step minus VmRSS just before the model is built, in the "
                     "child. Not `ru_maxrss`: Linux carries the parent's high-water mark into a fork + exec'd "
                     "child (a first version of this benchmark, reading it, showed a rise of 0 for the ×1 and ×2); "
                     "not tracemalloc, which does not see torch's allocator.")
        notes.append(thread_note(m))
        if m.slow is not None:
            notes.append(f"The 96³ row ran with the ×8's faster thread setting; {m.slow_note}.")
    return notes


def thread_note(m: Measurements) -> str:
    """How each model's step time changed from the default thread count to one thread, in this run; where torch's
    default is one thread (OMP_NUM_THREADS=1, one core) there was one setting, and the note says so."""
    if len(thread_settings("cpu")) == 1:
        return ("One thread setting only: torch's default here is one intra-op thread, so the default and one thread "
                "are the same run.")
    ratios = []
    for spec in MODELS:
        results = m.timed.get(spec.label, {})
        if len(results) == 2:
            default, one = results.values()
            ratios.append(f"{spec.label.split(' +')[0]} {default.step_s / one.step_s:.1f}×")
    return ("Default threads ÷ one thread, step time (above 1: one thread was faster): " + ", ".join(ratios)
            + ". With other jobs holding the cores, the default threads wait for each other at every op.")


def loader_lines(m: Measurements, batch: int) -> list[str]:
    """The loader table with its ratios to the fastest ×1 and ×8 step rates measured in this run (once both are)."""
    if not m.loaders:
        return ["Not measured yet."]
    if X8.label not in m.timed:
        return ["| loader | transform threads | volumes/s (cached epochs) | load avg (1 min) |", "|---|---|---|---|",
                *[f"| num_workers={r.num_workers} | {r.threads}{' per worker' if r.num_workers else ''} | "
                  f"{r.volumes_per_s:.1f} | {r.load_before:.1f} → {r.load_after:.1f} |" for r in m.loaders],
                "", "Ratios to the step rates follow once the ×8 is timed."]
    x1, x8 = fastest(m.timed[X1.label]), fastest(m.timed[X8.label])
    lines = ["| loader | transform threads | volumes/s (cached epochs) | epochs timed | cache fill (s) | "
             "first epoch (s) | ÷ fastest ×1 step rate | ÷ fastest ×8 step rate | load avg (1 min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in m.loaders:
        lines.append(f"| num_workers={r.num_workers} | {r.threads}{' per worker' if r.num_workers else ''} | "
                     f"{r.volumes_per_s:.1f} | {r.epochs} | {r.cache_fill_s:.2f} | {r.first_epoch_s:.2f} | "
                     f"{r.volumes_per_s * x1.step_s / batch:.2f}× | {r.volumes_per_s * x8.step_s / batch:.1f}× | "
                     f"{r.load_before:.1f} → {r.load_after:.1f} |")
    return lines


def loader_notes(m: Measurements, batch: int, size: int) -> list[str]:
    """Whether loading is the bottleneck for the ×1 (the cheapest model) at its faster thread setting, both timed at
    a crop of `size`³."""
    if not m.loaders or X8.label not in m.timed:
        return []
    x1 = fastest(m.timed[X1.label])
    model_rate = batch / x1.step_s
    best = max(m.loaders, key=lambda r: r.volumes_per_s)
    serial = [r for r in m.loaders if r.num_workers == 0 and r.threads == x1.threads][0]
    share = (1 / serial.volumes_per_s) / (1 / serial.volumes_per_s + 1 / model_rate)
    ratio = best.volumes_per_s / model_rate
    x8_share = (1 / serial.volumes_per_s) / (
        1 / serial.volumes_per_s + fastest(m.timed[X8.label]).step_s / batch)
    return [f"The best loader (num_workers={best.num_workers}) delivers {ratio:.2f}× the step rate of the ×1 at its "
            f"faster setting ({x1.threads} thread(s), {model_rate:.2g} volumes/s), so it "
            f"{'keeps ahead of' if ratio > 1 else 'holds back'} the cheapest model; but with num_workers=0 the engine loads in series with the step, and loading then "
            f"takes {100 * share:.0f}% of a ×1 epoch ({100 * x8_share:.1f}% of a ×8 epoch at {size}³). Workers "
            "overlap it, at the price of cores that the model also wants on this 2-core machine."]


def gpu_lines(m: Measurements, batch: int, device: str) -> list[str]:
    """The execution-variant table, or the note that it is still open."""
    failed = [f"Failed: {line}" for line in m.failed]
    if not m.variants and device == "cuda":
        return ["## GPU: execution variants of the ×8 + age at 96³", "", *(failed or ["Not measured yet."])]
    if not m.variants:
        return ["## GPU table: still open", "",
                "No GPU on this machine. `python bench/bench_mri_models.py --device cuda` times every model at "
                "96³ and then the ×8 + age at 96³, batch 4, under each execution variant "
                f"({'; '.join(v.label for v in variants_on('cuda'))}), each in a fresh process, "
                "with `torch.cuda.max_memory_allocated`, and writes bench/results/mri_models_cuda.md. That run "
                "has not been made yet."]
    return ["## GPU: execution variants of the ×8 + age at 96³", "",
            *variant_table(m.variants, f"×8 + age, 96³, batch {batch}", batch, "max_memory_allocated",
                           m.paper[X8.label]["gflop"]), *([""] if failed else []), *failed]


def variant_table(variants: dict[str, StepResult], title: str, batch: int, memory: str,
                  gflop_per_volume: float) -> list[str]:
    """One row per execution variant: step time, volumes/s, the speed-up over the first (fp32 eager) and the
    arithmetic rate it reaches (`gflop_per_volume`: forward + backward), to set beside the device's peak."""
    base = next(iter(variants.values()))
    lines = [f"| {title} | s / step (median) | volumes/s | vs fp32 eager | TFLOP/s | first step (s, incl. compile) | "
             f"{memory} (MiB) |", "|---|---|---|---|---|---|---|"]
    for label, r in variants.items():
        lines.append(f"| {label} | {r.step_s:.4f} | {batch / r.step_s:.2f} | {base.step_s / r.step_s:.2f}× | "
                     f"{gflop_per_volume * batch / r.step_s / 1e3:.3g} | {r.step_times[0]:.1f} | "
                     f"{r.peak_bytes / MIB:,.0f} |")
    return lines


def machine_line(device: str) -> str:
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"{platform.machine()}, {os.cpu_count()} CPU cores"
    gpu = (" Every GPU step runs with cuDNN's algorithm search on (the engine's `auto`) and torch's default "
           f"TF32 settings (convolutions {torch.backends.cudnn.allow_tf32}, matmuls "
           f"{torch.backends.cuda.matmul.allow_tf32}), so 'fp32' convolutions may run in TF32."
           if device == "cuda" else "")
    return (f"Machine: {name}, torch {torch.__version__}, Python {platform.python_version()}, "
            f"{intra_op_threads(torch.get_num_threads())} by default.{gpu}")


def report(args: argparse.Namespace, m: Measurements, load_start: tuple, seconds: float) -> list[str]:
    """The results file as Markdown lines."""
    load_end, batch = os.getloadavg(), args.batch_size
    return [
        f"# MRI models: training throughput, memory, and loader vs model ({args.device})", "",
        f"Command: `{command_line()}` ({seconds / 60:.1f} min)", "",
        *([] if m.finished else ["**Written while the run went on: what follows is what it had measured by then.**", ""]),
        machine_line(args.device),
        f"Load average (1/5/15 min) {'/'.join(f'{v:.1f}' for v in load_start)} at the start, "
        f"{'/'.join(f'{v:.1f}' for v in load_end)} at the end: other jobs share this machine, so compare rows "
        f"of this run (ratios), not absolute figures across runs; each row has the 1-min load around it."
        f"{busy_warning(load_start[0])}", "",
        "## Models", "",
        f"Training step = `ExecutionPlan`, fp32 eager, cross-entropy, SGD (lr 0.01, momentum 0.9), batch {batch}, "
        "ages given; each model in a fresh subprocess per thread setting, the settings back to back; one warm-up "
        f"step, then at least 2 timed steps (~{args.budget:.0f} s). Order: ×1, loader, ×2, ×8, ResNet-18, "
        "DenseNet-121, ×8 at 96³. Parameters and activations at 96³: `model_report` (meta device, fp32 leaf "
        "outputs, batch 1); GFLOP: `torch.utils.flop_counter`, forward + backward, 2 per multiply-add.", "",
        *model_lines(args, m), "", *model_notes(args, m), "",
        "## Data loading vs the model step", "",
        f"{args.volumes} synthetic scans: nilearn's MNI152 2009 template at {m.resolution:g} mm "
        f"({'×'.join(map(str, m.volume_shape))}) plus Gaussian noise, int16 NIfTI. `MRIScans` with cache `memory` "
        f"(CacheDataset) and `mri_transforms(({args.size},)*3, train=True)`: blur σ ~ U(0, 1) of the whole volume, "
        f"random {args.size}³ crop; batches of {batch}, a DataLoader per epoch as the engine makes; epochs after the "
        f"first timed (≥ 3, ~{LOADER_BUDGET_S:.0f} s).", "",
        *loader_lines(m, batch), "", *loader_notes(m, batch, args.size), "",
        *gpu_lines(m, batch, args.device), ""]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int,
                        help=f"timed crop (default 72 on cpu, 96 on cuda; at least {MIN_INPUT_SIZE})")
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of timed steps per model on cpu")
    parser.add_argument("--volumes", type=int, default=16, help="synthetic scans for the loader")
    parser.add_argument("--out", type=output_file, help="default bench/results/mri_models.md (cuda: mri_models_cuda.md)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args.child)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    args.size = (72 if args.device == "cpu" else PAPER_SIZE) if args.size is None else args.size
    if args.size < MIN_INPUT_SIZE:
        parser.error(f"--size {args.size}: the widened CNN needs a crop of at least {MIN_INPUT_SIZE} voxels per axis")
    for flag, value in (("--batch-size", args.batch_size), ("--budget", args.budget), ("--volumes", args.volumes)):
        if value <= 0:
            parser.error(f"{flag} {value}: must be above 0")
    out = args.out or ROOT / "bench" / "results" / ("mri_models.md" if args.device == "cpu" else "mri_models_cuda.md")
    started, load_start = time.perf_counter(), os.getloadavg()

    def write(m: Measurements) -> str:
        text = "\n".join(report(args, m, load_start, time.perf_counter() - started)) + "\n"
        write_report(out, text)
        return text

    m = measure(args, write)
    print(write(m))
    if m.failed:
        sys.exit(failure_line(m, out))


if __name__ == "__main__":
    main()
