"""The preprocess stage runs on CPU boxes without the training stack: it must never import torch."""
import subprocess
import sys


def test_preprocess_never_imports_torch():
    code = ("import sys, preprocess.cli, preprocess.batch, preprocess.pipeline, preprocess.qc; "
            "bad = [m for m in ('torch', 'elr_mri') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
