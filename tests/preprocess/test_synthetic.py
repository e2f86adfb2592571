"""The pose and bias the registration tests undo are the ones the synthetic scans say they apply."""
from __future__ import annotations

import numpy as np

from preprocess.synthetic import POSE_CENTRE, move_and_bias, pose_transform


def test_the_pose_shifts_its_centre_by_the_shift_given_and_scales_volumes_by_the_scales_product():
    """About POSE_CENTRE: rotation and scaling leave it in place, so it moves by the shift alone."""
    tx = pose_transform(shift_mm=(7.0, -5.0, 6.0), scale=(1.04, 0.96, 1.0))
    assert np.allclose(tx.apply_to_point(POSE_CENTRE), np.add(POSE_CENTRE, (7.0, -5.0, 6.0)))
    matrix = np.reshape(tx.parameters[:9], (3, 3))
    assert np.isclose(np.linalg.det(matrix), 1.04 * 0.96)


def test_the_pose_turns_by_degrees_about_x_then_y_then_z():
    quarter_about_x = pose_transform(degrees=(90.0, 0.0, 0.0), shift_mm=(0.0, 0.0, 0.0), scale=(1.0, 1.0, 1.0))
    assert np.allclose(quarter_about_x.apply_to_point(np.add(POSE_CENTRE, (0.0, 10.0, 0.0))),
                       np.add(POSE_CENTRE, (0.0, 0.0, 10.0)))


def test_without_pose_or_bias_the_scan_is_the_image_itself():
    import ants

    image = ants.from_numpy(np.random.default_rng(0).random((12, 10, 8)).astype(np.float32))
    still = pose_transform(degrees=(0.0, 0.0, 0.0), shift_mm=(0.0, 0.0, 0.0), scale=(1.0, 1.0, 1.0))
    assert np.allclose(move_and_bias(image, still, strength=0.0).numpy(), image.numpy(), atol=1e-5)
    biased = move_and_bias(image, still).numpy() / image.numpy()
    assert np.isclose(biased[6, 5, 4], 1.0, atol=0.05) and biased.max() / biased.min() > 1.5  # flat at the centre
