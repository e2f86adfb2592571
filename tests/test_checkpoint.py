"""What a checkpoint keeps of the process: nested states copied off the live tensors, and the generators."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from elr_mri.engine.checkpoint import CheckpointError, capture_rng, host_copy, load_checkpoint, restore_rng
from elr_mri.tensor_files import atomic_save, unsafe_objects


def test_a_host_copy_keeps_the_states_nesting_and_not_the_live_tensors() -> None:
    """The best epoch's weights wait in host memory while training goes on: on a CPU, where the tensors are there
    already, a view would take the next steps' changes into best.pt."""
    weight = torch.zeros(3)
    state = {"net": {"weight": weight}, "betas": (0.9, 0.999), "groups": [{"params": [0, 1]}], "pair": (weight,)}
    copied = host_copy(state)
    weight.add_(1.0)  # the next training step, in place
    assert torch.equal(copied["net"]["weight"], torch.zeros(3)) and torch.equal(copied["pair"][0], torch.zeros(3))
    assert type(copied["betas"]) is tuple and type(copied["pair"]) is tuple and type(copied["groups"]) is list
    assert copied["betas"] == (0.9, 0.999) and copied["groups"] == [{"params": [0, 1]}]


def test_numpys_generator_comes_back_with_the_normal_draw_it_holds_in_reserve() -> None:
    """NumPy's legacy generator draws normals in pairs and keeps the second for the next call: a restored state
    without it would draw another number there."""
    np.random.seed(0)
    np.random.standard_normal()  # the pair's second is now held back
    saved = capture_rng(cuda=False)
    expected = np.random.standard_normal(3)
    np.random.standard_normal(5)
    restore_rng(saved)
    assert np.array_equal(np.random.standard_normal(3), expected)


def test_a_bit_flipped_past_the_first_kilobytes_of_a_large_weight_is_refused(tmp_path: Path) -> None:
    """zipfile compares a record's CRC-32 once it has read the record to its end: a network's weights run to
    megabytes, and a check that read only their start passed a damaged tail."""
    path = tmp_path / "last.pt"
    atomic_save({"method": {"weight": torch.full((1 << 18,), 1.5)}, "epoch": 3}, path)  # 1 MiB of float32
    data = bytearray(path.read_bytes())
    at = data.rfind(struct.pack("<f", 1.5) * 1024)
    assert at > 0
    data[at + 4000] ^= 0x01  # a weight near the end of the record
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="Bad CRC-32"):
        load_checkpoint(path)


def test_a_file_holding_many_objects_names_the_first_three_in_order(tmp_path: Path) -> None:
    """The line stays one line: three of the objects, alphabetically (the same names for the same file), not all."""
    path = tmp_path / "shared.pt"
    torch.save({"d": os.rmdir, "c": os.mkdir, "b": os.listdir, "a": os.getcwd}, path)
    with pytest.raises(pickle.UnpicklingError) as refused:
        torch.load(path, weights_only=True)
    module = os.mkdir.__module__
    assert unsafe_objects(path, refused.value) == f"{module}.getcwd, {module}.listdir, {module}.mkdir"
