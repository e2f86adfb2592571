"""Write mini WebVision's ILSVRC12 test list from an ImageNet validation folder sorted by class.

The paper's ILSVRC12 figures score ImageNet's validation images of mini WebVision's 50 classes. The
reader (`data.name: webvision`) takes them from DATA/imagenet/imagenet_val.txt, `path class` lines in
WebVision's class order. This writes that list from validation images kept one folder per synset
(`val/n01440764/ILSVRC2012_val_00000293.JPEG`, the layout ImageNet's usual valprep script and
torchvision's ImageFolder use), matching folders to classes by the synset ids of WebVision's
info/synsets.txt, or one folder per class number (`val/0/` to `val/49/` in WebVision's order, as
DivideMix's loader reads imagenet/val/); or, with --devkit, from the flat folder
ILSVRC2012_img_val.tar extracts to, by the devkit's labels. Those number the classes by
ILSVRC2012_ID (1 is n02119789, kit fox), not in WebVision's order: a list written from them as
they are scores every image against another class, so they are matched to synsets through the
devkit's data/meta.mat. Paths are written absolute, so the images stay
where they are.

    .venv/bin/python scripts/webvision_ilsvrc12_list.py --imagenet-val /data/imagenet/val
    .venv/bin/python scripts/webvision_ilsvrc12_list.py --imagenet-val /data/img_val --devkit /data/devkit_t12
"""

from __future__ import annotations

import argparse
from pathlib import Path

from paper_runs import ROOT, run_script

from elr_mri.data.image_sources import IMAGE_SUFFIXES, IMAGENET_VAL_LIST, MINI_WEBVISION_CLASSES, read_text_list
from elr_mri.atomic_files import atomic_write_text
from preprocess.user_errors import nonempty_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagenet-val", type=nonempty_path, required=True, metavar="DIR",
                        help="ImageNet's validation images, one folder per synset (n01440764/...) or class "
                             "number (0/ to 49/, WebVision's order); with --devkit, all in DIR as released "
                             "(ILSVRC2012_val_00000001.JPEG, ...)")
    parser.add_argument("--devkit", type=nonempty_path, metavar="DIR",
                        help="ILSVRC2012's devkit (ILSVRC2012_devkit_t12): its data/ILSVRC2012_validation_ground_truth"
                             ".txt labels the flat folder, its data/meta.mat names their synsets")
    parser.add_argument("--webvision", type=nonempty_path, default=ROOT / "data" / "webvision", metavar="DIR",
                        help="the WebVision folder (data.root of configs/webvision); the list goes to "
                             f"DIR/{IMAGENET_VAL_LIST}")
    args = parser.parse_args(argv)
    synsets = webvision_synsets(args.webvision / "info" / "synsets.txt")
    val_dir = args.imagenet_val.resolve()
    if not val_dir.is_dir():  # it was "no folder for 50 of the 50 classes", as if DIR held other synsets
        raise FileNotFoundError(f"--imagenet-val {args.imagenet_val}: no such folder; pass the folder of ImageNet's "
                                "validation images")
    lines = devkit_lines(val_dir, args.devkit, synsets) if args.devkit else ilsvrc12_lines(val_dir, synsets)
    out = args.webvision / IMAGENET_VAL_LIST
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text("".join(lines), out)
    print(f"wrote {out}: {len(lines)} validation images of the {len(synsets)} mini WebVision classes")
    return 0


def webvision_synsets(path: Path) -> list[str]:
    """The synset ids of mini WebVision's classes, in order: the first word of synsets.txt's first 50 lines."""
    given = path.parent.parent  # --webvision
    if not path.is_file() and given.name == "info" and (given / path.name).is_file():  # "extract that into …/info"
        raise FileNotFoundError(f"--webvision {given} is WebVision's info/ folder itself; pass the folder that holds "
                                f"it, {given.parent}, where the list goes to {IMAGENET_VAL_LIST}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: it comes with WebVision 1.0's info/ folder; extract that into "
                                f"{given}")
    ids = [line.split()[0] for line in read_text_list(path) if line.strip()][:MINI_WEBVISION_CLASSES]  # BOM dropped
    if len(ids) < MINI_WEBVISION_CLASSES:
        raise ValueError(f"{path}: {len(ids)} synsets, mini WebVision needs the first {MINI_WEBVISION_CLASSES}")
    return ids


def ilsvrc12_lines(val_dir: Path, synsets: list[str]) -> list[str]:
    """`absolute-path class` lines for every image in each class's folder (`class_folders`), classes numbered by
    `synsets`."""
    folders = class_folders(val_dir, synsets)
    missing = [folder.name for folder in folders if not folder.is_dir()]
    flat = next(val_dir.glob("ILSVRC2012_val_*"), None)  # the folder ILSVRC2012_img_val.tar extracts to
    if missing and flat is not None:  # "sort them one folder per synset" sent its user to a job --devkit does
        raise FileNotFoundError(f"{val_dir}: the validation images lie flat, as ILSVRC2012_img_val.tar extracts "
                                f"(e.g. {flat.name}), with no folder per synset; add --devkit DIR, the folder "
                                "ILSVRC2012_devkit_t12.tar.gz extracts to, whose labels name their classes")
    if missing:
        raise FileNotFoundError(f"{val_dir}: no folder for {len(missing)} of the {len(synsets)} classes, e.g. "
                                f"{missing[0]}; pass ImageNet's validation images sorted one folder per synset (or "
                                f"class number, 0 to {len(synsets) - 1}), or the flat folder ILSVRC2012_img_val.tar "
                                "extracts to with --devkit")
    lines = []
    for label, folder in enumerate(folders):
        images = sorted(p for p in folder.iterdir()  # not hidden: a Mac's ._ILSVRC2012_val_*.JPEG is
                        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))  # no image
        if not images:
            raise FileNotFoundError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this class folder")
        lines += [f"{path} {label}\n" for path in images]
    return lines


def class_folders(val_dir: Path, synsets: list[str]) -> list[Path]:
    """Each class's folder: named by its synset, or, where those are not all there and 0/ to 49/ are, by its number
    in WebVision's order, the imagenet/val/<class>/ that DivideMix's WebVision loader reads (that layout was refused
    as "no folder for 50 of the 50 classes")."""
    by_synset = [val_dir / synset for synset in synsets]
    by_number = [val_dir / str(label) for label in range(len(synsets))]
    if not all(folder.is_dir() for folder in by_synset) and all(folder.is_dir() for folder in by_number):
        return by_number
    return by_synset


def devkit_lines(val_dir: Path, devkit: Path, synsets: list[str]) -> list[str]:
    """`absolute-path class` lines for the images of `val_dir` (flat, as released) whose devkit label is a synset of
    `synsets`, numbered by `synsets`: the ground truth's line k labels ILSVRC2012_val_<k, 8 digits>.JPEG."""
    truth, meta = devkit / "data" / "ILSVRC2012_validation_ground_truth.txt", devkit / "data" / "meta.mat"
    for path in (truth, meta):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: --devkit takes the folder ILSVRC2012_devkit_t12.tar.gz "
                                    "extracts to")
    synset_of = devkit_synsets(meta)
    label_of = {synset: label for label, synset in enumerate(synsets)}
    lines = []
    for number, word in enumerate("\n".join(read_text_list(truth)).split(), start=1):
        if not word.isdecimal() or int(word) not in synset_of:
            raise ValueError(f"{truth}, line {number}: {word!r} is not an ILSVRC2012_ID of {meta.name}; use the "
                             "devkit's file")
        if synset_of[int(word)] in label_of:
            lines.append((val_dir / f"ILSVRC2012_val_{number:08d}.JPEG", label_of[synset_of[int(word)]]))
    if not lines:  # an empty list was written and "wrote 0 validation images" said as success; training then refused it
        raise ValueError(f"{truth}: none of its images is of a mini WebVision class (no label's synset in meta.mat is "
                         f"one of the first {len(synsets)} of WebVision's synsets.txt, e.g. {synsets[0]}); pass "
                         "WebVision 1.0's folder as --webvision and ILSVRC2012's devkit as --devkit")
    absent = [path for path, _ in lines if not path.is_file()]
    if absent:
        raise FileNotFoundError(f"{val_dir}: {len(absent)} of the {len(lines)} validation images of these classes are "
                                f"not there, e.g. {absent[0].name}; pass the folder ILSVRC2012_img_val.tar extracts to")
    return [f"{path} {label}\n" for path, label in lines]


def devkit_synsets(meta: Path) -> dict[int, str]:
    """ILSVRC2012_ID → synset id (WNID) of every synset in the devkit's meta.mat."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        entries = loadmat(meta, squeeze_me=True)["synsets"]
        return {int(entry["ILSVRC2012_ID"]): str(entry["WNID"]) for entry in entries}
    except (OSError, ValueError, KeyError, TypeError, IndexError, MatReadError) as err:  # MatReadError: cut short
        raise ValueError(f"{meta}: not the devkit's synset table ({type(err).__name__}: {err}); extract "
                         "ILSVRC2012_devkit_t12.tar.gz again") from None


if __name__ == "__main__":
    run_script(main)
