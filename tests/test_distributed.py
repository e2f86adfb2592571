"""Data-parallel training keeps ELR exact: 2 gloo processes on the CPU match 1 process."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import torch

from elr_mri.config import load_config
from elr_mri.data import build_data
from elr_mri.distributed import DistContext, GlobalBatchSampler, lost_another_process, part_rank_streams
from elr_mri.engine.checkpoint import load_checkpoint
from elr_mri.engine.execution import ExecutionPlan
from elr_mri.engine.feeding import BatchFeeder
from elr_mri.engine.methods import build_method
from elr_mri.engine.runner import evaluate_split
from elr_mri.engine.start import train

ROOT = Path(__file__).parents[1]
DIGITS = ROOT / "configs" / "digits" / "elr_sym40.yaml"
CPU = torch.device("cpu")
OVERRIDES = ["data.train_subset=600", "train.epochs=3", "train.batch_size=64", "train.progress=false",
             "train.tensorboard=false", "model.hidden=64"]
UNEVEN = ("train.batch_size=63", "train.checkpoint_seconds=0")  # 2 ranks: slices of 32 and 31


def _train(out: Path, processes: int, loss: str, *extra: str, resume: bool = False) -> None:
    """Train in `processes` gloo processes started by torchrun, or in this one (as `elr-mri train` does)."""
    overrides = [*OVERRIDES, f"loss.name={loss}", *extra]
    if processes == 1:  # a subprocess would only add seconds of imports
        train(load_config(out / "config.yaml" if resume else DIGITS, overrides), out, resume=resume)
        return
    sets = [a for s in overrides for a in ("--set", s)]
    source = ["--resume", str(out)] if resume else ["--config", str(DIGITS), "--out", str(out)]
    _torchrun(processes, ["-m", "elr_mri.cli", "train", *source, *sets], out.parent)


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`_train`'s run for (processes, loss, settings), trained once for every test of this file that asks for it:
    most of a torchrun test's seconds are its launch, and several compare with the same run. Tests only read what it
    returns; one that goes on from it resumes a copy."""
    runs: dict[tuple[str, ...], Path] = {}

    def run(processes: int, loss: str, *extra: str) -> Path:
        key = (str(processes), loss, *extra)
        if key not in runs:
            runs[key] = tmp_path_factory.mktemp(f"{loss}-{processes}") / "run"
            _train(runs[key], processes, loss, *extra)
        return runs[key]

    return run


def _copy(run: Path, to: Path) -> Path:
    """A copy of a shared run, for a test that trains it on."""
    shutil.copytree(run, to)
    return to


def _torchrun(processes: int, command: list[str], tmp: Path) -> subprocess.CompletedProcess:
    """A gloo job of `processes` ranks; torch's elastic agent leaves a folder per job in TMPDIR, so it gets the test's."""
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                             "--standalone", *command], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "TMPDIR": str(tmp)})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("loss", ["elr", "ce"])
def test_two_processes_match_one(shared_run: Callable[..., Path], loss: str) -> None:
    runs = {"one": shared_run(1, loss), "two": shared_run(2, loss)}
    one = pd.read_csv(runs["one"] / "metrics.csv")
    two = pd.read_csv(runs["two"] / "metrics.csv")
    pd.testing.assert_series_equal(one["val_acc"], two["val_acc"])
    pd.testing.assert_series_equal(one["test_acc"], two["test_acc"])
    pd.testing.assert_series_equal(one["train_loss"], two["train_loss"], rtol=1e-5)  # the global batch's, not rank 0's
    a = load_checkpoint(runs["one"] / "checkpoints" / "last.pt")["method"]
    b = load_checkpoint(runs["two"] / "checkpoints" / "last.pt")["method"]
    for name, weight in a["model"].items():
        torch.testing.assert_close(weight, b["model"][name], rtol=1e-4, atol=1e-5)
    if loss == "elr":  # every example's target updated once per visit, whichever rank saw it
        torch.testing.assert_close(a["loss"]["targets"], b["loss"]["targets"], rtol=1e-4, atol=1e-5)
        assert (a["loss"]["targets"].sum(dim=1) > 0).all()
    ranks = load_checkpoint(runs["two"] / "checkpoints" / "last.pt")["rng_by_rank"]
    assert not torch.equal(ranks[0]["torch"], ranks[1]["torch"])  # each rank its own dropout masks and pairings
    summaries = [json.loads((runs[run] / "summary.json").read_text()) for run in ("one", "two")]
    assert [(summary["processes"], summary["device"]) for summary in summaries] == [(1, "cpu"), (2, "cpu")]


@pytest.mark.slow
def test_two_processes_with_elr_compiled_into_the_graph_match_one_eager(shared_run: Callable[..., Path],
                                                                       tmp_path: Path) -> None:
    """`train.compile_step` under torchrun: each rank blends its own rows in the graph, the rows are gathered after."""
    _train(tmp_path / "two", 2, "elr", "train.compile=true", "train.compile_step=true")
    runs = (shared_run(1, "elr"), tmp_path / "two")
    one, two = (pd.read_csv(run / "metrics.csv") for run in runs)
    pd.testing.assert_series_equal(one["train_loss"], two["train_loss"], rtol=1e-4)
    a, b = (load_checkpoint(run / "checkpoints" / "last.pt")["method"] for run in runs)
    torch.testing.assert_close(a["loss"]["targets"], b["loss"]["targets"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("alternation", ["step", "epoch"])
def test_elr_plus_two_streams_under_two_processes_match_one(tmp_path: Path, alternation: str) -> None:
    """Each network's own batch stream is sliced across ranks as the first is; without mixup (whose pairs are
    drawn within each rank's slice) 2 processes give 1 process's networks, EMA copies and targets, whether the
    networks take turns by step or by epoch."""
    extra = ("elr_plus.mixup_alpha=0", "elr_plus.ema_ramp_steps=50", "train.epochs=2",
             f"elr_plus.alternation={alternation}")
    _train(tmp_path / "one", 1, "elr_plus", *extra)
    _train(tmp_path / "two", 2, "elr_plus", *extra)
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")["method"]
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["method"]
    for part in ("nets", "emas", "losses"):
        for ours, theirs in zip(a[part], b[part]):
            for name, value in ours.items():
                torch.testing.assert_close(value, theirs[name], rtol=1e-4, atol=1e-5)
    assert all((loss["targets"].sum(dim=1) > 0).all() for loss in a["losses"])  # every example seen by each net


@pytest.mark.parametrize("loader", ["device", "dataloader"])
def test_each_rank_scores_its_own_run_of_the_one_process_batches(loader: str) -> None:
    """Every rank scored the whole validation and test splits each epoch, for rank 0's figures alone. Now each takes
    a run of the batches one process scores (the same batches, so the same predictions), in the split's order."""
    cfg = load_config(DIGITS, [*OVERRIDES, "train.eval_batch_size=16", f"train.loader={loader}"])
    data = build_data(cfg.data)
    for split, dataset in (("val", data.val), ("test", data.test)):
        alone = [batch["index"].tolist() for batch in BatchFeeder(data, cfg, DistContext(), CPU).evaluation(split)]
        for world in (2, 3, len(alone) + 1):
            shares = [[batch["index"].tolist() for batch in BatchFeeder(
                data, cfg, DistContext(rank, world), CPU).evaluation(split)] for rank in range(world)]
            assert sum(shares, []) == alone and len(alone[0]) == 16 and len(sum(alone, [])) == len(dataset)
            assert max(map(len, shares)) == -(-len(alone) // world)  # as even as whole batches allow


def test_with_batchnorm_two_processes_score_the_weights_rank_0_keeps(tmp_path: Path) -> None:
    """Ranks score parts of each split, so they must score with one network: DDP leaves each rank's BatchNorm
    statistics as its own last slice moved them, and rank 0's are the ones last.pt keeps. Its metrics equal one
    process scoring last.pt (slices of 2 move the statistics apart enough to change a test prediction)."""
    extra = ("model.name=small_cnn", "train.eval_batch_size=16", "train.epochs=1", "train.batch_size=4")
    _train(tmp_path / "two", 2, "ce", *extra)
    cfg = load_config(tmp_path / "two" / "config.yaml")
    data = build_data(cfg.data)
    plan = ExecutionPlan.from_config(cfg.train, CPU)
    method = build_method(cfg, data.input_shape, data.num_classes, len(data.train), plan)
    method.load_state_dict(load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["method"])
    feeder = BatchFeeder(data, cfg, DistContext(), CPU)
    last = pd.read_csv(tmp_path / "two" / "metrics.csv").iloc[-1]
    val, test = (evaluate_split(method, feeder.evaluation(split)) for split in ("val", "test"))
    assert (last["val_acc"], last["val_balanced_acc"], last["test_acc"]) == (val.accuracy, val.balanced_accuracy,
                                                                               test.accuracy)


def test_resume_under_another_number_of_processes(shared_run: Callable[..., Path], tmp_path: Path) -> None:
    """2 processes for 3 epochs, then 1 process to epoch 4: the same as 4 epochs in 1 process."""
    _train(tmp_path / "one", 1, "elr", "train.epochs=4")
    _train(_copy(shared_run(2, "elr"), tmp_path / "mixed"), 1, "elr", "train.epochs=4", resume=True)
    one = pd.read_csv(tmp_path / "one" / "metrics.csv")
    mixed = pd.read_csv(tmp_path / "mixed" / "metrics.csv")
    pd.testing.assert_series_equal(one["test_acc"], mixed["test_acc"])
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")["method"]
    b = load_checkpoint(tmp_path / "mixed" / "checkpoints" / "last.pt")["method"]
    torch.testing.assert_close(a["loss"]["targets"], b["loss"]["targets"], rtol=1e-4, atol=1e-5)
    for name, weight in a["model"].items():
        torch.testing.assert_close(weight, b["model"][name], rtol=1e-4, atol=1e-5)


def test_elr_plus_with_mixup_resumes_exactly_when_slices_are_uneven(shared_run: Callable[..., Path],
                                                                   tmp_path: Path) -> None:
    """Slices of 32 and 31 draw mixup pairings of unequal length, so the ranks' generators part ways; the checkpoint
    keeps each rank's (it kept rank 0's for all, and the resumed run's rank 1 drew other pairs)."""
    _train(tmp_path / "straight", 2, "elr_plus", *UNEVEN, "train.epochs=2")
    resumed = _copy(shared_run(2, "elr_plus", *UNEVEN, "train.epochs=1"), tmp_path / "resumed")
    _train(resumed, 2, "elr_plus", *UNEVEN, "train.epochs=2", resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["method"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["method"]
    for part in ("nets", "losses"):
        for ours, theirs in zip(a[part], b[part]):
            for name, value in ours.items():
                torch.testing.assert_close(value, theirs[name], rtol=0, atol=0)


def test_a_run_restarted_before_its_first_checkpoint_parts_the_ranks_streams_as_a_new_one(
        shared_run: Callable[..., Path], tmp_path: Path) -> None:
    extra = (*UNEVEN, "train.epochs=1")  # the mixup test's first epoch, shared: one launch fewer
    fresh = shared_run(2, "elr_plus", *extra)
    killed = tmp_path / "killed"  # what a run stopped before its first checkpoint leaves
    (killed / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "data_shape.json"):
        shutil.copy(fresh / name, killed / name)
    _train(killed, 2, "elr_plus", *extra, resume=True)
    a, b = (load_checkpoint(run / "checkpoints" / "last.pt") for run in (fresh, killed))
    assert not torch.equal(b["rng_by_rank"][0]["torch"], b["rng_by_rank"][1]["torch"])
    for ours, theirs in zip(a["method"]["nets"], b["method"]["nets"]):
        for name, value in ours.items():
            torch.testing.assert_close(value, theirs[name], rtol=0, atol=0)


def test_torchrun_into_a_run_folder_already_taken_stops_every_rank_with_one_line(shared_run: Callable[..., Path],
                                                                                 tmp_path: Path) -> None:
    """Rank 0 alone checks the folder: the other ranks trained on until their first collective and died there with
    a traceback of the connection rank 0 had closed."""
    run = shared_run(1, "ce")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m",
               "elr_mri.cli", "train", "--config", str(DIGITS), "--out", str(run),
               *[a for s in OVERRIDES for a in ("--set", s)]]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode != 0
    assert f"elr-mri train: error: {run} already holds a run; continue it with --resume" in result.stderr
    assert "Connection closed" not in result.stderr and "gloo" not in result.stderr.lower()


def test_ranks_after_the_first_part_from_its_stream_and_rank_0_keeps_a_plain_runs() -> None:
    def draws(rank: int, epoch: int = 0) -> torch.Tensor:
        torch.manual_seed(7)
        part_rank_streams(7, epoch, DistContext(rank=rank, world_size=3))
        return torch.rand(5)

    torch.manual_seed(7)
    plain = torch.rand(5)
    assert torch.equal(draws(0), plain) and torch.equal(draws(0, epoch=4), plain)  # rank 0 at any epoch
    streams = [plain, draws(1), draws(2), draws(1, epoch=4)]
    assert not any(torch.equal(a, b) for a, b in itertools.combinations(streams, 2))
    assert torch.equal(draws(2), streams[2])  # reproducible: a rerun draws the same


def test_global_batches_are_split_between_ranks_without_overlap() -> None:
    def slices(rank: int, world: int, n: int = 103) -> list[list[int]]:
        sampler = GlobalBatchSampler(n, 10, torch.Generator().manual_seed(5), rank, world)
        assert len(sampler) == len(list(sampler)) == len(sampler.global_batch_sizes())
        assert [part.tolist() for part in sampler.parts_on("cpu")] == list(sampler)  # the device-resident path's
        return list(sampler)

    def global_sizes(world: int, n: int = 103) -> list[int]:
        return GlobalBatchSampler(n, 10, torch.Generator().manual_seed(5), 0, world).global_batch_sizes()

    def positions(rank: int, world: int, n: int = 103) -> list[tuple[int, int]]:
        return GlobalBatchSampler(n, 10, torch.Generator().manual_seed(5), rank, world).slice_positions()

    single = slices(0, 1)
    for world in (2, 3):
        per_rank = [slices(r, world) for r in range(world)]
        assert all(len(batches) == len(single) for batches in per_rank)
        for step, batch in enumerate(single):
            assert sorted(sum((per_rank[r][step] for r in range(world)), [])) == sorted(batch)
            assert global_sizes(world)[step] == len(batch)  # what DDP's loss weighting divides by
            for rank in range(world):  # where the device path finds this slice's crops among the global batch's
                size, start = positions(rank, world)[step]
                assert size == len(batch) and batch[start : start + len(per_rank[rank][step])] == per_rank[rank][step]
    assert [len(slices(rank, 4, n=9)[0]) for rank in range(4)] == [3, 2, 2, 2]  # every rank gets some of each batch
    # a 1-example tail cannot be shared by 2 ranks (both must step together): it joins the batch before it
    assert sorted(sum(slices(0, 2, n=101) + slices(1, 2, n=101), [])) == list(range(101))
    assert global_sizes(2, n=101) == [10] * 9 + [11]
    assert [size for size, _ in positions(1, 2, n=101)][-1] == 11 and len(slices(1, 2, n=101)[-1]) == 5


@pytest.fixture(scope="module")
def gathering_job(tmp_path_factory: pytest.TempPathFactory, host_read_ops: set[str]) -> str:
    """stderr of one gloo job of 2 ranks that gathers rows both ways, then profiles training steps for host reads
    (what the two tests below check): one torchrun launch, most of each one's seconds, for both."""
    tmp = tmp_path_factory.mktemp("gathering")
    script = tmp / "gathering.py"
    script.write_text(textwrap.dedent("""
        import sys
        import torch
        from torch.profiler import ProfilerActivity, profile
        from elr_mri.config import load_config
        from elr_mri.distributed import gather_rows, init_distributed, leave_distributed, slice_bounds
        from elr_mri.engine.execution import ExecutionPlan
        from elr_mri.engine.methods import build_method
        from elr_mri.engine.tracking import PredictionTracker

        dist = init_distributed("cpu")
        start, stop = slice_bounds(7, dist.rank, dist.world_size)
        index = torch.arange(start, stop)
        rows = torch.arange(7 * 3, dtype=torch.float32).reshape(7, 3)[start:stop]
        exchanged = gather_rows(index, rows)
        told = gather_rows(index, rows, global_size=7)
        assert all(torch.equal(a, b) for a, b in zip(exchanged, told)), (exchanged, told)
        assert torch.equal(told[0], torch.arange(7))
        if dist.rank == 1:  # checked before any collective, so rank 0's slice, right for 8 too, is not gathered
            try:
                gather_rows(index, rows, global_size=8)
            except ValueError as error:
                print(f"rank {dist.rank}: {error}", file=sys.stderr)
    """) + textwrap.dedent(f"""
        start, stop = slice_bounds(9, dist.rank, dist.world_size)

        def batch(seed, **marks):
            generator = torch.Generator().manual_seed(seed)
            rows = {{"image": torch.rand(9, 1, 8, 8, generator=generator),
                    "label": torch.randint(0, 10, (9,), generator=generator),
                    "index": torch.randperm(64, generator=generator)[:9]}}
            return {{**{{key: value[start:stop] for key, value in rows.items()}}, "global_batch_size": 9, **marks}}

        for loss, extra in (("elr", []), ("elr_plus", []), ("elr_plus", ["elr_plus.alternation=epoch"])):
            cfg = load_config({str(DIGITS)!r}, [f"loss.name={{loss}}", "model.name=small_cnn", "model.hidden=8",
                                                 "train.compile=false", *extra])
            plan = ExecutionPlan.from_config(cfg.train, torch.device("cpu"))
            method = build_method(cfg, (1, 8, 8), 10, 64, plan, dist)
            tracker = PredictionTracker(64, 10, torch.device("cpu"))
            in_turn = bool(extra)
            batches = [batch(seed, **({{"network": seed % 2}} if in_turn else {{"pair": batch(seed + 100)}}))
                       for seed in range(4)]
            for warm_up in batches[:2]:
                method.train_step(warm_up)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for step in batches[2:]:
                    _, logits = method.train_step(step)
                    if logits is not None:
                        tracker.record(*gather_rows(step["index"], logits, global_size=step["global_batch_size"]))
            reads = {sorted(host_read_ops)!r}
            seen = sorted(set(reads) & {{event.key for event in prof.key_averages()}})
            print(f"rank {{dist.rank}} {{loss}} {{extra}}: host reads {{seen}}", file=sys.stderr)
        del method
        leave_distributed()
    """))
    return _torchrun(2, [str(script)], tmp).stderr


def test_under_torchrun_a_training_step_reads_nothing_back_to_the_host(gathering_job: str) -> None:
    """Gathering the ranks' rows for ELR's targets and the tracking took each step's slice lengths from an
    all-gather read back to the host (two waits a step for ELR, three for ELR+); each batch's global size now
    gives them. Uneven slices (9 rows: 5 and 4) under 2 gloo ranks, seen by the CPU profiler as in
    `test_training_step`."""
    said = re.findall(r"host reads \[[^]]*\]", gathering_job)  # the ranks' lines may interleave
    assert said == ["host reads []"] * 6, gathering_job[-3000:]


def test_rows_gathered_with_the_global_batch_size_equal_the_exchanged_ones(gathering_job: str) -> None:
    """Both ways of learning the slices' lengths gather the same rows in rank order; a slice that is not the
    sampler's for that global size is refused, not gathered into the wrong rows."""
    assert "rank 1: rank 1 holds 3 rows of a global batch of 8, but GlobalBatchSampler gives it 4" in gathering_job


def test_no_ddp_wrapper_outlives_training(tmp_path: Path) -> None:
    """A DDP wrapper left for Python to free at interpreter shutdown aborted a rank that had finished ("terminate
    called without an active exception", SIGABRT; seen in CI). Training must leave none alive even when the cyclic
    collector has not run since: the run's method held it past `train()`, and torch.compile's wrapper holds it in
    reference cycles of its own (compiled here, which needs both the method to drop it and the collection)."""
    script = tmp_path / "count_wrappers.py"
    script.write_text(textwrap.dedent(f"""
        import gc, os, sys
        from pathlib import Path
        gc.disable()  # as if no automatic collection happened between the last epoch and the exit
        from torch.nn.parallel import DistributedDataParallel
        from elr_mri.config import load_config
        from elr_mri.engine.start import train
        train(load_config(Path({str(DIGITS)!r}), {[*OVERRIDES, "train.epochs=1", "train.compile=true"]!r}),
              Path({str(tmp_path)!r}) / "run")
        alive = sum(type(o) is DistributedDataParallel for o in gc.get_objects())  # isinstance trips on dead proxies
        print(f"rank {{os.environ['RANK']}}: {{alive}} alive", file=sys.stderr)
    """))
    result = _torchrun(2, [str(script)], tmp_path)
    assert "rank 0: 0 alive" in result.stderr and "rank 1: 0 alive" in result.stderr, result.stderr[-3000:]


def test_under_torchrun_rank_0_alone_says_ctrl_c_and_the_resume_hint_keeps_the_launcher(
        shared_run: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Every rank printed the same Ctrl-C line, whose hint resumed in one process, K times slower.
    The ranks are stood for by torchrun's environment; Ctrl-C is raised by hand."""
    from elr_mri import cli

    run = shared_run(1, "ce")

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    for rank, said in (("1", ""), ("0", f"elr-mri train: interrupted; continue from the last checkpoint with the same "
                                        f"torchrun launch and: train --resume {run}\n")):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", rank)
        with monkeypatch.context() as stopped:
            stopped.setattr(cli, "train_command", interrupted)
            assert cli.main(["train", "--resume", str(run)]) == 130
        assert capsys.readouterr().err == said
        # an error may be one rank's or one machine's alone (here: no torchrun around to join), so every rank says it
        assert cli.main(["train", "--config", str(DIGITS), "--out", str(tmp_path / "new")]) == 2
        assert capsys.readouterr().err.startswith("elr-mri train: error: ")


@pytest.mark.slow
def test_a_rank_killed_mid_run_stops_the_others_with_one_line_and_the_way_on(tmp_path: Path) -> None:
    """Rank 1 killed once the first checkpoint is written (as the out-of-memory killer would): rank 0's next
    collective failed and it printed a traceback of gloo's "Connection reset by peer" through the engine. It says in
    one line that another process stopped and how to resume. torchrun watches its workers every 2 s here, so its
    SIGTERM to rank 0 comes after rank 0's collective has failed, not before (a SIGTERM gets SIGTERM's line)."""
    run = tmp_path / "run"
    script = tmp_path / "killed_rank.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys, threading, time
        from pathlib import Path
        from elr_mri import cli

        last = Path({str(run)!r}) / "checkpoints" / "last.pt"

        def kill_at_first_checkpoint():
            while not last.exists():
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGKILL)

        if os.environ["RANK"] == "1":
            threading.Thread(target=kill_at_first_checkpoint, daemon=True).start()
        sys.exit(cli.main(["train", "--config", {str(DIGITS)!r}, "--out", str(last.parents[1]),
                           *{[a for s in [*OVERRIDES, "train.epochs=100", "train.checkpoint_seconds=0"]
                              for a in ("--set", s)]!r}]))
    """))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                             "--monitor-interval", "2", str(script)], capture_output=True, text=True, cwd=ROOT,
                            timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode != 0
    said = [line for line in result.stderr.splitlines() if line.startswith("elr-mri train:")]
    assert said == [f"elr-mri train: error: another process of this torchrun job stopped (its own error is above, or "
                    "torchrun's report below names the signal that killed it), so this one could not go on; continue "
                    f"from the last checkpoint with the same torchrun launch and: train --resume {run}"], \
        result.stderr[-3000:]
    assert "by peer" not in result.stderr and str(ROOT / "elr_mri") not in result.stderr  # no traceback of ours
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] >= 1  # what the line says to resume from


@pytest.mark.slow
def test_a_rank_failing_before_it_joins_does_not_leave_the_others_waiting_for_torchruns_sigkill(tmp_path: Path) -> None:
    """Rank 1's config is missing on its node: it says so and exits. Rank 0, waiting in init_process_group for it,
    got torchrun's SIGTERM, which training's handler only recorded, and sat there until torchrun's SIGKILL 30 s
    later ("Unable to shutdown process ... via 15, forcefully exiting via 9")."""
    script = tmp_path / "missing_on_one_node.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        from elr_mri import cli

        config = {str(DIGITS)!r} if os.environ["RANK"] == "0" else {str(tmp_path / "elsewhere.yaml")!r}
        sys.exit(cli.main(["train", "--config", config, "--out", {str(tmp_path / "run")!r}]))
    """))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                             str(script)], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode != 0
    said = [line for line in result.stderr.splitlines() if line.startswith("elr-mri train:")]
    missing = (f"elr-mri train: error: config file not found: {tmp_path / 'elsewhere.yaml'} (pass an existing YAML "
               "file to --config)")
    # rank 0 says it was stopped where torchrun's SIGTERM came before it reached the join (still importing torch on a
    # loaded machine): the signal is then acted on at training's start, not left for torchrun's SIGKILL
    assert missing in said and all(line == missing or line.startswith("elr-mri train: stopped by SIGTERM")
                                   for line in said), result.stderr[-3000:]
    assert "forcefully exiting via 9" not in result.stderr, result.stderr[-3000:]


def test_only_gloos_transport_saying_the_peer_went_is_another_process_lost() -> None:
    """What gloo says (torch 2.13) when the rank at the other end exited or was killed; a socket of this process's
    own (a DataLoader worker's) raises ConnectionResetError, and a collective that failed otherwise is not it."""
    closed = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
                          "[10.0.0.2]:41")
    reset = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [10.0.0.2]:41: Connection "
                         "reset by peer")
    assert lost_another_process(closed) and lost_another_process(reset)
    assert not lost_another_process(ConnectionResetError(104, "Connection reset by peer"))
    assert not lost_another_process(RuntimeError("Connection reset by peer"))  # not gloo's transport
    assert not lost_another_process(RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:446] Timed out"))


def test_a_global_batch_of_one_example_a_process_is_allowed_and_a_smaller_one_refused() -> None:
    """Each rank needs an example of every batch, which a batch as large as the number of processes gives."""
    ranks = [list(GlobalBatchSampler(4, 2, torch.Generator().manual_seed(0), rank, 2)) for rank in range(2)]
    assert [[len(part) for part in parts] for parts in ranks] == [[1, 1], [1, 1]]
    assert sorted(sum(ranks[0] + ranks[1], [])) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"train.batch_size \(1\) is the global batch; it must be at least the number "
                                         r"of processes \(2\)"):
        GlobalBatchSampler(4, 1, torch.Generator(), 0, 2)
