"""README describes every column and key a run folder's tables hold: a user opening metrics.csv or summary.json
finds each name, in backticks, where README lists that file (its row of the run-directory table, or the
Evaluation paragraph for `eval-*/`), so a column added later without a word there fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elr_mri.config import load_config
from elr_mri.engine.start import train

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
DIGITS = ROOT / "configs" / "digits" / "elr_sym40.yaml"


def _table_row(name: str) -> str:
    """The run-directory table's row of file `name`."""
    rows = [line for line in README.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"README's run-directory table has {len(rows)} rows for {name}"
    return rows[0]


def _evaluation_paragraph() -> str:
    start = README.index("- **Evaluation** writes")
    return README[start:README.index("**Suspected mislabels**", start)]


def _unnamed(names: list[str], text: str) -> list[str]:
    return [name for name in names if f"`{name}`" not in text]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits run of one epoch: the clean labels are known, so it writes every column and key of a run."""
    out = tmp_path_factory.mktemp("readme") / "run"
    train(load_config(DIGITS, ["data.train_subset=300", "train.epochs=1", "train.progress=false",
                               "train.tensorboard=false"]), out)
    return out


def test_readme_names_every_metrics_column_of_a_run(run: Path) -> None:
    columns = list(pd.read_csv(run / "metrics.csv").columns)
    assert "noisy_pred_given" in columns and "test_top5" in columns  # the clean labels' and ten classes' columns
    assert _unnamed(columns, _table_row("metrics.csv")) == []


def test_readme_names_every_summary_key_of_a_run(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    keys = [*summary, *summary["mislabels"], "warnings"]  # warnings: only when there is one to give
    test_columns = [c for c in pd.read_csv(run / "metrics.csv").columns if c.startswith("test_")]
    # each test column's pair is named once, by the rule `test_acc_at_best`, `test_acc_last`, ...
    per_column = re.compile(rf"^({'|'.join(test_columns)})_(at_best|last)$")
    assert all(per_column.match(key) for key in ("test_acc_at_best", "test_top5_last"))
    named = [per_column.sub(r"test_acc_\2", key) for key in keys]
    assert _unnamed(named, _table_row("summary.json")) == []


def test_readme_names_every_column_of_a_runs_mislabel_table(run: Path) -> None:
    """Named there in plain words (`index (position in the training split), given_label, ...`)."""
    columns = list(pd.read_csv(run / "suspected_mislabels.csv").columns)
    row = _table_row("suspected_mislabels.csv")
    assert [c for c in columns if not re.search(rf"(?<![\w`]){c}(?![\w`])|`{c}`", row)] == []


def test_readme_names_every_column_and_key_of_an_evaluation(run: Path, tmp_path: Path) -> None:
    """An image run's scoring of its test split (`evaluate --run`), and a scan-level and participant-level one."""
    from elr_mri.evaluation.evaluate import evaluate_run
    from elr_mri.evaluation.evaluation_folder import evaluation_dir, write_evaluation
    from elr_mri.evaluation.metrics import bootstrap_metrics

    evaluate_run(run, n_boot=20)
    classes = ["CN", "MCI", "AD"]
    labels = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[[0, 1, 2, 1, 1, 2]] * 0.7 + 0.1
    ids = pd.DataFrame({"participant_id": [f"p{i}" for i in range(6)], "session_id": "ses-M00"})
    reports = {level: bootstrap_metrics(labels, probs, ids["participant_id"].to_numpy(), classes, n_boot=20,
                                        level=level) for level in ("scan", "participant")}
    write_evaluation(tmp_path, reports, labels, probs, ids, classes, [], {})
    names = []
    for folder in (evaluation_dir(run, None), tmp_path):
        names += [c for name in ("metrics.csv", "confusion.csv", "reliability.csv", "predictions.csv")
                  for c in pd.read_csv(folder / name).columns]
        summary = json.loads((folder / "summary.json").read_text())
        names += [*summary, *next(v for v in summary.values() if isinstance(v, dict) and "accuracy" in v)["accuracy"]]
    named = [re.sub(r"^p_(CN|MCI|AD|\d)$", "p_<class>", name) for name in names]
    assert {"image", "scan", "participant", "checkpoint_epoch", "p_<class>"} <= set(named)
    assert _unnamed(sorted(set(named)), _evaluation_paragraph()) == []
