"""elr-mri: Early-Learning Regularization for classifiers trained on noisy labels (MRI and images)."""

__version__ = "0.1.0"
