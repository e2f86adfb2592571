"""The simulator's spatial toolkit and regions, checked against what they are from first principles (a rotation's
right-hand rule, a DCT-II basis, a grid's voxel centres), apart from the cohort they build."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from elr_mri.simulate.acquisition import SITES, Pose, SiteProfile, corrupt, draw_pose, scanner_grid
from elr_mri.simulate.anatomy import load_anatomy, natural_displacement
from elr_mri.simulate.cohort import plan_cohort, raise_label_noise
from elr_mri.simulate.disease import REFERENCE_AGE, REGIONS, Region, region_changes
from elr_mri.simulate.fields import box_affine, crop_grid, dct_field, grid_points, rotation_matrix, sample
from preprocess.checks import ScanError


def test_rotations_follow_the_right_hand_rule_and_apply_about_x_first_then_y_then_z() -> None:
    """90° about y turns x into −z (z into x); (90, 0, 90) turns y first about x, into z, which z leaves alone."""
    np.testing.assert_allclose(rotation_matrix((0.0, 90.0, 0.0)) @ [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix((0.0, 90.0, 0.0)) @ [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix((90.0, 0.0, 90.0)) @ [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], atol=1e-12)


def test_a_scanner_grid_points_each_axis_where_its_code_says_and_centres_on_the_field_of_view() -> None:
    """The holdout site stores PIR: its first array axis must run posterior, the second inferior, the third right."""
    center = np.array([0.0, -20.0, 8.0])
    affine, shape = box_affine(center, np.array([240.0, 256.0, 256.0]), np.array([2.5, 2.0, 2.0]), "PIR")
    assert nib.aff2axcodes(affine) == ("P", "I", "R") and shape == (128, 128, 96)
    middle = affine @ np.append((np.asarray(shape) - 1) / 2.0, 1.0)
    np.testing.assert_allclose(middle[:3], center)


def test_cropping_a_grid_to_a_box_keeps_every_voxel_centre_inside_it_the_last_one_too() -> None:
    """A 2 mm grid from 0 mm, cropped to [2, 6] mm: its voxels at 2, 4 and 6 mm, indexes 1 to 3."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    slices, sub_affine, sub_shape = crop_grid(affine, (10, 10, 10), np.array([2.0] * 3), np.array([6.0] * 3))
    assert slices == (slice(1, 4),) * 3 and sub_shape == (3, 3, 3)
    np.testing.assert_allclose(sub_affine[:3, 3], [2.0, 2.0, 2.0])


def test_sampling_outside_a_volume_extends_its_edge_for_a_field_and_fills_for_an_image() -> None:
    """`fill=None` (displacement fields) repeats the edge value outwards; a number (images) is what lies outside."""
    volume = np.arange(27, dtype=np.float32).reshape(3, 3, 3) + 1.0
    outside = np.array([[10.0, 1.0, 1.0]], np.float32)  # beyond the last x voxel, whose row holds 19, 20, 21
    assert sample(volume, np.eye(4), outside, fill=None)[0] == pytest.approx(volume[2, 1, 1])
    assert sample(volume, np.eye(4), outside, fill=0.0)[0] == 0.0


def test_the_smooth_field_uses_the_dct_ii_cosines_of_spms_bias_basis() -> None:
    """DCT-II basis k on n voxels is cos(π·k·(x + ½)/n): along a 1-voxel axis only k = 0 remains, so a field of
    2 basis functions on an 8×1×1 grid is ±√2·cos(π(x + ½)/8) once scaled to RMS 1 (that cosine's RMS is 1/√2)."""
    field = dct_field(np.random.default_rng(3), (8, 1, 1), 2, 1.0)[:, 0, 0]
    expected = np.sqrt(2.0) * np.cos(np.pi * (np.arange(8) + 0.5) / 8)
    np.testing.assert_allclose(np.abs(field), np.abs(expected), atol=1e-5)


def test_a_pose_puts_head_point_y_at_r_y_plus_t_as_simulation_json_says() -> None:
    """Head point y sits at x = R·y + t: the MNI origin at t, and 90° about z turns the head's x axis into y."""
    np.testing.assert_allclose(Pose((0.0, 0.0, 0.0), (1.0, -2.0, 3.0)).matrix() @ [0.0, 0.0, 0.0, 1.0],
                               [1.0, -2.0, 3.0, 1.0])
    np.testing.assert_allclose(Pose((0.0, 0.0, 90.0), (1.0, -2.0, 3.0)).matrix() @ [10.0, 0.0, 0.0, 1.0],
                               [1.0, 8.0, 3.0, 1.0], atol=1e-12)


def test_head_poses_spread_over_plus_and_minus_15_degrees_and_mm_on_every_axis() -> None:
    """README: random head pose (±15°, ±15 mm), uniform on each axis, so as many turned one way as the other."""
    rng = np.random.default_rng(0)
    poses = np.array([(pose.rotation_deg + pose.translation_mm) for pose in (draw_pose(rng) for _ in range(400))])
    assert np.abs(poses).max() <= 15.0
    assert (poses.min(axis=0) < -13.5).all() and (poses.max(axis=0) > 13.5).all()
    assert np.abs(poses.mean(axis=0)).max() < 1.5  # uniform on ±15: mean 0, standard error 8.66/√400 = 0.43


def scanner(**changes: float) -> SiteProfile:
    """A site without noise, bias field or scale jitter, unless `changes` gives them."""
    settings = dict(name="plain", noise=0.0, bias_rms=0.0, intensity_scale=1000.0, scale_jitter=0.0, gamma=1.0,
                    voxel_factor=(1.0, 1.0, 1.0), axis_codes="RAS", fov_mm=(10.0, 10.0, 10.0)) | changes
    return SiteProfile(**settings)  # type: ignore[arg-type]


def test_the_scanner_writes_scale_times_the_clean_value_raised_to_its_contrast_gamma() -> None:
    """Without noise or bias a clean 0.5 is written as 1000·0.5^γ: 250 at γ = 2 (√0.5·1000 = 707 would be 1/γ)."""
    data, scale = corrupt(np.random.default_rng(0), np.full((4, 4, 4), 0.5, np.float32), scanner(gamma=2.0))
    assert scale == 1000.0 and (data == 250).all()


def test_the_noise_is_rician_so_empty_air_reads_as_a_rayleigh_magnitude() -> None:
    """Rician noise: the magnitude of signal plus complex Gaussian noise of σ on each channel. Where there is no signal
    it is Rayleigh, of mean σ·√(π/2) = 1.25σ; noise on the real channel alone would give |N(0, σ)|, of mean 0.80σ."""
    data, _ = corrupt(np.random.default_rng(0), np.zeros((40, 40, 40), np.float32), scanner(noise=0.05))
    assert data.mean() / (0.05 * 1000.0) == pytest.approx(np.sqrt(np.pi / 2), rel=0.02)


def test_the_two_sites_differ_as_the_readme_says() -> None:
    """README: the holdout has Rician noise 3.5% of white matter against 2%, a bias field of log-RMS 0.18 against
    0.08, about a third of the intensity scale, contrast γ 1.15, voxels 1.25× as long left–right, stored PIR
    against LPS."""
    train, holdout = SITES["adni_sim"], SITES["nacc_sim"]
    assert (train.noise, holdout.noise, train.bias_rms, holdout.bias_rms) == (0.02, 0.035, 0.08, 0.18)
    assert holdout.intensity_scale / train.intensity_scale == pytest.approx(1 / 3, abs=0.03)
    assert (train.gamma, holdout.gamma) == (1.0, 1.15)
    assert (train.voxel_factor, holdout.voxel_factor) == ((1.0, 1.0, 1.0), (1.25, 1.0, 1.0))
    assert (train.axis_codes, holdout.axis_codes) == ("LPS", "PIR")


def test_a_regions_half_extent_along_the_world_axes_follows_its_turn() -> None:
    """An ellipsoid of radii (5, 17, 6) turned 90° about z lies 17 mm along x, 5 along y, 6 along z."""
    turned = Region("turned", (0.0, 0.0, 0.0), (5.0, 17.0, 6.0), (0.0, 0.0, 90.0), 0.0, 0.0)
    np.testing.assert_allclose(turned.half_extent_mm(), [17.0, 5.0, 6.0])


def test_each_regions_atrophy_varies_about_the_typical_by_its_relative_jitter() -> None:
    """At severity 1 and the reference age a region changes by ad_change·(1 + 0.15·N(0, 1)): about the typical AD
    change on average, spread by 15% of it from subject to subject and between the hemispheres."""
    rng = np.random.default_rng(0)
    hippocampus = next(region for region in REGIONS if region.name == "hippocampus_l")
    relative = np.array([region_changes(rng, 1.0, REFERENCE_AGE)["hippocampus_l"] for _ in range(2000)])
    relative /= hippocampus.ad_change
    assert relative.mean() == pytest.approx(1.0, abs=0.01) and relative.std() == pytest.approx(0.15, rel=0.06)


def test_the_anatomy_is_scaled_so_white_matter_is_about_1() -> None:
    """The left centrum semiovale (MNI −28, −20, 30), deep white matter, reads about 1 (brighter tissue is rare)."""
    anatomy = load_anatomy("mni152", 3.0)
    white = sample(anatomy.data, anatomy.affine, np.array([[-28.0, -20.0, 30.0], [28.0, -20.0, 30.0]], np.float32))
    assert ((white > 0.85) & (white < 1.05)).all()


def test_head_size_is_an_isotropic_scale_about_the_mni_origin_larger_for_men() -> None:
    """A head of scale s samples the template at y/s (a backward displacement of (1/s − 1)·y), men 1.02 and women 0.98
    on average. Drawn from the same generator state, a man and a woman share the smooth field, so their displacements
    differ by (1/s_man − 1/s_woman)·y alone, with s_man − s_woman = 0.04."""
    grid_affine = np.diag([4.0, 4.0, 4.0, 1.0])
    grid_affine[:3, 3] = (-96.0, -132.0, -78.0)
    shape = (12, 14, 10)
    man, man_scale = natural_displacement(np.random.default_rng(1), grid_affine, shape, "M")
    woman, woman_scale = natural_displacement(np.random.default_rng(1), grid_affine, shape, "F")
    assert man_scale - woman_scale == pytest.approx(0.04)
    points = np.moveaxis(grid_points(shape, grid_affine), -1, 0)
    np.testing.assert_allclose(man - woman, (1 / man_scale - 1 / woman_scale) * points, atol=1e-4)


def test_an_anatomy_with_a_quarter_of_a_region_in_air_is_refused(tmp_path: Path) -> None:
    """README: a head that leaves more than a tenth of a disease region in air is refused. The template cut above
    z = 30 mm loses the cap of the whole-brain ellipsoid (centre z 12, radius 55 mm): h = 18/55 of the radius up, a
    cap of (1 − h)²(2 + h)/4 = 26% of its volume."""
    from nilearn.datasets import load_mni152_template

    template = load_mni152_template(resolution=2)
    data = template.get_fdata(dtype=np.float32)
    z = (template.affine @ np.vstack([np.zeros((2, data.shape[2])), np.arange(data.shape[2]), np.ones(data.shape[2])]))[2]
    data[:, :, z > 30.0] = 0.0
    cut = tmp_path / "cut.nii.gz"
    nib.save(nib.Nifti1Image(data, template.affine), cut)
    with pytest.raises(ScanError, match=r"only 7\d% of the region brain "):
        load_anatomy(str(cut), 4.0)


def test_each_scanner_aims_its_field_of_view_at_the_middle_of_the_brain() -> None:
    """As a technologist aims: the grid's centre lies within 5 mm of the template brain's centroid on every axis, so
    a head turned 15° and moved 15 mm still fits the 240-256 mm field of view."""
    anatomy = load_anatomy("mni152", 3.0)
    brain = grid_points(anatomy.data.shape, anatomy.affine)[anatomy.data > 0.1].mean(axis=0)
    for profile in SITES.values():
        affine, shape = scanner_grid(profile, 3.0)
        centre = affine @ np.append((np.asarray(shape) - 1) / 2.0, 1.0)
        np.testing.assert_allclose(centre[:3], brain, atol=5.0)


def test_each_site_numbers_its_participants_from_1_and_a_negative_count_is_refused() -> None:
    """`plan_cohort` is public (bench scripts plan without rendering): a negative holdout count must be refused as the
    training count is, not taken silently as no holdout."""
    ids = [spec.participant_id for spec in plan_cohort(2, 1, 0.0, seed=0)]
    assert ids == ["sub-ADNISIM0001", "sub-ADNISIM0002", "sub-NACCSIM0001"]
    for train, holdout in ((3, -1), (-1, 3)):
        with pytest.raises(ValueError, match="subject counts must be non-negative"):
            plan_cohort(train, holdout, 0.2, seed=0)


def test_raising_the_label_noise_below_the_wrong_labels_already_there_is_refused_even_by_one() -> None:
    """3 of 10 labels wrong and a rate of 0.2 asks for 2: one fewer than there are, which only adding flips cannot
    reach; taken as a count of flips, −1 would flip every correct label but one."""
    truth = ["CN", "MCI", "AD", "CN", "MCI", "AD", "CN", "MCI", "AD", "MCI"]
    given = ["MCI", "CN", "MCI", *truth[3:]]
    with pytest.raises(ValueError, match="3 of 10 labels are already wrong"):
        raise_label_noise(np.random.default_rng(0), truth, given, 0.2)
