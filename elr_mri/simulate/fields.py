"""Grids, smooth random fields and resampling: the spatial toolkit every simulator stage shares.

Everything works in world millimetres (RAS, as a NIfTI affine defines them), so anatomy, disease,
head pose and scanner grid compose as plain coordinate maps and the image is interpolated once.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["grid_points", "apply_affine", "voxel_coordinates", "sample", "dct_field", "box_affine", "rotation_matrix", "crop_grid"]


def grid_points(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of every voxel centre of a grid, shape (*shape, 3), float32."""
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return apply_affine(affine, ijk)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (..., 3) mapped by a 4×4 affine, float32 (as (3, 3) @ (3, N): fast for millions)."""
    flat = points.reshape(-1, 3).T
    mapped = affine[:3, :3].astype(np.float32) @ flat + affine[:3, 3:4].astype(np.float32)
    return np.ascontiguousarray(mapped.T).reshape(points.shape)


def voxel_coordinates(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Voxel coordinates of world points, shape (3, *points.shape[:-1]) as map_coordinates wants."""
    inverse = np.linalg.inv(affine)
    flat = points.reshape(-1, 3).T
    ijk = inverse[:3, :3].astype(np.float32) @ flat + inverse[:3, 3:4].astype(np.float32)
    return ijk.reshape((3,) + points.shape[:-1])


def sample(volume: np.ndarray, affine: np.ndarray, points: np.ndarray, order: int = 1,
           fill: float | None = 0.0, prefiltered: bool = False) -> np.ndarray:
    """Interpolate `volume` (on the grid of `affine`) at world `points`.

    A 4-D volume is a stack of channels (first axis) sampled at the same points; the result then has
    the channels last. `fill=None` extends the edge values outwards (right for smooth fields); a
    number fills outside (right for images, whose outside is background). `prefiltered=True` takes a
    volume that `scipy.ndimage.spline_filter` already filtered, so cubic sampling of a cached anatomy
    is cheap.
    """
    coords = voxel_coordinates(points, affine)
    mode = "nearest" if fill is None else "constant"
    channels = volume if volume.ndim == 4 else volume[None]
    values = [ndimage.map_coordinates(channel, coords, order=order, mode=mode, cval=fill or 0.0,
                                      prefilter=not prefiltered, output=np.float32) for channel in channels]
    return np.stack(values, axis=-1) if volume.ndim == 4 else values[0]


def crop_grid(affine: np.ndarray, shape: tuple[int, ...], low_mm: np.ndarray,
              high_mm: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray, tuple[int, ...]]:
    """The part of an axis-aligned RAS grid inside a world box: index slices, its affine and shape."""
    spacing = np.diag(affine)[:3]
    start = np.clip(np.floor((np.asarray(low_mm) - affine[:3, 3]) / spacing), 0, np.asarray(shape)).astype(int)
    stop = np.clip(np.ceil((np.asarray(high_mm) - affine[:3, 3]) / spacing) + 1, 0, np.asarray(shape)).astype(int)
    sub_affine = affine.copy()
    sub_affine[:3, 3] = affine[:3, 3] + start * spacing
    slices = tuple(slice(a, b) for a, b in zip(start, stop))
    return slices, sub_affine, tuple(int(b - a) for a, b in zip(start, stop))


def dct_field(rng: np.random.Generator, shape: tuple[int, int, int], n_basis: int, rms: float) -> np.ndarray:
    """A smooth random scalar field on a grid: low-frequency cosines (SPM's bias-field basis).

    Coefficients of the n_basis³ lowest cosine products are Gaussian with amplitude falling as
    1/(1 + frequency); the constant term is left out, and the field is scaled to the given RMS,
    so `rms` is the one knob that sets its strength whatever the grid.
    """
    k = np.arange(n_basis)
    coefficients = rng.standard_normal((n_basis,) * 3) / (1.0 + k[:, None, None] + k[None, :, None] + k)
    coefficients[0, 0, 0] = 0.0
    bases = [np.cos(np.pi * np.outer(k, np.arange(n) + 0.5) / n) for n in shape]
    field = np.einsum("abc,ax,by,cz->xyz", coefficients, *bases, optimize=True)
    field -= field.mean()
    return (field * (rms / max(float(np.sqrt(np.mean(field**2))), 1e-12))).astype(np.float32)


def rotation_matrix(degrees: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """Rotation by angles (about x, about y, about z) in degrees, applied in that order: Rz·Ry·Rx."""
    ax, ay, az = np.deg2rad(np.asarray(degrees, float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def box_affine(center_mm: np.ndarray, fov_mm: np.ndarray, voxel_mm: np.ndarray,
               axis_codes: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """An axis-aligned scanner grid covering `fov_mm` around `center_mm`, stored in `axis_codes` order.

    `axis_codes` says where each array axis points, e.g. "RAS" (NIfTI canonical), "LPS" (DICOM,
    axial) or "PSR" (sagittal slabs); the affine maps voxel indices to RAS millimetres.
    """
    directions = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}
    affine = np.eye(4)
    shape = []
    for column, code in enumerate(axis_codes):
        world_axis, sign = directions[code]
        size = voxel_mm[world_axis]
        n = int(np.ceil(fov_mm[world_axis] / size))
        affine[:3, column] = 0.0
        affine[world_axis, column] = sign * size
        shape.append(n)
    corner = np.asarray(center_mm, float) - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    affine[:3, 3] = corner
    return affine, (shape[0], shape[1], shape[2])
