"""Data sets the engine trains on: image benchmarks and MRI cohorts, behind one `build_data`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from elr_mri.config import ConfigError
from preprocess.user_errors import not_a_file

if TYPE_CHECKING:
    from elr_mri.config import DataConfig
    from elr_mri.data.images import NoisyImageData

__all__ = ["build_data"]


def build_data(cfg: DataConfig, require_age: bool = False, blur_on_device: bool = False,
               progress: bool = True) -> NoisyImageData:
    """The training, validation and test sets that `cfg.name` describes (MONAI is loaded only for MRI).

    `require_age`: the model reads each subject's age, so a scan without one is refused up front.
    `blur_on_device`: MRI training items leave their blur to the batch's device (`device_blur.blurs_on_device`).
    `progress`: filling an MRI memory cache may show a bar (`train.progress`; under torchrun, the main rank's alone).
    """
    _require_files(cfg)
    if cfg.name == "mri":
        from elr_mri.data.mri import build_mri_data

        return build_mri_data(cfg, require_age=require_age, blur_on_device=blur_on_device, progress=progress)
    from elr_mri.data.images import build_image_data

    return build_image_data(cfg)


def _require_files(cfg: DataConfig) -> None:
    """Refuse a configured file that is not there, naming its key: the loaders only see the path."""
    used = {
        "noise.human_labels": cfg.noise.human_labels if cfg.noise.mode == "human" else None,
        "noise.transition_matrix": cfg.noise.transition_matrix if cfg.noise.mode == "transition" else None,
    }
    if cfg.name == "mri":
        files = ("manifest", "holdout_manifest", "splits", "val_labels")
        used |= {f"mri.{key}": getattr(cfg.mri, key) for key in files}
    for key, path in used.items():
        if path and not Path(path).is_file():  # where to find it again, for one not there (not a folder or pipe)
            found_again = "" if Path(path).exists() else f"; {_missing_file_fix(key, path)}"
            raise ConfigError(f"data.{key} = {path}: {not_a_file(path)}{found_again}")


def _missing_file_fix(key: str, path: str) -> str:
    """How to find the file again. A new run's paths are made absolute before its data is read, so a relative one here
    is a run's own, recorded as given by a version before 2026-12-03: it is there from the directory it trained in."""
    if not Path(path).is_absolute():
        return (f"a relative path, read from {Path.cwd()}, which does not hold it; a run made before 2026-12-03 "
                "recorded its paths as given: run the command from the directory it was trained in")
    return (f"for a new run correct the path in the config or with --set data.{key}=PATH; a run already made "
            "(--resume, evaluate, explain) reads it from that path, so put the file back there")
