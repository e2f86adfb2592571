"""The scripts under scripts/ given a user's mistake: one line naming it, not a traceback, and before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest


def test_a_devkit_meta_mat_cut_short_is_named_not_a_scipy_traceback(
        tmp_path: Path, import_script: Callable[[str], ModuleType]) -> None:
    """A meta.mat cut short (a download stopped part way) raised scipy's MatReadError, which is no ValueError, so the
    script ended with a traceback instead of saying which file to extract again."""
    from scipy.io import savemat

    (tmp_path / "webvision" / "info").mkdir(parents=True)
    (tmp_path / "webvision" / "info" / "synsets.txt").write_text("".join(f"n{k:08d} class{k}\n" for k in range(50)))
    data = tmp_path / "devkit" / "data"
    data.mkdir(parents=True)
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n")
    savemat(data / "meta.mat", {"synsets": [[1, 2], [3, 4]]})
    (data / "meta.mat").write_bytes((data / "meta.mat").read_bytes()[:10])
    lister = import_script("webvision_ilsvrc12_list")
    with pytest.raises(ValueError, match=r"meta.mat: not the devkit's synset table \(MatReadError: .*\); extract "
                                         r"ILSVRC2012_devkit_t12.tar.gz again$"):
        lister.main(["--imagenet-val", str(tmp_path), "--devkit", str(tmp_path / "devkit"),
                     "--webvision", str(tmp_path / "webvision")])


@pytest.mark.parametrize("script, flags", [
    ("reproduce_paper_table", ["--table", "1", "--rows", "cifar10-sym20", "--out", "{file}"]),
    ("cifar10n_cpu", ["--out", "{file}", "--human-labels", "{folder}/absent.npz"]),
    ("cifar10n_cpu", ["--results", "{folder}", "--human-labels", "{folder}/absent.npz"]),
    ("digits_benchmark", ["--out", "{file}"]),
    ("digits_benchmark", ["--results", "{folder}", "--out", "{folder}/runs", "--epochs", "1", "--seeds", "1",
                          "--settings", "sym40", "--losses", "ce"]),
    ("mri_n1200", ["--work", "{file}", "cohort"]),
])
def test_an_output_folder_that_is_a_file_or_a_report_that_is_a_folder_is_refused_before_any_run(
        script: str, flags: list[str], tmp_path: Path, import_script: Callable[[str], ModuleType], capsys,
        monkeypatch) -> None:
    """An --out naming a file failed every run under it with "Not a directory", one after the other (the table then
    said the same command would continue them); a --results naming a folder was refused only once every run had
    trained."""
    (tmp_path / "notes.txt").write_text("mine\n")
    argv = [flag.format(file=tmp_path / "notes.txt", folder=tmp_path) for flag in flags]
    monkeypatch.setattr("sys.argv", [f"{script}.py", *argv])
    with pytest.raises(SystemExit) as stopped:
        import_script(script).main()
    error = capsys.readouterr().err.splitlines()[-1]
    assert stopped.value.code == 2 and error.endswith(
        f"{tmp_path / 'notes.txt'} is a file; pass a folder (a new one is made)" if "{file}" in flags else
        f"{tmp_path} is a folder; pass the report's file name, e.g. {tmp_path / 'results.md'}")
    assert (tmp_path / "notes.txt").read_text() == "mine\n" and sorted(tmp_path.iterdir()) == [tmp_path / "notes.txt"]


@pytest.mark.parametrize("script, argv, told", [
    ("mri_n1200", ["--help"], ["python scripts/mri_n1200.py assemble", "(default: runs/n1200 in the project)"]),
    ("reproduce_paper_table", ["--help"], ["noise and split; default 1)"]),
])
def test_help_says_the_steps_and_the_defaults(script: str, argv: list[str], told: list[str],
                                              import_script: Callable[[str], ModuleType], capsys) -> None:
    """mri_n1200.py's --help listed its five steps without their order (`assemble` needs `cohort`, `train` needs
    `assemble`) or where --work is; reproduce_paper_table.py's gave no default number of seeds."""
    with pytest.raises(SystemExit) as stopped:
        import_script(script).main(argv)
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the option help
    assert stopped.value.code == 0 and all(" ".join(text.split()) in shown for text in told), shown


def test_an_imagenet_val_folder_that_is_not_there_is_said_to_be_missing(
        tmp_path: Path, import_script: Callable[[str], ModuleType]) -> None:
    """A mistyped --imagenet-val was told "no folder for 50 of the 50 classes", as if it held the wrong synsets."""
    (tmp_path / "webvision" / "info").mkdir(parents=True)
    (tmp_path / "webvision" / "info" / "synsets.txt").write_text("".join(f"n{k:08d} class{k}\n" for k in range(50)))
    for given in (tmp_path / "vall", tmp_path / "webvision" / "info" / "synsets.txt"):
        with pytest.raises(FileNotFoundError, match=rf"^--imagenet-val {given}: no such folder; pass the folder of "
                                                    r"ImageNet's validation images$"):
            import_script("webvision_ilsvrc12_list").main(["--imagenet-val", str(given),
                                                           "--webvision", str(tmp_path / "webvision")])
    assert not (tmp_path / "webvision" / "imagenet").exists()


@pytest.mark.parametrize("script, flags", [
    ("reproduce_paper_table", ["--table", "1", "--seeds", "3", "--set", "seed=1"]),
    ("reproduce_paper_table", ["--table", "1", "--seeds", "2", "--set", "data.split_seed=4"]),
    ("cifar10n_cpu", ["--seeds", "2", "--set", "seed=1"]),
])
def test_a_seed_set_for_every_seed_is_refused(script: str, flags: list[str], import_script: Callable[[str], ModuleType],
                                              capsys) -> None:
    """`--seeds 3 --set seed=1` gave the three seeds' runs one model seed (the row's --set comes after the seed's),
    and the table's mean ± std over seeds then came from runs that shared it. With one seed it picks that seed."""
    module = import_script(script)
    with pytest.raises(SystemExit) as stopped:
        module._parse(flags)
    fixed, seeds = flags[-1], flags[flags.index("--seeds") + 1]
    assert stopped.value.code == 2 and (f"error: --set {fixed} would give all {seeds} seeds' runs that seed; --seeds N "
                                        "sets seeds 0..N-1 (") in capsys.readouterr().err
    one_seed = [flag if flag != seeds else "1" for flag in flags]
    assert module._parse(one_seed).overrides == [fixed]


def test_cifar10n_cpu_data_root_may_be_the_folder_holding_cifar10(tmp_path: Path,
                                                                  import_script: Callable[[str], ModuleType]) -> None:
    """reproduce_paper_table.py's --data-root is the folder holding cifar10/; given here, the same folder stopped the
    runs at "image folder not found" once the labels had loaded."""
    image_folder = import_script("cifar10n_cpu")._image_folder
    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    assert image_folder(tmp_path) == image_folder(tmp_path / "cifar10") == tmp_path / "cifar10"
    assert image_folder(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_cifar10n_cpu_data_root_without_images_names_the_flag(tmp_path: Path,
                                                              import_script: Callable[[str], ModuleType]) -> None:
    """The loader's "image folder not found" told the user to set data.name and data.root, keys this script sets
    itself from --data-root."""
    module = import_script("cifar10n_cpu")
    with pytest.raises(FileNotFoundError, match=f"^--data-root {tmp_path}: no CIFAR-10 images there "):
        module._data_root(module._parse(["--data-root", str(tmp_path)]))
    pickles = module._parse(["--data-root", str(tmp_path), "--set", "data.name=cifar10"])
    assert module._data_root(pickles) == tmp_path  # CIFAR-10's pickles: their reader names what is missing


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_preprocess_adni_help_prints_the_usage_and_its_comments_and_exits_0(flag: str) -> None:
    """--help printed the usage line on stderr and exited 2, as a mistake does, with "see the comments at its top"."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "preprocess_adni.sh"
    shown = subprocess.run(["bash", str(script), flag], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stderr == ""
    assert shown.stdout.startswith("usage: scripts/preprocess_adni.sh ADNI_BIDS_DIR_OR_CSV OUT_DIR\nPreprocess ADNI T1")
    assert "SHARDS=merge scripts/preprocess_adni.sh IN OUT" in shown.stdout and "set -euo" not in shown.stdout
    mistake = subprocess.run(["bash", str(script), "in.csv"], capture_output=True, text=True)
    assert mistake.returncode == 2 and mistake.stderr.startswith("usage: scripts/preprocess_adni.sh ")


@pytest.mark.parametrize(("script", "flags", "repeated"), [
    ("cifar10n_cpu", ["--losses", "ce", "elr", "ce"], "--losses: ce"),
    ("digits_benchmark", ["--losses", "elr", "elr"], "--losses: elr"),
    ("digits_benchmark", ["--settings", "sym40", "pair40", "pair40"], "--settings: pair40"),
])
def test_a_loss_or_setting_given_twice_is_refused(script: str, flags: list[str], repeated: str, monkeypatch,
                                                  capsys, tmp_path: Path,
                                                  import_script: Callable[[str], ModuleType]) -> None:
    """Both runs went to one folder, the second read the first back, and the table showed it as two seeds, ± 0."""
    module = import_script(script)
    small = ["--seeds", "1", "--epochs", "1", "--out", str(tmp_path)]  # where it is not refused, a short benchmark
    monkeypatch.setattr(sys, "argv", [f"scripts/{script}.py", *flags, *small])  # digits_benchmark parses sys.argv
    with pytest.raises(SystemExit) as stopped:
        module._parse(flags) if script == "cifar10n_cpu" else module.main()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {repeated} is given twice; name each once")
