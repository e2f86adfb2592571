"""A simulated Alzheimer's cohort with known ground truth, so the pipeline runs without ADNI or NACC.

Real anatomy (the MNI152 2009 template nilearn ships, or the Colin27 head) is deformed per subject
(head shape, age, graded atrophy of hippocampi and entorhinal cortex, ventricular enlargement), posed
in a scanner and acquired with a site's bias field, noise and intensity scale. Diagnoses at both sites
are moved to a neighbouring stage, where clinicians disagree (CN-MCI, MCI-AD), for subjects drawn at random
whatever their severity. No torch here: it is a data generator.
"""

from elr_mri.simulate.cli import main, simulate_cohort

__all__ = ["main", "simulate_cohort"]
