"""Scans with a known head pose and bias field, made from real anatomy, for tests and benchmarks.

Preprocessing must undo exactly what is applied here: the pose (rotation, shift, mild scaling
about a point near the brain's centre) and a smooth multiplicative bias field.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["POSE_CENTRE", "pose_transform", "move_and_bias"]

POSE_CENTRE = (0.0, 18.0, 10.0)  # LPS mm, near the middle of an MNI-space brain


Triple = tuple[float, float, float]


def pose_transform(degrees: Triple = (9.0, -7.0, 5.0), shift_mm: Triple = (7.0, -5.0, 6.0),
                   scale: Triple = (1.04, 0.96, 1.0)) -> Any:
    """ANTs affine transform (ants.ANTsTransform; ants is imported lazily) mapping a point of the moved head's grid to the original head."""
    import ants
    from scipy.spatial.transform import Rotation

    matrix = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix() @ np.diag(scale)
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    tx.set_parameters(list(matrix.ravel()) + list(shift_mm))
    tx.set_fixed_parameters(list(POSE_CENTRE))
    return tx


def move_and_bias(image: Any, transform: Any = None, strength: float = 1.0) -> Any:
    """`image` resampled through the pose (default `pose_transform()`), times a bias field that
    varies by about +-35% across the head at strength 1."""
    tx = transform or pose_transform()
    moved = tx.apply_to_image(image, reference=image, interpolation="linear").numpy()
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in moved.shape], indexing="ij")
    bias = np.exp(strength * (0.3 * x + 0.2 * y * z - 0.25 * z ** 2))
    return image.new_image_like((moved * bias).astype(np.float32))
