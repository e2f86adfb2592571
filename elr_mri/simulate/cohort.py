"""Who is in the simulated cohort: diagnoses, ages, sexes, disease severity, head pose, noisy labels.

Planning is cheap and separate from rendering, so the whole ground truth is known before a single
voxel is drawn. Every subject's draws come from a generator seeded by (seed, subject index), so
results do not depend on the number of worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from elr_mri.simulate.acquisition import Pose, draw_pose
from elr_mri.simulate.disease import DIAGNOSES, draw_severity, region_changes

__all__ = ["SubjectSpec", "plan_cohort", "class_counts", "flip_labels", "raise_label_noise",
           "CLASS_FRACTIONS", "TRAIN_SITE",
           "HOLDOUT_SITE", "subject_rng"]

TRAIN_SITE, HOLDOUT_SITE = "adni_sim", "nacc_sim"
# ADNI-1 at baseline: 229 CN, 398 MCI, 192 AD.
CLASS_FRACTIONS = {"CN": 229 / 819, "MCI": 398 / 819, "AD": 192 / 819}
# Age mean and SD per class (the ADNI table of the seed talk), kept within AGE_RANGE.
AGE = {"CN": (77.0, 5.0), "MCI": (76.0, 7.0), "AD": (77.0, 7.0)}
AGE_RANGE = (55.0, 95.0)
MALE_FRACTION = {"CN": 0.52, "MCI": 0.64, "AD": 0.53}
# Where clinicians disagree: a flipped label moves to a neighbouring stage only.
NEIGHBOURS = {"CN": ("MCI",), "MCI": ("CN", "AD"), "AD": ("MCI",)}
SESSION = "ses-M00"
# Volume changes are clipped to disease.CHANGE_BOUNDS: at 2 a typical AD subject's entorhinal cortex (−70%)
# is already clipped to −60%; beyond it ever more subjects saturate and the scale stops scaling.
MAX_ATROPHY_SCALE = 2.0
# Independent random streams: cohort-level draws, per-subject parameters, per-subject images.
STREAM_COHORT, STREAM_SUBJECT, STREAM_IMAGE = 0, 1, 2


@dataclass(frozen=True)
class SubjectSpec:
    """Everything drawn about one subject before rendering; the scan's ground truth."""

    index: int
    participant_id: str
    session_id: str
    cohort: str
    true_diagnosis: str
    diagnosis: str
    age: float
    sex: str
    severity: float
    changes: dict[str, float]
    pose: Pose

    @property
    def relative_path(self) -> str:
        """Where the scan goes below the output folder (a BIDS-like tree per cohort)."""
        name = f"{self.participant_id}_{self.session_id}_T1w.nii.gz"
        return f"{self.cohort}/{self.participant_id}/{self.session_id}/anat/{name}"


def subject_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator of one subject's draws in one stream."""
    return np.random.default_rng([seed, stream, index])


def plan_cohort(n_train: int, n_holdout: int, label_noise: float, seed: int,
                atrophy_scale: float = 1.0) -> list[SubjectSpec]:
    """Subjects of the training site then the holdout site, with labels flipped at `label_noise`.

    `atrophy_scale` multiplies every subject's disease-related volume change (1: ADNI-like effect sizes).
    """
    if n_train < 0 or n_holdout < 0:
        raise ValueError("subject counts must be non-negative")
    if not 0.0 < atrophy_scale <= MAX_ATROPHY_SCALE:
        raise ValueError(f"--atrophy-scale {atrophy_scale:g}: the atrophy scale must be within "
                         f"(0, {MAX_ATROPHY_SCALE:g}] (1: ADNI-like effect sizes)")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"--label-noise {label_noise:g}: the share of flipped diagnoses must be within [0, 1]")
    cohort_rng = np.random.default_rng([seed, STREAM_COHORT])
    specs: list[SubjectSpec] = []
    for site, count in ((TRAIN_SITE, n_train), (HOLDOUT_SITE, n_holdout)):
        truth = [d for d, n in class_counts(count).items() for _ in range(n)]
        truth = [truth[i] for i in cohort_rng.permutation(count)]
        given = flip_labels(cohort_rng, truth, label_noise)
        prefix = site.split("_")[0].upper() + "SIM"
        for position, (true_dx, noisy_dx) in enumerate(zip(truth, given)):
            specs.append(_draw_subject(seed, len(specs), f"sub-{prefix}{position + 1:04d}", site, true_dx, noisy_dx,
                                       atrophy_scale))
    return specs


def class_counts(n: int) -> dict[str, int]:
    """Class sizes in ADNI's proportions that add up to n exactly (largest remainders)."""
    exact = {d: n * CLASS_FRACTIONS[d] for d in DIAGNOSES}
    counts = {d: int(np.floor(v)) for d, v in exact.items()}
    by_remainder = sorted(DIAGNOSES, key=lambda d: (counts[d] - exact[d], DIAGNOSES.index(d)))
    for d in by_remainder[: n - sum(counts.values())]:
        counts[d] += 1
    return counts


def flip_labels(rng: np.random.Generator, truth: list[str], rate: float) -> list[str]:
    """Flip round(rate·n) labels chosen at random to a neighbouring stage (MCI goes either way)."""
    given = list(truth)
    for i in rng.permutation(len(truth))[: int(round(rate * len(truth)))]:
        given[i] = _neighbour(rng, truth[i])
    return given


def raise_label_noise(rng: np.random.Generator, truth: list[str], given: list[str], rate: float) -> list[str]:
    """Flip more of the still-correct labels, by the same rule, until round(rate·n) of them are wrong.

    A noisier setting of a cohort already simulated and preprocessed, without drawing its scans again;
    labels that are already wrong stay as they are.
    """
    if len(truth) != len(given):
        raise ValueError(f"truth has {len(truth)} labels but given has {len(given)}")
    correct = [i for i, (t, g) in enumerate(zip(truth, given)) if t == g]
    wanted = int(round(rate * len(truth))) - (len(truth) - len(correct))
    if wanted < 0:
        raise ValueError(f"{len(truth) - len(correct)} of {len(truth)} labels are already wrong, more than "
                         f"rate {rate}; raise_label_noise only adds flips, pass a rate of at least "
                         f"{(len(truth) - len(correct)) / len(truth):.3f}")
    raised = list(given)
    for i in rng.permutation(correct)[:wanted]:
        raised[i] = _neighbour(rng, truth[i])
    return raised


def _neighbour(rng: np.random.Generator, diagnosis: str) -> str:
    options = NEIGHBOURS[diagnosis]
    return options[int(rng.integers(len(options)))]


def _draw_subject(seed: int, index: int, participant_id: str, site: str, true_dx: str, noisy_dx: str,
                  atrophy_scale: float) -> SubjectSpec:
    rng = subject_rng(seed, STREAM_SUBJECT, index)
    mean, sd = AGE[true_dx]
    age = round(float(np.clip(rng.normal(mean, sd), *AGE_RANGE)), 1)
    sex = "M" if rng.random() < MALE_FRACTION[true_dx] else "F"
    severity = draw_severity(rng, true_dx)
    changes = region_changes(rng, severity, age, atrophy_scale)
    return SubjectSpec(index=index, participant_id=participant_id, session_id=SESSION, cohort=site,
                       true_diagnosis=true_dx, diagnosis=noisy_dx, age=age, sex=sex, severity=round(severity, 4),
                       changes=changes, pose=draw_pose(rng))
