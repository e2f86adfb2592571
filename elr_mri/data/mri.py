"""MRI cohorts as the training engine sees them: MONAI transforms, cached datasets, `build_mri_data`.

The transforms follow the ML4H paper (Liu et al. 2019) and its official code: load, channel first,
RAS orientation, per-volume min-max to [0, 1], then for training a Gaussian blur with one σ ~ U(0, 1)
for all three axes on the whole volume followed by a random 96³ crop; evaluation takes the centre
crop. Everything before the first random transform is cached (in RAM or on disk), so only the first
epoch reads NIfTI files.

Order of operations in `build_mri_data`: validate the manifest → split participants (or read
data.mri.splits) → inject label noise, if configured, into the train and validation scans (the
validation set is noisy, as in the paper; test labels are left as given) → replace the validation
labels by adjudicated ones when data.mri.val_labels names them (`elr_mri.data.adjudicated`) → one
dataset per split, each re-indexed 0..N-1 (the index the ELR targets are stored by).

Public names: `MRIScans`, `ScanReadError`, `LoadScand`, `mri_transforms`, `read_scan_as_the_network_does`,
`build_mri_data`, `build_mri_eval_dataset`, `HoldoutRows`, `load_holdout_manifest`, `training_manifest_images`,
`holdout_dataset`, `participants_by_split`, `run_splits_table`, `split_balance_table` (the holdout's checks live in
`elr_mri.data.holdout`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from monai.data import Dataset as MonaiDataset
from monai.data.meta_tensor import MetaTensor
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    EnsureChannelFirstd,
    Lambdad,
    LoadImaged,
    MapTransform,
    Orientationd,
    RandFlipd,
    Randomizable,
    ScaleIntensityd,
    SpatialPadd,
)

from elr_mri.config import DataConfig, MRIDataConfig
from elr_mri.data.adjudicated import load_adjudicated_labels
from elr_mri.data.blurred_crop import RandBlurredCropd
from elr_mri.data.cohort import IMAGE_COLUMN, label_indices, load_manifest, true_label_indices, warn_once
from elr_mri.data.disk_cache import DiskCache, warn_if_the_disk_cannot_hold
from elr_mri.data.grid import ScanReadError, VolumeGrid, common_grid
from elr_mri.data.holdout import HoldoutRows, load_holdout_manifest, training_manifest_images
from elr_mri.data.images import LabelledDataset, NoisyImageData, stratified_subset
from elr_mri.data.memory_cache import MemoryCache, cache_bytes, require_memory_for_cache
from elr_mri.data.noise import apply_noise_config
from elr_mri.data.splits import diagnoses_left_out, load_splits, split_balance, split_participants

__all__ = [
    "MRIScans",
    "ScanReadError",
    "LoadScand",
    "mri_transforms",
    "read_scan_as_the_network_does",
    "build_mri_data",
    "build_mri_eval_dataset",
    "HoldoutRows",
    "load_holdout_manifest",
    "training_manifest_images",
    "holdout_dataset",
    "participants_by_split",
    "run_splits_table",
    "split_balance_table",
]

log = logging.getLogger(__name__)

LEFT_RIGHT_AXIS = 0  # in RAS orientation; the only axis along which a brain is (roughly) symmetric
FLIP_PROBABILITY = 0.5


class LoadScand(MapTransform):
    """MONAI's LoadImaged, failing with the scan's path and what to do instead of a bare decoder error.

    MONAI wraps the error in a RuntimeError naming only the transform; `ScanReadError` stays in its
    cause chain, where the command line finds it.
    """

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.load = LoadImaged(key, reader="NibabelReader", image_only=True)

    def __call__(self, data: dict) -> dict:
        try:
            loaded = self.load(data)
        except Exception as err:  # noqa: BLE001 - any decoder failure is the same problem for the user
            paths = ", ".join(str(data[key]) for key in self.key_iterator(data))
            reason = (str(err).strip().splitlines() or [""])[0]
            raise ScanReadError(f"{paths}: cannot be read as a volume ({type(err).__name__}: {reason}); preprocess "
                                "the scan again or remove its row from the manifest") from err
        for key in self.key_iterator(loaded):
            _refuse_a_blank_image(torch.as_tensor(loaded[key]), str(data[key]))
        return loaded


def _refuse_a_blank_image(volume: torch.Tensor, path: str) -> None:
    """Min-max scaling leaves a scan with an infinite voxel all 0 (or all 1) but that voxel, and one without two
    different finite values all 0: it trained on as a blank image, without a word."""
    finite = volume[torch.isfinite(volume)]
    if torch.isinf(volume).any():
        problem = "has infinite voxels"
    elif finite.numel() == 0 or bool(finite.min() == finite.max()):
        problem = "holds no image (every voxel NaN or the same value)"
    else:
        return
    raise ScanReadError(f"{path}: {problem}, so min-max scaling would leave a blank image; preprocess the scan again "
                        "or remove its row from the manifest")


def _zero_nan(volume: torch.Tensor) -> torch.Tensor:
    """NaN voxels (an external pipeline's masked-out background) set to 0 before min-max, as the official
    code does; otherwise one NaN makes the whole scaled volume NaN."""
    return torch.nan_to_num(volume, nan=0.0)


def _reading_steps() -> list:
    """A scan as every model reads it, before any crop: RAS axes, NaN voxels 0, intensities min-max to [0, 1]."""
    return [
        LoadScand("image"),
        EnsureChannelFirstd("image"),
        Orientationd("image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Lambdad("image", func=_zero_nan),
        ScaleIntensityd("image", minv=0.0, maxv=1.0),
    ]


def read_scan_as_the_network_does(path: str | Path) -> np.ndarray:
    """The scan at `path` as the CNN reads it, uncropped (the voxel baseline's input): a scan stored in another
    axis order, with NaN voxels or in scanner units gives the same array as its preprocessed RAS copy."""
    return np.asarray(Compose(_reading_steps())({"image": str(path)})["image"][0], dtype=np.float32)


def mri_transforms(crop_size: Sequence[int], train: bool, blur_sigma_max: float = 1.0, flip: bool = False,
                   max_shift: int | None = None, blur_on_device: bool = False) -> Compose:
    """The dictionary transforms of one split; MONAI caches everything before the first random one.

    Volumes smaller than `crop_size` are zero-padded (after min-max, so padding is background).
    `max_shift` keeps training crops within that many voxels of the evaluation (centre) crop: a
    random crop anywhere in a registered volume moves the hippocampi by tens of voxels, more than a
    small cohort can learn to ignore. None: anywhere, as the ML4H code. `blur_on_device`: training items are
    the crop with the blur kernel's reach around it and their σ, blurred later on the batch's device.
    """
    crop = [int(s) for s in crop_size]
    steps: list = [*_reading_steps(), SpatialPadd("image", spatial_size=crop)]
    if not train:
        return Compose(steps + [CenterSpatialCropd("image", roi_size=crop)])
    # the blur is of the whole volume (at the max_shift window's cut faces it would darken them), computed
    # on the crop and the kernel's reach around it
    steps.append(RandBlurredCropd("image", crop, blur_sigma_max, max_shift, defer_blur=blur_on_device))
    if flip:
        steps.append(RandFlipd("image", prob=FLIP_PROBABILITY, spatial_axis=LEFT_RIGHT_AXIS))
    return Compose(steps)


class MRIScans(LabelledDataset):
    """The scans of one split. Items: {"image": float32 (1, D, H, W), "label": int, "index": int, "age": float}.

    `frame` holds the manifest rows in dataset order (participant_id, session_id, split, ...), so
    index i of predictions or ELR targets belongs to `frame.iloc[i]`. Age is NaN when unknown.
    `cache_tag` names the settings of the cached (deterministic) steps, e.g. the crop size, so a
    disk cache made with other settings is not reused.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        labels: np.ndarray,
        transform: Compose,
        cache: str = "memory",
        cache_dir: str | Path | None = None,
        num_workers: int = 0,
        cache_tag: str = "",
        progress: bool = True,
    ) -> None:
        self.frame = frame.reset_index(drop=True)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.labels) != len(self.frame):
            raise ValueError(f"{len(self.labels)} labels for {len(self.frame)} scans")
        self.ages = self.frame["age"].to_numpy(dtype=np.float64)
        self.transform = transform
        records = _cache_records(self.frame[IMAGE_COLUMN], cache_tag)
        self.volumes = _monai_dataset(records, transform, cache, cache_dir, num_workers, progress)
        self._random_state = _shared_random_state(transform)
        self._stream_seed: int | None = None

    def item(self, index: int, seed: int | None) -> dict:
        """Scan `index`, augmented from `seed` (None: from this process's stream, see below)."""
        if seed is None:
            self._continue_process_stream()
        else:
            self._random_state.seed(seed)
            self._stream_seed = None  # the process's stream is to be drawn afresh
        record = self.volumes[index]
        image = record["image"]
        image = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
        return {
            "image": image.to(torch.float32).contiguous(),
            "label": int(self.labels[index]),
            "index": index,
            "age": float(self.ages[index]),
            **({"blur_sigma": record["blur_sigma"]} if "blur_sigma" in record else {}),  # blurred on the device
        }

    def _continue_process_stream(self) -> None:
        """Outside training (which seeds each item: `seeded_items`) give each process its own stream.

        The transforms' NumPy RandomState would otherwise be copied alike into every DataLoader worker;
        torch's seed differs per worker, and the main process's is the run's seed.
        """
        seed = torch.initial_seed() % 2**32
        if seed != self._stream_seed:
            self._random_state.seed(seed)
            self._stream_seed = seed


def _shared_random_state(transform: Compose) -> np.random.RandomState:
    """One RandomState for all random steps of `transform`, reseeded per item: 1.5 µs, where MONAI's
    `set_random_state(seed=...)` makes a RandomState per step (0.15 ms each; 1.2 ms a scan measured)."""
    state = np.random.RandomState()
    for step in transform.flatten().transforms:
        if isinstance(step, Randomizable):
            step.set_random_state(state=state)
    return state


def build_mri_data(cfg: DataConfig, require_age: bool = False, blur_on_device: bool = False,
                   progress: bool = True) -> NoisyImageData:
    """Train / val / test datasets of the cohort in `cfg.mri.manifest` (see the module docstring).

    `require_age`: refuse scans without an age (pass the model's `use_age`). Labels are noisy only
    as given unless `cfg.noise.mode` injects more; a `true_diagnosis` column (simulated cohorts)
    supplies `train_clean_labels`. `blur_on_device`: see `mri_transforms`. `progress`: whether filling a
    memory cache may show a bar (`train.progress`, on the main rank only).
    """
    mri = cfg.mri
    if not mri.manifest:
        raise ValueError("data.mri.manifest must name the cohort's manifest CSV when data.name is mri")
    classes = list(mri.classes)
    frame = load_manifest(mri.manifest, classes, require_age=require_age)
    if "processed_path" not in frame.columns:
        warn_once(f"{mri.manifest}: no processed_path column, so the scans in `path` are read as they are; if they "
                  "are raw scans, run `elr-mri preprocess` and train on the manifest it writes")
    grid = common_grid(frame[IMAGE_COLUMN], source=str(mri.manifest))
    _note_padding(grid, mri.crop_size, str(mri.manifest))
    if mri.splits:
        split = load_splits(mri.splits, frame["participant_id"])
    else:
        split = split_participants(frame, mri.test_fraction, cfg.val_fraction, cfg.split_seed)
    frame["split"] = frame["participant_id"].map(split)
    if mri.holdout_manifest:  # checked before training, not after hours of it
        load_holdout_manifest(mri.holdout_manifest, cfg, frame["participant_id"], require_age, grid,
                              training_scans=frame)

    given, noisy, clean = _cohort_labels(frame, cfg, classes)
    rows = _split_rows(frame, cfg, given, noisy, classes)
    if not len(rows["train"]):
        raise ValueError(f"{mri.manifest}: no training scans after splitting; the cohort is too small")
    _check_training_diagnoses(noisy[rows["train"]], noisy, classes, str(mri.manifest), mri.splits)
    _check_room_for_cache(mri, grid, *_cached_items(frame, rows, mri, cfg.augment))

    def scans(name: str, train: bool) -> MRIScans:
        transform = mri_transforms(mri.crop_size, train, mri.blur_sigma_max, mri.flip, mri.max_shift,
                                   blur_on_device=train and blur_on_device)
        return MRIScans(frame.iloc[rows[name]], noisy[rows[name]], transform, mri.cache, mri.cache_dir,
                        cfg.num_workers, cache_tag=_cache_tag(mri.crop_size, train, mri.max_shift), progress=progress)

    return NoisyImageData(
        train=scans("train", train=cfg.augment),
        val=scans("val", train=False) if len(rows["val"]) else None,
        test=scans("test", train=False) if len(rows["test"]) else None,
        num_classes=len(classes),
        input_shape=(1, *(int(s) for s in mri.crop_size)),
        train_labels=noisy[rows["train"]],
        train_clean_labels=None if clean is None else clean[rows["train"]],
        class_names=classes,
        volume_grid=grid,
        participant_splits=frame.drop_duplicates("participant_id").set_index("participant_id")["split"],
        splits_file=mri.splits,
    )


def _split_rows(frame: pd.DataFrame, cfg: DataConfig, given: np.ndarray, noisy: np.ndarray,
                classes: list[str]) -> dict[str, np.ndarray]:
    """The rows of `frame` each split uses: its scans, less those data.train_subset / data.test_subset leave out,
    and with data.mri.val_labels only the validation scans it scores (their labels in `noisy` then adjudicated)."""
    rows = {name: np.flatnonzero(frame["split"] == name) for name in ("train", "val", "test")}
    for name, size in (("train", cfg.train_subset), ("test", cfg.test_subset)):
        if size is not None:  # by the given diagnoses, as image data sets keep their class shares
            rows[name] = rows[name][stratified_subset(given[rows[name]], size, cfg.split_seed, f"data.{name}_subset")]
    if cfg.mri.val_labels:
        rows["val"] = _validate_on_adjudicated(cfg.mri.val_labels, cfg, frame, rows["val"], given, noisy, classes)
    return rows


def _cohort_labels(frame: pd.DataFrame, cfg: DataConfig,
                   classes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every scan's label index as the manifest gives it, as the run trains on it (with data.noise injected into the
    train and validation scans; test labels stay as given) and, where known, as it truly is: a simulated cohort's
    true_diagnosis, else the given labels when the noise is the run's own."""
    given = label_indices(frame["diagnosis"], classes)
    noisy = given.copy()
    pool = np.flatnonzero(frame["split"] != "test")
    if cfg.noise.mode != "none":
        noisy[pool] = apply_noise_config(cfg.noise, given[pool], len(classes))
    if "true_diagnosis" in frame.columns:
        clean: np.ndarray | None = true_label_indices(frame["true_diagnosis"], classes)
    else:
        clean = given if cfg.noise.mode != "none" else None
    return given, noisy, clean


def _validate_on_adjudicated(val_labels: str, cfg: DataConfig, frame: pd.DataFrame, val_rows: np.ndarray,
                             given: np.ndarray, noisy: np.ndarray, classes: list[str]) -> np.ndarray:
    """The validation rows `val_labels` (data.mri.val_labels) scores, their labels in `noisy` replaced by the
    adjudicated ones; a scan adjudicated as a diagnosis the run leaves out has no right class, so it is dropped from
    validation."""
    adjudicated = load_adjudicated_labels(val_labels, frame.iloc[val_rows], classes)
    scored = adjudicated >= 0  # -1: adjudicated as a diagnosis the run leaves out, so no class is right for it
    if not scored.all():
        warn_once(f"data.mri.val_labels {val_labels}: {int((~scored).sum())} validation scan(s) adjudicated as "
                  f"a diagnosis the run's classes {', '.join(classes)} leave out are not validated on")
    val_rows = val_rows[scored]
    if cfg.noise.mode == "none" and len(val_rows) and np.array_equal(adjudicated[scored], given[val_rows]):
        warn_once(f"data.mri.val_labels {val_labels}: gives all {len(val_rows)} validation scans the "
                  "manifest's own diagnoses, so the run validates as without it; it is read by its column "
                  "true_diagnosis, else diagnosis: a panel's column of another name, beside the manifest's "
                  "diagnosis, is not read")
    noisy[val_rows] = adjudicated[scored]
    return val_rows


def _check_training_diagnoses(labels: np.ndarray, cohort_labels: np.ndarray, classes: list[str], source: str,
                              splits_file: str | None = None) -> None:
    """Refuse training on one diagnosis (nothing to tell apart) and warn of a class no training scan has;
    `cohort_labels` (the whole manifest's) tell a one-diagnosis cohort from a split that left one. `splits_file`:
    data.mri.splits, which the fix is then made in (the fractions are not read)."""
    counts = np.bincount(labels, minlength=len(classes))
    present = [name for name, count in zip(classes, counts) if count]
    if len(present) < 2:
        if len(np.unique(cohort_labels)) > 1:
            fix = (f"list participants of other diagnoses as train in data.mri.splits ({splits_file})" if splits_file
                   else "lower data.mri.test_fraction or data.val_fraction (or give the splits in data.mri.splits)")
            raise ValueError(
                f"{source}: the {len(labels)} training scan(s) left after splitting are all labelled {present[0]}, "
                f"though the manifest has other diagnoses; {fix}, or raise or drop data.train_subset")
        raise ValueError(f"{source}: every training scan is labelled {present[0]}; a classifier needs at least two "
                         f"of the diagnoses {', '.join(classes)} (check the diagnosis column, or data.mri.classes)")
    absent = [name for name, count in zip(classes, counts) if not count]
    if absent:
        warn_once(f"{source}: no training scan is labelled {', '.join(absent)}; the network will never predict it "
                  "(set data.mri.classes to the diagnoses the cohort has)")


def _cached_items(frame: pd.DataFrame, rows: dict[str, np.ndarray], mri: MRIDataConfig,
                  augment: bool) -> tuple[list[dict], list[dict]]:
    """The `_cache_records` of the splits' scans as `scans` caches them: those kept whole (training's, augmented: its
    random crops are cut from them), then those kept as their centre crop."""
    whole = ["train"] if augment else []

    def items(name: str) -> list[dict]:
        return _cache_records(frame[IMAGE_COLUMN].iloc[rows[name]], _cache_tag(mri.crop_size, name in whole,
                                                                               mri.max_shift))

    return ([item for name in whole for item in items(name)],
            [item for name in rows if name not in whole for item in items(name)])


def _check_room_for_cache(mri: MRIDataConfig, grid: VolumeGrid, whole: list[dict], cropped: list[dict]) -> None:
    """Before a cache fills for tens of minutes: refuse one in memory that cannot fit, and say so of one on a disk too
    small. The scans of `whole` are kept whole (training's random crops are cut from them), those of `cropped` as
    their centre crop; both are `_cache_records`."""
    if mri.cache == "memory":
        require_memory_for_cache(len(whole), len(cropped), grid.shape, mri.crop_size)
    elif mri.cache == "disk" and mri.cache_dir is not None:
        warn_if_the_disk_cannot_hold(mri.cache_dir, cache_bytes(len(whole), len(cropped), grid.shape, mri.crop_size),
                                     [*whole, *cropped])


# a crop more than this many times a scan's extent along an axis is mostly padding: a typo, or scans of another grid
MAX_PADDED_CROP = 2.0


def _note_padding(grid: VolumeGrid, crop_size: Sequence[int], source: str) -> None:
    """Say when the crop is larger than the scans: they are zero-padded, which is rarely what was meant. A crop
    mostly of padding is refused: [200, 200, 200] on 64³ scans trained on 31× the voxels and ran out of memory."""
    short = [axis for axis, (size, crop) in enumerate(zip(grid.shape, crop_size)) if size < crop]
    padded = [axis for axis, (size, crop) in enumerate(zip(grid.shape, crop_size)) if crop > MAX_PADDED_CROP * size]
    if padded:
        raise ValueError(f"{source}: data.mri.crop_size {list(crop_size)} is more than {MAX_PADDED_CROP:g}× the scans "
                         f"({grid.describe()}) along axis {', '.join(map(str, padded))}, so the crops would be mostly "
                         "padding; set a crop within the scans or preprocess with a larger --shape")
    if short:
        warn_once(f"{source}: the scans ({grid.describe()}) are smaller than data.mri.crop_size {list(crop_size)} "
                  f"along axis {', '.join(str(a) for a in short)} and are zero-padded; set a crop within the scans or "
                  "preprocess with a larger --shape")


def build_mri_eval_dataset(
    manifest: str | Path, cfg: DataConfig, training_participants: Iterable[str], require_age: bool = False,
    grid: VolumeGrid | None = None, trained_preprocessing: dict[str, dict] | None = None,
) -> tuple[MRIScans, list[str]]:
    """A holdout cohort (e.g. NACC) for evaluation, refused if it shares participants with training or,
    given the run's `grid`, has scans on another voxel grid, or was preprocessed otherwise than the run's training
    scans (`trained_preprocessing`, as the run recorded them; None: read from its manifest's scans).

    Returns the dataset and the overlap notes to print in the report (non-empty only when
    `cfg.mri.allow_participant_overlap` let an overlap through).

    Its scans are read without a cache, whatever `cfg.mri.cache` says: each is scored once, so a memory cache only
    held every volume (unchecked against the memory available) and a disk cache wrote the holdout's crops into the
    run's `cache_dir` (unchecked against its free space).
    """
    frame, notes, _ = load_holdout_manifest(manifest, cfg, training_participants, require_age, grid,
                                            trained_preprocessing=trained_preprocessing)
    return holdout_dataset(frame, cfg), notes


def holdout_dataset(frame: pd.DataFrame, cfg: DataConfig) -> MRIScans:
    """The rows of `load_holdout_manifest` as the network reads them: centre crops, no cache (see
    `build_mri_eval_dataset`)."""
    transform = mri_transforms(cfg.mri.crop_size, train=False)
    return MRIScans(frame.assign(split="holdout"), label_indices(frame["diagnosis"], cfg.mri.classes), transform,
                    "none", num_workers=cfg.num_workers)


def participants_by_split(data: NoisyImageData) -> pd.DataFrame:
    """participant_id,split of the participants an MRI run has scans of, in its splits: what a resume compares."""
    frames = [d.frame for d in (data.train, data.val, data.test) if isinstance(d, MRIScans)]
    table = pd.concat(frames)[["participant_id", "split"]]
    return table.drop_duplicates().reset_index(drop=True)


def run_splits_table(data: NoisyImageData) -> pd.DataFrame:
    """The run's splits.csv: `participants_by_split`, used true, then the manifest's participants data.train_subset,
    data.test_subset or data.mri.val_labels left every scan of out, used false. Those belong to the split all the
    same: without them the file, passed back as data.mri.splits to train again on the same splits, was refused for
    not listing every participant of the manifest; `read_run_splits` leaves them out."""
    table = participants_by_split(data).assign(used=True)
    if data.participant_splits is None:
        return table
    unused = data.participant_splits[~data.participant_splits.index.isin(table["participant_id"])]
    left_out = pd.DataFrame({"participant_id": unused.index, "split": unused.to_numpy(), "used": False})
    return pd.concat([table, left_out], ignore_index=True)


def split_balance_table(data: NoisyImageData) -> pd.DataFrame:
    """`split_balance` of an MRI run's splits (given diagnoses), saved as the run's split_balance.csv; a diagnosis
    the test or validation split has no scan of is warned of, with the setting that gave the split."""
    scans = pd.concat([d.frame for d in (data.train, data.val, data.test) if isinstance(d, MRIScans)])
    split = scans.drop_duplicates("participant_id").set_index("participant_id")["split"]
    balance = split_balance(scans, split, list(data.class_names))
    for name, setting in (("test", "data.mri.test_fraction"), ("val", "data.val_fraction")):
        left_out = diagnoses_left_out(scans, split, list(data.class_names), name)
        if not left_out:
            continue
        fix = (f"list some as {name} in data.mri.splits ({data.splits_file}), which gave the splits" if data.splits_file
               else f"raise {setting} or give the splits in data.mri.splits")
        log.warning("the run's %s split holds no participant diagnosed %s, so nothing there scores it; %s", name,
                    ", ".join(left_out), fix)
    return balance


def _monai_dataset(
    records: list[dict], transform: Compose, cache: str, cache_dir: str | Path | None, num_workers: int,
    progress: bool = True,
) -> MonaiDataset:
    """The volumes behind `MRIScans`; a memory cache shows MONAI's bar while it fills where `progress` allows and
    it takes a while (over 100 scans)."""
    if cache == "memory":
        return MemoryCache(records, transform, num_workers=max(1, num_workers),
                           progress=progress and len(records) > 100)
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("data.mri.cache: disk needs data.mri.cache_dir, a folder for the cached volumes")
        return DiskCache(records, transform, cache_dir)
    if cache == "none":
        return MonaiDataset(records, transform)
    raise ValueError(f"data.mri.cache = {cache!r} is not one of none, memory, disk")


def _cache_records(paths: Iterable[str], tag: str) -> list[dict]:
    """The items MONAI's dataset loads, one a scan; a disk cache names each one's file by the whole item."""
    return [{"image": path, "cache_key": _cache_key(path, tag)} for path in paths]


def _cache_key(path: str, tag: str) -> str:
    """What the disk cache is keyed by besides the path: file size, mtime and the cached steps' settings.

    A re-preprocessed volume or a changed crop size must not be served from a stale cache.
    """
    stat = Path(path).stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}-{tag}"


def _cache_tag(crop_size: Sequence[int], train: bool, max_shift: int | None = None) -> str:
    shift = f"-shift{max_shift}" if train and max_shift is not None else ""
    return f"{'train' if train else 'eval'}-crop{'x'.join(str(int(s)) for s in crop_size)}{shift}"

