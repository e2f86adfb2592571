"""The voxel grid of a cohort's scans (shape and voxel size in RAS order), read from NIfTI headers only.

The network learns positions on one grid: scans registered to the template at one resolution. A scan
on another grid (raw, not preprocessed, or preprocessed at another --resolution or --shape) still goes
through the pad-and-crop transforms without complaint and is scored as nonsense, so a cohort's scans
must share a grid, and a holdout cohort must be on the grid the run trained on. Within a cohort the scans must
also sit at one place in space (their RAS affines): one of the same shape and voxel size registered to another
template or cropped elsewhere puts other anatomy under each voxel, and explain draws every map on one affine.

Public names: `VolumeGrid`, `ScanReadError`, `read_grid`, `common_grid`, `require_grid`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, cast

import nibabel as nib
import numpy as np

__all__ = ["VolumeGrid", "ScanReadError", "read_grid", "common_grid", "require_grid"]

VOXEL_SIZE_TOLERANCE_MM = 1e-3  # resampling writes exact spacings; header rounding stays far below this


class ScanReadError(ValueError):
    """A scan in a manifest that exists but cannot be read as a volume (truncated, not NIfTI, ...)."""


@dataclass(frozen=True)
class VolumeGrid:
    """Shape (voxels) and voxel size (mm) of a volume once reoriented to RAS, as the transforms see it."""

    shape: tuple[int, ...]
    voxel_size_mm: tuple[float, ...]
    # voxel index -> mm of the RAS-oriented volume, from a scan's header; not part of a grid's identity (nor of what
    # a run records), so that scans on one grid but in other places can be found and named (`_refuse_other_places`)
    ras_affine: np.ndarray | None = field(default=None, compare=False, repr=False)

    def matches(self, other: VolumeGrid) -> bool:
        return self.shape == other.shape and bool(
            np.allclose(self.voxel_size_mm, other.voxel_size_mm, rtol=0, atol=VOXEL_SIZE_TOLERANCE_MM))

    def describe(self) -> str:
        size = "x".join(f"{v:g}" for v in self.voxel_size_mm)
        return f"{'x'.join(str(s) for s in self.shape)} voxels of {size} mm"

    def as_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "voxel_size_mm": [round(v, 6) for v in self.voxel_size_mm]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], ras_affine: list[list[float]] | None = None) -> VolumeGrid:
        """`ras_affine`: where a run's scans lay (recorded beside the grid since 2026-12-06; None before)."""
        return cls(tuple(int(s) for s in raw["shape"]), tuple(float(v) for v in raw["voxel_size_mm"]),
                   None if ras_affine is None else np.asarray(ras_affine, dtype=float))


def read_grid(path: str) -> VolumeGrid:
    """The RAS grid of the scan at `path`, from its header; a scan that is not one 3-D volume is refused."""
    try:
        image = nib.load(path)
        if not isinstance(image, nib.spatialimages.SpatialImage):  # a GIFTI surface, a CIFTI matrix
            raise TypeError(f"a {type(image).__name__} holds no voxel grid")
        shape, zooms, affine = image.shape, image.header.get_zooms(), image.affine
    except Exception as err:  # noqa: BLE001 - any header failure is the same problem for the user
        reason = (str(err).strip().splitlines() or [""])[0]
        raise ScanReadError(f"{path}: cannot be read as a volume ({type(err).__name__}: {reason}); preprocess "
                            "the scan again or remove its row from the manifest") from err
    if len(shape) == 4 and shape[3] == 1:  # a single volume stored as a 4-D series of one
        shape, zooms = shape[:3], zooms[:3]
    if len(shape) != 3:
        raise ScanReadError(f"{path}: holds a {len(shape)}-D image of shape {tuple(shape)}, not one 3-D T1 volume; "
                            "split out the T1 volume (e.g. fslroi / nibabel) or remove its row from the manifest")
    axes = nib.io_orientation(affine)[:, 0].astype(int)  # input axis i becomes RAS axis axes[i]
    ras_shape, ras_size = [0, 0, 0], [0.0, 0.0, 0.0]
    for axis, target in enumerate(axes):
        ras_shape[target], ras_size[target] = int(shape[axis]), float(zooms[axis])
    ras_affine = affine @ nib.orientations.inv_ornt_aff(nib.io_orientation(affine), shape)
    return VolumeGrid(tuple(ras_shape), tuple(ras_size), ras_affine)


def common_grid(paths: Iterable[str], source: str) -> VolumeGrid:
    """The grid every scan in `paths` shares; refuses a cohort whose scans do not share one."""
    grids = {path: read_grid(path) for path in paths}
    if not grids:
        raise ValueError(f"{source}: no scans to read")
    usual, _ = Counter(grids.values()).most_common(1)[0]
    _refuse_other_grids(grids, usual, source, f"the other scans are {usual.describe()}")
    _refuse_other_places(grids, source)
    return usual


def require_grid(paths: Iterable[str], grid: VolumeGrid, source: str) -> None:
    """Refuse scans in `paths` that are not on `grid`, the grid a run trained on, or (where the run recorded it)
    not where its scans lay: a holdout registered to another template would hold other anatomy in each voxel."""
    grids = {path: read_grid(path) for path in paths}
    _refuse_other_grids(grids, grid, source, f"the run trained on {grid.describe()}")
    _refuse_other_places(grids, source)
    if grid.ras_affine is not None and grids:
        _refuse_away_from_training(grids, grid.ras_affine, source)


def _refuse_other_grids(grids: dict[str, VolumeGrid], usual: VolumeGrid, source: str, expected: str) -> None:
    odd = [path for path, grid in grids.items() if not grid.matches(usual)]
    if odd:
        raise ValueError(
            f"{source}: {len(odd)} of {len(grids)} scan(s) are on another voxel grid, e.g. {odd[0]} is "
            f"{grids[odd[0]].describe()} and {expected}; run them through `preprocess` with the same "
            "--resolution and --shape (a network cannot read scans on another grid), or remove their rows")


def _refuse_other_places(grids: dict[str, VolumeGrid], source: str) -> None:
    """Refuse scans (read by `read_grid`, all on one grid) whose voxels sit elsewhere in space than the first scan's,
    or than the first such scan's where most do: more than half a voxel apart at some corner of the volume (another
    origin, orientation or tilt)."""
    paths = list(grids)
    if len(paths) < 2:
        return
    half_voxel = min(grids[paths[0]].voxel_size_mm) / 2
    affines = _ras_affines(grids)

    def apart_from(reference: int) -> np.ndarray:
        return _apart_at_corners(affines, affines[reference], grids[paths[0]].shape)

    reference, apart = 0, apart_from(0)
    if (apart > half_voxel).sum() > len(paths) / 2:  # the first scan is the odd one out
        reference = int(np.argmax(apart > half_voxel))
        apart = apart_from(reference)
    odd = np.flatnonzero(apart > half_voxel)
    if len(odd):
        raise ValueError(
            f"{source}: {len(odd)} of {len(paths)} scan(s) are on its voxel grid but elsewhere in space, e.g. "
            f"{paths[odd[0]]} lies up to {apart[odd[0]]:.3g} mm from {paths[reference]} (another origin, orientation "
            "or template), so a voxel would hold other anatomy from scan to scan; run them all through `preprocess` "
            "with the same --template, --resolution and --shape, or remove their rows")


def _ras_affines(grids: dict[str, VolumeGrid]) -> np.ndarray:
    """The grids' RAS affines, stacked: every grid `read_grid` gives has one (only an old run's record lacks it)."""
    return np.stack([cast(np.ndarray, grid.ras_affine) for grid in grids.values()])


def _refuse_away_from_training(grids: dict[str, VolumeGrid], trained: np.ndarray, source: str) -> None:
    """Refuse scans (all in one place, `_refuse_other_places`) more than half a voxel from where a run's scans lay."""
    paths = list(grids)
    grid = grids[paths[0]]
    apart = _apart_at_corners(_ras_affines(grids), trained, grid.shape)
    odd = np.flatnonzero(apart > min(grid.voxel_size_mm) / 2)
    if len(odd):
        raise ValueError(
            f"{source}: {len(odd)} of {len(paths)} scan(s) are on the run's voxel grid but elsewhere in space than the "
            f"scans it trained on, e.g. {paths[odd[0]]} lies up to {apart[odd[0]]:.3g} mm from them (another template "
            "or origin), so a voxel would hold other anatomy than the network learnt there; run them through "
            "`preprocess` with the run's --template, --resolution and --shape, or remove their rows")


def _apart_at_corners(affines: np.ndarray, reference: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """For each of `affines` (voxel -> mm), the largest distance in mm from `reference`'s at a corner voxel of a
    volume of `shape`: another origin, orientation or tilt moves some corner."""
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)]).T
    return np.abs((affines - reference) @ corners).max(axis=(1, 2))

