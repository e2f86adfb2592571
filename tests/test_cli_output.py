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


def test_an_undefined_auc_is_said_to_need_examples_of_its_class_and_of_another(capsys: pytest.CaptureFixture) -> None:
    """On a holdout of AD participants only, auc_AD is undefined because every scan is AD: the note said the set
    lacked "an AUC of a diagnosis no scan here carries", which reads as if AD were the class missing."""
    import numpy as np

    from elr_mri.commands.evaluate import _note_undefined
    from elr_mri.evaluation.metrics import bootstrap_metrics

    proba = np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    report = bootstrap_metrics(np.array([2, 2, 2]), proba, np.array(["a", "b", "c"]), ["CN", "MCI", "AD"], n_boot=10)
    _note_undefined({"scan": report})
    assert capsys.readouterr().err == (
        "note: auc_AD, auc_CN, auc_MCI, auc_macro undefined (nan; null in summary.json): the AUC of a class needs "
        "examples given it and examples given another, and auc_macro the AUC of every class; this set has examples "
        "given AD only\n")
