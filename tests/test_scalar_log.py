"""The run's TensorBoard event file, read back by TensorBoard's own reader."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from elr_mri.engine.scalar_log import ScalarLog


def _an_hour_earlier(path: Path) -> None:
    """Name an event file as an earlier process's: TensorBoard reads a folder's files in the order of their names,
    the time first."""
    prefix = "events.out.tfevents."
    stamp, rest = path.name.removeprefix(prefix).split(".", 1)
    path.rename(path.with_name(f"{prefix}{int(stamp) - 3600:010d}.{rest}"))


def test_a_restarted_log_drops_the_killed_attempts_points_from_purge_from_on(tmp_path: Path) -> None:
    """Killed after logging epochs 1 to 3 but checkpointed after epoch 2, a run trains epoch 3 again: TensorBoard
    keeps the points before it and draws epoch 3 once, the new one."""
    killed = ScalarLog(tmp_path, purge_from=1)
    for epoch in (1, 2, 3):
        killed.add({"val_acc": -1.0}, epoch)
    killed.close()
    _an_hour_earlier(killed.path)
    resumed = ScalarLog(tmp_path, purge_from=3)
    resumed.add({"val_acc": 0.5}, 3)
    resumed.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(point.step, point.value) for point in events.Scalars("val_acc")] == [(1, -1.0), (2, -1.0), (3, 0.5)]


def test_two_logs_opened_by_one_process_at_once_get_files_of_their_own(tmp_path: Path) -> None:
    """Names hold the time in seconds and the process id: two logs one process opens in one second need more to
    keep apart, or the second could not be created."""
    first, second = ScalarLog(tmp_path, purge_from=1), ScalarLog(tmp_path, purge_from=1)
    first.close()
    second.close()
    assert first.path != second.path and len(list(tmp_path.iterdir())) == 2
