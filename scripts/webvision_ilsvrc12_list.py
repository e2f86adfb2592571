"""Write mini WebVision's ILSVRC12 test list from an ImageNet validation folder sorted by class.

The paper's ILSVRC12 figures score ImageNet's validation images of mini WebVision's 50 classes. The
reader (`data.name: webvision`) takes them from DATA/imagenet/imagenet_val.txt, `path class` lines in
WebVision's class order. This writes that list from validation images kept one folder per synset
(`val/n01440764/ILSVRC2012_val_00000293.JPEG`, the layout ImageNet's usual valprep script and
torchvision's ImageFolder use), matching folders to classes by the synset ids of WebVision's
info/synsets.txt. Paths are written absolute, so the images stay where they are.

    .venv/bin/python scripts/webvision_ilsvrc12_list.py --imagenet-val /data/imagenet/val
"""

from __future__ import annotations

import argparse
from pathlib import Path

from paper_runs import ROOT, run_script

from elr_mri.data.image_sources import IMAGE_SUFFIXES, IMAGENET_VAL_LIST, MINI_WEBVISION_CLASSES
from elr_mri.engine.checkpoint import atomic_write_text
from preprocess.user_errors import nonempty_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagenet-val", type=nonempty_path, required=True, metavar="DIR",
                        help="ImageNet's validation images, one folder per synset (n01440764/...)")
    parser.add_argument("--webvision", type=nonempty_path, default=ROOT / "data" / "webvision", metavar="DIR",
                        help="the WebVision folder (data.root of configs/webvision); the list goes to "
                             f"DIR/{IMAGENET_VAL_LIST}")
    args = parser.parse_args(argv)
    synsets = webvision_synsets(args.webvision / "info" / "synsets.txt")
    lines = ilsvrc12_lines(args.imagenet_val.resolve(), synsets)
    out = args.webvision / IMAGENET_VAL_LIST
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text("".join(lines), out)
    print(f"wrote {out}: {len(lines)} validation images of the {len(synsets)} mini WebVision classes")
    return 0


def webvision_synsets(path: Path) -> list[str]:
    """The synset ids of mini WebVision's classes, in order: the first word of synsets.txt's first 50 lines."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: it comes with WebVision 1.0's info/ folder; extract that into "
                                f"{path.parent.parent}")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()][:MINI_WEBVISION_CLASSES]
    if len(ids) < MINI_WEBVISION_CLASSES:
        raise ValueError(f"{path}: {len(ids)} synsets, mini WebVision needs the first {MINI_WEBVISION_CLASSES}")
    return ids


def ilsvrc12_lines(val_dir: Path, synsets: list[str]) -> list[str]:
    """`absolute-path class` lines for every image in val_dir/<synset>/, classes numbered by `synsets`."""
    missing = [s for s in synsets if not (val_dir / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"{val_dir}: no folder for {len(missing)} of the {len(synsets)} classes, e.g. "
                                f"{missing[0]}; pass ImageNet's validation images sorted one folder per synset")
    lines = []
    for label, synset in enumerate(synsets):
        images = sorted(p for p in (val_dir / synset).iterdir()  # not hidden: a Mac's ._ILSVRC2012_val_*.JPEG is
                        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))  # no image
        if not images:
            raise FileNotFoundError(f"{val_dir / synset}: no images ({', '.join(IMAGE_SUFFIXES)}) in this class folder")
        lines += [f"{path} {label}\n" for path in images]
    return lines


if __name__ == "__main__":
    run_script(main)
