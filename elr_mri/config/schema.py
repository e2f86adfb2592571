"""The run configuration's sections as dataclasses: every setting, its type, its allowed values and its default in
one place, plus the few ways the rest of the code reads settings off a config (dotted keys, plain dicts)."""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A configuration problem, phrased as one line a user can act on."""


@dataclass
class NoiseConfig:
    """Which label noise to put on the training labels (see `elr_mri.data.noise`)."""

    mode: Literal[
        "none", "symmetric", "symmetric_exclusive", "pair", "asymmetric_cifar10", "asymmetric_cifar10_official",
        "asymmetric_cifar100", "transition", "human",
    ] = "none"  # how labels are flipped (README, "Label noise"); none: the labels as given
    rate: float = 0.0  # the share of training labels a flipping mode changes
    seed: int = 0  # the flips' own draw: the same noisy labels whatever the run's seed
    transition_matrix: str | None = None  # .npy / .csv path, for mode "transition"
    human_labels: str | None = None  # CIFAR-10N / CIFAR-100N label file, for mode "human"
    # which labels of that file: CIFAR-10N's aggre_label, worse_label, random_label1..3, CIFAR-100N's noisy_label
    human_key: str = "worse_label"


@dataclass
class MRIDataConfig:
    """A cohort of preprocessed T1 scans (the manifest `elr-mri preprocess` writes, plus diagnoses)."""

    manifest: str | None = None  # CSV, one row a scan: participant_id, session_id, path, diagnosis, age, sex, cohort
    holdout_manifest: str | None = None  # independent cohort (NACC): checked at the start, evaluated at the end
    splits: str | None = None  # CSV participant_id,split (train/val/test); made by participant when absent
    val_labels: str | None = None  # CSV participant_id,session_id,diagnosis: adjudicated labels the validation split scores against
    test_fraction: float = 0.15  # of each diagnosis's participants, for the test split (without data.mri.splits)
    classes: list[str] = field(default_factory=lambda: ["CN", "MCI", "AD"])  # the diagnoses trained on, in this order
    crop_size: list[int] = field(default_factory=lambda: [96, 96, 96])  # voxels; random in training, central otherwise
    cache: Literal["none", "memory", "disk"] = "memory"  # scans kept loaded between epochs: in memory, on disk, or not
    cache_dir: str | None = None  # for cache: disk (MONAI PersistentDataset)
    blur_sigma_max: float = 1.0  # Gaussian blur σ ~ U(0, max), the ML4H paper's augmentation
    blur_on: Literal["auto", "loader", "device"] = "auto"  # where that blur runs; auto: the device on a GPU
    flip: bool = False  # random left-right flips in training
    max_shift: int | None = None  # training crops within ±max_shift voxels of the centre crop; null: anywhere
    allow_participant_overlap: bool = False  # override the leakage guard; the report then says so
    allow_other_preprocessing: bool = False  # score a holdout normalised, masked or registered otherwise; warned of


@dataclass
class DataConfig:
    """Where the images come from and how the noisy training set is split."""

    # digits: sklearn's 8×8, installed with it; imagefolder: train/ and test/ folders of class folders (CIFAR-10 JPEGs)
    name: Literal["digits", "cifar10", "cifar100", "imagefolder", "clothing1m", "webvision", "mri"] = "digits"
    root: str | None = None  # the data set's folder (README, "Reproducing the paper"); digits and mri read none
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    val_fraction: float = 0.1  # the paper holds out 10% of the (noisy) training set
    split_seed: int = 0  # the validation (and MRI test) split's draw, and the subsets' below
    train_subset: int | None = None  # keep this many training images (CPU smoke runs), each class in its share
    test_subset: int | None = None  # keep this many test images, likewise
    augment: bool = True  # random crops (padded by 4 for small images) and flips of training images; MRI: data.mri
    # per-channel mean/std: a data set's official constants (images.NORMALISATION), or "measured" on the training
    # images; auto: the constants of data.name where known, else measured (an image folder of CIFAR-10 JPEGs
    # should name cifar10, as the paper's configs here do)
    normalization: Literal["auto", "cifar10", "cifar100", "clothing1m", "webvision", "measured"] = "auto"
    num_workers: int = 0  # DataLoader worker processes (0: the training process reads the data itself)
    balanced_batches: int | None = None  # class-balanced batches per epoch (Clothing1M; MRI cohorts one class dominates)
    # with balanced_batches: false redraws them with replacement each epoch; true draws once per run (per ELR+
    # network) a subset of balanced_batches × batch_size examples, at most an equal share per class, without
    # replacement, and shuffles it each epoch, as the official Clothing1M loaders
    balanced_subset: bool = False
    mri: MRIDataConfig = field(default_factory=MRIDataConfig)


# The data sets whose images `build_data` holds in memory: `train.loader: auto` serves them from the device, with no
# DataLoader and so no workers; the others are read from files an item at a time, which `loader: device` cannot serve.
HELD_IN_MEMORY = ("digits", "cifar10", "cifar100", "imagefolder")


@dataclass
class ModelConfig:
    """Which network to train (`elr_mri.models`) and its size; each model reads the settings that fit it."""

    name: str = "mlp"  # one of elr_mri.models.MODEL_NAMES (an unknown name lists them); mri takes the 3D ones
    hidden: int = 256  # width of the small digits models
    widening: int = 8  # widened 3D CNN (Liu et al. 2019): channel factor e ∈ {1, 2, 4, 8}
    use_age: bool = True  # widened 3D CNN: add the sinusoidal age encoding to the image feature
    pretrained_checkpoint: str | None = None  # a state dict to start from (Clothing1M: ImageNet ResNet-50 weights)


@dataclass
class LossConfig:
    """Loss and its hyperparameters; unused ones are ignored by the other losses (LOSS_READS says which read what)."""

    name: Literal["ce", "gce", "sce", "elr", "elr_plus"] = "ce"  # elr_plus also reads the elr_plus section
    lam: float = 3.0  # ELR λ
    beta: float = 0.7  # ELR temporal-ensembling momentum β
    lam_ramp_steps: int = 0  # ELR: λ ramps in over this many steps, as elr_plus.coef_step (0: full λ at once)
    lam_start_steps: int = 0  # ELR: λ is 0 (plain CE) for this many steps, then ramps in (0: from the first step)
    targets_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # half the memory for huge tables
    gce_q: float = 0.7  # generalized cross-entropy's q (Zhang & Sabuncu 2018): 1 is MAE, towards 0 CE
    sce_alpha: float = 0.1  # symmetric cross-entropy (Wang et al. 2019): the CE term's weight
    sce_beta: float = 1.0  # and the reverse CE term's


@dataclass
class ELRPlusConfig:
    """ELR+ extras (paper §4 and appendix): mixup, weight averaging, ramps."""

    mixup_alpha: float = 1.0  # mixup's Beta(α, α); 0: no mixup
    ema_decay: float = 0.997  # the weight averages' momentum once ramped in
    # ramp: decay = ema_decay·exp(-5(1-s/L)^2) over L = ema_ramp_steps (official CIFAR configs); running_average:
    # decay = min(1 - 1/(s+1), ema_decay), the plain mean of the weights so far until that reaches ema_decay
    # (official Clothing1M config, "ema_update": false)
    ema_schedule: Literal["ramp", "running_average"] = "ramp"
    ema_ramp_steps: int = 40000  # L above, in steps of one network
    coef_step: int = 0  # λ ramps in over this many steps (0: full λ from the start)
    reweight_labels: bool = False  # CIFAR-100 setting: weight CE labels by the targets
    # epoch: network 1 trains a whole epoch on its stream, then network 2 on its own, each against the other's
    # average as it stands (the official code's single-device branch, which its CIFAR configs run); step: a
    # step each in turn, every step (the averages move in between; runs made before this setting)
    alternation: Literal["step", "epoch"] = "step"


@dataclass
class OptimConfig:
    """The optimiser and its base learning rate (which `schedule` scales epoch by epoch)."""

    name: Literal["sgd", "adam"] = "sgd"  # torch's SGD or Adam
    lr: float = 0.02  # the base rate, where the schedule starts
    momentum: float = 0.9  # SGD's momentum; Adam's β1
    weight_decay: float = 1e-3  # L2 penalty, as torch's optimisers apply it
    nesterov: bool = False  # SGD's Nesterov momentum


@dataclass
class ScheduleConfig:
    """How the learning rate changes over epochs; each schedule reads its own settings (SCHEDULE_READS)."""

    # multistep: drops at milestones; cosine: one decay over train.epochs; cosine_warm_restarts: one every t0 epochs
    name: Literal["constant", "multistep", "cosine_warm_restarts", "cosine"] = "multistep"
    milestones: list[int] = field(default_factory=lambda: [40, 80])  # multistep: the epochs after which the rate drops
    gamma: float = 0.01  # multistep: the factor at each milestone
    t0: int = 10  # cosine_warm_restarts: epochs between restarts
    eta_min: float = 0.001  # cosine schedules: the absolute floor the rate decays to (below optim.lr)


@dataclass
class TrainLoopConfig:
    """How long and on what the run trains, how fast, and which checkpoint it keeps; most may change on a resume."""

    epochs: int = 120  # may grow on a resume (a cosine schedule's may not)
    batch_size: int = 128  # training examples a step (the global batch under torchrun)
    # examples a forward pass scores when evaluating; 0: 512 images, or train.batch_size MRI volumes
    # (`evaluation_batch_size`)
    eval_batch_size: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: a CUDA GPU where one is visible, else the CPU
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
    # torch's CPU threads; 0: its default, one a core, no more than the usable cores (a container's quota). 1 is often
    # faster where other jobs hold the cores
    threads: int = 0
    # last.pt/best.pt at the end of an epoch once this many seconds passed since the last write, and after
    # the final epoch; 0: every epoch. A killed run loses at most this much plus the epoch in flight
    checkpoint_seconds: float = 60.0
    tensorboard: bool = True  # the metrics as TensorBoard scalars too, in RUN/tensorboard/
    progress: bool = True  # a line per epoch on stderr, and bars (data loading, epochs, batches) on a terminal


@dataclass
class RunConfig:
    """One run: the top level of a config file, a section each, plus the run's seed (split and noise have their own)."""

    seed: int = 0  # Python's, NumPy's and torch's generators: initial weights, batch order, augmentation
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    elr_plus: ELRPlusConfig = field(default_factory=ELRPlusConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict, ready for `yaml.safe_dump` (the run's resolved config.yaml)."""
    return dataclasses.asdict(config)


def flat_settings(config: Any) -> dict[str, Any]:
    """Dotted key → value of every setting (`train.epochs`: 120), for checks and comparisons that name the key."""
    return _flatten(config_to_dict(config))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def setting_value(cfg: RunConfig, key: str) -> Any:
    """The value of the setting a dotted key names (`loss.name`)."""
    return functools.reduce(getattr, key.split("."), cfg)


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every key a config may give, sections too, dotted from the top: data, data.noise, data.noise.rate, ..."""
    keys = []
    for name, hint in typing.get_type_hints(cls).items():
        keys.append(prefix + name)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            keys += dotted_keys(hint, f"{prefix}{name}.")
    return keys


BLUR_TRUNCATE = 8.0  # the official code's truncate: the MRI training blur's kernel reaches 8σ


def kernel_radius(sigma: float) -> int:
    """Voxels scipy's Gaussian reaches on each side at `sigma` (its own rounding of truncate·σ)."""
    return int(BLUR_TRUNCATE * sigma + 0.5)


IMAGE_EVAL_BATCH = 512


def evaluation_batch_size(cfg: RunConfig) -> int:
    """`train.eval_batch_size`, or where it is 0 (the default) one that suits the data: 512 small images, or
    `train.batch_size` MRI volumes. Why not 512 volumes: a 96³ volume through the ×8 network holds about 220 MB of
    activations even without gradients (measured on a CPU), so a split scored at once would ask for 10–100 GB."""
    if cfg.train.eval_batch_size:
        return cfg.train.eval_batch_size
    return cfg.train.batch_size if cfg.data.name == "mri" else IMAGE_EVAL_BATCH
