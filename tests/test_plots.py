"""The figures a run folder holds, read back as a user sees them: what is drawn for a short run."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
from matplotlib.axes import Axes
from matplotlib.figure import Figure
import numpy as np
import pandas as pd
import pytest

from elr_mri.plots import plot_learning_curves, plot_memorization, plot_memorization_comparison

RED = np.array([0xD6, 0x27, 0x28]) / 255  # matplotlib's tab:red, the memorized (wrong, given) label's curve
BLUE = np.array([0x1F, 0x77, 0xB4]) / 255  # tab:blue, the learning curves' validation accuracy
FRACTIONS = ("clean_pred_true", "clean_pred_other", "noisy_pred_true", "noisy_pred_given", "noisy_pred_other")


def _pixels(path: Path, colour: np.ndarray = RED) -> int:
    rgb = matplotlib.image.imread(path)[..., :3]
    return int((np.abs(rgb - colour).max(axis=-1) < 0.08).sum())


def _one_epoch(memorized: float) -> pd.DataFrame:
    return pd.DataFrame({"epoch": [1], **{name: [0.2] for name in FRACTIONS}, "noisy_pred_given": [memorized]})


def test_a_one_epoch_runs_memorization_figure_draws_its_values(tmp_path: Path) -> None:
    """A line through one point has no length and is not drawn: a 1-epoch run's figure was empty axes with a legend
    (as many red pixels as with no value at all: the legend's swatch)."""
    plot_memorization(_one_epoch(0.5), tmp_path / "drawn.png")
    plot_memorization(_one_epoch(float("nan")), tmp_path / "legend_only.png")
    assert _pixels(tmp_path / "drawn.png") > _pixels(tmp_path / "legend_only.png") + 10


def test_a_run_without_wrong_labels_says_so_in_the_empty_panel(tmp_path: Path) -> None:
    """A simulated cohort's training split with no flipped diagnosis (noise 0, or a small one whose flips all went
    to the test split): the right panel was empty under a legend of three curves (its red swatch), ticked at epoch 0."""
    from matplotlib.figure import Figure

    clean = pd.concat([_one_epoch(float("nan")), _one_epoch(float("nan")).assign(epoch=2)])
    clean[["noisy_pred_true", "noisy_pred_other"]] = float("nan")
    texts: list[str] = []
    original = Figure.savefig

    def keep_texts(fig: Figure, *args, **kwargs) -> None:
        texts.extend(text.get_text() for ax in fig.axes for text in ax.texts)
        assert fig.axes[1].get_xlim() == fig.axes[0].get_xlim()  # the same epochs as the other panel
        original(fig, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", keep_texts)
        plot_memorization(clean, tmp_path / "clean.png")
    assert texts == ["no training example is wrongly labelled:\nnothing to memorize"]
    assert _pixels(tmp_path / "clean.png") == 0  # no legend naming curves that are not there


@pytest.mark.parametrize("epochs", [1, 2, 300])
def test_the_epoch_axis_is_ticked_at_whole_epochs(epochs: int) -> None:
    """matplotlib ticked a 2-epoch run at 1.2, 1.4, 1.6 and a 1-epoch run at 0.96, 0.98, ...: no such epoch exists."""
    import matplotlib.pyplot as plt

    from elr_mri.plots import _epoch_axis

    fig, ax = plt.subplots()
    ax.plot(np.arange(1, epochs + 1), np.linspace(0, 1, epochs))
    _epoch_axis(ax)
    fig.canvas.draw()
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    plt.close(fig)
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax.get_xlabel() == "epoch"


def test_learning_curves_of_a_one_epoch_run_are_drawn(tmp_path: Path) -> None:
    """The demo report's figure, from two runs' metrics.csv: one epoch each is a marked point, not nothing."""
    one = pd.DataFrame({"epoch": [1], "train_loss": [0.5], "val_acc": [0.8], "test_acc": [0.4]})
    empty = one.assign(train_loss=float("nan"), val_acc=float("nan"), test_acc=float("nan"))
    plot_learning_curves({"ce": one, "elr": one}, tmp_path / "drawn.png")
    plot_learning_curves({"ce": empty, "elr": empty}, tmp_path / "legend_only.png")
    assert _pixels(tmp_path / "drawn.png", BLUE) > _pixels(tmp_path / "legend_only.png", BLUE) + 10


def test_a_figure_the_disk_refuses_is_named_as_itself(tmp_path: Path, read_only) -> None:
    """A run folder gone read-only (or full) by the end of training: the error named the hidden temporary
    `.memorization.png.tmp.png` (a full disk, no file at all); it names memorization.png, as the run's other
    outputs' errors do."""
    folder = tmp_path / "run"
    read_only(folder)
    with pytest.raises(OSError) as refused:
        plot_memorization(_one_epoch(0.5), folder / "memorization.png")
    assert refused.value.filename == str(folder / "memorization.png")


def test_a_figure_drawn_leaves_a_notebooks_matplotlib_backend_and_figures_alone(tmp_path: Path,
                                                                                drawn_in_a_notebook) -> None:
    """`import elr_mri.plots` chose the Agg backend for the whole process: a notebook that called `evaluate_run` or
    trained a run switched from its inline backend to Agg, and its figures stopped showing."""
    roc = tmp_path / "roc.png"
    drawing = ("import numpy as np; from elr_mri.plots import plot_roc\n"
               f"plot_roc(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]), ['a', 'b'], {str(roc)!r})")
    assert drawn_in_a_notebook(drawing) == "svg [1]"
    assert _pixels(roc, BLUE) > 0  # drawn all the same: the first class's curve


def _drawn(plot, *args) -> Figure:
    """The figure `plot` saves, kept as it is written: its axes, lines and texts, not its pixels."""
    kept: list[Figure] = []
    original = Figure.savefig

    def keep(fig: Figure, *rest, **options) -> None:
        kept.append(fig)
        original(fig, *rest, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", keep)
        plot(*args)
    return kept[0]


def test_the_learning_curves_give_accuracy_in_percent_as_the_tables_beside_them(tmp_path: Path) -> None:
    """The report's tables print accuracy in %; its learning curves drew fractions (0.4 beside a table's 40.0)."""
    run = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.9, 0.5], "val_acc": [0.5, 0.75], "test_acc": [0.25, 0.4]})
    _, accuracy = _drawn(plot_learning_curves, {"ce": run}, tmp_path / "curves.png").axes
    assert accuracy.get_ylabel() == "accuracy (%)"
    assert {line.get_label(): line.get_ydata().tolist() for line in accuracy.lines} == {
        "ce: validation": [50.0, 75.0], "ce: test": [25.0, 40.0]}
    assert max(accuracy.get_yticks()) > 1  # ticked in percent


def test_the_memorization_comparison_names_the_given_label_as_what_is_memorized(tmp_path: Path) -> None:
    """Its red curves are the wrongly labelled examples predicted as their given label; the legend said "wrong
    label", as if it counted any wrong prediction."""
    runs = {"ce": _one_epoch(0.6), "elr": _one_epoch(0.1)}
    figure = _drawn(plot_memorization_comparison, runs, tmp_path / "memorization.png")
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["ce: true label", "ce: given label (memorized)", "elr: true label",
                      "elr: given label (memorized)"]
    assert figure.axes[0].get_ylabel() == "wrongly labelled examples predicted as"


def test_the_memorization_comparison_draws_every_loss_each_in_its_own_line_style(tmp_path: Path) -> None:
    """`cifar10n_cpu.py --losses ce gce sce elr elr_plus` compares five runs; with four line styles the fifth was
    left out of the figure and its legend without a word. More runs than styles is refused in words."""
    names = ["ce", "gce", "sce", "elr", "elr_plus"]
    runs = {name: _one_epoch(0.1 * rank) for rank, name in enumerate(names)}
    ax = _drawn(plot_memorization_comparison, runs, tmp_path / "memorization.png").axes[0]
    memorized = [line for line in ax.lines if line.get_label().endswith("(memorized)")]
    assert [line.get_label().split(":")[0] for line in memorized] == names
    # get_linestyle() calls any dash pattern "--"; the pattern drawn has no public getter
    assert len({line._unscaled_dash_pattern for line in memorized}) == 5
    with pytest.raises(ValueError, match="at most 5 runs.*6 were given"):
        plot_memorization_comparison({**runs, "elr_again": _one_epoch(0.0)}, tmp_path / "six.png")


def test_each_epochs_value_is_marked_up_to_twenty_epochs(tmp_path: Path) -> None:
    def run(epochs: int) -> pd.DataFrame:
        return pd.DataFrame({"epoch": range(1, epochs + 1), **{name: [0.5] * epochs for name in
                                                               ("train_loss", "val_acc", "test_acc")}})

    markers = {epochs: {line.get_marker() for line in _drawn(plot_learning_curves, {"ce": run(epochs)},
                                                            tmp_path / f"{epochs}.png").axes[1].lines}
               for epochs in (20, 21)}
    assert markers == {20: {"o"}, 21: {"None"}}


def test_a_class_given_to_every_example_has_no_roc_curve() -> None:
    """With every label CN there is no negative example: no false positive rate, so no curve for CN as for AD."""
    from elr_mri.plots import roc_figure

    ax = roc_figure(np.zeros(4, dtype=int), np.full((4, 2), 0.5), ["CN", "AD"]).axes[0]
    assert ax.get_title() == "no ROC curve, the set holds one class" and len(ax.lines) == 1  # the chance diagonal


def test_roc_curves_are_named_in_a_legend_up_to_twelve_classes_and_counted_in_the_title_past_them() -> None:
    from elr_mri.plots import roc_figure

    def drawn(classes: int) -> Axes:
        labels = np.arange(2 * classes) % classes
        return roc_figure(labels, np.eye(classes)[labels] * 0.5 + 0.5 / classes, [f"c{k}" for k in range(classes)],
                          "test").axes[0]

    twelve, thirteen = drawn(12), drawn(13)
    assert len(twelve.get_legend().get_texts()) == 12 and twelve.get_title() == "test"
    assert thirteen.get_legend() is None and thirteen.get_title() == "test: one curve per class (13)"


def test_a_confusion_cells_count_is_white_on_a_dark_cell_and_black_on_a_light_one(tmp_path: Path) -> None:
    """Cells are coloured by the share of their given class (row): over half is dark blue."""
    from elr_mri.plots import plot_confusion

    figure = _drawn(plot_confusion, np.array([[3, 1], [0, 4]]), ["CN", "AD"], tmp_path / "confusion.png")
    assert {text.get_text(): text.get_color() for text in figure.axes[0].texts} == {
        "3": "white", "1": "black", "0": "black", "4": "white"}



def test_a_confusion_matrix_keeps_its_counts_up_to_twelve_classes(tmp_path: Path) -> None:
    from elr_mri.plots import plot_confusion

    written = {classes: len(_drawn(plot_confusion, np.eye(classes, dtype=int), [f"c{k}" for k in range(classes)],
                                   tmp_path / f"{classes}.png").axes[0].texts) for classes in (12, 13)}
    assert written == {12: 12 * 12, 13: 0}


def test_the_reliability_diagram_names_the_count_of_each_filled_bin_only(tmp_path: Path) -> None:
    """Empty bins have no accuracy (NaN): nothing is drawn or counted there."""
    from elr_mri.evaluation.calibration import reliability_bins
    from elr_mri.plots import plot_reliability

    bins = reliability_bins(np.array([0, 1, 1]), np.array([[0.95, 0.05], [0.35, 0.65], [0.38, 0.62]]))
    ax = _drawn(plot_reliability, bins, tmp_path / "reliability.png").axes[0]
    assert sorted(text.get_text() for text in ax.texts) == ["1", "2"]


def test_the_head_is_every_voxel_brighter_than_a_tenth_of_the_scans_99th_percentile() -> None:
    """Grey matter at a third of the brightest tissue is head; the air around it, at 5%, is not."""
    from elr_mri.plots import head_mask

    assert head_mask(_scan()).sum() == 6 ** 3


def _scan() -> np.ndarray:
    """A head of 6³ voxels in air: its brightest 64 voxels, past the top 1%, make the 99th percentile 1.0."""
    scan = np.full((10, 10, 10), 0.05)
    scan[2:8, 2:8, 2:8] = 0.3
    scan[3:7, 3:7, 3:7] = 1.0
    return scan


def test_the_saliency_caption_gives_the_share_of_the_map_outside_the_head(tmp_path: Path) -> None:
    from elr_mri.plots import plot_saliency

    saliency = np.zeros((10, 10, 10))
    saliency[4, 4, 3:6] = 1.0  # three voxels inside the head
    saliency[0, 0, 0] = 1.0  # one in the air
    figure = _drawn(plot_saliency, saliency, _scan(), np.eye(4), tmp_path / "saliency.png")
    assert "25% of the map lies outside the head" in figure._supxlabel.get_text()  # get_supxlabel: matplotlib 3.10
