"""Label-noise models for the noisy-label benchmarks of the ELR paper.

Every model takes the clean labels and returns `(noisy_labels, changed_mask)`, numpy in and out,
deterministic for a seed, never modifying its input. The modes:

- ``symmetric``: round(rate·N) examples, chosen at random, get a label drawn uniformly over ALL
  classes, the true one included, as in the paper and its code (40% on 10 classes changes ≈36%).
- ``symmetric_exclusive``: the same, but the new label is always a different class.
- ``pair``: a `rate` fraction of each class c moves to (c+1) mod C ("pair flipping", Co-teaching).
- ``asymmetric_cifar10``: a `rate` fraction of each source class flips, truck→automobile,
  bird→airplane, deer→horse, cat→dog and dog→cat. Every flip is drawn from the ORIGINAL labels. The
  official ELR code flips cats first and then selects "dogs" among labels that already include those
  cats, so some cats return to cat and only ≈24% of cats end as dog at 40%; here exactly `rate` do.
- ``asymmetric_cifar10_official``: the same flips in the official code's sequence, each source class
  (in index order) drawn from the labels as flipped so far: the noise the paper's asymmetric figures
  were measured on. At 40%: cat labels 34% wrong and dog labels 29%, 18.4% of all labels, against
  40%, 40% and 20% above.
- ``asymmetric_cifar100``: within each block of five consecutive classes (the paper's code calls
  them superclasses), a `rate` fraction of class i moves to the next class, the last to the first.
  The official code draws each label from that transition matrix, so its fraction is `rate` only in
  expectation; here it is exact, as for the other class-conditional modes.
- ``transition``: each label is redrawn from row ``transition[y]`` of a row-stochastic C×C matrix.
- ``none``: the labels unchanged (a copy).

Real human noise (CIFAR-10N / CIFAR-100N) comes from a file: see `load_human_labels`.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from elr_mri.data.array_pickles import numpy_array_globals

if TYPE_CHECKING:
    from elr_mri.config import NoiseConfig

__all__ = [
    "NOISE_MODES",
    "inject_noise",
    "apply_noise_config",
    "load_human_labels",
    "load_transition_matrix",
    "require_cifar10_classes",
    "torch_allows_named_globals",
    "transition_matrix",
]

NOISE_MODES = (
    "none", "symmetric", "symmetric_exclusive", "pair", "asymmetric_cifar10", "asymmetric_cifar10_official",
    "asymmetric_cifar100", "transition",
)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Source class → target class by position in CIFAR10_CLASSES, as in the paper's asymmetric setting.
CIFAR10_FLIPS = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
CIFAR10_ASYMMETRIC_MODES = ("asymmetric_cifar10", "asymmetric_cifar10_official")
CIFAR100_BLOCK = 5
CIFAR100_CLASSES = 100


def inject_noise(
    labels: np.ndarray,
    mode: str,
    rate: float,
    num_classes: int,
    seed: int,
    transition: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt `labels` with the named noise model; returns `(noisy_labels, changed_mask)`.

    `rate` is ignored by the modes ``none`` and ``transition`` (the matrix says it all).
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"unknown noise mode {mode!r}; allowed: {', '.join(NOISE_MODES)}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must lie in [0, 1], got {rate}")
    clean = _check_labels(labels, num_classes)
    rng = np.random.default_rng(seed)
    if mode == "none":
        noisy = clean.copy()
    elif mode in ("symmetric", "symmetric_exclusive"):
        noisy = _symmetric(clean, rate, num_classes, rng, exclusive=mode == "symmetric_exclusive")
    elif mode == "transition":
        if transition is None:
            raise ValueError("noise mode 'transition' needs a transition matrix")
        noisy = _redraw(clean, _check_transition(transition, num_classes), rng)
    else:
        noisy = _flip_fraction(clean, _class_map(mode, num_classes), rate, rng,
                               in_sequence=mode == "asymmetric_cifar10_official")
    return noisy, noisy != clean


def apply_noise_config(
    noise: NoiseConfig,
    labels: np.ndarray,
    num_classes: int,
    original_index: np.ndarray | None = None,
    release_index: np.ndarray | None = None,
) -> np.ndarray:
    """Noisy labels for a `NoiseConfig`; mode ``human`` looks labels up by `original_index`.

    `original_index` is each example's position in the original release (CIFAR training order),
    so a subset still lines up with CIFAR-10N / CIFAR-100N; by default 0..N-1. `release_index`: the original
    indices of the whole training set as loaded, before any subset; a CIFAR-N file must label exactly those.
    """
    if noise.mode == "human":
        if noise.human_labels is None:
            raise ValueError("noise mode 'human' needs data.noise.human_labels (a CIFAR-N label file)")
        return _human_labels(noise.human_labels, noise.human_key, labels, num_classes, original_index, release_index)
    transition = None
    if noise.mode == "transition":
        if noise.transition_matrix is None:
            raise ValueError("noise mode 'transition' needs data.noise.transition_matrix (.npy or .csv)")
        transition = load_transition_matrix(noise.transition_matrix)
        try:
            _check_transition(transition, num_classes)
        except ValueError as err:
            raise ValueError(f"data.noise.transition_matrix = {noise.transition_matrix}: {err}") from None
    noisy, _ = inject_noise(labels, noise.mode, noise.rate, num_classes, noise.seed, transition)
    return noisy


def require_cifar10_classes(noise: NoiseConfig, class_names: Sequence[str]) -> None:
    """``asymmetric_cifar10`` flips classes by position, so the data set's classes must be CIFAR-10's in its
    order. Checked when a run starts (runs made before the check still evaluate and resume)."""
    if noise.mode in CIFAR10_ASYMMETRIC_MODES and tuple(class_names) != CIFAR10_CLASSES:
        raise ValueError(f"noise mode '{noise.mode}' flips CIFAR-10's classes by position ("
                         f"{', '.join(CIFAR10_CLASSES)}), but this data set's classes are {', '.join(class_names)}; "
                         "use CIFAR-10 with its class folders named so, or another noise mode (e.g. pair)")


def load_human_labels(path: str | Path, key: str) -> np.ndarray:
    """One label array (int64, original training order) from a CIFAR-10N / CIFAR-100N file.

    `.npz` files load with `numpy.load`, the official `.pt` files (pickles) with `torch.load(weights_only=True)`
    allowing NumPy's numeric arrays besides: a shared file holding anything else is refused, its code not run. The
    file's `clean_label` is checked too, so that a damaged one is refused before an image is decoded.
    """
    return _key_and_clean_labels(Path(path), key)[0]


def load_transition_matrix(path: str | Path) -> np.ndarray:
    """A C×C noise transition matrix from `.npy` or `.csv` (comma-separated rows)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transition matrix file not found: {path}")
    if path.suffix not in (".npy", ".csv"):
        raise ValueError(f"{path}: unsupported transition matrix file; use .npy or .csv")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False).astype(np.float64)
        with warnings.catch_warnings():  # an empty file: numpy warns, then returns no rows (refused below)
            warnings.simplefilter("ignore", UserWarning)
            return np.loadtxt(path, delimiter=",", ndmin=2)
    except (ValueError, OSError, EOFError) as err:
        reason = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"{path}: not a readable transition matrix ({reason}); write C rows of C numbers "
                         "(comma-separated in a .csv)") from err


def transition_matrix(noisy: np.ndarray, clean: np.ndarray, num_classes: int) -> np.ndarray:
    """Empirical T[i, j] = P(noisy = j | clean = i); a class without examples gets a row of zeros."""
    clean = _check_labels(clean, num_classes)
    noisy = _check_labels(noisy, num_classes)
    if clean.shape != noisy.shape:
        raise ValueError(f"noisy and clean labels differ in length: {noisy.shape} vs {clean.shape}")
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (clean, noisy), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _human_labels(
    path: str | Path, key: str, labels: np.ndarray, num_classes: int, original_index: np.ndarray | None,
    release_index: np.ndarray | None = None,
) -> np.ndarray:
    """Human labels of the examples at `original_index`, after checking the file lines up with them.

    CIFAR-N files carry the clean labels too; if those disagree with the data set's labels, the
    images are not in the file's order, and training on the result would be silently wrong. The file labels
    every training image of the release: one it labels that `release_index` lacks is an image missing from
    the data set (a JPEG archive extracted in part), which would train a smaller, unbalanced set unnoticed.
    """
    path = Path(path)
    if "coarse" in key and num_classes != 20:  # CIFAR-100N's superclass labels, on the 100 fine classes
        raise ValueError(f"data.noise.human_key = {key}: coarse (20-superclass) labels cannot label the {num_classes} "
                         "classes of this data set; use noisy_label, CIFAR-100N's fine labels")
    human, file_clean = _key_and_clean_labels(path, key)
    index = np.arange(len(labels)) if original_index is None else np.asarray(original_index)
    loaded = index if release_index is None else np.asarray(release_index)
    if loaded.size and loaded.max() >= len(human):
        raise ValueError(
            f"{path}: holds {len(human)} labels but the data set has original index {loaded.max()}; "
            "the label file does not belong to this data set, or an image folder's file names are not the original "
            "indices counted from 0 (00000.jpg)"
        )
    if file_clean is not None and int(file_clean.max()) + 1 != num_classes:
        raise ValueError(
            f"{path}: its labels name {int(file_clean.max()) + 1} classes and the data set has {num_classes}; "
            "the file belongs to another data set (CIFAR-10N's file for CIFAR-10, CIFAR-100N's for CIFAR-100), or the "
            "data set lacks classes (a class folder missing?)"
        )
    if human.size and human.max() >= num_classes:
        raise ValueError(f"{path}: {key!r} holds label {human.max()}, outside the data set's {num_classes} classes "
                         f"(0 to {num_classes - 1}); the file belongs to another data set, or names another key")
    absent = np.array([]) if release_index is None else np.setdiff1d(np.arange(len(human)), loaded)
    if absent.size and loaded.size and absent.min() > loaded.max():  # the file runs past every image there
        raise ValueError(
            f"{path}: holds {len(human)} labels, {absent.size} more than the data set's {loaded.size} training images "
            f"(original index 0 to {loaded.max()}); the label file belongs to another data set (CIFAR-10N's file "
            "labels CIFAR-10's 50,000, CIFAR-100N's CIFAR-100's), or the data set lacks its last images (extract it "
            "again)"
        )
    if absent.size:
        raise ValueError(
            f"{path}: labels {len(human)} training images, but {absent.size} of them are not in the data set (e.g. "
            f"original index {absent[0]}; extracted in part?); extract the data set again (for fewer images set "
            "data.train_subset)"
        )
    if file_clean is not None:
        wrong = int((file_clean[index] != np.asarray(labels)).sum())
        if wrong:
            raise ValueError(
                f"{path}: its clean_label disagrees with the data set's labels on {wrong} of {len(index)} "
                "images, so they are not in the file's original order (an image folder must name its "
                "training images by their original index, e.g. 00042.jpg)"
            )
    return _check_labels(human[index], num_classes)


def _key_and_clean_labels(path: Path, key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The labels under `key` and the file's `clean_label` (None without one), this checked as those are and against
    their length: used unchecked, a NaN, a text or a shorter array stopped training with a bare NumPy error naming
    neither file nor key."""
    arrays = _read_label_arrays(path)
    human = _pick(arrays, key, path)
    if "clean_label" not in arrays:
        return human, None
    clean = _pick(arrays, "clean_label", path)
    if len(clean) != len(human):
        raise ValueError(f"{path}: 'clean_label' holds {len(clean)} labels and {key!r} {len(human)}, where both label "
                         "the release's training images in order; the file is damaged or mixes two data sets: use the "
                         "release's file (CIFAR-10N / CIFAR-100N)")
    return human, clean


def _read_label_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(
            f"human label file not found: {path} (CIFAR-10N / CIFAR-100N, e.g. CIFAR-10_human.npz)"
        )
    if path.suffix not in (".npz", ".pt"):
        raise ValueError(f"{path}: unsupported human label file; use .npz or .pt")
    kind = _label_file_kind(path)
    if kind is not None and kind != path.suffix:
        raise ValueError(f"{path}: holds a {_LABEL_FILE_KINDS[kind]}, not a {_LABEL_FILE_KINDS[path.suffix]}; "
                         f"rename it to {path.with_suffix(kind).name}")
    if path.suffix == ".pt":
        _require_torch_reading_arrays_safely(path)
    try:
        arrays = _load_label_file(path)
    except Exception as err:  # noqa: BLE001 - zip, pickle and torch each fail on a damaged file their own way
        from elr_mri.tensor_files import unsafe_objects  # torch's, loaded here already: .npz runs need none

        unsafe = unsafe_objects(path, err, _numpy_array_globals())
        if unsafe:
            raise ValueError(f"{path}: not loaded, as it holds Python objects ({unsafe}) besides label arrays, which "
                             "only running code from the file could make; use the official release (CIFAR-10N / "
                             "CIFAR-100N), or save the arrays with numpy.savez as a .npz") from None
        reason = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"{path}: cannot be read ({type(err).__name__}: {reason}); download the label file "
                         "again (CIFAR-10N / CIFAR-100N)") from err
    if not isinstance(arrays, dict):
        raise ValueError(f"{path}: expected a dict of label arrays, got {type(arrays).__name__}")
    return arrays


def _require_torch_reading_arrays_safely(path: Path) -> None:
    """torch's weights-only loader takes NumPy's arrays under the names the release pickled them by from torch 2.6 on
    (`safe_globals` entries of (object, name)); under an older torch the load failed as a damaged file's."""
    import torch

    if not torch_allows_named_globals(torch.__version__):
        raise ValueError(f"{path}: a .pt label file is read without running code it may hold from torch 2.6 on, and "
                         f"this is torch {torch.__version__}; use the release's .npz (numpy.savez of its arrays), or a "
                         "newer torch")


def torch_allows_named_globals(version: str) -> bool:
    """Whether torch `version` (e.g. 2.13.0+cpu) takes (object, "module.name") entries in its safe globals."""
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    return (major, minor) >= (2, 6)


_LABEL_FILE_KINDS = {".npz": "NumPy archive (.npz)", ".pt": "PyTorch file (.pt)"}
_PICKLE_PROTOCOL_2 = b"\x80\x02"  # how torch.save's legacy (non-zip) format starts


def _label_file_kind(path: Path) -> str | None:
    """".npz" or ".pt" by the file's content, None where neither is recognised (a damaged file, left to the loader).

    Each loader read the other's file as its own: a .pt named .npz offered its zip members (archive/data.pkl) as
    label keys, an .npz named .pt was called damaged. Both are zip files: torch's holds a data.pkl, NumPy's .npy
    members."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):  # no zip: torch's legacy pickle, or a damaged file
        with open(path, "rb") as handle:
            return ".pt" if handle.read(2) == _PICKLE_PROTOCOL_2 else None
    if any(name.endswith("data.pkl") for name in names):
        return ".pt"
    return ".npz" if all(name.endswith(".npy") for name in names) else None


def _load_label_file(path: Path) -> object:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    import torch

    with torch.serialization.safe_globals(_numpy_array_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def _numpy_array_globals() -> list[Callable[..., Any] | tuple[Callable[..., Any], str]]:
    """`numpy_array_globals` for torch's weights-only loader: the official CIFAR-N `.pt` files are dicts of arrays,
    which `weights_only=False` loaded by running whatever code the file held."""
    return [(found, name) for name, found in numpy_array_globals().items()]


def _pick(arrays: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise ValueError(f"{path}: no labels named {key!r}; available: {', '.join(sorted(arrays))} (set "
                         "data.noise.human_key to one of them)")
    return _class_numbers(np.asarray(arrays[key]).reshape(-1), key, path)


def _class_numbers(values: np.ndarray, key: str, path: Path) -> np.ndarray:
    """int64 labels, refusing values a cast would silently turn into other classes (3.7 → 3, -1 → a huge index)."""
    if values.dtype.kind not in "iuf":
        raise ValueError(f"{path}: {key!r} holds {values.dtype} values, not class numbers; give the file's labels as "
                         "integers 0, 1, 2, …")
    wrong = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)) | (values < 0))
    if wrong.size:
        raise ValueError(f"{path}: {key!r} holds {values[wrong[0]]} at position {wrong[0]} ({wrong.size} such), not a "
                         "class number; give the file's labels as integers 0, 1, 2, …")
    return values.astype(np.int64)


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def _check_transition(transition: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.asarray(transition, dtype=np.float64)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"transition matrix must be {num_classes}×{num_classes}, got shape {matrix.shape}")
    if (matrix < 0).any():
        raise ValueError("transition matrix has negative entries; each row must be a probability vector")
    sums = matrix.sum(axis=1)
    bad = np.flatnonzero(~np.isclose(sums, 1.0, atol=1e-6))
    if bad.size:
        raise ValueError(f"transition matrix rows must sum to 1; row {bad[0]} sums to {sums[bad[0]]:.6g}")
    return matrix


def _symmetric(
    clean: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator, exclusive: bool
) -> np.ndarray:
    noisy = clean.copy()
    chosen = rng.choice(len(clean), size=round(rate * len(clean)), replace=False)
    if exclusive:  # a uniform offset in 1..C-1 lands on every other class with equal probability
        offset = rng.integers(1, num_classes, size=chosen.size)
        noisy[chosen] = (clean[chosen] + offset) % num_classes
    else:
        noisy[chosen] = rng.integers(0, num_classes, size=chosen.size)
    return noisy


def _class_map(mode: str, num_classes: int) -> dict[int, int]:
    """Source class → target class of the class-conditional flipping modes."""
    if mode == "pair":
        return {c: (c + 1) % num_classes for c in range(num_classes)}
    if mode in CIFAR10_ASYMMETRIC_MODES:
        if num_classes != 10:
            raise ValueError(f"noise mode '{mode}' needs 10 classes, got {num_classes}")
        return CIFAR10_FLIPS
    if num_classes != CIFAR100_CLASSES:  # by position, as its CIFAR-10 sibling: on other classes it means nothing
        raise ValueError(f"noise mode 'asymmetric_cifar100' flips CIFAR-100's {CIFAR100_CLASSES} classes in blocks of "
                         f"{CIFAR100_BLOCK} by position, but this data set has {num_classes}; use CIFAR-100, or "
                         "another noise mode (e.g. pair)")
    return {c: c - c % CIFAR100_BLOCK + (c + 1) % CIFAR100_BLOCK for c in range(num_classes)}


def _flip_fraction(
    clean: np.ndarray, class_map: dict[int, int], rate: float, rng: np.random.Generator, in_sequence: bool = False
) -> np.ndarray:
    """Move round(rate·n_c) examples of each source class c, in class order, to its target: chosen from the clean
    labels, or `in_sequence` from the labels as flipped so far (a class flipped into c can be flipped on)."""
    noisy = clean.copy()
    for source, target in sorted(class_map.items()):
        members = np.flatnonzero((noisy if in_sequence else clean) == source)
        chosen = rng.choice(members, size=round(rate * members.size), replace=False)
        noisy[chosen] = target
    return noisy


def _redraw(clean: np.ndarray, matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = clean.copy()
    for source in range(matrix.shape[0]):
        members = np.flatnonzero(clean == source)
        noisy[members] = rng.choice(matrix.shape[1], size=members.size, p=matrix[source])
    return noisy
