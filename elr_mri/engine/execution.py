"""How the networks run on the chosen device: precision, memory layout, compilation.

Each is a config switch (`train.precision`, `train.channels_last`, `train.compile`, `train.compile_mode`,
`train.cudnn_benchmark`, `train.fused_optimizer`) whose `auto` default picks what pays off on that device: bf16
autocast (fp16 with a gradient scaler on GPUs without native bf16, such as the paper's V100),
channels-last memory (for images; not 3D volumes), torch.compile (with CUDA graphs where they were tested), cuDNN's
algorithm search and fused optimizers on a GPU; plain fp32 eager on a CPU, where bf16 pays only on CPUs with native
bf16 and the others not at all.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager, nullcontext
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager

import torch
from torch import nn
from torch._dynamo.exc import BackendCompilerFailed

from elr_mri.config import ConfigError, TrainLoopConfig
from elr_mri.engine.checkpoint import capture_rng, restore_rng
from elr_mri.models.phase_grid_conv import PhaseGridConv3d, use_phase_grids
from preprocess.cores import runnable_cores, usable_cores

__all__ = ["CompiledForFullBatches", "ExecutionPlan", "busy_cores_note", "keep_compile_cache_private",
           "limit_cpu_threads", "precision_note", "process_settings_kept", "resolve_device"]


@dataclass(frozen=True)
class ExecutionPlan:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: fp32
    compile: bool
    channels_last: bool
    cudnn_benchmark: bool = False
    compile_mode: str = "default"  # torch.compile's mode: "reduce-overhead" adds CUDA graphs
    compile_step: bool = False  # with `compile`: ELR's arithmetic and the batch assembly compiled too
    fused_optimizer: bool = False
    # `train.compile: true`, not auto: where torch.compile fails on this machine the run stops instead of going on eager
    compile_required: bool = False
    phase_grid_convs: bool = False  # the widened 3D CNN's dilated convolutions on phase grids
    # why torch.compile failed on this machine, where its wrappers went on eagerly (`describe` then says so)
    compile_failures: list[str] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def from_config(cls, cfg: TrainLoopConfig, device: torch.device, volumetric: bool = False,
                    graphs_tested: bool = False) -> ExecutionPlan:
        """`volumetric`: the inputs are 3D volumes, whose channels-last layout `auto` leaves off: on an H200 it
        slowed the ×8 + age at 96³ by 3–4% eager and compiled alike (bench/results/execution_variants_cuda.md).
        `graphs_tested`: the run is the kind CUDA graphs were tested and timed on (one network, one process,
        device-resident image batches: `cuda_graphs_tested`), where `compile_mode: auto` takes them unless the
        precision is fp16."""
        on_gpu = device.type == "cuda"
        precision = cfg.precision
        if precision == "auto":
            precision = ("bf16" if _native_bf16_gpu(device) else "fp16") if on_gpu else "fp32"
        compile_mode = cfg.compile_mode
        if compile_mode == "auto":  # fp16's loss scaling has not run under CUDA graphs yet (bf16 and fp32 have)
            compile_mode = "reduce-overhead" if on_gpu and graphs_tested and precision != "fp16" else "default"
        dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
        return cls(device=device, autocast_dtype=dtypes[precision],
                   compile=on_gpu if cfg.compile == "auto" else cfg.compile,
                   channels_last=on_gpu and not volumetric if cfg.channels_last == "auto" else cfg.channels_last,
                   cudnn_benchmark=on_gpu if cfg.cudnn_benchmark == "auto" else cfg.cudnn_benchmark,
                   compile_mode=compile_mode, compile_step=cfg.compile_step,
                   fused_optimizer=on_gpu if cfg.fused_optimizer == "auto" else cfg.fused_optimizer,
                   compile_required=cfg.compile is True, phase_grid_convs=cfg.phase_grid_convs)

    def describe(self, networks: Sequence[nn.Module] = ()) -> str:
        """How `networks` ran, in words for summary.json: e.g. "bf16 autocast, channels-last, torch.compile
        (reduce-overhead), fused optimizer, cuDNN benchmark". What ran, not only what `auto` chose: a compile that
        failed on the machine reads as eager, and phase grids count only where `networks` have dilated convolutions."""
        names = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast with loss scaling"}
        parts = [names[self.autocast_dtype]]
        if self.channels_last:
            parts.append("channels-last")
        if self.compile and self.compile_failures:
            parts.append(f"eager (torch.compile failed on this machine: {self.compile_failures[0]})")
        elif self.compile:
            parts.append(f"torch.compile ({self.compile_mode}{', whole step' if self.compile_step else ''})")
        else:
            parts.append("eager")
        if self.phase_grid_convs and any(isinstance(module, PhaseGridConv3d) and module.dilation[0] > 1
                                         for network in networks for module in network.modules()):
            parts.append("dilated convolutions on phase grids")
        if self.fused_optimizer:
            parts.append("fused optimizer")
        if self.cudnn_benchmark and self.device.type == "cuda":  # asked for on a CPU, it changes nothing
            parts.append("cuDNN benchmark")
        return ", ".join(parts)

    def configure_backends(self) -> None:
        """Process-wide switches the plan implies: cuDNN's algorithm search (a no-op on a CPU)."""
        torch.backends.cudnn.benchmark = self.cudnn_benchmark

    @property
    def precision(self) -> str:
        """train.precision as it runs, `auto` resolved: what a diverged run records it ran in."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    @property
    def loss_scaling(self) -> bool:
        """fp16 gradients underflow without a loss scale; bf16 has fp32's range and needs none."""
        return self.autocast_dtype == torch.float16

    def autocast(self) -> ContextManager:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.loss_scaling)

    def place_model(self, model: nn.Module) -> nn.Module:
        """Move to the device, in channels-last layout when asked (applies to 4D and 5D weights), with its dilated
        convolutions on phase grids when asked."""
        model = model.to(self.device)
        use_phase_grids(model, self.phase_grid_convs)
        if self.channels_last:
            for module in model.modules():
                for name, param in module.named_parameters(recurse=False):
                    if param.dim() in (4, 5):
                        param.data = param.data.contiguous(memory_format=_layout(param.dim()))
        return model

    def place_input(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.dim() in (4, 5):
            images = images.contiguous(memory_format=_layout(images.dim()))
        return images

    @property
    def compiles_step(self) -> bool:
        """Whether the rest of a training step is compiled beside the network (`train.compile_step`)."""
        return self.compile and self.compile_step

    def compiled(self, module: nn.Module) -> nn.Module:
        if not self.compile:
            return module
        return CompiledForFullBatches(module, self.compile_mode, self.compile_required, self.compile_failures)

    def compiled_function(self, function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """`function` compiled for the batch size of its first call, without CUDA graphs: a graph would copy
        every input it does not own into its own memory at each call, as the whole image store for a batch's
        assembly."""
        return CompiledForFullBatches(function, "default", self.compile_required, self.compile_failures)


class CompiledForFullBatches(nn.Module):
    """A module (or function) run by torch.compile at the batch size of its first call (the length of its first
    argument) and eagerly at any other.

    Why: an epoch's short last batch (45,000 CIFAR images in batches of 128 leave 72) would make
    torch.compile trace and compile a second, dynamic-shape graph for one batch an epoch: about as
    long as the first compile, for each trained network. Running that batch eagerly costs a few
    milliseconds an epoch instead. Parameters and buffers are the wrapped module's own.

    Where torch.compile cannot compile on this machine (no C/C++ compiler for inductor or Triton, as in slim
    containers), it runs eagerly from then on after one warning line, the same arithmetic only slower; `required`
    (`train.compile: true`) makes that a one-line error instead. `failures` collects why, for the run's records.
    """

    def __init__(self, module: nn.Module | Callable[..., torch.Tensor], mode: str = "default",
                 required: bool = False, failures: list[str] | None = None) -> None:
        super().__init__()
        self.eager = module
        keep_compile_cache_private()
        self.graph: Callable[..., torch.Tensor] | None = torch.compile(module, dynamic=False, mode=mode)  # None: eager
        self.full_batch: int | None = None
        self.required = required
        self.failures = failures

    def forward(self, images: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        if self.full_batch is None:
            self.full_batch = len(images)
        if self.graph is None or len(images) != self.full_batch:
            return self.eager(images, **extra)
        try:
            return self.graph(images, **extra)
        except BackendCompilerFailed as err:
            self._run_eagerly_from_now_on(err)
            return self.eager(images, **extra)

    def _run_eagerly_from_now_on(self, err: BackendCompilerFailed) -> None:
        reason = str(err).strip().splitlines()[0]  # e.g. "InvalidCxxCompiler: No working C++ compiler found in ..."
        if self.required:
            raise ConfigError(f"train.compile is true, but torch.compile fails on this machine ({reason}); make it "
                              "work there (its message says what it lacks), or set train.compile: auto (which then "
                              "runs without it) or false") from None
        if reason not in _REPORTED_COMPILE_FAILURES:  # once, not once per compiled network
            _REPORTED_COMPILE_FAILURES.add(reason)
            print(f"warning: torch.compile fails on this machine ({reason}); training goes on without it: the same "
                  "results, only slower. Make it work there, or set train.compile: false to skip the attempt",
                  file=sys.stderr)
        if self.failures is not None:
            self.failures.append(reason)
        self.graph = None


_REPORTED_COMPILE_FAILURES: set[str] = set()


def keep_compile_cache_private() -> None:
    """Point torch.compile's cache at the user's own cache folder (`_user_cache_home`, then elr-mri/torchinductor) in
    place of torch's default, /tmp/torchinductor_<user>: a name another local user can create first, and inductor
    then runs the code it finds compiled there. Importing torch._dynamo writes that default
    into TORCHINDUCTOR_CACHE_DIR, so only another value there is the user's choice, and stays. Where the folder cannot
    be made (no home, a read-only one), or a torch older than this helper's module, torch's default stays: compiling
    still works."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # a private module of torch's: not in every version pyproject allows
        return
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") not in (None, os.path.abspath(default_cache_dir())):
        return
    try:
        cache = _user_cache_home() / "elr-mri" / "torchinductor"
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: Path.home() without a home
        return
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)


def _user_cache_home() -> Path:
    """XDG_CACHE_HOME where it is an absolute path, else ~/.cache: the XDG spec has a relative one ignored, since it
    would name another folder in each working directory (a DataLoader worker's, a later run's)."""
    chosen = os.environ.get("XDG_CACHE_HOME", "")
    return Path(chosen) if os.path.isabs(chosen) else Path.home() / ".cache"


def limit_cpu_threads(threads: int) -> None:
    """Apply `train.threads`: torch's intra-op CPU threads. 0 keeps torch's default of one a core, but no more than
    the cores this process may use (`usable_cores`): torch counts the runnable cores, so in a 2-CPU container on a
    64-core host it ran 64 threads on 2 CPUs' time. OMP_NUM_THREADS, where set, is the user's count and stays."""
    if threads < 0:
        raise ValueError(f"train.threads={threads}: use 0 (torch's default, one a core) or a positive count")
    if not threads and not os.environ.get("OMP_NUM_THREADS"):
        threads = min(torch.get_num_threads(), usable_cores())
    if threads:
        torch.set_num_threads(threads)


@contextmanager
def process_settings_kept() -> Iterator[None]:
    """torch's CPU threads, cuDNN's benchmark switch and the Python, NumPy and torch generators back as they were
    once the block ends, however it ends. Why: a notebook that trained (`train.threads`, the run's seed) or scored a
    run went on with them changed, its own code slower or faster and drawing other numbers without a word. The
    GPU's generator only where CUDA had started: reading it would start CUDA before a CPU run forks its workers."""
    threads, benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    generators = capture_rng(cuda=torch.cuda.is_initialized())
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark
        restore_rng(generators)


def busy_cores_note(threads: int, device: torch.device) -> list[str]:
    """A note for a CPU run at torch's default threads (`train.threads: 0`: one a core) on a machine whose cores other
    jobs hold: its threads then wait on each other (on a loaded 2-core machine the README's first digits run took 19
    minutes, its CE control 19 s with one thread). None where that default is one thread already (`OMP_NUM_THREADS=1`,
    as README advises for busy machines): the advice would be what the user did. For someone at a terminal only: a
    job's log, or a test's, keeps its lines."""
    if threads or device.type != "cpu" or not sys.stderr.isatty():
        return []
    running = torch.get_num_threads()
    cores = runnable_cores()  # the load average is the whole machine's, not a container's: no quota here
    load = os.getloadavg()[0]
    if running <= 1 or load <= cores:
        return []
    return [f"note: this machine is busy (load {load:.1f} on {cores} core(s)) and torch runs {running} threads, so the "
            "threads wait on each other: --set train.threads=1 is often many times faster here"]


def precision_note(precision: str, device: torch.device, scored: Path | None = None) -> list[str]:
    """A note where `train.precision` asks for a half type the device has no native arithmetic for: the same results,
    slower than fp32, often many times (the figures in the notes, measured on this project's AMD EPYC). `auto` never
    asks for one there: fp32 on a CPU, fp16 with loss scaling on a GPU without bf16. `scored`: the config.yaml of a
    run that evaluate or explain computes with (its precision is read there), None for training (new or resumed)."""
    if precision not in ("bf16", "fp16"):
        return []
    where = "" if scored is None else f" in {scored}, which evaluate and explain read"
    if device.type == "cuda":
        if precision == "fp16" or _native_bf16_gpu(device):
            return []
        major, minor = torch.cuda.get_device_capability(device)
        return [f"note: train.precision is bf16, but this GPU ({torch.cuda.get_device_name(device)}, compute "
                f"capability {major}.{minor}) has no native bf16 (Ampere and later have): torch emulates it, slower "
                "than fp16; train.precision: auto takes fp16 with loss scaling there"]
    capabilities = getattr(torch.cpu, "get_capabilities", lambda: None)()  # older torch cannot tell: no note
    native = _NATIVE_ON_CPU[precision]
    if capabilities is None or any(capabilities.get(name, False) for name in native):
        return []
    instead = "fp32" if precision == "bf16" else "bf16 where the CPU has native bf16 (AVX-512 BF16 or AMX), else fp32"
    slower = {"bf16": "slower than fp32 (a small CNN's step on an AVX-512 BF16 CPU with oneDNN held to AVX-512: 1.2 s "
                      "against 1.0 s; to AVX2: 24 s against 1.2 s)",
              "fp16": "many times slower than fp32 (a small CNN's step on an AVX-512 CPU: 16–18 s against 1.0–1.5 s)"}
    name = f" ({capabilities['cpu_name']})" if capabilities.get("cpu_name") else ""
    return [f"note: train.precision is {precision}, but this CPU{name} has no native {precision} (AVX-512 "
            f"{precision.upper()} or AMX-{precision.upper()}): it {'trains' if scored is None else 'computes'} "
            f"{slower[precision]}; set train.precision: {instead}{where}"]


def resolve_device(name: str) -> torch.device:
    """`train.device` as torch's device: `auto` takes a visible GPU. Here, not in the training loop, because scoring
    a run (`elr-mri evaluate`, `explain`) picks its device the same way and should not import that loop."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def _native_bf16_gpu(device: torch.device) -> bool:
    """Whether the GPU computes bf16 natively: NVIDIA's from Ampere (compute capability 8.0) on, AMD's (ROCm) all.
    Older ones emulate it, which `auto` avoids and an explicit bf16 is told about."""
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device) >= (8, 0)


# the capability flags (torch.cpu.get_capabilities) of native half-precision arithmetic: x86's, then ARM's
_NATIVE_ON_CPU = {"bf16": ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"),
                  "fp16": ("avx512_fp16", "amx_fp16", "fp16_arith")}


def _layout(dims: int) -> torch.memory_format:
    return torch.channels_last if dims == 4 else torch.channels_last_3d
