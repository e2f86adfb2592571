"""Which scans of a preprocessed batch QC flags for a person to look at, and why (`qc_reason`).

A scan is flagged when its registration's NCC is below the limit (well below 0: a contrast other than T1's) or far
below the batch's, its head overlaps the template's too little, its field of view missed part of the template's brain,
its input was too coarse to give more than a blurred scan, or it holds the same image (file or voxels) as another id's
input.
Flagged scans stay in the manifest: `batch.flagged_report` lists them when a run or merge ends.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["ACTIONS", "with_qc_flags", "qc_reasons", "cut_off_brains", "coarse_inputs", "repeated_images",
           "actions_for"]

# a scan whose voxels are coarser than this along any axis (a clinical T1 of 5 mm slices) registers well enough to pass
# the NCC check (0.52-0.54 measured for 10 mm voxels) while the output is only that scan blurred onto the grid
MAX_INPUT_VOXEL_MM = 3.0
# Head foregrounds of a registered scan and the template overlap by 0.73-0.88 (Dice; simulated cohort at 2 mm,
# Colin27 0.75 at 2 mm and 0.88 at 1.5 mm);
# far below is a head off the grid or an image whose background outshines it, which NCC inside the brain can miss.
MIN_HEAD_DICE = 0.5
# NCC this far below 0 is not a registration that missed (gross misplacements measured 0.07-0.30, Colin27 at 3 mm)
# but a contrast the reverse of the template's: intensity-inverted Colin27, a T2 look-alike, registered well (MI 0.49
# against a T1's 0.55) and measured -0.25
ANTICORRELATED_NCC = -0.1
# Share of the template's brain a scan's field of view must reach: Colin27 reached 0.9986-1.0 whole (its grid ends at
# the brain) and 0.988 with the top 10% of its head cut off, which passed NCC (0.61) with the brain's top slices empty
MIN_BRAIN_COVERAGE = 0.99
# Floor of the batch's robust NCC spread, so an outlier lies at least 3.5 x 0.03 = 0.105 below the batch's median.
# Colin27 shifted off the 2 mm template lost 0.04-0.10 NCC at 3 mm and 0.11-0.19 at 5 mm (by axis; left-right most),
# and good scans of one batch lie up to 0.05 below its mean (demo: mean 0.78, lowest 0.73); a floor of 1e-3 flagged
# good scans 0.005-0.011 below a batch of near-identical ones.
MIN_NCC_SPREAD = 0.03

# What a person does about each kind of flag, by the words its `qc_reason` holds: "look at the QC image" was the one
# advice for all, where a duplicate's or a thick-sliced scan's image looks right
ACTIONS = (
    (("same image as",), "same image: one scan under several ids (a copy, or one image saved twice); keep the row of "
     "the participant it belongs to and drop the others"),
    (("anticorrelated",), "anticorrelated: not a T1 series; point `path` at the session's T1"),
    (("thick slices",), "thick slices: use the session's 3D T1 (1-1.5 mm voxels) if it has one; else drop the row, "
     "or keep a scan blurred along its slices"),
    (("head cut off",), "head cut off: that part of the brain is empty in the output; keep the scan only if what you "
     "study lies inside its field of view"),
    (("NCC", "head overlap"), "NCC or head overlap: look at the QC image: a brain off the red template outline was "
     "misregistered (drop the row, or fix the scan's header and run again); one on it is a false alarm"),
)


def with_qc_flags(manifest: pd.DataFrame, min_ncc: float) -> pd.DataFrame:
    """A copy of `manifest` with `qc_flag` and `qc_reason` (empty when not flagged) for every check a person should
    follow up, not only the batch's outliers (its name until 2026-12 was `flag_outliers`): NCC below `min_ncc`, head
    overlap below MIN_HEAD_DICE, or (10+ scans) NCC far below the batch's median: more than 3.5 robust standard
    deviations (1.4826 MAD, at least MIN_NCC_SPREAD); likewise where the scan's field of view missed part of the
    template's brain (`cut_off_brains`), its input is too coarse (`coarse_inputs`) or its image is listed under
    another id too (`repeated_images`). Flagged scans stay in the manifest."""
    manifest = manifest.copy()
    ncc = manifest["qc_ncc"].astype(float).to_numpy() if len(manifest) else np.zeros(0)
    dice = manifest["qc_mask_dice"].astype(float).to_numpy() if len(manifest) else np.zeros(0)
    reasons = ["; ".join(reason for reason in found if reason)
               for found in zip(qc_reasons(ncc, dice, min_ncc), cut_off_brains(manifest), coarse_inputs(manifest),
                                repeated_images(manifest))]
    manifest["qc_flag"] = [bool(reason) for reason in reasons]
    manifest["qc_reason"] = reasons
    return manifest[[c for c in manifest.columns if c != "status"] + ["status"]]  # status last


def qc_reasons(ncc: np.ndarray, dice: np.ndarray, min_ncc: float) -> list[str]:
    """Why each scan is flagged, '' when it is not: a person deciding what to do with it needs the figure
    and the limit it failed, not only a flag."""
    outlier_below = -np.inf
    if len(ncc) >= 10:
        median = float(np.median(ncc))
        spread = max(1.4826 * float(np.median(np.abs(ncc - median))), MIN_NCC_SPREAD)
        outlier_below = median - 3.5 * spread
    reasons = []
    for scan_ncc, scan_dice in zip(ncc, dice):
        found = []
        if scan_ncc < min(min_ncc, ANTICORRELATED_NCC):
            found.append(f"NCC {scan_ncc:.3f} < {min_ncc:g}, anticorrelated: not a T1 contrast (a T2 or FLAIR?)")
        elif scan_ncc < min_ncc:
            found.append(f"NCC {scan_ncc:.3f} < {min_ncc:g}")
        elif scan_ncc < outlier_below:
            found.append(f"NCC {scan_ncc:.3f} far below the batch's (outliers < {outlier_below:.3f})")
        if scan_dice < MIN_HEAD_DICE:
            found.append(f"head overlap {scan_dice:.3f} < {MIN_HEAD_DICE:g}")
        reasons.append("; ".join(found))
    return reasons


def cut_off_brains(manifest: pd.DataFrame) -> list[str]:
    """For each row, the share of the template's brain its scan's field of view missed where more than
    1 - MIN_BRAIN_COVERAGE ('' otherwise, and where the scan was finished before the column existed)."""
    return [f"brain {1 - share:.1%} outside the scan's field of view > {1 - MIN_BRAIN_COVERAGE:.0%} (head cut off?)"
            if share < MIN_BRAIN_COVERAGE else "" for share in _figures(manifest, "qc_brain_coverage")]


def coarse_inputs(manifest: pd.DataFrame) -> list[str]:
    """For each row, its input's coarsest voxel size where above MAX_INPUT_VOXEL_MM ('' otherwise, and where the
    manifest predates the column)."""
    return [f"input voxels up to {size:g} mm > {MAX_INPUT_VOXEL_MM:g} (thick slices: blurred along them)"
            if size > MAX_INPUT_VOXEL_MM else "" for size in _figures(manifest, "qc_input_voxel_mm")]


def _figures(manifest: pd.DataFrame, column: str) -> np.ndarray:
    """A QC column as floats, NaN (never flagged) where empty or where the manifest predates the column."""
    if column not in manifest.columns:
        return np.full(len(manifest), np.nan)
    return pd.to_numeric(manifest[column], errors="coerce").to_numpy(dtype=float)


def repeated_images(manifest: pd.DataFrame) -> list[str]:
    """For each row, the other ids whose scan holds the same image ('' when none): the same file bytes (`input_sha256`)
    or the same decoded voxels (`input_voxels_sha256`: one scan saved as .nii and as .nii.gz, or in another data type,
    whose files differ). Found here from the hashes the scans' sidecars hold anyway, not by hashing every input before
    the run (minutes for thousands of scans, in every shard); the input table already refuses one file listed twice.
    One image under two ids could sit in training and test at once."""
    twins: list[set[int]] = [set() for _ in range(len(manifest))]
    for column in ("input_sha256", "input_voxels_sha256"):
        for rows in _rows_sharing(manifest, column):
            for row in rows:
                twins[row].update(rows)
    others = [sorted(found - {row}) for row, found in enumerate(twins)]
    if not any(others):  # nor need a table of QC figures alone hold ids
        return [""] * len(others)
    ids = (manifest["participant_id"].astype(str) + "/" + manifest["session_id"].astype(str)).tolist()
    return [f"same image as {', '.join(ids[other] for other in found)}" if found else "" for found in others]


def _rows_sharing(manifest: pd.DataFrame, column: str) -> list[list[int]]:
    """The positions of the rows that hold one value of `column`, for each value held by more than one row. Empty
    values share nothing: a scan whose sidecar (or a shard whose manifest) predates the column has none."""
    if column not in manifest.columns:
        return []
    by_value: dict[str, list[int]] = {}
    for row, value in enumerate(manifest[column]):
        if isinstance(value, str) and value:
            by_value.setdefault(value, []).append(row)
    return [rows for rows in by_value.values() if len(rows) > 1]


def actions_for(reasons: list[str]) -> list[str]:
    """The advice (`ACTIONS`) for each kind of flag among `reasons`, in ACTIONS's order."""
    return [advice for words, advice in ACTIONS if any(word in reason for reason in reasons for word in words)]
