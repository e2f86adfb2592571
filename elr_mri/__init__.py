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

from __future__ import annotations

import importlib.util
from pathlib import Path

__version__ = "0.1.0"


def _own_preprocess_found() -> None:
    """elr-mri's modules import its `preprocess` package, installed beside `elr_mri` under that plain name; a
    preprocess.py of the user's own in the folder Python starts in (a notebook's, `python -c`) came first on sys.path,
    and `import elr_mri.losses` failed on "No module named 'preprocess.signals'; 'preprocess' is not a package".
    Looking it up imports nothing."""
    own = Path(__file__).resolve().parents[1] / "preprocess" / "__init__.py"
    found = importlib.util.find_spec("preprocess")
    if found is not None and found.origin and own.is_file() and Path(found.origin).resolve() != own:
        raise ImportError(f"elr_mri: `import preprocess` finds {found.origin}, which hides elr-mri's own package of "
                          f"that name ({own.parent}); rename yours, or start Python in another folder")


_own_preprocess_found()
