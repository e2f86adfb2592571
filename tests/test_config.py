"""Strict config validation: every mistake is one line naming the key and the file."""

from __future__ import annotations

import ast
import dataclasses
import functools
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tokenize
import typing
from pathlib import Path
from typing import Callable

import pytest

from elr_mri.config import (
    LOSS_READS, MODEL_READS, PATH_KEYS, SCHEDULE_READS, ConfigError, ELRPlusConfig, LossConfig, ModelConfig, RunConfig,
    ScheduleConfig, check_augment_settings, check_noise_fits_data, check_noise_settings, config_from_dict, dotted_keys,
    evaluation_batch_size, first_resume_change, load_config, refuse_resume_changes, unread_overrides, with_absolute_paths,
)
from elr_mri.config import schema
from elr_mri.models import MIN_INPUT_SIZE, MODEL_NAMES

# every YAML under configs/ is a run config, except the importers' column mappings (*_mapping.yaml)
MRI_MODEL = {"model": {"name": "widened_cnn3d"}}
DIGITS = Path(__file__).parents[1] / "configs" / "digits" / "elr_sym40.yaml"
CONFIGS = sorted(p for p in (Path(__file__).parents[1] / "configs").rglob("*.yaml") if not p.stem.endswith("_mapping"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, "loss:\n  name: elr\n  lam: 3\noptim:\n  weight_decay: 1e-3\n")
    cfg = load_config(path, ["train.epochs=7", "data.noise.mode=pair", "data.noise.rate=0.4",
                             "schedule.milestones=[2, 4]"])
    assert isinstance(cfg, RunConfig)
    assert cfg.loss.name == "elr" and cfg.loss.lam == 3.0 and isinstance(cfg.loss.lam, float)
    assert cfg.optim.weight_decay == 1e-3  # YAML 1.1 reads "1e-3" as a string; accepted as a float
    assert cfg.train.epochs == 7 and cfg.data.noise.rate == 0.4 and cfg.schedule.milestones == [2, 4]
    assert cfg.data.val_fraction == 0.1  # untouched default


def test_the_column_mapping_beside_the_run_configs_is_named_as_one() -> None:
    """`--config configs/nacc/nacc_mapping.yaml` was told only "unknown key 'cohort'" (allowed: data, ...)."""
    mappings = [p for p in DIGITS.parents[1].rglob("*.yaml") if p not in CONFIGS]
    assert mappings
    for path in mappings:
        with pytest.raises(ConfigError, match=rf"^{path}: a column mapping for `elr-mri import-cohort --mapping`, not a "
                                              r"run config; pass a run config, e.g. configs/adni/elr.yaml$"):
            load_config(path)


def test_the_evaluation_batch_suits_the_data_unless_set(tmp_path: Path) -> None:
    """512 images at once, but not 512 MRI volumes (~220 MB of activations each through the ×8 network)."""
    images = load_config(_write(tmp_path, "data: {name: cifar10, root: data}\ntrain: {batch_size: 128}\n"))
    volumes = _write(tmp_path, "data: {name: mri, mri: {manifest: adni.csv}}\nmodel: {name: widened_cnn3d}\n"
                               "train: {batch_size: 4}\n")
    assert [evaluation_batch_size(images), evaluation_batch_size(load_config(volumes))] == [512, 4]
    assert evaluation_batch_size(load_config(volumes, ["train.eval_batch_size=16"])) == 16


def test_the_largest_blur_a_refusal_names_is_allowed(tmp_path: Path) -> None:
    """The bound said is one the check lets through: a kernel reaching as far as the crop, no farther."""
    config = _write(tmp_path, "data: {name: mri, mri: {manifest: adni.csv, crop_size: [72, 80, 96]}}\n"
                              "model: {name: widened_cnn3d}\n")
    assert load_config(config, ["data.mri.blur_sigma_max=9"]).data.mri.blur_sigma_max == 9
    with pytest.raises(ConfigError, match=r"73 voxels, past the whole 72-voxel crop .*; set it at most 9 "):
        load_config(config, ["data.mri.blur_sigma_max=9.07"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss:\n  nmae: elr\n", r"unknown key 'loss.nmae'"),
        ("trian:\n  epochs: 3\n", r"unknown key 'trian'"),
        ("train:\n  epochs: three\n", r"train.epochs must be int, got 'three'"),
        ("train:\n  epochs: 2.5\n", r"train.epochs must be int, got 2.5$"),
        # YAML 1.1 reads 4e4 as text: the count meant is plain, and said
        ("elr_plus: {ema_ramp_steps: 4e4}\n", r"elr_plus.ema_ramp_steps must be int, got '4e4'; write it as 40000$"),
        ("train:\n  epochs: 100.0\n", r"train.epochs must be int, got 100.0; write it as 100$"),
        ("train:\n  tensorboard: 1\n", r"train.tensorboard must be bool"),
        ("loss:\n  name: elrr\n", r"loss.name = 'elrr' is not one of 'ce', 'gce'"),
        ("model: {name: resnet35}\n", r"model.name = 'resnet35' is not one of 'densenet121_3d', 'inception_resnet_v2', "),
        ("data: {name: mri}\nmodel: {name: widened_cnn}\n", r"model.name = 'widened_cnn' is not one of 'densenet121_3d'"),
        ("schedule:\n  milestones: 40\n", r"schedule.milestones must be a list"),
        ("data: [1, 2]\n", r"data must be a mapping"),
        ("train:\n  # epochs: 3\n", r"train is given no settings; indent them under it, or drop it$"),
        ("data: {noise: }\n", r"data.noise is given no settings"),
        ("loss: {name: elr\n", r"not valid YAML"),
        ("train:\n\tepochs: 3\n", r"line 2: a tab, where YAML takes only spaces .*; replace it with spaces$"),
        # a terminal's colour code pasted in: PyYAML's words were two lines naming a character offset, not the line
        ("seed: 0\ntrain:\n  epochs: \x1b[0m3\n",
         r"line 3: not valid YAML \(the control character U\+001B, which YAML does not allow; delete it\)$"),
        ("optim: {name: adam, lr: 1e-4}\nschedule: {name: cosine}\n", r"schedule.eta_min = 0.001 is not below optim.lr"),
        ("optim: {lr: 0.01}\nschedule: {name: cosine, eta_min: 0.01}\n", r"schedule.eta_min = 0.01 is not below"),
        ("train: {checkpoint_seconds: .nan}\n", r"train.checkpoint_seconds = nan must be a finite number$"),  # .inf only
        ("data: {name: mri, mri: {manifest: m.csv, crop_size: [96, 0, 96]}}\nmodel: {name: resnet18_3d}\n",
         r"data.mri.crop_size = \[96, 0, 96\] must be three voxel counts"),
        ("schedule: {t0: 0}\n", r"schedule.t0 = 0 must be at least 1"),
        ("train: {eval_batch_size: -1}\n", r"train.eval_batch_size = -1 must be 0 or more"),
        ("data: {balanced_batches: -3}\n", r"data.balanced_batches = -3 must be at least 1"),
        ("loss: {beta: 1.0}\n", r"loss.beta = 1.0 must be in \[0, 1\): at 1 the ELR targets would never move from "
                                 r"their start, all zeros, and the ELR term would stay 0; the paper uses 0.7"),
        ("seed: -1\n", r"seed = -1 must be in \[0, 2\*\*32 - 1\]"),
        ("data: {noise: {seed: 4294967296}}\n", r"data.noise.seed = 4294967296 must be in \[0, 2\*\*32 - 1\]"),
        ("data: {name: mri, mri: {classes: [CN]}}\nmodel: {name: widened_cnn3d}\n",
         r"data.mri.classes = \['CN'\] needs at least two diagnoses"),
        ("train: {compile: 1}\n", r"train.compile = 1 is not one of 'auto', true, false$"),  # as YAML writes them
        ("data: {mri: {test_fraction: 1.0}}\n", r"data.mri.test_fraction = 1.0 must be in \[0, 1\)"),
        ("loss: {name: elr_plus, lam_start_steps: 500}\n", r"loss.lam_start_steps = 500 is an ELR setting .*elr_plus.coef_step"),
        ("optim: {name: adam, lr: 1e-4, nesterov: true}\n", r"optim.nesterov applies to SGD only"),
        ("loss: {name: ce, lam_ramp_steps: 500}\n", r"loss.lam_ramp_steps = 500 is an ELR setting that loss.name = ce "
                                                    r"does not read; drop it, or set loss.name: elr"),
        ("data: {name: cifar10, mri: {manifest: adni.csv}}\n", r"data.mri.manifest is set but data.name = cifar10 "
                                                               r"does not read data.mri"),
        ("data: {name: cifar10}\n", r"data.name = cifar10 needs data.root, the folder that holds the data set"),
        # refused once the data had loaded: an MRI cohort's memory cache fills first, minutes for a real one
        ("data: {name: mri, mri: {manifest: adni.csv}}\nmodel: {name: widened_cnn3d}\ntrain: {loader: device}\n",
         r"train.loader = device serves images held in memory \(digits, cifar10, cifar100, imagefolder\), and "
         r"data.name = mri is read from files; set train.loader: auto or dataloader$"),
        ("data: {name: clothing1m, root: data, normalization: measured}\n", r"data.normalization = measured measures "
         r"images held in memory, and data.name = clothing1m is read from files; set data.normalization: auto"),
        ("data: {name: mri}\nmodel: {name: widened_cnn3d}\n",
         r"data.name = mri needs data.mri.manifest, the cohort's CSV .*; set it, e.g. --set data.mri.manifest="),
        ("data: {name: mri, mri: {manifest: adni.csv, cache: disk}}\nmodel: {name: widened_cnn3d}\n",
         r"data.mri.cache: disk needs data.mri.cache_dir, a folder for the cached volumes; set it, or data.mri.cache: "
         r"memory$"),
        ("# nothing yet\n", r"the config is empty; start from one in configs/"),
        ("schedule: {milestones: [0, 80]}\n", r"schedule.milestones = \[0, 80\] must each be at least 1"),
        # a typo for [40, 80]: the rate dropped by gamma² at 40, without a word
        ("schedule: {milestones: [40, 40]}\n", r"schedule.milestones = \[40, 40\] lists epoch 40 more than once, "
                                               r"and the rate would drop by schedule.gamma once for each"),
        # past 64 bits: a traceback from torch's "Overflow when unpacking long long" once training started
        ("model: {hidden: 99999999999999999999}\n", r"model.hidden = 99999999999999999999 is beyond the 64-bit "
                                                    r"integers torch and numpy hold"),
        ("schedule: {milestones: [99999999999999999999]}\n", r"schedule.milestones = \[99999999999999999999\] is "
                                                             r"beyond the 64-bit integers"),
        ("seed: 0\ntrain: {epochs: 3}\nseed: 1\n", r"line 3: the key 'seed' is given twice in one section; keep one$"),
        ("train: {epochs: 3, epochs: 4}\n", r"the key 'epochs' is given twice in one section"),
        ("train:\n  <<: {epochs: 2, epochs: 3}\n", r"line 2: the key 'epochs' is given twice in one section; keep one"),
        ("optim: {lr: .inf}\n", r"optim.lr = inf must be a finite number"),
        ("loss: {beta: .nan}\n", r"loss.beta = nan must be a finite number"),
        ("data: {name: mri, mri: {classes: [CN, MCI, AD, ad]}}\n", r"names AD, ad more than once; list each"),
        # 8σ past the crop: a grey crop, and hours of blur a scan that no Ctrl-C stopped (σ 320 took 16 s on 74³)
        ("data: {name: mri, mri: {manifest: adni.csv, blur_sigma_max: 1000000}}\nmodel: {name: widened_cnn3d}\n",
         r"data.mri.blur_sigma_max = 1000000.0 blurs with a kernel reaching 8σ, 8000000 voxels, past the whole "
         r"96-voxel crop \(data.mri.crop_size\): .*; set it at most 12 \(the paper's is 1\)$"),
        # a manifest's diagnoses are read stripped: ' MCI' matched none of its MCI scans, '' trained a class of none
        ("data: {name: mri, mri: {classes: [CN, ' MCI', AD]}}\n", r"data.mri.classes = \['CN', ' MCI', 'AD'\] names "
                                                                 r"' MCI', which no manifest diagnosis can match"),
        ("data: {name: mri, mri: {classes: [CN, MCI, AD, '']}}\n", r"names '', which no manifest diagnosis can match"),
        ("elr_plus: {ema_schedule: running_average, ema_ramp_steps: 1000}\n",
         r"elr_plus.ema_ramp_steps = 1000 is the ramp's length, which elr_plus.ema_schedule = running_average does not"),
        ("data: {balanced_subset: true}\n", r"data.balanced_subset needs data.balanced_batches"),
        # the averages stopped moving at the ramp's end (with ema_ramp_steps 0, at once): targets of fixed weights
        ("loss: {name: elr_plus}\nelr_plus: {ema_decay: 1}\n", r"elr_plus.ema_decay = 1 keeps the weight averages as "
                                                              r"they are once elr_plus.ema_ramp_steps \(40000\) have "
                                                              r"passed, .*; set it below 1 \(the official 0.997; 0"),
        ("elr_plus: {ema_schedule: mean}\n", r"elr_plus.ema_schedule = 'mean' is not one of 'ramp', 'running_average'"),
        ("data: {name: mri, mri: {crop_size: [80, 80]}}\n", r"data.mri.crop_size = \[80, 80\] must be three voxel counts"),
        ("data: {name: mri, mri: {crop_size: [50, 50, 50]}}\nmodel: {name: widened_cnn3d}\n",
         r"data.mri.crop_size = \[50, 50, 50\] is too small for the widened CNN, which needs at least 71 voxels"),
        ("1: 2\n", r"unknown key '1'; allowed in top level: data, "),  # a key is its text: no int, no TypeError
        ("seed: 0\non: 1\n", r"unknown key 'on'; allowed"),  # not True
        ("train:\n  epochs: 010\n", r"line 2: 010 reads as 8 in YAML, which takes a leading 0 as octal, .*; write the "
                                     r"number in decimal, e.g. 10, or quote it if it is text$"),
        ("seed: 0x10\n", r"line 1: 0x10 reads as 16 in YAML, .*; write the number in decimal, or quote it"),
        ("optim: {lr: 1:30}\n", r"1:30 reads as 90 in YAML, .* a ':' as base 60"),
        ("schedule: {milestones: [40, 010]}\n", r"line 1: 010 reads as 8 in YAML"),
        ("train:\n  <<: {epochs: 010}\n", r"line 2: 010 reads as 8"),
        ("schedule: {gamma: 1000}\n", r"schedule.gamma = 1000.0 must be in \(0, 1\]"),  # the rate would grow
        ("schedule: {gamma: 0}\n", r"schedule.gamma = 0.0 must be in \(0, 1\]"),
        ("loss: {name: sce, sce_alpha: 0, sce_beta: 0}\n",
         r"loss.sce_alpha and loss.sce_beta are both 0, so the loss is 0 and nothing trains; set one above 0"),
        ("optim: {nesterov: true, momentum: 0}\n", r"optim.nesterov needs optim.momentum > 0 .*; set optim.momentum"),
        ("loss: {lambda: 1}\n", r"unknown key 'loss.lambda' \(did you mean loss.lam\?\); allowed in loss: beta, "),
        ("optim: {epochs: 3}\n", r"unknown key 'optim.epochs' \(did you mean train.epochs\?\); allowed in optim"),
        # a plural of another section's setting: that one, not a near spelling in its own (train.batch_size)
        ("train: {crop_sizes: 96}\n", r"unknown key 'train.crop_sizes' \(did you mean data.mri.crop_size\?\)"),
        ("noise: {rate: 0.2}\n", r"unknown key 'noise' \(did you mean data.noise\?\)"),
        # no spelling is near these: `arch` was asked "did you mean data.mri.cache?", `amp` "loss.lam?"
        ("model: {arch: resnet34}\n", r"unknown key 'model.arch' \(did you mean model.name\?\)"),
        ("train: {amp: true}\n", r"unknown key 'train.amp' \(did you mean train.precision\?\)"),
        ("optim: {learning_rate: 0.1}\n", r"unknown key 'optim.learning_rate' \(did you mean optim.lr\?\)"),
        ("train: {percent: 0.4}\n", r"\(did you mean data.noise.rate\?\)"),  # the official ELR config's noise rate
        ("train: {milestone: [40]}\n", r"\(did you mean schedule.milestones\?\)"),  # was train.compile_step
        ("train: {name: x}\n",
         r"\(did you mean data.name or loss.name or model.name or optim.name or schedule.name\?\)"),
        ("data: {root: 2024}\n", r"""data.root must be str, got 2024; quote it to keep it as text, e.g. """
                                  r"""--set "data.root='2024'"$"""),
        # made absolute, an empty path was the current folder: a CIFAR download advised into it, a cache written there
        ("data: {name: cifar10, root: ''}\n", r"data.root = '' is an empty path \(an unset shell variable\?\); give "
                                              r"the path, or drop data.root$"),
        ("data: {name: mri, mri: {cache: disk, cache_dir: ' '}}\nmodel: {name: widened_cnn3d}\n",
         r"data.mri.cache_dir = ' ' is an empty path"),
        ("data: {root: yes}\n", r"""data.root must be str, got True; .*e.g. --set "data.root='...'"$"""),
        # YAML's true is 1 to Python, but no number: a count or rate given as one is a slip, not 1
        ("optim: {lr: true}\n", r"optim.lr must be float, got True$"),
        ("train: {epochs: yes}\n", r"train.epochs must be int, got True$"),
        ("data: {name: mri, mri: {classes: [0, 1]}}\nmodel: {name: widened_cnn3d}\n",
         r"data.mri.classes\[0\] must be str, got 0; quote it to keep it as text, e.g. '0'$"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_each_name_known_from_other_code_points_to_a_setting() -> None:
    """A setting renamed here would otherwise leave a suggestion of a key that is refused in turn."""
    from elr_mri.config.coercion import _KNOWN_AS

    assert set(_KNOWN_AS.values()) <= set(dotted_keys(RunConfig))
    assert not set(_KNOWN_AS) & {key.rsplit(".", 1)[-1] for key in dotted_keys(RunConfig)}


def test_a_key_in_another_section_is_pointed_to_its_own() -> None:
    """Every setting written under a section it is not in is suggested where it is: a near spelling in the wrong
    section took precedence (`train.milestones`: "did you mean train.compile_step?", `eta_min` at the top: "train?")."""
    keys = dotted_keys(RunConfig)
    sections = sorted({key.rpartition(".")[0] for key in keys if key.rpartition(".")[0] in keys} | {""})
    misled = []
    for key in keys:
        section, _, name = key.rpartition(".")
        for other in sections:
            if other == section or f"{other}.{name}".lstrip(".") in keys:
                continue
            raw: dict = {}
            section_node = functools.reduce(lambda node, part: node.setdefault(part, {}), filter(None, other.split(".")), raw)
            section_node[name] = 1
            with pytest.raises(ConfigError) as info:
                config_from_dict(raw)
            suggested = re.search(r"\(did you mean (.*)\?\)", str(info.value))
            if not suggested or key not in suggested.group(1).split(" or "):
                misled.append(f"{other or 'top level'}: {name} → {suggested and suggested.group(1)}")
    assert not misled


def test_every_refused_set_is_named_in_one_line(tmp_path: Path) -> None:
    """Two mistakes on one command line (a misspelt key, a value of the wrong type or range, a number in another
    base) are both named, so a second attempt does not meet the second; one mistake, or one in the file itself,
    reads as before, and --set values that are only wrong together are not blamed one by one."""
    path = _write(tmp_path, "seed: 0\ntrain: {epochs: 3}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.epoch=3", "train.threads=1", "optim.lr=abc", "train.batch_size=010"])
    assert str(info.value) == (
        f"{path}: 3 --set values are refused: 1) --set 'train.epoch=3': unknown key 'train.epoch' (did you mean "
        "train.epochs?); allowed in train: batch_size, channels_last, checkpoint_seconds, compile, compile_mode, "
        "compile_step, cudnn_benchmark, device, epochs, eval_batch_size, fused_optimizer, loader, phase_grid_convs, "
        "precision, progress, select, tensorboard, threads; 2) --set 'optim.lr=abc': optim.lr must be float, got "
        "'abc'; 3) --set 'train.batch_size=010': 010 reads as 8 in YAML, which takes a leading 0 as octal, 0x as hex, "
        "0b as binary and a ':' as base 60; write the number in decimal, e.g. 10, or quote it if it is text")
    with pytest.raises(ConfigError, match=r"with --set train.threads=1 optim.lr=abc: optim.lr must be float"):
        load_config(path, ["train.threads=1", "optim.lr=abc"])
    with pytest.raises(ConfigError, match=r": 2 --set values are refused: 1\) --set 'optim.lrr=0.1': unknown key "
                                          r"'optim.lrr' .*; 2\) --set 'loss.beta=1.5': loss.beta = 1.5 must be in "
                                          r"\[0, 1\): at 1 the ELR targets .*, or 0.9 on CIFAR-100$"):
        load_config(path, ["optim.lrr=0.1", "loss.beta=1.5"])
    broken = _write(tmp_path, "seed: 0\ntrain: {epochz: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.epochz'") as info:
        load_config(broken, ["optim.lrr=1", "optim.lr=abc"])
    assert "--set values are refused" not in str(info.value)
    with pytest.raises(ConfigError) as info:  # fine alone, refused together: the checks of the whole config say why
        load_config(path, ["schedule.name=cosine", "schedule.eta_min=1.0"])
    assert "--set values are refused" not in str(info.value)


def test_missing_file_and_bad_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(_write(tmp_path, "seed: 0\n"), ["train.epochs"])
    project = tmp_path / "project"  # `--config .` there: an example from configs/, none from a hidden folder
    for folder in ("configs/digits", ".venv/lib"):
        (project / folder).mkdir(parents=True)
    (project / ".venv" / "lib" / "schema.yaml").write_text("a: 1\n")
    (project / "configs" / "digits" / "elr.yaml").write_text("seed: 0\n")
    with pytest.raises(ConfigError, match=r"is a folder; pass a YAML file, e.g. .*project/configs/digits/elr.yaml$"):
        load_config(project)


def test_a_spaced_set_and_a_stray_argument_are_one_line_naming_the_command(cli_in_process) -> None:
    spaced = cli_in_process("train", "--config", "configs/digits/elr_sym40.yaml", "--set", "train.epochs", "2")
    assert spaced.returncode == 2 and spaced.stdout == ""
    assert spaced.stderr == ("elr-mri train: unrecognized arguments: 2 (--set takes KEY=VALUE with no space: "
                             "--set train.epochs=2)\n")
    stray = cli_in_process("evaluate", "--run", "runs/x", "--bogus")
    assert (stray.returncode, stray.stderr) == (2, "elr-mri evaluate: unrecognized arguments: --bogus\n")
    assert cli_in_process("evaluate", "--run", "runs/x", "--epochs", "3").stderr == (
        "elr-mri evaluate: unrecognized arguments: --epochs 3\n")  # no --set to point to
    for typed, hint in ((["--set", "train.epochs=1", "train.threads=1"], "train.threads=1 (each --set takes one "
                                                                         "KEY=VALUE: --set train.threads=1)"),
                        (["--epochs", "3"], "--epochs 3 (settings go through --set: --set train.epochs=3)"),
                        (["--batch-size=4"], "--batch-size=4 (settings go through --set: --set train.batch_size=4)")):
        result = cli_in_process("train", "--config", "configs/digits/elr_sym40.yaml", *typed)
        assert (result.returncode, result.stderr) == (2, f"elr-mri train: unrecognized arguments: {hint}\n")


def test_a_misspelt_option_is_named_not_taken_for_a_missing_required_one(cli_in_process) -> None:
    """argparse alone would say `--config`/`--run` is required, hiding the typo that left it out."""
    for typed, expected in ((["train", "--confg", "x.yaml"], "elr-mri train: unrecognized arguments: --confg x.yaml "
                                                               "(did you mean --config?)\n"),
                            (["evaluate", "--rn=runs/x"], "elr-mri evaluate: unrecognized arguments: --rn=runs/x "
                                                          "(did you mean --run?)\n"),
                            (["train", "--config", "x.yaml", "--ot", "runs/y"],
                             "elr-mri train: unrecognized arguments: --ot runs/y (did you mean --out?)\n")):
        result = cli_in_process(*typed)
        assert (result.returncode, result.stderr) == (2, expected)


def test_the_option_scan_leaves_values_help_and_abbreviations_to_argparse() -> None:
    import argparse

    from preprocess.arguments import unknown_option

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--set", action="append")
    for typed in (["--run", "--my run"], ["--ru", "x"], ["--run=x", "--set", "--odd=1"], ["--confg", "-h"],
                  ["--run", "x", "--", "--later"], ["--run", "-0.5"]):
        assert unknown_option(parser, typed) is None, typed
    assert unknown_option(parser, ["--rn", "x", "--bad"]) == ["--rn", "x"]
    assert unknown_option(parser, ["--rn=x"]) == ["--rn=x"]


def test_the_option_scan_names_an_unknown_option_alone_where_no_value_of_its_own_follows() -> None:
    """A value typed with '=' is the option's own and an option after it is not its value; an unknown first option
    is no '--set' value because the last argument is '--set' (the one "before" it, read from the end). A suggestion
    is for a near miss only; '--he', argparse's abbreviation of --help, asks for help before any complaint."""
    import argparse

    from preprocess.arguments import near_option, unknown_option, values_without_option

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--set", action="append")
    assert unknown_option(parser, ["--bad", "--set"]) == ["--bad"]
    assert unknown_option(parser, ["--rn=x", "y"]) == ["--rn=x"]
    assert near_option(parser, "--rnu") == " (did you mean --run?)" and near_option(parser, "--xyn") == ""
    assert values_without_option(parser, ["x.yaml", "--he"]) is None


def test_an_empty_config_is_refused_with_settings_given_too(tmp_path: Path) -> None:
    """`--set` on an empty file would otherwise train the built-in defaults (digits, CE, no noise)."""
    with pytest.raises(ConfigError, match="the config is empty"):
        load_config(_write(tmp_path, ""), ["train.progress=false"])


def test_a_section_set_as_a_mapping_keeps_its_other_keys(tmp_path: Path) -> None:
    """As one `--set` per key: `optim={lr: 0.1}` must not put weight decay back to its default."""
    path = _write(tmp_path, "optim: {lr: 0.02, weight_decay: 1e-4}\ndata: {noise: {mode: pair, rate: 0.4}}\n")
    cfg = load_config(path, ["optim={lr: 0.1}", "data={noise: {rate: 0.2}}"])
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (0.1, 1e-4)
    assert (cfg.data.noise.mode, cfg.data.noise.rate) == ("pair", 0.2)


def test_a_word_given_to_a_section_suggests_the_setting_it_picks(tmp_path: Path) -> None:
    """`--set data.noise=symmetric` said only "must be a mapping, got str": the setting meant is data.noise.mode."""
    path = _write(tmp_path, "loss:\n  name: elr\n")
    for setting, meant in (("data.noise=symmetric", "--set data.noise.mode=symmetric"), ("loss=ce", "--set loss.name=ce"),
                           ("model=widened_cnn3d", "--set model.name=widened_cnn3d"),  # name: any text, not a choice
                           ("data=cifar10", "--set data.name=cifar10")):  # data.normalization's choice too: name picks
        with pytest.raises(ConfigError, match=rf"{setting}: {setting.split('=')[0]} must be a mapping, got str "
                                              rf"\(did you mean {meant}\?\)$"):
            load_config(path, [setting])
    for setting in ("train=auto", "data.noise=0.4"):  # eight train settings take auto; a number picks no mode
        with pytest.raises(ConfigError, match=r"must be a mapping, got (str|float)$"):
            load_config(path, [setting])
    with pytest.raises(ConfigError, match=r"data.noise must be a mapping, got str \(did you mean data.noise: "
                                          r"\{mode: pair\}\?\)$"):
        load_config(_write(tmp_path, "data:\n  noise: pair\n"))  # in the file: said as the file writes it


def test_sce_with_one_of_its_two_terms_weighted_0_loads() -> None:
    """Only both weights at 0 leave nothing to train: reverse cross-entropy alone (sce_alpha 0) or CE alone is a loss."""
    for alpha, beta in ((0.0, 1.0), (1.0, 0.0)):
        loss = config_from_dict({"loss": {"name": "sce", "sce_alpha": alpha, "sce_beta": beta}}).loss
        assert (loss.sce_alpha, loss.sce_beta) == (alpha, beta)


def test_the_widened_cnn_takes_a_crop_of_its_smallest_size() -> None:
    """MIN_INPUT_SIZE is the smallest crop it shrinks to 2 voxels an axis: allowed, one voxel less refused."""
    def crop(size: int) -> dict:
        return {"data": {"name": "mri", "mri": {"manifest": "m.csv", "crop_size": [size] * 3}},
                "model": {"name": "widened_cnn3d"}}

    assert config_from_dict(crop(MIN_INPUT_SIZE)).data.mri.crop_size == [MIN_INPUT_SIZE] * 3
    with pytest.raises(ConfigError, match="too small for the widened CNN"):
        config_from_dict(crop(MIN_INPUT_SIZE - 1))


def test_settings_at_the_edge_of_what_trains_load() -> None:
    """ELR at λ 0 is cross-entropy (an ablation); ELR+'s running average with ema_decay 1 is the mean of every step's
    weights (its weight 1 − 1/(n + 1) stays below 1), which the refusal of 1 with the ramp suggests: each loads."""
    assert config_from_dict({"loss": {"name": "elr", "lam": 0.0}}).loss.lam == 0.0
    plus = config_from_dict({"loss": {"name": "elr_plus"},
                             "elr_plus": {"ema_schedule": "running_average", "ema_decay": 1.0}}).elr_plus
    assert (plus.ema_schedule, plus.ema_decay) == ("running_average", 1.0)


def test_the_largest_64_bit_integer_is_held() -> None:
    """2**63 - 1 is the largest integer torch and numpy hold, so it is no overflow; one more is refused."""
    assert config_from_dict({"model": {"hidden": 2**63 - 1}}).model.hidden == 2**63 - 1
    with pytest.raises(ConfigError, match="beyond the 64-bit integers"):
        config_from_dict({"model": {"hidden": 2**63}})


def test_a_mistake_made_by_set_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run.yaml with --set loss.lamm=3: unknown key 'loss.lamm'"):
        load_config(_write(tmp_path, "loss:\n  name: elr\n"), ["loss.lamm=3"])


@pytest.mark.parametrize(("settings", "message"), [
    (["seed=0123"], r"^--set 'seed=0123': 0123 reads as 83 in YAML, .*write the number in decimal, e.g. 123, or quote"),
    (["optim.lr=1:30"], r"^--set 'optim.lr=1:30': 1:30 reads as 90 in YAML"),
    (["train.epochs=-0b10"], r"^--set 'train.epochs=-0b10': -0b10 reads as -2 in YAML, .*in decimal, or quote"),
    (["train={epochs: 1, epochs: 2}"],  # as in a file, not the last one silently
     r"^--set 'train={epochs: 1, epochs: 2}': the key 'epochs' is given twice in one section; keep one$"),
    (["train={null: 2, foo: 1}"], r"unknown key 'train.foo'; allowed in train"),  # keys as text: no TypeError sorting
    (["loss.name.x=1"], r"^--set 'loss.name.x=1': 'name' is not a section$"),  # set in the file: not a null one
    (["loss.lambda=1"], r"with --set loss.lambda=1: unknown key 'loss.lambda' \(did you mean loss.lam\?\)"),
    (["data.root=2024"], r"--set data.root=2024: data.root must be str, got 2024; quote it to keep it as text"),
    # read as null, `--set model.pretrained_checkpoint=$WEIGHTS` with WEIGHTS unset trained from scratch silently
    (["model.pretrained_checkpoint="], r"^--set 'model.pretrained_checkpoint=': no value after '=' \(an unset shell "
                                       r"variable\?\); give one, or write null where the setting may be left unset$"),
    (["data.mri.splits= "], r"^--set 'data.mri.splits= ': no value after '='"),
    # a YAML comment: the path cut short at it, or null (as an empty value) where it comes first
    (["data.root=/scans #2"], r"""^--set 'data.root=/scans #2': YAML reads the text from its # on as a comment, """
                              r"""leaving '/scans'; quote the value to keep it, e.g. --set "data.root='/scans #2'"$"""),
    (["data.mri.splits=#2.csv"], r"^--set 'data.mri.splits=#2.csv': YAML reads .* comment, leaving nothing; quote"),
    (["optim.lr=0.1 #x"], r"^--set 'optim.lr=0.1 #x': YAML reads .* comment, leaving 0.1; drop the comment$"),
    # a tab pasted from a table: "not valid YAML (found character '\t' ...); quote it", which would keep it
    (["optim.lr=0.1\t"], r"^--set 'optim.lr=0.1\\t': a tab, where YAML takes only spaces .*; replace it with spaces$"),
])
def test_a_set_value_is_read_as_a_file_is(tmp_path: Path, settings: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(_write(tmp_path, "loss:\n  name: elr\n"), settings)
    assert "\n" not in str(info.value)


def test_numbers_in_decimal_load_and_a_null_section_takes_a_set(tmp_path: Path) -> None:
    """Underscores between digits are accepted (they change no value), as are 0, -0 and floats such as 0.05; a section
    left empty in the file (`data:` with nothing under it) is one `--set` may fill."""
    cfg = load_config(_write(tmp_path, "seed: 1_000\ndata:\noptim: {lr: 0.05, momentum: 0}\n"),
                      ["data.name=digits", "data.noise.seed=-0", "data.split_seed=0", "optim.weight_decay=00.5"])
    assert (cfg.seed, cfg.data.name, cfg.data.noise.seed, cfg.data.split_seed) == (1000, "digits", 0, 0)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.05, 0.0, 0.5)


def test_keys_that_are_not_text_are_named_as_text() -> None:
    """A dict not read by the config loader (a run's record, a caller's) may hold keys of any type."""
    with pytest.raises(ConfigError, match=r"unknown key '1'; allowed in top level"):
        config_from_dict({1: 2})
    with pytest.raises(ConfigError, match=r"unknown key 'train.None'; allowed in train"):
        config_from_dict({"train": {None: 2, "foo": 1}})


def test_unreadable_override_values_and_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--set 'train.epochs=\[1': the value is not valid YAML"):
        load_config(_write(tmp_path, "seed: 0\n"), ["train.epochs=[1"])
    with pytest.raises(ConfigError, match=r"the value is not valid YAML \(the control character U\+0007, .*\)") as info:
        load_config(_write(tmp_path, "seed: 0\n"), ["train.epochs=\a3"])
    assert "\n" not in str(info.value)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("loss:\n  name: elr  # λ\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=rf"{latin}: not UTF-8 text"):
        load_config(latin)


def test_a_run_directory_config_starts_a_new_run(tmp_path: Path) -> None:
    """The engine's config.yaml records the selection rule in words; loading it as a config drops that."""
    cfg = load_config(_write(tmp_path, "selection_rule: best accuracy on the validation split\nseed: 0\n"), ["loss.lam=2"])
    assert cfg.loss.lam == 2.0


def test_resume_may_change_how_a_run_runs_but_not_what_it_computes(tmp_path: Path) -> None:
    path = _write(tmp_path, "loss:\n  name: elr\n  lam: 3\ndata:\n  noise: {mode: symmetric, rate: 0.4}\n")
    saved = load_config(path)
    refuse_resume_changes(saved, load_config(path, ["train.epochs=200", "train.precision=bf16", "loss.lam=3"]),
                          tmp_path)
    assert first_resume_change(saved, load_config(path, ["train.epochs=200"])) is None
    assert first_resume_change(saved, load_config(path, ["seed=1", "train.epochs=9", "loss.lam=1"])) == ("seed", 0, 1)
    for change, key in (("loss.lam=1", "loss.lam"), ("data.noise.rate=0.2", "data.noise.rate"), ("seed=1", "seed")):
        with pytest.raises(ConfigError, match=rf"was trained with {key} = .*start a new run") as info:
            refuse_resume_changes(saved, load_config(path, [change]), tmp_path / "my run")
        assert "\n" not in str(info.value)
        command = str(info.value).split("start a new run for ")[1].split(": ", 1)[1]
        assert shlex.split(command)[:4] == ["elr-mri", "train", "--config", str(tmp_path / "my run" / "config.yaml")]


def test_a_resume_may_move_the_mri_blur_between_loader_and_device() -> None:
    """`data.mri.blur_on` says where the same blur runs (equal within 2e-6), as `train.loader` says where batches are
    built: a run started on a GPU (auto: the device) may go on with `loader` on a machine without one."""
    saved = config_from_dict({"data": {"name": "mri", "mri": {"manifest": "/cohort/adni.csv", "blur_on": "device"}},
                              **MRI_MODEL})
    for where in ("loader", "auto"):
        resumed = config_from_dict({"data": {"name": "mri", "mri": {"manifest": "/cohort/adni.csv", "blur_on": where}},
                                    **MRI_MODEL})
        assert first_resume_change(saved, resumed) is None


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_shipped_configs_validate(path: Path) -> None:
    load_config(path)


def test_a_run_records_its_paths_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict({"data": {"name": "mri", "root": "/data/images", "mri": {"manifest": "cohort/adni.csv"}},
                            "model": {"name": "widened_cnn3d", "pretrained_checkpoint": "~/best.pt"}})
    absolute = with_absolute_paths(cfg)
    assert absolute.data.mri.manifest == str(tmp_path / "cohort" / "adni.csv")
    assert absolute.model.pretrained_checkpoint == str(Path.home() / "best.pt")
    assert absolute.data.root == "/data/images" and absolute.data.mri.splits is None
    assert cfg.data.mri.manifest == "cohort/adni.csv"  # the given config is left as it was
    for key in PATH_KEYS:  # each names a setting that exists
        functools.reduce(getattr, key.split("."), cfg)


def test_a_resume_compares_paths_as_the_files_they_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = config_from_dict({"data": {"name": "mri", "mri": {"manifest": "cohort/adni.csv"}}, **MRI_MODEL})
    refuse_resume_changes(with_absolute_paths(relative), relative, "runs/x")  # as recorded vs as given: same
    elsewhere = config_from_dict({"data": {"name": "mri", "mri": {"manifest": "other/adni.csv"}}, **MRI_MODEL})
    with pytest.raises(ConfigError, match="data.mri.manifest"):
        refuse_resume_changes(with_absolute_paths(relative), elsewhere, "runs/x")


@pytest.mark.parametrize(("settings", "message"), [
    (["data.noise.rate=0.4"], r"data.noise.rate = 0.4 is not read by data.noise.mode = none; set a mode"),
    (["data.noise.mode=transition", "data.noise.transition_matrix=t.npy", "data.noise.rate=0.2"],
     r"data.noise.rate = 0.2 is not read by data.noise.mode = transition"),
    (["data.noise.mode=symmetric"], r"data.noise.mode = symmetric with data.noise.rate = 0 changes no label"),
    (["data.noise.mode=symmetric", "data.noise.rate=0.4", "data.noise.human_labels=h.npz"],
     r"data.noise.human_labels is set but data.noise.mode = symmetric does not read it; set data.noise.mode: human"),
    (["data.noise.transition_matrix=t.npy"], r"data.noise.transition_matrix is set but data.noise.mode = none"),
    (["data.noise.mode=symmetric", "data.noise.rate=0.4", "data.noise.human_key=aggre_label"],  # trained sym 40%
     r"data.noise.human_key = aggre_label is not read by data.noise.mode = symmetric; set data.noise.mode: human "
     r"with data.noise.human_labels"),
])
def test_noise_settings_the_mode_does_not_read_are_refused(tmp_path: Path, settings: list[str], message: str) -> None:
    """`--set data.noise.rate=0.4` without a mode would train on the labels as given while looking noisy."""
    cfg = load_config(_write(tmp_path, "loss:\n  name: ce\n"), settings)  # loads: a saved run's settings must
    with pytest.raises(ConfigError, match=message) as info:  # but a new run does not start
        check_noise_settings(cfg.data.noise)
    assert "\n" not in str(info.value)


def test_human_label_files_are_refused_for_an_mri_run(tmp_path: Path) -> None:
    """A CIFAR-N file on an MRI run gave the scans its labels in manifest order, whatever its length, without a word;
    image data sets still read it by each image's index in the release."""
    human = ["data.noise.mode=human", "data.noise.human_labels=h.npz"]
    mri = "data:\n  name: mri\n  mri:\n    manifest: m.csv\nmodel:\n  name: widened_cnn3d\n"
    cfg = load_config(_write(tmp_path, mri), human)
    with pytest.raises(ConfigError, match=r"^data.noise.mode = human reads a CIFAR-10N / CIFAR-100N label file by each "
                                          r"image's index in its release, which an MRI cohort has not; give the noisy "
                                          r"diagnoses in the manifest's diagnosis column"):
        check_noise_fits_data(cfg.data)
    check_noise_fits_data(load_config(_write(tmp_path, "data:\n  name: cifar10\n  root: data\n"), human).data)


@pytest.mark.parametrize(("data", "model", "message"), [
    ("mri", "mlp", "model.name = mlp does not take the 3D volumes data.name = mri gives; choose widened_cnn3d, "),
    ("cifar10", "resnet18_3d", "model.name = resnet18_3d does not take the 2D images data.name = cifar10 gives"),
])
def test_a_model_of_the_other_dimension_is_refused(tmp_path: Path, data: str, model: str, message: str) -> None:
    """mlp on MRI data failed at its first step (it takes no age), a 3D model on images at its first convolution."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_write(tmp_path, f"data:\n  name: {data}\nmodel:\n  name: {model}\n"))


def test_every_setting_says_what_it_does() -> None:
    """The schema is the settings' reference (README: "A config is YAML with the sections of schema.py"), and no
    command lists them: each setting carries a comment, on its line or on the lines just above it."""
    source = Path(schema.__file__).read_text(encoding="utf-8")
    lines = source.splitlines()
    commented = {token.start[0] for token in tokenize.generate_tokens(io.StringIO(source).readline)
                 if token.type == tokenize.COMMENT}
    bare = []
    for section in ast.walk(ast.parse(source)):
        if isinstance(section, ast.ClassDef) and dataclasses.is_dataclass(getattr(schema, section.name)):
            for setting in section.body:
                if not isinstance(setting, ast.AnnAssign) or "Config" in ast.unparse(setting.annotation):
                    continue  # a docstring, or a section (its class docstring says what it is)
                above = setting.lineno - 1
                if not commented & set(range(setting.lineno, setting.end_lineno + 1)) and not (
                        above in commented and lines[above - 1].lstrip().startswith("#")):
                    bare.append(f"{section.name}.{ast.unparse(setting.target)}")
    assert not bare


def test_loading_a_config_imports_no_torch() -> None:
    """The checks read which models take volumes and the widened CNN's smallest crop from the models' light registry:
    an MRI config loads, and a crop too small for the widened CNN is refused, without torch's import (seconds)."""
    code = ("import sys; from elr_mri.config import ConfigError, config_from_dict, load_config; "
            "load_config('configs/adni/ce.yaml')\n"
            "try:\n config_from_dict({'data': {'name': 'mri', 'mri': {'crop_size': [70, 96, 96]}}, "
            "'model': {'name': 'widened_cnn3d'}})\nexcept ConfigError as error: print(error)\n"
            "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True,
                            text=True, check=True)
    assert result.stdout.splitlines() == ["<config>: data.mri.crop_size = [70, 96, 96] is too small for the widened "
                                          "CNN, which needs at least 71 voxels an axis; enlarge the crop (preprocess "
                                          "at a finer resolution if the scans are smaller)", "[]"]


def test_train_refuses_settings_before_torch_loads(tmp_path: Path) -> None:
    """A noise rate its mode does not read, flips without augmentation and a resume that changes the loss were refused
    inside the training loop's module, after torch's import (7-15 s on a busy 2-core machine); config errors were
    answered in 0.4 s."""
    (tmp_path / "run").mkdir()
    shutil.copy(Path(__file__).parents[1] / "configs" / "adni" / "elr.yaml", tmp_path / "run" / "config.yaml")
    code = ("import sys; from elr_mri.config import load_config; from elr_mri.engine.start import train\n"
            "for settings, resume in (['data.noise.rate=0.4'], False), (['data.augment=false', 'data.mri.flip=true'], "
            "False), (['loss.lam=1'], True):\n"
            " try:\n  train(load_config('configs/adni/elr.yaml', settings), sys.argv[1], resume=resume)\n"
            " except ValueError as error: print(str(error).split(';')[0])\n"
            "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], cwd=Path(__file__).parents[1],
                            capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [
        "data.noise.rate = 0.4 is not read by data.noise.mode = none",
        "data.mri.flip not read with data.augment: false (training then uses the centre crop as it is)",
        f"{tmp_path / 'run'} was trained with loss.lam = 3.0", "[]"], result.stderr[-2000:]


def test_a_config_is_read_as_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """Under an ASCII locale (LC_ALL=C without Python's coercion to UTF-8) the shipped configs, whose comments hold
    "×" and "³", were refused as "not UTF-8 text; save the config as UTF-8": the locale's encoding read them."""
    path = tmp_path / "run.yaml"
    path.write_text("# 96³ crops, ×8\ndata: {name: mri, mri: {manifest: adni.csv, classes: [CN, Alzheimer’s]}}\n"
                    "model: {name: widened_cnn3d}\n", encoding="utf-8")
    code = f"from elr_mri.config import load_config; print(ascii(load_config({str(path)!r}).data.mri.classes))"
    env = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], env=env, capture_output=True,
                            text=True)
    assert result.stdout == "['CN', 'Alzheimer\\u2019s']\n", result.stderr


def test_a_refused_config_is_answered_before_torch_loads(tmp_path: Path) -> None:
    """`elr-mri train` imported the engine, and so torch (4 CPU-s, 15 s on a busy 2-core machine), before it read
    the config: every mistake in one waited that long for its one line."""
    config = _write(tmp_path, "loss: {lambda: 1}\n")
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "elr_mri", "train", "--config", str(config),
                             "--out", str(tmp_path / "run")], capture_output=True, text=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert result.returncode == 2 and "unknown key 'loss.lambda'" in result.stderr.splitlines()[-1]
    assert "elr_mri.config" in imported and "torch" not in imported


@pytest.mark.parametrize("command", [[], ["train"]])
def test_help_imports_no_torch(command: list[str]) -> None:
    """`elr-mri --help` and `elr-mri train --help` answer at once: torch loads only in the handler that needs it."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "elr_mri", *command, "--help"],
                            capture_output=True, text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "elr_mri.cli" in imported and not imported & {"torch", "monai", "numpy"}


@pytest.mark.parametrize(("settings", "message"), [
    (["data.mri.flip=true"], r"data.mri.flip not read with data.augment: false"),
    (["data.mri.flip=true", "data.mri.max_shift=4"], r"data.mri.flip and data.mri.max_shift not read"),
    (["data.mri.max_shift=0"], r"data.mri.max_shift not read"),
])
def test_mri_augmentations_without_augment_are_refused(tmp_path: Path, settings: list[str], message: str) -> None:
    augmented = "data:\n  name: mri\n  mri: {manifest: adni.csv}\nmodel:\n  name: widened_cnn3d\n"
    cfg = load_config(_write(tmp_path, augmented.replace("name: mri\n", "name: mri\n  augment: false\n")), settings)
    with pytest.raises(ConfigError, match=message):
        check_augment_settings(cfg.data)
    check_augment_settings(load_config(_write(tmp_path, augmented), settings).data)  # augmented: fine


def test_yaml_merge_keys_and_a_checkpoint_only_at_the_end_still_load(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "train:\n  <<: {epochs: 2, batch_size: 8}\n  batch_size: 16\n"),
                      ["train.checkpoint_seconds=.inf"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.checkpoint_seconds) == (2, 16, float("inf"))


def test_every_loss_and_elr_plus_setting_is_read_by_some_loss() -> None:
    """A setting added to LossConfig or ELRPlusConfig must be listed under the losses that read it, or every --set of
    it would be called unread."""
    listed = set().union(*LOSS_READS.values())
    settings = {f"loss.{f.name}" for f in dataclasses.fields(LossConfig) if f.name != "name"}
    settings |= {f"elr_plus.{f.name}" for f in dataclasses.fields(ELRPlusConfig)}
    assert listed == settings
    assert set(LOSS_READS) == set(typing.get_args(typing.get_type_hints(LossConfig)["name"]))


def test_settings_the_runs_loss_does_not_read_are_named_with_the_losses_that_do() -> None:
    def unread(loss: str, *sets: str) -> list[tuple[str, list[str]]]:
        found = unread_overrides(config_from_dict({"loss": {"name": loss}}), list(sets))
        assert all(chooser == "loss.name" for _, chooser, _ in found)
        return [(key, readers) for key, _, readers in found]

    assert unread("ce", "loss.gce_q=0.5", "train.epochs=3", "loss.name=ce") == [("loss.gce_q", ["gce"])]
    assert unread("elr_plus", "loss.lam_ramp_steps=100", "loss.lam=2", "elr_plus.coef_step=5") == [
        ("loss.lam_ramp_steps", ["elr"])]
    assert unread("elr", "elr_plus.mixup_alpha=0", "elr_plus={ema_decay: 0.9}", "loss.beta=0.9") == [
        ("elr_plus.mixup_alpha", ["elr_plus"]), ("elr_plus.ema_decay", ["elr_plus"])]
    assert unread("sce", "loss.lam=1", "loss.sce_alpha=0.2") == [("loss.lam", ["elr", "elr_plus"])]
    assert unread("gce", "loss.gce_q=0.5") == []
    assert unread("ce", "loss={name: ce, gce_q: 0.5}", "loss.lam=1", "loss.lam=2") == [
        ("loss.gce_q", ["gce"]), ("loss.lam", ["elr", "elr_plus"])]  # a section's keys; each key once


def test_settings_the_runs_schedule_does_not_read_are_named_with_the_schedules_that_do() -> None:
    """`--set schedule.gamma=0.1` on a cosine run changed nothing without a word."""
    def unread(schedule: str, *sets: str) -> list[tuple[str, str, list[str]]]:
        return unread_overrides(config_from_dict({"schedule": {"name": schedule}}), list(sets))

    assert unread("cosine", "schedule.gamma=0.1", "schedule.eta_min=0", "schedule.name=cosine") == [
        ("schedule.gamma", "schedule.name", ["multistep"])]
    assert unread("constant", "schedule={t0: 5, milestones: [3]}") == [
        ("schedule.t0", "schedule.name", ["cosine_warm_restarts"]), ("schedule.milestones", "schedule.name", ["multistep"])]
    assert unread("multistep", "schedule.milestones=[3]", "schedule.gamma=0.5") == []
    assert set(SCHEDULE_READS) == set(typing.get_args(typing.get_type_hints(ScheduleConfig)["name"]))
    listed = set().union(*SCHEDULE_READS.values())
    assert listed == {f"schedule.{f.name}" for f in dataclasses.fields(ScheduleConfig) if f.name != "name"}


def test_settings_the_runs_model_does_not_read_are_named_with_the_models_that_do() -> None:
    """`--set model.widening=4` on a MONAI 3D baseline, or `model.hidden` on a ResNet, changed nothing without a word."""
    def unread(section: dict, *sets: str) -> list[tuple[str, str, list[str]]]:
        return unread_overrides(config_from_dict(section), list(sets))

    mri = {"data": {"name": "mri", "mri": {"manifest": "adni.csv"}}}
    assert unread({**mri, "model": {"name": "resnet18_3d"}}, "model.widening=4", "model.use_age=false") == [
        ("model.widening", "model.name", ["widened_cnn3d"]), ("model.use_age", "model.name", ["widened_cnn3d"])]
    assert unread({**mri, "model": {"name": "widened_cnn3d"}}, "model.widening=4", "model.pretrained_checkpoint=w.pt",
                  "model.hidden=64") == [("model.hidden", "model.name", ["mlp", "small_cnn"])]
    assert unread({"model": {"name": "mlp"}}, "model={hidden: 64}") == []
    assert set(MODEL_READS) == set(MODEL_NAMES)
    listed = set().union(*MODEL_READS.values())
    assert listed == {f"model.{f.name}" for f in dataclasses.fields(ModelConfig) if f.name != "name"}


def test_a_setting_another_one_switches_off_is_named_with_the_choices_that_read_it() -> None:
    """`--set train.compile_mode=max-autotune` with compile false, or a cache folder without the disk cache, changed
    nothing without a word."""
    def unread(section: dict, *sets: str) -> list[tuple[str, str, list[str]]]:
        return unread_overrides(config_from_dict(section), list(sets))

    assert unread({"train": {"compile": False}}, "train.compile_mode=max-autotune") == [
        ("train.compile_mode", "train.compile", ["auto", "true"])]
    assert unread({"train": {"compile": "auto"}}, "train.compile_mode=default") == []
    mri = {"model": {"name": "widened_cnn3d"}}
    cohort = {"manifest": "adni.csv"}
    assert unread({"data": {"name": "mri", "mri": {**cohort, "cache": "memory"}}, **mri},
                  "data.mri.cache_dir=/tmp/c") == [("data.mri.cache_dir", "data.mri.cache", ["disk"])]
    assert unread({"data": {"name": "mri", "mri": {**cohort, "cache": "disk", "cache_dir": "/tmp/c"}}, **mri},
                  "data.mri.cache_dir=/tmp/c") == []
    assert unread({"data": {"name": "mri", "mri": cohort}, **mri}, "data.normalization=cifar10") == [
        ("data.normalization", "data.name", ["cifar10", "cifar100", "imagefolder", "clothing1m", "webvision"])]
    assert unread({"data": {"name": "cifar10", "root": "data"}}, "data.normalization=measured") == []
    # the DataLoader's workers: none where the batches come from the device (auto on images held in memory)
    assert unread({"data": {"name": "cifar10", "root": "data"}}, "data.num_workers=4") == [
        ("data.num_workers", "train.loader", ["dataloader"])]
    assert unread({"data": {"name": "clothing1m", "root": "data"}}, "data.num_workers=4") == []  # read from files
    assert unread({"data": {"name": "digits"}, "train": {"loader": "dataloader"}}, "data.num_workers=4") == []
    assert unread({"data": {"name": "mri", "mri": cohort}, **mri}, "data.num_workers=4") == []
    # Clothing1M validates on its clean list: `--set data.val_fraction=0.2` held nothing out, without a word
    assert unread({"data": {"name": "clothing1m", "root": "data"}}, "data.val_fraction=0.2") == [
        ("data.val_fraction", "data.name", ["digits", "cifar10", "cifar100", "imagefolder", "webvision", "mri"])]
    assert unread({"data": {"name": "webvision", "root": "data"}}, "data.val_fraction=0.2") == []
    assert unread({"data": {"name": "mri", "mri": cohort}, **mri}, "data.val_fraction=0.2") == []
    # digits come with sklearn, a cohort's scans are the manifest's paths: a data root there trained them silently
    images = ["cifar10", "cifar100", "imagefolder", "clothing1m", "webvision"]
    assert unread({"data": {"name": "digits"}}, "data.root=data/cifar10") == [("data.root", "data.name", images)]
    assert unread({"data": {"name": "mri", "mri": cohort}, **mri}, "data.root=data") == [
        ("data.root", "data.name", images)]
    assert unread({"data": {"name": "cifar10", "root": "data"}}, "data.root=/data") == []


def test_a_split_setting_a_splits_file_overrides_is_named_with_that_file() -> None:
    """With data.mri.splits set, `--set data.mri.test_fraction=...`, data.val_fraction and data.split_seed changed
    nothing without a word; the seed still draws a training or test subset."""
    from elr_mri.commands.train import _unread_setting_notes

    given = {"data": {"name": "mri", "mri": {"manifest": "manifest.csv", "splits": "splits.csv"}},
             "model": {"name": "widened_cnn3d"}}
    sets = ["data.mri.test_fraction=0.3", "data.val_fraction=0.2", "data.split_seed=3"]
    assert _unread_setting_notes(config_from_dict(given), sets) == [
        f"note: --set {key} changes nothing in this run: data.mri.splits is splits.csv, and only a run without "
        "data.mri.splits reads it" for key in ("data.mri.test_fraction", "data.val_fraction", "data.split_seed")]
    subset = {**given, "data": {**given["data"], "train_subset": 6}}
    assert [key for key, _, _ in unread_overrides(config_from_dict(subset), sets)] == [
        "data.mri.test_fraction", "data.val_fraction"]
    assert unread_overrides(config_from_dict({**given, "data": {"name": "mri", "mri": {"manifest": "manifest.csv"}}}),
                            sets) == []


def test_train_says_once_which_set_changes_nothing(tmp_path: Path, cli_in_process: Callable) -> None:
    def run() -> subprocess.CompletedProcess:
        return cli_in_process("train", "--config", str(DIGITS), "--out", str(tmp_path / "run"),
                              "--set", "loss.name=ce", "--set", "loss.lam=2", "--set", "loss.lam=3",
                              "--set", "train.epochs=1", "--set", "data.train_subset=200",
                              "--set", "train.progress=false")

    result = run()
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("note: --set") == 1
    assert "note: --set loss.lam changes nothing in this run: loss.name is ce, and only elr and elr_plus read it" \
        in result.stderr
    refused = run()  # into the run just made: the refusal alone, in one line
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "already holds a run" in refused.stderr
