"""Whether a holdout cohort was preprocessed as the training cohort was, from the sidecars `elr-mri preprocess`
writes beside each scan.

The voxel grid and where it lies are compared from the headers (`grid.py`); a grid cannot show the intensity
normalisation, the brain mask, the registration or the template. A holdout preprocessed months later with
`--normalise zscore` or `--brain-mask` sits on the training grid and was scored without a word, its figures those
of a network fed inputs it never saw; those settings are refused, unless `data.mri.allow_other_preprocessing` lets
them through for a study of that very shift (then warned of, in summary.json too). Settings that leave the inputs nearly alike (a
later pipeline version, the registration profile, int16 storage) are said in a warning. Holdout scans without a
sidecar (preprocessed elsewhere) are not compared, with a warning.

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
            "template_content": _template_content(template, params.get("template")),
            "pipeline_version": sidecar.get("pipeline_version"), "profile": params.get("profile"),
            "dtype": params.get("dtype")}


def cohort_preprocessing(images: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The distinct settings among a cohort's scans, each keyed by the path of the first scan made so; scans without a
    sidecar are left out (empty: none has one)."""
    return _distinct({str(image): preprocessing_settings(str(image)) for image in images})


def compare_preprocessing(trained: dict[str, dict[str, Any]], holdout_images: Iterable[str], source: str,
                          allow: bool = False) -> list[str]:
    """Refuse holdout scans preprocessed with other `SETTINGS_REFUSED` than every training scan (`trained`, as
    `cohort_preprocessing` gives them), naming both, or with `allow` return that as a warning; return warnings of scans
    that differ only in `SETTINGS_WARNED` and of scans without a sidecar, whose preprocessing cannot be compared."""
    if not trained:
        return []
    by_scan = {str(image): preprocessing_settings(str(image)) for image in holdout_images}
    held_out = _distinct(by_scan)
    unlike = next(((image, settings) for image, settings in held_out.items()
                   if not any(_differing(settings, other, SETTINGS_REFUSED) == [] for other in trained.values())), None)
    if unlike is not None and not allow:
        raise ValueError(_refusal(source, *unlike, trained))
    warnings = [_unrecorded_warning(source, by_scan)]
    if unlike is not None:  # let through: its warning names every setting that differs, so no other is needed
        return [warning for warning in (_allowed_warning(source, *unlike, trained), *warnings) if warning]
    for image, settings in held_out.items():
        if not any(_differing(settings, other, SETTINGS_WARNED) == [] for other in trained.values()):
            train_image, other = next(iter(trained.items()))
            keys = _differing(settings, other, SETTINGS_WARNED)
            warnings.append(f"{source}: its scans were preprocessed with {_described(settings, keys)} (e.g. {image}), "
                            f"the training scans with {_described(other, keys)} (e.g. {train_image}); the same "
                            "normalisation, brain mask, registration and template, so they are scored, but the figures "
                            "may differ by it")
            break
    return [warning for warning in warnings if warning]


def _distinct(by_scan: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    distinct: dict[str, dict[str, Any]] = {}
    for image, settings in by_scan.items():
        if settings is not None and settings not in distinct.values():
            distinct[image] = settings
    return distinct


def _unrecorded_warning(source: str, by_scan: dict[str, dict[str, Any] | None]) -> str:
    """Holdout scans made by another pipeline (Clinica's t1-linear writes the 1 mm MNI grid preprocess does) pass the
    grid check; nothing says whether they were normalised and masked as the training scans were."""
    unrecorded = [image for image, settings in by_scan.items() if settings is None]
    if not unrecorded:
        return ""
    return (f"{source}: {len(unrecorded)} of {len(by_scan)} scans have no `elr-mri preprocess` sidecar (e.g. "
            f"{unrecorded[0]}), so their normalisation, brain mask, registration and template are not compared with "
            "the training scans': make sure they were made alike, or preprocess them with `elr-mri preprocess`")


def _template_identity(template: dict[str, Any], given: str | None) -> str:
    """A template by the first digits of its file's (and its mask's) SHA-256, not its path: one file moved or spelled
    otherwise is the same template, and two of one name are not. nilearn's (`given` None) brings its own mask."""
    identity = f"sha256 {str(template.get('sha256'))[:12]}"
    if template.get("mask_sha256"):
        identity += f", mask {str(template['mask_sha256'])[:12]}"
    return identity + (" (nilearn MNI152 2009)" if given is None else "")


def _template_content(template: dict[str, Any], given: str | None) -> str | None:
    """A template by its image's (and its mask's) content digest, which sidecars record since 2026-12-07 (None before):
    a template re-saved (by nibabel, recompressed, as .nii) has another file digest but the same image."""
    if not template.get("content_sha256"):
        return None
    identity = f"content {str(template['content_sha256'])[:12]}"
    if template.get("mask_content_sha256"):
        identity += f", mask content {str(template['mask_content_sha256'])[:12]}"
    return identity + (" (nilearn MNI152 2009)" if given is None else "")


def _differing(settings: dict[str, Any], other: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [key for key in keys if not _alike(settings, other, key)]


def _alike(settings: dict[str, Any], other: dict[str, Any], key: str) -> bool:
    """One setting of two scans alike; the template by its image's content where both record it (runs and sidecars
    from before 2026-12-07 have the file's digest alone)."""
    if key == "template" and settings.get("template_content") and other.get("template_content"):
        return settings["template_content"] == other["template_content"]
    return settings[key] == other[key]


def _described(settings: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{key} {settings[key]!r}" for key in keys)


def _difference(source: str, image: str, settings: dict[str, Any], trained: dict[str, dict[str, Any]],
                keys: tuple[str, ...]) -> str:
    """The holdout scan's settings among `keys` and the training scans', where they differ, naming a scan of each."""
    train_image, other = next(iter(trained.items()))
    differing = _differing(settings, other, keys)
    return (f"{source}: its scans were preprocessed with {_described(settings, differing)} (e.g. {image}), the run's "
            f"training scans with {_described(other, differing)} (e.g. {train_image})")


def _refusal(source: str, image: str, settings: dict[str, Any], trained: dict[str, dict[str, Any]]) -> str:
    """One line: how the holdout was made otherwise, and the two ways on."""
    return (_difference(source, image, settings, trained, SETTINGS_REFUSED) + ", so the network would score inputs "
            "it never saw; preprocess the holdout again with the training scans' settings (their sidecars' params) "
            "into another --output and pass its manifest, or, to measure that shift, set "
            "data.mri.allow_other_preprocessing: true (for `elr-mri evaluate` or `explain`: in the run's config.yaml)")


def _allowed_warning(source: str, image: str, settings: dict[str, Any], trained: dict[str, dict[str, Any]]) -> str:
    """What the override let through, kept in summary.json: without it the scores read as a like-for-like holdout's."""
    return (_difference(source, image, settings, trained, SETTINGS_REFUSED + SETTINGS_WARNED) + "; scored all the "
            "same (data.mri.allow_other_preprocessing), so the figures measure that shift as well as the network")
