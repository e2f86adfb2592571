"""The widened ×8's two dilated 3D convolutions as the library runs them, against the same sums on phase grids and
as one matrix product over gathered windows (im2col GEMM).

Why: at 96³ two convolutions hold 99% of the ×8 + age step's FLOPs (the third, 256 → 512 channels, 5³ dilated by 2,
81%; the second, 32 → 256, 3³ dilated by 2, 18%), and on an H200 the whole step ran at 14–16% of the tensor cores'
dense peak. A convolution dilated by d is d³ undilated convolutions, one on each phase grid of the padded input
(every d-th voxel, from each of the d³ starting offsets), whose outputs interleave into the dilated one's: the same
multiply-adds in another order, which the convolution libraries may run at another speed (dilated kernels are
often a slower path). A third way gathers each output voxel's input windows into a row and multiplies (bench/
conv_as_gemm.py): matrix products run nearer the hardware's peak than convolutions do, at the price of the gather.
This times the three, forward + backward (input and weight gradients), at the engine's batch, in fp32 and bf16, and
checks that they agree: where the phase grids win, `train.phase_grid_convs` pays; where the GEMM wins by more, it
is the candidate for the engine.

    .venv/bin/python bench/bench_dilated_conv.py                 # this CPU
    python bench/bench_dilated_conv.py --device cuda             # a GPU machine (bench/gpu_checks.sh 3d)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from results_file import command_line, failures_line, intra_op_threads, load_line, said_failed, write_report

from conv_as_gemm import conv3d_as_gemm

from elr_mri.models.phase_grid_conv import conv3d_on_phases
from preprocess.user_errors import output_file

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Layer:
    """One of the ×8's dilated convolutions, with the grid it sees at a 96³ crop."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    padding: int
    dilation: int
    grid: int  # input voxels a side

    @property
    def out_grid(self) -> int:
        return self.grid + 2 * self.padding - self.dilation * (self.kernel - 1)

    def training_flops(self, batch: int) -> int:
        """Forward, input gradient and weight gradient: three products of the same size, 2 FLOPs a multiply-add."""
        macs = batch * self.out_channels * self.in_channels * self.kernel ** 3 * self.out_grid ** 3
        return 3 * 2 * macs


LAYERS = (
    Layer("third convolution (81% of the step's FLOPs)", 256, 512, 5, 2, 2, 21),
    Layer("second convolution (18%)", 32, 256, 3, 0, 2, 47),
)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def library_dilated(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, layer: Layer) -> torch.Tensor:
    return F.conv3d(x, weight, bias, padding=layer.padding, dilation=layer.dilation)


def on_phases(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, layer: Layer) -> torch.Tensor:
    return conv3d_on_phases(x, weight, bias, layer.padding, layer.dilation)


def as_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, layer: Layer) -> torch.Tensor:
    return conv3d_as_gemm(x, weight, bias, layer.padding, layer.dilation)


# the library's own first: the others are compared with it
WAYS: dict[str, Callable[..., torch.Tensor]] = {"dilated kernel": library_dilated, "phase grids": on_phases,
                                                "im2col GEMM": as_gemm}


def tensors(layer: Layer, batch: int, dtype: torch.dtype, device: torch.device,
            channels_last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, layer.in_channels, *(layer.grid,) * 3, generator=generator)
    weight = torch.randn(layer.out_channels, layer.in_channels, *(layer.kernel,) * 3, generator=generator)
    weight /= (layer.in_channels * layer.kernel ** 3) ** 0.5
    bias = torch.randn(layer.out_channels, generator=generator)
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    return (x.to(device, dtype).contiguous(memory_format=layout).requires_grad_(),
            weight.to(device, dtype).contiguous(memory_format=layout).requires_grad_(),
            bias.to(device, dtype).requires_grad_())


def step_seconds(way: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], layer: Layer,
                 budget_s: float, sync: Callable[[], None]) -> float:
    """Median seconds of forward + backward, after two untimed runs (cuDNN's algorithm search among them)."""
    def once() -> float:
        sync()
        started = time.perf_counter()
        way(*inputs, layer).sum().backward()
        sync()
        return time.perf_counter() - started

    once(), once()
    times = [once()]
    while sum(times) < budget_s and len(times) < 50:
        times.append(once())
    return statistics.median(times)


def largest_differences(layer: Layer, device: torch.device) -> dict[str, str]:
    """Each other way's largest |difference| from the library's in fp32 (output, input gradient, weight gradient),
    relative to the library's largest value."""
    results = {}
    for name, way in WAYS.items():
        x, weight, bias = tensors(layer, 1, torch.float32, device, channels_last=False)
        y = way(x, weight, bias, layer)
        x_grad, weight_grad = torch.autograd.grad(y, (x, weight), torch.ones_like(y))
        results[name] = (y.detach(), x_grad, weight_grad)
    library, *others = results.items()
    return {name: " / ".join(f"{float((mine - theirs).abs().max() / theirs.abs().max()):.1e}"
                             for mine, theirs in zip(values, library[1]))
            for name, values in others}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=4, help="volumes a step (the ADNI configs': 4)")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed runs per case")
    parser.add_argument("--out", type=output_file, help="default bench/results/dilated_conv_<device>.md")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    if args.batch_size < 1 or args.budget <= 0:
        parser.error("--batch-size and --budget must be above 0")
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    torch.backends.cudnn.benchmark = on_gpu  # the engine's `auto` on a GPU
    # fp32 on equal terms: torch's default lets convolutions, not matrix products, run in TF32 on a GPU
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    layouts = (False, True) if on_gpu else (False,)  # channels-last 3D: a GPU layout (oneDNN picks its own)
    out = args.out or ROOT / "bench" / "results" / f"dilated_conv_{args.device}.md"
    rows: list[str] = []
    failed: list[str] = []  # "case: the error's first line", each a `Failed:` line and part of the exit line
    load_start = os.getloadavg()[0]
    pending = len(LAYERS) * len(DTYPES) * len(layouts)  # timed rows still to come
    for layer in LAYERS:
        try:
            differences = largest_differences(layer, device)
            print(f"{layer.name}: fp32 largest relative differences from the library's {differences}", flush=True)
        except Exception as error:  # noqa: BLE001 - the layer's timings are still worth measuring
            differences = None
            failed.append(f"{layer.name}, agreement: {said_failed(f'{layer.name}, agreement', error)}")
        for precision in DTYPES:
            for channels_last in layouts:
                setting = f"{precision}{', channels-last' if channels_last else ''}"
                try:  # one case failing (memory, a kernel the library lacks) leaves the rest to time
                    cells = timed_cells(layer, DTYPES[precision], channels_last, args, device, sync)
                    rows.append(f"| {layer.name} | {setting} | {cells} |")
                    print(rows[-1], flush=True)
                except Exception as error:  # noqa: BLE001
                    case = f"{layer.name}, {setting}"
                    failed.append(f"{case}: {said_failed(case, error)}")
                pending -= 1
                # after each row: a device call may be cut
                write_report(out, report(args, device, rows, failed, pending, load_start))
        if differences is not None:
            rows.append(f"| {layer.name}: fp32 largest differences from the library's (output / input gradient / "
                        "weight gradient), relative | | | " + " | ".join(differences.values()) + " | | | |")
    text = report(args, device, rows, failed, pending, load_start)
    write_report(out, text)
    print(text)
    if failed:  # exit 1: bench/gpu_checks.sh flags a failed step by its exit status
        sys.exit(failures_line("bench_dilated_conv", failed, out))


def timed_cells(layer: Layer, dtype: torch.dtype, channels_last: bool, args: argparse.Namespace,
                device: torch.device, sync: Callable[[], None]) -> str:
    """A case's table cells: each way's ms, the others' speed-ups over the library's, and each way's TFLOP/s."""
    inputs = tensors(layer, args.batch_size, dtype, device, channels_last)
    seconds = [step_seconds(way, inputs, layer, args.budget, sync) for way in WAYS.values()]
    tflops = [layer.training_flops(args.batch_size) / s / 1e12 for s in seconds]
    return (" | ".join(f"{1e3 * s:.2f}" for s in seconds) + " | "
            + " | ".join(f"{seconds[0] / s:.2f}×" for s in seconds[1:]) + " | "
            + " / ".join(f"{t:.3g}" for t in tflops))

def report(args: argparse.Namespace, device: torch.device, rows: list[str], failed: list[str], pending: int,
           load_start: float) -> str:
    """The bench's Markdown file with the rows measured so far, and how many timed rows are `pending`: a call cut by
    its limit leaves a file that says it is short. `load_start`: the 1-min load average before the first row."""
    on_gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if on_gpu else f"{platform.machine()}, {os.cpu_count()} CPU cores"
    others = list(WAYS)[1:]
    return "\n".join([
        f"# The ×8's dilated convolutions: the library's dilated kernels, phase grids and im2col GEMM ({args.device})",
        "", f"Command: `{command_line()}`", "",
        f"Machine: {name}, torch {torch.__version__}, {intra_op_threads(torch.get_num_threads())}; cuDNN benchmark "
        f"{'on' if on_gpu else 'n/a'}, TF32 convolutions {torch.backends.cudnn.allow_tf32} (torch's default) and matrix "
        f"products {torch.backends.cuda.matmul.allow_tf32} (set alike here, for the GEMM's fp32 rows). Batch "
        f"{args.batch_size}, forward + backward (input and weight gradients), median of runs filling {args.budget} s "
        f"after two untimed. {load_line(load_start)}", "",
        "| layer at a 96³ crop | precision | " + " | ".join(f"{way} ms" for way in WAYS) + " | "
        + " | ".join(f"speed-up, {way}" for way in others) + " | TFLOP/s (" + " / ".join(WAYS) + ") |",
        "|---|---|" + "---|" * (2 * len(WAYS)), *rows, "",
        "Speed-up above 1: faster than the library's dilated kernel. TFLOP/s counts the dilated convolution's "
        "multiply-adds (three products for forward + backward, 2 FLOPs each); the phase grids do the same ones plus "
        "the padding's. im2col GEMM: `bench/conv_as_gemm.py`, the windows gathered into rows and kept for the weight "
        "gradient.",
        *([""] if failed else []), *[f"Failed: {line}" for line in failed],
        *([f"Still to measure when this was written: {pending} timed row(s)."] if pending else []),
        ""])


if __name__ == "__main__":
    main()
