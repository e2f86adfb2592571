"""Which errors `elr-mri` says as one line: this project's, wherever a library re-raised them, and no library's own."""

from __future__ import annotations

from elr_mri.commands.problems import user_problem
from elr_mri.data.grid import ScanReadError


def wrapped(cause: BaseException, depth: int = 1) -> RuntimeError:
    """`cause` re-raised `depth` times as a RuntimeError naming only a transform, as MONAI re-raises it."""
    err: BaseException = cause
    for level in range(depth):
        outer = RuntimeError(f"applying transform <LoadScan> ({level})")
        outer.__cause__ = err
        err = outer
    return err  # type: ignore[return-value]


def test_a_library_re_raising_this_projects_error_is_said_as_that_error_at_any_depth() -> None:
    unreadable = ScanReadError("a.nii.gz: cannot be read")
    assert user_problem(wrapped(unreadable)) is unreadable
    assert user_problem(wrapped(unreadable, depth=3)) is unreadable


def test_a_librarys_own_value_error_inside_a_re_raise_stays_a_traceback() -> None:
    """A ValueError numpy or torch raised inside a transform is a bug to see, not a user's mistake to say in a line."""
    assert user_problem(wrapped(ValueError("operands could not be broadcast together"))) is None
