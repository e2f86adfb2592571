"""Figures written into run directories.

Made as bare matplotlib `Figure`s, which draw without a display and leave pyplot alone: choosing the Agg backend
here (`matplotlib.use`) switched a notebook's own backend, so its figures stopped showing once this module was
imported (by `evaluate_run`, the report, a run's memorization figure).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
import numpy as np
import pandas as pd

from elr_mri.evaluation.roc import roc_auc, roc_points
from preprocess.sidecar import atomic_path

SALIENCY_DRAWN_FROM = 0.2  # of a saliency map's 99.5th percentile in the head: weaker voxels are left uncoloured
LEGIBLE_CLASSES = 12  # above this many classes, confusion cells lose their counts and ROC curves their legend
MARKED_EPOCHS = 20  # up to this many epochs, each epoch's value is marked: a 1-epoch run's line has no length
# The comparison figures' line style of each run, in the runs' order, and its name for a caption: one for each loss
# (ce, gce, sce, elr, elr_plus), since `cifar10n_cpu.py --losses` may compare them all (with four, the fifth run was
# left out of the figure without a word)
LINE_STYLES: dict[Any, str] = {"--": "dashed", "-": "solid", ":": "dotted", "-.": "dash-dotted",
                               (0, (6, 1, 1, 1, 1, 1)): "dash-dot-dotted"}

__all__ = ["head_mask", "line_style_key", "plot_memorization", "plot_memorization_comparison", "plot_learning_curves",
           "plot_roc", "roc_figure", "plot_confusion", "plot_reliability", "plot_saliency"]


def plot_memorization(metrics: pd.DataFrame, path: Path, title: str = "") -> None:
    """The paper's Figure 1: per epoch, what the network predicts for wrongly and correctly labelled examples."""
    fig = Figure(figsize=(10, 3.6))
    ax_clean, ax_noisy = fig.subplots(1, 2, sharex=True, sharey=True)
    epochs, marks = metrics["epoch"], _epoch_marks(metrics)
    ax_clean.plot(epochs, metrics["clean_pred_true"], color="tab:green", label="true label", **marks)
    ax_clean.plot(epochs, metrics["clean_pred_other"], color="tab:gray", label="other", **marks)
    ax_clean.set_title("correctly labelled examples")
    if metrics[["noisy_pred_true", "noisy_pred_given", "noisy_pred_other"]].isna().all(axis=None):
        _say_no_wrong_labels(ax_noisy)
    else:
        ax_noisy.plot(epochs, metrics["noisy_pred_true"], color="tab:green", label="true label", **marks)
        ax_noisy.plot(epochs, metrics["noisy_pred_given"], color="tab:red", label="wrong (given) label: memorized",
                      **marks)
        ax_noisy.plot(epochs, metrics["noisy_pred_other"], color="tab:gray", label="other", **marks)
    ax_noisy.set_title("wrongly labelled examples")
    for ax in (ax_clean, ax_noisy):
        _epoch_axis(ax)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    ax_clean.set_ylabel("fraction of examples predicted as")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def _say_no_wrong_labels(ax: Axes) -> None:
    """A training split whose given labels are all true (a small simulated cohort's, noise 0) has no curve here: the
    panel was left empty under a legend of three curves, ticked at epoch 0, as if the figure had failed."""
    ax.text(0.5, 0.5, "no training example is wrongly labelled:\nnothing to memorize", transform=ax.transAxes,
            ha="center", va="center", color="tab:gray")


def plot_memorization_comparison(runs: dict[str, pd.DataFrame], path: Path, title: str = "") -> None:
    """Wrongly labelled examples only, one line style per run: does the network learn the wrong labels? The red
    curve is the share predicted as their given label, memorised: its legend said "wrong label", which reads as any
    wrong prediction (a true-labelled example's too)."""
    fig = Figure(figsize=(9.6, 3.8))
    ax = fig.subplots()
    for (name, metrics), style in zip(runs.items(), _line_styles(runs)):
        marks = _epoch_marks(metrics)
        ax.plot(metrics["epoch"], metrics["noisy_pred_true"], linestyle=style, color="tab:green",
                label=f"{name}: true label", **marks)
        ax.plot(metrics["epoch"], metrics["noisy_pred_given"], linestyle=style, color="tab:red",
                label=f"{name}: given label (memorized)", **marks)
    _epoch_axis(ax)
    ax.set_ylabel("wrongly labelled examples predicted as")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the axes: the curves stay visible
    if title:
        ax.set_title(title)
    _save(fig, path)


def line_style_key(names: Iterable[str]) -> str:
    """"dashed: CE, solid: ELR": which line is which run in the comparison figures, for the caption beside them, in
    the order they draw the runs (a caption fixed to CE then ELR called an ELR-only figure's dashed line CE)."""
    return ", ".join(f"{style}: {name.upper()}" for name, style in zip(names, LINE_STYLES.values()))


def _line_styles(runs: dict[str, pd.DataFrame]) -> list[Any]:
    """One line style a run; more runs than styles is refused rather than drawn without the last ones."""
    if len(runs) > len(LINE_STYLES):
        raise ValueError(f"a comparison figure draws at most {len(LINE_STYLES)} runs, one line style each; "
                         f"{len(runs)} were given ({', '.join(runs)}): draw them in two figures")
    return list(LINE_STYLES)[:len(runs)]


def plot_learning_curves(runs: dict[str, pd.DataFrame], path: Path) -> None:
    """Training loss and validation / test accuracy per epoch, one line style per run; accuracy in %, as every table
    beside the figure prints it (it was drawn in fractions, 0.4 beside a table's 40.0)."""
    fig = Figure(figsize=(10, 3.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for (name, metrics), style in zip(runs.items(), _line_styles(runs)):
        marks = _epoch_marks(metrics)
        ax_loss.plot(metrics["epoch"], metrics["train_loss"], linestyle=style, color="black", label=name, **marks)
        ax_acc.plot(metrics["epoch"], 100 * metrics["val_acc"], linestyle=style, color="tab:blue",
                    label=f"{name}: validation", **marks)
        ax_acc.plot(metrics["epoch"], 100 * metrics["test_acc"], linestyle=style, color="tab:orange",
                    label=f"{name}: test", **marks)
    ax_loss.set_ylabel("training loss (ELR's goes negative)")
    ax_acc.set_ylabel("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        _epoch_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def _epoch_marks(metrics: pd.DataFrame) -> dict[str, Any]:
    """Markers on each epoch's value for a short run: a line through one point is not drawn at all, so a 1-epoch
    run's figure came out as empty axes; a long run's markers would hide its curves."""
    return {"marker": "o", "markersize": 3} if len(metrics) <= MARKED_EPOCHS else {}


def _epoch_axis(ax: Axes) -> None:
    """An x axis of whole epochs: matplotlib ticked a 2-epoch run at 1.2, 1.4, ... and a 1-epoch run at 0.96, ...
    (`min_n_ticks=1`: else the integer rule gives way where the axis spans a single whole number)."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def plot_roc(labels: np.ndarray, probs: np.ndarray, classes: list[str], path: Path, title: str = "") -> None:
    """`roc_figure` written to `path`."""
    _save(roc_figure(labels, probs, classes, title), path)


def roc_figure(labels: np.ndarray, probs: np.ndarray, classes: list[str], title: str = "") -> Figure:
    """One-vs-rest ROC curve per class, from the predicted probabilities, each named with its AUC (in %, as
    `evaluate` prints it) under `title`: the figure is read apart from metrics.csv, and the demo's report sets it,
    drawn over scans, beside tables of participants."""
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    curves = 0
    for k, name in enumerate(classes):
        truth = labels == k
        if truth.all() or not truth.any():
            continue  # a class absent from (or alone in) the set has no ROC curve
        ax.plot(*roc_points(truth, probs[:, k]), label=f"{name}, AUC {100 * roc_auc(truth, probs[:, k]):.1f}%")
        curves += 1
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    if not curves:  # one class in the whole set: no curve, and a legend would warn of having nothing to show
        title = ": ".join(filter(None, [title, "no ROC curve, the set holds one class"]))
    elif len(classes) <= LEGIBLE_CLASSES:
        ax.legend(fontsize=8)
    else:
        title = ": ".join(filter(None, [title, f"one curve per class ({len(classes)})"]))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def plot_confusion(counts: np.ndarray, classes: list[str], path: Path, title: str = "") -> None:
    """Confusion matrix: counts, coloured by the share of each given class."""
    rates = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)
    many = len(classes) > LEGIBLE_CLASSES  # WebVision's 50: colours and small names, no counts in the cells
    side = 0.22 * len(classes) + 2.5 if many else 4.0
    fig = Figure(figsize=(side + 0.2, side - 0.2))
    ax = fig.subplots()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if not many:
        for i in range(len(classes)):
            for j in range(len(classes)):
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", color=color)
    ax.set_xticks(range(len(classes)), classes, rotation=90 if many else 0, fontsize=6 if many else None)
    ax.set_yticks(range(len(classes)), classes, fontsize=6 if many else None)
    ax.set_xlabel("predicted")
    ax.set_ylabel("given")
    if title:
        ax.set_title(title)
    _save(fig, path)


def plot_reliability(bins: dict[str, np.ndarray], path: Path, title: str = "") -> None:
    """Reliability diagram of `reliability_bins`: each bin's accuracy against its mean confidence, over the diagonal
    that perfect calibration follows (below it: overconfident), each point named with its count, and the counts as
    bars beneath: a bin of three examples is far off the diagonal by chance alone, which its count tells."""
    fig = Figure(figsize=(4.6, 5.2))
    ax, ax_count = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = bins["count"] > 0
    confidence, accuracy, counts = bins["confidence"][filled], bins["accuracy"][filled], bins["count"][filled]
    ax.plot([0, 1], [0, 1], ":", color="gray", label="calibrated")
    ax.plot(confidence, accuracy, "o-", color="tab:blue", label="per confidence bin")
    for x, y, count in zip(confidence, accuracy, counts):
        ax.annotate(str(int(count)), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_ylabel("accuracy (share predicted right)")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.08)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")  # where no bin's point is: underconfident bins fill the upper left
    edges = bins["edges"]
    ax_count.bar(edges[:-1], bins["count"], width=np.diff(edges), align="edge", color="tab:gray", edgecolor="white")
    ax_count.set_xlabel("confidence (probability of the predicted class)")
    ax_count.set_ylabel("count")
    if title:
        ax.set_title(title, fontsize=9)
    _save(fig, path)


def plot_saliency(saliency: np.ndarray, background: np.ndarray, affine: np.ndarray, path: Path,
                  title: str = "") -> None:
    """Axial and sagittal slices of a saliency map (RAS volume, `affine` to millimetres) over the mean input, each
    through the slice holding most of the map drawn: the centre slices can miss it all (a sagittal midline never
    crosses a hippocampus). Letters at each view's edges mark the sides, the axial view showing the subject's left on the
    left. Drawn inside the head only (`head_mask`): the gradient over the air around it, a fifth of the voxels drawn
    before, hid the anatomy under speckle; the caption says what share of the map lies outside, undrawn."""
    head = head_mask(background)
    inside = saliency[head]
    top = np.percentile(inside, 99.5) or inside.max() or 1.0  # a map on few voxels: its own scale
    low = SALIENCY_DRAWN_FROM * top
    drawn = np.where(head & (saliency >= low), saliency, 0.0)
    x, z = _strongest_slice(drawn, axis=0), _strongest_slice(drawn, axis=2)
    centre = np.array([s / 2 for s in saliency.shape])
    x_mm = (affine[:3, :3] @ [x, centre[1], centre[2]] + affine[:3, 3])[0]
    z_mm = (affine[:3, :3] @ [centre[0], centre[1], z] + affine[:3, 3])[2]
    views = {f"axial, z = {z_mm:.0f} mm": (background[:, :, z].T, drawn[:, :, z].T, "LR"),
             f"sagittal, x = {x_mm:.0f} mm": (background[x].T, drawn[x].T, "PA")}
    fig = Figure(figsize=(8.4, 3.9), layout="constrained")  # room for the colour bar and caption
    axes = fig.subplots(1, 2)
    for ax, (name, (under, over, sides)) in zip(axes, views.items()):
        ax.imshow(under, cmap="gray", origin="lower")
        shown = ax.imshow(np.ma.masked_less(over, low), cmap="autumn", origin="lower", alpha=0.7, vmin=low, vmax=top)
        for side, where in zip(sides, (0.04, 0.96)):  # on a dark box: bare white letters vanished over white matter
            ax.text(where, 0.5, side, transform=ax.transAxes, ha="center", va="center", color="white", fontsize=9,
                    weight="bold", bbox={"boxstyle": "round,pad=0.2", "facecolor": "black", "alpha": 0.7, "lw": 0})
        ax.set_title(name)
        ax.axis("off")
    fig.colorbar(shown, ax=axes, shrink=0.75, extend="max", format="%.1e", label="|∂ log p / ∂ input|")
    outside = saliency[~head].sum() / saliency.sum() if saliency.sum() > 0 else 0.0
    fig.supxlabel(f"drawn inside the head, from {SALIENCY_DRAWN_FROM:.0%} of the map's 99.5th percentile there; "
                  f"{outside:.0%} of the map lies outside the head, not drawn", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path, tight=False)  # laid out as it was made


def head_mask(background: np.ndarray) -> np.ndarray:
    """The head (the brain, for skull-stripped scans): the mean scan brighter than a tenth of its 99th percentile, the
    cavities it encloses (ventricles) filled; all of it where nothing is that bright."""
    from scipy import ndimage

    head = ndimage.binary_fill_holes(background > 0.1 * np.percentile(background, 99))
    return head if head.any() else np.ones(background.shape, dtype=bool)


def _strongest_slice(drawn: np.ndarray, axis: int) -> int:
    """The slice along `axis` holding most of `drawn`; the middle one when nothing is drawn."""
    per_slice = drawn.sum(axis=tuple(a for a in range(drawn.ndim) if a != axis))
    return int(per_slice.argmax()) if per_slice.max() > 0 else drawn.shape[axis] // 2


def _save(fig: Figure, path: Path, tight: bool = True) -> None:
    """Write the PNG as every output is written (`atomic_path`: a temporary file beside it, on the disk, then renamed):
    no half-written figure is ever visible, and a disk that refuses it (full, read-only) is named as `path`, not as a
    hidden temporary file, which is not left behind. `tight`: lay the axes out tightly first (False for a figure made
    with a layout of its own). Nothing to close: pyplot never held the figure."""
    if tight:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
