"""Quality figures of a preprocessed scan against the template, and a PNG a person can page through.

NCC inside the template's brain mask is the main figure (a failed registration drops it sharply);
mutual information tolerates contrast differences between scanners; the Dice of the head
foregrounds catches gross misplacement (a head shifted out of the grid); the share of the template's brain within the
scan's field of view catches a head the scanner cut off (its top missing), which NCC reads as a poorer match at most.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: ANTs is imported lazily at run time
    import ants
    import nibabel as nib

    from .template import Template

__all__ = ["ncc", "mutual_information", "foreground_dice", "qc_figures", "brain_coverage", "overlay_png",
           "side_letters", "coarsest_voxel_mm"]

LPS_SIDES = (("L", "R"), ("P", "A"), ("S", "I"))  # per ITK physical axis, the side its + end points to, then the - end's


def ncc(image: ants.ANTsImage, reference: ants.ANTsImage, mask: ants.ANTsImage) -> float:
    """Normalised cross-correlation of two images on the voxels of `mask`."""
    inside = mask.numpy() > 0
    a = image.numpy()[inside].astype(np.float64)
    b = reference.numpy()[inside].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def mutual_information(image: ants.ANTsImage, reference: ants.ANTsImage) -> float:
    """Mattes mutual information (nats, higher is better); ANTs returns it negated as a cost."""
    import ants

    return -float(ants.image_mutual_information(reference, image))


def foreground_dice(image: ants.ANTsImage, reference: ants.ANTsImage) -> float:
    """Dice overlap of the Otsu foregrounds of the two images."""
    a = _foreground(image)
    b = _foreground(reference)
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 0.0


def qc_figures(image: ants.ANTsImage, template: Template) -> dict[str, float]:
    """The QC columns of the manifest for an output `image` on `template`'s grid."""
    return {"qc_ncc": round(ncc(image, template.grid, template.mask), 5),
            "qc_mi": round(mutual_information(image, template.grid), 5),
            "qc_mask_dice": round(foreground_dice(image, template.grid), 5)}


def brain_coverage(moving: ants.ANTsImage, template: Template, transforms: list[str]) -> float:
    """The share of `template`'s brain mask that `moving`'s field of view reaches through the registration's
    `transforms`: the rest of the output's brain is the resampling's zero fill. Colin27 with the top 10/20/30% of its
    head cut off (3 mm) reached 0.988/0.918/0.796 with NCC 0.61/0.42/0.26, the whole head 0.9986-1.0."""
    import ants

    reach = moving.new_image_like(np.ones(moving.shape, dtype=np.float32))
    seen = ants.apply_transforms(fixed=template.grid, moving=reach, transformlist=transforms,
                                 interpolator="nearestNeighbor").numpy()
    brain = template.mask.numpy() > 0
    return round(float((seen[brain] > 0.5).mean()), 5) if brain.any() else 1.0


def coarsest_voxel_mm(scan: nib.Nifti1Image) -> float:
    """The input's largest voxel edge: the resolution the output can have along its coarsest axis."""
    return round(float(max(scan.header.get_zooms()[:3])), 3)


def overlay_png(image: ants.ANTsImage, template: Template, path: str | Path, title: str) -> None:
    """Three orthogonal mid-slices of `image` with the template's brain contour drawn over them, each with letters
    at its left and right edges for the sides of the head there (`side_letters`): a left-right flip, the error a
    person looking at these should catch, could not be told without them. Drawn on a bare matplotlib `Figure`, which
    needs no display and leaves pyplot alone: choosing the Agg backend here switched a notebook's own backend
    (`preprocess` run from one, `--jobs 1`), so its figures stopped showing."""
    from matplotlib.figure import Figure

    data, outline = image.numpy(), template.mask.numpy()
    low, high = np.percentile(data, (1, 99.5))
    centre = [s // 2 for s in data.shape]
    fig = Figure(figsize=(9, 3.4), facecolor="black")
    axes = fig.subplots(1, 3)
    for axis, ax in enumerate(axes):
        cut = [slice(None)] * 3
        cut[axis] = centre[axis]
        ax.imshow(np.rot90(data[tuple(cut)]), cmap="gray", vmin=low, vmax=high)
        ax.contour(np.rot90(outline[tuple(cut)]), levels=[0.5], colors="red", linewidths=0.7)
        across = min(other for other in range(3) if other != axis)  # np.rot90 lays this index axis left to right
        for letter, where in zip(side_letters(np.asarray(image.direction), across), (0.03, 0.97)):
            ax.text(where, 0.5, letter, transform=ax.transAxes, ha="center", va="center", color="yellow", fontsize=9)
        ax.axis("off")
    fig.suptitle(title, color="white", fontsize=9)
    with warnings.catch_warnings():  # ids in a script the font lacks (sub-李02): a warning per glyph, naming no scan
        # "missing from font(s) DejaVu Sans." in matplotlib 3.11, "missing from current font." in 3.8
        warnings.filterwarnings("ignore", message="Glyph .* missing from (current )?font", category=UserWarning)
        fig.tight_layout()
        fig.savefig(path, dpi=80, facecolor="black")


def side_letters(direction: np.ndarray, axis: int) -> tuple[str, str]:
    """The sides of the head at the low and the high end of index axis `axis` of an image whose ITK `direction`
    (LPS: +x toward the subject's left, +y posterior, +z superior) is given: ('L', 'R') where the index grows toward
    the right, as MNI152's does in ANTs; from the axis' largest component, for an oblique one."""
    towards = direction[:, axis]
    component = int(np.argmax(np.abs(towards)))
    growing, shrinking = LPS_SIDES[component]
    return (shrinking, growing) if towards[component] > 0 else (growing, shrinking)


def _foreground(image: ants.ANTsImage) -> np.ndarray:
    """Voxels above the Otsu threshold of the positive intensities."""
    data = image.numpy()
    values = data[data > 0]
    if values.size == 0:
        return np.zeros(data.shape, dtype=bool)
    hist, edges = np.histogram(values, bins=128)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * centres)
    between = (mean[-1] * weight / weight[-1] - mean) ** 2 / np.maximum(weight * (weight[-1] - weight), 1)
    return data > centres[int(np.argmax(between[:-1]))]
