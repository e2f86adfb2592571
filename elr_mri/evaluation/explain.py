"""`elr-mri explain`: where in the brain the classifier looks, as input-gradient saliency maps.

For every scan, the gradient of log p(class) with respect to the input volume (the class is the
given diagnosis), in absolute value; maps are averaged per given class, over every scan of it, whatever the
network predicts (summary.json says how many scans each map averages, and how many were predicted as given).
That gradient fades as p(class) nears 1, so a mean over scans the network is sure of is mostly its least sure
scan's map (99% of one scan's, of 3, on a simulated cohort): summary.json and the PNG say how much the largest
scan gives. They are written as NIfTI in template space (the crop the network saw, with its template-space
affine), so they overlay on the MNI template in any viewer, and as axial / sagittal PNGs over the mean input.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, cast

import nibabel as nib
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from elr_mri.config import evaluation_batch_size
from elr_mri.atomic_files import atomic_write_json
from elr_mri.engine.execution import limit_cpu_threads, process_settings_kept
from elr_mri.engine.methods import Method
from elr_mri.evaluation.evaluate import evaluation_set, load_run, refuse_if_run_moved_on
from elr_mri.evaluation.evaluation_folder import (WARNINGS_KEY, explanation_dir, require_own_folder, scored_fingerprint,
                                                 scored_source)
from preprocess.sidecar import atomic_path

if TYPE_CHECKING:  # MONAI's import is left to `evaluation_set`
    from elr_mri.data.mri import MRIScans

__all__ = ["crop_affine", "explain_run", "map_description", "map_file_stem", "map_title", "remove_earlier_maps", "saliency_maps"]

_MAP_SUFFIXES = (".nii.gz", ".png")
_UNSAFE_IN_FILE_NAMES = str.maketrans({"%": "%25", "/": "%2F", "\0": "%00"})  # see `map_file_stem`


@process_settings_kept()  # a notebook keeps its own threads and generators
def explain_run(run_dir: Path, manifest: Path | None = None, checkpoint: str = "best") -> Path:
    """Write saliency_<class>.nii.gz and .png per class into RUN_DIR/explain-<name>/ (explain-<name>-last/
    for the last checkpoint) with a summary.json saying what was scored, written last; returns that folder.
    An earlier explanation's maps there go first: a class the new scans lack keeps no old map."""
    run_dir = Path(run_dir)
    out = explanation_dir(run_dir, manifest, checkpoint)
    require_own_folder(out, manifest)
    limit_cpu_threads(0)  # torch's default threads, no more than the usable cores (a container's quota)
    run = load_run(run_dir, checkpoint)
    cfg, shape, method = run.cfg, run.shape, run.method
    if cfg.data.name != "mri":
        raise ValueError(f"explain makes 3D saliency maps of MRI runs; {run_dir} trained on {cfg.data.name}")
    dataset, _, overlap_notes, warnings = evaluation_set(run_dir, cfg, manifest)
    maps, mean_input, counts, agreed, largest = saliency_maps(method, dataset, shape["num_classes"],
                                                              evaluation_batch_size(cfg))
    scan = cast("MRIScans", dataset).frame["image_path"].iloc[0]  # an MRI run's: refused otherwise above
    affine = crop_affine(scan, tuple(cfg.data.mri.crop_size))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)  # read as "complete": it goes first and comes back last
    remove_earlier_maps(out, shape["class_names"])
    for k, class_name in enumerate(shape["class_names"]):
        class_map = maps[k]
        if class_map is None:
            continue
        name = map_file_stem(class_name)
        _write_nifti(class_map, affine, scan, out / f"{name}.nii.gz", map_description(class_name, int(counts[k])))
        _write_png(class_map, mean_input, affine, out / f"{name}.png",
                   title=map_title(class_name, int(counts[k]), int(agreed[k]), largest[k]))
    present = [k for k in range(len(maps)) if maps[k] is not None]
    atomic_write_json({"manifest": scored_source(manifest), "manifest_sha256": scored_fingerprint(manifest),
                       "checkpoint": checkpoint, "checkpoint_epoch": run.epoch, "run_finished": run.finished,
                       "scans": len(dataset), "participant_overlap_notes": overlap_notes,
                       "scans_per_map": {shape["class_names"][k]: int(counts[k]) for k in present},
                       "predicted_as_given_per_map": {shape["class_names"][k]: int(agreed[k]) for k in present},
                       "largest_scan_share_per_map": {shape["class_names"][k]: _rounded_share(largest[k])
                                                      for k in present},
                       WARNINGS_KEY: warnings},  # as evaluate keeps them: printed once, then lost with the terminal
                      out / "summary.json")
    refuse_if_run_moved_on(run, run_dir, out)
    return out


def saliency_maps(method: Method, dataset: Dataset, num_classes: int, batch_size: int
                  ) -> tuple[list[np.ndarray | None], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean |input gradient| per given class (None for a class with no scan), the mean input volume, and per class
    the scans averaged, how many of them the network predicts as that class (the others are averaged in too) and
    the share of the map's total that its largest scan gives (NaN for a class without scans or a map of zeros).
    The gradients are taken in fp32 whatever the run's precision (a bf16 gradient keeps 8 bits of each voxel's);
    the predictions are `evaluate`'s, in that precision, so that both count a borderline scan alike."""
    networks = [net.eval() for net in method.networks()]
    sums: list[np.ndarray | None] = [None] * num_classes
    counts = np.zeros(num_classes, dtype=int)
    agreed = np.zeros(num_classes, dtype=int)
    totals: list[list[float]] = [[] for _ in range(num_classes)]  # each scan's whole map, per class
    mean_input = None
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images = batch["image"].to(next(networks[0].parameters()).device).requires_grad_(True)
        extra = {"age": batch["age"].float().to(images.device)} if "age" in batch else {}
        # log_softmax, not log(softmax): a confidently wrong scan (the given class's probability under float
        # precision) keeps its gradient instead of contributing a map of zeros
        log_probs = torch.stack([net(images, **extra) for net in networks]).mean(dim=0).log_softmax(dim=1)
        chosen = log_probs.gather(1, batch["label"].to(images.device)[:, None])
        (gradient,) = torch.autograd.grad(chosen.sum(), images)
        gradient = gradient.abs()[:, 0].cpu().numpy()
        volumes = images.detach()[:, 0].cpu().numpy()
        mean_input = volumes.sum(axis=0) if mean_input is None else mean_input + volumes.sum(axis=0)
        with torch.no_grad():  # as `evaluate` predicts, in the run's precision: fp32 may settle a near tie otherwise
            predictions = method.predict_proba(batch).argmax(dim=1).tolist()
        for k, g, predicted in zip(batch["label"].tolist(), gradient, predictions):
            sums[k] = g if sums[k] is None else sums[k] + g
            counts[k] += 1
            agreed[k] += predicted == k
            totals[k].append(float(g.sum(dtype=np.float64)))
    maps = [None if s is None else s / c for s, c in zip(sums, counts)]
    largest = np.array([max(t) / sum(t) if t and sum(t) > 0 else np.nan for t in totals])
    return maps, mean_input / max(counts.sum(), 1), counts, agreed, largest


def map_title(class_name: str, count: int, agreed: int, largest_share: float) -> str:
    """The PNG's title: which scans the map averages and how many the network predicts as given. A map of one scan
    (a small holdout's class) read "of 1 scans, 1 of them predicted CN"."""
    if count == 1:
        scans = f"1 scan, {'' if agreed else 'not '}predicted {class_name}"
    else:
        scans = f"{count} scans, {agreed} of them predicted {class_name}"
    return (f"given {class_name}: mean |∂ log p({class_name}) / ∂ input| of {scans}"
            + _largest_scan_note(largest_share, count))


def map_description(class_name: str, count: int) -> str:
    """What a map's NIfTI holds, for its header: opened alone in a viewer, its values of about 1e-2 said nothing of
    being gradients, of what, or with respect to which input scale."""
    return f"mean |d log p({class_name})/d x| of {count} scans given {class_name}; x: scan min-max scaled to [0,1]"


def _rounded_share(share: float) -> float | None:
    return None if np.isnan(share) else round(float(share), 4)


def _largest_scan_note(share: float, count: int) -> str:
    """The PNG title's word on how much of a mean over several scans one scan makes: "mean of 15" can be one scan."""
    return "" if count < 2 or np.isnan(share) else f"\n(the largest single scan gives {share:.0%} of the map)"


def remove_earlier_maps(out: Path, class_names: list[str]) -> None:
    """Delete the maps an earlier explanation left in `out`: every `saliency_*.nii.gz` / `.png` file, and those that
    code before the percent-encoded names wrote for a class holding a `/` (`saliency_MCI/AD.png`, in a folder
    `saliency_MCI/`, removed once empty). Nothing else goes: a user's `saliency_notes.txt` or files in that folder stay."""
    for stale in out.glob("saliency_*"):
        if stale.name.endswith(_MAP_SUFFIXES) and not stale.is_dir():
            stale.unlink()
    for class_name in class_names:
        legacy = out / f"saliency_{class_name}"
        if "/" not in class_name or ".." in Path(class_name).parts:  # `..`: never a file outside `out`
            continue
        for suffix in _MAP_SUFFIXES:
            legacy.with_name(legacy.name + suffix).unlink(missing_ok=True)
        for folder in legacy.relative_to(out).parents[:-1]:  # innermost first; `out` itself stays
            with contextlib.suppress(OSError):  # not empty (the user's files) or not there: left as it is
                (out / folder).rmdir()


def map_file_stem(class_name: str) -> str:
    """`saliency_<class>`, with the characters a file name cannot hold percent-encoded (the `/` of a class `MCI/AD`
    failed only when the maps were written, after every gradient), and `%` itself, so no two classes share a file."""
    return "saliency_" + class_name.translate(_UNSAFE_IN_FILE_NAMES)


def crop_affine(volume_path: str, crop: tuple[int, ...]) -> np.ndarray:
    """Template-space affine of the centre crop the evaluation transforms take (RAS, as MONAI orients).

    An axis shorter than the crop is first zero-padded symmetrically (MONAI puts the odd voxel
    after), so the crop starts that many voxels before the scan's first voxel.
    """
    image = nib.as_closest_canonical(nib.load(volume_path))
    start = np.array([s // 2 - c // 2 if s >= c else -((c - s) // 2) for s, c in zip(image.shape[:3], crop)])
    affine = image.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return affine


def _write_nifti(volume: np.ndarray, affine: np.ndarray, scan: str, path: Path, description: str) -> None:
    """`volume` on `affine`, in the space and units `scan`'s header names (for `elr-mri preprocess` output mm, and
    MNI152 or, registered to a --template of one's own, another template): without them the map is "aligned to some
    anatomy" in unknown units, which a viewer reading the codes (AFNI: +orig against the template's +tlrc) does not
    put in the space of the scans it is to overlay. `description` goes into the header's 80-byte descrip field."""
    header = nib.load(scan).header
    if not isinstance(header, nib.Nifti1Header):  # an .mgz or Analyze scan names no space; its world is in mm
        header = nib.Nifti1Header()
        header.set_xyzt_units("mm")
    image = nib.Nifti1Image(volume.astype(np.float32), affine)
    image.set_sform(affine, int(header["sform_code"]) or "aligned")
    image.set_qform(affine, int(header["qform_code"]))
    image.header.set_xyzt_units(*header.get_xyzt_units())
    image.header["descrip"] = description.encode("ascii", "replace")[:80]
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def _write_png(saliency: np.ndarray, background: np.ndarray, affine: np.ndarray, path: Path, title: str) -> None:
    from elr_mri.plots import plot_saliency

    plot_saliency(saliency, background, affine, path, title)
