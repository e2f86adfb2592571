"""bench/gpu_checks.sh against the code it calls, on the CPU: a device session is 15 scarce minutes, and an option,
setting or mode mistyped there wastes it. Every `--set` it passes (ROW_SETTINGS examples included) must be a setting
its rows' configs take, every script it runs must take the options given, every pytest selection must select GPU
tests; and the script itself must refuse a mistyped mode or setting before it starts anything."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from elr_mri.config import RunConfig, dotted_keys, load_config

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "bench" / "gpu_checks.sh"
TEXT = SCRIPT.read_text()
CODE = re.sub(r"\s*\\\n\s*", " ", TEXT)  # continuation lines joined
README_SECTION = (ROOT / "README.md").read_text().split("#### Running the GPU checks")[1].split("\n## ")[0]
ROWS = re.findall(r"^\s*row (\S+) (\S+) (\S+)", CODE, re.M)  # name, torch.compile mode, config
CONFIGS = sorted({config for _, _, config in ROWS} | set(re.findall(r"--config (configs/\S+\.yaml)", CODE)))


def _settings() -> list[str]:
    """Every `--set KEY=VALUE` the script and README's section on it write, `$mode` as each mode its rows use."""
    found = re.findall(r"--set ([a-z][\w.]*=[^\s\"`)]*(?:\"\$mode\")?)", TEXT + README_SECTION)
    modes = {mode for _, mode, _ in ROWS}
    return sorted({setting.replace('"$mode"', mode) for setting in found for mode in modes})


def test_the_reading_finds_the_rows_settings_and_scripts() -> None:
    assert {name for name, _, _ in ROWS} >= {"cifar10_elr_sym40", "cifar10_elr_clean", "cifar10n_elr_worst"}
    assert {"configs/cifar10/elr_sym40.yaml", "configs/cifar10/elr_sym40_cosine.yaml",
            "configs/cifar10n/elr.yaml"} <= set(CONFIGS)
    assert {"train.compile_mode=reduce-overhead", "train.compile_mode=default", "data.noise.mode=none",
            "train.compile_step=true", "train.precision=fp32", "train.device=cuda"} <= set(_settings())


@pytest.mark.parametrize("config", CONFIGS)
def test_every_setting_the_gpu_checks_pass_is_one_each_row_config_takes(config: str) -> None:
    keys = set(dotted_keys(RunConfig))
    assert not [s for s in _settings() if s.split("=")[0] not in keys], "gpu_checks.sh --set: no such setting"
    for setting in _settings():
        load_config(ROOT / config, [setting])  # a wrong value raises ConfigError, naming it


def test_every_script_the_gpu_checks_run_exists_and_takes_the_options_given() -> None:
    calls = re.findall(r'"\$PYTHON" (bench/\S+\.py)((?: (?!>|\|)\S+)*)', CODE)
    assert len({script for script, _ in calls}) >= 7
    for script, words in calls:
        source = (ROOT / script).read_text()
        for option in {word.split("=")[0] for word in words.split() if word.startswith("--")}:
            assert f'"{option}"' in source, f"gpu_checks.sh runs {script} {option}: the script has no such option"


def test_every_pytest_selection_of_the_gpu_checks_selects_gpu_tests() -> None:
    selections = re.findall(r"-m pytest (.*?)(?:\n|$)", CODE)
    assert len(selections) == 3
    for selection in selections:
        words = selection.split()
        files = [ROOT / word for word in words if word.startswith("tests/")]
        names = words[words.index("-k") + 1] if "-k" in words else ""
        assert files and "-m gpu" in selection
        for path in files:
            source = path.read_text()
            assert "pytest.mark.gpu" in source, f"{path.name}: no GPU test to run"
            if names:
                assert re.search(rf"def test_\w*{names}", source), f"-k {names} selects nothing in {path.name}"


def test_the_device_calls_written_out_fit_the_device_tool_and_carry_what_their_mode_reads() -> None:
    """The `run(...)` calls gpu_checks.sh's header gives (and gpu_prepare.sh prints), as a session would copy them:
    a command of at most 2,000 characters, timeout_s at most 600 and 20 s past the budget (a call the device cuts
    loses the steps' end lines and the rows' last 15 s), at most 8 carried paths, each one gpu_prepare.sh makes, and
    those the mode reads (the wheels always, the CIFAR archive for the rows, the labels for cifar10n)."""
    prepare = (ROOT / "bench" / "gpu_prepare.sh").read_text()
    made = {".whl"} | {f"data/{name}" for name in re.findall(r"\.\./shared/data/cifar/([\w.-]+)", prepare)}
    assert made == {".whl", "data/cifar10-jpeg.tar.xz", "data/CIFAR-10_human.npz"}
    calls = re.findall(r'run\(command="([^"]*)", carry=\[([^]]*)\], timeout_s=(\d+)\)', re.sub(r"\n#\s+", " ", TEXT))
    assert len(calls) == 2
    for command, carry, timeout in calls:
        carried = re.findall(r'"([^"]+)"', carry)
        mode = re.fullmatch(r"(?:GPU_CHECKS_SECONDS=(\d+) )?bash bench/gpu_checks.sh ?(\w*)", command)
        assert mode and len(command) <= 2000 and len(carried) <= 8 and set(carried) <= made, command
        budget = int(mode[1] or re.search(r"GPU_CHECKS_SECONDS-(\d+)", TEXT)[1])
        assert budget + 20 <= int(timeout) <= 600, command
        needed = {".whl"} | ({"data/cifar10-jpeg.tar.xz"} if mode[2] not in ("3d", "step") else set()) \
            | ({"data/CIFAR-10_human.npz"} if mode[2] == "cifar10n" else set())
        assert needed <= set(carried), command


def test_the_row_settings_check_needs_none_of_the_carried_wheels() -> None:
    """check_row runs before gpu_checks.sh installs .whl/ on the device machine, which lacks MONAI, nibabel and
    nilearn (and ANTs): here, where they are installed, it must not import them either."""
    code = ("import sys; sys.path.insert(0, 'bench'); import check_row_settings; "
            "assert check_row_settings.main(['--config', 'configs/cifar10n/elr.yaml', '--set', 'seed=1']) == 0; "
            "print(sorted({'monai', 'nibabel', 'nilearn', 'ants'} & {name.split('.')[0] for name in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


def test_the_row_settings_check_refuses_what_a_new_run_refuses_at_its_start() -> None:
    """check_row is there to stop a ROW_SETTINGS typo before the device call's minutes go: it loaded the config alone,
    so `--set data.noise.mode=none` beside the row's rate 0.4, which `train` refuses as a run starts, passed it and
    failed the row (and its fallback) on the GPU instead."""
    done = subprocess.run([sys.executable, "bench/check_row_settings.py", "--config", "configs/cifar10/elr_sym40.yaml",
                           "--set", "data.noise.mode=none"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.startswith("bench/check_row_settings.py: data.noise.rate = 0.4 is not read by data.noise.mode "
                                  "= none;") and done.stderr.count("\n") == 1


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_reads_the_device_scripts_through_and_finds_nothing() -> None:
    """A shellcheck directive where shellcheck cannot place it (before a case branch) is a parse error that stops it
    there: nothing after it is checked, the script's other `disable` comments included."""
    done = subprocess.run(["shellcheck", "bench/gpu_checks.sh", "bench/gpu_prepare.sh"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _run(tmp_path: Path, *args: str, where: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """The script run on this machine as a dry run (its steps run without CUDA), a stand-in `nvidia-smi` first on
    PATH, $OUT in tmp_path; in a tree of the
    project's code alone, so that a checkout's own .whl/ (gpu_prepare.sh's) is not installed and data/ not read;
    started at the tree's root, or in `where` as tree/bench/gpu_checks.sh."""
    tree, tools = tmp_path / "tree", tmp_path / "bin"
    for folder in ("bench", "configs", "elr_mri", "preprocess", "tests"):
        (tree / folder).parent.mkdir(exist_ok=True)
        (tree / folder).symlink_to(ROOT / folder)
    tools.mkdir()
    smi = tools / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'name, driver_version, memory.total [MiB]'\necho 'Stand-in GPU, 0.0, 1 MiB'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    inherited = {key: value for key, value in os.environ.items() if key not in ("ROW_SETTINGS", "GPU_CHECKS_SECONDS")}
    environ = {**inherited, "PATH": f"{tools}:{os.environ['PATH']}", "PYTHON": sys.executable,
               "OUT": str(tmp_path / "out"), "GPU_CHECKS_DRY_RUN": "1", **env}
    return subprocess.run(["bash", str(tree / "bench" / "gpu_checks.sh") if where else "bench/gpu_checks.sh", *args],
                          cwd=where or tree, env=environ, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("dash") is None, reason="dash (a POSIX sh that is not bash) is not installed")
def test_run_by_a_shell_other_than_bash_it_says_so_in_one_line() -> None:
    done = subprocess.run(["dash", "bench/gpu_checks.sh", "3d"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "bench/gpu_checks.sh is a bash script: run it as bash bench/gpu_checks.sh\n", "")


@pytest.mark.parametrize("args", [["3D"], ["steps"], ["3d", "gap"]])
def test_a_mistyped_mode_is_refused_before_anything_runs(tmp_path: Path, args: list[str]) -> None:
    done = _run(tmp_path, *args)
    assert done.returncode == 2
    assert done.stdout.startswith("usage: bash bench/gpu_checks.sh [step|gap|jobs|3d|cifar10n]")
    assert not (tmp_path / "out").exists()


def test_row_settings_a_mode_would_ignore_are_refused(tmp_path: Path) -> None:
    done = _run(tmp_path, "3d", ROW_SETTINGS="--set train.precision=fp32")
    assert done.returncode == 2 and "3d would ignore it" in done.stdout


@pytest.mark.parametrize("mode", ["", "gap", "cifar10n"])
def test_a_mistyped_row_setting_is_refused_before_the_device_is_touched(tmp_path: Path, mode: str) -> None:
    done = _run(tmp_path, *([mode] if mode else []), ROW_SETTINGS="--set train.compile_stp=true")
    assert done.returncode == 2
    assert "unknown key 'train.compile_stp' (did you mean train.compile_step?)" in done.stderr
    assert not (tmp_path / "out" / "device.txt").exists()  # nvidia-smi not reached


@pytest.mark.parametrize("misspelt", ["GPU_CHECK_SECONDS", "gpu_checks_seconds", "GPU_CHECKS_SECS",
                                      "GPU_CHECKS_DRYRUN"])
def test_a_misspelt_budget_is_refused_not_left_at_the_default(tmp_path: Path, misspelt: str) -> None:
    """The default 570 s under the plan's `timeout_s` 350 would have the device cut the call mid-step."""
    done = _run(tmp_path, "step", **{misspelt: "330"})
    assert done.returncode == 2
    assert done.stdout == (f"no such setting: {misspelt} (the time budget is GPU_CHECKS_SECONDS; the CPU's dry run "
                           "GPU_CHECKS_DRY_RUN)\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("budget", ["330s", "5.5", ""])
def test_a_budget_not_in_whole_seconds_is_refused_in_one_line(tmp_path: Path, budget: str) -> None:
    done = _run(tmp_path, "step", GPU_CHECKS_SECONDS=budget)
    assert done.returncode == 2 and not done.stderr
    assert done.stdout == f"GPU_CHECKS_SECONDS='{budget}': not a whole number of seconds (e.g. 330)\n"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a machine without CUDA")
def test_without_cuda_it_stops_in_one_line_before_any_step(tmp_path: Path) -> None:
    """Without CUDA each step failed after its start (in 3d, 1.5 minutes of this 2-core machine), or a CIFAR row
    trained on the CPU until the deadline."""
    done = _run(tmp_path, "3d", GPU_CHECKS_DRY_RUN="0")
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and len(lines) == 2 and not done.stderr, done.stdout + done.stderr
    assert re.fullmatch(rf"{re.escape(sys.executable)}: torch \S+ sees no CUDA device: the checks need torch with a "
                        r"CUDA device \(.*GPU_CHECKS_DRY_RUN=1 .*\)", lines[1])
    assert (tmp_path / "out" / "device.txt").read_text() == lines[0] + "\n"


@pytest.mark.parametrize("value", ["yes", "true", "2"])
def test_a_dry_run_setting_other_than_0_or_1_is_refused(tmp_path: Path, value: str) -> None:
    done = _run(tmp_path, "3d", GPU_CHECKS_DRY_RUN=value)
    assert (done.returncode, done.stdout) == (2, f"GPU_CHECKS_DRY_RUN='{value}': 1 (steps run without CUDA) or 0\n")


@pytest.mark.parametrize(("mode", "budget", "said"), [("", None, "570 s (GPU_CHECKS_SECONDS unset: the default)"),
                                                      ("gap", "330", "330 s (GPU_CHECKS_SECONDS)")])
def test_the_budget_is_said_first_and_a_missing_archive_ends_the_call_before_any_import(
        tmp_path: Path, mode: str, budget: str | None, said: str) -> None:
    """The budget line opens the output and device.txt (whether GPU_CHECKS_SECONDS was given, so that a call's
    timeout_s can be checked against it); a CIFAR mode without the carried archive then stops in a second, before
    the wheels' install and MONAI's import (tens of seconds on a device machine's first call)."""
    done = _run(tmp_path, *([mode] if mode else []), **({"GPU_CHECKS_SECONDS": budget} if budget else {}))
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and len(lines) == 2, done.stdout + done.stderr
    assert re.fullmatch(rf"budget: {re.escape(said)}, to \d\d:\d\d:\d\d UTC", lines[0])
    assert lines[1] == "data/cifar10-jpeg.tar.xz missing: run bench/gpu_prepare.sh and carry it"
    assert (tmp_path / "out" / "device.txt").read_text() == lines[0] + "\n"


def test_started_from_another_folder_it_reads_the_repository_and_writes_out_where_it_was_started(
        tmp_path: Path) -> None:
    """It read bench/, configs/, tests/ and data/ from the folder it was started in: from any other its first check
    failed (`can't open file 'bench/check_row_settings.py'`), or, in a mode without that check, every step did. A
    relative OUT and PYTHON are read from where it was started."""
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    done = _run(tmp_path, "gap", where=elsewhere, OUT="out", PYTHON=os.path.relpath(sys.executable, elsewhere))
    assert done.returncode == 1 and not done.stderr, done.stdout + done.stderr
    assert done.stdout.splitlines()[1] == "data/cifar10-jpeg.tar.xz missing: run bench/gpu_prepare.sh and carry it"
    assert (elsewhere / "out" / "device.txt").read_text() == done.stdout.splitlines()[0] + "\n"


def _functions(code: str) -> subprocess.CompletedProcess:
    """`code` run by bash after the script's own step, ending and finish: how a step's end is told and the call's exit
    status, tried here on small commands (the whole script needs a device machine's minutes to get there)."""
    functions = "".join(re.search(rf"^{name}\(\) {{\n.*?^}}\n", TEXT, re.M | re.S)[0]
                        for name in ("step", "ending", "finish"))
    return subprocess.run(["bash", "-c", functions + code], capture_output=True, text=True, timeout=60)


def test_a_rows_setup_line_splits_its_time_before_the_first_epoch_from_its_first_epochs_extra(tmp_path: Path) -> None:
    """A row's time before its first step (the imports, the JPEGs decoded, the model built) was in no file of a row
    the deadline cut, and its first epoch's compilation only in that epoch's seconds: a session could not tell setup
    from training. config.yaml, written last before the first epoch, stamps that epoch's start."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        setup_line = importlib.import_module("row_setup").setup_line
    finally:
        sys.path.remove(str(ROOT / "bench"))
    run, started = tmp_path / "run", 1_000_000.0
    run.mkdir()
    assert setup_line(run, started, "clean (reduce-overhead)", started + 40.4) == (
        "clean (reduce-overhead): no epoch begun in its 40 s (its log says why)")
    (run / "config.yaml").write_text("seed: 0\n")
    os.utime(run / "config.yaml", (started + 21.25, started + 21.25))
    before = "clean (reduce-overhead): 21.2 s before its first epoch (imports, the images decoded, the model and " \
             "batches built)"
    assert setup_line(run, started, "clean (reduce-overhead)", started + 30) == before + "; no epoch finished"
    (run / "metrics.csv").write_text("epoch,epoch_seconds,val_acc\n1,44.267,0.2\n2,2.82,0.3\n3,2.37,0.4\n4,2.35,0.4\n")
    assert setup_line(run, started, "clean (reduce-overhead)", started + 90) == before + (
        "; epoch 1 44.3 s against a median of 2.37 s over epochs 2-4: 41.9 s more (compilation, CUDA-graph capture)")


@pytest.mark.slow  # a digits row of 2 epochs on the CPU: 30 s at a load average of 11 on 2 cores, most of it imports
def test_a_row_says_its_setup_in_device_txt_as_it_ends(tmp_path: Path) -> None:
    """The script's own row function on the CPU (digits, 2 epochs, in place of a CIFAR row on CUDA): its line with the
    seconds before its first epoch follows the row's end in device.txt."""
    functions = "".join(re.search(rf"^{name}\(\) {{\n.*?^}}\n", TEXT, re.M | re.S)[0]
                        for name in ("step", "ending", "finish", "row", "keep_copying"))
    name = f"elr_row_setup_test_{os.getpid()}"  # row trains into /tmp/NAME
    code = f"""OUT={tmp_path} OUTCOMES={tmp_path}/outcomes KILL_GRACE=15 DEADLINE=$(( $(date +%s) + 300 ))
        PYTHON={sys.executable} row_settings="--set train.progress=false --set train.tensorboard=false"
        row {name} default configs/digits/elr_sym40.yaml --set train.epochs=2
        finish"""
    try:
        done = subprocess.run(["bash", "-c", functions + code], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    finally:
        shutil.rmtree(f"/tmp/{name}", ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = (tmp_path / "device.txt").read_text().splitlines()
    assert re.fullmatch(rf"{name} \(default\): exit 0, \d+ s wall \(limit \d+ s\)", lines[1]), lines
    assert re.fullmatch(rf"{name} \(default\): \d+\.\d s before its first epoch \(imports, .*\); epoch 1 \d+\.\d s "
                        r"against a median of \d+\.\d\d s over epochs 2-2: -?\d+\.\d s more \(.*\)", lines[2]), lines
    assert lines[3:] == ["end: every step ended well"]


def test_a_failed_step_fails_the_call_after_the_steps_left_and_the_end_says_which(tmp_path: Path) -> None:
    """A failed step made no difference to the exit status: a call whose every benchmark had failed read as 0. The
    steps after it still run, and the last line names the failed and those the deadline left no time for."""
    done = _functions(f"""OUT={tmp_path} OUTCOMES={tmp_path}/outcomes KILL_GRACE=15 DEADLINE=$(( $(date +%s) + 100 ))
        step "a failing step" 60 "$OUT/a.log" bash -c 'echo its error; exit 3'
        step "a good step" 60 "$OUT/a.log" true
        DEADLINE=$(date +%s)
        step "a late step" 60 "$OUT/a.log" true
        finish""")
    assert done.returncode == 1 and not done.stderr, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"a failing step: exit 3, \d+ s wall \(limit 60 s\), failed", lines[1])
    assert re.fullmatch(r"a good step: exit 0, \d+ s wall \(limit 60 s\)", lines[3])
    assert re.fullmatch(r"a late step: skipped, -\d+ s for it", lines[4])
    assert lines[5:] == ['end: failed: "a failing step"; skipped for time: "a late step"']
    assert (tmp_path / "device.txt").read_text() == done.stdout and (tmp_path / "a.log").read_text() == "its error\n"


def test_a_call_whose_steps_ended_well_or_were_skipped_for_time_exits_0(tmp_path: Path) -> None:
    done = _functions(f"""OUT={tmp_path} OUTCOMES={tmp_path}/outcomes KILL_GRACE=15 DEADLINE=$(( $(date +%s) + 100 ))
        step "a good step" 60 "$OUT/a.log" true
        DEADLINE=$(date +%s)
        step "a late step" 60 "$OUT/a.log" true
        finish""")
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == 'end: skipped for time: "a late step"', done.stdout


@pytest.mark.parametrize(("code", "wall", "limit", "cap", "said"), [
    (0, 10, 60, 60, ""), (2, 3, 60, 60, "failed"), (124, 32, 32, 300, "cut by the budget"),
    (124, 60, 60, 60, "cut at its own limit"), (137, 47, 32, 300, "cut by the budget"), (137, 5, 32, 300, "failed")])
def test_a_step_cut_at_its_limit_says_whether_the_budget_or_its_own_limit_cut_it(
        code: int, wall: int, limit: int, cap: int, said: str) -> None:
    """137 before the limit is a kill from elsewhere (the OOM killer): a failure, not a cut."""
    done = _functions(f"ending {code} {wall} {limit} {cap}")
    assert (done.returncode, done.stdout) == (0, said + "\n" if said else ""), done.stderr


@pytest.mark.slow  # ~6 s on a quiet machine, 35 s on a loaded one: MONAI's, nibabel's and nilearn's import check
def test_steps_the_deadline_leaves_no_time_for_are_skipped_and_said_so(tmp_path: Path) -> None:
    """`step` mode under a 20 s deadline: both steps skipped (under 30 s each), the device and each skip recorded."""
    done = _run(tmp_path, "step", GPU_CHECKS_SECONDS="20")
    assert done.returncode == 0, done.stdout + done.stderr
    device = (tmp_path / "out" / "device.txt").read_text()
    assert "Stand-in GPU" in device and "torch " in device
    assert re.search(r"^CUDA-graph engine tests: skipped, -?\d+ s for it$", device, re.M)
    assert re.search(r"^cifar step by piece: skipped, -?\d+ s for it$", device, re.M)
    assert device.endswith('\nend: skipped for time: "CUDA-graph engine tests", "cifar step by piece"\n')
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["device.txt"]


@pytest.mark.slow  # ~25 s: the import check, the engine tests' collection (skipped here), the bench's refusal
def test_each_step_says_its_start_and_limit_before_how_it_ended(tmp_path: Path) -> None:
    """`step` mode with time for both steps: each says when it started and under what limit (what a call cut by the
    device's own limit still brings back), then how it ended: the GPU tests skipped here, the bench refusing, a
    failed step, so that the call exits 1."""
    done = _run(tmp_path, "step", GPU_CHECKS_SECONDS="400")
    assert done.returncode == 1, done.stdout + done.stderr
    device = (tmp_path / "out" / "device.txt").read_text()
    assert device.startswith("budget: 400 s (GPU_CHECKS_SECONDS), to ") and device == done.stdout
    for name, code, said in (("CUDA-graph engine tests", 0, ""), ("cifar step by piece", 2, ", failed")):
        started = re.search(rf"^{name}: started \d\d:\d\d:\d\d UTC, limit (\d+) s$", device, re.M)
        ended = re.search(rf"^{name}: exit {code}, \d+ s wall \(limit (\d+) s\){said}$", device, re.M)
        assert started and ended and started.end() < ended.start() and started[1] == ended[1], device
    assert device.endswith('\nend: failed: "cifar step by piece"\n')


@pytest.mark.slow  # a torch import each: ~20 s in all
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="parses to the GPU's refusal only without one")
def test_every_bench_call_of_the_gpu_checks_parses_up_to_the_missing_gpu(tmp_path: Path) -> None:
    """Each `--device cuda` call, run here as the script runs it: its parser takes every option and value (choices
    included) and then refuses for want of a GPU, the first thing it checks after parsing."""
    calls = sorted({(script, words) for script, words in
                    re.findall(r'"\$PYTHON" (bench/\S+\.py)((?: (?!>|\|)\S+)*)', CODE) if "--device cuda" in words})
    assert len(calls) >= 5
    for script, words in calls:
        argv = [word.strip('"').replace("$OUT", str(tmp_path)) for word in words.split()]
        done = subprocess.run([sys.executable, script, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 2 and "CUDA device" in done.stderr.splitlines()[-1], (script, done.stderr)


@pytest.mark.slow  # ~15 s on a quiet machine, 60 s on a loaded one: the import check, then the row's failed start
def test_a_rerun_into_the_same_out_leaves_no_earlier_row_log_behind(tmp_path: Path) -> None:
    """`OUT=gpu_out` reused on a GPU machine: a row's log from an earlier run went on under the new run's lines (its
    figures, or an error since fixed, read as this run's), though the row's metrics and summary were cleared."""
    out, data = tmp_path / "out", tmp_path / "tree" / "data"
    (data / "cifar10" / "train").mkdir(parents=True)
    (data / "CIFAR-10_human.npz").write_bytes(b"")  # no labels in it: the row fails at once
    out.mkdir()
    (out / "cifar10n_elr_worst_reduce-overhead.log").write_text("an earlier run's line\n")
    done = _run(tmp_path, "cifar10n", GPU_CHECKS_SECONDS="100")
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"^cifar10n_elr_worst \(reduce-overhead\): exit [1-9]\d*, ", done.stdout, re.M), done.stdout
    log = (out / "cifar10n_elr_worst_reduce-overhead.log").read_text()
    assert log.startswith("elr-mri train: error: "), log


def _wheel(folder: Path, name: str, version: str) -> str:
    """A pure-Python wheel of `name` `version` holding only its metadata, in `folder`: pip's download takes it."""
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return f"{name}-{version}-py3-none-any.whl"


def test_gpu_prepare_in_a_git_worktree_says_where_to_run_it(tmp_path: Path) -> None:
    """A worktree's .git is a file (it failed with `.git/info/exclude: Not a directory`), and its .whl/ and data/
    would not travel: a device call carries them from the checkout the session started in."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {ROOT}/.git/worktrees/tree\n")
    (tree / "bench").symlink_to(ROOT / "bench")
    done = subprocess.run(["bash", "bench/gpu_prepare.sh"], cwd=tree, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and not done.stdout and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"bench/gpu_prepare.sh: {tree} has no .git folder (a git worktree's .git is a file): ")
    assert sorted(path.name for path in tree.iterdir()) == [".git", "bench"]


def test_gpu_prepare_beside_no_shared_cifar_files_says_so_before_the_download(tmp_path: Path) -> None:
    """A checkout not beside ../shared (a clone elsewhere) had its wheels downloaded and .whl/ replaced, then stopped
    on cp's `cannot stat`, two lines for the two files."""
    tree = tmp_path / "tree"
    (tree / ".git" / "info").mkdir(parents=True)
    (tree / "bench").symlink_to(ROOT / "bench")
    environ = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}  # no download, whatever happens
    done = subprocess.run(["bash", "bench/gpu_prepare.sh"], cwd=tree, env=environ, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and not done.stdout and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(
        f"bench/gpu_prepare.sh: ../shared/data/cifar/cifar10-jpeg.tar.xz missing beside {tree}: run it in ")
    assert sorted(path.name for path in tree.rglob("*")) == [".git", "bench", "info"]


@pytest.mark.parametrize("downloads", [True, False])
def test_gpu_prepare_replaces_the_wheels_only_once_all_are_in(tmp_path: Path, downloads: bool) -> None:
    """Two versions of one package in .whl/ stop gpu_checks.sh's install on the device (pip: ResolutionImpossible),
    a call's start spent: a wheel from an earlier gpu_prepare.sh (another pin) must go, but only once the new ones
    are in. pip downloads here from a folder of stand-in wheels (PIP_NO_INDEX, PIP_FIND_LINKS), not the registry;
    without nilearn's there, the download fails."""
    pins = re.findall(r'"(\w+)==([\w.]+)"', (ROOT / "bench" / "gpu_prepare.sh").read_text())
    assert {name for name, _ in pins} == {"monai", "nibabel", "nilearn"}
    index, tree, tools, cifar = tmp_path / "index", tmp_path / "tree", tmp_path / "bin", tmp_path / "shared/data/cifar"
    for folder in (index, tree / ".whl", tree / ".git" / "info", tools, cifar):
        folder.mkdir(parents=True)
    wanted = sorted(_wheel(index, name, version) for name, version in pins if downloads or name != "nilearn")
    earlier = [_wheel(tree / ".whl", "nibabel", "5.3.2")]
    (tree / "bench").symlink_to(ROOT / "bench")
    (tools / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # this Python, with its pip
    (tools / "python3").chmod(0o755)
    for name in ("cifar10-jpeg.tar.xz", "CIFAR-10_human.npz"):
        (cifar / name).write_bytes(b"stand-in")
    environ = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "PIP_CONFIG_FILE": os.devnull,
               "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)}  # this machine's pip settings left out too
    done = subprocess.run(["bash", "bench/gpu_prepare.sh"], cwd=tree, env=environ, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode == 0) == downloads, done.stdout + done.stderr
    assert sorted(path.name for path in (tree / ".whl").iterdir()) == (wanted if downloads else earlier)
    assert (tree / ".git" / "info" / "exclude").read_text() == "/.whl/\n"
    if downloads:  # and then the calls the plan makes: not a mode whose figures are in (the default's row was)
        assert sorted(path.name for path in (tree / "data").iterdir()) == ["CIFAR-10_human.npz", "cifar10-jpeg.tar.xz"]
        planned = re.findall(r"^#   (run\(.*?\))$", re.sub(r",\n#\s+timeout_s", ", timeout_s", TEXT), re.M)
        printed = re.findall(r"^  (run\(.*?\))$", re.sub(r",\n\s+timeout_s", ", timeout_s", done.stdout), re.M)
        assert printed == planned and len(planned) == 2
