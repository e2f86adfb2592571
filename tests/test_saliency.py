"""Saliency maps: the input gradient of log p(given class), including for scans the network confidently calls
another class, which are the ones a mislabel review looks at."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from elr_mri.evaluation.explain import map_file_stem, map_title, saliency_maps


class _SumScorer(nn.Module):
    """Class 1's logit is `offset` + the voxel sum, class 0's is 0: at the default 40 every scan is called class 1
    with p(0) ≈ e^-40."""

    def __init__(self, offset: float = 40.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # the maps are taken on the device of the first parameter
        self.offset = offset

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        total = self.scale * images.flatten(1).sum(dim=1)
        return torch.stack([torch.zeros_like(total), self.offset + total], dim=1)


class _OneNetwork:
    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def networks(self) -> list[nn.Module]:
        return [self.net]

    def predict_proba(self, batch: dict) -> torch.Tensor:
        """As the methods predict: the softmax of the networks' mean logits."""
        extra = {"age": batch["age"].float()} if "age" in batch else {}
        return torch.stack([net(batch["image"], **extra) for net in self.networks()]).mean(dim=0).softmax(dim=1)


def test_a_confidently_wrong_scan_keeps_its_gradient() -> None:
    scans = [{"image": torch.full((1, 3, 3, 3), 0.5), "label": 0}, {"image": torch.full((1, 3, 3, 3), 0.2), "label": 1}]
    maps, mean_input, counts, agreed, _ = saliency_maps(_OneNetwork(_SumScorer()), scans, num_classes=2, batch_size=2)
    assert counts.tolist() == [1, 1] and agreed.tolist() == [0, 1]  # each map averages its scan, predicted or not
    # d log p0 / d voxel = -(1 - p0) ≈ -1 for the scan labelled 0; log(softmax) clamped at 1e-12 gave 0 here
    np.testing.assert_allclose(maps[0], np.ones((3, 3, 3)), rtol=1e-6)
    # the scan labelled 1 is predicted as given: p1 ≈ 1, so its gradient vanishes (≈ e^-40), as it should
    assert np.abs(maps[1]).max() < 1e-12
    np.testing.assert_allclose(mean_input, np.full((3, 3, 3), 0.35), rtol=1e-6)


def test_each_map_says_how_much_of_it_its_largest_scan_gives() -> None:
    """The gradient of log p fades as p nears 1: of two scans given 1, the one whose 27 voxels sum to 27
    (p1 = 1 − 1.4e-6) adds 2.7e-6 of what the one summing to 13.5 (p1 = ½) adds, so their "mean" is the second's map.
    Measured on a simulated cohort: the map of 3 held-out scans given AD was 99% one scan's, and nothing said so."""
    scans = [{"image": torch.full((1, 3, 3, 3), value), "label": label}
             for value, label in ((0.5, 1), (1.0, 1), (0.0, 0), (0.0, 0))]
    *_, largest = saliency_maps(_OneNetwork(_SumScorer(offset=-13.5)), scans, num_classes=3, batch_size=3)
    np.testing.assert_allclose(largest[:2], [0.5, 0.5 / (0.5 + 1 / (1 + np.exp(13.5)))], rtol=1e-6)  # 0: two alike
    assert np.isnan(largest[2])  # no scan given class 2

def test_scans_predicted_as_given_are_counted_as_evaluate_predicts_them_in_the_runs_precision() -> None:
    """The maps are taken in fp32, and the prediction counted in predicted_as_given_per_map came from that pass: on a
    bf16 run a near tie went to the class fp32 favours, while evaluate's bf16 forward pass predicted the other. Here
    class 1's logit is 2^-9 above class 0's, which bf16 (8 bits) rounds away: evaluate predicts class 0."""
    from elr_mri.config import config_from_dict
    from elr_mri.engine.execution import ExecutionPlan
    from elr_mri.engine.methods import build_method
    from elr_mri.evaluation.evaluate import predict

    cfg = config_from_dict({"model": {"name": "mlp", "hidden": 4}, "loss": {"name": "ce"},
                            "train": {"precision": "bf16", "device": "cpu"}})
    method = build_method(cfg, (1, 2, 2, 2), 2, 2, ExecutionPlan.from_config(cfg.train, torch.device("cpu")))
    (net,) = method.networks()
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
        net.net[-1].bias.copy_(torch.tensor([1.0, 1.0 + 2.0 ** -9]))
    scans = [{"image": torch.ones((1, 2, 2, 2)), "label": label, "index": i} for i, label in enumerate((0, 1))]
    _, probs = predict(method, scans, batch_size=2)
    assert probs.argmax(axis=1).tolist() == [0, 0]  # bf16 rounds the two logits to one: the first class
    _, _, counts, agreed, _ = saliency_maps(method, scans, num_classes=2, batch_size=2)
    assert counts.tolist() == [1, 1] and agreed.tolist() == [1, 0]  # fp32 predicted class 1: [0, 1]


def _coloured_pixels(png: np.ndarray) -> np.ndarray:
    """Where the map shows over the grey background (grey has equal red and blue), left of the colour bar."""
    return png[:, : int(0.85 * png.shape[1]), 0] - png[:, : int(0.85 * png.shape[1]), 2] > 0.3


def _views(coloured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The axial and the sagittal view's part of `_coloured_pixels`."""
    half = coloured.shape[1] // 2
    return coloured[:, :half], coloured[:, half:]


def test_the_png_shows_a_map_that_lies_off_the_centre_slices(tmp_path) -> None:
    """The map of a left hippocampus lies on neither the sagittal midline nor, often, the axial centre slice:
    both views must go through it, or the figure shows no saliency at all."""
    import matplotlib.image

    from elr_mri.plots import plot_saliency

    background = np.full((40, 48, 40), 0.5)
    saliency = np.zeros(background.shape)
    saliency[8:13, 30:35, 6:10] = 1.0  # left, anterior, low: off every centre slice
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    plot_saliency(saliency, background, affine, tmp_path / "map.png")
    axial, sagittal = _views(_coloured_pixels(matplotlib.image.imread(tmp_path / "map.png")))
    assert axial.sum() > 20 and sagittal.sum() > 20  # both views show it


@pytest.mark.parametrize(("space", "code"), [("mni", 4), ("template", 5)])  # preprocess's MNI152, a --template
def test_a_map_keeps_the_space_and_units_of_the_scans(tmp_path, space: str, code: int) -> None:
    """`elr-mri preprocess` writes scans in mm coded MNI152 (or another template, for a --template of one's own); a
    map coded "aligned" in unknown units is in another space to a viewer that reads the codes (AFNI), which then does
    not lay it on the template."""
    import nibabel as nib

    from elr_mri.evaluation.explain import _write_nifti, crop_affine

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-90.0, -126.0, -72.0]
    scan = nib.Nifti1Image(np.random.default_rng(0).random((12, 14, 12), dtype=np.float32), affine)
    scan.set_sform(affine, space)
    scan.set_qform(affine, space)
    scan.header.set_xyzt_units("mm")
    nib.save(scan, tmp_path / "scan.nii.gz")
    crop = crop_affine(str(tmp_path / "scan.nii.gz"), (8, 8, 8))
    _write_nifti(np.ones((8, 8, 8)), crop, str(tmp_path / "scan.nii.gz"), tmp_path / "map.nii.gz", "")
    written = nib.load(tmp_path / "map.nii.gz")
    assert int(written.header["sform_code"]) == int(written.header["qform_code"]) == code
    assert written.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(written.affine, crop)
    np.testing.assert_allclose(written.get_fdata(), 1.0)


def test_a_maps_nifti_says_what_it_holds(tmp_path) -> None:
    """Opened alone in a viewer, a map's values (about 1e-2) said nothing of being gradients, of which class's log
    probability, over how many scans or with respect to which input scale. The header's field holds 80 ASCII bytes:
    a longer description is cut, a letter beyond ASCII written `?`."""
    import nibabel as nib

    from elr_mri.evaluation.explain import _write_nifti, map_description

    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), dtype=np.float32), np.eye(4)), tmp_path / "scan.nii.gz")

    def written(class_name: str) -> str:
        _write_nifti(np.ones((8, 8, 8)), np.eye(4), str(tmp_path / "scan.nii.gz"), tmp_path / "map.nii.gz",
                     map_description(class_name, 9))
        return nib.load(tmp_path / "map.nii.gz").header["descrip"].item().decode()

    assert written("AD") == "mean |d log p(AD)/d x| of 9 scans given AD; x: scan min-max scaled to [0,1]"
    assert written("Démence") == "mean |d log p(D?mence)/d x| of 9 scans given D?mence; x: scan min-max scaled to "


@pytest.mark.parametrize("name", ["scan.mgz", "scan.hdr"])  # FreeSurfer's format, an Analyze pair
def test_a_map_of_scans_in_another_format_than_nifti_is_written_aligned_in_mm(tmp_path, name: str) -> None:
    """Training reads any volume nibabel reads; the map's header copied NIfTI's codes from the scan's, so explain
    stopped at "no field of name sform_code" after computing every map."""
    import nibabel as nib

    from elr_mri.evaluation.explain import _write_nifti, crop_affine

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    image_class = nib.MGHImage if name.endswith(".mgz") else nib.Spm2AnalyzeImage
    nib.save(image_class(np.random.default_rng(0).random((12, 14, 12), dtype=np.float32), affine), tmp_path / name)
    crop = crop_affine(str(tmp_path / name), (8, 8, 8))
    _write_nifti(np.ones((8, 8, 8)), crop, str(tmp_path / name), tmp_path / "map.nii.gz", "")
    written = nib.load(tmp_path / "map.nii.gz")
    assert (int(written.header["sform_code"]), written.header.get_xyzt_units()[0]) == (2, "mm")
    np.testing.assert_allclose(written.affine, crop)


def test_the_png_shows_a_map_confined_to_a_few_voxels(tmp_path) -> None:
    """The colour scale tops out at the map's 99.5th percentile; where that is 0 (a map on fewer than 0.5% of the
    voxels) it must come from the map, not be 1: input gradients of 1e-3 were then all under the drawn threshold."""
    import matplotlib.image

    from elr_mri.plots import plot_saliency

    saliency = np.zeros((40, 48, 40))
    saliency[18:23, 22:27, 18:22] = 1e-3
    plot_saliency(saliency, np.full(saliency.shape, 0.5), np.eye(4), tmp_path / "map.png")
    axial, sagittal = _views(_coloured_pixels(matplotlib.image.imread(tmp_path / "map.png")))
    assert axial.sum() > 20 and sagittal.sum() > 20


def _head(shape: tuple[int, int, int]) -> np.ndarray:
    """A mean scan: a bright ellipsoid with dark ventricles at its centre, in air a little above 0 (min-max scaled
    noise)."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt((grid ** 2).sum(axis=0))
    return np.where(radius < 0.7, np.where(radius < 0.2, 0.05, 0.8), 0.02)


def test_the_head_holds_the_ventricles_but_not_the_air() -> None:
    from elr_mri.plots import head_mask

    background = _head((40, 48, 40))
    head = head_mask(background)
    assert head[20, 24, 20] and head[20, 24, 32] and not head[1, 1, 1] and not head[20, 24, 38]
    assert head_mask(np.zeros((4, 4, 4))).all()  # nothing bright: every voxel drawn, as before


def test_the_png_leaves_the_gradient_over_the_air_uncoloured(tmp_path) -> None:
    """The gradient around the head (every scan's air) covered a fifth of what the PNGs coloured on the demo cohort
    and on Colin27, in speckle over the black background; the NIfTI keeps it, the figure draws the head only."""
    import matplotlib.image

    from elr_mri.plots import head_mask, plot_saliency

    background = _head((40, 48, 40))
    saliency = np.where(head_mask(background), 0.0, 1.0)
    plot_saliency(saliency, background, np.eye(4), tmp_path / "air.png")
    assert not _coloured_pixels(matplotlib.image.imread(tmp_path / "air.png")).any()
    saliency[18:23, 22:27, 18:22] = 0.5  # and inside the head, weaker than the air's: that is what shows
    plot_saliency(saliency, background, np.eye(4), tmp_path / "both.png")
    axial, sagittal = _views(_coloured_pixels(matplotlib.image.imread(tmp_path / "both.png")))
    assert 20 < axial.sum() < 4000 and 20 < sagittal.sum() < 4000  # the blob, not the air (tens of thousands)


class _AgedConv(nn.Module):
    """A small 3D network that also reads the age, as the widened CNN does."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv3d(1, 4, 3)
        self.head = nn.Linear(4 * 4 ** 3 + 1, 3)

    def forward(self, images: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        features = torch.tanh(self.conv(images)).flatten(1)
        return self.head(torch.cat([features, age[:, None] / 100], dim=1))


class _Pair(_OneNetwork):
    def __init__(self, nets: list[nn.Module]) -> None:
        self.nets = nets

    def networks(self) -> list[nn.Module]:
        return self.nets


def test_each_map_is_the_mean_input_gradient_of_the_log_probability_of_the_given_class() -> None:
    """Against autograd one scan at a time, in float64: log p is that of the mean of the networks' logits (ELR+'s
    prediction), and the scans of a class are averaged, whichever batches they came in."""
    nets = [_AgedConv(0), _AgedConv(1)]
    rng = np.random.default_rng(0)
    scans = [{"image": torch.from_numpy(rng.random((1, 6, 6, 6), dtype=np.float32)), "label": label,
              "age": 60.0 + 4 * i} for i, label in enumerate([0, 2, 2, 0, 1])]
    maps, _, counts, _, _ = saliency_maps(_Pair(nets), scans, num_classes=3, batch_size=2)
    assert counts.tolist() == [2, 1, 2]
    expected = [np.zeros((6, 6, 6)) for _ in range(3)]
    for scan in scans:
        image = scan["image"][None].double().requires_grad_(True)
        age = torch.tensor([scan["age"]], dtype=torch.float64)
        logits = torch.stack([net.double()(image, age=age) for net in nets]).mean(dim=0)
        (gradient,) = torch.autograd.grad(logits.log_softmax(dim=1)[0, scan["label"]], image)
        expected[scan["label"]] += gradient.abs()[0, 0].numpy() / sum(s["label"] == scan["label"] for s in scans)
    for k in range(3):
        np.testing.assert_allclose(maps[k], expected[k], rtol=1e-4, atol=1e-7)


def test_the_png_title_of_a_map_of_one_scan_says_one_scan() -> None:
    """A class with one scan in a small holdout was titled "of 1 scans, 1 of them predicted CN"."""
    gradient = "mean |∂ log p(CN) / ∂ input| of"
    assert map_title("CN", 1, 1, 1.0) == f"given CN: {gradient} 1 scan, predicted CN"
    assert map_title("CN", 1, 0, 1.0) == f"given CN: {gradient} 1 scan, not predicted CN"
    assert map_title("CN", 3, 2, 0.5) == (f"given CN: {gradient} 3 scans, 2 of them predicted CN\n"
                                          "(the largest single scan gives 50% of the map)")
    assert map_title("CN", 2, 1, 0.75) == (f"given CN: {gradient} 2 scans, 1 of them predicted CN\n"
                                           "(the largest single scan gives 75% of the map)")


def test_the_mean_input_averages_every_scan_whatever_its_class() -> None:
    """Three scans of 0.3, 0.6 and 0.9 given two classes: the background the maps are drawn on is 0.6 everywhere."""
    scans = [{"image": torch.full((1, 3, 3, 3), value), "label": label}
             for value, label in ((0.3, 0), (0.6, 1), (0.9, 1))]
    _, mean_input, counts, _, _ = saliency_maps(_OneNetwork(_SumScorer()), scans, num_classes=2, batch_size=2)
    assert counts.tolist() == [1, 2]
    np.testing.assert_allclose(mean_input, np.full((3, 3, 3), 0.6), rtol=1e-6)


def test_every_class_name_gives_its_own_file_name() -> None:
    names = ["AD", "MCI/AD", "MCI%2FAD", "MCI-AD", "a\0b", "Démence"]
    stems = [map_file_stem(name) for name in names]
    assert stems[:2] == ["saliency_AD", "saliency_MCI%2FAD"] and stems[-1] == "saliency_Démence"
    assert len(set(stems)) == len(names) and not any("/" in stem or "\0" in stem for stem in stems)


def test_explaining_again_removes_the_maps_older_code_left_in_a_folder_and_nothing_of_the_users(tmp_path) -> None:
    """Before percent-encoded names, class `MCI/AD` left `saliency_MCI/AD.png`: that folder stopped the next
    explain's clean-up (Is a directory) after it had deleted the earlier maps, summary.json and a user's notes."""
    from elr_mri.evaluation.explain import remove_earlier_maps

    ours = ["saliency_CN.nii.gz", "saliency_CN.png", "saliency_MCI%2FAD.png", "saliency_MCI/AD.nii.gz",
            "saliency_MCI/AD.png", "saliency_A/B/C.png"]
    theirs = ["saliency_notes.txt", "saliency_A/notes.txt", "saliency_MCI.nii.gz.md", "summary.json"]
    for name in ours + theirs:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "saliency_empty").mkdir()  # a folder of the user's, even an empty one, is not a map
    remove_earlier_maps(tmp_path, ["CN", "MCI/AD", "A/B/C", "../CN"])
    left = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    assert left == {*theirs, "saliency_A", "saliency_empty"}  # saliency_MCI/ and saliency_A/B/ emptied, so gone
    assert all((tmp_path / name).read_text() == name for name in theirs)


def test_the_png_shows_the_subjects_left_and_front_on_the_sides_it_letters(tmp_path) -> None:
    """RAS voxels: a map in the left (low x), front (high y) of the brain must lie on the L side of the axial view
    and on the A side of the sagittal one, as the letters there say."""
    import matplotlib.image

    from elr_mri.plots import plot_saliency

    saliency = np.zeros((40, 48, 40))
    saliency[4:9, 38:44, 18:22] = 1.0
    plot_saliency(saliency, np.full(saliency.shape, 0.5), np.eye(4), tmp_path / "map.png")
    png = matplotlib.image.imread(tmp_path / "map.png")
    for view, coloured, share in zip(_views(_grey_pixels(png)), _views(_coloured_pixels(png)), (0.15, 0.85)):
        columns = np.flatnonzero(view.any(axis=0))  # the view's extent: its grey background
        where = (np.flatnonzero(coloured.any(axis=0)).mean() - columns[0]) / (columns[-1] - columns[0])
        assert abs(where - share) < 0.1, where  # L of the axial view: left; A of the sagittal view: right


def _grey_pixels(png: np.ndarray) -> np.ndarray:
    """Where the mean input of 0.5 shows, in `_coloured_pixels`' columns."""
    kept = png[:, : int(0.85 * png.shape[1]), :3]
    return (np.abs(kept - 0.5) < 0.05).all(axis=2)
