"""load_array_pickle reads the numeric arrays CIFAR's python batches and CIFAR-N's labels hold, under the names
NumPy 1 (the releases) and NumPy 2 give NumPy's array rebuilder."""

import io
import pickle

import numpy as np
import pytest
import torch

from elr_mri.data.array_pickles import load_array_pickle

ARRAYS = {
    "bool": np.array([True, False]),
    "uint8": np.array([0, 255], dtype=np.uint8),
    "int64": np.array([-(2**40), 7]),
    "float16": np.array([0.5, -2], dtype=np.float16),
    "complex128": np.array([1 + 2j, -3j]),
}


@pytest.mark.parametrize("core", ["core", "_core"])
def test_numeric_arrays_load_under_numpy_1s_and_numpy_2s_module_names(core):
    """Protocol 2 (CIFAR's batches) names the rebuilder in a text line: NumPy 1 wrote numpy.core.multiarray, NumPy 2
    writes numpy._core.multiarray. Booleans, integers, floats and complex numbers are all numeric arrays."""
    pickled = pickle.dumps(ARRAYS, protocol=2)
    assert b"numpy._core.multiarray\n_reconstruct\n" in pickled
    renamed = pickled.replace(b"numpy._core.multiarray\n", f"numpy.{core}.multiarray\n".encode())
    loaded = load_array_pickle(io.BytesIO(renamed), encoding="latin1")
    assert list(loaded) == list(ARRAYS)
    for name, array in ARRAYS.items():
        assert loaded[name].dtype == array.dtype
        assert np.array_equal(loaded[name], array)


def test_a_label_pt_holding_arrays_of_every_numeric_kind_loads(tmp_path):
    """torch's weights-only loader also needs the class of each dtype it rebuilds, which a protocol-2 pickle never
    names: booleans, integers, floats and complex numbers must all be there beside the labels."""
    from elr_mri.data.noise import load_human_labels

    torch.save({"worse_label": np.array([1, 0, 2]), **ARRAYS}, tmp_path / "human.pt")
    assert load_human_labels(tmp_path / "human.pt", "worse_label").tolist() == [1, 0, 2]
