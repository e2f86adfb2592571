"""Pickles of NumPy arrays read without running code they might hold.

CIFAR's python batches and CIFAR-N's `.pt` labels are pickles that researchers pass around, and a pickle names the
functions its loading calls: `os.system` as readily as NumPy's array rebuilder. Only what numeric arrays need is let
through, under the names NumPy 1 (the releases) and NumPy 2 (files saved since) give it.
"""

from __future__ import annotations

import codecs
import pickle
from typing import IO, Any

import numpy as np

__all__ = ["numpy_array_globals", "load_array_pickle"]


def numpy_array_globals() -> dict[str, Any]:
    """What pickled numeric NumPy arrays name, by qualified name: the rebuilders (protocol 5's too), the array and
    dtype classes, and the codec protocol 2 writes bytes with."""
    rebuild = np.zeros(0).__reduce__()[0]  # numpy's _reconstruct, got without importing numpy.core (deprecated)
    from_buffer = np.zeros(1).__reduce_ex__(5)[0]
    numeric = {type(np.dtype(code)) for code in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]}
    named: dict[str, Any] = {"_codecs.encode": codecs.encode}
    for core in ("core", "_core"):
        named[f"numpy.{core}.multiarray._reconstruct"] = rebuild
        named[f"numpy.{core}.numeric._frombuffer"] = from_buffer
    kinds: tuple[type, ...] = (np.ndarray, np.dtype, *numeric)
    named.update({f"{kind.__module__}.{kind.__name__}": kind for kind in kinds})
    return named


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds plain values and numeric arrays, and refuses any other function or class."""

    allowed = numpy_array_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get(f"{module}.{name}")
        if found is None:
            raise pickle.UnpicklingError(f"it holds {module}.{name}, which only running code from the file could "
                                         "make, so it was not loaded")
        return found


def load_array_pickle(handle: IO[bytes], encoding: str = "ASCII") -> Any:
    """`pickle.load(handle, encoding=encoding)` of plain values and numeric arrays; anything else is an
    `UnpicklingError` naming it, its code not run."""
    return _ArraysOnly(handle, encoding=encoding).load()
