"""Precision, memory layout and compilation switches change speed, not results."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

from elr_mri.config import ConfigError, TrainLoopConfig, load_config
from elr_mri.engine.checkpoint import load_checkpoint
from elr_mri.engine.execution import (CompiledForFullBatches, ExecutionPlan, limit_cpu_threads, precision_note,
                                      process_settings_kept, resolve_device)
from elr_mri.engine.start import train
from elr_mri.evaluation.evaluate import evaluate_run
from elr_mri.models.phase_grid_conv import PhaseGridConv3d

ROOT = Path(__file__).parents[1]
DIGITS = ROOT / "configs" / "digits" / "elr_sym40.yaml"
BASE = ["data.train_subset=300", "train.epochs=3", "model.name=small_cnn", "model.hidden=16",
        "train.progress=false", "train.tensorboard=false", "train.select=last"]


def test_auto_on_a_cpu_is_plain_fp32_eager() -> None:
    plan = ExecutionPlan.from_config(TrainLoopConfig(), torch.device("cpu"))
    assert (plan.autocast_dtype, plan.compile, plan.channels_last, plan.loss_scaling, plan.cudnn_benchmark,
            plan.fused_optimizer) == (None, False, False, False, False, False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_on_a_gpu_turns_every_switch_on() -> None:
    plan = ExecutionPlan.from_config(TrainLoopConfig(), torch.device("cuda"))
    native_bf16 = torch.version.hip or torch.cuda.get_device_capability() >= (8, 0)
    assert plan.autocast_dtype == (torch.bfloat16 if native_bf16 else torch.float16)
    assert plan.compile and plan.channels_last and plan.cudnn_benchmark and plan.fused_optimizer


@pytest.mark.parametrize(("capability", "dtype"), [((7, 0), torch.float16), ((7, 5), torch.float16),
                                                   ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_precision_is_bf16_from_ampere_on_and_fp16_with_loss_scaling_before(
        monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], dtype: torch.dtype) -> None:
    """As README says: V100 (7.0) and T4 (7.5) fp16 with a loss scaler, A100 (8.0) and H100 (9.0) bf16."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)  # a GPU this is not
    plan = ExecutionPlan.from_config(TrainLoopConfig(), torch.device("cuda"))
    assert plan.autocast_dtype == dtype and plan.loss_scaling == (dtype == torch.float16)


def test_auto_leaves_channels_last_off_for_volumes_on_a_gpu() -> None:
    """Measured on an H200: channels-last 3D slowed the ×8 + age; images keep it. An explicit setting stands."""
    gpu = torch.device("cuda")  # the plan only reads the device's type: no GPU is needed to build it
    images, volumes = (ExecutionPlan.from_config(TrainLoopConfig(precision="bf16"), gpu, volumetric=v) for v in (False, True))
    assert images.channels_last and not volumes.channels_last
    assert volumes.compile and volumes.cudnn_benchmark  # the rest of auto is unchanged
    explicit = ExecutionPlan.from_config(TrainLoopConfig(precision="bf16", channels_last=True), gpu, volumetric=True)
    assert explicit.channels_last


def test_auto_compile_mode_takes_cuda_graphs_only_where_they_were_tested() -> None:
    """CUDA graphs cut the CIFAR-10 epoch from 9.0 s to 2.4 s on an H200 for one network on device-resident batches;
    ELR+, torchrun, fp16, files and volumes keep compile's default mode until tested. An explicit mode stands."""
    gpu, cpu = torch.device("cuda"), torch.device("cpu")  # the plan only reads the device's type

    def mode(device: torch.device, tested: bool, **train: Any) -> str:
        cfg = TrainLoopConfig(**{"precision": "bf16", **train})
        return ExecutionPlan.from_config(cfg, device, graphs_tested=tested).compile_mode

    assert TrainLoopConfig().compile_mode == "auto"
    assert (mode(gpu, True), mode(gpu, False), mode(cpu, True)) == ("reduce-overhead", "default", "default")
    assert (mode(gpu, True, precision="fp32"), mode(gpu, True, precision="fp16")) == ("reduce-overhead", "default")
    assert mode(gpu, True, compile_mode="default") == "default"
    assert mode(gpu, False, compile_mode="reduce-overhead") == "reduce-overhead"
    assert mode(gpu, True, precision="fp16", compile_mode="reduce-overhead") == "reduce-overhead"


def test_cuda_graphs_are_tested_for_one_network_in_one_process_on_device_batches() -> None:
    from elr_mri.data import build_data
    from elr_mri.distributed import DistContext
    from elr_mri.engine.runner import cuda_graphs_tested

    def tested(*settings: str, dist: DistContext = DistContext()) -> bool:
        cfg = load_config(DIGITS, [*BASE, *settings])
        return cuda_graphs_tested(cfg, build_data(cfg.data), dist)

    assert tested() and tested("loss.name=ce") and tested("loss.name=gce")
    assert not tested("loss.name=elr_plus")  # two networks in one tree of graphs: not yet run on a GPU
    assert not tested("train.loader=dataloader")
    assert not tested(dist=DistContext(rank=0, world_size=2))  # torchrun


def test_the_run_records_what_auto_chose() -> None:
    cpu = ExecutionPlan.from_config(TrainLoopConfig(), torch.device("cpu"))
    assert cpu.describe() == "fp32, eager"
    asked = ExecutionPlan.from_config(TrainLoopConfig(cudnn_benchmark=True), torch.device("cpu"))
    assert asked.describe() == "fp32, eager"  # cuDNN does not run on a CPU
    gpu = ExecutionPlan.from_config(TrainLoopConfig(precision="bf16", compile_step=True), torch.device("cuda"),
                                    graphs_tested=True)
    assert gpu.describe() == ("bf16 autocast, channels-last, torch.compile (reduce-overhead, whole step), fused "
                              "optimizer, cuDNN benchmark")
    fp16 = ExecutionPlan.from_config(TrainLoopConfig(precision="fp16", compile=False), torch.device("cuda"))
    assert fp16.describe().startswith("fp16 autocast with loss scaling, channels-last, eager")


def test_explicit_switches_are_honoured() -> None:
    cfg = TrainLoopConfig(precision="fp16", compile=True, channels_last=True, cudnn_benchmark=True)
    plan = ExecutionPlan.from_config(cfg, torch.device("cpu"))
    assert plan.autocast_dtype == torch.float16 and plan.loss_scaling and plan.compile and plan.channels_last
    before = torch.backends.cudnn.benchmark
    try:
        plan.configure_backends()
        assert plan.cudnn_benchmark and torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before
    x = plan.place_input(torch.zeros(2, 3, 8, 8))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert plan.place_input(torch.zeros(2, 1, 4, 4, 4)).is_contiguous(memory_format=torch.channels_last_3d)


def test_bad_switch_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.precision = 'fp64' is not one of"):
        load_config(DIGITS, ["train.precision=fp64"])
    with pytest.raises(ConfigError, match="train.compile_mode = 'fast' is not one of"):
        load_config(DIGITS, ["train.compile_mode=fast"])
    plan = ExecutionPlan.from_config(load_config(DIGITS, ["train.compile_mode=reduce-overhead"]).train, torch.device("cpu"))
    assert plan.compile_mode == "reduce-overhead"


def test_thread_limit_is_applied_and_a_negative_count_refused() -> None:
    before = torch.get_num_threads()
    try:
        limit_cpu_threads(1)
        assert torch.get_num_threads() == 1
        limit_cpu_threads(0)  # 0 leaves the current setting
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="train.threads=-1"):
        limit_cpu_threads(-1)
    assert load_config(DIGITS, ["train.threads=1"]).train.threads == 1


def test_a_thread_count_far_past_the_cpus_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    """1000000 threads (for 1000?) passed the config's checks and killed the run in a segmentation fault once training
    began: torch's OpenMP could not start them. Refused when the run starts, in one line, leaving no folder."""
    cpus = os.cpu_count() or 1
    with pytest.raises(ConfigError, match=rf"^train.threads = {4 * cpus + 1} is more than 4 a CPU on this machine "
                                          rf"\({cpus} CPUs\).*; set train.threads: {cpus} or fewer, or 0"):
        train(load_config(DIGITS, [f"train.threads={4 * cpus + 1}"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _process_settings() -> tuple[Any, ...]:
    """What a training run or its scoring may change process-wide: threads, cuDNN's search, the generators."""
    return (torch.get_num_threads(), torch.backends.cudnn.benchmark, torch.get_rng_state(),
            np.random.get_state()[1].copy(), random.getstate())


def _assert_same_settings(before: tuple[Any, ...], after: tuple[Any, ...]) -> None:
    assert after[:2] == before[:2]
    assert torch.equal(after[2], before[2]) and np.array_equal(after[3], before[3]) and after[4] == before[4]


def test_train_and_evaluate_leave_a_notebooks_threads_and_generators_as_they_were(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        torch.manual_seed(123)  # a notebook's own seed: its next draws must not become the run's
        before = _process_settings()
        train(load_config(DIGITS, [*BASE, "train.epochs=1", "train.threads=1"]), tmp_path / "run")
        _assert_same_settings(before, _process_settings())
        evaluate_run(tmp_path / "run", n_boot=10)  # builds the network afresh: it drew from torch's generator
        _assert_same_settings(before, _process_settings())
    finally:
        torch.set_num_threads(threads)


def _interrupt_once_written(path: Path) -> threading.Thread:
    """Ctrl-C to this process once `path` exists, as a notebook's stop button sends it."""
    def wait() -> None:
        while not path.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=wait, daemon=True)
    watcher.start()
    return watcher


def test_a_notebooks_interrupted_run_leaves_its_settings_and_resumes_in_the_same_process(tmp_path: Path) -> None:
    threads, out = torch.get_num_threads(), tmp_path / "run"
    cfg = load_config(DIGITS, [*BASE, "train.epochs=400", "train.threads=1", "train.checkpoint_seconds=0",
                               "data.num_workers=1"])
    try:
        torch.set_num_threads(2)
        before = _process_settings()
        watcher = _interrupt_once_written(out / "checkpoints" / "last.pt")
        with pytest.raises(KeyboardInterrupt):
            train(cfg, out)
        watcher.join()
        _assert_same_settings(before, _process_settings())
        assert not multiprocessing.active_children()  # its DataLoader worker ended
        cfg.train.epochs = load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] + 1
        assert train(cfg, out, resume=True)["epochs"] == cfg.train.epochs  # the folder's lock was let go
    finally:
        torch.set_num_threads(threads)


def _losses(tmp_path: Path, name: str, *switches: str) -> pd.Series:
    train(load_config(DIGITS, [*BASE, *switches]), tmp_path / name)
    return pd.read_csv(tmp_path / name / "metrics.csv")["train_loss"]


@pytest.fixture(scope="module")
def fp32_losses(tmp_path_factory: pytest.TempPathFactory) -> pd.Series:
    """The plain fp32 run every switch is compared with: trained once for all of them."""
    return _losses(tmp_path_factory.mktemp("reference"), "fp32")


@pytest.mark.parametrize(
    ("name", "switches", "tolerance"),
    [
        ("channels_last", ["train.channels_last=true"], 1e-4),
        # bf16 and fp16 autocast: 2.6e-4 and 1.9e-4 apart from fp32 here (2026-12-06); the networks' products round
        # to 8 and 11 bits, ELR's arithmetic stays fp32
        ("bf16", ["train.precision=bf16"], 5e-3),
        ("fp16", ["train.precision=fp16"], 5e-3),  # through the loss scaler, whose scale divides out exactly
        ("fused_optimizer", ["train.fused_optimizer=true"], 1e-4),
    ],
)
def test_switches_give_the_same_losses(tmp_path: Path, name: str, switches: list[str], tolerance: float,
                                       fp32_losses: pd.Series, capsys: pytest.CaptureFixture[str]) -> None:
    losses = _losses(tmp_path, name, *switches)
    pd.testing.assert_series_equal(losses, fp32_losses, rtol=tolerance, atol=tolerance)
    if name in ("bf16", "fp16"):  # and the run did compute in half precision: a no-op autocast would pass the above
        assert not losses.equals(fp32_losses)
        # the run says where this CPU has no native arithmetic for it (this project's has bf16, not fp16)
        assert all(note in capsys.readouterr().err for note in precision_note(name, torch.device("cpu")))


def test_a_half_precision_the_device_has_no_native_arithmetic_for_is_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    """fp16 on this project's AMD EPYC (AVX-512 BF16, no AVX-512 FP16) ran a small CNN step 12–16× slower than fp32;
    bf16 without native support is slower than fp32 on a CPU and emulated on a GPU before Ampere. One line says so
    and what to set; `auto` never picks them there."""
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    own = torch.cpu.get_capabilities()  # this machine's own answer first
    assert bool(precision_note("fp16", cpu)) != any(own.get(flag, False) for flag in ("avx512_fp16", "amx_fp16",
                                                                                       "fp16_arith"))
    assert precision_note("auto", cpu) == precision_note("fp32", cpu) == []
    # fault injection: the CPUs and GPUs this machine is not
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"cpu_name": "Intel Xeon", "avx2": True})
    assert precision_note("fp16", cpu) == [
        "note: train.precision is fp16, but this CPU (Intel Xeon) has no native fp16 (AVX-512 FP16 or AMX-FP16): it "
        "trains many times slower than fp32 (a small CNN's step on an AVX-512 CPU: 16–18 s against 1.0–1.5 s); set "
        "train.precision: bf16 where the CPU has native bf16 (AVX-512 BF16 or AMX), else fp32"]
    assert precision_note("fp16", cpu, Path("run/config.yaml")) == [  # what evaluate and explain say of a run
        "note: train.precision is fp16, but this CPU (Intel Xeon) has no native fp16 (AVX-512 FP16 or AMX-FP16): it "
        "computes many times slower than fp32 (a small CNN's step on an AVX-512 CPU: 16–18 s against 1.0–1.5 s); set "
        "train.precision: bf16 where the CPU has native bf16 (AVX-512 BF16 or AMX), else fp32 in run/config.yaml, "
        "which evaluate and explain read"]
    [bf16] = precision_note("bf16", cpu)
    assert bf16.startswith("note: train.precision is bf16, but this CPU (Intel Xeon) has no native bf16 (AVX-512 BF16 "
                           "or AMX-BF16): it trains slower than fp32 (") and bf16.endswith("; set train.precision: fp32")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True, "amx_fp16": True})
    assert precision_note("bf16", cpu) == precision_note("fp16", cpu) == []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    assert precision_note("bf16", gpu) == [
        "note: train.precision is bf16, but this GPU (Tesla V100-SXM2-16GB, compute capability 7.0) has no native bf16 "
        "(Ampere and later have): torch emulates it, slower than fp16; train.precision: auto takes fp16 with loss "
        "scaling there"]
    assert precision_note("fp16", gpu) == precision_note("auto", gpu) == []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert precision_note("bf16", gpu) == []


@pytest.mark.slow
@pytest.mark.parametrize("whole_step", [False, True])
def test_compiled_model_gives_the_same_losses(tmp_path: Path, whole_step: bool) -> None:
    reference = _losses(tmp_path, "eager")
    _forget_compiled_graphs()
    compiled = _losses(tmp_path, "compiled", "train.compile=true", f"train.compile_step={whole_step}")
    pd.testing.assert_series_equal(compiled, reference, rtol=1e-3, atol=1e-3)
    assert counters["stats"]["unique_graphs"] == 1  # 270 examples in batches of 64: the tail of 14 ran eagerly


def test_runs_one_after_another_in_a_process_each_compile_afresh(tmp_path: Path) -> None:
    """reproduce_paper_table.py trains a table's runs in one process: each must compile (and on a GPU record CUDA
    graphs for) its own network, as a run alone does, not reuse what an earlier run's network left behind."""
    _forget_compiled_graphs()
    for name in ("first", "second"):
        _losses(tmp_path, name, "train.compile=true")
    assert counters["stats"]["unique_graphs"] == 2


@pytest.mark.slow
def test_a_compiled_step_trains_augmented_images_as_the_compiled_network_alone(tmp_path: Path) -> None:
    """`train.compile_step` through the engine on CIFAR-shaped images with crop and flip: the batches' assembly
    and ELR's arithmetic compiled too give the losses of the network compiled alone."""
    from test_image_data import write_cifar10

    write_cifar10(tmp_path / "data", per_batch=40)
    cifar = ["data.name=cifar10", f"data.root={tmp_path / 'data'}", "data.val_fraction=0.2", "train.batch_size=32",
             "train.epochs=2", "model.name=small_cnn", "model.hidden=8", "train.compile=true",
             "train.progress=false", "train.tensorboard=false"]
    runs = {}
    for whole_step in (False, True):
        _forget_compiled_graphs()
        name = f"whole_step_{whole_step}"
        train(load_config(ROOT / "configs/cifar10/elr_sym40.yaml", [*cifar, f"train.compile_step={whole_step}"]),
              tmp_path / name)
        runs[whole_step] = pd.read_csv(tmp_path / name / "metrics.csv")["train_loss"]
        # the network (with ELR's arithmetic when whole_step), and the batches' assembly when whole_step
        assert counters["stats"]["unique_graphs"] == (2 if whole_step else 1)
    pd.testing.assert_series_equal(runs[True], runs[False], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])  # CUDA graphs: nothing to graph on a CPU
def test_compiled_network_keeps_one_graph_through_a_short_batch(mode: str) -> None:
    _forget_compiled_graphs()
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    wrapped = CompiledForFullBatches(network, mode)
    for batch_size in (16, 6, 16, 6):
        images = torch.randn(batch_size, 3, 8, 8)
        logits = wrapped(images)
        logits.sum().backward()
        torch.testing.assert_close(logits, network(images), rtol=1e-4, atol=1e-5)
    assert wrapped.full_batch == 16
    assert counters["stats"]["unique_graphs"] == 1  # plain torch.compile compiles a second graph for 6


def _no_compiler() -> object:
    """inductor pointed at a C++ compiler that is not there (a slim container's situation), its caches off so that
    nothing compiled earlier stands in for the compile that fails."""
    return torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/g++",), "fx_graph_cache": False})


def test_a_network_torch_compile_cannot_compile_runs_eagerly_after_one_warning(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`train.compile: auto` on a GPU machine without a C compiler for Triton stopped the run with a traceback."""
    import elr_mri.engine.execution as execution

    monkeypatch.setattr(execution, "_REPORTED_COMPILE_FAILURES", set())
    _forget_compiled_graphs()
    torch.manual_seed(0)
    networks = [nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)) for _ in range(2)]
    plan = ExecutionPlan(torch.device("cpu"), autocast_dtype=None, compile=True, channels_last=False)
    assert plan.describe(networks) == "fp32, torch.compile (default)"
    with _no_compiler():
        for network in networks:  # two networks (ELR+), one warning
            wrapped = plan.compiled(network)
            assert isinstance(wrapped, CompiledForFullBatches)
            for _ in range(2):
                images = torch.randn(4, 6)
                torch.testing.assert_close(wrapped(images), network(images), rtol=0, atol=0)
            assert wrapped.graph is None
    # summary.json's record says what ran
    assert plan.describe(networks).startswith("fp32, eager (torch.compile failed on this machine: InvalidCxxCompiler")
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(
        "warning: torch.compile fails on this machine (InvalidCxxCompiler: No working C++ compiler found"), warnings
    assert warnings[0].endswith("training goes on without it: the same results, only slower. Make it work there, or "
                                "set train.compile: false to skip the attempt")


def test_train_compile_true_where_torch_compile_fails_is_one_line(cli_in_process: Callable[..., Any],
                                                                  tmp_path: Path) -> None:
    _forget_compiled_graphs()
    with _no_compiler():
        result = cli_in_process("train", "--config", str(DIGITS), "--out", str(tmp_path / "run"), "--set",
                                "train.compile=true", "--set", "train.epochs=1", "--set", "train.progress=false")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert result.stderr.startswith("elr-mri train: error: train.compile is true, but torch.compile fails on this "
                                    "machine (InvalidCxxCompiler: No working C++ compiler found")
    assert "or set train.compile: auto (which then runs without it) or false" in result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("loss", ["elr", "elr_plus", "elr in graph", "elr_plus in graph"])
def test_cuda_graphs_train_the_engine_networks_as_plain_compile_does(tmp_path: Path, loss: str) -> None:
    """reduce-overhead must really graph a training step (BatchNorm's buffer updates could make inductor skip
    it, silently) and give the losses of the default compile mode; ELR+ runs two compiled networks and their
    weight averages in one tree of CUDA graphs; "in graph" (`train.compile_step`) graphs ELR's arithmetic with the
    network, or ELR+'s EMA forward passes, against the default mode's step without it."""
    name, _, in_graph = loss.partition(" ")
    on_gpu = ["train.device=cuda", "train.precision=fp32", "train.compile=true", "train.cudnn_benchmark=false",
              f"loss.name={name}"]
    _forget_compiled_graphs()
    reference = _losses(tmp_path, "default", *on_gpu, "train.compile_mode=default")  # auto would graph ELR too
    _forget_compiled_graphs()
    graphed = _losses(tmp_path, "graphed", *on_gpu, "train.compile_mode=reduce-overhead",
                      *(["train.compile_step=true"] if in_graph else []))
    assert counters["inductor"]["cudagraph_skips"] == 0
    pd.testing.assert_series_equal(graphed, reference, rtol=1e-3, atol=1e-3)


def _forget_compiled_graphs() -> None:
    torch._dynamo.reset()
    counters.clear()


@pytest.mark.parametrize("loss", ["elr", "elr_plus"])
def test_a_resume_may_switch_an_fp32_run_to_fp16(loss: str) -> None:
    """fp32 and bf16 runs save a disabled gradient scaler's empty state; an fp16 resume starts its own."""
    from elr_mri.engine.methods import build_method

    def method(precision: str):
        cfg = load_config(DIGITS, [*BASE, f"loss.name={loss}", f"train.precision={precision}"])
        return build_method(cfg, (1, 8, 8), 10, 32, ExecutionPlan.from_config(cfg.train, torch.device("cpu")))

    saved = method("fp32").state_dict()
    resumed = method("fp16")
    resumed.load_state_dict(saved)
    scalers = resumed.scalers if loss == "elr_plus" else [resumed.scaler]
    assert all(scaler.is_enabled() for scaler in scalers)


@pytest.mark.parametrize(("precision", "scaled"), [("fp16", True), ("bf16", False), ("fp32", False)])
def test_only_fp16_scales_the_loss(precision: str, scaled: bool) -> None:
    """fp16 gradients underflow without a loss scale; bf16 has fp32's exponent range, and a scaler there would only
    skip steps it need not."""
    plan = ExecutionPlan.from_config(replace(TrainLoopConfig(), precision=precision), torch.device("cpu"))
    assert plan.loss_scaling is scaled
    assert plan.grad_scaler().is_enabled() is scaled


@pytest.mark.parametrize("loss", ["elr", "elr_plus"])
def test_an_fp16_runs_loss_scale_is_restored_on_resume(loss: str) -> None:
    """The scale an fp16 run has backed off to after overflows is part of its state: a resume that started again
    at 65536 would overflow and skip steps that the uninterrupted run took."""
    from elr_mri.engine.methods import build_method

    def method():
        cfg = load_config(DIGITS, [*BASE, f"loss.name={loss}", "train.precision=fp16"])
        return build_method(cfg, (1, 8, 8), 10, 32, ExecutionPlan.from_config(cfg.train, torch.device("cpu")))

    def scalers(built) -> list[torch.amp.GradScaler]:
        return built.scalers if loss == "elr_plus" else [built.scaler]

    trained = method()
    for scaler in scalers(trained):
        scaler.scale(torch.ones(()))  # the scale exists once a loss was scaled
        scaler.update(new_scale=1024.0)  # as after overflows
    resumed = method()
    resumed.load_state_dict(trained.state_dict())
    assert [scaler.get_scale() for scaler in scalers(resumed)] == [1024.0] * len(scalers(trained))


def test_compiling_keeps_inductors_cache_in_the_users_own_folder(monkeypatch, tmp_path) -> None:
    """torch's default cache, /tmp/torchinductor_<user>, is a name another local user can create first, and inductor
    runs the code compiled there; a cache folder the user chose stays theirs. (Wrapping compiles nothing yet.)"""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "elr-mri" / "torchinductor"
    for unchosen in (None, os.path.abspath(default_cache_dir())):  # importing torch._dynamo writes the default there
        if unchosen is None:
            monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
        else:
            monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", unchosen)
        CompiledForFullBatches(nn.Linear(2, 2))
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache) and cache.stat().st_mode & 0o077 == 0
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    CompiledForFullBatches(nn.Linear(2, 2))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_a_relative_xdg_cache_home_is_ignored_as_the_xdg_spec_says(monkeypatch, tmp_path) -> None:
    """A relative XDG_CACHE_HOME made the cache a relative path, another folder in each working directory (a
    DataLoader worker's, the next run's), and a folder in whatever directory training was started from."""
    monkeypatch.setenv("XDG_CACHE_HOME", "relative-cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    (tmp_path / "started-here").mkdir()
    monkeypatch.chdir(tmp_path / "started-here")
    CompiledForFullBatches(nn.Linear(2, 2))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "home" / ".cache" / "elr-mri" / "torchinductor")
    assert not any((tmp_path / "started-here").iterdir())


def test_only_an_explicit_compile_true_stops_a_run_where_torch_compile_fails() -> None:
    """README: where torch.compile cannot compile, `compile: auto` trains on eagerly and `compile: true` stops."""
    gpu = torch.device("cuda")  # the plan only reads the device's type (and, for auto precision, not here)

    def required(compile_setting: bool | str) -> bool:
        cfg = TrainLoopConfig(precision="bf16", compile=compile_setting)
        return ExecutionPlan.from_config(cfg, gpu).compile_required

    assert (required("auto"), required(True), required(False)) == (False, True, False)


def test_the_rest_of_a_step_is_compiled_only_beside_a_compiled_network() -> None:
    """`train.compile_step` compiles ELR's arithmetic with the network: with `train.compile: false` nothing is."""
    def compiles_step(compile_setting: bool) -> bool:
        cfg = TrainLoopConfig(compile=compile_setting, compile_step=True)
        return ExecutionPlan.from_config(cfg, torch.device("cpu")).compiles_step

    assert (compiles_step(True), compiles_step(False)) == (True, False)


def test_channels_last_places_the_weights_of_2d_and_3d_convolutions_and_leaves_the_others() -> None:
    plan = ExecutionPlan.from_config(TrainLoopConfig(channels_last=True), torch.device("cpu"))
    model = plan.place_model(nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv3d(2, 4, 3), nn.Linear(3, 2)))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert model[2].weight.is_contiguous()


def test_phase_grids_are_named_only_for_a_network_with_a_dilated_convolution() -> None:
    """An undilated PhaseGridConv3d has no phase grids to run on: the run ran its plain convolution."""
    plan = ExecutionPlan.from_config(TrainLoopConfig(phase_grid_convs=True), torch.device("cpu"))
    undilated, dilated = PhaseGridConv3d(1, 2, 3, padding=1), PhaseGridConv3d(1, 2, 3, padding=2, dilation=2)
    assert plan.describe([undilated]) == "fp32, eager"
    assert plan.describe([undilated, dilated]) == "fp32, eager, dilated convolutions on phase grids"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a visible GPU")
def test_train_device_cuda_without_a_visible_gpu_is_a_config_error_and_auto_takes_the_cpu() -> None:
    with pytest.raises(ConfigError, match="train.device = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'"):
        resolve_device("cuda")
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")


def test_cudnns_benchmark_switch_comes_back_as_it_was_however_the_block_ends() -> None:
    """A notebook that trained with `train.cudnn_benchmark` went on with cuDNN's algorithm search switched."""
    before = torch.backends.cudnn.benchmark
    with pytest.raises(RuntimeError, match="stopped"):
        with process_settings_kept():
            torch.backends.cudnn.benchmark = not before
            raise RuntimeError("stopped")
    assert torch.backends.cudnn.benchmark == before
