"""Data sets the engine trains on: image benchmarks and MRI cohorts, behind one `build_data`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elr_mri.config import DataConfig
    from elr_mri.data.images import NoisyImageData

__all__ = ["build_data"]


def build_data(cfg: DataConfig, require_age: bool = False) -> NoisyImageData:
    """The training, validation and test sets that `cfg.name` describes (MONAI is loaded only for MRI).

    `require_age`: the model reads each subject's age, so a scan without one is refused up front.
    """
    if cfg.name == "mri":
        from elr_mri.data.mri import build_mri_data

        return build_mri_data(cfg, require_age=require_age)
    from elr_mri.data.images import build_image_data

    return build_image_data(cfg)
