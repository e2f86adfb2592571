"""A full or read-only disk under an output is the user's to fix: one line saying so, nothing half-written.
Seconds; the disk is not filled for real (torch's writer failing part-way is imitated)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import shlex
from pathlib import Path

import pytest
import torch

from elr_mri.commands.problems import user_problem
from elr_mri.tensor_files import atomic_save
from preprocess.user_errors import StorageError, as_storage_error, nonempty_text


def test_a_full_or_read_only_disk_is_a_user_error_naming_the_path() -> None:
    full = user_problem(OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.csv"))
    assert isinstance(full, StorageError)
    assert str(full) == ("[Errno 28] No space left on device (/runs/x/metrics.csv); free space there, or write "
                         "elsewhere, and run the command again (finished work is kept: preprocess skips finished "
                         "scans, a training run continues with --resume)")
    read_only = as_storage_error(OSError(errno.EROFS, "Read-only file system", "/mnt/ro/run"))
    assert str(read_only).endswith("(/mnt/ro/run); write elsewhere (another output folder)")
    assert as_storage_error(OSError(errno.EIO, "Input/output error")) is None  # not the user's to fix
    assert user_problem(RuntimeError("a bug")) is None


def test_a_disk_error_naming_no_file_says_no_empty_brackets_and_a_path_of_spaces_is_empty() -> None:
    """An fsync or a write through a descriptor fails without a file name: the line goes on without '()'. A path of
    spaces is as empty as '' (`--out "$DIR "` with DIR unset), not a folder named ' '."""
    assert str(as_storage_error(OSError(errno.ENOSPC, "No space left on device"))).startswith(
        "[Errno 28] No space left on device; free space there")
    with pytest.raises(argparse.ArgumentTypeError, match="an empty path"):
        nonempty_text("  ")


def test_a_checkpoint_the_disk_refused_part_way_is_said_as_a_full_disk_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/dev/full refuses every write with ENOSPC, as a full disk does: torch's writer fails part-way."""
    import elr_mri.tensor_files as tensor_files

    monkeypatch.setattr(tensor_files, "atomic_path", lambda path: contextlib.nullcontext(Path("/dev/full")))
    with pytest.raises(StorageError, match=rf"{tmp_path / 'last.pt'} could not be written \(.*; \d+ MiB free "
                                           r"there\): free space"):
        atomic_save({"weights": torch.zeros(100_000)}, tmp_path / "last.pt")
    monkeypatch.undo()
    monkeypatch.setattr(torch, "save", lambda obj, handle: (_ for _ in ()).throw(RuntimeError("another failure")))
    with pytest.raises(RuntimeError, match="another failure"):  # not a write the disk refused: as it was
        atomic_save({"step": 1}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []  # the temporary file removed


def test_a_checkpoint_the_disk_refused_names_its_path_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real temporary file: its rename guard gave the one line the path a second time at its end
    ("...with --resume): '.../last.pt'"). torch's failure on a full disk, seen on a 1.2 MB tmpfs, is imitated."""
    full = "[enforce fail at inline_container.cc:672] . unexpected pos 460736 vs 460688"
    monkeypatch.setattr(torch, "save", lambda obj, handle: (_ for _ in ()).throw(RuntimeError(full)))
    path = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(StorageError) as refused:
        atomic_save({"step": 1}, path)
    assert str(refused.value).startswith(f"[Errno 28] {path} could not be written ({full}; ")
    assert str(refused.value).endswith("(a training run continues with --resume)")
    assert list(path.parent.iterdir()) == []  # the temporary file removed


@pytest.mark.parametrize("refusal", [errno.ENOSPC, errno.EDQUOT])  # a user's quota is a full disk to them
def test_a_checkpoint_folder_the_full_disk_refused_is_said_as_the_full_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int) -> None:
    """The first checkpoint makes `checkpoints/`, which a disk out of inodes refused (a 8-inode tmpfs, for real): the
    line asked the missing folder for its free space and said "No such file or directory" instead."""
    def full(path: object, *args: object) -> None:
        raise OSError(refusal, os.strerror(refusal), str(path))

    monkeypatch.setattr(os, "mkdir", full)
    path = tmp_path / "run" / "checkpoints" / "best.pt"
    with pytest.raises(StorageError, match=rf"^\[Errno 28\] {path} could not be written \({os.strerror(refusal)}; "
                                           r"\d+ MiB free there"):
        atomic_save({"step": 1}, path)


def test_a_disk_out_of_inodes_is_said_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Megabytes free beside "No space left on device" read as a contradiction: the disk has no file left to make."""
    import elr_mri.tensor_files as tensor_files

    real = os.statvfs(tmp_path)
    no_inodes = os.statvfs_result((*real[:6], 0, 0, *real[8:]))  # f_ffree and f_favail used up
    monkeypatch.setattr(tensor_files.os, "statvfs", lambda path: no_inodes if Path(path) == tmp_path else real)
    assert tensor_files._room_left(tmp_path).endswith("MiB free there, but no new file: its inodes are used up")


def test_a_folder_where_an_output_file_goes_is_one_clear_line(tmp_path: Path) -> None:
    """A `summary.json/` folder in a run: the rename onto it failed after the work, "Is a directory: 'F' -> 'F'"."""
    from elr_mri.atomic_files import atomic_write_json

    (tmp_path / "summary.json").mkdir()
    with pytest.raises(IsADirectoryError) as refused:
        atomic_write_json({"epochs": 3}, tmp_path / "summary.json")
    assert str(refused.value) == (f"[Errno 21] Is a directory where this file goes: move or remove that folder and run "
                                  f"the command again: '{tmp_path / 'summary.json'}'")
    assert [path.name for path in tmp_path.iterdir()] == ["summary.json"]


def test_a_text_file_the_disk_refused_names_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics.csv, summary.json: the OS's ENOSPC from a write has no file name, so the one line would lack it."""
    import contextlib

    import elr_mri.atomic_files as atomic_files

    monkeypatch.setattr(atomic_files, "atomic_path", lambda path: contextlib.nullcontext(Path("/dev/full")))
    with pytest.raises(OSError) as refused:
        atomic_files.atomic_write_text("epoch\n1\n" * 10_000, tmp_path / "metrics.csv")
    assert str(as_storage_error(refused.value)).startswith(f"[Errno 28] No space left on device ({tmp_path / 'metrics.csv'}); ")


def test_simulate_and_preprocess_say_a_full_disk_and_refuse_an_empty_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import elr_mri.simulate.cli as simulate
    from preprocess.cli import main as preprocess_main

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cohort" / "sub-1.nii.gz"))

    monkeypatch.setattr(simulate, "simulate_cohort", full)
    assert simulate.main(["--out", str(tmp_path / "cohort"), "--subjects", "1"]) == 2
    assert capsys.readouterr().err.startswith("elr-mri simulate-cohort: error: [Errno 28] No space left on device (")
    monkeypatch.setattr(simulate, "simulate_cohort", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(OSError, match="I/O"):  # not the user's to fix: the traceback stays
        simulate.main(["--out", str(tmp_path / "cohort"), "--subjects", "1"])
    with pytest.raises(SystemExit) as exited:
        preprocess_main(["--input", "", "--output", str(tmp_path / "out")])
    assert exited.value.code == 2 and "argument --input: an empty path" in capsys.readouterr().err


def test_ctrl_c_while_a_checkpoint_is_written_finishes_the_file_then_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's writer turns a KeyboardInterrupt raised inside its file writes into "unexpected pos": a Ctrl-C
    during a save was reported as a full disk (CI saw it). Here the first write delivers SIGINT to this process."""
    import io
    import signal

    import elr_mri.tensor_files as tensor_files

    class InterruptedOnFirstWrite(io.FileIO):
        interrupted = False

        def write(self, data) -> int:  # noqa: ANN001 - bytes-like
            if not InterruptedOnFirstWrite.interrupted:
                InterruptedOnFirstWrite.interrupted = True
                signal.raise_signal(signal.SIGINT)
            return super().write(data)

    monkeypatch.setattr(tensor_files, "open", lambda path, mode: InterruptedOnFirstWrite(path, "wb"), raising=False)
    path = tmp_path / "last.pt"
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"weights": torch.arange(100_000.0)}, path)
    assert InterruptedOnFirstWrite.interrupted
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.arange(100_000.0))  # written whole
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C acts at once again


@pytest.mark.parametrize("stderr_too", [False, True])
def test_a_reader_that_closes_the_pipe_early_ends_the_command_with_one_line_not_a_traceback(stderr_too: bool) -> None:
    """`elr-mri preprocess ... | head -1`: the listing after the run hit a closed pipe and ended in a traceback.
    With `2>&1 | head` the line has nowhere to go, and the exit status still says what happened."""
    import subprocess
    import sys

    many_lines = ("import sys\nfrom elr_mri import cli\n"
                  "def listing(argv):\n    for _ in range(10000):\n        print('a flagged scan ' * 50)\n    return 0\n"
                  "cli._run_command = listing\nsys.exit(cli.main(['preprocess']))\n")
    reader = subprocess.Popen([sys.executable, "-c", many_lines], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE)
    reader.stdout.read(100)
    reader.stdout.close()  # as `head` does once it has its lines
    stderr = "" if stderr_too else reader.stderr.read().decode()
    assert reader.wait() == 141  # 128 + SIGPIPE, as a shell reports a writer the closed pipe ended
    if not stderr_too:
        assert stderr == "elr-mri preprocess: stopped writing, its output's reader closed the pipe\n"


def test_a_path_the_os_refuses_by_its_name_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`Path.is_dir()` and `mkdir` on a name over 255 bytes raised ENAMETOOLONG as a traceback."""
    from elr_mri.cli import main

    long_name = tmp_path / ("x" * 300)
    config = Path(__file__).resolve().parents[1] / "configs" / "digits" / "elr_sym40.yaml"
    assert main(["train", "--config", str(config), "--out", str(long_name)]) == 2
    assert capsys.readouterr().err == (f"elr-mri train: error: {long_name}: File name too long; shorten it (a file or "
                                       "folder name holds at most 255 bytes)\n")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert str(user_problem(OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(loop)))) == (
        f"{loop}: Too many levels of symbolic links; it runs through a loop of symbolic links; fix the link")


def test_evaluate_and_explain_refuse_a_run_on_read_only_storage_before_scoring(
        tmp_path: Path, read_only, cli_in_process) -> None:
    """Runs are archived on read-only lab storage: `evaluate` scored the run (minutes for an MRI one), then stopped
    at writing its folder, telling the user to write to "another output folder", which evaluate has no option for.
    The copy command it gives is quoted: lab storage folders hold spaces."""
    from elr_mri.config import load_config
    from elr_mri.engine.start import train

    config = Path(__file__).resolve().parents[1] / "configs" / "digits" / "elr_sym40.yaml"
    run = tmp_path / "lab runs"
    train(load_config(config, ["data.train_subset=200", "train.epochs=1", "train.progress=false",
                               "train.tensorboard=false"]), run)
    read_only(run)
    for command, folder in (("evaluate", "eval-test"), ("explain", "explain-test")):  # explain: before "not MRI"
        result = cli_in_process(command, "--run", str(run))
        assert result.returncode == 2 and re.fullmatch(
            rf"elr-mri {command}: error: {run / folder}: cannot write there \((Read-only file system|Permission "
            rf"denied)\); the results go into the run's folder, so copy the run to a folder you can write \(cp -r "
            rf"{re.escape(shlex.quote(str(run)))} NEW_RUN_DIR\) and pass that\n", result.stderr), result.stderr


def test_a_file_a_read_only_folder_refuses_is_named_not_its_temporary_file(tmp_path: Path, read_only) -> None:
    """Every atomic write (a manifest, a sidecar, an evaluation's CSVs) into a read-only folder said
    "Read-only file system (out/.tmp4242-manifest.csv)": the unlink of the temporary file that was never made failed
    too, and replaced the error with its own."""
    from preprocess.sidecar import write_json

    folder = tmp_path / "archive"
    read_only(folder)
    with pytest.raises(OSError) as refused:
        write_json(folder / "summary.json", {"done": True})
    assert refused.value.errno in (errno.EROFS, errno.EACCES) and refused.value.filename == str(folder / "summary.json")
    assert not list(folder.iterdir())


def test_a_full_disk_under_tensorboard_is_one_line_naming_the_event_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    """torch's SummaryWriter wrote from a thread of its own: on a full disk (a full tmpfs mounted over a run's
    tensorboard/, then --resume) that thread printed its traceback, and train's one line named no file. /dev/full
    refuses the event file's writes here as that disk did."""
    import elr_mri.engine.scalar_log as scalar_log
    from elr_mri.cli import main

    monkeypatch.setattr(scalar_log, "open", lambda path, mode: open("/dev/full", "wb"), raising=False)
    config = Path(__file__).resolve().parents[1] / "configs" / "digits" / "elr_sym40.yaml"
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run), "--set", "data.train_subset=200",
                 "--set", "train.epochs=1", "--set", "train.progress=false"]) == 2
    assert re.fullmatch(rf"elr-mri train: error: \[Errno 28\] No space left on device \({re.escape(str(run))}/"
                        r"tensorboard/events\.out\.tfevents\.[^/]+\); free space there, or write elsewhere, and run "
                        r"the command again \(no checkpoint was written yet: it starts over\)\n",
                        capfd.readouterr().err)


def test_a_full_disk_says_resume_only_where_the_run_has_a_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    """A full disk before the first checkpoint said "a training run continues with --resume"; where it came before
    config.yaml (a 4-inode tmpfs, for real), --resume then said "no run there". With a checkpoint it names the
    resume. /dev/full refuses the resumed run's checkpoint here as a full disk does."""
    import elr_mri.tensor_files as tensor_files
    from elr_mri.cli import main

    config = Path(__file__).resolve().parents[1] / "configs" / "digits" / "elr_sym40.yaml"
    run = tmp_path / "run"
    settings = ["--set", "data.train_subset=200", "--set", "train.progress=false", "--set", "train.tensorboard=false"]
    assert main(["train", "--config", str(config), "--out", str(run), "--set", "train.epochs=1", *settings]) == 0
    capfd.readouterr()
    monkeypatch.setattr(tensor_files, "atomic_path", lambda path: contextlib.nullcontext(Path("/dev/full")))
    assert main(["train", "--resume", str(run), "--set", "train.epochs=2"]) == 2
    assert capfd.readouterr().err.endswith("run the command again (continue from the last checkpoint with: elr-mri "
                                           f"train --resume {run})\n")


def test_a_file_over_the_file_size_limit_says_the_limit_not_a_full_disk(tmp_path: Path) -> None:
    """`ulimit -f` (a batch system's file size limit): the OS refuses the write as "File too large", which torch's
    writer turned into "unexpected pos", said as a full disk with "62958 MiB free there: free space"."""
    import subprocess
    import sys

    script = ("import resource, sys, torch\nfrom pathlib import Path\n"
              "from elr_mri.commands.problems import user_problem\n"
              "from elr_mri.atomic_files import atomic_write_text\n"
              "from elr_mri.tensor_files import atomic_save\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, resource.RLIM_INFINITY))\n"
              "for write in (lambda path: atomic_save({'weights': torch.zeros(100_000)}, path),\n"
              "              lambda path: atomic_write_text('epoch\\n' * 50_000, path)):\n"
              "    try:\n        write(Path(sys.argv[1]))\n    except Exception as err:\n"
              "        print(f'{type(user_problem(err)).__name__}: {user_problem(err)}')\n")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "last.pt")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    limit = "larger than this process may write (100 KiB: `ulimit -f` in the shell, or the batch system's file size limit)"
    assert out == [f"StorageError: [Errno 27] {tmp_path / 'last.pt'} could not be written (File too large): {limit}: "
                   "raise that limit, or ask for it to be raised; then run the command again (a training run continues "
                   "with --resume)",
                   f"StorageError: [Errno 27] File too large ({tmp_path / 'last.pt'}); {limit}: raise that limit, or ask "
                   "for it to be raised, and run the command again (finished work is kept: preprocess skips finished "
                   "scans, a training run continues with --resume)"]
    assert list(tmp_path.iterdir()) == []  # the temporary files removed, nothing half-written


def test_evaluate_where_no_more_data_can_be_written_is_refused_before_scoring(tmp_path: Path, cli_in_process) -> None:
    """A run on a full disk (a full tmpfs): `evaluate` scored it (minutes for an MRI run), then stopped at its first
    file; its check of the folder made an empty file, which a full disk still allows. A file size limit refuses the
    probe's data here as a full disk does."""
    import resource

    from elr_mri.config import load_config
    from elr_mri.engine.start import train

    config = Path(__file__).resolve().parents[1] / "configs" / "digits" / "elr_sym40.yaml"
    run = tmp_path / "run"
    train(load_config(config, ["data.train_subset=200", "train.epochs=1", "train.progress=false",
                               "train.tensorboard=false"]), run)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, hard))
    try:
        result = cli_in_process("evaluate", "--run", str(run))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert result.returncode == 2 and result.stderr.startswith(
        f"elr-mri evaluate: error: [Errno 27] File too large ({run / 'eval-test'}); larger than this process may "
        "write (16 KiB: "), result.stderr
    # it ended "(finished work is kept: preprocess skips finished scans, a training run continues with --resume)"
    assert result.stderr.endswith("raise that limit, or ask for it to be raised, and run the command again\n")
    assert not (run / "eval-test").exists() and not list(run.glob(".tmp*"))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_simulate_cohort_stopped_by_the_disk_says_so_on_a_line_of_its_own(
        tmp_path: Path, capfd: pytest.CaptureFixture, jobs: str) -> None:
    """On a full disk (a 1 MB tmpfs) the one line began after the progress bar's text, on the bar's line, and the bar
    was drawn again below it. A file size limit refuses the scans here as that disk did."""
    import resource

    import elr_mri.simulate.cli as simulate

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, hard))
    try:
        status = simulate.main(["--out", str(tmp_path / "cohort"), "--subjects", "3", "--holdout-subjects", "0",
                                "--resolution", "4", "--jobs", jobs])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capfd.readouterr().err
    assert status == 2 and re.search(r"(^|\n)elr-mri simulate-cohort: error: \[Errno 27\] File too large \([^\n]*"
                                     r"_T1w\.nii\.gz\); [^\n]*\n$", err), err
    assert not (tmp_path / "cohort" / "manifest.csv").exists()


def test_torchs_file_write_failed_is_said_as_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's writer also words a refused write as "file write failed" (libtorch holds both texts); imitated."""
    failed = ("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: "
              "file write failed")
    monkeypatch.setattr(torch, "save", lambda obj, handle: (_ for _ in ()).throw(RuntimeError(failed)))
    with pytest.raises(StorageError, match=rf"^\[Errno 28\] .*last\.pt could not be written \({re.escape(failed)}; "):
        atomic_save({"step": 1}, tmp_path / "last.pt")


def test_free_room_is_said_in_mib_and_a_disk_counting_no_inodes_is_not_said_out_of_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """512 free blocks of 4 KiB are 2 MiB; btrfs reports f_files 0 and f_favail 0, which is no count, not none left."""
    import elr_mri.tensor_files as tensor_files

    real = os.statvfs(tmp_path)
    btrfs_like = os.statvfs_result((real[0], 4096, real[2], real[3], 512, 0, 0, 0, *real[8:]))
    monkeypatch.setattr(tensor_files.os, "statvfs", lambda path: btrfs_like)
    assert tensor_files._room_left(tmp_path) == "2 MiB free there"
