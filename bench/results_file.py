"""What every benchmark's results file needs: the command that made it, the machine's load, and a word on where it went.

Why: bench/results/ holds the published figures and each script's default `--out` writes there, so a
report must record the arguments it was really made with (to be reproducible), and a run must say
which file it replaced.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any

from elr_mri.atomic_files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def command_line() -> str:
    """This process's command as a shell line: `python`, the script relative to the repository, every argument."""
    return shlex.join(["python", str(repository_path(Path(sys.argv[0]))), *sys.argv[1:]])


def repository_path(path: Path) -> Path:
    """`path` relative to the repository where it lies inside it, as a report names it on any checkout; else whole."""
    path = path.resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def intra_op_threads(count: int) -> str:
    """"1 intra-op thread" or "N intra-op threads", for headers that print torch's thread count."""
    return f"{count} intra-op thread{'' if count == 1 else 's'}"


CHILD_RESULT_TAG = "CHILD RESULT "


def print_child_result(result: object) -> None:
    """Print a benchmark child's result as one tagged JSON line: torch, the profiler or inductor may print their own
    lines after it, so the parent looks for the tag rather than trusting the last line."""
    print(CHILD_RESULT_TAG + json.dumps(result), flush=True)


def read_child_result(stdout: str, what: str) -> Any:
    """The result `print_child_result` printed in `stdout`; RuntimeError naming `what` when there is none (a
    child cut short), so that a caller measuring several variants goes on with the next."""
    tagged = [line for line in stdout.splitlines() if line.startswith(CHILD_RESULT_TAG)]
    if not tagged:
        raise RuntimeError(f"its last output:\n{stdout[-3000:]}\n{what}: the child printed no result")  # reason last
    return json.loads(tagged[-1][len(CHILD_RESULT_TAG):])


def said_failed(what: str, error: Exception) -> str:
    """`error`'s type and first line, for a results file's `Failed:` line and the exit line of a benchmark that goes
    on past a failed row (the rows after it still worth measuring); its traceback to stderr, the benchmark's log."""
    traceback.print_exception(error)
    print(f"{what}: failed, left out of the table", file=sys.stderr, flush=True)
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0].rstrip() if lines else '(no message)'}"


def failures_line(script: str, failed: list[str], out: Path) -> str:
    """The one line a benchmark that went on past failed rows exits with (status 1, `failed` each "row: why"):
    bench/gpu_checks.sh flags a step by its exit status, and a `Failed:` line in the table alone reads as a run well
    ended."""
    return f"{script}: error: {len(failed)} failed (the rest are in {out}): " + "; ".join(failed)


def write_report(path: Path, text: str) -> None:
    """Write `text` to `path` (folders made) and say so: a default `--out` replaces a published figure. Written
    beside and renamed into place, since scripts rewrite it after each row: a call cut mid-write keeps the last whole
    file."""
    atomic_write_text(text, path)
    print(f"wrote {path}")


def load_line(load_start: float) -> str:
    """The 1-minute load average at the start and now, with `busy_warning`."""
    load_end = os.getloadavg()[0]
    return (f"Load average {load_start:.1f} at the start, {load_end:.1f} at the end ({os.cpu_count()} cores)."
            + busy_warning(load_start))


def busy_warning(load_start: float) -> str:
    """A warning when the load average before the benchmark started exceeds the cores: other work slows one
    run's timings more than another's, so the ratios are not to be trusted; empty otherwise. Only the start
    counts: later loads include the benchmark's own processes, which fill the cores on a quiet machine too."""
    if load_start <= (os.cpu_count() or 1):
        return ""
    return " **Busy machine: other work held the cores; rerun on a quiet one before quoting these figures.**"
