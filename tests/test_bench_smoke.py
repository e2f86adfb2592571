"""Each benchmark of bench/ that can be made tiny, run at its smallest settings into a temporary file: a script that
rotted as the code moved on (a setting, an option or a function renamed under it) fails here, not an hour into a
measurement or a device session. Covered elsewhere: bench_cifar_step.py (test_bench_cifar_step.py),
check_row_settings.py and the parsers of every `--device cuda` call (test_gpu_checks.py). bench_bootstrap.py has its
own test at the end. Left out, as no setting
makes them small: bench_compile_tail.py (ResNet-34 under torch.compile, minutes), bench_dilated_conv.py (the ×8's
layers at 96³; its path on two small layers below), bench_execution_variants.py and bench_mri_models.py (the 3D
models, compiled or several, at 71³ and more), bench_preprocess.py (ANTs registrations of Colin27);
mri_demo_scaling.py reads finished demo runs."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DIGITS = ["--set", "train.epochs=2"]

# script: (its tiny arguments, lines its results file must hold, as patterns)
CASES = {
    "bench_target_precision.py": (["--seeds", "1", "--set", "train.epochs=1"],
                                  [r"^ELR target-table storage, digits, .*1 seeds, 1 epochs \(`python bench/",
                                   *(rf"^\| {dtype} \| \d\.\d GB \| \d+\.\d\d ± 0\.00 \| -?\d+\.\d\d ± 0\.00 \| "
                                     for dtype in ("float32", "bfloat16", "float16"))]),
    "bench_mislabel_source.py": (["--settings", "pair40", "--losses", "elr", "--seeds", "1", *DIGITS],
                                 [r"^Suspected-mislabel table from the selected epoch's ELR targets .*1 seeds, 2 epochs ",
                                  *(rf"^\| pair40 \| elr \| 0 \| {source} \(epoch \d\) \| \d+ \| \d+ \| \d+\.\d \| "
                                    for source in ("best", "last"))]),
    "bench_mri_mislabels.py": (["--subjects", "20", "--losses", "elr", "--seeds", "1", "--set", "train.epochs=1"],
                               [r"^Suspected-mislabel table on a simulated MRI cohort: 20 training-site participants ",
                                r"^\| elr \| 0 \| \d+ \| \d+ \| \d+ \| (\d+\.\d|–) \| (\d+\.\d|–) \| \d+ \| (\d+\.\d|–) \| "]),
    "bench_side_by_side.py": (["--config", "configs/digits/elr_sym40.yaml", *DIGITS],
                              [r"^\| one after the other \(each run alone\) \| \d+ \| \d+\.\d\d, \d+\.\d\d \|$",
                               r"^\| side by side \(2 at once\) \| \d+ \| \d+\.\d\d, \d+\.\d\d \|$",
                               r"^Epoch throughput side by side against alone: \*\*\d+\.\d\d×\*\*"]),
    "bench_ddp_scaling.py": (["--processes", "1", "2", "--min-seconds", "0.01", "--epochs", "2", "--repeats", "1"],
                             [r"^\| 1 \| \d+ \| \d+\.\d \| \d+ \(\d+–\d+\) \| 1\.00× \(1\.00–1\.00\) \|$",
                              r"^\| 2 \| \d+ \| \d+\.\d \| \d+ \(\d+–\d+\) \| \d+\.\d\d× \(",
                              r"^One round: whether other jobs changed|^Unsteady: "]),
    "bench_device_batches.py": (["--random-pixels", "--repeats", "1", "--batch-size", "1024"],
                                [r"^Machine: .* Load average \(1 min\) \d+\.\d before, \d+\.\d after\.( \*\*Busy.*)?$",
                                 r"^Data: random uint8; 45,000 training images, batches of 1024 ",
                                 r"^\| per-item DataLoader, num_workers=2 \| [\d,]+ \| \d+\.\d\d \|$",
                                 r"^\| device-resident \(cpu\), \d+ intra-op threads? \| [\d,]+ \| \d+\.\d\d \|$",
                                 r"^Best device-resident path over best per-item path: \*\*\d+\.\d×\*\*"]),
    "bench_image_decode.py": (["--rounds", "1"],  # --root: the folder the test writes
                              [r"^\| 8 threads \| \d+\.\d \|$",
                               r"^\| the default \(8 threads here: .*\) \| \d+\.\d \|$",  # 24 images
                               r"^The default is (as fast \(within 5%: \d\.\d\d×\) as|\*\*\d+\.\d×\*\* (faster|slower) "
                               r"than) 8 threads \(medians\)\.$"]),
    "bench_mri_loader.py": (["--workers", "0", "--volumes", "2", "--batch-size", "1", "--crop", "32",
                             "--resolution", "4", "--blur-on", "loader", "device"],
                            [r"^2 synthetic scans at 4 mm \(\d+×\d+×\d+\), crop 32³, batches of 1",
                             r"^\| 0 \| loader \| \d+\.\d \| 1\.00× \| 1\.00× \| \d+ \|",
                             r"^\| 0 \| device \(cpu\) \| \d+\.\d \| 1\.00× \| \d+\.\d\d× \| \d+ \|"]),
    "bench_fast_path_accuracy.py": (["--cases", "digits", "--seeds", "1", "--set", "train.epochs=1"],
                                    [r"^### digits \(`configs/digits/elr_sym40\.yaml`\)$",
                                     r"^\| plain: DataLoader, fp32, eager \| \d+\.\d\d ± 0\.00 \| .* \| 0\.00 ± 0\.00 ",
                                     r"^\| device-resident, bf16, channels-last, compiled \| \d+\.\d\d ± 0\.00 \|"]),
}


def write_jpeg_folder(root: Path) -> None:
    """A CIFAR-like image folder of a few 32×32 JPEGs per class and split, for the decoding benchmark."""
    for c in range(3):
        for split, count in (("train", 6), ("test", 2)):
            (root / split / f"class{c}").mkdir(parents=True)
            for k in range(count):
                Image.new("RGB", (32, 32), (40 * c, 10 * k, 90)).save(root / split / f"class{c}" / f"{k:05d}.jpg")


def _published() -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(RESULTS.iterdir())}


@pytest.mark.slow  # 7–120 s each, 5.3 minutes in all on 2 cores at a load average of 14 (side by side: four
# training processes, 120 s; data-parallel: two torchrun launches, 72 s)
@pytest.mark.parametrize("script", list(CASES))
def test_each_benchmark_runs_at_its_smallest_and_writes_its_table_where_told(tmp_path: Path, script: str) -> None:
    arguments, patterns = CASES[script]
    out = tmp_path / "results" / "report.md"
    if script == "bench_image_decode.py":
        write_jpeg_folder(tmp_path / "images")
        arguments = [*arguments, "--root", str(tmp_path / "images")]
    published = _published()
    done = subprocess.run([sys.executable, f"bench/{script}", *arguments, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"wrote {out}" in done.stdout.splitlines()
    text = out.read_text()
    assert f"--out {out}" in text  # the command it was made with
    for pattern in patterns:
        assert re.search(pattern, text, re.M), f"{script}: no line matching {pattern!r} in\n{text}"
    assert sorted(path.name for path in out.parent.iterdir()) == ["report.md"]  # written beside, renamed, nothing left
    assert _published() == published, "a run told --out changed bench/results/"


@pytest.mark.slow  # one epoch of 45,000 images through the per-item DataLoader: 10-30 s on 2 busy cores
def test_the_device_batches_benchmark_writes_its_table_after_each_row(tmp_path: Path) -> None:
    """It wrote its table only after the last path, so a device call cut by its limit (gpu_checks.sh gives it 40 s)
    kept nothing, while README says the benches rewrite their files after each row. Stopped after its first row."""
    out = tmp_path / "report.md"
    bench = subprocess.Popen([sys.executable, "bench/bench_device_batches.py", "--random-pixels", "--repeats", "1",
                              "--batch-size", "1024", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    try:
        assert bench.stdout is not None
        lines = [bench.stdout.readline()]
        while lines[-1] and not lines[-1].startswith("wrote "):
            lines.append(bench.stdout.readline())
        text = out.read_text()  # as the first write left it
    finally:
        bench.kill()
        bench.wait()
    assert lines[-1] == f"wrote {out}\n", lines
    rows = [line for line in text.splitlines() if line.startswith("| per-item") or line.startswith("| device")]
    assert len(rows) == 1 and rows[0].startswith("| per-item DataLoader, num_workers=0 | "), text
    assert "No ratio yet: 1 of the 3 paths measured" in text


def _bench_module(name: str) -> ModuleType:
    """A bench/ script imported as a module (bench/ is not a package; its scripts import each other)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


class _NamingItsWorker:
    """Items that leave, in `folder`, the name of the process drawing them: _ForkedBesideThreads-1 (forked by
    `forked_on_linux`'s context), ForkServerProcess-1."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return 4

    def item(self, index: int, seed: int | None) -> dict[str, torch.Tensor]:
        (self.folder / multiprocessing.current_process().name).touch()
        return {"image": torch.zeros(1)}


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_the_loader_benchmarks_fork_their_workers_as_training_does(tmp_path: Path) -> None:
    """Under Python 3.14's default start method, forkserver, their DataLoader workers imported torch again each epoch,
    which training's (`worker_start`) do not: the benchmarks timed a start-up that training does not have."""
    from elr_mri.distributed import GlobalBatchSampler

    device_batches, mri_models = _bench_module("bench_device_batches"), _bench_module("bench_mri_models")
    draws = {"device_batches": lambda items: list(device_batches.loader(
                 items, lambda epoch: GlobalBatchSampler(4, 2, torch.Generator().manual_seed(epoch)), 1,
                 torch.device("cpu"))(0)),
             "mri_models": lambda items: mri_models.epoch_seconds(items, 2, 1, 0)}
    default = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("forkserver", force=True)  # Python 3.14's default on Linux
    try:
        for name, draw in draws.items():
            (tmp_path / name).mkdir()
            draw(_NamingItsWorker(tmp_path / name))
            forked = {path.name.rsplit("-", 1)[0] for path in (tmp_path / name).iterdir()}
            assert forked == {"_ForkedBesideThreads"}, name  # the ForkProcess of forked_on_linux's context
    finally:
        multiprocessing.set_start_method(default, force=True)


def test_the_decoding_benchmark_says_as_fast_as_or_how_many_times_faster_than() -> None:
    compared = _bench_module("bench_image_decode").compared
    assert compared(1.02) == "as fast (within 5%: 1.02×) as"  # was "as fast (…) than 8 threads"
    assert compared(2.3) == "**2.3×** faster than" and compared(0.5) == "**2.0×** slower than"


def test_the_decoding_benchmark_names_the_pool_its_default_row_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A folder whose splits are one decoding chunk each is decoded by the default with the same 8 threads as the row
    above it: the row was still called "forked processes on Linux" and read as a comparison of the two."""
    write_jpeg_folder(tmp_path / "images")
    out = tmp_path / "report.md"
    monkeypatch.setattr(sys, "argv", ["bench_image_decode.py", "--root", str(tmp_path / "images"), "--rounds", "1",
                                      "--out", str(out)])
    bench = _bench_module("bench_image_decode")
    bench.main()
    capsys.readouterr()
    assert "forked" not in out.read_text()
    assert re.search(r"^\| the default \(8 threads here: a split of at most 1,024 images is one decoding chunk\) \| ",
                     out.read_text(), re.M) or bench.usable_cores() == 1
    assert bench.default_label({"processes"}) == "the default (forked processes on Linux)"  # CIFAR-10's splits


def test_the_device_batches_reading_names_the_1_thread_row_only_where_there_is_one() -> None:
    """device_batches_cuda.md (one device row, on a GPU) ended "hence the 1-thread row", as a 1-thread process's would."""
    reading = _bench_module("bench_device_batches").reading
    assert "1-thread row" not in reading(one_thread_row=False)
    assert reading(one_thread_row=False).endswith("split over intra-op threads.")
    assert reading(one_thread_row=True).endswith("hence the 1-thread row.")


def test_the_mri_models_thread_note_says_when_there_was_one_setting_only() -> None:
    steps = _bench_module("bench_mri_models")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # OMP_NUM_THREADS=1: the note listed no ratio, "…faster): . With other jobs…"
        assert steps.thread_note(steps.Measurements(paper={}, small={}, resolution=2.0)).startswith(
            "One thread setting only: torch's default here is one intra-op thread")
        torch.set_num_threads(2)
        timed = {threads: steps.StepResult(warmup=1, step_times=[9.0, seconds, seconds], peak_bytes=0, threads=threads,
                                           load_before=0.0, load_after=0.0) for threads, seconds in ((2, 3.0), (1, 2.0))}
        note = steps.thread_note(steps.Measurements(paper={}, small={}, resolution=2.0, timed={steps.X1.label: timed}))
        assert note.startswith("Default threads ÷ one thread, step time (above 1: one thread was faster): widened ×1 1.5×.")
    finally:
        torch.set_num_threads(threads)


def test_the_machine_line_of_the_3d_benchmarks_counts_one_thread_in_the_singular() -> None:
    """bench_mri_models' and bench_execution_variants' header said "1 intra-op threads" under OMP_NUM_THREADS=1."""
    machine_line = _bench_module("bench_mri_models").machine_line
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert machine_line("cpu").endswith(", 1 intra-op thread by default.")
        torch.set_num_threads(2)
        assert machine_line("cpu").endswith(", 2 intra-op threads by default.")
    finally:
        torch.set_num_threads(threads)


def test_the_preprocessing_benchmark_without_colin27_is_an_error_not_a_skip(tmp_path: Path) -> None:
    """A checkout with no ../shared/data beside it: the run measured nothing, and said `skip` with exit status 0."""
    tree = tmp_path / "checkout"
    (tree / "bench").mkdir(parents=True)
    for name in ("bench_preprocess.py", "results_file.py"):
        shutil.copy(ROOT / "bench" / name, tree / "bench" / name)
    (tree / "preprocess").symlink_to(ROOT / "preprocess")
    done = subprocess.run([sys.executable, "bench/bench_preprocess.py", "--out", str(tmp_path / "preprocess.md")],
                          cwd=tree, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines()[-1].endswith(
        f"error: no Colin27 at {tmp_path}/shared/data/mri/colin27_ch2_t1.nii.gz: the benchmark moves copies of it; pass "
        "--colin PATH (not in the repository: ANTsPy's ants.get_ants_data('ch2') downloads it)")
    assert not (tmp_path / "preprocess.md").exists()
    elsewhere = tmp_path / "heads" / "ch2.nii.gz"  # where the user put a copy: named by --colin, looked for there
    done = subprocess.run([sys.executable, "bench/bench_preprocess.py", "--colin", str(elsewhere), "--out",
                           str(tmp_path / "preprocess.md")],
                          cwd=tree, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 2 and f"error: no Colin27 at {elsewhere}: " in done.stderr.splitlines()[-1]


def test_the_preprocessing_benchmark_of_one_scan_times_no_two_worker_batch_and_says_so() -> None:
    """One scan runs in one worker of a pool of two (on half the cores' ITK threads): its "2 workers" s/scan
    measured no sharing, and stood in the table as if it had."""
    bench = _bench_module("bench_preprocess")
    assert bench.batch_workers(1) == (1,) and bench.batch_workers(2) == (1, 2)
    runs = {name: [(60.0, 0.9)] for name in ("reference", "fast")}
    text = bench.report(runs, {(1.0, 1): 50.0, (1.5, 1): 30.0}, 1, (0.5, 0.5))
    assert "| 1.0 mm | 50.0 s/scan | n/a |" in text.splitlines()
    assert "2 workers: not run, one scan cannot be shared; pass --scans 2 or more." in text.splitlines()
    rates = {(1.0, 1): 50.0, (1.0, 2): 28.0, (1.5, 1): 30.0, (1.5, 2): 17.0}
    assert "| 1.5 mm | 30.0 s/scan | 17.0 s/scan |" in bench.report(runs, rates, 2, (0.5, 0.5)).splitlines()


def test_importing_the_preprocessing_benchmark_leaves_itk_threads_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """It set ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS at import: every later test of the session (and the ANTs
    subprocesses they start) ran with the benchmark's thread count instead of the user's setting or ITK's own."""
    monkeypatch.delenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", raising=False)
    monkeypatch.delitem(sys.modules, "bench_preprocess", raising=False)  # imported afresh, as a first import is
    _bench_module("bench_preprocess")
    assert "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS" not in os.environ


def test_the_quick_check_a_benchmark_suggests_keeps_the_published_figures() -> None:
    """bench_target_precision's `--set` help suggested a quick check that, with the default --out, replaced
    bench/results/target_precision.md (10 seeds, 150 epochs) by a 2-epoch run."""
    for script in sorted((ROOT / "bench").glob("*.py")):  # seeded_runs.py: the accuracy benchmarks' --set
        for hint in re.findall(r'help="[^"]*quick[^)]*\)', script.read_text()):
            assert "--out" in hint, f"{script.name}: {hint}"


@pytest.mark.parametrize(("overrides", "title"), [
    ([], "digits, 40% symmetric noise"),  # the published file's, unchanged
    (["data.noise.rate=0.2", "data.noise.mode=pair"], "digits, 20% pair noise"),
    (["data.noise.mode=none"], "digits, no label noise"),
])
def test_the_target_precision_table_names_the_noise_its_runs_trained_with(overrides: list[str], title: str) -> None:
    """Its title said "40% symmetric noise" whatever `--set data.noise.*` made the runs train with."""
    from elr_mri.config import load_config

    bench = _bench_module("bench_target_precision")
    assert bench._data_in_words(load_config(bench.CONFIG, overrides)) == title


@pytest.mark.parametrize("setting", ["train.compile=false", "train.loader=device", "train.device=cpu"])
def test_the_fast_path_benchmark_refuses_a_setting_that_would_make_its_variants_alike(
        setting: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--set` is applied after each variant's switches: `train.compile=false` made the "compiled" row an eager run
    under that name (and `train.loader=device` the plain row a device-resident one)."""
    monkeypatch.setattr(sys, "argv", ["bench_fast_path_accuracy.py", "--set", setting, "--out", "/nonexistent/x.md"])
    with pytest.raises(SystemExit) as stopped:
        _bench_module("bench_fast_path_accuracy").main()
    assert stopped.value.code == 2
    assert f"error: --set {setting}: each variant sets {setting.split('=')[0]} itself" in capsys.readouterr().err


def test_the_mri_models_cpu_report_lists_the_gpu_variants_the_cuda_run_times() -> None:
    """Its note on the GPU run called bf16 + channels-last + compile the engine's GPU `auto` (for volumes `auto` now
    leaves channels-last off) and left out the phase-grid variants, which that run times."""
    steps = _bench_module("bench_mri_models")
    note = "\n".join(steps.gpu_lines(steps.Measurements(paper={}, small={}, resolution=2.0), 4, "cpu"))
    assert "all three (the engine's `auto` on a GPU)" not in note
    for variant in steps.variants_on("cuda"):
        assert variant.label in note


def test_the_published_gpu_variants_table_names_its_rows_as_the_bench_names_them_now() -> None:
    """execution_variants_cuda.md called bf16 + channels-last + compile the engine's GPU `auto` after `auto` had left
    channels-last off for volumes: a reader took the slower row for what training runs."""
    steps = _bench_module("bench_mri_models")
    labels = {variant.label: variant for variant in steps.VARIANTS}
    rows = re.findall(r"^\| ([^|]+?) \| \d+\.\d{4} \|", (RESULTS / "execution_variants_cuda.md").read_text(), re.M)
    assert len(rows) == 6 and set(rows) <= set(labels), rows
    assert [labels[row] for row in rows if "`auto`" in row] == [steps.VARIANTS[-1]]  # the bench's `auto`: last


def test_the_dilated_convolution_report_says_how_many_rows_a_cut_run_left_out() -> None:
    """It is rewritten after each row for a device call that may be cut, and a cut file read like a finished one."""
    bench = _bench_module("bench_dilated_conv")
    args = argparse.Namespace(device="cpu", batch_size=1, budget=1.0)
    cut = bench.report(args, torch.device("cpu"), ["| a row |"], [], 3, 0.0)
    assert "Still to measure when this was written: 3 timed row(s)." in cut.splitlines()
    assert "Still to measure" not in bench.report(args, torch.device("cpu"), ["| a row |"], [], 0, 0.0)


def test_the_convolution_and_compile_benchmarks_say_when_other_work_held_the_cores() -> None:
    """Their files gave no load average: a dilated-convolution run here at a load of 14 on 2 cores (20 s for a
    1.5 s convolution) wrote its ratios with nothing to say they were not to be quoted."""
    busy = float(2 * (os.cpu_count() or 1))
    dilated = _bench_module("bench_dilated_conv").report(argparse.Namespace(device="cpu", batch_size=1, budget=1.0),
                                                         torch.device("cpu"), [], [], 0, busy)
    phases = dict.fromkeys(("first full batch", "full batch", "first short batch", "short batch again",
                            "full batch after"), 1.0)
    tail = _bench_module("bench_compile_tail")._report({"plain": phases, "engine": phases},
                                                       argparse.Namespace(device="cpu", batch_size=16, tail=9), busy)
    for text in (dilated, tail):
        assert f"Load average {busy:.1f} at the start" in text and "**Busy machine: " in text


@pytest.mark.slow  # two synthetic scans written, then the loader timed: 10-40 s on 2 busy cores
def test_the_mri_loader_benchmark_says_what_a_cut_run_left_out(tmp_path: Path) -> None:
    """Its table is rewritten after each setting; the file a cut run leaves said nothing of the settings to come."""
    out = tmp_path / "report.md"
    bench = subprocess.Popen([sys.executable, "bench/bench_mri_loader.py", *CASES["bench_mri_loader.py"][0],
                              "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    try:
        assert bench.stdout is not None
        line = bench.stdout.readline()
        while line and not line.startswith("wrote "):
            line = bench.stdout.readline()
        first = out.read_text()  # as the first write left it
        bench.stdout.read()
    finally:
        bench.kill()
        bench.wait()
    assert "Still to measure when this was written: 1 setting(s)." in first.splitlines()
    assert "Still to measure" not in out.read_text()


def test_the_device_batches_ratio_written_before_the_last_path_says_a_path_is_still_to_come() -> None:
    """With both kinds measured its ratio is written, and a file cut before the 1-thread row read as a finished one."""
    bench = _bench_module("bench_device_batches")
    args = argparse.Namespace(batch_size=128, repeats=1)
    rates = {"per-item DataLoader, num_workers=0": 100.0, "per-item DataLoader, num_workers=2": 90.0,
             "device-resident (cpu), 2 intra-op threads": 800.0}
    text = bench.report(args, torch.device("cpu"), "random uint8", 45_000, 2, rates, [], 4, 0.0, True)
    assert "**8.0×**" in text and "Still to measure when this was written: 1 path(s)." in text
    rates["device-resident (cpu), 1 intra-op thread"] = 900.0
    assert "Still to measure" not in bench.report(args, torch.device("cpu"), "random uint8", 45_000, 2, rates, [], 4,
                                                  0.0, True)


def _killed_worker(*args: object, **kwargs: object) -> None:
    """What a DataLoader whose worker the OOM killer took raises, in place of a loader bench's measurement."""
    raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. \nmore of torch's message")


@pytest.mark.slow  # two small scans written, then 0 workers' loader timed: 18 s at a load average of 11 on 2 cores
def test_the_mri_loader_benchmark_times_the_settings_after_a_failed_one_then_exits_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed setting (a worker killed, the GPU's memory) ended the bench with a traceback, the later settings
    untimed, where the other benches go on and exit 1 naming it. Here the 1-worker setting fails, then 0 workers run."""
    bench = _bench_module("bench_mri_loader")
    measured = bench.steps.loader_rate
    monkeypatch.setattr(bench.steps, "LOADER_BUDGET_S", 0.0)  # its least: 3 timed epochs of 2 small scans
    monkeypatch.setattr(bench.steps, "loader_rate", lambda paths, crop, batch, workers, **options: (
        _killed_worker() if workers else measured(paths, crop, batch, workers, **options)))
    out = tmp_path / "loader.md"
    monkeypatch.setattr(sys, "argv", ["bench_mri_loader.py", "--workers", "1", "0", "--volumes", "2", "--batch-size",
                                      "1", "--crop", "32", "--resolution", "4", "--out", str(out)])
    with pytest.raises(SystemExit) as exited:
        bench.main()
    assert str(exited.value) == (f"bench_mri_loader: error: 1 failed (the rest are in {out}): 1 workers, blur on "
                                 "loader: RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed.")
    text = out.read_text()
    assert re.search(r"^\| 0 \| loader \| \d+\.\d \| 1\.00× \| 1\.00× \| 3 \|", text, re.M), text
    assert "Failed: 1 workers, blur on loader: RuntimeError: DataLoader worker" in text and "Still to" not in text


@pytest.mark.slow  # 45,000 random images, an epoch of them on each device path: 15 s at a load average of 11
def test_the_device_batches_benchmark_times_the_paths_after_a_failed_one_then_exits_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the MRI loader's: here both DataLoader paths fail (their workers killed), the device-resident ones run."""
    bench = _bench_module("bench_device_batches")
    monkeypatch.setattr(bench, "loader", lambda *args: _killed_worker)
    out = tmp_path / "batches.md"
    monkeypatch.setattr(sys, "argv", ["bench_device_batches.py", "--random-pixels", "--repeats", "1", "--batch-size",
                                      "4096", "--out", str(out)])
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit) as exited:
        bench.main()
    assert torch.get_num_threads() == threads
    said = str(exited.value)
    assert said.startswith(f"bench_device_batches: error: 2 failed (the rest are in {out}): per-item DataLoader, "
                           "num_workers=0: RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed.; ")
    assert "; per-item DataLoader, num_workers=2: RuntimeError: " in said and "\n" not in said
    text = out.read_text()
    assert re.search(r"^\| device-resident \(cpu\), \d+ intra-op threads? \| [\d,]+ \| ", text, re.M), text
    assert text.count("\nFailed: per-item DataLoader, ") == 2 and "No ratio: " in text and "Still to" not in text


def test_the_accuracy_benchmarks_time_a_run_by_its_own_wall_seconds() -> None:
    """Their seconds / run was the call's time, and a process's first call also imports the training loop's modules:
    one digits epoch took 38 s there against 1.6 s of the run's own, all of it in the first row's mean."""
    table = _bench_module("bench_fast_path_accuracy")._table
    runs = [{"test_acc_last": 0.9, "test_acc_at_best": 0.9, "wall_seconds": seconds} for seconds in (2.0, 4.0)]
    text = table({"plain": runs, "fast": runs})
    assert "| training s / run (wall_seconds) |" in text.splitlines()[0]
    assert text.splitlines()[-1].endswith(" | 3.0 |")


def _run_dilated_conv(monkeypatch: pytest.MonkeyPatch, layers: tuple, out: Path) -> None:
    """bench_dilated_conv.py's main on `layers` (its own, the ×8's at 96³, take minutes on a CPU), its file to `out`."""
    bench = _bench_module("bench_dilated_conv")
    monkeypatch.setattr(bench, "LAYERS", layers)
    monkeypatch.setattr(sys, "argv", ["bench_dilated_conv.py", "--budget", "0.01", "--out", str(out)])
    tf32_matmuls, cudnn_search = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark
    try:
        bench.main()
    finally:  # main sets both for the whole process: TF32 matrix products would reach every later test's
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark = tf32_matmuls, cudnn_search


def test_the_dilated_convolution_benchmark_runs_through_on_small_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Two small layers take the bench's whole path: the three ways timed, their agreement checked, the file written
    after each row and finished."""
    layer = _bench_module("bench_dilated_conv").Layer
    out = tmp_path / "dilated.md"
    _run_dilated_conv(monkeypatch, (layer("small, padded", 3, 4, 3, 2, 2, 7), layer("small, unpadded", 2, 5, 3, 0, 2, 9)),
                      out)
    printed = capsys.readouterr().out
    assert printed.count(f"wrote {out}") == 5  # after each of the 4 timed rows, then the finished file
    text = out.read_text()
    assert len(re.findall(r"^\| small, (un)?padded \| (fp32|bf16) \| [\d.]+ \| [\d.]+ \| [\d.]+ \| ", text, re.M)) == 4
    differences = re.findall(r"relative \| \| \| (\S+) / (\S+) / (\S+) \| (\S+) / (\S+) / (\S+) \|", text)
    assert len(differences) == 2 and all(float(value) < 1e-4 for row in differences for value in row)
    assert "Still to measure" not in text and "Load average" in text


def test_the_dilated_convolution_benchmark_times_the_layers_after_a_failed_one_then_exits_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed row (memory, a kernel the library lacks) ended the bench with a traceback, the later layers untimed.
    Here a layer whose grid is smaller than its dilated kernel's reach fails every way, before a small one that
    works."""
    layer = _bench_module("bench_dilated_conv").Layer
    out = tmp_path / "dilated.md"
    layers = (layer("too small", 2, 3, 3, 0, 2, 3), layer("small, unpadded", 2, 5, 3, 0, 2, 9))
    with pytest.raises(SystemExit) as exited:
        _run_dilated_conv(monkeypatch, layers, out)
    said = str(exited.value)
    assert said.startswith(f"bench_dilated_conv: error: 3 failed (the rest are in {out}): too small, agreement: ")
    assert "; too small, fp32: " in said and "; too small, bf16: " in said and "\n" not in said
    text = out.read_text()
    assert len(re.findall(r"^\| small, unpadded \| (fp32|bf16) \| [\d.]+ \| ", text, re.M)) == 2
    assert len(re.findall(r"^Failed: too small, ", text, re.M)) == 3 and "Still to measure" not in text


def test_the_ddp_benchmark_keeps_a_failed_runs_log_in_a_file_of_its_own(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The log went to /tmp/bench_ddp_scaling_<K>p.log: written through a link another user put under that name."""
    bench = _bench_module("bench_ddp_scaling")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    elsewhere = tmp_path / "notes.txt"
    elsewhere.write_text("another user's\n")
    (tmp_path / "bench_ddp_scaling_2p.log").symlink_to(elsewhere)
    with pytest.raises(SystemExit) as stopped:
        bench._failed(2, 1, "elr-mri train: error: out of cores\n")
    kept = re.fullmatch(r"bench_ddp_scaling.py: error: the 2-process run failed \(rc 1\): elr-mri train: error: out "
                        r"of cores \(its output: (.+)\)", str(stopped.value)).group(1)
    assert Path(kept).parent == tmp_path and Path(kept).read_text() == "elr-mri train: error: out of cores\n"
    assert elsewhere.read_text() == "another user's\n"


@pytest.mark.slow  # two runs that fail at their start: 20-100 s on 2 busy cores
def test_the_side_by_side_benchmark_names_a_failed_runs_log_where_it_still_is(tmp_path: Path) -> None:
    """A failed run's line ended "see /tmp/tmp…/in_turn/seed0.log", a folder deleted before the line was read."""
    def failed_run(*extra: str) -> str:
        done = subprocess.run([sys.executable, "bench/bench_side_by_side.py", "--config",
                               "configs/cifar10n/cpu_subset.yaml", "--set", f"data.root={tmp_path / 'no_images'}",
                               "--out", str(tmp_path / "report.md"), *extra], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
        assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stderr.splitlines()[-1]

    line = failed_run()
    assert line.startswith("bench_side_by_side: error: in_turn seed 0: exit 2: ")
    assert line.endswith("; its log went with the temporary run folder: pass --keep-logs DIR to keep a failed run's log")
    line = failed_run("--keep-logs", str(tmp_path / "logs"))
    copy = tmp_path / "logs" / "side_by_side_in_turn_seed0.log"
    # the run's own error line (image folder not found; first the CIFAR-N labels' where ../shared is not beside)
    assert line.endswith(f"; see {copy}") and "elr-mri train: error: " in copy.read_text()
    assert not (tmp_path / "report.md").exists()


def test_the_mri_models_notes_name_the_crop_that_was_timed() -> None:
    """`--size 71` (the least the widened CNN takes) wrote "predicted 19 s/step (the 72³ step scaled by FLOPs)" and
    "% of a ×8 epoch at 72³": the default crop, not the one timed."""
    steps = _bench_module("bench_mri_models")

    def timed(seconds: float) -> dict:
        return {1: steps.StepResult(warmup=1, step_times=[seconds] * 3, peak_bytes=0, threads=1, load_before=0.0,
                                    load_after=0.0)}

    _, note = steps.slow_job(timed(5.5)[1], {"gflop": 170.8}, {"gflop": 594.3}, 1, 71)
    assert note == "predicted 19 s/step (the 71³ step scaled by FLOPs)"
    m = steps.Measurements(paper={}, small={}, resolution=2.0,
                           timed={steps.X1.label: timed(0.22), steps.X8.label: timed(5.5)},
                           loaders=[steps.LoaderResult(num_workers=0, threads=1, volumes_per_s=31.2, epochs=3,
                                                       cache_fill_s=0.3, first_epoch_s=0.1, load_before=0.0,
                                                       load_after=0.0)])
    assert "% of a ×8 epoch at 71³)" in steps.loader_notes(m, 1, 71)[0]


def test_the_fast_path_benchmark_takes_the_cifar10n_labels_from_where_the_user_has_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only ../shared's copy was looked for: a clone alone, its labels in data/ as the README says, was refused."""
    bench = _bench_module("bench_fast_path_accuracy")
    labels = tmp_path / "CIFAR-10_human.npz"
    argv = ["bench_fast_path_accuracy.py", "--cases", "cifar10n-subset", "--human-labels", str(labels), "--out",
            str(tmp_path / "x.md")]
    monkeypatch.setattr(bench, "CIFAR_IMAGES", tmp_path / "cifar10")
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stopped:  # neither images nor labels there: one line naming both
        bench.main()
    assert str(stopped.value) == (f"cifar10n-subset needs {tmp_path / 'cifar10'} (mkdir -p data && tar -xJf "
                                  "../shared/data/cifar/cifar10-jpeg.tar.xz -C data/) and "
                                  f"{labels} (--human-labels FILE); or leave it out with --cases digits")
    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    labels.write_bytes(b"")
    trained = []  # the overrides each variant would train with; the training itself is tested elsewhere
    monkeypatch.setattr(bench, "train_seeds", lambda config, overrides, seeds: trained.append(overrides) or [
        {"test_acc_last": 0.5, "test_acc_at_best": 0.5, "wall_seconds": 1.0}])
    bench.main()
    assert len(trained) == len(bench.VARIANTS)
    assert all(f"data.noise.human_labels={labels}" in overrides for overrides in trained)


@pytest.mark.slow  # two child processes, each importing torch and MONAI: 15-25 s on 2 busy cores
def test_the_execution_variants_benchmark_exits_with_an_error_naming_a_failed_variant(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant that failed was a `Failed:` line in the table and the script exited 0, so bench/gpu_checks.sh's end
    line called the step well ended. Here the ×1's fp32 eager at its smallest crop, then a variant whose child fails at
    once (a precision the engine has not): the table keeps the one measured, the exit names the other."""
    bench = _bench_module("bench_execution_variants")
    broken = bench.steps.Variant("fp8 (no such precision)", precision="fp8")
    monkeypatch.setattr(bench.steps, "variants_on", lambda device: (bench.steps.FP32_EAGER, broken))
    out = tmp_path / "variants.md"
    monkeypatch.setattr(sys, "argv", ["bench_execution_variants.py", "--model", "x1", "--size",
                                      str(bench.MIN_INPUT_SIZE), "--batch-size", "1", "--budget", "0.01",
                                      "--out", str(out)])
    with pytest.raises(SystemExit) as exited:
        bench.main()
    assert str(exited.value).startswith("bench_execution_variants: error: 1 of 2 variant(s) failed (the others are "
                                        "in the table): fp8 (no such precision): ")
    assert "\n" not in str(exited.value)
    text = out.read_text()
    assert re.search(r"^\| fp32 eager \| ", text, re.M) and "Failed: fp8 (no such precision): " in text
    assert "(cpu)" in text.splitlines()[0]


@pytest.mark.slow  # a child process importing torch and MONAI: 10-30 s on 2 busy cores
def test_the_mri_models_benchmark_exits_with_an_error_naming_a_failed_gpu_variant(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its GPU variants' stage left a failed variant out of the table with a line on stderr and exited 0, which a
    device session's script reads as a run well ended (bench_execution_variants exits 1 naming it). Here that stage
    alone (the CPU models before it take minutes), with a variant whose child fails at once."""
    bench = _bench_module("bench_mri_models")
    broken = bench.Variant("fp8 (no such precision)", precision="fp8")
    monkeypatch.setattr(bench, "variants_on", lambda device: (broken,))

    def variants_only(args: argparse.Namespace, measured: Callable[..., object]) -> object:
        m = bench.Measurements(paper={s.label: bench.static_figures(s, bench.PAPER_SIZE) for s in bench.MODELS},
                               small={s.label: bench.static_figures(s, args.size) for s in bench.MODELS},
                               resolution=1.5)
        bench.measure_variants(args, m, measured)
        return m

    monkeypatch.setattr(bench, "measure", variants_only)
    out = tmp_path / "mri_models.md"
    monkeypatch.setattr(sys, "argv", ["bench_mri_models.py", "--batch-size", "1", "--out", str(out)])
    with pytest.raises(SystemExit) as exited:
        bench.main()
    assert str(exited.value) == (f"bench_mri_models: error: 1 of 1 variant(s) failed (the others are in {out}): "
                                 "fp8 (no such precision): KeyError: 'fp8'")
    failed = bench.Measurements(paper={}, small={}, resolution=1.5, failed=["fp8 (no such precision): KeyError"])
    assert "Failed: fp8 (no such precision): KeyError" in bench.gpu_lines(failed, 1, "cuda")  # the file says so too


def test_the_loader_benchmarks_name_the_gpu_their_device_rows_ran_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """device_batches_cuda.md said "device path on `cuda`" and the MRI loader's file named no device at all: a device
    call may land on an H100 or an H200, whose figures differ. No GPU here: torch's name for one is given."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    batches = _bench_module("bench_device_batches").report(
        argparse.Namespace(batch_size=128, repeats=1), torch.device("cuda"), "random uint8", 45_000, 16, {}, [], 3, 0.0,
        False)
    assert "device path on `cuda` (NVIDIA H200)." in batches
    loader = _bench_module("bench_mri_loader")
    args = argparse.Namespace(device="cuda", blur_on=["loader", "device"], volumes=2, resolution=1.5, crop=32,
                              batch_size=1, workers=[0])
    assert "; the device blur on `cuda` (NVIDIA H200)." in loader.report(args, (121, 145, 121), {}, [], 2, 0.0)
    on_cpu = loader.report(argparse.Namespace(**{**vars(args), "device": "cpu"}), (121, 145, 121), {}, [], 2, 0.0)
    assert "; the device blur on `cpu`." in on_cpu and "NVIDIA" not in on_cpu


# standard-library modules newer than the Python running the tests, which sys.stdlib_module_names cannot know
NEWER_STANDARD_LIBRARY = {"profiling"}  # Python 3.15 (PEP 799)


def test_no_bench_or_scripts_module_is_named_as_a_standard_library_one() -> None:
    """bench/ and scripts/ import their siblings by plain name, so one named as a standard-library module is the
    library's wherever that was imported first (`cProfile` imports Python 3.15's `profiling`): bench/profiling.py
    was, and `from profiling import busiest_kernels` would then fail."""
    taken = set(sys.stdlib_module_names) | NEWER_STANDARD_LIBRARY
    clashes = [f"{folder}/{path.name}" for folder in ("bench", "scripts") for path in (ROOT / folder).glob("*.py")
               if path.stem in taken]
    assert not clashes, f"rename {clashes}: each shares its name with a standard-library module"


def test_the_bootstrap_benchmark_scores_resamples_both_ways_alike(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """bench_bootstrap.py at its smallest, in-process (it trains nothing): its figure in README is only worth quoting
    while the resamples it times come out alike to the bit."""
    out = tmp_path / "bootstrap.md"
    monkeypatch.setattr(sys, "argv", ["bench_bootstrap.py", "--examples", "300", "--classes", "7", "--resamples", "3",
                                      "--out", str(out)])
    _bench_module("bench_bootstrap").main()
    assert re.search(r"^speed-up \d+\.\d×; every value alike to the bit: True$", out.read_text(), re.M), out.read_text()


@pytest.mark.parametrize("option", ["--examples", "--classes", "--resamples"])
def test_the_bootstrap_benchmark_refuses_a_size_it_cannot_time_in_one_line(
        option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--examples 0`, `--classes 0` or `--resamples 0` stopped on a ZeroDivisionError's (or numpy's) traceback."""
    sizes = {"--examples": "30", "--classes": "3", "--resamples": "2", option: "0"}
    monkeypatch.setattr(sys, "argv", ["bench_bootstrap.py", *(word for pair in sizes.items() for word in pair),
                                      "--out", str(tmp_path / "bootstrap.md")])
    with pytest.raises(SystemExit) as stopped:
        _bench_module("bench_bootstrap").main()
    assert stopped.value.code == 2 and not (tmp_path / "bootstrap.md").exists()
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"bench_bootstrap.py: error: --examples {sizes['--examples']}, ") and "at least 2" in error


WRITING_BENCHMARKS = sorted(path.stem for path in (ROOT / "bench").glob("*.py")
                            if '"--out", type=' in path.read_text())


@pytest.mark.parametrize("script", WRITING_BENCHMARKS)
def test_an_out_that_is_a_folder_is_refused_before_anything_runs(
        script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Given a folder, a benchmark ran all its rows and then ended in a traceback from the report's atomic write."""
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as stopped:
        _bench_module(script).main()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"{tmp_path} is a folder; pass the report's file name, e.g. {tmp_path / 'results.md'}")
    assert not any(tmp_path.iterdir())
