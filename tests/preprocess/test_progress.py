"""What a batch of scans writes to a log file: a plain line now and then, never tqdm's carriage returns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from preprocess.progress import LINE_EVERY_S, ScanProgress, duration


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(err: str) -> list[str]:
    return [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in err.splitlines()]


def test_a_log_gets_a_line_a_minute_and_the_last_with_failures_and_the_time_left(capsys) -> None:
    clock = FakeClock()
    with ScanProgress(5, "preprocess", clock=clock) as shown:
        for seconds, status in ((1, "skipped"), (30, "done"), (LINE_EVERY_S + 10, "failed"), (80, "done"),
                                (200, "done")):
            clock.now = seconds
            shown.finished(status)
    # the skipped scan took no time: 2 scans worked in 70 s, so the 2 left take 70 s more
    assert _lines(capsys.readouterr().err) == ["preprocess: 3/5 scans (1 already done), 1 failed; 70 s left",
                                               "preprocess: 5/5 scans (1 already done), 1 failed; all done in 3 min"]


def test_scans_all_skipped_so_far_promise_no_time(capsys) -> None:
    clock = FakeClock()
    with ScanProgress(3, "volumes", clock=clock) as shown:
        clock.now = LINE_EVERY_S
        shown.finished("skipped")
    assert _lines(capsys.readouterr().err) == ["volumes: 1/3 scans (1 already done), 0 failed; time left not known yet"]


@pytest.mark.parametrize("enabled", [True, False])
def test_no_progress_means_no_line(capsys, enabled: bool) -> None:
    with ScanProgress(2, "simulate-cohort", enabled=enabled, clock=FakeClock()) as shown:
        assert list(shown.track([("a", "done"), ("b", "skipped")])) == ["a", "b"]
    assert ("simulate-cohort: 2/2 scans" in capsys.readouterr().err) == enabled


def test_scans_failed_before_the_workers_count_as_failed_but_take_no_time(capsys) -> None:
    """preprocess fails a scan whose file is missing before any worker starts: the progress said "0 failed" where
    the summary said 1; counted as worked, such a scan would also shorten the time left."""
    clock = FakeClock()
    with ScanProgress(4, "preprocess", clock=clock) as shown:
        shown.failed_unstarted(1)
        clock.now = LINE_EVERY_S
        shown.finished("done")
    assert _lines(capsys.readouterr().err) == ["preprocess: 2/4 scans, 1 failed; 2 min left"]


@pytest.mark.parametrize(("seconds", "shown"), [(0.4, "0.4 s"), (9.94, "9.9 s"), (10, "10 s"), (52, "52 s"),
                                                (89, "89 s"), (14 * 60 + 40, "15 min"), (75 * 60, "75 min"),
                                                (89 * 60, "89 min"), (90 * 60, "1 h 30 min"),
                                                (3 * 3600 + 5 * 60, "3 h 05 min")])
def test_a_time_span_reads_in_tenths_below_10_s_then_whole_units_up_to_90_of_each(seconds: float, shown: str) -> None:
    """Tenths of a second only where they matter; seconds up to 90 s, then minutes, rounded to the nearest, up to
    90 min, then hours with the minutes in two digits, as a clock writes them."""
    assert duration(seconds) == shown


def test_the_readmes_example_line_is_one_a_batch_writes() -> None:
    """README showed '1 h 10 min left', which no batch writes: 70 min is said as '70 min' (hours from 90 min on).
    Its batch: 37 of 120 scans, 5 skipped and 2 failed, so 32 worked and 83 are left."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = re.search(r"`\d\d:\d\d:\d\d (preprocess: 37/120 scans[^`]*)`", readme)
    clock = FakeClock()
    shown = ScanProgress(120, "preprocess", enabled=False, clock=clock)
    for status in ["skipped"] * 5 + ["failed"] * 2 + ["done"] * 30:
        shown.finished(status)
    clock.now = 130 * 60 * 32 / 83  # the 32 worked scans' time for 83 more: 2 h 10 min
    assert example is not None and _lines(shown.line(clock.now)) == [example.group(1)]
