"""How a batch of scans (preprocess, `elr-mri volumes`, `elr-mri simulate-cohort`) shows its progress on stderr.

On a terminal, tqdm's bar. In a file or a pipe (a cluster job's log, nohup, `| tee`) the bar was carriage returns,
redrawn ten times a second on one ever longer line, and `--no-progress` left hours without a word; there a plain
line says how far the batch is, at most once a minute and when it ends. A minute, not each scan: a simulated scan
or a cached volume takes a fraction of a second, so a line each would fill the log, while the log of a job of
hours still shows that it runs, and how long it has left, whenever one looks.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["LINE_EVERY_S", "NO_PROGRESS_HELP", "ScanProgress", "duration", "stderr_is_terminal"]

LINE_EVERY_S = 60.0
NO_PROGRESS_HELP = "no progress output (in a log file or a pipe a line a minute stands for the bar)"
T = TypeVar("T")


def stderr_is_terminal() -> bool:
    """Whether stderr draws a bar: a terminal, not a file or a pipe."""
    isatty = getattr(sys.stderr, "isatty", None)  # None: stderr closed at start (`2>&-`)
    return callable(isatty) and isatty()


def duration(seconds: float) -> str:
    """A time span as a person reads it: 0.4 s, 52 s, 14 min, 3 h 05 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"


class ScanProgress:
    """Progress of `total` scans: a bar on a terminal, a line now and then elsewhere, nothing where not `enabled`.

    `finished` takes each scan's status: "skipped" ones (done by an earlier run, or cached) took no time, so the
    time left is reckoned from the others alone; a resumed batch that skipped half its scans in its first seconds
    otherwise promised to end twice as soon as it would. So did scans `failed_unstarted` (their file missing)."""

    def __init__(self, total: int, desc: str, enabled: bool = True, clock: Callable[[], float] = time.monotonic,
                 every_s: float = LINE_EVERY_S) -> None:
        self.total, self.desc, self.clock, self.every_s = total, desc, clock, every_s
        self.finished_count = self.skipped = self.failed = self.unstarted = 0
        self.started = self.last_line = clock()
        from tqdm import tqdm  # here: the CLIs read NO_PROGRESS_HELP at start, and tqdm takes 40 ms to import

        self.bar = tqdm(total=total, unit="scan", desc=desc) if enabled and stderr_is_terminal() else None
        self.lines = enabled and self.bar is None

    def __enter__(self) -> ScanProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:  # closed, its line ended, before an error's message is printed
            self.bar.close()

    def finished(self, status: str = "done") -> None:
        """Count one scan whose result has `status` ("done", "skipped" or "failed"), and show it."""
        self.finished_count += 1
        self.skipped += status == "skipped"
        self.failed += status == "failed"
        if self.bar is not None:
            self.bar.update()
            if self.failed:
                self.bar.set_postfix_str(f"{self.failed} failed")
            return
        now = self.clock()
        if self.lines and (now - self.last_line >= self.every_s or self.finished_count == self.total):
            self.last_line = now
            print(self.line(now), file=sys.stderr, flush=True)

    def failed_unstarted(self, count: int) -> None:
        """Count `count` scans that failed before any work started (their file missing): the summary counts them
        as failed, so the progress does too, though they took no time."""
        self.unstarted += count
        for _ in range(count):
            self.finished("failed")

    def track(self, results: Iterable[tuple[T, str]]) -> Iterator[T]:
        """Each of `results`, (result, status) pairs, as it comes, counted as a scan with that status."""
        for result, status in results:
            self.finished(status)
            yield result

    def line(self, now: float) -> str:
        """E.g. `14:03:52 preprocess: 37/120 scans (5 already done), 2 failed; 2 h 10 min left`."""
        already = f" ({self.skipped} already done)" if self.skipped else ""
        worked = self.finished_count - self.skipped - self.unstarted
        left = self.total - self.finished_count
        if not left:
            when = f"all done in {duration(now - self.started)}"
        elif worked:
            when = f"{duration((now - self.started) / worked * left)} left"
        else:
            when = "time left not known yet"
        return (f"{time.strftime('%H:%M:%S')} {self.desc}: {self.finished_count}/{self.total} scans{already}, "
                f"{self.failed} failed; {when}")
