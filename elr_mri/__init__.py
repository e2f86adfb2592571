"""elr-mri: Early-Learning Regularization for classifiers trained on noisy labels (MRI and images).

Importing the package loads nothing more (no torch). From Python, for a notebook (README, "A trained run from
Python", shows them at work):

- `elr_mri.losses`: `ELRLoss`, `ELRPlusLoss`, `CrossEntropy`, `GCELoss`, `SCELoss`, for a training loop of your own;
- `elr_mri.models.widened_cnn`: `WidenedCNN3D`, the 3D CNN of the MRI runs;
- `elr_mri.config`: `load_config`, and `elr_mri.engine.start`: `train`, as `elr-mri train` calls them;
- `elr_mri.evaluation.evaluate`: `load_run`, `evaluation_set`, `predict`, `evaluate_run`, for a trained run's folder;
- `elr_mri.data.mri`: `mri_transforms`, a preprocessed scan read as the network reads it;
- `elr_mri.mislabels`: `suspected_mislabels`, the table of `suspected_mislabels.csv` from any target table.
"""

__version__ = "0.1.0"
