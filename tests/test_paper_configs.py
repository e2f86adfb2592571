"""The shipped paper configs validate and carry the hyperparameters of the paper's appendix,
and the table-reproduction script plans every row without training. Seconds, no data needed."""

from __future__ import annotations

import argparse
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from elr_mri.config import ConfigError, RunConfig, config_to_dict, load_config
from elr_mri.data.image_sources import cifar_download_command
from elr_mri.data.images import NORMALISATION
from elr_mri.data.noise import inject_noise
from elr_mri.engine.selection import selection_rule
from test_image_data import write_clothing1m, write_image_folder, write_mini_webvision

ROOT = Path(__file__).resolve().parents[1]
PAPER_DIRS = ("cifar10", "cifar100", "cifar10n", "clothing1m", "webvision")
# run configs only: other folders of configs/ may hold other kinds of YAML (e.g. cohort mappings)
CONFIGS = sorted(p for folder in PAPER_DIRS for p in (ROOT / "configs" / folder).glob("*.yaml"))


@pytest.fixture(scope="module")
def reproduce(import_script):
    return import_script("reproduce_paper_table")


def test_paper_config_folders_are_not_empty():
    for folder in PAPER_DIRS:
        assert list((ROOT / "configs" / folder).glob("*.yaml")), folder


# The appendix's CIFAR settings (DESIGN.md, "Hyperparameters of the paper", and the official config_*.json), one row
# per (method, data set): every CIFAR config below must carry its row in full, whatever its noise.
APPENDIX = {
    ("elr", "cifar10"): dict(model="resnet34", lr=0.02, weight_decay=1e-3, milestones=[40, 80], gamma=0.01,
                             epochs=120),
    ("elr", "cifar100"): dict(model="resnet34", lr=0.02, weight_decay=1e-3, milestones=[80, 120], gamma=0.01,
                              epochs=150),
    ("elr_plus", "cifar10"): dict(model="preact_resnet18", lr=0.02, weight_decay=5e-4, milestones=[150], gamma=0.1,
                                  epochs=200),
    ("elr_plus", "cifar100"): dict(model="preact_resnet18", lr=0.02, weight_decay=5e-4, milestones=[200], gamma=0.1,
                                   epochs=250),
}
# (β, λ) by data set and noise: CIFAR-10's asymmetric setting has its own, CIFAR-100's are one pair for all noise
BETA_LAMBDA = {("cifar10", "sym"): (0.7, 3.0), ("cifar10", "asym"): (0.9, 1.0),
               ("cifar100", "sym"): (0.9, 7.0), ("cifar100", "asym"): (0.9, 7.0)}
# ELR+ only: mixup α, EMA γ and its ramp, the λ ramp (coef_step) and the label reweighting, per data set
ELR_PLUS = {"cifar10": (1.0, 0.997, "ramp", 40000, 0, False), "cifar100": (1.0, 0.997, "ramp", 40000, 40000, True)}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
CIFAR_CONFIGS = sorted(p for folder in ("cifar10", "cifar100") for p in (ROOT / "configs" / folder).glob("elr*.yaml")
                       if not p.stem.endswith("_cosine"))


@pytest.mark.parametrize("path", CIFAR_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_cifar_config_carries_its_appendix_row_and_the_noise_its_name_says(path: Path):
    """Each file name says method, noise and rate (elr_plus_sym80: ELR+, symmetric, 80%); the rest must be the
    appendix row of that method and data set, so an edit to one file of a family cannot drift unnoticed."""
    data_set = path.parent.name
    method, noise, rate = re.fullmatch(r"(elr|elr_plus)_(sym|asym)(\d+)", path.stem).groups()
    cfg = load_config(path)
    mode = "symmetric" if noise == "sym" else f"asymmetric_{data_set}"
    assert (cfg.data.noise.mode, cfg.data.noise.rate) == (mode, int(rate) / 100)
    _assert_appendix_row(cfg, method, data_set, noise)


def _assert_appendix_row(cfg: RunConfig, method: str, data_set: str, noise: str) -> None:
    """Everything but the noise itself: the appendix row of `method` on `data_set`, β and λ of its `noise` kind."""
    row = APPENDIX[(method, data_set)]
    assert (cfg.data.val_fraction, cfg.data.augment, cfg.train.select) == (0.1, True, "val_acc")
    assert (cfg.data.train_subset, cfg.data.test_subset) == (None, None)  # the whole data set, as the paper
    assert (cfg.model.name, cfg.loss.name) == (row["model"], method)
    assert (cfg.loss.beta, cfg.loss.lam) == BETA_LAMBDA[(data_set, noise)]
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.nesterov) == (
        "sgd", row["lr"], 0.9, row["weight_decay"], False)
    assert (cfg.schedule.name, cfg.schedule.milestones, cfg.schedule.gamma) == ("multistep", row["milestones"],
                                                                               row["gamma"])
    assert (cfg.train.epochs, cfg.train.batch_size) == (row["epochs"], 128)
    if method == "elr_plus":
        plus = cfg.elr_plus
        assert (plus.mixup_alpha, plus.ema_decay, plus.ema_schedule, plus.ema_ramp_steps, plus.coef_step,
                plus.reweight_labels) == ELR_PLUS[data_set]
    # the official code's per-channel constants: CIFAR-10's for its JPEG folder, CIFAR-100's for torchvision's copy
    assert NORMALISATION[cfg.data.normalization if cfg.data.normalization != "auto" else cfg.data.name] == \
        NORMALISATION[data_set]


# A symmetric row's noise line and the share of wrong labels its comment gives
SYMMETRIC_SHARE = re.compile(r"noise: \{mode: symmetric, rate: ([\d.]+), seed: (\d+)\}  # .*≈([\d.]+)% end wrong\n")


@pytest.mark.parametrize("path", [p for p in CONFIGS if "mode: symmetric," in p.read_text()],
                         ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_a_symmetric_row_says_the_share_of_labels_its_noise_leaves_wrong(path: Path) -> None:
    """The paper's symmetric noise redraws a label over all classes, the true one included, so `rate` 0.4 leaves
    36% of CIFAR-10's labels wrong, not 40%: the share a run's mislabel counts are to be read against."""
    rate, seed, share = SYMMETRIC_SHARE.search(path.read_text()).groups()
    classes = NUM_CLASSES[path.parent.name]
    _, wrong = inject_noise(np.repeat(np.arange(classes), 50_000 // classes), "symmetric", float(rate), classes,
                            int(seed))
    assert float(share) == pytest.approx(100 * float(rate) * (classes - 1) / classes)
    assert 100 * wrong.mean() == pytest.approx(float(share), abs=0.5)


# The command a config's comment gives for CIFAR-10's JPEG archive (and, for CIFAR-10N, its labels), as pasted at the
# root of a fresh clone: everything up to the comment's two spaces or its end
JPEG_COMMAND = re.compile(r"((?:mkdir -p \S+ && )?tar -xJf \S+ -C \S+(?: && cp \S+ \S+)?)")


@pytest.mark.parametrize("path", [p for p in CONFIGS if "tar -xJf" in p.read_text()],
                         ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_a_configs_jpeg_archive_command_works_in_a_fresh_clone(path: Path, tmp_path: Path) -> None:
    """data/ is ignored by git, so a fresh clone has none: the comments' `tar -xJf … -C data/` stopped at
    "data/: Cannot open" until the folder was made by hand."""
    (command,) = JPEG_COMMAND.findall(path.read_text())
    shared = tmp_path / "shared" / "data" / "cifar"
    shared.mkdir(parents=True)
    with tarfile.open(shared / "cifar10-jpeg.tar.xz", "w:xz") as tar:
        tar.addfile(tarfile.TarInfo("cifar10/train/airplane/00000.jpg"), io.BytesIO(b""))
    (shared / "CIFAR-10_human.npz").write_bytes(b"")
    clone = tmp_path / "clone"
    clone.mkdir()
    result = subprocess.run(["bash", "-c", command], cwd=clone, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    assert (clone / "data/cifar10/train/airplane/00000.jpg").is_file()


def test_cifar100_configs_say_how_to_get_the_data_with_what_the_project_installs() -> None:
    """They said to run torchvision.datasets.CIFAR100(..., download=True), and torchvision is no package of the
    project: the command is the one a run missing the data prints."""
    for path in sorted((ROOT / "configs" / "cifar100").glob("*.yaml")):
        assert f"data/cifar-100-python: {cifar_download_command('cifar100', 'data')}\n" in path.read_text(), path


def test_elr_cifar10_cosine_variant_differs_from_sym40_only_in_its_schedule():
    cosine = load_config(ROOT / "configs/cifar10/elr_sym40_cosine.yaml")
    assert (cosine.schedule.name, cosine.schedule.t0, cosine.schedule.eta_min, cosine.train.epochs) == (
        "cosine_warm_restarts", 10, 0.001, 150)
    multistep = config_to_dict(load_config(ROOT / "configs/cifar10/elr_sym40.yaml"))
    assert {**config_to_dict(cosine), "schedule": multistep["schedule"], "train": multistep["train"]} == multistep
    assert {**config_to_dict(cosine)["train"], "epochs": 120} == multistep["train"]


@pytest.mark.parametrize("path", [p for p in [*CONFIGS, ROOT / "configs/adni/elr_plus.yaml"] if "elr_plus" in p.stem],
                         ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_elr_plus_configs_alternate_the_networks_by_epoch_as_the_official_code(path: Path):
    assert load_config(path).elr_plus.alternation == "epoch"


def test_clothing1m_matches_appendix():
    elr = load_config(ROOT / "configs/clothing1m/elr.yaml")
    assert (elr.model.name, elr.optim.lr, elr.optim.weight_decay, elr.data.balanced_batches) == (
        "resnet50", 0.001, 1e-3, 2000)
    assert (elr.schedule.milestones, elr.schedule.gamma, elr.train.epochs, elr.train.batch_size) == ([5], 0.01, 10, 64)
    plus = load_config(ROOT / "configs/clothing1m/elr_plus.yaml")
    assert (plus.loss.name, plus.optim.lr, plus.data.balanced_batches, plus.elr_plus.ema_decay) == (
        "elr_plus", 0.002, 3000, 0.9999)
    assert plus.elr_plus.ema_schedule == "running_average"  # official: "ema_update": false, no 40k-step ramp
    assert (plus.schedule.milestones, plus.schedule.gamma, plus.train.epochs) == ([7], 0.1, 15)
    assert (plus.elr_plus.mixup_alpha, plus.elr_plus.coef_step, plus.elr_plus.reweight_labels) == (1.0, 0, False)
    for cfg in (elr, plus):  # what the two settings share
        assert (cfg.data.name, cfg.data.noise.mode, cfg.data.balanced_subset, cfg.model.name) == (
            "clothing1m", "none", True, "resnet50")
        assert (cfg.loss.beta, cfg.loss.lam, cfg.optim.name, cfg.optim.momentum, cfg.optim.weight_decay) == (
            0.7, 3.0, "sgd", 0.9, 1e-3)
        assert (cfg.train.batch_size, cfg.train.select) == (64, "val_acc")


def test_webvision_matches_appendix_and_official_config():
    cfg = load_config(ROOT / "configs/webvision/elr_plus.yaml")
    assert (cfg.data.name, cfg.model.name, cfg.loss.name, cfg.loss.beta, cfg.loss.lam) == (
        "webvision", "inception_resnet_v2", "elr_plus", 0.7, 3.0)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.02, 0.9, 5e-4)
    assert (cfg.schedule.milestones, cfg.schedule.gamma, cfg.train.epochs, cfg.train.batch_size) == ([50], 0.1, 100, 32)
    assert (cfg.elr_plus.mixup_alpha, cfg.elr_plus.ema_decay, cfg.elr_plus.ema_schedule) == (
        1.0, 0.997, "running_average")  # official: "ema_update": false


@pytest.mark.parametrize("name", ["ce", "elr", "elr_plus"])
def test_adni_configs_train_as_the_official_ml4h_code(name: str):
    cfg = load_config(ROOT / f"configs/adni/{name}.yaml")
    assert (cfg.model.name, cfg.model.widening, cfg.model.use_age, cfg.data.mri.crop_size) == (
        "widened_cnn3d", 8, True, [96, 96, 96])
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.01, 0.0, 0.0)
    assert cfg.train.batch_size == 4 and cfg.data.mri.blur_sigma_max == 1.0
    assert cfg.train.select == "val_balanced_acc"  # main.py keeps the best validation balanced_accuracy_score


def test_cifar10n_uses_human_worst_labels_with_the_elr_cifar10_sym_setting():
    """The paper has no CIFAR-10N row: the config says it trains with the ELR CIFAR-10 sym setting, and only its
    noise was checked, so an edit of its optimiser or schedule would have drifted unnoticed."""
    cfg = load_config(ROOT / "configs/cifar10n/elr.yaml")
    assert (cfg.data.name, cfg.data.noise.mode, cfg.data.noise.human_key) == ("imagefolder", "human", "worse_label")
    _assert_appendix_row(cfg, "elr", "cifar10", "sym")


def test_the_cifar10n_cpu_report_names_the_label_set_and_hold_out_the_runs_had(import_script):
    """`cifar10n_cpu.py --set data.noise.human_key=aggre_label` (9% wrong) was reported as worse_label (40% wrong),
    and any data.val_fraction as a 10% hold-out."""
    script = import_script("cifar10n_cpu")
    overrides = ["data.noise.human_key=aggre_label", "data.val_fraction=0.2", "optim.name=adam"]
    args = argparse.Namespace(overrides=overrides, seeds=2)
    runs = pd.DataFrame([{"loss": loss, "seed": seed, "wrong_labels": share, "wall_s": 10.0, "device": "cpu",
                          **dict.fromkeys(["test_acc_best", "test_acc_last", "memorized", "noisy_pred_true",
                                           "clean_pred_true", "precision", "recall"], 0.5)}
                         for loss in ("ce", "gce", "elr") for seed, share in ((0, 0.09), (1, 0.094))])
    report = script._report(runs, args, load_config(script.CONFIG, overrides), 20.0, Path("figure.png"))
    assert report.startswith("# CIFAR-10N aggre_label on a CPU") and "worse_label" not in report
    # --losses takes any number of losses: three were said to be "both", and GCE's flags to come from ELR's targets
    flat = " ".join(report.split())
    assert "per seed every loss sees the same subset" in flat and "both losses" not in flat
    assert "for any other loss from its last predictions" in flat
    assert "Seeds 0..1; per seed" in flat  # --seeds 2, no seed --set
    assert "`adam` lr 0.02" in flat and "SGD" not in flat  # the optimiser --set gave the runs, not always SGD
    assert ("CIFAR-10N `aggre_label` (real human noise; 9.2 ± 0.2% of the labels trained on are wrong),\n"
            "20% of them held out (noisy)") in report
    # wall_seconds leaves out a stopped call's part past its last checkpoint: the time is not "every call of each run"
    assert ("of training in all (resumed parts included, but not what a stopped call trained past its last "
            "checkpoint") in report.replace("\n", " ") and "every call" not in report


def test_cifar10n_cpu_extracts_the_jpeg_archive_whole_or_not_at_all(import_script, tmp_path: Path) -> None:
    """An extraction cut short (here a damaged copy of the archive) left data/cifar10/train part-filled, which every
    later call took as extracted: the human labels then refused the folder as 'extracted in part' on every run."""
    script = import_script("cifar10n_cpu")
    members = [f"cifar10/test/a/{k}.jpg" for k in range(2)] + [f"cifar10/train/a/{k:05d}.jpg" for k in range(8)]
    whole = tmp_path / "whole.tar.xz"
    with tarfile.open(whole, "w:xz") as tar:
        for name in members:  # incompressible, so that the cut below falls among the training images
            info = tarfile.TarInfo(name)
            info.size = 20_000
            tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 4 // 5])
    data = tmp_path / "data"
    with pytest.raises(ValueError, match=rf"^{cut}: cannot be extracted \(.*\); copy the archive again$"):
        script._extracted_archive(data, cut)
    assert [path.name for path in data.iterdir()] == [script.EXTRACTION_LOCK]  # no scratch folder, nothing half-done
    folder = script._extracted_archive(data, whole)
    assert sorted(str(p.relative_to(data)) for p in folder.rglob("*.jpg")) == sorted(members)


def test_cifar10n_cpu_removes_the_scratch_folder_of_an_extraction_killed_outright(import_script,
                                                                                   tmp_path: Path) -> None:
    """SIGKILL during the extraction (a node lost, the OOM killer) left data/.cifar10-extracting-*/ with the images
    extracted so far, up to 236 MB, and every later call, which extracted into a new one, left it there."""
    script = import_script("cifar10n_cpu")
    archive = tmp_path / "cifar10-jpeg.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for name in ("cifar10/train/a/00000.jpg", "cifar10/test/a/0.jpg"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"jpg"))
    data = tmp_path / "data"
    killed = data / ".cifar10-extracting-k1ll3d" / "cifar10" / "train" / "a"  # as the killed call left it
    killed.mkdir(parents=True)
    (killed / "00000.jpg").write_bytes(b"jp")
    folder = script._extracted_archive(data, archive)
    assert sorted(path.name for path in data.iterdir() if not path.name.endswith(".lock")) == ["cifar10"]
    assert (folder / "train" / "a" / "00000.jpg").read_bytes() == b"jpg"


def test_cifar10n_cpu_on_a_python_without_tar_filters_says_how_to_extract(import_script, tmp_path: Path,
                                                                         monkeypatch) -> None:
    """requires-python takes 3.10.0, whose tarfile has no extraction filters (3.10.12 and 3.11.4 brought them):
    `extractall(filter="data")` stopped there with a TypeError traceback. It is one line with the tar command."""
    script = import_script("cifar10n_cpu")
    archive = tmp_path / "cifar10-jpeg.tar.xz"
    with tarfile.open(archive, "w:xz"):
        pass
    monkeypatch.delattr(tarfile, "data_filter", raising=False)  # as on Python 3.10.11
    path = re.escape(str(archive))
    with pytest.raises(ValueError, match=rf"tarfile cannot extract the images in {path} safely .*; extract them with "
                                         rf"`mkdir -p DIR && tar -xJf {path} -C DIR` and pass --data-root DIR, or use "
                                         "a newer Python$"):
        script._extracted_archive(tmp_path / "data", archive)
    assert not (tmp_path / "data").exists()


def test_cifar10n_cpu_names_a_seed_set_beside_one_seed_by_the_seeds_trained_with(import_script, tmp_path: Path,
                                                                                 capsys, monkeypatch) -> None:
    """`--seeds 1 --set seed=3` trained model seed 3 in ce-seed0, which the progress line called seed 0, as
    reproduce_paper_table did: a later --seeds 2 read that run back as seed 0's. Same names as that script's now;
    the report said "Seeds 0..0" and the figure's title "seed 0" after the folders had been renamed."""
    script = import_script("cifar10n_cpu")
    titles: list[str] = []
    drawn = script.plot_memorization_comparison  # the figure is drawn and written; its title is kept here too
    monkeypatch.setattr(script, "plot_memorization_comparison",
                        lambda curves, path, title: titles.append(title) or drawn(curves, path, title=title))
    truth = write_image_folder(tmp_path / "cifar10", ["apple", "bee"], per_class=10)
    clean = np.array([truth[i] for i in range(len(truth))])
    worse = np.where(np.arange(len(clean)) % 4, clean, 1 - clean)  # a quarter wrong
    np.savez(tmp_path / "human.npz", clean_label=clean, worse_label=worse)
    small = ["seed=3", "data.train_subset=16", "data.test_subset=8", "data.normalization=auto", "model.hidden=8",
             "train.epochs=1", "train.batch_size=8"]
    script.main(["--losses", "ce", "--seeds", "1", "--data-root", str(tmp_path / "cifar10"),
                 "--human-labels", str(tmp_path / "human.npz"), "--out", str(tmp_path / "runs"),
                 "--results", str(tmp_path / "report.md"), *[arg for setting in small for arg in ("--set", setting)]])
    assert [path.name for path in (tmp_path / "runs").iterdir()] == ["ce-seed3-noise0-split0"]
    trained = yaml.safe_load((tmp_path / "runs" / "ce-seed3-noise0-split0" / "config.yaml").read_text())
    assert (trained["seed"], trained["data"]["split_seed"]) == (3, 0)
    assert "\nseed 3-noise0-split0 ce  : test " in "\n" + capsys.readouterr().out
    assert " Seed 3 (noise 0, split 0); per seed every" in (tmp_path / "report.md").read_text()
    assert titles == ["CIFAR-10N worse_label subset, seed 3 (noise 0, split 0)"]
    assert (tmp_path / "report_memorization.png").stat().st_size > 0


def test_cifar10n_cpu_without_shared_says_what_to_pass(import_script, tmp_path: Path) -> None:
    """A clone with no ../shared: the defaults point there, so each missing input is one line naming the option
    that replaces it (and the labels' release), before anything trains."""
    script = import_script("cifar10n_cpu")
    labels = tmp_path / "shared" / "CIFAR-10_human.npz"
    with pytest.raises(FileNotFoundError) as missing:
        script.main(["--human-labels", str(labels), "--out", str(tmp_path / "runs"), "--results",
                     str(tmp_path / "r.md")])
    assert str(missing.value) == (f"no CIFAR-10N labels at {labels}; pass --human-labels FILE (CIFAR-10_human.npz "
                                  "or .pt; the release's .pt: github.com/UCSC-REAL/cifar-10-100n)")
    archive = tmp_path / "shared" / "cifar10-jpeg.tar.xz"
    with pytest.raises(FileNotFoundError) as missing:
        script._extracted_archive(tmp_path / "clone" / "data", archive)
    assert str(missing.value) == (f"no CIFAR-10 images: {tmp_path / 'clone' / 'data' / 'cifar10' / 'train'} is "
                                  f"missing and so is {archive}; pass --data-root DIR (a CIFAR-10 image folder with "
                                  "train/ and test/)")
    assert not (tmp_path / "clone").exists() and not (tmp_path / "runs").exists()


def test_every_table_row_names_a_shipped_config(reproduce):
    for _, rows in reproduce.TABLES.values():
        for row in rows:
            assert (ROOT / "configs" / row.config).is_file(), row.config


@pytest.mark.parametrize("table", ["1", "2", "3", "4", "cifar10n"])
def test_dry_run_plans_every_row(reproduce, table: str, tmp_path: Path, capsys):
    status = reproduce.main(["--table", table, "--dry-run", "--seeds", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == (1 if "would stop" in out else 0)  # what this checkout's data/ holds
    for row in reproduce.TABLES[table][1]:
        assert f"| {row.name} | 1 |" in out
        assert f"| {row.paper or '–'} | new |" in out  # the figure to reach ("–": none recorded)
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_rows_given_twice_are_all_planned(reproduce, tmp_path: Path, capsys) -> None:
    """`--rows a --rows b`, as --set is given: argparse kept the last --rows alone, so row a went untrained and
    unplanned without a word."""
    status = reproduce.main(["--table", "1", "--rows", "cifar10-sym20", "--rows", "cifar10-sym40", "--dry-run",
                             "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == (1 if "would stop" in out else 0)  # whether this checkout's data/ holds CIFAR-10
    assert "| cifar10-sym20 | 0 |" in out and "| cifar10-sym40 | 0 |" in out
    assert "dry run: 2 run(s) validated" in out


def test_cifar10n_cpu_losses_given_twice_train_every_one(import_script) -> None:
    """`--losses ce --losses gce` kept gce alone; given once, the list still replaces the default (ce elr)."""
    script = import_script("cifar10n_cpu")
    assert script._parse(["--losses", "ce", "--losses", "gce"]).losses == ["ce", "gce"]
    assert script._parse(["--losses", "gce"]).losses == ["gce"]
    assert script._parse([]).losses == ["ce", "elr"]
    with pytest.raises(SystemExit):  # the same loss twice is still refused, however it is given
        script._parse(["--losses", "ce", "--losses", "ce"])


def test_dry_run_refuses_a_seed_folder_of_other_files_as_train_would(reproduce, tmp_path: Path) -> None:
    """Planned 'new' and validated, it was refused by `elr-mri train` at its start, and again at every rerun."""
    taken = tmp_path / "cifar10-sym40" / "seed0"
    taken.mkdir(parents=True)
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=rf"^{taken} holds files that are not a run's \(notes.txt\); .*--out"):
        reproduce.main(["--table", "1", "--rows", "cifar10-sym40", "--dry-run", "--out", str(tmp_path)])
    assert [path.name for path in taken.iterdir()] == ["notes.txt"]


def test_dry_run_refuses_more_threads_than_this_machine_takes_as_train_would(reproduce, tmp_path: Path) -> None:
    """`--set train.threads=1000000` was validated by the dry run and refused by `elr-mri train` at its start."""
    cpus = os.cpu_count() or 1
    with pytest.raises(ConfigError, match=rf"^row cifar10-sym40: train.threads = 1000000 is more than 4 a CPU on this "
                                          rf"machine \({cpus} CPUs\)"):
        reproduce.main(["--table", "1", "--rows", "cifar10-sym40", "--dry-run", "--out", str(tmp_path),
                        "--set", "train.threads=1000000"])
    assert not any(tmp_path.iterdir())


def test_a_row_of_tables_1_and_2_draws_seed_k_the_same_noisy_labels_and_split(reproduce, tmp_path: Path) -> None:
    """What --help promises: ELR and ELR+ rows of one name read the same data settings, and the noise draw of seed k
    depends on nothing the rows differ in (model, loss, epochs)."""
    args = reproduce._parse(["--table", "1", "--data-root", str(tmp_path), "--seeds", "2"])
    elr, elr_plus = ({row.name: row for row in reproduce.TABLES[table][1]} for table in ("1", "2"))
    shared = sorted(set(elr) & set(elr_plus))
    assert shared == ["cifar10-asym40", "cifar10-sym20", "cifar10-sym80", "cifar100-asym40", "cifar100-sym20",
                      "cifar100-sym80"]
    for name in shared:
        data = [load_config(*reproduce._row_args(row, 1, tmp_path / name, args)[:2]).data for row in
                (elr[name], elr_plus[name])]
        assert data[0] == data[1] and data[0].noise.seed == data[0].split_seed == 1, name
    labels = np.repeat(np.arange(10), 50)
    draws = [inject_noise(labels, "symmetric", 0.4, 10, seed)[0] for seed in (0, 1, 0)]
    assert (draws[0] != draws[1]).any() and (draws[0] == draws[2]).all()


@pytest.fixture
def shared_cifar(reproduce, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ../shared/data/cifar holding the JPEG archive and the CIFAR-10N labels (as this workplace's), wherever the
    test runs: a clone with no ../shared beside it is tested apart."""
    shared = tmp_path / "shared" / "data" / "cifar"
    shared.mkdir(parents=True)
    for name in ("cifar10-jpeg.tar.xz", "CIFAR-10_human.npz"):
        (shared / name).write_bytes(b"")
    monkeypatch.setattr(reproduce, "SHARED_CIFAR", shared)
    return shared


def test_dry_run_names_only_the_missing_cifar10n_label_file(reproduce, shared_cifar: Path, tmp_path: Path,
                                                            capsys) -> None:
    (tmp_path / "cifar10" / "train").mkdir(parents=True)  # the CIFAR-10 images are there, the labels are not
    labels = tmp_path / "CIFAR-10_human.npz"
    assert reproduce.main(["--table", "cifar10n", "--dry-run", "--data-root", str(tmp_path),
                           "--out", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    assert f"| {tmp_path / 'cifar10'} | missing {labels} |" in out
    # absolute: the command runs from anywhere
    assert f"missing {labels}: the CIFAR-N human labels; cp {shared_cifar / 'CIFAR-10_human.npz'} {labels}" in out
    assert out.count(f"missing {labels}:") == 1  # one line per missing input, not per row
    assert "cifar10/train" not in out


def test_dry_run_says_found_when_every_input_is_there(reproduce, tmp_path: Path, capsys) -> None:
    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    (tmp_path / "CIFAR-10_human.npz").write_bytes(b"")
    assert reproduce.main(["--table", "cifar10n", "--rows", "worst", "--dry-run", "--data-root", str(tmp_path),
                           "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert f"| {tmp_path / 'cifar10'} | found |" in out and "missing" not in out


CLOTHING1M_LISTS = ["noisy_label_kv.txt", "noisy_train_key_list.txt", "clean_label_kv.txt", "clean_test_key_list.txt",
                    "clean_val_key_list.txt"]


def test_dry_run_names_missing_pretrained_weights(reproduce, tmp_path: Path, capsys) -> None:
    write_clothing1m(tmp_path / "clothing1m")
    weights = tmp_path / "resnet50_imagenet.pt"
    assert reproduce.main(["--table", "3", "--dry-run", "--data-root", str(tmp_path), "--out", str(tmp_path / "runs"),
                           "--set", f"model.pretrained_checkpoint={weights}"]) == 1
    out = capsys.readouterr().out
    assert f"| {tmp_path / 'clothing1m'} | missing {weights} |" in out
    assert out.count(f"missing {weights}: the ImageNet weights, a state dict saved with torch.save(") == 1


def test_dry_run_names_the_label_lists_a_found_release_lacks(reproduce, tmp_path: Path, capsys) -> None:
    """images/ alone was "found", and every Clothing1M run then stopped at its start; a WebVision folder without
    ILSVRC12's list was "found", and the table's ILSVRC12 lines came out empty after 100 epochs."""
    clothing, release = tmp_path / "clothing1m", tmp_path / "release"
    write_clothing1m(release)
    clothing.mkdir()
    (release / "images").rename(clothing / "images")
    table = ["--dry-run", "--data-root", str(tmp_path), "--out", str(tmp_path / "runs")]
    assert reproduce.main(["--table", "3", "--rows", "elr", *table]) == 1
    out = capsys.readouterr().out
    assert f"| {clothing} | missing {', '.join(str(clothing / name) for name in CLOTHING1M_LISTS)} |" in out
    (clothing / "annotations").mkdir()  # the lists in annotations/, as some copies keep them
    for name in CLOTHING1M_LISTS[:4]:
        (release / name).rename(clothing / "annotations" / name)
    assert reproduce.main(["--table", "3", "--rows", "elr", *table]) == 1
    out = capsys.readouterr().out
    assert (f"missing {clothing / 'annotations/clean_val_key_list.txt'}: restore it from the Clothing1M release"
            in out) and out.count("missing") == 3  # its row, its line and the closing line
    (release / "clean_val_key_list.txt").rename(clothing / "annotations/clean_val_key_list.txt")
    assert reproduce.main(["--table", "3", "--rows", "elr", *table]) == 0
    assert f"| {clothing} | found |" in capsys.readouterr().out
    webvision = tmp_path / "webvision"
    write_mini_webvision(webvision, classes=2)
    (webvision / "imagenet/imagenet_val.txt").rename(tmp_path / "imagenet_val.txt")
    assert reproduce.main(["--table", "4", *table]) == 0
    out = capsys.readouterr().out
    assert (f"missing {webvision / 'imagenet/imagenet_val.txt'}: without it the ILSVRC12 lines stay empty; "
            f".venv/bin/python scripts/webvision_ilsvrc12_list.py --imagenet-val DIR --webvision {webvision} writes") \
        in out
    assert "dry run: 1 run(s) validated, but without the missing input(s) above lines of the table stay empty;" in out
    (tmp_path / "imagenet_val.txt").rename(webvision / "imagenet/imagenet_val.txt")
    assert reproduce.main(["--table", "4", *table]) == 0
    assert f"| {webvision} | found |" in capsys.readouterr().out
    spaced = tmp_path / "my data"  # the printed command split the folder in two words: --webvision /…/my data/webvision
    spaced.mkdir()
    webvision.rename(spaced / "webvision")
    (spaced / "webvision/imagenet/imagenet_val.txt").unlink()
    assert reproduce.main(["--table", "4", "--dry-run", "--data-root", str(spaced), "--out", str(tmp_path / "runs")]) == 0
    assert f"--imagenet-val DIR --webvision '{spaced / 'webvision'}' writes" in capsys.readouterr().out


def test_dry_run_meets_the_image_check_a_clothing1m_run_meets_at_its_start(reproduce, tmp_path: Path, capsys) -> None:
    """With every label list there, a release whose images were still in images/*.tar, or partly missing, was
    "found" and "validated", and each run then stopped at its start; the dry run now reads it as a run does."""
    clothing = tmp_path / "clothing1m"
    write_clothing1m(clothing)
    with tarfile.open(clothing / "images/0.tar", "w") as tar:
        tar.add(clothing / "images/0", arcname="images/0")
    (clothing / "images/0").rename(tmp_path / "extracted")
    dry_run = ["--table", "3", "--dry-run", "--data-root", str(tmp_path), "--out", str(tmp_path / "runs")]
    assert reproduce.main(dry_run) == 1
    out = capsys.readouterr().out
    assert f"| {clothing} | missing readable images under {clothing} |" in out
    assert (f"{clothing / 'images'} holds 1 tar archive(s) (0.tar, ...): extract them all" in out
            and "dry run: 2 run(s) validated, but they would stop at the 1 missing input(s) above;" in out)
    (tmp_path / "extracted").rename(clothing / "images/0")
    (clothing / "images/0/3.jpg").unlink()
    assert reproduce.main(["--rows", "elr", *dry_run]) == 1
    assert "noisy_train_key_list.txt: 1 of 8 listed images are not in" in capsys.readouterr().out


def test_dry_run_meets_the_image_check_a_webvision_run_meets_at_its_start(reproduce, tmp_path: Path, capsys) -> None:
    """With info/'s lists there, a WebVision tree missing listed images, or ILSVRC12's list without its images, was
    "found" and "validated", and the run then stopped at its start; the dry run now reads it as a run does."""
    webvision = tmp_path / "webvision"
    write_mini_webvision(webvision, classes=2)
    (webvision / "google/train_001_0.jpg").rename(tmp_path / "aside.jpg")
    dry_run = ["--table", "4", "--dry-run", "--data-root", str(tmp_path), "--out", str(tmp_path / "runs")]
    assert reproduce.main(dry_run) == 1
    out = capsys.readouterr().out
    assert f"| {webvision} | missing readable images under {webvision} |" in out
    assert (f"train_filelist_google.txt: 1 of 2 listed images are not in {webvision}, e.g. google/train_001_0.jpg"
            in out and "dry run: 1 run(s) validated, but they would stop at the 1 missing input(s) above;" in out)
    (tmp_path / "aside.jpg").rename(webvision / "google/train_001_0.jpg")
    shutil.rmtree(webvision / "imagenet/val")  # the list written, ILSVRC12's images not put there
    assert reproduce.main(dry_run) == 1
    out = capsys.readouterr().out
    assert (f"imagenet_val.txt: 2 of 2 listed images are not in {webvision / 'imagenet/val'}, e.g. "
            "imagenet_000_0.jpg; none is there" in out and "would stop at the 1 missing input(s) above;" in out)
    (webvision / "imagenet/imagenet_val.txt").unlink()  # a run trains without it: it does not stop the runs
    (webvision / "google/train_001_0.jpg").unlink()
    assert reproduce.main(dry_run) == 1
    assert "dry run: 1 run(s) validated, but they would stop at 1 of the 2 missing input(s) above;" \
        in capsys.readouterr().out


def test_a_run_made_with_data_root_is_planned_again_not_refused(reproduce, tmp_path: Path, capsys) -> None:
    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    (tmp_path / "CIFAR-10_human.npz").write_bytes(b"")
    command = ["--table", "cifar10n", "--rows", "worst", "--data-root", str(tmp_path), "--out", str(tmp_path / "runs")]
    row, run = reproduce.TABLES["cifar10n"][1][0], tmp_path / "runs" / "worst" / "seed0"
    config, overrides, _ = reproduce._row_args(row, 0, run, reproduce._parse(command))
    (run / "checkpoints").mkdir(parents=True)  # as an interrupted run leaves it: its config and a checkpoint
    cfg = load_config(config, overrides)
    (run / "config.yaml").write_text(yaml.safe_dump({**config_to_dict(cfg), "selection_rule": selection_rule(cfg)}))
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert reproduce.main([*command, "--dry-run"]) == 0
    assert f"| resume | {run} |" in capsys.readouterr().out


def test_a_rows_runs_made_with_other_settings_are_named_at_once(reproduce, tmp_path: Path, capsys) -> None:
    """The refusal named seed0 alone ("delete …/seed0"), and each seed folder deleted was followed by the same
    refusal for the next; it names every run of the row made so, in one line."""
    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    (tmp_path / "CIFAR-10_human.npz").write_bytes(b"")
    command = ["--table", "cifar10n", "--rows", "worst", "--seeds", "3", "--data-root", str(tmp_path),
               "--out", str(tmp_path / "runs"), "--dry-run"]
    row, runs = reproduce.TABLES["cifar10n"][1][0], [tmp_path / "runs" / "worst" / f"seed{k}" for k in range(3)]
    for seed in (0, 2):  # made with --set loss.lam=5; seed1 not yet started
        config, overrides, _ = reproduce._row_args(row, seed, runs[seed], reproduce._parse(command))
        (runs[seed] / "checkpoints").mkdir(parents=True)
        cfg = load_config(config, [*overrides, "loss.lam=5"])
        (runs[seed] / "config.yaml").write_text(yaml.safe_dump({**config_to_dict(cfg),
                                                                "selection_rule": selection_rule(cfg)}))
        (runs[seed] / "checkpoints" / "last.pt").write_bytes(b"")
    with pytest.raises(ConfigError) as refused:
        reproduce.main(command)
    assert str(refused.value).endswith(f"pass another --out, or delete the row's 2 runs made so: rm -r {runs[0]} "
                                       f"{runs[2]}") and "\n" not in str(refused.value)


def test_dry_run_says_a_finished_run_asked_for_more_epochs_is_continued(reproduce, tmp_path: Path, capsys) -> None:
    """The plan said 'done' of a run that would train on from 1 epoch to 2, read as nothing left to train."""
    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    command = ["--table", "1", "--rows", "cifar10-sym40", "--data-root", str(tmp_path), "--out", str(tmp_path / "runs")]
    row, run = reproduce.TABLES["1"][1][1], tmp_path / "runs" / "cifar10-sym40" / "seed0"
    config, overrides, _ = reproduce._row_args(row, 0, run, reproduce._parse([*command, "--set", "train.epochs=1"]))
    (run / "checkpoints").mkdir(parents=True)  # as a finished run leaves it: its config, last checkpoint and summary
    cfg = load_config(config, overrides)
    (run / "config.yaml").write_text(yaml.safe_dump({**config_to_dict(cfg), "selection_rule": selection_rule(cfg)}))
    (run / "checkpoints" / "last.pt").write_bytes(b"")  # kept, to continue it: not what makes it 'resume'
    (run / "summary.json").write_text("{}")
    assert reproduce.main([*command, "--set", "train.epochs=1", "--dry-run"]) == 0
    assert f"| done | {run} |" in capsys.readouterr().out
    assert reproduce.main([*command, "--set", "train.epochs=2", "--dry-run"]) == 0
    assert f"| continue 1 → 2 epochs | {run} |" in capsys.readouterr().out


def test_dry_run_says_how_to_get_missing_images(reproduce, shared_cifar: Path, tmp_path: Path, capsys) -> None:
    """The commands are pasted into a shell: a data root with a space in it was split there."""
    root = tmp_path / "my data"
    assert reproduce.main(["--table", "1", "--rows", "cifar10-sym20", "cifar100-sym20", "--dry-run",
                           "--data-root", str(root), "--out", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    archive = shared_cifar / "cifar10-jpeg.tar.xz"
    quoted = shlex.quote(str(root))
    tar = f"mkdir -p {quoted} && tar -xJf {shlex.quote(str(archive))} -C {quoted}"
    assert f"missing {root / 'cifar10' / 'train'}: {tar}" in out
    assert (f'missing {root / "cifar-100-python"}: mkdir -p {quoted} && curl -L '
            f'https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz | tar -xz -C {quoted}') in out


def test_a_run_stopped_for_missing_data_says_to_get_it_before_a_rerun(reproduce, tmp_path: Path, capsys) -> None:
    """The closing line said "the same command continues them", which stops at the same missing folder again."""
    assert reproduce.main(["--table", "1", "--rows", "cifar10-sym40", "--data-root", str(tmp_path / "empty"),
                           "--out", str(tmp_path / "runs"), "--set", "train.epochs=1"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the same command continues them" not in last
    assert (f"put the data listed as missing above in place first ({tmp_path / 'empty' / 'cifar10' / 'train'}; "
            "the Data section of --help and README's 'Reproducing the paper' say where each goes)") in last


def test_a_table_not_written_says_the_file_left_there_is_an_earlier_calls(reproduce, tmp_path: Path, capsys) -> None:
    """With runs missing the table is not written, and the results file an earlier call left read as this call's:
    the closing line says it is an earlier table, with its date and its --set line."""
    import time

    earlier = tmp_path / "runs" / "results-cifar10-sym40.md"
    earlier.parent.mkdir()
    earlier.write_text("Table 1: ...\n\n| row |\n\nEvery row with --set train.epochs=1.\n")
    written = time.mktime((2026, 3, 4, 5, 6, 0, 0, 0, -1))
    os.utime(earlier, (written, written))
    assert reproduce.main(["--table", "1", "--rows", "cifar10-sym40", "--data-root", str(tmp_path / "empty"),
                           "--out", str(tmp_path / "runs"), "--set", "train.epochs=2"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"{earlier} not written (the one there is an earlier call's table, written 2026-03-04 05:06: every row with "
        "--set train.epochs=1): 1 run(s) did not finish; ")


def test_the_closing_hint_sends_diverged_runs_to_their_remedy_not_to_a_rerun(reproduce, tmp_path: Path) -> None:
    """"the same command continues them" was said of a seed that diverged, which a rerun trains into the same
    divergence: the hint names the diverged runs (their own lines give the remedy) and keeps "continues" for the
    others."""
    from elr_mri.engine.run_dir import record_divergence

    diverged, stopped = tmp_path / "row" / "seed0", tmp_path / "row" / "seed1"
    for run in (diverged, stopped):
        run.mkdir(parents=True)
    record_divergence(diverged, 3, "fp32")
    assert reproduce._how_to_go_on({}, [stopped]) == "the same command continues them"
    assert reproduce._how_to_go_on({}, [diverged]) == (f"1 diverged ({diverged}), as a rerun would again: each one's "
                                                       "line above gives the remedy")
    assert reproduce._how_to_go_on({}, [diverged, stopped]).endswith(
        "gives the remedy; for the other 1, the same command continues them")


def test_dry_run_without_shared_says_where_to_download(reproduce, tmp_path: Path, capsys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone with no ../shared beside it was told to extract and copy files from there, commands that failed;
    the pickles the row reads instead of absent JPEGs, and the labels' release, are what it can get."""
    monkeypatch.setattr(reproduce, "SHARED_CIFAR", tmp_path / "shared" / "data" / "cifar")  # not there
    root = tmp_path / "my data"
    assert reproduce.main(["--table", "cifar10n", "--rows", "worst", "--dry-run", "--data-root", str(root),
                           "--out", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    quoted = shlex.quote(str(root))
    assert (f"missing {root / 'cifar10' / 'train'}: mkdir -p {quoted} && curl -L "
            f"https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz | tar -xz -C {quoted}") in out
    assert (f"missing {root / 'CIFAR-10_human.npz'}: the CIFAR-N human labels (no copy at "
            f"{tmp_path / 'shared' / 'data' / 'cifar' / 'CIFAR-10_human.npz'}); download CIFAR-10_human.pt of "
            "github.com/UCSC-REAL/cifar-10-100n, then --set data.noise.human_labels=PATH/CIFAR-10_human.pt") in out
    assert "tar -xJf" not in out and " cp " not in out


def test_a_dry_run_refuses_what_training_would(reproduce, tmp_path: Path, capsys) -> None:
    """The plan said "validated" for runs `train` then refused at their start, and a table-wide data.name made the
    CIFAR-100 rows CIFAR-10 runs reported beside the paper's CIFAR-100 figures."""
    table = ["--table", "1", "--dry-run", "--data-root", str(tmp_path), "--out", str(tmp_path / "runs")]
    with pytest.raises(SystemExit):
        reproduce.main([*table, "--set", "data.name=cifar10"])
    assert "--set data.name=cifar10 would give every row one data set" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the CIFAR-100 rows would read CIFAR-10's folder
        reproduce.main([*table, "--set", f"data.root={tmp_path / 'cifar10'}"])
    assert f"--set data.root={tmp_path / 'cifar10'} would give every row one data set" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="^row cifar10-sym20: data.noise.rate = 0.2 is not read by data.noise.mode"):
        reproduce.main([*table, "--set", "data.noise.mode=none"])
    with pytest.raises(ConfigError, match="^row cifar100-sym20: data.noise.mode = asymmetric_cifar10_official flips"):
        reproduce.main([*table, "--set", "data.noise.mode=asymmetric_cifar10_official"])
    assert reproduce.main([*table, "--rows", "cifar10-sym20", "--set", "data.noise.mode=asymmetric_cifar10_official"]) == 1


def test_a_data_root_that_is_a_file_is_refused_saying_to_extract_it(tmp_path: Path) -> None:
    """The JPEG archive itself passed as --data-root was planned as `mkdir -p ARCHIVE && ... -C ARCHIVE` (which
    fails on the file), and each run then stopped at "image folder not found" under the archive's name."""
    archive = tmp_path / "cifar10-jpeg.tar.xz"
    archive.write_bytes(b"\xfd7zXZ\x00")
    result = subprocess.run([sys.executable, str(ROOT / "scripts/reproduce_paper_table.py"), "--table", "1",
                             "--rows", "cifar10-sym40", "--dry-run", "--out", str(tmp_path / "runs"),
                             "--data-root", str(archive)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert (f"argument --data-root: {archive} is a file; pass the folder that holds the data sets (an archive: "
            f"mkdir -p data && tar -xf {archive} -C data, then --data-root data)") in result.stderr
    assert not (tmp_path / "runs").exists()


def test_data_root_moves_data_paths_and_finds_python_cifar(reproduce, tmp_path: Path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    cfg = load_config(ROOT / "configs/cifar10/elr_sym40.yaml")
    assert reproduce._data_root_overrides(cfg, tmp_path) == ["data.name=cifar10", f"data.root={tmp_path}"]
    (tmp_path / "cifar10" / "train").mkdir(parents=True)  # the JPEG folder wins when both are there
    assert reproduce._data_root_overrides(cfg, tmp_path) == [f"data.root={tmp_path / 'cifar10'}"]
    human = load_config(ROOT / "configs/cifar10n/elr.yaml")
    assert f"data.noise.human_labels={tmp_path / 'CIFAR-10_human.npz'}" in reproduce._data_root_overrides(human, tmp_path)


@pytest.mark.parametrize("from_home", [False, True])
def test_script_entry_point_dry_run(tmp_path: Path, from_home: bool):
    """With --data-root an empty folder: the result does not depend on what this checkout has under data/.
    Given as `--data-root=~/data` (no shell expands that `~`), the folder is the home folder's."""
    paths = ["--out=~/runs", "--data-root=~/data"] if from_home else \
        ["--out", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data")]
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/reproduce_paper_table.py"), "--table", "4", "--dry-run", *paths],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 1, result.stderr  # it would stop at the missing lists
    assert "dry run: 1 run(s) validated" in result.stdout
    assert (f"missing {tmp_path / 'data/webvision/info/train_filelist_google.txt'}: put WebVision 1.0's resized "
            "images") in result.stdout


def test_webvision_row_reports_every_figure_of_table_4(reproduce):
    rows = reproduce.TABLES["3"][1] + reproduce.TABLES["4"][1]
    figures = {"test_acc": 0.75, "test_top5": 0.9, "test_ilsvrc12_acc": 0.68, "test_ilsvrc12_top5": 0.88}
    run = {**{f"{k}_at_best": v for k, v in figures.items()}, **{f"{k}_last": v - 0.01 for k, v in figures.items()},
           "wall_seconds": 7200, "device": "NVIDIA H100"}
    table = reproduce._results_table(rows, {"elr": [], "elr_plus": [], "webvision-elr_plus": [run]}, 1)
    assert "| webvision-elr_plus | 77.78 | 75.00 | 74.00 | 1 | 2.00 | NVIDIA H100 |" in table
    assert "| webvision-elr_plus ILSVRC12 top-5 | 89.76 | 88.00 | 87.00 |  |  |  |" in table
    assert "| elr | 72.87 | – | – | 0 of 1 | – | – |" in table
    assert not table.endswith("run)")  # a summary from before `execution` was recorded: nothing said
    graphs = "bf16 autocast, channels-last, torch.compile (reduce-overhead), fused optimizer, cuDNN benchmark"
    table = reproduce._results_table(rows, {"elr": [], "elr_plus": [], "webvision-elr_plus": [
        {**run, "execution": graphs}, {**run, "execution": graphs}]}, 2)
    assert table.endswith(f"\n\nHow the runs ran:\n- webvision-elr_plus on NVIDIA H100: {graphs} (2 runs)")


def test_a_table_names_the_rows_whose_paper_figure_readme_doubts(reproduce) -> None:
    """README's "Reference figures to check" says Table 2's CIFAR-10 figures (the design notes', recalled otherwise
    by a review) and Table 4's (recalled) are to be checked against the paper before quoting, but the table files, the
    thing quoted, printed them as the paper's without a word."""
    run = {"test_acc_at_best": 0.9, "test_acc_last": 0.9, "wall_seconds": 60, "device": "cpu"}
    for table, doubted in (("2", ["cifar10-sym20", "cifar10-sym50", "cifar10-sym80", "cifar10-sym90",
                                  "cifar10-asym40"]), ("4", ["webvision-elr_plus"])):
        rows = reproduce.TABLES[table][1]
        text = " ".join(reproduce._results_table(rows, {row.name: [run] for row in rows}, 1).split())
        assert (f"Paper figures not yet checked against the paper itself (README, \"Reference figures to check\"): "
                f"{', '.join(doubted)}; check them before quoting") in text
    for table in ("1", "3"):  # the design notes' figures, which the official README repeats for table 1
        rows = reproduce.TABLES[table][1]
        assert "not yet checked" not in reproduce._results_table(rows, {row.name: [run] for row in rows}, 1)
    rows = reproduce.TABLES["2"][1][5:]  # CIFAR-100's ELR+ rows carry no figure to doubt
    assert "not yet checked" not in reproduce._results_table(rows, {row.name: [run] for row in rows}, 1)


def test_paper_figures_print_with_the_decimals_readme_gives_them(reproduce) -> None:
    """Table 2's 93.8 printed as 93.80, a decimal the paper does not give; each prints as README quotes it."""
    run = {"test_acc_at_best": 0.9, "test_acc_last": 0.9, "wall_seconds": 60, "device": "cpu"}
    rows = reproduce.TABLES["2"][1]
    table = reproduce._results_table(rows, {row.name: [run] for row in rows}, 1)
    assert "| cifar10-sym50 | 93.8 | 90.00 | 90.00 | 1 |" in table and "| cifar100-sym50 | – |" in table
    sym20, sym50, sym80, sym90, asym40 = (row.paper for row in rows[:5])
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"(CIFAR-10 sym 20/50/80/90: {sym20} / {sym50} / {sym80} / {sym90}, asym 40: {asym40})" in readme
    (webvision,) = reproduce.TABLES["4"][1]
    top5, ilsvrc_top1, ilsvrc_top5 = (paper for _, _, paper in webvision.also)
    assert f"(ELR+ {webvision.paper} / {top5} WebVision, {ilsvrc_top1} / {ilsvrc_top5} ILSVRC12)" in readme


def test_rows_run_apart_write_tables_of_their_own(reproduce) -> None:
    """A table's results file is named by the rows it holds: `--rows a b` named by its first row alone wrote over
    the table of `--rows a`."""
    rows = reproduce.TABLES["1"][1]
    assert [reproduce._report_name("1", part) for part in (rows, rows[:1], rows[:2])] == [
        "results.md", "results-cifar10-sym20.md", "results-cifar10-sym20+cifar10-sym40.md"]


def test_the_table_says_how_its_runs_chose_the_selected_epoch(reproduce) -> None:
    """From the runs' summary.json: under `--set train.select=last` the note said "best accuracy on the noisy 10%
    validation split" of runs that had kept their last epoch."""
    rows = reproduce.TABLES["3"][1]
    run = {"test_acc_at_best": 0.7, "test_acc_last": 0.7, "wall_seconds": 60, "device": "cpu"}
    last = {**run, "selection_rule": "the last epoch"}
    table = reproduce._results_table(rows, {"elr": [last, last], "elr_plus": [last]}, 2)
    assert " Selected epoch: the last epoch. Wall time:" in table and "validation" not in table
    # summary.json's wall_seconds: a resume adds to the last checkpoint's, so a stop's lost part is not in it
    assert "resumed parts included, but not what a stopped call trained past its last checkpoint" in table
    clean = {**run, "selection_rule": "best accuracy on Clothing1M's clean validation images"}
    table = reproduce._results_table(rows, {"elr": [clean], "elr_plus": [last]}, 1)
    assert " Selected epoch: elr: best accuracy on Clothing1M's clean validation images; elr_plus: the last epoch." \
        in table
    assert "Selected epoch" not in reproduce._results_table(rows, {"elr": [run], "elr_plus": []}, 1)  # unrecorded


@pytest.mark.parametrize(("script", "args", "says"), [
    ("reproduce_paper_table.py", ["--table", "1", "--rows", "cifar10-sym30", "--dry-run"],
     "reproduce_paper_table.py: error: --rows: no row 'cifar10-sym30' in table 1; rows: cifar10-sym20"),
    ("cifar10n_cpu.py", ["--losses", "ce", "elrr", "--human-labels", __file__],
     "loss.name = 'elrr' is not one of"),  # refused before CE trains
    ("webvision_ilsvrc12_list.py", ["--imagenet-val", "/nowhere/val", "--webvision", "/nowhere/webvision"],
     "/nowhere/webvision/info/synsets.txt not found: it comes with WebVision 1.0's info/ folder"),
])
def test_script_mistakes_are_one_line_with_exit_code_2(script: str, args: list[str], says: str) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert says in result.stderr and result.stdout == ""
