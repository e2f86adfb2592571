"""The checks a loaded config must pass: numbers in range, and no settings that contradict each other or that the
chosen loss, schedule or data set would silently leave unread. Each refusal is one line naming the key, the file and
what to set instead.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from elr_mri.config.resume import PATH_KEYS
from elr_mri.config.schema import (
    BLUR_TRUNCATE, HELD_IN_MEMORY, ConfigError, DataConfig, ELRPlusConfig, MRIDataConfig, NoiseConfig, RunConfig,
    flat_settings, kernel_radius, setting_value,
)
from elr_mri.models import MIN_INPUT_SIZE, MODEL_NAMES, VOLUME_MODELS


def refuse_contradictions(cfg: RunConfig, source: str) -> None:
    """Refuse numbers out of range and contradictory settings in `cfg`, read from `source` (named in each message).

    Where a config has several problems, the first check below that fails names the one reported."""
    check_each_value(cfg, source)
    _check_classes(cfg, source)
    _check_settings_read(cfg, source)
    _check_model_input(cfg, source)
    _check_blur_reach(cfg, source)
    _check_data_source(cfg, source)
    _check_schedule_floor(cfg, source)
    _check_optimizer(cfg, source)
    _check_loss_trains(cfg, source)
    _check_averages_move(cfg, source)


def check_each_value(cfg: RunConfig, source: str) -> None:
    """The checks of one setting alone (a finite number in its range, a path not empty), which no other setting can
    satisfy: each `--set` is put through them on its own, to name every refused one (`load_config`)."""
    _check_finite(cfg, source)
    _check_int64(cfg, source)
    _check_ranges(cfg, source)
    _check_paths(cfg, source)


_AT_LEAST_ONE = ("at least 1", lambda v: v >= 1)
_NON_NEGATIVE = ("0 or more", lambda v: v >= 0)
_POSITIVE = ("above 0", lambda v: v > 0)
_FRACTION = ("in [0, 1]", lambda v: 0 <= v <= 1)
_UNIT = ("in (0, 1]", lambda v: 0 < v <= 1)  # schedule.gamma above 1 would raise the rate at each milestone
_PART = ("in [0, 1)", lambda v: 0 <= v < 1)
_SEED = ("in [0, 2**32 - 1] (numpy's and torch's range)", lambda v: 0 <= v < 2**32)
# β is the weight of a target's old value in its running average: at 1 a target is never updated
BETA_AT_ONE = "at 1 the ELR targets would never move from their start, all zeros, and the ELR term would stay 0"
_TARGET_MEMORY = (f"in [0, 1): {BETA_AT_ONE}; the paper uses 0.7, or 0.9 on CIFAR-100", lambda v: 0 <= v < 1)
# Numeric settings outside these ranges fail deep inside training (a division by zero, an empty
# sampler) or silently do nothing sensible; checked at load, they are one line naming the key.
NUMERIC_RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "train.epochs": _AT_LEAST_ONE, "train.batch_size": _AT_LEAST_ONE, "train.eval_batch_size": _NON_NEGATIVE,
    "train.threads": _NON_NEGATIVE, "train.checkpoint_seconds": _NON_NEGATIVE,
    "schedule.t0": _AT_LEAST_ONE, "schedule.gamma": _UNIT, "schedule.eta_min": _NON_NEGATIVE,
    "optim.lr": _POSITIVE, "optim.momentum": _PART, "optim.weight_decay": _NON_NEGATIVE,
    "seed": _SEED, "data.split_seed": _SEED, "data.noise.seed": _SEED,
    "loss.lam": _NON_NEGATIVE, "loss.beta": _TARGET_MEMORY, "loss.lam_ramp_steps": _NON_NEGATIVE,
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


_MAY_BE_INFINITE = ("train.checkpoint_seconds",)  # .inf: write checkpoints only after the last epoch


def _check_finite(cfg: RunConfig, source: str) -> None:
    """NaN compares false with every bound and .inf passes a lower one, so NUMERIC_RANGES alone would let them in."""
    for key, value in flat_settings(cfg).items():
        if isinstance(value, float) and not math.isfinite(value) and not (value == math.inf and key in _MAY_BE_INFINITE):
            raise ConfigError(f"{source}: {key} = {value} must be a finite number")


_INT64_MAX = 2**63 - 1


def _check_int64(cfg: RunConfig, source: str) -> None:
    """A whole number past 64 bits reached torch as a traceback (`model.hidden`: "Overflow when unpacking long long")
    or as an error that names no key (`train.threads`); no count here is meant to be that large."""
    for key, value in flat_settings(cfg).items():
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, int) and number > _INT64_MAX:  # below 0 each is refused by its range
                raise ConfigError(f"{source}: {key} = {value} is beyond the 64-bit integers torch and numpy hold "
                                  "(a mistyped number?); give a smaller one")


def _check_paths(cfg: RunConfig, source: str) -> None:
    """An empty path would be made absolute as the current folder (`with_absolute_paths`): a cache written there, or
    a data set looked for (and its download advised) there, from `--set "data.root='$DIR'"` with DIR unset."""
    for key in PATH_KEYS:
        value = setting_value(cfg, key)
        if value is not None and not value.strip():
            raise ConfigError(f"{source}: {key} = {value!r} is an empty path (an unset shell variable?); "
                              f"give the path, or drop {key}")


def _check_classes(cfg: RunConfig, source: str) -> None:
    """A diagnosis listed twice (in any case) would split one label into two classes; one class has nothing to learn;
    a name empty or with spaces around it matches no manifest's diagnosis, which is read stripped (`' MCI'` was
    refused as the manifest's MCI scans not being of the classes, over two lines, and `''` trained a class of none)."""
    classes = cfg.data.mri.classes
    unmatched = [name for name in classes if not name or name != name.strip()]
    if unmatched:
        raise ConfigError(f"{source}: data.mri.classes = {classes} names {unmatched[0]!r}, which no manifest "
                          "diagnosis can match (they are read without spaces around them); write each diagnosis as "
                          "the manifest gives it, e.g. [CN, MCI, AD]")
    repeated = sorted({name for name in classes if [c.lower() for c in classes].count(name.lower()) > 1})
    if repeated:
        raise ConfigError(f"{source}: data.mri.classes = {classes} names {', '.join(repeated)} more than once; "
                          "list each diagnosis once")
    if len(classes) < 2:
        raise ConfigError(f"{source}: data.mri.classes = {classes} needs at least two diagnoses to tell apart")


def _check_ranges(cfg: RunConfig, source: str) -> None:
    """Each number within its NUMERIC_RANGES, and each LR milestone an epoch after the first, listed once."""
    flat = flat_settings(cfg)
    for key, (allowed, holds) in NUMERIC_RANGES.items():
        if flat[key] is not None and not holds(flat[key]):
            raise ConfigError(f"{source}: {key} = {flat[key]!r} must be {allowed}")
    if any(milestone < 1 for milestone in cfg.schedule.milestones):  # a milestone 0 would start at lr × gamma
        raise ConfigError(f"{source}: schedule.milestones = {cfg.schedule.milestones} must each be at least 1 "
                          "(the epochs after which the rate drops)")
    repeated = sorted({m for m in cfg.schedule.milestones if cfg.schedule.milestones.count(m) > 1})
    if repeated:  # each listing is a drop: [40, 40], a typo for [40, 80], multiplied the rate by gamma² at 40
        raise ConfigError(f"{source}: schedule.milestones = {cfg.schedule.milestones} lists epoch "
                          f"{', '.join(map(str, repeated))} more than once, and the rate would drop by "
                          "schedule.gamma once for each; list each epoch once")


def _check_settings_read(cfg: RunConfig, source: str) -> None:
    """A setting the chosen loss, sampler or EMA schedule does not read would make a config say what its run does not
    do (`unread_overrides` only notes such settings given by `--set`; these are refused wherever they are set)."""
    if cfg.loss.name != "elr":
        for key in _ELR_ONLY:
            value = setting_value(cfg, key)
            if value:
                instead = ("ramp ELR+'s λ in with elr_plus.coef_step instead" if cfg.loss.name == "elr_plus"
                           else "drop it, or set loss.name: elr")
                raise ConfigError(f"{source}: {key} = {value} is an ELR setting that loss.name = "
                                  f"{cfg.loss.name} does not read; {instead}")
    if cfg.data.balanced_subset and not cfg.data.balanced_batches:
        raise ConfigError(f"{source}: data.balanced_subset needs data.balanced_batches (the subset's size in batches); "
                          "set it, or drop data.balanced_subset")
    if cfg.elr_plus.ema_schedule == "running_average" and cfg.elr_plus.ema_ramp_steps != ELRPlusConfig().ema_ramp_steps:
        raise ConfigError(f"{source}: elr_plus.ema_ramp_steps = {cfg.elr_plus.ema_ramp_steps} is the ramp's length, "
                          "which elr_plus.ema_schedule = running_average does not read; drop it, or set "
                          "elr_plus.ema_schedule: ramp")


def _check_model_input(cfg: RunConfig, source: str) -> None:
    """The model is one `build_model` knows (else a run failed only once its data had loaded), takes what the data
    gives (volumes or images), and the crop is a 3D shape the model can shrink."""
    if cfg.model.name not in MODEL_NAMES:
        raise ConfigError(f"{source}: model.name = {cfg.model.name!r} is not one of "
                          f"{', '.join(repr(name) for name in MODEL_NAMES)}")
    crop = cfg.data.mri.crop_size
    if len(crop) != 3 or any(size < 1 for size in crop):
        raise ConfigError(f"{source}: data.mri.crop_size = {crop} must be three voxel counts, e.g. [96, 96, 96]")
    if (cfg.data.name == "mri") != (cfg.model.name in VOLUME_MODELS):
        given = "3D volumes" if cfg.data.name == "mri" else "2D images"
        fitting = ", ".join(VOLUME_MODELS) if cfg.data.name == "mri" else "a 2D model (e.g. resnet34)"
        raise ConfigError(f"{source}: model.name = {cfg.model.name} does not take the {given} data.name = "
                          f"{cfg.data.name} gives; choose {fitting}")
    if cfg.data.name == "mri" and cfg.model.name == "widened_cnn3d" and min(cfg.data.mri.crop_size) < MIN_INPUT_SIZE:
        raise ConfigError(f"{source}: data.mri.crop_size = {cfg.data.mri.crop_size} is too small for the "
                          f"widened CNN, which needs at least {MIN_INPUT_SIZE} voxels an axis; enlarge the crop "
                          "(preprocess at a finer resolution if the scans are smaller)")


def _check_blur_reach(cfg: RunConfig, source: str) -> None:
    """A blur whose kernel (8σ) reaches past the whole crop leaves a near-uniform grey, and its cost grows with σ: at
    `blur_sigma_max: 1000000` (for 1.0?) one scan's blur would take hours, a step no Ctrl-C or SIGTERM stopped."""
    mri = cfg.data.mri
    if cfg.data.name == "mri" and kernel_radius(mri.blur_sigma_max) > min(mri.crop_size):
        raise ConfigError(f"{source}: data.mri.blur_sigma_max = {mri.blur_sigma_max} blurs with a kernel reaching "
                          f"{BLUR_TRUNCATE:g}σ, {kernel_radius(mri.blur_sigma_max)} voxels, past the whole "
                          f"{min(mri.crop_size)}-voxel crop (data.mri.crop_size): a near-uniform grey, at a cost that "
                          f"grows with σ; set it at most {min(mri.crop_size) / BLUR_TRUNCATE:g} (the paper's is 1)")


def _check_data_source(cfg: RunConfig, source: str) -> None:
    """data.mri is read by MRI runs alone, which need their manifest, a disk cache needs its folder, device-resident
    batches and measured statistics need images held in memory, and an image data set other than digits needs the
    folder it is in: each refused here, naming the file, rather than once torch has loaded (for the loader and the
    statistics, the data too: an MRI cohort's memory cache fills before a loader is chosen) without naming it."""
    if cfg.data.name != "mri" and cfg.data.mri != MRIDataConfig():
        changed = next(f.name for f in dataclasses.fields(MRIDataConfig)
                       if getattr(cfg.data.mri, f.name) != getattr(MRIDataConfig(), f.name))
        raise ConfigError(f"{source}: data.mri.{changed} is set but data.name = {cfg.data.name} does not read "
                          "data.mri; drop the data.mri section, or set data.name: mri")
    if cfg.data.name == "mri" and cfg.data.mri.manifest is None:
        raise ConfigError(f"{source}: data.name = mri needs data.mri.manifest, the cohort's CSV (the one `elr-mri "
                          "import-cohort` or `simulate-cohort` wrote); set it, e.g. "
                          "--set data.mri.manifest=data/adni.csv")
    if cfg.data.mri.cache == "disk" and cfg.data.mri.cache_dir is None:
        raise ConfigError(f"{source}: data.mri.cache: disk needs data.mri.cache_dir, a folder for the cached volumes; "
                          "set it, or data.mri.cache: memory")
    if cfg.train.loader == "device" and cfg.data.name not in HELD_IN_MEMORY:  # else refused once the data loaded
        raise ConfigError(f"{source}: train.loader = device serves images held in memory "
                          f"({', '.join(HELD_IN_MEMORY)}), and data.name = {cfg.data.name} is read from files; set "
                          "train.loader: auto or dataloader")
    if cfg.data.normalization == "measured" and cfg.data.name not in (*HELD_IN_MEMORY, "mri"):
        raise ConfigError(f"{source}: data.normalization = measured measures images held in memory, and data.name = "
                          f"{cfg.data.name} is read from files; set data.normalization: auto (the release's constants)")
    if cfg.data.name not in ("digits", "mri") and cfg.data.root is None:
        raise ConfigError(f"{source}: data.name = {cfg.data.name} needs data.root, the folder that holds the data set "
                          f"(e.g. --set data.root={_ROOT_EXAMPLES[cfg.data.name]}); the README's 'Reproducing the "
                          "paper' says where to get each")


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


def _check_optimizer(cfg: RunConfig, source: str) -> None:
    """Nesterov is an SGD momentum variant: torch's Adam has no such flag and SGD refuses it without momentum."""
    if cfg.optim.name == "adam" and cfg.optim.nesterov:
        raise ConfigError(f"{source}: optim.nesterov applies to SGD only; drop it or set optim.name: sgd")
    if cfg.optim.nesterov and cfg.optim.momentum == 0:  # torch refuses it at the first step, naming no key
        raise ConfigError(f"{source}: optim.nesterov needs optim.momentum > 0 (a Nesterov step is a momentum step); "
                          "set optim.momentum (e.g. 0.9), or drop optim.nesterov")


def _check_loss_trains(cfg: RunConfig, source: str) -> None:
    """SCE with both terms weighted 0 is a constant loss: the run would train nothing without a word."""
    if cfg.loss.name == "sce" and cfg.loss.sce_alpha == cfg.loss.sce_beta == 0:
        raise ConfigError(f"{source}: loss.sce_alpha and loss.sce_beta are both 0, so the loss is 0 and nothing "
                          "trains; set one above 0")


def _check_averages_move(cfg: RunConfig, source: str) -> None:
    """ELR+'s weight averages keep ema_decay of themselves each step: at 1 the ramp ends in averages that no longer
    move (with ema_ramp_steps 0, from the first step: the initial weights), and the targets come from them. 1 is what
    code that weighs the new weights instead would write for "no averaging"; here that is 0."""
    plus = cfg.elr_plus
    if cfg.loss.name == "elr_plus" and plus.ema_schedule == "ramp" and plus.ema_decay == 1:
        raise ConfigError(f"{source}: elr_plus.ema_decay = 1 keeps the weight averages as they are once "
                          f"elr_plus.ema_ramp_steps ({plus.ema_ramp_steps}) have passed, and ELR+'s targets come from "
                          "them; set it below 1 (the official 0.997; 0 averages nothing), or elr_plus.ema_schedule: "
                          "running_average for the mean of every step's weights")


# A data.root for each image data set as the README lays them out (cifar10/100: the folder above torchvision's).
_ROOT_EXAMPLES = {"cifar10": "data", "cifar100": "data", "imagefolder": "data/cifar10", "clothing1m": "data/clothing1m",
                  "webvision": "data/webvision"}
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
    if noise.mode != "human" and noise.human_key != NoiseConfig.human_key:  # which CIFAR-N labels, alone: no CIFAR-N
        raise ConfigError(f"data.noise.human_key = {noise.human_key} is not read by data.noise.mode = {noise.mode}; "
                          "set data.noise.mode: human with data.noise.human_labels (a CIFAR-N label file), or drop "
                          "data.noise.human_key")


def check_noise_fits_data(data: DataConfig) -> None:
    """`human` looks CIFAR-10N / CIFAR-100N labels up by each image's index in its release; an MRI cohort has no such
    index, and its scans took the file's labels in manifest order, whatever the file's length, without a word.
    Checked when a run starts, as `check_noise_settings`."""
    if data.name == "mri" and data.noise.mode == "human":
        raise ConfigError("data.noise.mode = human reads a CIFAR-10N / CIFAR-100N label file by each image's index in "
                          "its release, which an MRI cohort has not; give the noisy diagnoses in the manifest's "
                          "diagnosis column (data.noise.mode: none), or inject noise with symmetric, pair or transition")


def check_augment_settings(data: DataConfig) -> None:
    """`data.mri.flip` or `max_shift` with `data.augment: false` would look like an augmented run that is not one:
    without augmentation every training scan is the centre crop as it is. Checked when a run starts, as
    `check_noise_settings`."""
    unread = [key for key, is_set in (("flip", data.mri.flip), ("max_shift", data.mri.max_shift is not None)) if is_set]
    if data.name == "mri" and not data.augment and unread:
        raise ConfigError(f"data.mri.{' and data.mri.'.join(unread)} not read with data.augment: false (training "
                          "then uses the centre crop as it is); set data.augment: true, or drop them")


def check_new_run_settings(data: DataConfig) -> None:
    """The settings a new run is refused for at its start, not when its config loads (runs made before these checks
    still evaluate and resume): `train`'s, and bench/check_row_settings.py's, which must refuse what `train` would."""
    check_noise_settings(data.noise)
    check_noise_fits_data(data)
    check_augment_settings(data)
