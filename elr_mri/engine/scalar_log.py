"""A run's scalars as a TensorBoard event file, written in the training thread.

Why not torch's SummaryWriter: it writes from a thread of its own, so on a full disk that thread printed its
traceback and the training thread then raised "No space left on device" naming no file. Here every write's error is
raised where it happened, naming the event file.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path
from typing import Callable, TypeVar

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

__all__ = ["ScalarLog"]

T = TypeVar("T")
_WRITERS = itertools.count()  # two logs opened by one process in one second get apart names


class ScalarLog:
    """Scalars against their epoch in a new event file in `folder`. Points an earlier attempt logged from
    `purge_from` on are dropped by TensorBoard when it reads this file (a restart marker), as SummaryWriter's
    `purge_step` does."""

    def __init__(self, folder: Path, purge_from: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # TensorBoard reads a folder's event files in the order of their names: the time first
        self.path = folder / (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                              f"{next(_WRITERS)}.elr-mri")
        self._records = RecordWriter(self._named(lambda: open(self.path, "xb")))
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        self._write(Event(wall_time=time.time(), step=purge_from, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def add(self, values: dict[str, float], step: int) -> None:
        """One point per tag at `step`, in one record."""
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()])
        self._write(Event(wall_time=time.time(), step=step, summary=summary))

    def flush(self) -> None:
        self._named(self._records.flush)

    def close(self) -> None:
        self._named(self._records.close)

    def _write(self, event: Event) -> None:
        self._named(lambda: self._records.write(event.SerializeToString()))

    def _named(self, action: Callable[[], T]) -> T:
        """`action()`, an OS error from it naming the event file: a write's or a flush's names none."""
        try:
            return action()
        except OSError as err:
            if err.filename is None:
                err.filename = str(self.path)
            raise
