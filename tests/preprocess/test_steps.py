"""Conversions between nibabel and ANTs keep the geometry; normalisations do what they say."""
from __future__ import annotations

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from preprocess.steps import cap_outliers, normalise, to_ants, to_nifti


def test_to_ants_matches_itk_reading_of_the_same_file(colin_path):
    import ants

    ours = to_ants(nib.as_closest_canonical(nib.load(colin_path)))
    itk = ants.image_read(str(colin_path))
    np.testing.assert_allclose(ours.origin, itk.origin)
    np.testing.assert_allclose(ours.spacing, itk.spacing)
    np.testing.assert_allclose(ours.direction, itk.direction)
    np.testing.assert_array_equal(ours.numpy(), itk.numpy())


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_round_trip_keeps_an_oblique_affine(tmp_path, dtype):
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [10, -5, 20], degrees=True).as_matrix() @ np.diag([1.2, 0.9, 1.5])
    affine[:3, 3] = [-80.5, -110.0, 60.25]
    data = np.random.default_rng(1).random((20, 24, 18)).astype(np.float32)
    path = tmp_path / "x.nii.gz"
    to_nifti(to_ants(nib.Nifti1Image(data, affine)), dtype).to_filename(path)
    back = nib.load(path)
    np.testing.assert_allclose(back.affine, affine, atol=1e-4)
    assert back.get_data_dtype() == np.dtype(dtype)  # int16: stored scaled, read back as floats
    np.testing.assert_allclose(back.get_fdata(), data, atol=1e-4 if dtype == "int16" else 0)


def test_int16_keeps_a_masked_background_exactly_zero(tmp_path):
    """A z-scored brain under a mask: negative and positive values around a zero background, which an intercept
    chosen for the value range turned into -3e-5 (a `!= 0` mask downstream then took the whole grid)."""
    data = np.zeros((20, 20, 20), np.float32)
    data[5:15, 5:15, 5:15] = np.random.default_rng(2).normal(0.0, 1.0, (10, 10, 10)) * 1.7 + 0.4
    path = tmp_path / "z.nii.gz"
    to_nifti(to_ants(nib.Nifti1Image(data, np.eye(4))), "int16").to_filename(path)
    back = nib.load(path).get_fdata()
    assert (back[data == 0] == 0).all()
    np.testing.assert_allclose(back, data, atol=np.abs(data).max() / 32767)


def test_int16_scales_by_the_largest_magnitude_even_where_it_is_negative(tmp_path):
    """A z-scored scan can reach further below 0 than above (-3 to 2): a scale set by the maximum alone wrapped its
    darkest voxels round to bright ones."""
    data = np.linspace(-3.0, 2.0, 8000, dtype=np.float32).reshape(20, 20, 20)
    path = tmp_path / "z.nii.gz"
    to_nifti(to_ants(nib.Nifti1Image(data, np.eye(4))), "int16").to_filename(path)
    np.testing.assert_allclose(nib.load(path).get_fdata(), data, atol=3.0 / 32767)


def test_to_ants_reads_an_oblique_scan_of_uneven_voxels_as_itk_does(tmp_path):
    """A voxel's edge is the length of its affine column: ITK's spacing of the same file, direction and origin alike."""
    import ants
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [10, -5, 20], degrees=True).as_matrix() @ np.diag([1.2, 0.9, 3.0])
    affine[:3, 3] = [-80.5, -110.0, 60.25]
    path = tmp_path / "oblique.nii.gz"
    nib.Nifti1Image(np.random.default_rng(1).random((20, 24, 18)).astype(np.float32), affine).to_filename(path)
    ours, itk = to_ants(nib.load(path)), ants.image_read(str(path))
    np.testing.assert_allclose(ours.spacing, itk.spacing, atol=1e-5)
    np.testing.assert_allclose(ours.direction, itk.direction, atol=1e-5)
    np.testing.assert_allclose(ours.origin, itk.origin, atol=1e-4)


def test_only_a_scan_with_negative_values_is_shifted_to_start_at_0():
    """A magnitude image (darkest voxel 5) keeps its intensities; one stored with an offset (-10) starts at 0."""
    import ants

    from preprocess.steps import non_negative

    data = np.random.default_rng(0).uniform(5, 100, (8, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(non_negative(ants.from_numpy(data)).numpy(), data)
    np.testing.assert_allclose(non_negative(ants.from_numpy(data - 15)).numpy(), data - data.min(), atol=1e-4)


def test_a_hot_voxel_is_capped_and_a_clean_scan_passes_unchanged():
    import ants

    data = np.random.default_rng(3).uniform(0, 100, (20, 20, 20)).astype(np.float32)
    data[:, :, :10] = 0  # zero background
    clean = ants.from_numpy(data)
    np.testing.assert_array_equal(cap_outliers(clean).numpy(), data)  # its brightest tissue is under the cap
    data[3, 4, 15] = 1e7
    capped = cap_outliers(ants.from_numpy(data)).numpy()
    assert capped[3, 4, 15] == pytest.approx(3 * np.quantile(data[data > 0], 0.995), rel=1e-5)
    others = np.ones(data.shape, bool)
    others[3, 4, 15] = False
    np.testing.assert_array_equal(capped[others], data[others])


def test_a_scan_that_is_mostly_zero_padding_keeps_its_head():
    """Percentiles over all voxels would put the cap at 0 and blank the scan (then ANTs failed with "error code 1")."""
    import ants

    data = np.zeros((60, 60, 60), np.float32)
    data[:5, :5, :5] = np.random.default_rng(4).uniform(50, 100, (5, 5, 5))  # 0.06% of the grid
    np.testing.assert_array_equal(cap_outliers(ants.from_numpy(data)).numpy(), data)


def test_normalisations():
    import ants

    rng = np.random.default_rng(0)
    data = rng.normal(100, 20, (20, 20, 20)).astype(np.float32)
    data[0, 0, 0] = 1e6  # a hot voxel the percentile clip must ignore
    image = ants.from_numpy(data)
    mask = ants.from_numpy((np.indices(data.shape)[0] >= 10).astype(np.float32))
    minmax = normalise(image, mask, "minmax").numpy()
    assert minmax.min() == 0 and minmax.max() == 1 and np.median(minmax) > 0.3
    z = normalise(image, mask, "zscore").numpy()[10:]
    assert abs(z.mean()) < 1e-3 and abs(z.std() - 1) < 1e-3
    np.testing.assert_array_equal(normalise(image, mask, "none").numpy(), data)
    with pytest.raises(ValueError, match="unknown"):
        normalise(image, mask, "histogram")


def test_a_qc_image_titled_in_a_script_the_font_lacks_is_written_without_warnings(tmp_path):
    """Ids such as sub-李02 are allowed; matplotlib's one warning per missing glyph per draw filled a batch's log with
    lines naming no scan (the title shows boxes for them; the file name holds the id)."""
    import warnings
    from types import SimpleNamespace

    import ants

    from preprocess.qc import overlay_png

    image = ants.from_numpy(np.random.default_rng(0).random((20, 24, 20)).astype(np.float32))
    mask = image.new_image_like((image.numpy() > 0.5).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        overlay_png(image, SimpleNamespace(mask=mask), tmp_path / "qc.png", title="sub-李02_ses-基线")
    assert (tmp_path / "qc.png").read_bytes()[:4] == b"\x89PNG"


def _drawn_sides(image, tmp_path) -> list[tuple[str, str, str]]:
    """Per view of `overlay_png`'s figure: (left letter, right letter, the side the bright voxels lie on)."""
    from types import SimpleNamespace

    from matplotlib.figure import Figure

    from preprocess.qc import overlay_png

    kept = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", lambda fig, *args, **kwargs: kept.append(fig))
        overlay_png(image, SimpleNamespace(mask=image), tmp_path / "qc.png", title="sub-01")
    views = []
    for ax in kept[0].axes:
        left, right = (text.get_text() for text in sorted(ax.texts, key=lambda text: text.get_position()[0]))
        columns = np.asarray(ax.images[0].get_array()).mean(axis=0)
        views.append((left, right, "left" if columns.argmax() < len(columns) / 2 else "right"))
    return views


@pytest.mark.parametrize("flipped", [False, True])
def test_each_qc_view_names_the_sides_of_the_head_where_they_are_drawn(tmp_path, flipped):
    """A left-right flip is what a person paging through the QC images should catch, and the views carried no
    letters. Here a slab of the subject's left half (LPS +x) and one of the front (LPS -y) are drawn, on a grid whose
    index grows toward the left or, as MNI152's does in ANTs, toward the right: the letter on the slab's side is L
    (A), wherever the slab is drawn."""
    import ants

    direction = np.diag([-1.0 if flipped else 1.0, 1.0, 1.0])  # physical x = ±index: LPS +x is the subject's left
    left_half, front = np.zeros((20, 24, 22), np.float32), np.zeros((20, 24, 22), np.float32)
    left_half[slice(0, 4) if flipped else slice(16, 20)] = 1.0
    front[:, :4] = 1.0  # physical y = index: the front (LPS -y) is the low end
    coronal, axial = _drawn_sides(ants.from_numpy(left_half, direction=direction), tmp_path)[1:]
    sagittal = _drawn_sides(ants.from_numpy(front, direction=direction), tmp_path)[0]
    for (left, right, bright), side, other in ((coronal, "L", "R"), (axial, "L", "R"), (sagittal, "A", "P")):
        assert (left, right) == ((side, other) if bright == "left" else (other, side))


def test_a_qc_image_leaves_a_notebooks_matplotlib_backend_and_figures_alone(tmp_path, drawn_in_a_notebook):
    """`overlay_png` chose the Agg backend for the whole process: preprocessing from a notebook (`--jobs 1` draws in
    its process) switched it from its inline backend, and its figures stopped showing."""
    drawing = ("import numpy as np, ants; from types import SimpleNamespace; from preprocess.qc import overlay_png\n"
               "image = ants.from_numpy(np.random.default_rng(0).random((20, 24, 20)).astype(np.float32))\n"
               "mask = image.new_image_like((image.numpy() > 0.5).astype(np.float32))\n"
               f"overlay_png(image, SimpleNamespace(mask=mask), {str(tmp_path / 'qc.png')!r}, title='sub-01')")
    assert drawn_in_a_notebook(drawing) == "svg [1]"
    assert (tmp_path / "qc.png").read_bytes()[:4] == b"\x89PNG"


def test_n4_removes_most_of_a_bias_field_from_a_real_head(colin_path):
    """What N4 is for, measured where a T1's intensities should be flat: white matter (Colin27's brightest fifth). The
    ±35% field of `move_and_bias` quadruples its coefficient of variation; the fast profile's N4 brings it back within
    half of the unbiased head's (measured: 0.027 clean, 0.109 biased, 0.031 corrected; 0.092 by the same N4 without
    its head mask, whose zero background then rules the fit)."""
    import ants

    from preprocess.steps import n4
    from preprocess.synthetic import move_and_bias

    colin = ants.resample_image(ants.image_read(str(colin_path)), (2, 2, 2), use_voxels=False, interp_type=0)
    clean = move_and_bias(colin, strength=0.0).numpy()
    white = clean > np.quantile(clean[clean > 0], 0.8)

    def variation(image: np.ndarray) -> float:
        return float(image[white].std() / image[white].mean())

    biased = move_and_bias(colin)
    assert variation(biased.numpy()) > 3 * variation(clean)
    assert variation(n4(biased, "fast").numpy()) < 1.5 * variation(clean)


_REGISTER_WITH_SEEDS = """
import sys, tempfile, ants
from preprocess.steps import register
from preprocess.synthetic import move_and_bias
head = ants.resample_image(ants.image_read(sys.argv[1]), (6, 6, 6), use_voxels=False, interp_type=0)
moving = move_and_bias(head)
for seed in map(int, sys.argv[2:]):
    with tempfile.TemporaryDirectory() as folder:
        print(open(register(head, moving, "affine", False, f"{folder}/reg_", seed)[0], "rb").read().hex())
"""


def test_a_registration_repeated_on_one_itk_thread_gives_the_same_transform_for_its_seed(colin_path):
    """antsRegistration drew its metric's sample points from a clock seed: on one thread (`--jobs` as many as the
    cores) the same scan registered anew moved by up to 0.2 mm (measured on Colin27 at 2 mm). Seeded, a rerun is
    exact; the seed given (recorded as --seed) is the one used, an exported ANTS_RANDOM_SEED was taken over it, so
    sidecars recorded no seed that made their outputs. Its own process: ITK reads its thread count once."""
    result = subprocess.run([sys.executable, "-c", _REGISTER_WITH_SEEDS, str(colin_path), "123", "123", "7"],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "ANTS_RANDOM_SEED": "7"})
    first, again, other = result.stdout.split()
    assert first == again != other


def _box(corner: tuple[int, int, int], size: int, background: np.ndarray):
    """An ANTs image: a bright cube (100) of `size` voxels an edge at `corner` on `background`."""
    import ants

    data = background.astype(np.float32).copy()
    x, y, z = corner
    data[x:x + size, y:y + size, z:z + size] = 100.0
    return ants.from_numpy(data)


def test_ncc_is_the_correlation_inside_the_mask_whatever_the_scale_and_offset():
    """NCC is Pearson's correlation on the mask's voxels: 1 for any brighter, offset copy, -1 for an inverted one,
    whatever lies outside the mask; a blank output correlates with nothing and must not pass as a match."""
    import ants

    from preprocess.qc import ncc

    rng = np.random.default_rng(0)
    image = rng.random((12, 12, 12))
    inside = np.zeros(image.shape, dtype=np.float32)
    inside[2:10, 2:10, 2:10] = 1.0
    mask = ants.from_numpy(inside)
    outside_noise = (1 - inside) * rng.random(image.shape) * 50  # unrelated voxels where the mask is 0
    scaled = ants.from_numpy((image * 2 + 5 + outside_noise).astype(np.float32))
    inverted = ants.from_numpy((-image + outside_noise).astype(np.float32))
    reference = ants.from_numpy(image.astype(np.float32))
    assert ncc(scaled, reference, mask) == pytest.approx(1.0, abs=1e-9)
    assert ncc(inverted, reference, mask) == pytest.approx(-1.0, abs=1e-9)
    assert ncc(ants.from_numpy(np.zeros(image.shape, np.float32)), reference, mask) == 0.0


def test_head_overlap_is_the_dice_of_the_two_bright_foregrounds():
    """Dice = 2|A∩B| / (|A| + |B|): two 4-voxel cubes on a dim, noisy background, one shifted by 2 voxels along an
    axis, share half their voxels, 0.5; the faint background is not foreground (Otsu splits it from the heads)."""
    from preprocess.qc import foreground_dice

    background = np.random.default_rng(0).uniform(1, 5, (16, 16, 16))
    first = _box((4, 4, 4), 4, background)
    shifted = _box((6, 4, 4), 4, background)
    assert foreground_dice(first, shifted) == pytest.approx(0.5)
    assert foreground_dice(first, first) == pytest.approx(1.0)


def test_the_input_voxel_size_qc_reads_is_the_coarsest_edge():
    """A 1 × 1.2 × 5 mm clinical T1 is as coarse as its 5 mm slices, whatever its in-plane resolution."""
    from preprocess.qc import coarsest_voxel_mm

    scan = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.diag([1.0, 1.2, 5.0, 1.0]))
    assert coarsest_voxel_mm(scan) == 5.0


def test_mutual_information_is_higher_for_a_better_match():
    """QC's qc_mi reads higher as better: a head against itself shares more information than against unrelated
    noise, and mutual information is never negative (ANTs gives it negated, as a cost to minimise)."""
    import ants

    from preprocess.qc import mutual_information

    rng = np.random.default_rng(0)
    head = _box((4, 4, 4), 8, rng.uniform(1, 5, (16, 16, 16)))
    noise = ants.from_numpy(rng.uniform(1, 100, (16, 16, 16)).astype(np.float32))
    itself, unrelated = mutual_information(head, head), mutual_information(noise, head)
    assert itself > unrelated and itself > 0
