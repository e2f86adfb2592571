"""What `elr-mri` prints beside its commands' own output."""

from __future__ import annotations

import pytest


def test_warnings_the_library_logs_print_as_the_commands_own_with_one_handler(capsys: pytest.CaptureFixture) -> None:
    """Logged warnings (a manifest's dropped rows, a test split without a class) printed bare, unlike the
    `warning: ...` lines the commands print; `main` gives them that form, once however often it runs."""
    from elr_mri import cli
    from elr_mri.data.cohort import warn_once

    for _ in range(2):
        with pytest.raises(SystemExit):
            cli.main(["--version"])
    capsys.readouterr()
    warn_once("a test's manifest: a warning logged while a command runs")
    assert capsys.readouterr().err == "warning: a test's manifest: a warning logged while a command runs\n"
