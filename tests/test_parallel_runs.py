"""Runs side by side (`scripts/parallel_runs.py`, `reproduce_paper_table.py --jobs`): each an `elr-mri train` process,
the same results as one after the other, spread over the visible GPUs, one failure alone, Ctrl-C resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from elr_mri.engine.run_dir import exclusive_run_dir
from elr_mri.stopping import Terminated
from preprocess.cores import usable_cores
from test_image_data import write_cifar10

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "configs" / "digits" / "elr_sym40.yaml"
FAST = ("train.epochs=2", "train.tensorboard=false", "train.device=cpu")
TIMES = ["epoch_seconds", "eval_seconds"]


@pytest.fixture(scope="module")
def parallel(import_script):
    return import_script("parallel_runs")


def _seeds(parallel, folder: Path, *overrides: str) -> list:
    return [parallel.PlannedRun(f"digits seed {seed}", DIGITS, (*FAST, f"seed={seed}", f"data.noise.seed={seed}",
                                                                *overrides), folder / f"seed{seed}")
            for seed in range(2)]


def test_runs_side_by_side_train_as_one_after_the_other(parallel, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # GPUs this machine lacks: the runs say where they went
    together = parallel.train_in_parallel(_seeds(parallel, tmp_path / "together", "train.threads=1"), jobs=2)
    out = capsys.readouterr().out
    assert "digits seed 0: started on GPU 3 (new)" in out and "digits seed 1: started on GPU 5 (new)" in out
    in_turn = parallel.train_in_parallel(_seeds(parallel, tmp_path / "in_turn", "train.threads=1"), jobs=1)
    assert "started on GPU 3" in capsys.readouterr().out  # one slot: every run on the first GPU
    by_name = {run.name: (run, summary) for run, summary in in_turn.items()}  # results come as runs finish
    assert sorted(by_name) == sorted(run.name for run in together)
    for run, summary in together.items():
        other, other_summary = by_name[run.name]
        assert isinstance(summary, dict), summary
        assert summary["test_acc_last"] == other_summary["test_acc_last"]
        metrics = pd.read_csv(run.run_dir / "metrics.csv").drop(columns=TIMES)
        pd.testing.assert_frame_equal(metrics, pd.read_csv(other.run_dir / "metrics.csv").drop(columns=TIMES))
        assert "run directory:" in run.log.read_text()  # the command's own output, in its log
    assert together[_seeds(parallel, tmp_path / "together", "train.threads=1")[0]]["epochs"] == 2

    written = (tmp_path / "together" / "seed0" / "metrics.csv").stat().st_mtime_ns
    again = parallel.train_in_parallel(_seeds(parallel, tmp_path / "together", "train.threads=1"), jobs=2)
    assert again == together  # by run: together lists them as they finished, a read-back in order
    assert "digits seed 0: finished before, read back" in capsys.readouterr().out
    assert (tmp_path / "together" / "seed0" / "metrics.csv").stat().st_mtime_ns == written


def test_each_run_gets_its_share_of_the_cores_and_one_failure_stops_no_other(parallel, tmp_path: Path) -> None:
    good = _seeds(parallel, tmp_path)[0]
    broken = parallel.PlannedRun("cifar10 without images", ROOT / "configs/cifar10/elr_sym40.yaml",
                                 (*FAST, f"data.root={tmp_path / 'nowhere'}"), tmp_path / "cifar")
    outcome = parallel.train_in_parallel([broken, good], jobs=2)
    assert outcome[broken].startswith("exit 2: ") and "image folder not found" in outcome[broken]
    assert outcome[broken].endswith(f"see {broken.log}")
    saved = yaml.safe_load((good.run_dir / "config.yaml").read_text())
    assert saved["train"]["threads"] == max(1, usable_cores() // 2)
    assert "epoch 2/2: lr " in good.log.read_text()  # a line per epoch in the log, which said nothing until the end
    assert outcome[good]["epochs"] == 2


def test_ctrl_c_stops_the_runs_at_a_checkpoint_and_a_rerun_continues_them(parallel, tmp_path: Path, monkeypatch,
                                                                          capsys) -> None:
    # one thread, as the pool's other runs here: its default for one run, every core, made each epoch wait for a
    # second thread on a busy machine (40 epochs took 82 s of training beside other tests, 5 s on one thread); the
    # Ctrl-C comes within a poll (POLL_SECONDS) of the first checkpoint, a few of the 20 epochs in
    run = _seeds(parallel, tmp_path, "train.epochs=20", "train.checkpoint_seconds=0", "train.threads=1")[0]
    sleep, pressed = time.sleep, []

    def ctrl_c_after_a_checkpoint(seconds: float) -> None:  # once: waiting for the runs to stop sleeps too
        sleep(seconds)
        if not pressed and (run.run_dir / "checkpoints" / "last.pt").exists():
            pressed.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(parallel.time, "sleep", ctrl_c_after_a_checkpoint)
    monkeypatch.setattr(parallel, "OWN_CTRL_C_SECONDS", 0)  # this Ctrl-C reached the pool alone
    with pytest.raises(KeyboardInterrupt):
        parallel.train_in_parallel([run], jobs=1)
    assert "interrupted" in run.log.read_text() and not (run.run_dir / "summary.json").exists()
    stopped_at = len(pd.read_csv(run.run_dir / "metrics.csv"))
    assert 1 <= stopped_at < 20
    monkeypatch.setattr(parallel.time, "sleep", sleep)
    assert parallel.train_in_parallel([run], jobs=1)[run]["epochs"] == 20
    out = capsys.readouterr().out
    assert out.count("digits seed 0: started on") == 2 and "(new)" in out and "(resume)" in out
    assert pd.read_csv(run.run_dir / "metrics.csv")["epoch"].tolist() == list(range(1, 21))


def _ignoring_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("cause", [KeyboardInterrupt(), Terminated(), ValueError("a fault of the pool")],
                         ids=["ctrl-c", "sigterm", "error"])
def test_processes_are_stopped_by_ctrl_c_or_else_by_sigterm(parallel, monkeypatch, cause: BaseException) -> None:
    """A process started with `&` from a non-interactive shell ignores SIGINT: one SIGINT for any cause left a stop
    waiting STOP_WAIT_SECONDS, then killed it. Ctrl-C still sends Ctrl-C (SIGTERM would end a run already stopping);
    a SIGTERM the script got (Terminated, a KeyboardInterrupt to Python) sends SIGTERM."""
    monkeypatch.setattr(parallel, "OWN_CTRL_C_SECONDS", 0)
    ctrl_c = type(cause) is KeyboardInterrupt
    process = subprocess.Popen(["sleep", "600"], preexec_fn=None if ctrl_c else _ignoring_ctrl_c)
    parallel.stop_processes([process], cause)
    assert process.returncode == -(signal.SIGINT if ctrl_c else signal.SIGTERM)


def test_runs_a_terminals_ctrl_c_reached_get_no_second_one_while_they_stop(parallel, tmp_path: Path) -> None:
    """A terminal sends Ctrl-C to the pool and its runs alike: a second one from the pool, at once, broke into a run's
    own stopping with a traceback. The run here takes a second to stop on its Ctrl-C and notes any other it gets."""
    noted = tmp_path / "second_ctrl_c"
    stopping = ("import pathlib, signal, sys, time\n"
                f"def second(signum, frame): pathlib.Path({str(noted)!r}).write_text('got one')\n"
                "def stop(signum, frame):\n"
                "    signal.signal(signal.SIGINT, second)\n"
                "    print('stopping', flush=True)\n"
                "    time.sleep(1)\n"
                "    sys.exit(130)\n"
                "signal.signal(signal.SIGINT, stop)\n"
                "print('ready', flush=True)\n"
                "time.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", stopping], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGINT)  # the terminal's
    assert process.stdout.readline() == "stopping\n"
    parallel.stop_processes([process], KeyboardInterrupt())
    assert process.returncode == 130 and not noted.exists()


def test_a_sigterm_the_script_recorded_stops_the_pool_while_it_waits_on_its_runs(parallel, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """run_script records a SIGTERM (a batch system's time limit) for the pool's loop to act on between its polls:
    unread, the pool waited on its runs to their end. The runs are then stopped as Terminated says (above)."""
    from elr_mri.stopping import terminating_at_safe_points

    monkeypatch.setattr(parallel, "OWN_CTRL_C_SECONDS", 0)  # the SIGTERM reached the pool alone
    run = _seeds(parallel, tmp_path, "train.epochs=400")[0]
    try:
        with terminating_at_safe_points(), pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            parallel.train_in_parallel([run], jobs=1)
    finally:
        with terminating_at_safe_points():  # clears the SIGTERM recorded here, which a later test's training would
            pass  # take for its own and stop at its first step
    with exclusive_run_dir(run.run_dir):  # refused while the run still trains there
        pass


def test_a_run_killed_by_a_signal_is_said_to_be_and_not_by_an_earlier_attempts_line(parallel, tmp_path: Path,
                                                                                       monkeypatch) -> None:
    """The kernel's out-of-memory killer ends a run without a word: it was reported as "exit -9" with the last line in
    its log, which an earlier attempt had written."""
    run = _seeds(parallel, tmp_path, "train.epochs=400")[0]
    earlier = "elr-mri train: interrupted; continue from the last checkpoint with: elr-mri train --resume ..."
    run.log.write_text(f"{earlier}\n")
    sleep = time.sleep

    def sleep_then_kill(seconds: float) -> None:  # the pool's one child, found through /proc
        sleep(seconds)
        for child in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
            os.kill(int(child), signal.SIGKILL)

    monkeypatch.setattr(parallel.time, "sleep", sleep_then_kill)
    outcome = parallel.train_in_parallel([run], jobs=1)[run]
    assert outcome == f"killed by SIGKILL (the system's out-of-memory killer sends it); see {run.log}"
    assert run.log.read_text().startswith(earlier)  # the log keeps every attempt's output


def test_a_table_row_trains_its_seeds_side_by_side(import_script, tmp_path: Path, capsys) -> None:
    write_cifar10(tmp_path / "data")
    reproduce = import_script("reproduce_paper_table")
    small = ["train.epochs=1", "train.batch_size=16", "model.name=mlp", "train.device=cpu", "train.tensorboard=false"]
    code = reproduce.main(["--table", "1", "--rows", "cifar10-sym40", "--seeds", "2", "--jobs", "2", "--data-root",
                           str(tmp_path / "data"), "--out", str(tmp_path / "runs"),
                           *[arg for setting in small for arg in ("--set", setting)]])
    assert code == 0
    out = capsys.readouterr().out
    assert "cifar10-sym40 seed 1: started on" in out and "cifar10-sym40 seed 1: done" in out
    assert "| cifar10-sym40 | 89.15 |" in out and "| 2 |" in out
    assert "Wall time: the row's runs added up (side by side, --jobs, they took less)" in out  # not the elapsed time
    assert (tmp_path / "runs" / "cifar10-sym40" / "seed1.log").exists()
    # a row of the table: its own file, not the whole table's results.md (a row rerun alone wrote over that)
    assert [path.name for path in (tmp_path / "runs").glob("*.md")] == ["results-cifar10-sym40.md"]


def test_a_seed_set_beside_one_seed_names_the_plan_line_and_folder_by_the_seeds_trained_with(
        import_script, tmp_path: Path, capsys) -> None:
    """`--seeds 1 --set seed=3` trained model seed 3 on seed 0's noisy labels and split in OUT/<row>/seed0, which the
    plan and progress lines called seed 0; a later `--seeds 2` then found seed0 made with other settings."""
    write_cifar10(tmp_path / "data")
    reproduce = import_script("reproduce_paper_table")
    small = ["train.epochs=1", "train.batch_size=16", "model.name=mlp", "train.device=cpu", "train.tensorboard=false",
             "seed=3"]
    code = reproduce.main(["--table", "1", "--rows", "cifar10-sym40", "--seeds", "1", "--data-root",
                           str(tmp_path / "data"), "--out", str(tmp_path / "runs"),
                           *[arg for setting in small for arg in ("--set", setting)]])
    assert code == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "cifar10-sym40" / "seed3-noise0-split0"
    assert "| cifar10-sym40 | 3-noise0-split0 | cifar10/elr_sym40.yaml |" in out and f"| {run} |" in out  # the plan
    assert f"== cifar10-sym40 seed 3-noise0-split0 (new) -> {run}" in out and "Every row with --set " in out
    trained = yaml.safe_load((run / "config.yaml").read_text())
    assert (trained["seed"], trained["data"]["noise"]["seed"], trained["data"]["split_seed"]) == (3, 0, 0)
    assert [path.name for path in run.parent.iterdir()] == [run.name]
    assert reproduce.seed_folder(0, ["seed=3", "data.noise.seed=3", " data.split_seed = 3"]) == "seed3"  # seed 3's


@pytest.mark.parametrize("jobs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_seed_that_fails_is_reported_alone_in_turn_as_side_by_side(import_script, tmp_path: Path, capsys,
                                                                      jobs: int) -> None:
    """Its run folder taken by a file: one after the other, that stopped the script before seed 1 trained (only a
    ValueError or a missing file went on to the next seed), where side by side seed 1 trained."""
    write_cifar10(tmp_path / "data")
    (tmp_path / "runs" / "cifar10-sym40").mkdir(parents=True)
    (tmp_path / "runs" / "cifar10-sym40" / "seed0").write_text("not a run\n")
    reproduce = import_script("reproduce_paper_table")
    small = ["train.epochs=1", "train.batch_size=16", "model.name=mlp", "train.device=cpu", "train.tensorboard=false"]
    code = reproduce.main(["--table", "1", "--rows", "cifar10-sym40", "--seeds", "2", "--jobs", str(jobs), "--data-root",
                           str(tmp_path / "data"), "--out", str(tmp_path / "runs"),
                           *[arg for setting in small for arg in ("--set", setting)]])
    assert code == 1
    out, err = capsys.readouterr()
    assert "cifar10-sym40 seed 0: not finished: " in err and "is a file; choose a folder for the run" in err, err
    assert "seed 1: not finished" not in err and "| cifar10-sym40 | 89.15 |" in out and "| 1 of 2 |" in out
    assert (tmp_path / "runs" / "cifar10-sym40" / "seed1" / "summary.json").exists()
    assert not list((tmp_path / "runs").glob("*.md"))


def _pool_of_two_long_runs(tmp_path: Path, ignoring_ctrl_c: bool = False) -> tuple[subprocess.Popen, list[str]]:
    """A script training two long digits runs side by side through run_script, once both wrote a checkpoint;
    `ignoring_ctrl_c` as a non-interactive shell's `&` starts it (`nohup python scripts/... &` on a server)."""
    runs = [str(tmp_path / f"seed{seed}") for seed in range(2)]
    driver = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(ROOT / "scripts")!r})
from paper_runs import run_script
from parallel_runs import PlannedRun, train_in_parallel
settings = {(*FAST, "train.epochs=400", "train.checkpoint_seconds=0")!r}
runs = [PlannedRun(f"seed {{seed}}", Path({str(DIGITS)!r}), (*settings, f"seed={{seed}}"), Path(folder))
        for seed, folder in enumerate({runs!r})]
run_script(lambda: len(train_in_parallel(runs, 2)))
"""
    pool = subprocess.Popen([sys.executable, "-c", driver], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ignoring_ctrl_c if ignoring_ctrl_c else None)
    deadline = time.monotonic() + 120
    while not all((Path(run) / "checkpoints" / "last.pt").exists() for run in runs):
        assert time.monotonic() < deadline and pool.poll() is None, pool.communicate()
        time.sleep(0.2)
    return pool, runs


# the pool's part, cheaply: test_runs_a_terminals_ctrl_c_reached_get_no_second_one_while_they_stop
@pytest.mark.slow
def test_ctrl_c_at_the_terminal_reaches_every_run_once(tmp_path: Path) -> None:
    """As from a terminal: the pool and its runs (one process group) get the same Ctrl-C; each run stops on its own,
    with its one-line message and no traceback from a second Ctrl-C, and the pool exits 130 saying how to go on."""
    pool, runs = _pool_of_two_long_runs(tmp_path)
    os.killpg(pool.pid, signal.SIGINT)
    _, err = pool.communicate(timeout=120)
    assert pool.returncode == 130 and "interrupted; run the same command again" in err, err
    for run in runs:
        log = Path(run + ".log").read_text()
        assert "interrupted" in log and "Traceback" not in log, log
        assert not (Path(run) / "summary.json").exists()


# in parts, cheaply: test_a_sigterm_the_script_recorded_stops_the_pool_while_it_waits_on_its_runs (the pool's loop),
# test_processes_are_stopped_by_ctrl_c_or_else_by_sigterm[sigterm] (the signal the runs get), test_engine.py's
# test_sigterm_during_training_stops_it_as_ctrl_c_does (a run stopping on it) and test_mri_n1200_recipe.py's
# test_sigterm_to_the_script_stops_the_command_it_waits_on_as_ctrl_c_does (run_script's SIGTERM and its line)
@pytest.mark.slow
def test_sigterm_to_the_script_stops_its_runs_as_ctrl_c_does(tmp_path: Path) -> None:
    """A batch system's time limit signals the script alone: its default action ended it without a word and left the
    runs training as orphans, which a rerun then found holding their folders. Started with `&`, the runs ignore the
    SIGINT they were then sent, and trained on until killed 60 s later."""
    pool, runs = _pool_of_two_long_runs(tmp_path, ignoring_ctrl_c=True)
    os.kill(pool.pid, signal.SIGTERM)
    _, err = pool.communicate(timeout=120)
    assert pool.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in err, err
    for run in runs:
        assert "elr-mri train: stopped by SIGTERM" in Path(run + ".log").read_text()
        with exclusive_run_dir(Path(run)):  # refused while a run still trains there
            pass
