"""Readers for the image benchmarks' raw data: labels and pixels (or file paths), nothing else.

Each reader returns an `ImageSource` in the order of the original release, with every example's
original index kept (`ids`), so a subset still lines up with per-index label files such as
CIFAR-10N. Noise, splits, augmentation and datasets are `elr_mri.data.images`' job.
A data set that is not where the config says gives one `FileNotFoundError` that says what was
looked for and how to get it there; nothing is ever downloaded.
"""

from __future__ import annotations

import logging
import os
import pickle
import shlex
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from elr_mri.data.array_pickles import load_array_pickle
from elr_mri.data.image_decoding import ImageReadError, decode_all, read_rgb
from elr_mri.shipped import checkout_root

__all__ = ["ImageSplit", "ImageSource", "load_source", "read_rgb", "cifar_download_command", "ImageReadError",
           "CLOTHING1M_CLASSES", "CLOTHING1M_LISTS", "CLOTHING1M_VAL_LIST", "clothing1m_lists_dir",
           "require_clothing1m_validation_list", "read_text_list",
           "IMAGE_SUFFIXES", "MINI_WEBVISION_CLASSES", "WEBVISION_LISTS", "IMAGENET_VAL_LIST"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# category_names_eng.txt of the official Clothing1M release, label 0..13 in this order
CLOTHING1M_CLASSES = [
    "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker", "Jacket",
    "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear",
]
# the label lists every Clothing1M run reads, and the release's clean validation keys: a new run selects its
# checkpoints on them, as in the paper
CLOTHING1M_LISTS = ("noisy_label_kv.txt", "noisy_train_key_list.txt", "clean_label_kv.txt", "clean_test_key_list.txt")
CLOTHING1M_VAL_LIST = "clean_val_key_list.txt"
# mini WebVision (Jiang et al. 2018's protocol, the paper's): the Google images of the first 50 classes
MINI_WEBVISION_CLASSES = 50
WEBVISION_LISTS = ("info/train_filelist_google.txt", "info/val_filelist.txt")
# ILSVRC12 validation images of the same classes, listed as `file label` in WebVision's class order
IMAGENET_VAL_LIST = "imagenet/imagenet_val.txt"
# the development data beside a checkout (None where the package is installed): CIFAR-10 as JPEG files, no CIFAR-100
_CHECKOUT = checkout_root()
DEVELOPMENT_CIFAR = _CHECKOUT.parent / "shared" / "data" / "cifar" if _CHECKOUT else None

log = logging.getLogger(__name__)


@dataclass
class ImageSplit:
    """One split: `images` is uint8 (N, C, H, W), float32 in [0, 1], or an array of file paths."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray  # position of each example in the original release

    def take(self, index: np.ndarray) -> ImageSplit:
        return ImageSplit(self.images[index], self.labels[index], self.ids[index])

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ImageSource:
    """A data set as released: its training split, test split, (Clothing1M) clean validation and further
    test sets scored beside the test split (WebVision: ILSVRC12's validation images, "ilsvrc12")."""

    train: ImageSplit
    test: ImageSplit | None
    class_names: list[str]
    val: ImageSplit | None = None
    extra_tests: dict[str, ImageSplit] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_source(name: str, root: str | Path | None) -> ImageSource:
    """Read data set `name` ("digits", "cifar10", "cifar100", "imagefolder", "clothing1m", "webvision")."""
    if name == "digits":
        return _digits()
    if root is None:
        raise FileNotFoundError(f"data set {name!r} needs data.root, the directory that holds it")
    root = Path(root).expanduser()
    if name in ("cifar10", "cifar100"):
        return _cifar_python(root, name)
    if name == "imagefolder":
        return _image_folder(root)
    if name == "clothing1m":
        return _clothing1m(root)
    if name == "webvision":
        return _mini_webvision(root)
    raise ValueError(
        f"unknown image data set {name!r}; allowed: digits, cifar10, cifar100, imagefolder, clothing1m, webvision"
    )


def _digits() -> ImageSource:
    """sklearn's 1,797 handwritten digits (bundled with scikit-learn), 8×8, scaled from 0..16 to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    everything = ImageSplit(images, labels, np.arange(len(labels)))
    return ImageSource(everything, None, [str(d) for d in bunch.target_names])


@dataclass(frozen=True)
class _CifarLayout:
    """Where torchvision's python version of a CIFAR data set keeps its pickles and labels."""

    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    archive: str  # the python version's archive at its authors' site (torchvision downloads the same)
    hint: Callable[[], str]  # what else gets the data set ("" for nothing)


def _cifar_jpeg_hint() -> str:
    """CIFAR-10 as JPEG files from the development data, where it is there (a path relative to the project, which
    only a checkout has, failed from any other folder), and which data.name reads torchvision's copy."""
    torchvision = "for torchvision's copy (DIR/cifar-10-batches-py) use data.name: cifar10 with data.root: DIR"
    archive = DEVELOPMENT_CIFAR / "cifar10-jpeg.tar.xz" if DEVELOPMENT_CIFAR else None
    if archive is None or not archive.is_file():
        return torchvision
    return (f"for CIFAR-10 as JPEG files run `mkdir -p DIR && tar -xJf {shlex.quote(str(archive))} -C DIR` and use "
            f"data.name: imagefolder with data.root: DIR/cifar10; {torchvision}")


_CIFAR = {
    "cifar10": _CifarLayout(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
        "batches.meta", "labels", "label_names", "cifar-10-python.tar.gz", _cifar_jpeg_hint,
    ),
    "cifar100": _CifarLayout(
        "cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names", "cifar-100-python.tar.gz",
        lambda: "../shared/data holds no CIFAR-100" if DEVELOPMENT_CIFAR else "",
    ),
}


def cifar_download_command(name: str, root: str | Path) -> str:
    """The shell command that puts CIFAR-10's or CIFAR-100's python version (`name`: cifar10, cifar100) in `root`:
    torchvision is not among the project's packages, and its download fetches the same archive. `root` is quoted
    for the shell: a path with a space was split when the command was pasted."""
    folder = shlex.quote(str(root))
    return (f"mkdir -p {folder} && curl -L https://www.cs.toronto.edu/~kriz/{_CIFAR[name].archive} "
            f"| tar -xz -C {folder}")


def _cifar_python(root: Path, name: str) -> ImageSource:
    """torchvision's python folders: pickled dicts with `data` (N×3072 uint8) and the labels."""
    layout = _CIFAR[name]
    directory = root / layout.folder
    if root.name == layout.folder and not directory.is_dir():  # data.root one level too deep
        raise FileNotFoundError(f"{name}: data.root {root} is the {layout.folder} folder itself; set data.root to "
                                f"the folder that holds it ({root.parent})")
    files = [*layout.train_files, layout.test_file, layout.meta_file]
    fixes = [f"on a machine with internet, {cifar_download_command(name, root)}", layout.hint()]
    _require_files(name, directory, files, "; ".join(fix for fix in fixes if fix))
    how_to_fix = f"extract {layout.archive} again ({cifar_download_command(name, root)})"
    (names,) = _unpickled_entries(directory / layout.meta_file, (layout.names_key,), how_to_fix)
    class_names = [str(n) for n in names]
    train = [_cifar_split(directory / f, layout.label_key, len(class_names), how_to_fix) for f in layout.train_files]
    images = np.concatenate([s.images for s in train])
    labels = np.concatenate([s.labels for s in train])
    return ImageSource(
        ImageSplit(images, labels, np.arange(len(labels))),
        _cifar_split(directory / layout.test_file, layout.label_key, len(class_names), how_to_fix),
        class_names,
    )


def _cifar_split(path: Path, label_key: str, num_classes: int, how_to_fix: str) -> ImageSplit:
    """One pickled batch as a split; labels that are not one integer per 3×32×32 image in 0..num_classes-1 are
    one line naming the file, before they surface as a shape error or a wrong class far from it."""
    raw_labels, raw_pixels = _unpickled_entries(path, (label_key, "data"), how_to_fix)
    try:
        labels = np.asarray(raw_labels, dtype=np.int64)
        pixels = np.asarray(raw_pixels, dtype=np.uint8)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a CIFAR batch ({err}); {how_to_fix}") from None
    in_range = labels.size == 0 or 0 <= labels.min() <= labels.max() < num_classes
    if labels.ndim != 1 or pixels.size != labels.size * 3 * 32 * 32 or not in_range:
        shown = f"in {labels.min()}..{labels.max()}" if labels.size else "none"
        raise ValueError(f"{path}: not a CIFAR batch of {num_classes} classes (labels of shape {labels.shape}, "
                         f"{shown}; {pixels.size} pixel values); {how_to_fix}")
    return ImageSplit(pixels.reshape(-1, 3, 32, 32), labels, np.arange(labels.size))


def _unpickled_entries(path: Path, keys: tuple[str, ...], how_to_fix: str) -> list:
    """The entries `keys` of a CIFAR pickle, read without running code a shared copy might hold; a file cut short,
    empty, of another layout or holding more than arrays and plain values is one line naming it, not a traceback
    from inside pickle."""
    try:
        with open(path, "rb") as handle:
            content = load_array_pickle(handle, encoding="latin1")
        return [content[key] for key in keys]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: cannot be read as a CIFAR file ({type(err).__name__}: {err}); {how_to_fix}") from None


def _image_folder(root: Path) -> ImageSource:
    """`root/train/<class>/<file>` and optional `root/test/<class>/<file>`, classes sorted by name."""
    train_dir = root / "train"
    class_names = _class_folders(train_dir) if train_dir.is_dir() else []
    if not class_names:
        raise FileNotFoundError(
            f"image folder not found: looked for class folders in {train_dir} (layout "
            f"ROOT/train/<class>/<image>, ROOT/test/<class>/<image>); {_cifar_jpeg_hint()}"
        )
    train = _read_folder_split(train_dir, class_names)
    empty = [name for label, name in enumerate(class_names) if not (train.labels == label).any()]
    if empty:  # a class no image carries: the network would get an output for it, and noise would hand it labels
        raise ValueError(f"{train_dir / empty[0]}: a class folder without images ({', '.join(IMAGE_SUFFIXES)}); "
                         "add its images, or remove the folder")
    test_dir = root / "test"
    test = _read_folder_split(test_dir, class_names) if test_dir.is_dir() else None
    if test is not None and test.images.shape[1:] != train.images.shape[1:]:  # a pooling network scored it silently
        raise ValueError(f"{test_dir}: its images are {test.images.shape[3]}x{test.images.shape[2]} and the training "
                         f"images {train.images.shape[3]}x{train.images.shape[2]}; a network scores images of the "
                         "size it trained on: resize the test images, or remove the odd ones")
    return ImageSource(train, test, class_names)


def _class_folders(directory: Path) -> list[str]:
    """Sorted names of the class folders in `directory`; hidden and tool folders (.ipynb_checkpoints,
    __MACOSX) are not classes: one would shift every label after it by one."""
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def _read_folder_split(directory: Path, class_names: list[str]) -> ImageSplit:
    """Decode every image of one split into a uint8 (N, 3, H, W) array, in original-index order.

    When all file stems are distinct integers they are the original index (the CIFAR-10 JPEG
    archive names train images by their position in CIFAR-10's training order); otherwise the
    index is the position in (class, file name) order.
    """
    unknown = [name for name in _class_folders(directory) if name not in class_names]
    if unknown:
        raise ValueError(f"{directory}: class folder {unknown[0]!r} does not exist in the training set")
    paths, labels = [], []
    for label, name in enumerate(class_names):
        files = sorted(p for p in (directory / name).glob("*")  # not hidden: a Mac's ._00009.jpg is no image
                       if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {directory}/<class>/")
    stems = [p.stem for p in paths]
    numbers = [int(s) for s in stems] if all(s.isdigit() for s in stems) else []
    if numbers and len(set(numbers)) == len(numbers):  # 9.jpg and 00009.jpg would be one index twice
        ids = np.array(numbers, dtype=np.int64)
    else:
        ids = np.arange(len(paths), dtype=np.int64)
        _note_stray_names(directory, paths)
    order = np.argsort(ids, kind="stable")
    images = decode_all([paths[i] for i in order])
    return ImageSplit(images, np.asarray(labels, dtype=np.int64)[order], ids[order])


def _note_stray_names(directory: Path, paths: list[Path]) -> None:
    """Files numbered but for a few (a copy `00042 (1).jpg` beside the CIFAR-10 JPEGs): each index is then a position,
    not its file number, so suspected_mislabels.csv's original_index names other files and a CIFAR-N label file other
    images (automobile's 00004.jpg became 5001). Said on stderr; a folder named in words keeps its positions unsaid."""
    strays = [p for p in paths if not p.stem.isdigit()]
    if 0 < len(strays) < len(paths):
        print(f"note: {directory}: {len(strays)} of {len(paths)} image names are not numbers (e.g. {strays[0]}), so "
              "each image's original index is its position in (class, file name) order, not its file number; rename "
              "or remove them to keep the numbers", file=sys.stderr)


def _clothing1m(root: Path) -> ImageSource:
    """The official Clothing1M lists: image keys are paths relative to `root` (images/0/...); the lists lie where
    `clothing1m_lists_dir` finds them. Without the clean validation list (a new run is refused that:
    `require_clothing1m_validation_list`) a run made earlier evaluates and resumes on the noisy hold-out it selected
    on."""
    lists = clothing1m_lists_dir(root)
    if root.name == "images" and lists == root and not (root / "images").is_dir():  # the official code's data_dir
        raise FileNotFoundError(f"clothing1m: data.root {root} is the images/ folder itself, and the lists' keys "
                                f"(images/0/...) are read relative to data.root; set data.root to {root.parent} (the "
                                "label lists may stay in images/)")
    _require_files("clothing1m", lists, list(CLOTHING1M_LISTS),
                   "Clothing1M is not downloadable, ask its authors (Xiao et al. 2015) for access and extract the "
                   f"whole release into {root} (data.root: the folder that holds images/; the label lists beside it, "
                   "in annotations/ or in images/)")
    noisy = _read_key_values(lists / "noisy_label_kv.txt", len(CLOTHING1M_CLASSES))
    clean = _read_key_values(lists / "clean_label_kv.txt", len(CLOTHING1M_CLASSES))
    val_list = lists / CLOTHING1M_VAL_LIST
    return ImageSource(
        _listed_split(lists / "noisy_train_key_list.txt", root, noisy),
        _listed_split(lists / "clean_test_key_list.txt", root, clean),
        list(CLOTHING1M_CLASSES),
        val=_listed_split(val_list, root, clean) if val_list.is_file() else None,
    )


def clothing1m_lists_dir(root: Path) -> Path:
    """The folder holding Clothing1M's label lists: `root` as released, else `root/annotations/` as some copies keep
    them, or `root/images/`, where the official ELR code reads them (its data_dir is images/); `root` when none
    has them."""
    for folder in (root, root / "annotations", root / "images"):
        if (folder / "noisy_label_kv.txt").is_file():
            return folder
    return root


def require_clothing1m_validation_list(root: Path) -> None:
    """A new Clothing1M run selects its checkpoint on the clean validation list, as the paper; without the list it
    would select on a noisy hold-out of the training images instead, a change of protocol nobody asked for. A
    release missing as a whole is left to the loader's error, which names every file."""
    lists = clothing1m_lists_dir(root)
    if (lists / "noisy_label_kv.txt").is_file() and not (lists / CLOTHING1M_VAL_LIST).is_file():
        raise FileNotFoundError(f"clothing1m: {lists / CLOTHING1M_VAL_LIST} is missing: the paper selects its "
                                "checkpoint on these clean validation images; restore the file from the release")


def _read_key_values(path: Path, num_classes: int) -> dict[str, int]:
    """A label list of `image-key label` lines, as a dict; a label outside 0..num_classes-1 is refused with its line
    (a wrong clean label would otherwise surface only after an epoch). The release lists each image once: a key
    given two labels is refused (the last one silently won), a key repeated with its label is read once, warned."""
    expected = f"`image-key label` with a label 0..{num_classes - 1}"
    labels: dict[str, int] = {}
    repeats: list[tuple[str, int]] = []  # (key, line) of each line that repeats a key with its label
    for number, key, label in _labelled_lines(path, expected, "use the release's file", num_classes):
        if key not in labels:
            labels[key] = label
        elif labels[key] == label:
            repeats.append((key, number))
        else:
            raise ValueError(f"{path}, lines {_first_line_of(path, key)} and {number}: {key} is labelled "
                             f"{labels[key]} and {label}; keep one line, with its right label, or use the release's file")
    if not labels:  # else every listed image is "without a label", blamed on the key list
        raise ValueError(f"{path}: lists no label; use the release's file")
    if repeats:
        key, number = repeats[0]
        log.warning("%s: %d line(s) repeat a key with the label it already has, each read once (first: %s, lines "
                    "%d and %d)", path, len(repeats), key, _first_line_of(path, key), number)
    return labels


def _first_line_of(path: Path, key: str) -> int:
    """The line number, from 1, of `key`'s first line in a label list: looked up again for a message only, so
    reading a million labels keeps no line numbers."""
    return next(number for number, line in enumerate(read_text_list(path), start=1)
                if line.strip().rsplit(maxsplit=1)[:1] == [key])


def _labelled_lines(path: Path, expected: str, how_to_fix: str,
                    num_classes: int | None = None) -> Iterator[tuple[int, str, int]]:
    """(line number counted from 1, path or key, label) of each non-blank line of a `path label` list; the label is
    the last word, so a path may hold spaces. A line of another form, or a label from `num_classes` on, is one error
    naming the file and line (`expected` says the form), before int() fails on it without either."""
    for number, line in enumerate(read_text_list(path), start=1):
        words = line.strip().rsplit(maxsplit=1)
        if not words:
            continue
        if len(words) != 2 or not words[1].isdecimal() or (num_classes is not None and int(words[1]) >= num_classes):
            raise ValueError(f"{path}, line {number}: expected {expected}, got {line.strip()!r}; {how_to_fix}")
        yield number, words[0], int(words[1])


def _listed_split(list_path: Path, root: Path, labels: dict[str, int]) -> ImageSplit:
    keys = [line.strip() for line in read_text_list(list_path) if line.strip()]
    if not keys:  # an empty training list surfaced as "ELRLoss needs num_examples > 0"
        raise ValueError(f"{list_path}: lists no image; use the release's file")
    unlabelled = [k for k in keys if k not in labels]
    if unlabelled:
        raise ValueError(f"{list_path}: {len(unlabelled)} keys have no label, e.g. {unlabelled[0]}; use the release's "
                         "label lists (noisy_label_kv.txt, clean_label_kv.txt) beside it")
    return _split_of_files(list_path, root, keys, [labels[k] for k in keys], np.arange(len(keys)),
                           _clothing1m_images_fix(root, keys[0]))


def _clothing1m_images_fix(root: Path, first_key: str) -> str:
    """How to get a list's images where the cause shows: the release's images still in their tar archives, or keys
    without the release's `images/` prefix (a repacked copy), for which "is data.root the release's folder?" sent
    its user to data.root images/, refused as the images/ folder itself: each error pointed at the other."""
    archives = sorted(path.name for path in (root / "images").glob("*.tar"))
    if archives:
        return (f"{root / 'images'} holds {len(archives)} tar archive(s) ({archives[0]}, ...): extract them all, so "
                f"that the listed keys (images/...) name files under {root}")
    if not os.path.isfile(os.path.join(root, first_key)) and os.path.isfile(os.path.join(root, "images", first_key)):
        return (f"the lists' keys lack the release's images/ prefix ({first_key} is in {root / 'images'}): use the "
                "release's label lists, whose keys start with images/")
    return "extract the whole release there"


def _split_of_files(list_path: Path, image_dir: Path, names: list[str], labels: list[int], ids: np.ndarray,
                    how_to_fix: str = "extract the whole release there") -> ImageSplit:
    """The listed images as a split of file paths, `ids` their positions in the release's list; every file is
    looked for now, not in the middle of an epoch. Joined and looked for as strings, not `Path` objects: 100,000
    listed files took 1.3-2.0 s so and 3.8-5.5 s as `Path`s (2 shared cores), and Clothing1M lists a million at every
    train, resume and evaluate."""
    folder = str(image_dir)
    paths = [os.path.join(folder, name) for name in names]
    sizes = [_file_size(path) for path in paths]
    absent = [name for name, size in zip(names, sizes) if size < 0]
    if absent:  # none there is a wrong data.root, not images to drop from the list
        remedy = (f"none is there: is data.root the release's folder (the list's paths are read relative to "
                  f"{image_dir})? {how_to_fix}" if len(absent) == len(names)
                  else f"{how_to_fix}, or remove them from the list")
        raise FileNotFoundError(f"{list_path}: {len(absent)} of {len(names)} listed images are not in {image_dir}, "
                                f"e.g. {absent[0]}; {remedy}")
    empty = [name for name, size in zip(names, sizes) if size == 0]
    if empty:  # found by the stat above for free; decoded, each stopped a run in the middle of an epoch
        raise ImageReadError(f"{list_path}: {len(empty)} of {len(names)} listed images are empty files (0 bytes), "
                             f"e.g. {empty[0]} in {image_dir}; copy them again from the release (a new run may "
                             "instead drop their lines from the list)")
    return ImageSplit(np.array(paths), np.array(labels, dtype=np.int64), np.asarray(ids, dtype=np.int64))


def _file_size(path: str) -> int:
    """The size in bytes of the file at `path`; -1 where there is none (absent, a folder, a broken link)."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):  # as os.path.isfile: a name holding a NUL is no file
        return -1
    return status.st_size if stat.S_ISREG(status.st_mode) else -1


def _mini_webvision(root: Path) -> ImageSource:
    """WebVision 1.0's Google images of the first 50 classes (training, noisy) and its validation images
    of those classes (`val_images_256/`, the paper's WebVision test figure); with `imagenet/imagenet_val.txt`
    and `imagenet/val/`, ILSVRC12's validation images of the same classes as the test set "ilsvrc12"."""
    if root.name == "info" and (root / Path(WEBVISION_LISTS[0]).name).is_file():  # "extract them into …/info" misled
        raise FileNotFoundError(f"webvision: data.root {root} is the info/ folder itself, and the lists' paths are "
                                f"read relative to data.root; set data.root to {root.parent}, the folder that holds "
                                "info/, google/ and val_images_256/")
    _require_files("webvision", root, list(WEBVISION_LISTS),
                   "download WebVision 1.0's resized images and info/ folder (data.vision.ee.ethz.ch/cvl/webvision) "
                   f"and extract them into {root}")
    train = _first_classes(root / WEBVISION_LISTS[0], root)
    test = _first_classes(root / WEBVISION_LISTS[1], root / "val_images_256")
    extra = {}
    if (root / IMAGENET_VAL_LIST).is_file():
        extra["ilsvrc12"] = _first_classes(root / IMAGENET_VAL_LIST, root / "imagenet" / "val",
                                           "put ILSVRC12's validation images there (scripts/webvision_ilsvrc12_list.py "
                                           "lists a class-sorted copy elsewhere with absolute paths)",
                                           "write it again with scripts/webvision_ilsvrc12_list.py")
    else:  # half of the paper's table: a run of days without it is said at its start, imagenet/ there or not
        print(f"note: {root} has no {IMAGENET_VAL_LIST}, so ILSVRC12 is not scored; "
              "scripts/webvision_ilsvrc12_list.py writes it", file=sys.stderr)
    return ImageSource(train, test, _synset_names(root / "info" / "synsets.txt"), extra_tests=extra)


def _first_classes(list_path: Path, image_dir: Path, how_to_fix: str = "extract the whole release there",
                   list_fix: str = "use the release's list") -> ImageSplit:
    """The images of a `file label` list whose label is one of mini WebVision's classes, each with its line in the
    list (counted from 0) as its id: the position a user finds it at, not its rank among the kept classes.
    `how_to_fix` says how to get a missing image, `list_fix` a malformed list."""
    kept = [(number - 1, name, label) for number, name, label in
            _labelled_lines(list_path, "`image-path class-number`", list_fix) if label < MINI_WEBVISION_CLASSES]
    if not kept:
        raise ValueError(f"{list_path}: no image of classes 0..{MINI_WEBVISION_CLASSES - 1} (mini WebVision) listed; "
                         f"{list_fix}")  # the ILSVRC12 list is no release's: it was asked "is it the release's list?"
    lines, names, labels = zip(*kept)
    return _split_of_files(list_path, image_dir, list(names), list(labels), np.array(lines), how_to_fix)


def read_text_list(path: Path) -> list[str]:
    """The lines of a text list (a UTF-8 byte-order mark dropped); undecodable bytes are one error naming it."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text list (byte {err.start}); use the release's file") from None


def _synset_names(path: Path) -> list[str]:
    """Class names from the first 50 lines of WebVision's synsets.txt (`n01440764 tench, Tinca tinca` → tench);
    class00..class49 without the file."""
    if not path.is_file():
        return [f"class{k:02d}" for k in range(MINI_WEBVISION_CLASSES)]
    lines = [line.split(maxsplit=1) for line in read_text_list(path) if line.strip()]
    if len(lines) < MINI_WEBVISION_CLASSES:
        raise ValueError(f"{path}: {len(lines)} synsets, mini WebVision needs the first {MINI_WEBVISION_CLASSES}")
    return [(words[-1].split(",")[0].strip() or words[0]) for words in lines[:MINI_WEBVISION_CLASSES]]


def _require_files(name: str, directory: Path, files: list[str], how_to_fix: str) -> None:
    """One clear error naming every missing file, where it was looked for and how to get it."""
    missing = [f for f in files if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{name} not found: looked for {', '.join(missing)} in {directory}; {how_to_fix}")
