"""Typed, strictly validated run configuration.

A run is described by one YAML file. Every section is a dataclass, so the defaults and the
allowed values are written down in one place, and a typo in a key or a value of the wrong type
is reported as one line that names the key and the file instead of silently doing something else.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import datetime
import difflib
import functools
import math
import os
import shlex
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Union

import yaml

__all__ = [
    "ConfigError",
    "DataConfig",
    "MRIDataConfig",
    "NoiseConfig",
    "ModelConfig",
    "LossConfig",
    "ELRPlusConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainLoopConfig",
    "RunConfig",
    "load_config",
    "evaluation_batch_size",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "RUN_RECORD_KEYS",
    "RESUME_MAY_CHANGE",
    "refuse_resume_changes",
    "check_noise_settings",
    "check_augment_settings",
    "with_absolute_paths",
    "PATH_KEYS",
    "LOSS_READS",
    "SCHEDULE_READS",
    "unread_overrides",
    "setting_text",
]


class ConfigError(ValueError):
    """A configuration problem, phrased as one line a user can act on."""


@dataclass
class NoiseConfig:
    """Which label noise to put on the training labels (see `elr_mri.data.noise`)."""

    mode: Literal[
        "none", "symmetric", "symmetric_exclusive", "pair", "asymmetric_cifar10", "asymmetric_cifar10_official",
        "asymmetric_cifar100", "transition", "human",
    ] = "none"
    rate: float = 0.0
    seed: int = 0
    transition_matrix: str | None = None  # .npy / .csv path, for mode "transition"
    human_labels: str | None = None  # CIFAR-10N / CIFAR-100N label file, for mode "human"
    human_key: str = "worse_label"


@dataclass
class MRIDataConfig:
    """A cohort of preprocessed T1 scans (the manifest `elr-mri preprocess` writes, plus diagnoses)."""

    manifest: str | None = None  # CSV, one row a scan: participant_id, session_id, path, diagnosis, age, sex, cohort
    holdout_manifest: str | None = None  # independent cohort (NACC): checked at the start, evaluated at the end
    splits: str | None = None  # CSV participant_id,split (train/val/test); made by participant when absent
    val_labels: str | None = None  # CSV participant_id,session_id,diagnosis: adjudicated labels the validation split scores against
    test_fraction: float = 0.15
    classes: list[str] = field(default_factory=lambda: ["CN", "MCI", "AD"])
    crop_size: list[int] = field(default_factory=lambda: [96, 96, 96])
    cache: Literal["none", "memory", "disk"] = "memory"
    cache_dir: str | None = None  # for cache: disk (MONAI PersistentDataset)
    blur_sigma_max: float = 1.0  # Gaussian blur σ ~ U(0, max), the ML4H paper's augmentation
    blur_on: Literal["auto", "loader", "device"] = "auto"  # where that blur runs; auto: the device on a GPU
    flip: bool = False
    max_shift: int | None = None  # training crops within ±max_shift voxels of the centre crop; null: anywhere
    allow_participant_overlap: bool = False  # override the leakage guard; the report then says so


@dataclass
class DataConfig:
    """Where the images come from and how the noisy training set is split."""

    name: Literal["digits", "cifar10", "cifar100", "imagefolder", "clothing1m", "webvision", "mri"] = "digits"
    root: str | None = None
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    val_fraction: float = 0.1  # the paper holds out 10% of the (noisy) training set
    split_seed: int = 0
    train_subset: int | None = None  # keep this many training images (CPU smoke runs)
    test_subset: int | None = None
    augment: bool = True
    # per-channel mean/std: a data set's official constants (images.NORMALISATION), or "measured" on the training
    # images; auto: the constants of data.name where known, else measured (an image folder of CIFAR-10 JPEGs
    # should name cifar10, as the paper's configs here do)
    normalization: Literal["auto", "cifar10", "cifar100", "clothing1m", "webvision", "measured"] = "auto"
    num_workers: int = 0
    balanced_batches: int | None = None  # class-balanced batches per epoch (Clothing1M; MRI cohorts one class dominates)
    # with balanced_batches: false redraws them with replacement each epoch; true draws once per run (per ELR+
    # network) a subset of balanced_batches × batch_size examples, at most an equal share per class, without
    # replacement, and shuffles it each epoch, as the official Clothing1M loaders
    balanced_subset: bool = False
    mri: MRIDataConfig = field(default_factory=MRIDataConfig)


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden: int = 256  # width of the small digits models
    widening: int = 8  # widened 3D CNN (Liu et al. 2019): channel factor e ∈ {1, 2, 4, 8}
    use_age: bool = True  # widened 3D CNN: add the sinusoidal age encoding to the image feature
    pretrained_checkpoint: str | None = None


@dataclass
class LossConfig:
    """Loss and its hyperparameters; unused ones are ignored by the other losses (LOSS_READS says which read what)."""

    name: Literal["ce", "gce", "sce", "elr", "elr_plus"] = "ce"
    lam: float = 3.0  # ELR λ
    beta: float = 0.7  # ELR temporal-ensembling momentum β
    lam_ramp_steps: int = 0  # ELR: λ ramps in over this many steps, as elr_plus.coef_step (0: full λ at once)
    lam_start_steps: int = 0  # ELR: λ is 0 (plain CE) for this many steps, then ramps in (0: from the first step)
    targets_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # half the memory for huge tables
    gce_q: float = 0.7
    sce_alpha: float = 0.1
    sce_beta: float = 1.0


@dataclass
class ELRPlusConfig:
    """ELR+ extras (paper §4 and appendix): mixup, weight averaging, ramps."""

    mixup_alpha: float = 1.0
    ema_decay: float = 0.997
    # ramp: decay = ema_decay·exp(-5(1-s/L)^2) over L = ema_ramp_steps (official CIFAR configs); running_average:
    # decay = min(1 - 1/(s+1), ema_decay), the plain mean of the weights so far until that reaches ema_decay
    # (official Clothing1M config, "ema_update": false)
    ema_schedule: Literal["ramp", "running_average"] = "ramp"
    ema_ramp_steps: int = 40000
    coef_step: int = 0  # λ ramps in over this many steps (0: full λ from the start)
    reweight_labels: bool = False  # CIFAR-100 setting: weight CE labels by the targets
    # epoch: network 1 trains a whole epoch on its stream, then network 2 on its own, each against the other's
    # average as it stands (the official code's single-device branch, which its CIFAR configs run); step: a
    # step each in turn, every step (the averages move in between; runs made before this setting)
    alternation: Literal["step", "epoch"] = "step"


@dataclass
class OptimConfig:
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.02
    momentum: float = 0.9  # SGD's momentum; Adam's β1
    weight_decay: float = 1e-3
    nesterov: bool = False


@dataclass
class ScheduleConfig:
    name: Literal["constant", "multistep", "cosine_warm_restarts", "cosine"] = "multistep"
    milestones: list[int] = field(default_factory=lambda: [40, 80])
    gamma: float = 0.01
    t0: int = 10
    eta_min: float = 0.001


@dataclass
class TrainLoopConfig:
    epochs: int = 120
    batch_size: int = 128
    # examples a forward pass scores when evaluating; 0: 512 images, or train.batch_size MRI volumes
    # (`evaluation_batch_size`)
    eval_batch_size: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 autocast on a GPU that supports it (fp16 + loss scaling on older ones), fp32 on a CPU
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    loader: Literal["auto", "dataloader", "device"] = "auto"  # auto: device-resident batches when images fit
    compile: Literal["auto", True, False] = "auto"  # torch.compile the trained network; auto: on for CUDA
    # torch.compile's mode when compiling. reduce-overhead adds CUDA graphs (one launch replays a step's
    # kernels): for GPU steps whose host time exceeds their GPU time, as CIFAR ResNet-34's on an H200. auto:
    # reduce-overhead on CUDA for one trained network in one process on device-resident batches, in bf16 or fp32
    # (the case measured: a CIFAR-10 epoch 9.0 s → 2.4 s), compile's default otherwise (ELR+, torchrun, fp16,
    # files, volumes)
    compile_mode: Literal["auto", "default", "reduce-overhead", "max-autotune"] = "auto"
    # the rest of a training step compiled beside the network, where the host launching small kernels one by one
    # is the limit: ELR's arithmetic (cross-entropy, target blend, regulariser) inside the network's graph, ELR+'s
    # EMA copies' forward passes, and the device-resident batches' crop, flip and normalisation as one graph; no
    # effect where the network is not compiled
    compile_step: bool = False
    # torch's fused SGD/Adam: one kernel updates every parameter (foreach: several per group of them), less
    # host time per step where the host is the limit; the same update up to float rounding. auto: on for CUDA
    fused_optimizer: Literal["auto", True, False] = "auto"
    channels_last: Literal["auto", True, False] = "auto"  # channels-last (2D/3D) memory; auto: on for CUDA
    # the widened 3D CNN's dilated convolutions as undilated ones on the input's phase grids: the same sums, which
    # the libraries may run faster (bf16 on an AMX CPU at 96³: the ×8 step 1.6–1.8×; slower in fp32); no
    # effect on other models
    phase_grid_convs: bool = False
    # cuDNN times its convolution algorithms for each new input shape and keeps the fastest; auto: on for
    # CUDA (crops and batches have fixed sizes); the chosen algorithms may differ between runs
    cudnn_benchmark: Literal["auto", True, False] = "auto"
    # checkpoint-selection rule, written in the run; val_balanced_acc where one class dominates the labels
    select: Literal["val_acc", "val_balanced_acc", "last"] = "val_acc"
    # torch's CPU threads; 0: its default, one a core. 1 is often faster where other jobs hold the cores
    threads: int = 0
    # last.pt/best.pt at the end of an epoch once this many seconds passed since the last write, and after
    # the final epoch; 0: every epoch. A killed run loses at most this much plus the epoch in flight
    checkpoint_seconds: float = 60.0
    tensorboard: bool = True
    progress: bool = True


@dataclass
class RunConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    elr_plus: ELRPlusConfig = field(default_factory=ELRPlusConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)


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
# The setting that chooses which of a section's settings a run reads, and what each choice reads.
_CHOSEN_BY: dict[str, tuple[str, dict[str, frozenset[str]]]] = {
    "loss": ("loss.name", LOSS_READS), "elr_plus": ("loss.name", LOSS_READS),
    "schedule": ("schedule.name", SCHEDULE_READS),
}
# Single settings another one switches off, with the choices (as YAML writes them) under which they are read.
_KEY_CHOSEN_BY: dict[str, tuple[str, dict[str, frozenset[str]]]] = {
    "train.compile_mode": ("train.compile", {"auto": frozenset({"train.compile_mode"}),
                                             "true": frozenset({"train.compile_mode"}), "false": frozenset()}),
    "data.mri.cache_dir": ("data.mri.cache", {"disk": frozenset({"data.mri.cache_dir"}), "memory": frozenset(),
                                              "none": frozenset()}),
    # per-channel image statistics: digits are used as sklearn gives them, volumes scaled per scan
    "data.normalization": ("data.name", {name: frozenset() if name in ("digits", "mri") else
                                         frozenset({"data.normalization"})
                                         for name in typing.get_args(typing.get_type_hints(DataConfig)["name"])}),
}


def unread_overrides(cfg: RunConfig, overrides: list[str]) -> list[tuple[str, str, list[str]]]:
    """The loss, ELR+ and schedule settings among `--set` overrides that `cfg`'s loss or schedule does not read, and
    single settings another switches off (`train.compile_mode` with compile false, `data.mri.cache_dir` without the
    disk cache, `data.normalization` on digits or MRI), each with the setting that chose (loss.name, schedule.name, ...) and the choices that read it: `--set
    elr_plus.mixup_alpha=0` on an ELR run, `--set loss.gce_q=0.5` with `loss.name=ce` or `--set schedule.gamma=0.1`
    with a cosine schedule would otherwise change nothing without a word. Not refused as ELR's λ schedule keys are
    (`_ELR_ONLY`): a config's own λ and β stay in it when `--set loss.name=ce` makes the usual comparison run."""
    unread: dict[str, tuple[str, list[str]]] = {}  # each key once, however often it was set
    for key in _set_keys(overrides):
        chooser, reads = _KEY_CHOSEN_BY.get(key) or _CHOSEN_BY.get(key.split(".")[0], ("", {}))
        if not chooser or key == chooser:
            continue
        readers = [name for name, keys in reads.items() if any(read == key or read.startswith(key + ".") for read in keys)]
        if setting_text(functools.reduce(getattr, chooser.split("."), cfg)) not in readers:
            unread[key] = (chooser, readers)
    return [(key, chooser, readers) for key, (chooser, readers) in unread.items()]


def setting_text(value: Any) -> str:
    """A setting's value as YAML writes it (`true`, not Python's `True`), for messages and the choice tables."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _set_keys(overrides: list[str]) -> list[str]:
    """The dotted keys `--set` overrides give values to: a section given as a mapping (`--set 'loss={lam: 2}'`)
    gives each of its keys."""
    keys = []
    for item in overrides:
        key, _, value = item.partition("=")
        try:
            parsed = _parse_value(value)
        except yaml.YAMLError:  # refused when the config was loaded
            parsed = None
        keys.extend([f"{key}.{sub}" for sub in parsed] if isinstance(parsed, dict) else [key])
    return keys


# Top-level keys the engine adds to a run directory's config.yaml for its readers; not settings.
RUN_RECORD_KEYS = ("selection_rule",)

# What `--resume` may change: how long the run trains, and how and where it runs. Everything else
# would make one run directory hold epochs trained under two different settings.
RESUME_MAY_CHANGE = frozenset({
    "train.epochs", "train.eval_batch_size", "train.device", "train.precision", "train.loader", "train.compile",
    "train.compile_mode", "train.compile_step", "train.fused_optimizer", "train.channels_last", "train.cudnn_benchmark",
    "train.phase_grid_convs",
    "train.threads", "train.checkpoint_seconds", "train.tensorboard", "train.progress", "data.root", "data.num_workers",
    "data.mri.cache", "data.mri.cache_dir",
})

# Settings that name files or folders. A run records them absolute, so `evaluate`, `explain` and
# `--resume` find the data from any working directory, not only the one training started in.
PATH_KEYS = (
    "data.root", "data.noise.transition_matrix", "data.noise.human_labels", "data.mri.manifest",
    "data.mri.holdout_manifest", "data.mri.splits", "data.mri.val_labels", "data.mri.cache_dir",
    "model.pretrained_checkpoint",
)

_AT_LEAST_ONE = ("at least 1", lambda v: v >= 1)
_NON_NEGATIVE = ("0 or more", lambda v: v >= 0)
_POSITIVE = ("above 0", lambda v: v > 0)
_FRACTION = ("in [0, 1]", lambda v: 0 <= v <= 1)
_UNIT = ("in (0, 1]", lambda v: 0 < v <= 1)  # schedule.gamma above 1 would raise the rate at each milestone
_PART = ("in [0, 1)", lambda v: 0 <= v < 1)
_SEED = ("in [0, 2**32 - 1] (numpy's and torch's range)", lambda v: 0 <= v < 2**32)
# Numeric settings outside these ranges fail deep inside training (a division by zero, an empty
# sampler) or silently do nothing sensible; checked at load, they are one line naming the key.
NUMERIC_RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "train.epochs": _AT_LEAST_ONE, "train.batch_size": _AT_LEAST_ONE, "train.eval_batch_size": _NON_NEGATIVE,
    "train.threads": _NON_NEGATIVE, "train.checkpoint_seconds": _NON_NEGATIVE,
    "schedule.t0": _AT_LEAST_ONE, "schedule.gamma": _UNIT, "schedule.eta_min": _NON_NEGATIVE,
    "optim.lr": _POSITIVE, "optim.momentum": _PART, "optim.weight_decay": _NON_NEGATIVE,
    "seed": _SEED, "data.split_seed": _SEED, "data.noise.seed": _SEED,
    "loss.lam": _NON_NEGATIVE, "loss.beta": _PART, "loss.lam_ramp_steps": _NON_NEGATIVE,
    "loss.lam_start_steps": _NON_NEGATIVE, "loss.gce_q": _UNIT,
    "loss.sce_alpha": _NON_NEGATIVE, "loss.sce_beta": _NON_NEGATIVE,
    "elr_plus.mixup_alpha": _NON_NEGATIVE, "elr_plus.ema_decay": _FRACTION,
    "elr_plus.ema_ramp_steps": _NON_NEGATIVE, "elr_plus.coef_step": _NON_NEGATIVE,
    "model.hidden": _AT_LEAST_ONE, "model.widening": _AT_LEAST_ONE,
    "data.val_fraction": _PART, "data.noise.rate": _FRACTION, "data.num_workers": _NON_NEGATIVE,
    "data.balanced_batches": _AT_LEAST_ONE, "data.train_subset": _AT_LEAST_ONE, "data.test_subset": _AT_LEAST_ONE,
    "data.mri.test_fraction": _PART, "data.mri.blur_sigma_max": _NON_NEGATIVE, "data.mri.max_shift": _NON_NEGATIVE,
}
# ELR's λ schedule keys that ELR+ does not read: it ramps λ with elr_plus.coef_step, as the official code.
_ELR_ONLY = ("loss.lam_ramp_steps", "loss.lam_start_steps")


IMAGE_EVAL_BATCH = 512


def evaluation_batch_size(cfg: RunConfig) -> int:
    """`train.eval_batch_size`, or where it is 0 (the default) one that suits the data: 512 small images, or
    `train.batch_size` MRI volumes. Why not 512 volumes: a 96³ volume through the ×8 network holds about 220 MB of
    activations even without gradients (measured on a CPU), so a split scored at once would ask for 10–100 GB."""
    if cfg.train.eval_batch_size:
        return cfg.train.eval_batch_size
    return cfg.train.batch_size if cfg.data.name == "mri" else IMAGE_EVAL_BATCH


def _config_in(folder: Path) -> Path | None:
    """A YAML file at most two folders down, not in a hidden one (`--config .` in the project: configs/...), for an
    example; no deeper, since a home folder's whole tree would take minutes to walk."""
    for pattern in ("*.yaml", "*/*.yaml", "*/*/*.yaml"):
        found = sorted(p for p in folder.glob(pattern) if not any(part.startswith(".") for part in
                                                                   p.relative_to(folder).parts))
        if found:
            return found[0]
    return None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML file, apply `key.sub=value` overrides and validate the result.

    A run directory's config.yaml loads too (its record-only keys are dropped), so a finished run's
    settings can start a new run: `--config runs/x/config.yaml --set ... --out runs/y`.
    """
    path = Path(path)
    if path.is_dir():
        example = _config_in(path)
        raise ConfigError(f"--config {path} is a folder; pass a YAML file" + (f", e.g. {example}" if example else ""))
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass an existing YAML file to --config)")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the config as UTF-8") from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        problem = getattr(err, "problem", err)
        what = problem if isinstance(err, _Refused) else f"not valid YAML ({problem})"
        raise ConfigError(f"{path}{where}: {what}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data:, model:, ...)")
    for key in RUN_RECORD_KEYS:
        raw.pop(key, None)
    if not raw:  # before the overrides: `--set` on an empty file would train the built-in defaults
        raise ConfigError(f"{path}: the config is empty; start from one in configs/, e.g. configs/digits/elr_sym40.yaml")
    overrides = overrides or []
    apply_overrides(raw, overrides)
    source = f"{path} with --set {' '.join(overrides)}" if overrides else str(path)
    return config_from_dict(raw, source=source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML for configs and `--set` values, read as written: it refuses a key given twice in one mapping (plain
    YAML keeps the last one silently, so a second `train:` block would replace the whole first one), reads a plain
    key as its text and refuses numbers YAML 1.1 reads in another base (`_decimal_number`)."""


class _Refused(yaml.constructor.ConstructorError):
    """YAML that parses but that `_UniqueKeyLoader` refuses; `problem` says why and what to write instead."""


def _parse_value(text: str) -> Any:
    """A `--set` value, read as a config file's values are, with the same refusals."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _mapping_without_repeats(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """SafeLoader's mapping, after refusing a repeated key, also inside mappings merged in with `<<:` (which
    SafeLoader flattens without constructing them); a key that is no hashable value is left to SafeLoader,
    which refuses it in its own words."""
    _refuse_repeated_keys(loader, node, deep)
    return loader.construct_mapping(node, deep=deep)


def _refuse_repeated_keys(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool) -> None:
    seen = set()
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for mapping in merged:
                if isinstance(mapping, yaml.MappingNode):
                    _refuse_repeated_keys(loader, mapping, deep)
            continue
        if isinstance(key_node, yaml.ScalarNode) and key_node.style is None:
            key_node.tag = "tag:yaml.org,2002:str"  # a key names a setting: `on:` is 'on', not True
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, collections.abc.Hashable):
            continue
        if key in seen:
            raise _Refused(problem=f"the key {key!r} is given twice in one section; keep one",
                           problem_mark=key_node.start_mark)
        seen.add(key)


_INT_TAG = "tag:yaml.org,2002:int"


def _decimal_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float:
    """SafeLoader's int or float, refusing the YAML 1.1 forms that read as another number than the one written:
    `epochs: 010` is 8 (octal), 0x10 is 16, 0b10 is 2 and `lr: 1:30` is 90.0 (base 60). Underscores between digits
    (1_000) are accepted: they change no value. 0o17 is text in YAML 1.1, which a number setting refuses."""
    value = loader.construct_yaml_int(node) if node.tag == _INT_TAG else loader.construct_yaml_float(node)
    digits = node.value.lstrip("+-").replace("_", "")
    if ":" in digits or (node.tag == _INT_TAG and digits.startswith("0") and digits != "0"):
        example = f", e.g. {int(node.value)}" if digits.isdecimal() else ""  # a leading 0 is padding, mostly
        raise _Refused(problem=f"{node.value} reads as {value} in YAML, which takes a leading 0 as octal, 0x as hex, "
                               f"0b as binary and a ':' as base 60; write the number in decimal{example}, or quote it "
                               "if it is text", problem_mark=node.start_mark)
    return value


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)
_UniqueKeyLoader.add_constructor(_INT_TAG, _decimal_number)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _decimal_number)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> None:
    """Set dotted keys in place: `train.epochs=5` or `loss.name=elr` (values parsed as YAML). A mapping given to a
    section (`optim={lr: 0.1}`) sets the keys it names and keeps the section's others, as one `--set` each would."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=5")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:  # absent, or a section left empty in the file (`data:` with nothing under it)
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        try:
            parsed = _parse_value(value)
        except _Refused as err:
            raise ConfigError(f"--set {item!r}: {err.problem}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({getattr(err, 'problem', err)}); "
                              "quote it, e.g. --set 'key=[1, 2]'") from None
        node[parts[-1]] = _merged(node.get(parts[-1]), parsed)


def _merged(old: Any, new: Any) -> Any:
    """`new` over `old`, key by key where both are mappings."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{key: _merged(old.get(key), value) for key, value in new.items()}}
    return new


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Build a `RunConfig`, refusing unknown keys, values of the wrong type and contradictory settings."""
    cfg = _build(RunConfig, raw, prefix="", source=source)
    _check_ranges(cfg, source)
    _check_schedule_floor(cfg, source)
    if cfg.optim.name == "adam" and cfg.optim.nesterov:
        raise ConfigError(f"{source}: optim.nesterov applies to SGD only; drop it or set optim.name: sgd")
    if cfg.optim.nesterov and cfg.optim.momentum == 0:  # torch refuses it at the first step, naming no key
        raise ConfigError(f"{source}: optim.nesterov needs optim.momentum > 0 (a Nesterov step is a momentum step); "
                          "set optim.momentum (e.g. 0.9), or drop optim.nesterov")
    if cfg.loss.name == "sce" and cfg.loss.sce_alpha == cfg.loss.sce_beta == 0:
        raise ConfigError(f"{source}: loss.sce_alpha and loss.sce_beta are both 0, so the loss is 0 and nothing "
                          "trains; set one above 0")
    return cfg


_MAY_BE_INFINITE = ("train.checkpoint_seconds",)  # .inf: write checkpoints only after the last epoch


def _check_ranges(cfg: RunConfig, source: str) -> None:
    flat = _flatten(config_to_dict(cfg))
    for key, value in flat.items():
        if isinstance(value, float) and not math.isfinite(value) and not (value == math.inf and key in _MAY_BE_INFINITE):
            raise ConfigError(f"{source}: {key} = {value} must be a finite number")
    classes = cfg.data.mri.classes
    repeated = sorted({name for name in classes if [c.lower() for c in classes].count(name.lower()) > 1})
    if repeated:
        raise ConfigError(f"{source}: data.mri.classes = {classes} names {', '.join(repeated)} more than once; "
                          "list each diagnosis once")
    if len(classes) < 2:
        raise ConfigError(f"{source}: data.mri.classes = {classes} needs at least two diagnoses to tell apart")
    for key, (allowed, holds) in NUMERIC_RANGES.items():
        if flat[key] is not None and not holds(flat[key]):
            raise ConfigError(f"{source}: {key} = {flat[key]!r} must be {allowed}")
    if any(milestone < 1 for milestone in cfg.schedule.milestones):  # a milestone 0 would start at lr × gamma
        raise ConfigError(f"{source}: schedule.milestones = {cfg.schedule.milestones} must each be at least 1 "
                          "(the epochs after which the rate drops)")
    if cfg.loss.name != "elr":
        for key in _ELR_ONLY:
            if flat[key]:
                ramp_for_elr_plus = cfg.loss.name == "elr_plus" and key.startswith("loss.")
                instead = ("ramp ELR+'s λ in with elr_plus.coef_step instead" if ramp_for_elr_plus
                           else "drop it, or set loss.name: elr")
                raise ConfigError(f"{source}: {key} = {flat[key]} is an ELR setting that loss.name = "
                                  f"{cfg.loss.name} does not read; {instead}")
    if cfg.data.balanced_subset and not cfg.data.balanced_batches:
        raise ConfigError(f"{source}: data.balanced_subset needs data.balanced_batches (the subset's size in batches); "
                          "set it, or drop data.balanced_subset")
    if cfg.elr_plus.ema_schedule == "running_average" and cfg.elr_plus.ema_ramp_steps != ELRPlusConfig().ema_ramp_steps:
        raise ConfigError(f"{source}: elr_plus.ema_ramp_steps = {cfg.elr_plus.ema_ramp_steps} is the ramp's length, "
                          "which elr_plus.ema_schedule = running_average does not read; drop it, or set "
                          "elr_plus.ema_schedule: ramp")
    crop = cfg.data.mri.crop_size
    if len(crop) != 3 or any(size < 1 for size in crop):
        raise ConfigError(f"{source}: data.mri.crop_size = {crop} must be three voxel counts, e.g. [96, 96, 96]")
    if (cfg.data.name == "mri") != (cfg.model.name in VOLUME_MODELS):
        given = "3D volumes" if cfg.data.name == "mri" else "2D images"
        fitting = ", ".join(VOLUME_MODELS) if cfg.data.name == "mri" else "a 2D model (e.g. resnet34)"
        raise ConfigError(f"{source}: model.name = {cfg.model.name} does not take the {given} data.name = "
                          f"{cfg.data.name} gives; choose {fitting}")
    if cfg.data.name == "mri" and cfg.model.name == "widened_cnn3d":
        from elr_mri.models.widened_cnn import MIN_INPUT_SIZE  # torch: only for the configs that build this model

        if min(cfg.data.mri.crop_size) < MIN_INPUT_SIZE:
            raise ConfigError(f"{source}: data.mri.crop_size = {cfg.data.mri.crop_size} is too small for the "
                              f"widened CNN, which needs at least {MIN_INPUT_SIZE} voxels an axis; enlarge the crop "
                              "(preprocess at a finer resolution if the scans are smaller)")
    if cfg.data.name != "mri" and cfg.data.mri != MRIDataConfig():
        changed = next(f.name for f in dataclasses.fields(MRIDataConfig)
                       if getattr(cfg.data.mri, f.name) != getattr(MRIDataConfig(), f.name))
        raise ConfigError(f"{source}: data.mri.{changed} is set but data.name = {cfg.data.name} does not read "
                          "data.mri; drop the data.mri section, or set data.name: mri")
    if cfg.data.name not in ("digits", "mri") and cfg.data.root is None:
        raise ConfigError(f"{source}: data.name = {cfg.data.name} needs data.root, the folder that holds the data set "
                          f"(e.g. --set data.root={_ROOT_EXAMPLES[cfg.data.name]}); the README's 'Reproducing the "
                          "paper' says where to get each")


# A data.root for each image data set as the README lays them out (cifar10/100: the folder above torchvision's).
_ROOT_EXAMPLES = {"cifar10": "data", "cifar100": "data", "imagefolder": "data/cifar10", "clothing1m": "data/clothing1m",
                  "webvision": "data/webvision"}
# The models of elr_mri.models that take MRI volumes (and the age): named here so a config is checked without torch.
VOLUME_MODELS = ("widened_cnn3d", "resnet18_3d", "densenet121_3d")
# The modes that flip a `rate` of the labels; the others ignore data.noise.rate.
_RATE_MODES = ("symmetric", "symmetric_exclusive", "pair", "asymmetric_cifar10", "asymmetric_cifar10_official",
               "asymmetric_cifar100")


def check_noise_settings(noise: NoiseConfig) -> None:
    """A noise setting its mode does not read would let a new run train on other labels than its config suggests.

    `--set data.noise.rate=0.4` without a mode is the easy slip: mode none trains on the labels as given.
    Checked when a run starts, not when a config loads: runs made before the check must still evaluate and resume.
    """
    if noise.mode in _RATE_MODES and noise.rate == 0:
        raise ConfigError(f"data.noise.mode = {noise.mode} with data.noise.rate = 0 changes no label; "
                          "set data.noise.rate, or data.noise.mode: none for the labels as given")
    if noise.mode not in _RATE_MODES and noise.rate != 0:
        raise ConfigError(f"data.noise.rate = {noise.rate} is not read by data.noise.mode = {noise.mode}; "
                          f"set a mode that flips a rate of the labels ({', '.join(_RATE_MODES)}), or drop the rate")
    for key, mode in (("human_labels", "human"), ("transition_matrix", "transition")):
        if getattr(noise, key) is not None and noise.mode != mode:
            raise ConfigError(f"data.noise.{key} is set but data.noise.mode = {noise.mode} does not read "
                              f"it; set data.noise.mode: {mode}, or drop data.noise.{key}")


def check_augment_settings(data: DataConfig) -> None:
    """`data.mri.flip` or `max_shift` with `data.augment: false` would look like an augmented run that is not one:
    without augmentation every training scan is the centre crop as it is. Checked when a run starts, as above."""
    unread = [key for key, is_set in (("flip", data.mri.flip), ("max_shift", data.mri.max_shift is not None)) if is_set]
    if data.name == "mri" and not data.augment and unread:
        raise ConfigError(f"data.mri.{' and data.mri.'.join(unread)} not read with data.augment: false (training "
                          "then uses the centre crop as it is); set data.augment: true, or drop them")


def _check_schedule_floor(cfg: RunConfig, source: str) -> None:
    """A cosine floor at or above the base rate would make the 'decay' raise the rate or hold it flat.

    eta_min is absolute (the paper's SGD value, 0.001), so switching to Adam at 1e-4 without lowering it
    silently turns the schedule upside down.
    """
    if cfg.schedule.name in ("cosine", "cosine_warm_restarts") and cfg.schedule.eta_min >= cfg.optim.lr:
        raise ConfigError(
            f"{source}: schedule.eta_min = {cfg.schedule.eta_min} is not below optim.lr = {cfg.optim.lr}, "
            f"so the cosine schedule would not decay; set schedule.eta_min lower (e.g. 0)"
        )


def with_absolute_paths(cfg: RunConfig) -> RunConfig:
    """A copy of `cfg` whose PATH_KEYS are absolute, taken from the current directory when relative."""
    cfg = copy.deepcopy(cfg)
    for key in PATH_KEYS:
        *sections, name = key.split(".")
        node = functools.reduce(getattr, sections, cfg)
        value = getattr(node, name)
        if value is not None:
            setattr(node, name, os.path.abspath(os.path.expanduser(value)))
    return cfg


def refuse_resume_changes(saved: RunConfig, wanted: RunConfig, run_dir: str | Path, fix: str | None = None) -> None:
    """Stop a resume that would change what the run computes (a loss, a rate, the data), naming the key.

    `fix` says how to start a new run instead (default: the `elr-mri train` command)."""
    changed = settings_a_resume_would_change(saved, wanted)
    if changed:
        key, (before, after) = next(iter(changed.items()))
        config_file = shlex.quote(str(Path(run_dir) / "config.yaml"))
        fix = fix or f"elr-mri train --config {config_file} --set {key}=... --out NEW_RUN_DIR"
        raise ConfigError(
            f"{run_dir} was trained with {key} = {before!r}; a resumed run keeps its settings (only "
            f"train.epochs and how it runs may change), so start a new run for {key} = {after!r}: {fix}")


def settings_a_resume_would_change(saved: RunConfig, wanted: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Key → (saved, wanted) of each setting that changes what a run computes, paths compared absolute (the same
    spelled either way)."""
    before = _flatten(config_to_dict(with_absolute_paths(saved)))
    after = _flatten(config_to_dict(with_absolute_paths(wanted)))
    return {key: (before.get(key), after[key]) for key in after
            if after[key] != before.get(key) and key not in RESUME_MAY_CHANGE}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict, ready for `yaml.safe_dump` (the run's resolved config.yaml)."""
    return dataclasses.asdict(config)


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in raw if key not in names)  # str: a dict not read from YAML may hold 1: or None:
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix + unknown[0]!r}{_did_you_mean(prefix, unknown[0], names)}; "
                          f"allowed in {where}: {', '.join(sorted(names))}")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, f"{prefix}{name}", source)
    return cls(**values)


def _did_you_mean(prefix: str, name: str, names: set[str]) -> str:
    """` (did you mean KEY?)` for the key an unknown one most likely meant: a near spelling in its own section, else
    the same or a near name in another (`optim.epochs`: train.epochs), which the list of its section's keys misses."""
    for keys in ([prefix + known for known in names], dotted_keys(RunConfig)):
        near = difflib.get_close_matches(name, {key.rsplit(".", 1)[-1] for key in keys}, n=1)
        if near:
            return f" (did you mean {' or '.join(sorted(k for k in keys if k.rsplit('.', 1)[-1] == near[0]))}?)"
    return ""


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every key a config may give, sections too, dotted from the top: data, data.noise, data.noise.rate, ..."""
    keys = []
    for name, hint in typing.get_type_hints(cls).items():
        keys.append(prefix + name)
        if dataclasses.is_dataclass(hint):
            keys += dotted_keys(hint, f"{prefix}{name}.")
    return keys


def _coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.", source=source)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key, source)
    if origin is Literal:  # by type too: 1 == True, and `compile: 1` would pass for true but not act as it
        if not any(type(value) is type(allowed) and value == allowed for allowed in args):
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{source}: {key} = {value!r} is not one of {choices}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" as a string; accept it as the number it obviously is
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        quote = ""
        if hint is str and isinstance(value, (bool, int, float, datetime.date)):  # YAML made it of unquoted text
            text = "..." if isinstance(value, bool) else value  # True was yes, on or true: the text is gone
            example = f"'{text}'" if "[" in key else f"--set \"{key}='{text}'\""  # a list item: no --set of its own
            quote = f"; quote it to keep it as text, e.g. {example}"
        raise ConfigError(f"{source}: {key} must be {hint.__name__}, got {value!r}{quote}")
    return value
