"""Whether a holdout cohort was preprocessed as the training cohort was, from the sidecars `elr-mri preprocess`
writes beside each scan.

The voxel grid and where it lies are compared from the headers (`grid.py`); a grid cannot show the intensity
normalisation, the brain mask, the registration or the template. A holdout preprocessed months later with
`--normalise zscore` or `--brain-mask` sits on the training grid and was scored without a word, its figures those
of a network fed inputs it never saw; those settings are refused. Settings that leave the inputs nearly alike (a
later pipeline version, the registration profile, int16 storage) are said in a warning. Scans without a sidecar
(preprocessed elsewhere) are not compared.

A run records its training scans' settings (`cohort_preprocessing`, in data_shape.json), so that a holdout is
compared with what the run trained on even after the training manifest has moved or its scans were made again.

Public names: `SETTINGS_REFUSED`, `SETTINGS_WARNED`, `preprocessing_settings`, `cohort_preprocessing`,
`compare_preprocessing`.
"""

from __future__ import annotations

from typing import Any, Iterable

from preprocess.pipeline import ScanOutputs
from preprocess.sidecar import read_sidecar

__all__ = ["SETTINGS_REFUSED", "SETTINGS_WARNED", "preprocessing_settings", "cohort_preprocessing",
           "compare_preprocessing"]

SETTINGS_REFUSED = ("normalise", "brain_mask", "transform", "template")  # change the voxels the network reads
SETTINGS_WARNED = ("pipeline_version", "profile", "dtype")  # the same inputs, up to registration and rounding


def preprocessing_settings(image: str) -> dict[str, Any] | None:
    """The settings of `SETTINGS_REFUSED` and `SETTINGS_WARNED` that preprocessed the scan at `image`, from its
    sidecar; None for a scan without one (not an `elr-mri preprocess` output, or its sidecar gone)."""
    try:
        sidecar = read_sidecar(ScanOutputs.beside(image).sidecar)
    except ValueError:  # not named as preprocess names its outputs
        return None
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("params"), dict):
        return None
    params, template = sidecar["params"], sidecar.get("template") or {}
    return {"normalise": params.get("normalise"), "brain_mask": params.get("brain_mask"),
            "transform": params.get("transform"), "template": _template_identity(template, params.get("template")),
            "pipeline_version": sidecar.get("pipeline_version"), "profile": params.get("profile"),
            "dtype": params.get("dtype")}


def cohort_preprocessing(images: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The distinct settings among a cohort's scans, each keyed by the path of the first scan made so; scans without a
    sidecar are left out (empty: none has one)."""
    distinct: dict[str, dict[str, Any]] = {}
    for image in images:
        settings = preprocessing_settings(str(image))
        if settings is not None and settings not in distinct.values():
            distinct[str(image)] = settings
    return distinct


def compare_preprocessing(trained: dict[str, dict[str, Any]], holdout_images: Iterable[str], source: str) -> str | None:
    """Refuse holdout scans preprocessed with other `SETTINGS_REFUSED` than every training scan (`trained`, as
    `cohort_preprocessing` gives them), naming both; return a warning when they differ only in `SETTINGS_WARNED`, else
    None."""
    if not trained:
        return None
    held_out = cohort_preprocessing(holdout_images)
    for image, settings in held_out.items():
        if not any(_differing(settings, other, SETTINGS_REFUSED) == [] for other in trained.values()):
            raise ValueError(_refusal(source, image, settings, trained))
    for image, settings in held_out.items():
        if not any(_differing(settings, other, SETTINGS_WARNED) == [] for other in trained.values()):
            train_image, other = next(iter(trained.items()))
            keys = _differing(settings, other, SETTINGS_WARNED)
            return (f"{source}: its scans were preprocessed with {_described(settings, keys)} (e.g. {image}), the "
                    f"training scans with {_described(other, keys)} (e.g. {train_image}); the same normalisation, "
                    "brain mask, registration and template, so they are scored, but the figures may differ by it")
    return None


def _template_identity(template: dict[str, Any], given: str | None) -> str:
    """A template by the first digits of its file's (and its mask's) SHA-256, not its path: one file moved or spelled
    otherwise is the same template, and two of one name are not. nilearn's (`given` None) brings its own mask."""
    identity = f"sha256 {str(template.get('sha256'))[:12]}"
    if template.get("mask_sha256"):
        identity += f", mask {str(template['mask_sha256'])[:12]}"
    return identity + (" (nilearn MNI152 2009)" if given is None else "")


def _differing(settings: dict[str, Any], other: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [key for key in keys if settings[key] != other[key]]


def _described(settings: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{key} {settings[key]!r}" for key in keys)


def _refusal(source: str, image: str, settings: dict[str, Any], trained: dict[str, dict[str, Any]]) -> str:
    """One line: the holdout scan's settings and the training scans', where they differ, and how to go on."""
    train_image, other = next(iter(trained.items()))
    keys = _differing(settings, other, SETTINGS_REFUSED)
    return (f"{source}: its scans were preprocessed with {_described(settings, keys)} (e.g. {image}), the run's "
            f"training scans with {_described(other, keys)} (e.g. {train_image}), so the network would score inputs "
            "it never saw; preprocess the holdout again with the training scans' settings (their sidecars' params) "
            "into another --output and pass its manifest")
