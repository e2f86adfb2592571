"""Image sources as released (`elr_mri.data.image_sources`): what a folder, a pickle or a list holds, and the one line
said where it holds something else."""

import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from elr_mri.data.image_sources import load_source
from test_image_data import write_cifar10, write_clothing1m, write_image_folder, write_mini_webvision


def test_an_image_folders_split_is_in_original_index_order_whatever_the_class(tmp_path):
    """Numbered files are their original indices (the CIFAR-10 JPEGs' position in the training order): the split is
    read in that order, not class by class. Each image's grey level is its index here."""
    truth = write_image_folder(tmp_path, ["a", "b", "c", "d"], per_class=3)
    train = load_source("imagefolder", tmp_path).train
    assert train.ids.tolist() == list(range(12))
    assert train.images[:, 0, 0, 0].tolist() == list(range(12))
    assert train.labels.tolist() == [truth[index] for index in range(12)]


def test_an_upper_case_suffix_is_an_image_and_a_macs_archive_folder_no_class(tmp_path):
    """A camera's IMG.JPG is an image as much as img.jpg; __MACOSX (a Mac's zip) mirrors the class folders with
    AppleDouble files and is no class: a class no image carries would be refused."""
    write_image_folder(tmp_path, ["a", "b"], per_class=2)
    Image.new("RGB", (12, 10), (9, 9, 9)).save(tmp_path / "train" / "b" / "00009.PNG")
    (tmp_path / "train" / "__MACOSX" / "a").mkdir(parents=True)
    (tmp_path / "train" / "__MACOSX" / "a" / "._00000.png").write_bytes(b"\x00\x05\x16\x07")
    source = load_source("imagefolder", tmp_path)
    assert source.class_names == ["a", "b"]
    assert source.train.ids.tolist() == [0, 1, 2, 3, 9]


def test_a_cifar_batch_of_no_labels_in_a_wrong_shape_is_one_line_naming_it(tmp_path):
    """Labels of shape (1, 0) hold no number to range-check: the batch is refused by its shape, not by NumPy's
    error at the minimum of nothing."""
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({"data": np.zeros((0, 3072), dtype=np.uint8), "labels": [[]]}))
    with pytest.raises(ValueError, match=rf"^{batch}: not a CIFAR batch of 10 classes \(labels of shape \(1, 0\), none; "
                                         r"0 pixel values\); extract cifar-10-python.tar.gz again"):
        load_source("cifar10", tmp_path)


def test_a_cifar_root_named_as_the_folder_it_holds_is_read(tmp_path):
    """Extracted into a folder named cifar-10-batches-py, the release is one level down: that data.root holds it and
    is read; only a root that is the batches folder itself is sent one level up."""
    root = tmp_path / "cifar-10-batches-py"
    pixels = write_cifar10(root)
    assert np.array_equal(load_source("cifar10", root).train.images, pixels)


def test_a_listed_clothing1m_image_that_is_a_folder_is_not_there(tmp_path):
    """A folder where an image is listed was counted as found, and stopped the run when an epoch decoded it."""
    write_clothing1m(tmp_path)
    (tmp_path / "images" / "0" / "3.jpg").unlink()
    (tmp_path / "images" / "0" / "3.jpg").mkdir()
    with pytest.raises(FileNotFoundError, match=r"noisy_train_key_list.txt: 1 of 8 listed images are not in .*, e\.g\. "
                                                r"images/0/3\.jpg; extract the whole release there, or remove them"):
        load_source("clothing1m", tmp_path)


def test_mini_webvisions_class_names_need_50_synsets_and_a_nameless_one_is_its_wordnet_id(tmp_path):
    """Class k is named by synsets.txt's line k (`n01440764 tench, Tinca tinca` → tench), or its WordNet ID where the
    line names nothing before its first comma; 49 lines cannot name 50 classes."""
    write_mini_webvision(tmp_path)
    shutil.rmtree(tmp_path / "imagenet")
    synsets = tmp_path / "info" / "synsets.txt"
    lines = synsets.read_text().splitlines()
    lines[1] = "n01443537 , Carassius auratus"
    synsets.write_text("\n".join(lines) + "\n")
    assert load_source("webvision", tmp_path).class_names[:3] == ["tench", "n01443537", "thing2"]
    synsets.write_text("\n".join(lines[:49]) + "\n")
    with pytest.raises(ValueError, match=rf"^{synsets}: 49 synsets, mini WebVision needs the first 50$"):
        load_source("webvision", tmp_path)
