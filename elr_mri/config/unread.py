"""Which settings a run reads: `--set` overrides that the chosen loss, schedule, model or data set ignores, found so that
the command can say so instead of letting them change nothing without a word."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import yaml

from elr_mri.config.schema import (
    HELD_IN_MEMORY, DataConfig, ELRPlusConfig, MRIDataConfig, RunConfig, TrainLoopConfig, setting_value,
)
from elr_mri.config.strict_yaml import parse_yaml_value
from elr_mri.models import MODEL_NAMES


# The settings of the loss and ELR+ sections each loss reads (`build_loss`, `build_method`); a run ignores the rest.
LOSS_READS: dict[str, frozenset[str]] = {
    "ce": frozenset(),
    "gce": frozenset({"loss.gce_q"}),
    "sce": frozenset({"loss.sce_alpha", "loss.sce_beta"}),
    "elr": frozenset({"loss.lam", "loss.beta", "loss.lam_ramp_steps", "loss.lam_start_steps", "loss.targets_dtype"}),
    "elr_plus": frozenset({"loss.lam", "loss.beta", "loss.targets_dtype",
                           *(f"elr_plus.{setting.name}" for setting in dataclasses.fields(ELRPlusConfig))}),
}


# The schedule settings each schedule reads (`lr_at`).
SCHEDULE_READS: dict[str, frozenset[str]] = {
    "constant": frozenset(),
    "multistep": frozenset({"schedule.milestones", "schedule.gamma"}),
    "cosine": frozenset({"schedule.eta_min"}),
    "cosine_warm_restarts": frozenset({"schedule.t0", "schedule.eta_min"}),
}
# The model settings each network reads (`build_model`): its width where it has one, and the widened CNN its age input;
# every one reads pretrained weights.
_MODEL_OWN_SETTINGS = {"mlp": {"model.hidden"}, "small_cnn": {"model.hidden"},
                       "widened_cnn3d": {"model.widening", "model.use_age"}}
MODEL_READS: dict[str, frozenset[str]] = {
    name: frozenset({"model.pretrained_checkpoint", *_MODEL_OWN_SETTINGS.get(name, ())}) for name in MODEL_NAMES
}
# The setting that chooses which of a section's settings a run reads, and what each choice reads.
_CHOSEN_BY: dict[str, tuple[str, dict[str, frozenset[str]]]] = {
    "loss": ("loss.name", LOSS_READS), "elr_plus": ("loss.name", LOSS_READS),
    "schedule": ("schedule.name", SCHEDULE_READS), "model": ("model.name", MODEL_READS),
}


def setting_text(value: Any) -> str:
    """A setting's value as YAML writes it (`true` and `null`, not Python's `True` and `None`), for messages and the
    choice tables."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _choices(section: type, name: str) -> list[str]:
    """A setting's allowed values as YAML writes them, read from its Literal type: a value added there is known here."""
    return [setting_text(value) for value in typing.get_args(typing.get_type_hints(section)[name])]


def _read_unless(key: str, chooser: str, section: type, name: str, off: tuple[str, ...]) -> tuple[str, dict]:
    """`key` is read under every choice of `chooser` (`section.name`) but those in `off`."""
    return chooser, {choice: frozenset() if choice in off else frozenset({key}) for choice in _choices(section, name)}


# Single settings another one switches off, with the choices (as YAML writes them) under which they are read.
_KEY_CHOSEN_BY: dict[str, tuple[str, dict[str, frozenset[str]]]] = {
    "train.compile_mode": _read_unless("train.compile_mode", "train.compile", TrainLoopConfig, "compile", ("false",)),
    "data.mri.cache_dir": _read_unless("data.mri.cache_dir", "data.mri.cache", MRIDataConfig, "cache",
                                       ("memory", "none")),
    # per-channel image statistics: digits are used as sklearn gives them, volumes scaled per scan
    "data.normalization": _read_unless("data.normalization", "data.name", DataConfig, "name", ("digits", "mri")),
    # digits come with sklearn and a cohort's scans are the manifest's paths: `--set data.root=data/cifar10` on the
    # digits config trained digits without a word
    "data.root": _read_unless("data.root", "data.name", DataConfig, "name", ("digits", "mri")),
    # Clothing1M validates on the release's clean list and holds nothing out (a new run without the list is refused)
    "data.val_fraction": _read_unless("data.val_fraction", "data.name", DataConfig, "name", ("clothing1m",)),
}
# What an MRI run draws its participant split with unless data.mri.splits gives it (`build_mri_data`); the seed also
# draws data.train_subset and data.test_subset.
_DRAW_THE_SPLIT = ("data.mri.test_fraction", "data.val_fraction", "data.split_seed")


def _chosen_by(cfg: RunConfig, key: str) -> tuple[str, dict[str, frozenset[str]]]:
    """The setting that chooses whether `cfg` reads `key` and what each of its choices reads; ("", {}) for none."""
    if key in _DRAW_THE_SPLIT and cfg.data.name == "mri" and cfg.data.mri.splits and not (
            key == "data.split_seed" and (cfg.data.train_subset is not None or cfg.data.test_subset is not None)):
        return "data.mri.splits", {"null": frozenset({key})}  # a file gives the splits: only a run without one draws
    if key == "data.num_workers":  # the DataLoader's; whether auto takes one depends on the data set
        off = ("device", "auto") if cfg.data.name in HELD_IN_MEMORY else ("device",)
        return _read_unless(key, "train.loader", TrainLoopConfig, "loader", off)
    return _KEY_CHOSEN_BY.get(key) or _CHOSEN_BY.get(key.split(".")[0], ("", {}))


def unread_overrides(cfg: RunConfig, overrides: list[str]) -> list[tuple[str, str, list[str]]]:
    """Each `--set` key whose setting `cfg` leaves unread, as (key, the setting that chose so, the choices of it that
    do read the key): `--set loss.gce_q=0.5` with loss.name ce, `--set schedule.gamma=0.1` with a cosine schedule,
    `--set train.compile_mode=...` with train.compile false, `--set data.num_workers=4` on CIFAR's device-resident
    batches would otherwise change nothing without a word.

    Reported, not refused as `checks` refuses ELR's λ schedule keys: a config's own λ and β stay in it when
    `--set loss.name=ce` makes the usual comparison run."""
    unread: dict[str, tuple[str, list[str]]] = {}  # each key once, however often it was set
    for key in _set_keys(overrides):
        chooser, readers = _readers(cfg, key)
        if chooser and setting_text(setting_value(cfg, chooser)) not in readers:
            unread[key] = (chooser, readers)
    return [(key, chooser, readers) for key, (chooser, readers) in unread.items()]


def reads_setting(cfg: RunConfig, key: str) -> bool:
    """Whether a run of `cfg` reads the setting `key` (dotted): False where its loss, schedule, model or data set
    leaves it unread (`loss.lam` on a CE run), so a changed value there changes nothing the run computes."""
    chooser, readers = _readers(cfg, key)
    return not chooser or setting_text(setting_value(cfg, chooser)) in readers


def _readers(cfg: RunConfig, key: str) -> tuple[str, list[str]]:
    """(the setting that chooses whether `cfg` reads `key`, the choices of it that do); ("", []) where every run
    reads `key`, or `key` is that choosing setting itself."""
    chooser, reads = _chosen_by(cfg, key)
    if not chooser or key == chooser:
        return "", []
    return chooser, [name for name, keys in reads.items() if any(read == key or read.startswith(key + ".")
                                                                  for read in keys)]


def _set_keys(overrides: list[str]) -> list[str]:
    """The dotted keys `--set` overrides give values to: a section given as a mapping (`--set 'loss={lam: 2}'`)
    gives each of its keys."""
    keys = []
    for item in overrides:
        key, _, value = item.partition("=")
        try:
            parsed = parse_yaml_value(value)
        except yaml.YAMLError:  # refused when the config was loaded
            parsed = None
        keys.extend([f"{key}.{sub}" for sub in parsed] if isinstance(parsed, dict) else [key])
    return keys
