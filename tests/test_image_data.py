"""Image benchmarks: the NoisyImageData contract on digits, tiny CIFAR / ImageFolder / Clothing1M / WebVision trees."""

import os
import pickle
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader

from elr_mri.config import DataConfig, NoiseConfig, RunConfig
from elr_mri.data import image_sources
from elr_mri.data.image_sources import ImageReadError, load_source
from elr_mri.data.image_transforms import CenterCrop, RandomCrop, RandomHorizontalFlip, load_resized
from elr_mri.data.images import NORMALISATION, build_image_data
from elr_mri.data.seeded_items import SeededItems
from elr_mri.engine.selection import selection_rule
from elr_mri.engine.start import train
from preprocess.cores import usable_cores

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar"


def true_digit_labels() -> dict[bytes, set[int]]:
    """Every sklearn digit image (as bytes of the [0, 1] float32 array) → its true label(s)."""
    bunch = load_digits()
    lookup: dict[bytes, set[int]] = {}
    for image, label in zip((bunch.images / 16.0).astype(np.float32), bunch.target):
        lookup.setdefault(image[None].tobytes(), set()).add(int(label))
    return lookup


@pytest.fixture(scope="module")
def digits_sym40():
    return build_image_data(DataConfig(name="digits", noise=NoiseConfig(mode="symmetric", rate=0.4, seed=1)))


def test_digits_contract(digits_sym40):
    data = digits_sym40
    assert (data.num_classes, data.input_shape, data.class_names[:3]) == (10, (1, 8, 8), ["0", "1", "2"])
    assert (len(data.test), len(data.val), len(data.train)) == (539, 126, 1132)  # 30% test, 10% of the rest
    assert data.train_labels.shape == data.train_clean_labels.shape == (1132,)
    for position in (0, 500, len(data.train) - 1):
        item = data.train[position]
        assert item["index"] == position and isinstance(item["label"], int)
        assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 8, 8)
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    # 40% redrawn over all classes changes about 36%
    assert abs((data.train_labels != data.train_clean_labels).mean() - 0.36) < 0.05


def test_a_spawned_dataloader_worker_reads_the_same_items(digits_sym40):
    """macOS and Windows start DataLoader workers by spawning, as Linux does from Python 3.14 (forkserver): the data
    set is pickled to them, and the torch.Generator it held killed every worker as it unpickled."""
    seeded = SeededItems(digits_sym40.train, epoch_seed=7)
    loader = DataLoader(seeded, batch_size=4, num_workers=1, multiprocessing_context="spawn")
    batch = next(iter(loader))
    assert torch.equal(batch["image"], torch.stack([seeded[i]["image"] for i in range(4)]))
    assert batch["index"].tolist() == [0, 1, 2, 3]


def test_digits_labels_line_up_with_images(digits_sym40):
    data, truth = digits_sym40, true_digit_labels()

    def true_label(item: dict) -> int | None:  # None for the rare image drawn with two labels
        labels = truth[item["image"].numpy().tobytes()]
        return next(iter(labels)) if len(labels) == 1 else None

    train = [data.train[i] for i in range(len(data.train))]
    assert all(item["label"] == data.train_labels[item["index"]] for item in train)
    known = [(true_label(item), data.train_clean_labels[item["index"]]) for item in train]
    assert all(t == c for t, c in known if t is not None)
    val_wrong = [true_label(item) != item["label"] for item in (data.val[i] for i in range(len(data.val)))]
    assert 0.2 < np.mean(val_wrong) < 0.5  # the validation split carries the same noise
    assert all(true_label(data.test[i]) in (data.test[i]["label"], None) for i in range(len(data.test)))


def test_digits_deterministic_and_split_seed_moves_only_the_split(digits_sym40):
    again = build_image_data(DataConfig(name="digits", noise=NoiseConfig(mode="symmetric", rate=0.4, seed=1)))
    assert np.array_equal(again.train_labels, digits_sym40.train_labels)
    assert torch.equal(again.val[3]["image"], digits_sym40.val[3]["image"])
    other = build_image_data(
        DataConfig(name="digits", split_seed=5, noise=NoiseConfig(mode="symmetric", rate=0.4, seed=1))
    )
    assert torch.equal(other.test[0]["image"], digits_sym40.test[0]["image"])  # the test hold-out is fixed
    assert not np.array_equal(other.train_clean_labels, digits_sym40.train_clean_labels)


def test_validation_split_is_stratified_by_true_class_and_the_same_whatever_the_noise(digits_sym40):
    everything = build_image_data(DataConfig(name="digits", val_fraction=0.0)).train_clean_labels
    kept = np.bincount(digits_sym40.train_clean_labels, minlength=10)
    assert np.all(np.abs(kept - 0.9 * np.bincount(everything, minlength=10)) <= 1)
    other_noise = build_image_data(DataConfig(name="digits", noise=NoiseConfig(mode="symmetric", rate=0.8, seed=9)))
    assert torch.equal(other_noise.val.images, digits_sym40.val.images)  # one hold-out for every noise setting
    assert not np.array_equal(other_noise.train_labels, digits_sym40.train_labels)


def test_subset_is_stratified_and_exact():
    data = build_image_data(DataConfig(name="digits", train_subset=300, test_subset=100, val_fraction=0.0))
    assert data.val is None and len(data.train) == 300 and len(data.test) == 100
    assert np.all(np.abs(np.bincount(data.train_clean_labels) - 30) <= 1)
    with pytest.raises(ValueError, match=r"data.train_subset = 5000 must lie in \[1, 1258\]"):
        build_image_data(DataConfig(name="digits", train_subset=5000))


def write_cifar10(root: Path, per_batch: int = 20) -> np.ndarray:
    """A CIFAR-10 python folder with random pixels; returns the training images as (N, 3, 32, 32)."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    images = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(1, 256, size=(per_batch, 3072), dtype=np.uint8)  # 0 only from padding
        labels = [i % 10 for i in range(per_batch)]
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": labels}, handle)
        images.append(data)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": names}, handle)
    return np.concatenate(images[:5]).reshape(-1, 3, 32, 32)


def test_cifar10_python_folder(tmp_path):
    pixels = write_cifar10(tmp_path)
    data = build_image_data(
        DataConfig(name="cifar10", root=str(tmp_path), val_fraction=0.0,
                   noise=NoiseConfig(mode="asymmetric_cifar10", rate=0.4))
    )
    assert (len(data.train), len(data.test), data.input_shape) == (100, 20, (3, 32, 32))
    assert data.class_names[3] == "cat" and data.train_clean_labels[:11].tolist() == [*range(10), 0]
    cats = data.train_clean_labels == 3
    assert cats.sum() == 10 and (data.train_labels[cats] == 5).sum() == 4
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALISATION["cifar10"])
    plain = build_image_data(DataConfig(name="cifar10", root=str(tmp_path), val_fraction=0.0, augment=False))
    expected = (torch.from_numpy(pixels[7]).float() / 255 - mean) / std
    torch.testing.assert_close(plain.train[7]["image"], expected)
    augmented = torch.stack([data.train[7]["image"] for _ in range(20)])
    assert augmented.shape == (20, 3, 32, 32)
    assert sum(torch.equal(a, expected) for a in augmented) < 10  # shifted or flipped most of the time
    assert (augmented == -mean / std).flatten(1).any(1).sum() > 5  # zero padding shows at the borders


def test_noise_is_drawn_before_the_hold_out_so_training_and_validation_together_carry_the_exact_rate(tmp_path):
    """README (Training): the noise is drawn over the whole training set, then 10% is held out with its noisy labels, so
    a class-conditional mode flips exactly round(rate · n) of each source class over the two splits together (the
    official code draws it on each split after splitting, exact in each). At 25% of 20 a class that is 5; drawn on 18
    and 2 apart it would be round(4.5) + round(0.5) = 4 (the official code's ceilings: 6)."""
    pixels = write_cifar10(tmp_path, per_batch=40)  # 200 training images, 20 a class, each unique
    data = build_image_data(DataConfig(name="cifar10", root=str(tmp_path), split_seed=3,
                                       noise=NoiseConfig(mode="asymmetric_cifar10", rate=0.25, seed=5)))
    position = {image.tobytes(): i for i, image in enumerate(pixels)}
    val_clean = np.array([position[image.numpy().tobytes()] % 10 for image in data.val.images])  # labels are i % 10
    clean = np.concatenate([data.train_clean_labels, val_clean])
    noisy = np.concatenate([data.train_labels, data.val.labels])
    assert (len(data.train), len(data.val)) == (180, 20)
    for source, target in {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}.items():
        assert (noisy[clean == source] == target).sum() == 5, source
    assert np.array_equal(noisy[~np.isin(clean, [2, 3, 4, 5, 9])], clean[~np.isin(clean, [2, 3, 4, 5, 9])])


@pytest.mark.parametrize("damage", ["cut_short", "empty", "bytes_keys", "label_out_of_range", "text_labels",
                                    "nested_labels"])
def test_a_damaged_cifar_pickle_is_one_line_naming_it(tmp_path, damage):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    if damage == "cut_short":
        batch.write_bytes(batch.read_bytes()[:5000])
    elif damage == "empty":
        batch.write_bytes(b"")
    else:
        with open(batch, "rb") as handle:
            content = pickle.load(handle)
        if damage == "bytes_keys":  # re-pickled by a tool that kept Python 2's byte-string keys
            content = {key.encode(): value for key, value in content.items()}
        elif damage == "text_labels":
            content["labels"] = [str(label) + "a" for label in content["labels"]]
        elif damage == "nested_labels":
            content["labels"] = [content["labels"]]
        else:
            content["labels"][3] = 10
        with open(batch, "wb") as handle:
            pickle.dump(content, handle)
    with pytest.raises(ValueError, match=rf"^{batch}: (cannot be read as a CIFAR file|not a CIFAR batch) .*; "
                                         r"extract cifar-10-python.tar.gz again \(mkdir -p .* \| tar -xz -C .*\)$"):
        build_image_data(DataConfig(name="cifar10", root=str(tmp_path)))


def test_a_cifar_batch_is_read_without_running_code_it_holds(tmp_path, code_in_a_pickle):
    """pickle.load ran whatever a shared copy of a batch held. Arrays pickled as Python 2 did (protocol 2, the
    release) and as NumPy 2 does under protocol 5 still load; a batch holding anything else is one line naming it."""
    pixels = write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    for name, protocol in (("data_batch_1", 2), ("data_batch_3", 5)):
        with open(folder / name, "rb") as handle:
            content = pickle.load(handle)
        (folder / name).write_bytes(pickle.dumps(content, protocol=protocol))
    assert np.array_equal(load_source("cifar10", tmp_path).train.images, pixels)
    (code, ran), batch = code_in_a_pickle, folder / "data_batch_2"
    with open(batch, "rb") as handle:
        content = pickle.load(handle)
    batch.write_bytes(pickle.dumps({**content, "note": code}))
    with pytest.raises(ValueError, match=rf"^{batch}: cannot be read as a CIFAR file \(UnpicklingError: it holds "
                                         rf"{os.mkdir.__module__}\.mkdir, which only running code from the file could "
                                         r"make, so it was not loaded\); extract cifar-10-python.tar.gz again"):
        load_source("cifar10", tmp_path)
    assert not ran.exists()


def write_cifar100(root: Path) -> None:
    """torchvision's CIFAR-100 layout: 50 black training images, 10 test images, 100 class names."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, count in (("train", 50), ("test", 10)):
        data = np.zeros((count, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "fine_labels": [i % 100 for i in range(count)]}, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, handle)


def test_cifar100_python_folder(tmp_path):
    write_cifar100(tmp_path)
    data = build_image_data(DataConfig(name="cifar100", root=str(tmp_path), val_fraction=0.0, augment=False))
    assert data.num_classes == 100 and len(data.train) == 50 and data.class_names[42] == "c42"
    mean, std = NORMALISATION["cifar100"]
    assert data.test[0]["image"][0, 0, 0].item() == pytest.approx(-mean[0] / std[0], rel=1e-5)


def write_image_folder(root: Path, classes: list[str], per_class: int) -> dict[int, int]:
    """PNG images named by an integer original index, each filled with a grey level equal to that index."""
    truth = {}
    for c, name in enumerate(classes):
        for split in ("train", "test"):
            (root / split / name).mkdir(parents=True)
        for k in range(per_class):
            original = k * len(classes) + (c * 3) % len(classes)  # classes interleave in original order
            Image.new("RGB", (12, 10), (original,) * 3).save(root / "train" / name / f"{original:05d}.png")
            Image.new("RGB", (12, 10), (c,) * 3).save(root / "test" / name / f"{k}.png")
            truth[original] = c
    return truth


def test_image_folder_subset_and_human_labels_line_up(tmp_path):
    classes = ["apple", "bee", "cat", "dog"]
    truth = write_image_folder(tmp_path / "tree", classes, per_class=30)
    human = np.array([(i * 7 + 1) % 4 for i in range(len(truth))])
    clean = np.array([truth[i] for i in range(len(truth))])
    np.savez(tmp_path / "human.npz", clean_label=clean, worse_label=human)
    cfg = DataConfig(
        name="imagefolder", root=str(tmp_path / "tree"), train_subset=60, split_seed=3, augment=False,
        noise=NoiseConfig(mode="human", human_labels=str(tmp_path / "human.npz")),
    )
    data = build_image_data(cfg)
    assert data.class_names == classes and data.input_shape == (3, 10, 12)
    assert (len(data.train), len(data.val), len(data.test)) == (54, 6, 120)
    originals = data.train.images[:, 0, 0, 0].long().numpy()  # the grey level is the original index
    assert len(set(originals)) == 54
    assert np.array_equal(data.train_clean_labels, clean[originals])
    assert np.array_equal(data.train_labels, human[originals])
    for item in (data.val[i] for i in range(len(data.val))):
        original = int(data.val.images[item["index"], 0, 0, 0])
        assert item["label"] == human[original]
    assert all(int(data.test.images[i, 0, 0, 0]) == data.test[i]["label"] for i in range(len(data.test)))


def test_a_human_label_runs_mislabel_table_names_each_image_by_its_index_in_the_label_file(tmp_path):
    """configs/cifar10n/cpu_subset.yaml on a tree of four classes: a reviewer looks a flagged row up by its
    original_index, in the label file and as the image file of that number."""
    from elr_mri.config import load_config

    truth = write_image_folder(tmp_path / "tree", ["apple", "bee", "cat", "dog"], per_class=30)
    clean = np.array([truth[i] for i in range(len(truth))])
    worse = np.where(np.arange(len(clean)) % 3 == 0, (clean + 1) % 4, clean)  # a third wrong
    np.savez(tmp_path / "human.npz", clean_label=clean, worse_label=worse)
    config = Path(__file__).resolve().parents[1] / "configs/cifar10n/cpu_subset.yaml"
    settings = [f"data.root={tmp_path / 'tree'}", f"data.noise.human_labels={tmp_path / 'human.npz'}",
                "data.train_subset=80", "data.test_subset=40", "data.normalization=auto", "model.hidden=16",
                "train.epochs=3", "train.batch_size=16"]
    train(load_config(config, settings), tmp_path / "run")
    table = pd.read_csv(tmp_path / "run" / "suspected_mislabels.csv")
    assert len(table) > 0 and table["original_index"].is_unique
    originals = table["original_index"].to_numpy()
    assert np.array_equal(table["given_label"], worse[originals])
    names = ["apple", "bee", "cat", "dog"]
    assert all((tmp_path / "tree" / "train" / names[clean[i]] / f"{i:05d}.png").is_file() for i in originals)
    assert table["given_name"].tolist() == [names[k] for k in worse[originals]]


def test_a_human_label_file_without_the_key_is_said_before_any_image_is_decoded(tmp_path):
    """CIFAR-100N's file under a CIFAR-10 config was refused only after the 50,000 images decoded (44 s here)."""
    write_image_folder(tmp_path / "tree", ["a", "b"], per_class=5)
    (tmp_path / "tree" / "train" / "a" / "00000.png").write_bytes(b"not an image")  # decoding would fail on it
    np.savez(tmp_path / "human.npz", clean_label=np.zeros(10, dtype=np.int64), noisy_label=np.ones(10, dtype=np.int64))
    cfg = DataConfig(name="imagefolder", root=str(tmp_path / "tree"),
                     noise=NoiseConfig(mode="human", human_labels=str(tmp_path / "human.npz")))
    with pytest.raises(ValueError, match=r"human.npz: no labels named 'worse_label'; available: clean_label, "
                                         r"noisy_label \(set data.noise.human_key to one of them\)$"):
        build_image_data(cfg)


def test_human_labels_refuse_an_image_folder_lacking_images_the_file_labels(tmp_path):
    """An archive extracted in part (its last class folder cut short) trained CIFAR-10N on fewer images, that class
    underweighted, without a word: every image left lined up with its label, so the clean_label check passed."""
    classes = ["apple", "bee", "cat", "dog"]
    truth = write_image_folder(tmp_path / "tree", classes, per_class=30)
    clean = np.array([truth[i] for i in range(len(truth))])
    np.savez(tmp_path / "human.npz", clean_label=clean, worse_label=(clean + 1) % 4)
    lost = max(i for i, c in truth.items() if c == 3)
    (tmp_path / "tree" / "train" / "dog" / f"{lost:05d}.png").unlink()
    for subset in (None, 40):  # a subset is drawn from the whole folder, so its images are missing there too
        cfg = DataConfig(name="imagefolder", root=str(tmp_path / "tree"), train_subset=subset,
                         noise=NoiseConfig(mode="human", human_labels=str(tmp_path / "human.npz")))
        with pytest.raises(ValueError, match=rf"human.npz: labels 120 training images, but 1 of them are not in the "
                                             rf"data set \(e.g. original index {lost}; extracted in part\?\); extract "
                                             r"the data set again \(for fewer images set data.train_subset\)$"):
            build_image_data(cfg)
    Image.new("RGB", (12, 10), (lost,) * 3).save(tmp_path / "tree" / "train" / "dog" / f"{lost:05d}.png")
    Image.new("RGB", (12, 10)).save(tmp_path / "tree" / "train" / "dog" / "00120.png")  # one the file has no label for
    cfg = DataConfig(name="imagefolder", root=str(tmp_path / "tree"), train_subset=12,
                     noise=NoiseConfig(mode="human", human_labels=str(tmp_path / "human.npz")))
    with pytest.raises(ValueError, match=r"holds 120 labels but the data set has original index 120; the label file "
                                         r"does not belong to this data set, or an image folder's file names are not"):
        build_image_data(cfg)  # refused whether or not the subset drawn takes that image


def test_an_empty_class_folder_is_refused_and_a_macs_hidden_files_are_no_images(tmp_path):
    """An empty folder became a class no image carries, and symmetric noise handed it labels; ._x.png (the
    AppleDouble file a Mac's tar adds beside each image) failed as an unreadable image."""
    write_image_folder(tmp_path, ["a", "b"], per_class=5)
    (tmp_path / "train" / "a" / "._00000.png").write_bytes(b"\x00\x05\x16\x07")
    assert load_source("imagefolder", tmp_path).class_names == ["a", "b"]
    (tmp_path / "train" / "zebra").mkdir()
    (tmp_path / "train" / "zebra" / "Thumbs.db").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'train' / 'zebra'}: a class folder without images"):
        load_source("imagefolder", tmp_path)


def test_file_names_of_one_number_spelled_twice_are_not_taken_as_original_indices(tmp_path):
    write_image_folder(tmp_path, ["a", "b"], per_class=3)
    (tmp_path / "train" / "a" / "00000.png").rename(tmp_path / "train" / "a" / "0.png")
    Image.new("RGB", (12, 10), (9, 9, 9)).save(tmp_path / "train" / "b" / "000.png")  # index 0 again
    assert sorted(load_source("imagefolder", tmp_path).train.ids.tolist()) == list(range(7))  # positions, not 0 twice


def test_a_stray_file_among_numbered_images_is_said_to_turn_their_numbers_into_positions(tmp_path, capsys):
    """A copy `00001 (1).png` beside numbered images made every original index a position without a word: the
    mislabel table's original_index then named other files. Test folders numbered per class (CIFAR-10's test/) and
    folders named in words keep their positions quietly."""
    write_image_folder(tmp_path, ["a", "b"], per_class=3)
    assert sorted(load_source("imagefolder", tmp_path).train.ids.tolist()) == [0, 1, 2, 3, 4, 5]
    assert capsys.readouterr().err == ""
    stray = tmp_path / "train" / "a" / "00000 (1).png"
    stray.write_bytes((tmp_path / "train" / "a" / "00000.png").read_bytes())
    assert load_source("imagefolder", tmp_path).train.ids.tolist() == [0, 1, 2, 3, 4, 5, 6]  # positions
    assert capsys.readouterr().err == (f"note: {tmp_path / 'train'}: 1 of 7 image names are not numbers (e.g. {stray}), "
                                       "so each image's original index is its position in (class, file name) order, "
                                       "not its file number; rename or remove them to keep the numbers\n")
    for image in (tmp_path / "train").rglob("*.png"):
        image.rename(image.with_name(f"img{image.name}"))
    load_source("imagefolder", tmp_path)
    assert capsys.readouterr().err == ""


def test_image_folder_normalises_with_its_own_statistics_or_named_constants(tmp_path):
    write_image_folder(tmp_path, ["a", "b"], per_class=5)
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # not a class: it would shift every label by one
    named = build_image_data(DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.0,
                                        normalization="clothing1m"))
    assert named.class_names == ["a", "b"]
    mean, std = NORMALISATION["clothing1m"]
    assert named.test[0]["image"][0, 0, 0].item() == pytest.approx((0 - mean[0]) / std[0], rel=1e-5)
    data = build_image_data(DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.0))
    train = torch.stack([data.test[i]["image"] for i in range(len(data.test))])
    assert train.shape == (10, 3, 10, 12)
    grey = data.train.images.float() / 255
    mean, std = grey.mean().item(), grey.std(unbiased=False).item()
    assert data.test[0]["image"][0, 0, 0].item() == pytest.approx((0 - mean) / std, rel=1e-4)


def test_a_channel_the_same_in_every_image_is_centred_not_scaled_so_padding_stays_small(tmp_path, caplog):
    for c, name in enumerate(["a", "b"]):
        for split in ("train", "test"):
            (tmp_path / split / name).mkdir(parents=True)
            for k in range(4):
                Image.new("RGB", (12, 10), (40 * k + c, 9, 9)).save(tmp_path / split / name / f"{k}.png")
    data = build_image_data(DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.0))
    assert "image channel(s) [1, 2] spread under one grey level" in caplog.text
    padded = torch.stack([data.train[i]["image"] for i in range(len(data.train))])
    assert padded[:, 1:].abs().max().item() == pytest.approx(9 / 255, rel=1e-5)  # a zero pad, centred on 9/255
    assert padded[:, 0].abs().max().item() < 10  # the varying channel is still scaled by its std


def test_unreadable_images_are_counted_and_named(tmp_path):
    write_image_folder(tmp_path, ["a", "b"], per_class=5)
    truncated = next((tmp_path / "train" / "a").glob("*.png"))
    truncated.write_bytes(truncated.read_bytes()[:40])
    (tmp_path / "train" / "b" / "99999.jpg").write_text("not an image")
    with pytest.raises(ImageReadError, match=rf"2 of 11 images cannot be read, e\.g\. {tmp_path}.*remove or replace"):
        build_image_data(DataConfig(name="imagefolder", root=str(tmp_path)))


def test_images_decoded_in_forked_processes_are_the_threads_pixels_and_errors(tmp_path, monkeypatch):
    """More than one chunk on a multi-core Linux machine: processes decode; same pixels and the same error count."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from elr_mri.data import image_decoding

    write_image_folder(tmp_path, ["a", "b"], per_class=5)
    monkeypatch.setattr(image_decoding, "DECODE_CHUNK", 3)  # 10 training images: 4 chunks
    cfg = DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.0)
    if sys.platform == "linux" and usable_cores() > 1:  # the pool's own count: a 1-CPU quota or SLURM job has threads
        assert isinstance(image_decoding._decoding_pool(4), ProcessPoolExecutor)
    by_pool = build_image_data(cfg).train.images
    with monkeypatch.context() as threads_only:
        threads_only.setattr(image_decoding, "_decoding_pool", lambda chunks: ThreadPoolExecutor(max_workers=2))
        assert torch.equal(build_image_data(cfg).train.images, by_pool)
    (tmp_path / "train" / "b" / "99999.jpg").write_text("not an image")
    with pytest.raises(ImageReadError, match=rf"1 of 11 images cannot be read, e\.g\. {tmp_path}/train/b/99999.jpg"):
        build_image_data(cfg)


def test_a_folder_of_several_chunks_decodes_every_image_in_its_order(tmp_path, monkeypatch):
    """decode_all splits the paths into chunks of DECODE_CHUNK: 10 images in chunks of 3 are 4 chunks, the last of one
    image, and the result is all 10, image k at row k."""
    from elr_mri.data import image_decoding

    paths = [tmp_path / f"{k}.png" for k in range(10)]
    for k, path in enumerate(paths):
        Image.new("RGB", (5, 4), (k, 2 * k, 3 * k)).save(path)
    monkeypatch.setattr(image_decoding, "DECODE_CHUNK", 3)
    images = image_decoding.decode_all(paths)
    assert images.shape == (10, 3, 4, 5)  # N, C, H, W
    assert images[:, :, 3, 4].tolist() == [[k, 2 * k, 3 * k] for k in range(10)]


def test_a_png_whose_text_inflates_past_pillows_limit_is_an_unreadable_image(tmp_path):
    """Pillow refuses a PNG text chunk that decompresses past MAX_TEXT_CHUNK (a decompression bomb) with a ValueError,
    not an OSError: it is one more unreadable image, named, not a traceback."""
    from PIL import PngImagePlugin

    from elr_mri.data.image_decoding import read_rgb

    text = PngImagePlugin.PngInfo()
    text.add_text("comment", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), zip=True)
    bomb = tmp_path / "bomb.png"
    Image.new("RGB", (4, 4)).save(bomb, pnginfo=text)
    with pytest.raises(ImageReadError, match=rf"^{bomb}: cannot be read as an image \(ValueError: .*MAX_TEXT_CHUNK\); "
                                             "remove or replace the file$"):
        read_rgb(bomb)


def test_images_are_decoded_by_as_many_processes_as_there_are_usable_cores(monkeypatch):
    """One usable core (a SLURM job's, a container's quota of 1 CPU): threads, as on a one-core machine, not a process
    a runnable core; they counted the affinity, the host's every core in a container."""
    from concurrent.futures import ThreadPoolExecutor

    from elr_mri.data import image_decoding

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    pool = image_decoding._decoding_pool(4)
    pool.shutdown()
    assert isinstance(pool, ThreadPoolExecutor)


def test_a_folder_normalised_as_a_cifar_release_must_have_its_classes(tmp_path):
    """A CIFAR-10 folder missing a class folder trained a 9-class network, reported beside the paper's figures."""
    write_image_folder(tmp_path, [f"c{k}" for k in range(9)], per_class=2)
    with pytest.raises(ValueError, match=rf"^{tmp_path}: 9 class folders, where data.normalization = cifar10 names a "
                                         r"release of 10 classes \(a class folder missing from train/\?\)"):
        build_image_data(DataConfig(name="imagefolder", root=str(tmp_path), normalization="cifar10"))
    assert len(build_image_data(DataConfig(name="imagefolder", root=str(tmp_path))).class_names) == 9  # auto


def test_an_image_of_another_size_is_named(tmp_path):
    write_image_folder(tmp_path, ["a", "b"], per_class=5)
    odd = tmp_path / "train" / "b" / "99999.png"
    Image.new("RGB", (64, 64)).save(odd)
    with pytest.raises(ValueError, match=rf"^images under {tmp_path / 'train'} differ in size \(.* is 12x10, {odd} is "
                                         r"64x64\)"):  # the split's folder: the odd image is in another class's
        build_image_data(DataConfig(name="imagefolder", root=str(tmp_path)))
    odd.unlink()
    for test_image in (tmp_path / "test").rglob("*.png"):  # every test image resized: each split alone is uniform
        Image.new("RGB", (40, 40)).save(test_image)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'test'}: its images are 40x40 and the training images 12x10"):
        build_image_data(DataConfig(name="imagefolder", root=str(tmp_path)))


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_a_damaged_human_label_file_is_named(tmp_path, suffix):
    write_image_folder(tmp_path / "tree", ["a", "b"], per_class=5)
    labels = tmp_path / f"human{suffix}"
    if suffix == ".npz":
        np.savez(labels, worse_label=np.zeros(10, dtype=np.int64))
    else:
        torch.save({"worse_label": np.zeros(10, dtype=np.int64)}, labels)
    labels.write_bytes(labels.read_bytes()[:60])
    cfg = DataConfig(name="imagefolder", root=str(tmp_path / "tree"),
                     noise=NoiseConfig(mode="human", human_labels=str(labels)))
    with pytest.raises(ValueError, match=rf"{labels}: cannot be read \(.*download the label file again"):
        build_image_data(cfg)


def write_clothing1m(root: Path) -> None:
    (root / "images" / "0").mkdir(parents=True)
    lines = {"noisy": [], "clean": [], "train": [], "val": [], "test": []}
    for i in range(12):
        key = f"images/0/{i}.jpg"
        Image.new("RGB", (300, 260), (i * 20, 0, 0)).save(root / key)
        lines["noisy"].append(f"{key} {i % 14}")
        lines["clean"].append(f"{key} {(i + 1) % 14}")
        lines["train" if i < 8 else "val" if i < 10 else "test"].append(key)
    files = {"noisy": "noisy_label_kv", "clean": "clean_label_kv", "train": "noisy_train_key_list",
             "val": "clean_val_key_list", "test": "clean_test_key_list"}
    for name, file in files.items():
        (root / f"{file}.txt").write_text("\n".join(lines[name]) + "\n")


def test_clothing1m_lists(tmp_path):
    write_clothing1m(tmp_path)
    data = build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))
    # the clean validation list replaces the noisy hold-out
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2)
    assert data.num_classes == 14 and data.input_shape == (3, 224, 224) and data.train_clean_labels is None
    assert data.train_labels.tolist() == list(range(8))
    assert data.train_ids.tolist() == list(range(8)) and data.train.paths[3] == str(tmp_path / "images/0/3.jpg")
    assert [data.val[i]["label"] for i in range(2)] == [9, 10]
    assert data.train[0]["image"].shape == data.test[1]["image"].shape == (3, 224, 224)
    with pytest.raises(ValueError, match="already noisy"):
        noise = NoiseConfig(mode="symmetric", rate=0.2)
        build_image_data(DataConfig(name="clothing1m", root=str(tmp_path), noise=noise))
    run = RunConfig(data=DataConfig(name="clothing1m", root=str(tmp_path)))
    assert selection_rule(run) == "best accuracy on Clothing1M's clean validation images (clean_val_key_list.txt), " \
                                  "as the paper"  # what the run records: not the noisy hold-out
    with pytest.raises(ValueError, match=r"data.normalization = measured measures the training images in memory, "
                                         r"but clothing1m's are read from files .*\(data.normalization: auto\)$"):
        build_image_data(DataConfig(name="clothing1m", root=str(tmp_path), normalization="measured"))
    (tmp_path / "clean_val_key_list.txt").unlink()  # a run made before a new run was refused this still evaluates
    assert "noisy labels (data.val_fraction)" in selection_rule(run)
    held_out = build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))
    assert len(held_out.train) + len(held_out.val) == 8  # the noisy hold-out it was selected on
    with pytest.raises(FileNotFoundError, match=r"^clothing1m: .*clean_val_key_list.txt is missing: the paper selects "
                                                r"its checkpoint on these clean validation images; restore the file"):
        train(run, tmp_path / "new_run")  # a new run: refused before any image is read
    assert not (tmp_path / "new_run").exists()
    (tmp_path / "images/0/5.jpg").unlink()  # an image the training list names, lost in extraction
    with pytest.raises(FileNotFoundError, match=r"noisy_train_key_list.txt: 1 of 8 listed images are not in .*"
                                                r"e.g. images/0/5.jpg; extract the whole release"):
        build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))


def test_clothing1m_lists_in_an_annotations_folder_load_as_beside_the_images(tmp_path):
    write_clothing1m(tmp_path)
    (tmp_path / "annotations").mkdir()
    for listed in tmp_path.glob("*.txt"):
        listed.rename(tmp_path / "annotations" / listed.name)
    (tmp_path / "annotations" / "clean_test_key_list.txt").write_bytes(  # saved by an editor that adds a BOM
        b"\xef\xbb\xbf" + (tmp_path / "annotations" / "clean_test_key_list.txt").read_bytes())
    data = build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2)
    assert data.test.paths[0] == str(tmp_path / "images/0/10.jpg")


@pytest.mark.parametrize(("change", "error", "message"), [
    ("no_test", FileNotFoundError, r"looked for clean_test_key_list.txt in .*the label lists beside it, in "
                                   r"annotations/ or in images/\)$"),
    ("empty_train", ValueError, r"noisy_train_key_list.txt: lists no image; use the release's file$"),
    ("wrong_root", FileNotFoundError, r"^clothing1m: data.root .*/release/images is the images/ folder itself, and the "
                                      r"lists' keys \(images/0/...\) are read relative to data.root; set data.root to "
                                      r".*/release \(the label lists may stay in images/\)$"),
    ("moved_images", FileNotFoundError, r"8 of 8 listed images are not in .*none is there: is data.root the release's "
                                        r"folder"),
    ("archived_images", FileNotFoundError, r"8 of 8 listed images .*folder .*\? .*/release/images holds 1 tar "
                                           r"archive\(s\) \(0.tar, ...\): extract them all, so that the listed keys "
                                           r"\(images/...\) name files under .*/release$"),
    ("keys_without_prefix", FileNotFoundError, r"8 of 8 listed images .*\? the lists' keys lack the release's images/ "
                                               r"prefix \(0/0.jpg is in .*/release/images\): use the release's label "
                                               r"lists, whose keys start with images/$"),
])
def test_an_incomplete_clothing1m_release_is_one_error_naming_what_to_fix(tmp_path, change, error, message):
    write_clothing1m(tmp_path / "release")
    root = tmp_path / "release"
    if change == "no_test":
        (root / "clean_test_key_list.txt").unlink()
    elif change == "empty_train":
        (root / "noisy_train_key_list.txt").write_text("\n")
    elif change == "wrong_root":  # the lists copied beside images/'s content, as the official code's data_dir is:
        root = root / "images"  # keys name images/...
        for listed in (tmp_path / "release").glob("*.txt"):
            listed.rename(root / listed.name)
    elif change == "archived_images":  # as released: the annotations unzipped, the images' tar files not extracted
        shutil.make_archive(str(root / "0"), "tar", root / "images", "0")
        shutil.rmtree(root / "images")
        (root / "images").mkdir()
        (root / "0.tar").rename(root / "images/0.tar")
    elif change == "keys_without_prefix":  # "is data.root the release's folder?" sent its user to images/, refused
        for listed in root.glob("*.txt"):
            listed.write_text(listed.read_text().replace("images/", ""))
    else:
        (root / "images").rename(root / "pictures")
    with pytest.raises(error, match=message):
        build_image_data(DataConfig(name="clothing1m", root=str(root)))


def test_clothing1m_lists_inside_images_as_the_official_code_keeps_them_load_from_the_release_folder(tmp_path):
    write_clothing1m(tmp_path)
    for listed in tmp_path.glob("*.txt"):
        listed.rename(tmp_path / "images" / listed.name)
    data = build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2)
    assert data.train.paths[3] == str(tmp_path / "images/0/3.jpg") and data.train_labels.tolist() == list(range(8))


@pytest.mark.parametrize(("file", "line", "shown"), [("noisy_label_kv.txt", "images/0/1.jpg 3 extra", "3 extra"),
                                                     ("noisy_label_kv.txt", "images/0/1.jpg x", "x"),
                                                     ("clean_label_kv.txt", "images/0/1.jpg 20", "20"),
                                                     ("noisy_label_kv.txt", "images/0/1.jpg 14", "14"),  # 14 classes
                                                     ("clean_label_kv.txt", "images/0/1.jpg ³", "³")])
def test_a_malformed_clothing1m_label_line_is_one_error_naming_file_and_line(tmp_path, file, line, shown):
    write_clothing1m(tmp_path)
    lines = (tmp_path / file).read_text().splitlines()
    lines[1] = line
    (tmp_path / file).write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{file}, line 2: expected `image-key label` with a label 0..13, "
                                         rf"got 'images/0/1.jpg {shown}'"):
        build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))


def test_a_clothing1m_key_with_a_space_keeps_its_label(tmp_path):
    write_clothing1m(tmp_path)
    (tmp_path / "images/0/1.jpg").rename(tmp_path / "images/0/my photo.jpg")
    for file in ("noisy_label_kv.txt", "noisy_train_key_list.txt"):
        (tmp_path / file).write_text((tmp_path / file).read_text().replace("images/0/1.jpg", "images/0/my photo.jpg"))
    data = build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))
    assert data.train.paths[1] == str(tmp_path / "images/0/my photo.jpg") and data.train_labels[1] == 1


def test_a_listed_image_unreadable_mid_run_is_to_be_extracted_again_not_removed(tmp_path):
    """Its error said "remove or replace the file": removed, the list named a missing file; its line removed, the
    resume was refused as other data (train_examples = 7, it trained on 8) and the run's epochs were lost."""
    write_clothing1m(tmp_path)
    data = build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))
    image = tmp_path / "images/0/3.jpg"
    image.write_bytes(image.read_bytes()[:300])  # cut short after the run began (a disk fault, a copy interrupted)
    with pytest.raises(ImageReadError, match=rf"^{image}: cannot be read as an image \(OSError: .*\); extract this "
                                             r"file again from the data set's release and keep the lists as they are "
                                             r"\(a resume refuses lists that changed since the run began"):
        data.train[3]


def test_an_unreadable_listed_image_in_training_names_what_continues_the_run(tmp_path):
    """The dataset's line cannot name the run; `train` ends it in the way on: the resume once there is a checkpoint
    (the same command again is then refused: "already holds a run"), the same command before."""
    from argparse import Namespace

    from elr_mri.cli import _rerun_said_for_the_run
    from elr_mri.data.images import LISTED_IMAGE_FIX

    args = Namespace(command="train", resume=None, out=tmp_path / "run", config=None)
    problem = ValueError(f"{tmp_path}/images/0/3.jpg: cannot be read as an image (OSError: x); {LISTED_IMAGE_FIX}")
    assert str(_rerun_said_for_the_run(args, problem)).endswith("; no checkpoint was written yet (the first comes "
                                                                "after train.checkpoint_seconds and an epoch), so "
                                                                "nothing to resume: run the same command again")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"")
    assert str(_rerun_said_for_the_run(args, problem)) == (f"{problem}; continue from the last checkpoint with: "
                                                           f"elr-mri train --resume {tmp_path / 'run'}")
    assert _rerun_said_for_the_run(Namespace(command="evaluate"), problem) is problem


def test_a_listed_image_cut_short_after_a_checkpoint_names_the_resume_that_continues_the_run(tmp_path, capfd):
    """Its line said "then resume", but the same command again is refused once the run has a checkpoint ("already
    holds a run"): the line now ends in the resume that continues it, and that resume, the file restored, goes on
    from the checkpoint. Read by a DataLoader worker, as the configs do: its error comes back as a ValueError."""
    from elr_mri.cli import main

    write_clothing1m(tmp_path / "c1m")
    config = Path(__file__).resolve().parents[1] / "configs" / "clothing1m" / "elr.yaml"
    run = tmp_path / "run"
    settings = [f"data.root={tmp_path / 'c1m'}", "data.balanced_batches=2", "data.num_workers=1",
                "model.name=mlp", "model.hidden=8", "train.batch_size=4", "train.progress=false",
                "train.tensorboard=false"]
    sets = [arg for setting in settings for arg in ("--set", setting)]
    assert main(["train", "--config", str(config), "--out", str(run), "--set", "train.epochs=1", *sets]) == 0
    image = tmp_path / "c1m/images/0/9.jpg"  # a validation image, scored every epoch
    whole = image.read_bytes()
    image.write_bytes(whole[:300])
    capfd.readouterr()
    assert main(["train", "--resume", str(run), "--set", "train.epochs=2"]) == 2
    assert capfd.readouterr().err.endswith(f"remove its line from the list); continue from the last checkpoint with: "
                                           f"elr-mri train --resume {run}\n")
    image.write_bytes(whole)
    assert main(["train", "--resume", str(run), "--set", "train.epochs=2"]) == 0
    assert len(pd.read_csv(run / "metrics.csv")) == 2


def test_an_empty_listed_image_is_refused_before_training_not_in_the_middle_of_an_epoch(tmp_path):
    """A 0-byte file (a copy cut off, a disk full while extracting) was found only when a batch drew it, hours into a
    Clothing1M run; the stat that looks for every listed file sees it for free."""
    write_clothing1m(tmp_path)
    (tmp_path / "images/0/3.jpg").write_bytes(b"")
    (tmp_path / "images/0/9.jpg").write_bytes(b"")  # a clean validation image
    with pytest.raises(ImageReadError, match=rf"^{tmp_path}/noisy_train_key_list.txt: 1 of 8 listed images are empty "
                                             rf"files \(0 bytes\), e.g. images/0/3.jpg in {tmp_path}; copy them again "
                                             r"from the release \(a new run may instead drop their lines from the list\)$"):
        build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))


def test_clothing1m_as_released_with_windows_line_ends_under_a_folder_with_a_space(tmp_path):
    """The release's own names and line forms (keys images/<d>/<dd>/<id>,<id>.jpg; the noisy labels cover more images
    than the noisy training list, the clean labels the three clean lists; category names and clean_train_key_list.txt
    beside them, unread), saved with CRLF line ends, in a folder whose path holds a space."""
    root = tmp_path / "my data" / "clothing1m"
    keys = [f"images/{k % 10}/{k:02d}/{3761328100 + k},{905362200 + k}.jpg" for k in range(16)]
    for k, key in enumerate(keys):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (240 + k, 260), (k * 15, 0, 0)).save(root / key)
    lists = {"noisy_label_kv": [f"{key} {k % 14}" for k, key in enumerate(keys[:12])],
             "noisy_train_key_list": keys[:10],
             "clean_label_kv": [f"{key} {(k + 5) % 14}" for k, key in enumerate(keys[8:])],
             "clean_train_key_list": keys[8:10], "clean_val_key_list": keys[10:13], "clean_test_key_list": keys[13:],
             "category_names_eng": ["T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
                                    "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear"]}
    for name, lines in lists.items():
        (root / f"{name}.txt").write_bytes("".join(f"{line}\r\n" for line in lines).encode())
    data = build_image_data(DataConfig(name="clothing1m", root=str(root)))
    assert data.train.paths == [str(root / key) for key in keys[:10]] and data.train_labels.tolist() == list(range(10))
    assert data.train_ids.tolist() == list(range(10))
    assert [(data.val.paths[i], data.val[i]["label"]) for i in range(3)] == [
        (str(root / keys[k]), (k - 8 + 5) % 14) for k in (10, 11, 12)]
    assert [data.test[i]["label"] for i in range(3)] == [(k - 8 + 5) % 14 for k in (13, 14, 15)]


def test_a_clothing1m_key_listed_twice_is_refused_with_two_labels_and_read_once_with_one(tmp_path, caplog):
    """A key listed twice kept its last label, silently: a clean test label edited by appending a line, say."""
    write_clothing1m(tmp_path)
    clean = tmp_path / "clean_label_kv.txt"
    clean.write_text(clean.read_text() + "images/0/10.jpg 11\nimages/0/3.jpg 4\n")  # 10.jpg's own label, 3.jpg's
    data = build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))
    assert [data.test[i]["label"] for i in range(2)] == [11, 12]
    assert "clean_label_kv.txt: 2 line(s) repeat a key with the label it already has, each read once (first: " \
           "images/0/10.jpg, lines 11 and 13)" in caplog.text
    clean.write_text(clean.read_text() + "images/0/11.jpg 0\n")
    with pytest.raises(ValueError, match=r"clean_label_kv.txt, lines 12 and 15: images/0/11.jpg is labelled 12 and 0; "
                                         r"keep one line, with its right label, or use the release's file$"):
        build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))


def test_an_empty_clothing1m_label_list_is_named(tmp_path):
    write_clothing1m(tmp_path)
    (tmp_path / "noisy_label_kv.txt").write_text("")
    with pytest.raises(ValueError, match=r"noisy_label_kv.txt: lists no label; use the release's file$"):
        build_image_data(DataConfig(name="clothing1m", root=str(tmp_path)))


def write_mini_webvision(root: Path, per_class: int = 1, classes: int = 50) -> None:
    """WebVision's layout with `per_class` small images for each of the first `classes` classes, and one
    image of class 50 first in every list (mini WebVision leaves it out)."""
    lists: dict[str, list[str]] = {"train": [], "val": [], "imagenet": []}
    folders = {"train": "google", "val": "val_images_256", "imagenet": "imagenet/val"}
    for split, folder in folders.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for label in [50, *range(classes)]:
            for k in range(per_class):
                name = f"{split}_{label:03d}_{k}.jpg"
                Image.new("RGB", (40 + label, 30), (label * 5, k * 60, 90)).save(root / folder / name)
                lists[split].append(f"{'google/' if split == 'train' else ''}{name} {label}")
    (root / "info").mkdir()
    (root / "info/train_filelist_google.txt").write_text("\n".join(lists["train"]) + "\n")
    (root / "info/val_filelist.txt").write_text("\n".join(lists["val"]) + "\n")
    (root / "imagenet/imagenet_val.txt").write_text("\n".join(lists["imagenet"]) + "\n")
    synsets = ["n01440764 tench, Tinca tinca", "n01443537 goldfish, Carassius auratus"]
    (root / "info/synsets.txt").write_text("\n".join(synsets + [f"n{k:08d} thing{k}" for k in range(2, 1000)]) + "\n")


def test_mini_webvision_reads_the_first_50_classes_and_ilsvrc12(tmp_path):
    write_mini_webvision(tmp_path, per_class=2)
    data = build_image_data(DataConfig(name="webvision", root=str(tmp_path)))
    assert data.num_classes == 50 and data.class_names[:3] == ["tench", "goldfish", "thing2"]
    assert (len(data.train), len(data.val), len(data.test), len(data.extra_tests["ilsvrc12"])) == (90, 10, 100, 100)
    assert data.train_clean_labels is None and data.input_shape == (3, 227, 227)
    assert set(data.train_labels) | {data.val[i]["label"] for i in range(10)} == set(range(50))
    item = data.extra_tests["ilsvrc12"][99]
    assert item["label"] == 49 and item["image"].shape == (3, 227, 227)
    assert data.train[0]["image"].shape == data.test[0]["image"].shape == (3, 227, 227)
    # ImageNet's normalisation: the first test image is plain (0, 0, 90), JPEG-compressed
    blue = data.test[0]["image"][2]
    assert abs(float(blue.mean()) - (90 / 255 - 0.406) / 0.225) < 0.05
    # an example's original index is its line in the release's list (the mislabel table's original_index)
    listed = (tmp_path / "info/train_filelist_google.txt").read_text().splitlines()
    assert [listed[k].split()[0] for k in data.train_ids] == \
        [str(Path(p).relative_to(tmp_path)) for p in data.train.paths]
    with pytest.raises(ValueError, match="already noisy"):
        build_image_data(DataConfig(name="webvision", root=str(tmp_path), noise=NoiseConfig(mode="symmetric", rate=0.2)))


def test_mini_webvision_as_released_with_windows_line_ends_under_a_folder_with_a_space(tmp_path):
    """The release's names (google/q0001/00000001.jpg, val_images_256/val000001.jpg), lists not sorted by class with
    classes past the first 50 among them, saved with CRLF line ends, in a folder whose path holds a space; ILSVRC12's
    list as the official code's (names under imagenet/val/)."""
    root = tmp_path / "web vision"
    train = [(f"google/q{q:04d}/{k:08d}.jpg", label) for q, label in ((1, 0), (2, 917), (3, 49), (4, 50), (5, 1))
             for k in (1, 2)]
    val = [(f"val{k:06d}.jpg", label) for k, label in enumerate((3, 800, 0, 49, 50), start=1)]
    ilsvrc12 = [(f"ILSVRC2012_val_{k:08d}.JPEG", label) for k, label in enumerate((65, 2, 970, 49), start=1)]
    for folder, listed, list_file in (("", train, "info/train_filelist_google.txt"),
                                      ("val_images_256", val, "info/val_filelist.txt"),
                                      ("imagenet/val", ilsvrc12, "imagenet/imagenet_val.txt")):
        for name, label in listed:
            (root / folder / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (300, 256), (label % 256, 0, 0)).save(root / folder / name)
        (root / list_file).parent.mkdir(parents=True, exist_ok=True)
        (root / list_file).write_bytes("".join(f"{name} {label}\r\n" for name, label in listed).encode())
    data = build_image_data(DataConfig(name="webvision", root=str(root), val_fraction=0.0))
    assert list(zip(data.train.paths, data.train_labels.tolist(), data.train_ids.tolist())) == [
        (str(root / name), label, line) for line, (name, label) in enumerate(train) if label < 50]
    assert [(data.test.paths[i], data.test[i]["label"]) for i in range(len(data.test))] == [
        (str(root / "val_images_256" / name), label) for name, label in val if label < 50]
    ilsvrc12_test = data.extra_tests["ilsvrc12"]
    assert [(ilsvrc12_test.paths[i], ilsvrc12_test[i]["label"]) for i in range(len(ilsvrc12_test))] == [
        (str(root / "imagenet/val" / ilsvrc12[k][0]), ilsvrc12[k][1]) for k in (1, 3)]


def test_webvision_root_set_to_its_info_folder_is_sent_one_level_up(tmp_path):
    """As Clothing1M's images/: it was told that info/train_filelist_google.txt is missing and to extract the release
    into …/info."""
    write_mini_webvision(tmp_path / "webvision")
    with pytest.raises(FileNotFoundError, match=rf"^webvision: data.root {tmp_path}/webvision/info is the info/ folder "
                                                rf"itself, .*; set data.root to {tmp_path}/webvision, the folder that "
                                                r"holds info/, google/ and val_images_256/$"):
        build_image_data(DataConfig(name="webvision", root=str(tmp_path / "webvision/info")))


def test_webvision_config_trains_and_scores_both_test_sets_top1_and_top5(tmp_path):
    """The shipped config, its network swapped for a small one: ELR+ on the files, the WebVision and
    ILSVRC12 figures of the paper's table per epoch and in summary.json."""
    import json

    from elr_mri.config import load_config
    from elr_mri.engine.start import train

    write_mini_webvision(tmp_path / "webvision")
    config = Path(__file__).resolve().parents[1] / "configs/webvision/elr_plus.yaml"
    cfg = load_config(config, [f"data.root={tmp_path / 'webvision'}", "data.num_workers=0", "model.name=mlp",
                               "model.hidden=8", "train.epochs=1", "train.batch_size=16", "train.progress=false",
                               "train.tensorboard=false", "data.val_fraction=0.2"])
    summary = train(cfg, tmp_path / "run")
    metrics = pd.read_csv(tmp_path / "run/metrics.csv")
    for column in ("test_acc", "test_top5", "test_ilsvrc12_acc", "test_ilsvrc12_top5"):
        assert 0.0 <= metrics[column].iloc[0] <= 1.0
        assert summary[f"{column}_at_best"] == summary[f"{column}_last"] == metrics[column].iloc[0]
    assert metrics["test_top5"].iloc[0] >= metrics["test_acc"].iloc[0]
    assert json.loads((tmp_path / "run/data_shape.json").read_text())["input_shape"] == [3, 227, 227]
    # `elr-mri evaluate --test-set ilsvrc12`: the second test set, with top-5 and bootstrap intervals
    from elr_mri.evaluation.evaluate import evaluate_run

    report = evaluate_run(tmp_path / "run", checkpoint="last", n_boot=20, test_set="ilsvrc12")
    assert list(report) == ["image"]  # one level: every image is its own subject
    report = report["image"]
    assert report.n_examples == 50
    assert report.metrics["accuracy"].estimate == pytest.approx(metrics["test_ilsvrc12_acc"].iloc[0])
    assert report.metrics["top5_accuracy"].estimate == pytest.approx(metrics["test_ilsvrc12_top5"].iloc[0])
    assert (tmp_path / "run/eval-ilsvrc12-last/summary.json").is_file()
    with pytest.raises(ValueError, match=r"has no test set 'imagenet'; it has: test, ilsvrc12"):
        evaluate_run(tmp_path / "run", checkpoint="last", n_boot=20, test_set="imagenet")


def test_mini_webvision_without_imagenet_or_synsets_still_trains(tmp_path, capsys):
    write_mini_webvision(tmp_path)
    (tmp_path / "imagenet/imagenet_val.txt").unlink()
    (tmp_path / "info/synsets.txt").unlink()
    data = build_image_data(DataConfig(name="webvision", root=str(tmp_path)))
    assert data.extra_tests == {} and data.class_names[49] == "class49"
    note = f"note: {tmp_path} has no imagenet/imagenet_val.txt, so ILSVRC12 is not scored; " \
        "scripts/webvision_ilsvrc12_list.py writes it"
    assert note in capsys.readouterr().err  # an imagenet/ folder without its list is not dropped silently
    (tmp_path / "imagenet").rename(tmp_path / "elsewhere")  # nor is a folder without imagenet/
    assert build_image_data(DataConfig(name="webvision", root=str(tmp_path))).extra_tests == {}
    assert note in capsys.readouterr().err


def test_ilsvrc12_list_is_written_from_an_imagenet_folder_sorted_by_synset(tmp_path, import_script):
    write_mini_webvision(tmp_path / "webvision")
    (tmp_path / "webvision/imagenet/imagenet_val.txt").unlink()
    val = tmp_path / "image net" / "val"  # a space in the path: the list's label is its last word
    synsets = ["n01440764", "n01443537"] + [f"n{k:08d}" for k in range(2, 51)]  # 51: one beyond mini WebVision
    for label, synset in enumerate(synsets):
        (val / synset).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (300, 280), (label, k, 0)).save(val / synset / f"ILSVRC2012_val_{label:04d}{k}.JPEG")
    (val / synsets[1] / "._ILSVRC2012_val_00010.JPEG").write_bytes(b"\0\5\26\7")  # a Mac's AppleDouble file: it was
    lister = import_script("webvision_ilsvrc12_list")  # listed, and the first epoch's ILSVRC12 score failed on it
    assert lister.main(["--imagenet-val", str(val), "--webvision", str(tmp_path / "webvision")]) == 0
    data = build_image_data(DataConfig(name="webvision", root=str(tmp_path / "webvision")))
    ilsvrc12 = data.extra_tests["ilsvrc12"]
    assert len(ilsvrc12) == 100 and [ilsvrc12[i]["label"] for i in (0, 1, 2, 99)] == [0, 0, 1, 49]
    assert ilsvrc12.paths[2] == str(val / "n01443537" / "ILSVRC2012_val_00010.JPEG")
    import shutil

    shutil.rmtree(val / "n00000007")
    with pytest.raises(FileNotFoundError, match=r"no folder for 1 of the 50 classes, e.g. n00000007; pass ImageNet's "
                                                r"validation images sorted one folder per synset \(or class number, "
                                                r"0 to 49\), or the flat folder ILSVRC2012_img_val.tar extracts to with "
                                                r"--devkit$"):
        lister.main(["--imagenet-val", str(val), "--webvision", str(tmp_path / "webvision")])
    # the release's flat folder without --devkit: it was told to sort the images itself, not that --devkit reads them
    flat = tmp_path / "ILSVRC2012_img_val"
    flat.mkdir()
    Image.new("RGB", (300, 280)).save(flat / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(FileNotFoundError, match=rf"^{flat}: the validation images lie flat, as ILSVRC2012_img_val.tar "
                                                r"extracts \(e.g. ILSVRC2012_val_00000001.JPEG\), with no folder per "
                                                r"synset; add --devkit DIR, the folder ILSVRC2012_devkit_t12.tar.gz"):
        lister.main(["--imagenet-val", str(flat), "--webvision", str(tmp_path / "webvision")])


def test_ilsvrc12_list_reads_class_folders_numbered_as_dividemix_keeps_imagenet_val(tmp_path, import_script):
    """imagenet/val/0/ to 49/, in WebVision's order, as DivideMix's WebVision loader reads them, was refused as "no
    folder for 50 of the 50 classes"; one folder short of the 50 still names a missing synset folder."""
    write_mini_webvision(tmp_path / "webvision")
    val = tmp_path / "webvision/imagenet/val"
    for label in range(50):
        (val / str(label)).mkdir(parents=True)
        Image.new("RGB", (40, 30), (label, 0, 0)).save(val / str(label) / f"ILSVRC2012_val_{label + 1:08d}.JPEG")
    lister = import_script("webvision_ilsvrc12_list")
    assert lister.main(["--imagenet-val", str(val), "--webvision", str(tmp_path / "webvision")]) == 0
    ilsvrc12 = build_image_data(DataConfig(name="webvision", root=str(tmp_path / "webvision"))).extra_tests["ilsvrc12"]
    assert [(ilsvrc12.paths[i], ilsvrc12.labels[i]) for i in (0, 49)] == [
        (str(val / "0/ILSVRC2012_val_00000001.JPEG"), 0), (str(val / "49/ILSVRC2012_val_00000050.JPEG"), 49)]
    (val / "49").rename(val / "fifty")
    with pytest.raises(FileNotFoundError, match=r"no folder for 50 of the 50 classes, e.g. n01440764; pass ImageNet's "
                                                r"validation images sorted one folder per synset \(or class number, 0 "
                                                r"to 49\)"):
        lister.main(["--imagenet-val", str(val), "--webvision", str(tmp_path / "webvision")])


def test_ilsvrc12_list_reads_synsets_txt_saved_with_a_byte_order_mark(tmp_path, import_script):
    """As the data reader does (`read_text_list`): the mark made the first synset '\ufeffn…', matching no folder."""
    write_mini_webvision(tmp_path / "webvision")
    synsets = tmp_path / "webvision/info/synsets.txt"
    plain = import_script("webvision_ilsvrc12_list").webvision_synsets(synsets)
    synsets.write_text(synsets.read_text(), encoding="utf-8-sig")
    assert import_script("webvision_ilsvrc12_list").webvision_synsets(synsets) == plain


def test_ilsvrc12_list_given_webvisions_info_folder_is_sent_one_level_up(tmp_path, import_script):
    """It was told that …/info/info/synsets.txt is missing and to extract WebVision's info/ folder into …/info."""
    write_mini_webvision(tmp_path / "webvision")
    info = tmp_path / "webvision/info"
    with pytest.raises(FileNotFoundError, match=rf"^--webvision {info} is WebVision's info/ folder itself; pass the "
                                                rf"folder that holds it, {tmp_path}/webvision, where the list goes to "
                                                r"imagenet/imagenet_val.txt$"):
        import_script("webvision_ilsvrc12_list").main(["--imagenet-val", str(tmp_path), "--webvision", str(info)])
    assert not (info / "imagenet").exists()


def test_ilsvrc12_list_from_the_flat_release_matches_the_devkits_class_numbers_to_webvisions_by_synset(
        tmp_path, import_script):
    """The devkit numbers classes by ILSVRC2012_ID (1 is kit fox, tench is 449): its labels, taken as WebVision's,
    scored every image against another class."""
    from scipy.io import savemat

    write_mini_webvision(tmp_path / "webvision")
    webvision_ids = [line.split()[0] for line in (tmp_path / "webvision/info/synsets.txt").read_text().splitlines()]
    devkit_order = [webvision_ids[1], "n02119789", webvision_ids[0], webvision_ids[49]]  # ILSVRC2012_ID 1, 2, 3, 4
    table = np.array([(k + 1, wnid) for k, wnid in enumerate(devkit_order)],
                     dtype=[("ILSVRC2012_ID", object), ("WNID", object)])
    (tmp_path / "devkit/data").mkdir(parents=True)
    savemat(tmp_path / "devkit/data/meta.mat", {"synsets": table})
    truth = [3, 1, 2, 4, 3]  # image 3 is a kit fox, no class of mini WebVision
    (tmp_path / "devkit/data/ILSVRC2012_validation_ground_truth.txt").write_text(  # a byte-order mark: line 1 was
        "".join(f"{t}\n" for t in truth), encoding="utf-8-sig")  # '\ufeff3', "not an ILSVRC2012_ID"
    val = tmp_path / "ILSVRC2012_img_val"
    val.mkdir()
    for number in range(1, 6):
        Image.new("RGB", (300, 280), (number, 0, 0)).save(val / f"ILSVRC2012_val_{number:08d}.JPEG")
    lister = import_script("webvision_ilsvrc12_list")
    assert lister.main(["--imagenet-val", str(val), "--devkit", str(tmp_path / "devkit"),
                        "--webvision", str(tmp_path / "webvision")]) == 0
    assert (tmp_path / "webvision/imagenet/imagenet_val.txt").read_text().splitlines() == [
        f"{val / 'ILSVRC2012_val_00000001.JPEG'} 0", f"{val / 'ILSVRC2012_val_00000002.JPEG'} 1",
        f"{val / 'ILSVRC2012_val_00000004.JPEG'} 49", f"{val / 'ILSVRC2012_val_00000005.JPEG'} 0"]
    (val / "ILSVRC2012_val_00000004.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 4 validation images of these classes are not there, e.g. "
                                                r"ILSVRC2012_val_00000004.JPEG; pass the folder ILSVRC2012_img_val.tar"):
        lister.main(["--imagenet-val", str(val), "--devkit", str(tmp_path / "devkit"),
                     "--webvision", str(tmp_path / "webvision")])
    (tmp_path / "devkit/data/ILSVRC2012_validation_ground_truth.txt").write_text("2\n2\n")  # kit foxes only
    with pytest.raises(ValueError, match=r"ground_truth.txt: none of its images is of a mini WebVision class \(no "
                                         r"label's synset in meta.mat is one of the first 50 of WebVision's synsets.txt, "
                                         r"e.g. n01440764\); pass WebVision 1.0's folder as --webvision and "
                                         r"ILSVRC2012's devkit as --devkit$"):  # it wrote an empty list, rc 0
        lister.main(["--imagenet-val", str(val), "--devkit", str(tmp_path / "devkit"),
                     "--webvision", str(tmp_path / "webvision")])
    (tmp_path / "devkit/data/ILSVRC2012_validation_ground_truth.txt").write_text("3\n1001\n")
    with pytest.raises(ValueError, match=r"ground_truth.txt, line 2: '1001' is not an ILSVRC2012_ID of meta.mat"):
        lister.main(["--imagenet-val", str(val), "--devkit", str(tmp_path / "devkit"),
                     "--webvision", str(tmp_path / "webvision")])


def test_mini_webvision_bad_lists_are_one_line(tmp_path):
    write_mini_webvision(tmp_path)
    listing = tmp_path / "info/val_filelist.txt"
    listing.write_text(listing.read_text() + "val_broken.jpg\n")
    with pytest.raises(ValueError, match=r"val_filelist.txt, line 52: expected `image-path class-number`, "
                                         r"got 'val_broken.jpg'; use the release's list$"):
        build_image_data(DataConfig(name="webvision", root=str(tmp_path)))
    listing.write_bytes(b"\xef\xbb\xbf" + "".join(f"val_{c:03d}_0.jpg {c}\n" for c in range(50)).encode())
    assert len(build_image_data(DataConfig(name="webvision", root=str(tmp_path))).test) == 50  # a byte-order mark
    listing.write_bytes(b"val_\xe9.jpg 7\n")
    with pytest.raises(ValueError, match=r"val_filelist.txt: not a UTF-8 text list \(byte 4\); use the release's"):
        build_image_data(DataConfig(name="webvision", root=str(tmp_path)))
    listing.write_text("val_x.jpg 7\n")
    with pytest.raises(FileNotFoundError, match=r"val_filelist.txt: 1 of 1 listed images are not in .*val_images_256, "
                                                r"e.g. val_x.jpg; none is there: is data.root the release's folder \(the "
                                                r"list's paths are read relative to .*val_images_256\)\?"):
        build_image_data(DataConfig(name="webvision", root=str(tmp_path)))
    listing.write_text("val_x.jpg 70\n")
    with pytest.raises(ValueError, match=r"no image of classes 0..49 \(mini WebVision\) listed; use the release's list$"):
        build_image_data(DataConfig(name="webvision", root=str(tmp_path)))
    listing.write_text("".join(f"val_{c:03d}_0.jpg {c}\n" for c in range(50)))
    ilsvrc12 = tmp_path / "imagenet/imagenet_val.txt"  # written by the script, so to be written again, not "released"
    ilsvrc12.write_text("val_x.jpg 70\n")
    with pytest.raises(ValueError, match=r"imagenet_val.txt: no image of classes 0..49 \(mini WebVision\) listed; write "
                                         r"it again with scripts/webvision_ilsvrc12_list.py$"):
        load_source("webvision", tmp_path)
    listing.write_text("val_000_0.jpg 0\nval_001_0.jpg ³\n")  # a digit int() refuses: it said "invalid literal"
    with pytest.raises(ValueError, match=r"val_filelist.txt, line 2: expected `image-path class-number`, "
                                         r"got 'val_001_0.jpg ³'; use the release's list$"):
        build_image_data(DataConfig(name="webvision", root=str(tmp_path)))
    listing.write_text("val_000_0.jpg 0\n")
    (tmp_path / "imagenet/imagenet_val.txt").write_text("imagenet_000_0.jpg 0\nimagenet_001_0.jpg one\n")
    with pytest.raises(ValueError, match=r"imagenet_val.txt, line 2: expected `image-path class-number`, got "
                                         r"'imagenet_001_0.jpg one'; write it again with "
                                         r"scripts/webvision_ilsvrc12_list.py$"):
        build_image_data(DataConfig(name="webvision", root=str(tmp_path)))


def test_a_data_root_one_level_too_deep_in_torchvisions_cifar_says_which_folder_to_give(tmp_path):
    write_cifar10(tmp_path)
    too_deep = tmp_path / "cifar-10-batches-py"
    with pytest.raises(FileNotFoundError, match=rf"^cifar10: data.root {too_deep} is the cifar-10-batches-py folder "
                                                rf"itself; set data.root to the folder that holds it \({tmp_path}\)$"):
        build_image_data(DataConfig(name="cifar10", root=str(too_deep)))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cifar10", ["cifar-10-batches-py", "data_batch_1", "kriz/cifar-10-python.tar.gz | tar -xz -C"]),
        ("cifar100", ["cifar-100-python", "train, test, meta", "kriz/cifar-100-python.tar.gz"]),
        ("imagefolder", ["train/<class>",
                         "for torchvision's copy (DIR/cifar-10-batches-py) use data.name: cifar10 with data.root: DIR"]),
        ("clothing1m", ["noisy_label_kv.txt", "Xiao et al."]),
        ("webvision", ["info/train_filelist_google.txt, info/val_filelist.txt", "resized images"]),
    ],
)
def test_missing_data_set_is_one_clear_error(tmp_path, name, expected):
    with pytest.raises(FileNotFoundError) as error:
        build_image_data(DataConfig(name=name, root=str(tmp_path / "nowhere")))
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message
    for fragment in expected:
        assert fragment in message
    with pytest.raises(FileNotFoundError, match="needs data.root"):
        build_image_data(DataConfig(name=name))


def test_the_cifar10_jpegs_are_offered_only_where_the_development_data_has_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tar -xJf ../shared/data/cifar/cifar10-jpeg.tar.xz` was offered to everyone: a path that holds only from a
    checkout's folder, beside the development data, and names nothing to an installed elr-mri."""
    nowhere = DataConfig(name="imagefolder", root=str(tmp_path / "nowhere"))
    monkeypatch.setattr(image_sources, "DEVELOPMENT_CIFAR", None)  # installed: no checkout to look beside
    with pytest.raises(FileNotFoundError) as error:
        build_image_data(nowhere)
    assert "tar -xJf" not in str(error.value) and "shared" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="kriz/cifar-100-python.tar.gz [^;]*$"):
        build_image_data(DataConfig(name="cifar100", root=str(tmp_path / "nowhere")))
    shared = tmp_path / "my data" / "cifar"
    shared.mkdir(parents=True)
    (shared / "cifar10-jpeg.tar.xz").write_bytes(b"")
    monkeypatch.setattr(image_sources, "DEVELOPMENT_CIFAR", shared)
    with pytest.raises(FileNotFoundError) as error:
        build_image_data(nowhere)
    assert f"`mkdir -p DIR && tar -xJf '{shared}/cifar10-jpeg.tar.xz' -C DIR`" in str(error.value)


def test_crops_and_resize(tmp_path):
    image = torch.arange(2 * 6 * 6, dtype=torch.float32).view(2, 6, 6) + 1
    padded = torch.nn.functional.pad(image, [2] * 4)
    windows = {(t, l): padded[:, t : t + 6, l : l + 6] for t in range(5) for l in range(5)}
    torch.manual_seed(0)
    offsets = set()
    for _ in range(50):
        crop = RandomCrop(6, padding=2)(image)
        offsets |= {o for o, window in windows.items() if torch.equal(crop, window)}
    assert len(offsets) > 10  # every crop is a window of the zero-padded image, at varying offsets
    assert torch.equal(CenterCrop(2)(image), image[:, 2:4, 2:4])
    Image.new("RGB", (300, 200)).save(tmp_path / "wide.png")
    assert load_resized(tmp_path / "wide.png", 256).shape == (3, 256, 384)


def test_centre_crop_of_a_non_square_image_rounds_each_offset_as_torchvision() -> None:
    """Clothing1M's and WebVision's images reach `CenterCrop` resized by their short side, so wider than high:
    the left offset comes from the width, and an odd margin rounds half to even (5 − 2 = 3 rows: top 2, not 1)."""
    image = torch.arange(5 * 8, dtype=torch.float32).view(1, 5, 8)
    assert torch.equal(CenterCrop(2)(image), image[:, 2:4, 3:5])
    wide = torch.arange(4 * 9, dtype=torch.float32).view(1, 4, 9)  # 9 − 2 = 7 columns: left round(3.5) = 4, not 3
    assert torch.equal(CenterCrop(2)(wide), wide[:, 1:3, 4:6])


def test_a_per_item_flip_happens_with_probability_p() -> None:
    """p is the chance of a flip, not of keeping the image; CIFAR's 0.5 cannot tell the two readings apart."""
    image = torch.arange(4, dtype=torch.float32).repeat(1, 4, 1)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(RandomHorizontalFlip(1.0)(image, generator), image.flip(-1))
    assert torch.equal(RandomHorizontalFlip(0.0)(image, generator), image)
    flipped = [RandomHorizontalFlip(0.25)(image, generator)[0, 0, 0] > 0 for _ in range(1000)]
    assert abs(sum(flipped) / 1000 - 0.25) < 0.05  # 3.7 standard deviations of 1000 draws


@pytest.fixture(scope="module")
def cifar10_jpeg(tmp_path_factory) -> Path:
    """The shared CIFAR-10 JPEG archive, extracted once for this file's tests."""
    import tarfile

    if not (SHARED / "cifar10-jpeg.tar.xz").is_file() or not (SHARED / "CIFAR-10_human.npz").is_file():
        pytest.skip("no CIFAR-10 JPEG archive or CIFAR-10N labels in ../shared/data/cifar")
    folder = tmp_path_factory.mktemp("cifar")
    with tarfile.open(SHARED / "cifar10-jpeg.tar.xz") as archive:  # extraction filters: 3.10.12+ and 3.11.4+ only
        archive.extractall(folder, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return folder / "cifar10"


@pytest.mark.slow
def test_real_cifar10_jpeg_with_cifar10n(cifar10_jpeg):
    cfg = DataConfig(
        name="imagefolder", root=str(cifar10_jpeg), train_subset=10000,
        noise=NoiseConfig(mode="human", human_labels=str(SHARED / "CIFAR-10_human.npz")),
    )
    data = build_image_data(cfg)
    assert (len(data.train), len(data.val), len(data.test)) == (9000, 1000, 10000)
    assert data.class_names[3] == "cat" and data.input_shape == (3, 32, 32)
    assert abs((data.train_labels != data.train_clean_labels).mean() - 0.402) < 0.02


# Wei et al. 2022 (CIFAR-N), Table 1: the share of CIFAR-10's 50,000 training labels each label set gets wrong
CIFAR10N_NOISE = {"aggre_label": 0.0903, "random_label1": 0.1723, "random_label2": 0.1812, "random_label3": 0.1764,
                  "worse_label": 0.4021}


@pytest.mark.slow
def test_cifar10n_labels_land_on_their_images_in_the_paper_config(cifar10_jpeg):
    """configs/cifar10n/elr.yaml on the real 50,000: every human label lands on the image of its original index.
    The clean_label check proves only the class folders: images shuffled within their class would pass it, and
    train on labels that fit no picture. Human mistakes depend on the picture (a doggish cat is called dog), so
    the wrong labels must fit their images better than the same labels dealt at random within each class."""
    from elr_mri.config import load_config

    human = np.load(SHARED / "CIFAR-10_human.npz")
    clean, worse = human["clean_label"], human["worse_label"]
    for key, rate in CIFAR10N_NOISE.items():  # the file has the label sets the config names, as published
        assert (human[key] != clean).mean() == pytest.approx(rate, abs=5e-4), key
    config = Path(__file__).resolve().parents[1] / "configs/cifar10n/elr.yaml"
    data = build_image_data(load_config(config, [f"data.root={cifar10_jpeg}",
                                                 f"data.noise.human_labels={SHARED / 'CIFAR-10_human.npz'}"]).data)
    assert (len(data.train), len(data.val), len(data.test)) == (45000, 5000, 10000)
    ids = data.train_ids  # what suspected_mislabels.csv reports as original_index
    assert np.array_equal(data.train_labels, worse[ids]) and np.array_equal(data.train_clean_labels, clean[ids])
    held_out = np.setdiff1d(np.arange(50000), ids)  # the validation split, in original order, keeps its noisy labels
    assert np.array_equal(data.val.labels, worse[held_out]) and np.bincount(clean[held_out]).tolist() == [500] * 10
    assert np.bincount(data.test.labels).tolist() == [1000] * 10  # CIFAR-10's clean test set
    for k in np.random.default_rng(0).choice(len(ids), 20, replace=False):  # the file its original index names
        path = cifar10_jpeg / "train" / data.class_names[clean[ids[k]]] / f"{ids[k]:05d}.jpg"
        assert np.array_equal(data.train.images[k].numpy(), np.asarray(Image.open(path)).transpose(2, 0, 1))

    pooled = data.train.images.numpy().reshape(-1, 3, 8, 4, 8, 4).mean(axis=(3, 5)).reshape(len(ids), -1)
    pooled = (pooled - pooled.mean(0)) / pooled.std(0)
    given, true = data.train_labels, data.train_clean_labels
    centres = np.stack([pooled[true == c].mean(0) for c in range(10)])
    distance = ((pooled[:, None, :] - centres[None]) ** 2).sum(-1)  # to each class's mean picture

    def fit(noisy: np.ndarray) -> float:  # how much nearer a wrong label's class is than the true one, on average
        wrong = np.flatnonzero(noisy != true)
        return float((distance[wrong, true[wrong]] - distance[wrong, noisy[wrong]]).mean())

    rng = np.random.default_rng(0)
    dealt = []
    for _ in range(200):
        order = np.arange(len(true))
        for c in range(10):
            members = np.flatnonzero(true == c)
            order[members] = rng.permutation(members)
        dealt.append(fit(given[order]))
    assert fit(given) > np.mean(dealt) + 4 * np.std(dealt), (fit(given), dealt)


@pytest.mark.parametrize("loader", ["dataloader", "device"])
def test_an_examples_crop_depends_on_neither_the_worker_count_nor_the_rank(tmp_path, loader):
    """The DataLoader path augments each example from (epoch, stream, index), the device path draws the crops of
    the whole global batch on every rank: two workers give the crops one process gives, so do two torchrun ranks
    between them, and ELR+'s second stream crops otherwise."""
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder

    write_cifar10(tmp_path)
    data = build_image_data(DataConfig(name="cifar10", root=str(tmp_path), val_fraction=0.0))
    plain = RunConfig(data=DataConfig(name="cifar10", root=str(tmp_path)),
                      train=replace(RunConfig().train, loader=loader, batch_size=20))

    def crops(workers: int = 0, dist: DistContext = DistContext(), stream: str | None = None) -> dict[int, torch.Tensor]:
        cfg = replace(plain, data=replace(plain.data, num_workers=workers))
        batches = BatchFeeder(data, cfg, dist, torch.device("cpu")).train_epoch(2, streams=1 if stream is None else 2)
        return {int(i): image for batch in batches for i, image in zip((batch[stream] if stream else batch)["index"],
                                                                        (batch[stream] if stream else batch)["image"])}

    def same(a: dict[int, torch.Tensor], b: dict[int, torch.Tensor]) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[i], b[i]) for i in a)

    one = crops()
    assert len(one) == 100
    assert same(one, crops(workers=2))
    assert same(one, {**crops(dist=DistContext(rank=0, world_size=2)), **crops(dist=DistContext(rank=1, world_size=2))})
    second = crops(stream="pair")
    assert sum(torch.equal(one[i], second[i]) for i in one) < 20  # crops and flips drawn anew for the second network


def test_data_num_workers_is_called_unread_where_the_batches_come_from_the_device(tmp_path):
    """`train.loader: auto` feeds the images held in memory from the device, where `data.num_workers` changed nothing
    without a word: the `--set` note names it for exactly those data sets, as built."""
    from elr_mri.config import config_from_dict, unread_overrides
    from elr_mri.engine.feeding import serves_from_device

    write_cifar10(tmp_path / "cifar10")
    write_cifar100(tmp_path / "cifar100")
    write_image_folder(tmp_path / "imagefolder", ["a", "b"], per_class=3)
    write_clothing1m(tmp_path / "clothing1m")
    write_mini_webvision(tmp_path / "webvision")
    served_from_device = {}
    for name in ("digits", "cifar10", "cifar100", "imagefolder", "clothing1m", "webvision"):
        cfg = config_from_dict({"data": {"name": name, "root": None if name == "digits" else str(tmp_path / name)}})
        served_from_device[name] = serves_from_device(build_image_data(cfg.data), cfg)
        assert bool(unread_overrides(cfg, ["data.num_workers=2"])) == served_from_device[name], name
    assert sorted(served_from_device.values()) == [False, False, True, True, True, True]


def test_a_new_run_refuses_cifar10_asymmetric_noise_on_classes_that_are_not_cifar10s_in_order(tmp_path):
    from elr_mri.config import load_config
    from elr_mri.engine.start import train

    write_image_folder(tmp_path / "tree", [f"c{k}" for k in range(10)], per_class=2)
    config = Path(__file__).resolve().parents[1] / "configs/cifar10/elr_asym40.yaml"
    cfg = load_config(config, [f"data.root={tmp_path / 'tree'}", "data.name=imagefolder", "model.name=mlp",
                               "model.hidden=8", "data.num_workers=0", "train.epochs=1", "train.progress=false",
                               "train.tensorboard=false", "data.val_fraction=0.2", "data.normalization=auto"])
    with pytest.raises(ValueError, match="flips CIFAR-10's classes by position .* classes are c0, c1"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_clothing1m_config_without_imagenet_weights_says_it_trains_from_scratch(tmp_path, capsys):
    """The paper fine-tunes an ImageNet ResNet-50; a run from random weights is another experiment."""
    from elr_mri.config import load_config
    from elr_mri.engine.start import train

    write_clothing1m(tmp_path / "clothing1m")
    config = Path(__file__).resolve().parents[1] / "configs/clothing1m/elr.yaml"
    settings = [f"data.root={tmp_path / 'clothing1m'}", "data.num_workers=0", "model.name=mlp", "model.hidden=8",
                "data.balanced_batches=1", "train.epochs=1", "train.batch_size=4", "train.progress=false",
                "train.tensorboard=false"]
    train(load_config(config, settings), tmp_path / "run")
    assert "note: mlp starts from random weights (model.pretrained_checkpoint is unset)" in capsys.readouterr().err


def test_top5_accuracy_is_logged_above_five_classes_only(tmp_path):
    """At five classes every label is among the five most probable: a top-5 column would read 100% whatever the
    network learned (metrics.csv's test_top5, which the WebVision table reports)."""
    from elr_mri.config import ModelConfig
    from elr_mri.distributed import DistContext
    from elr_mri.engine.execution import ExecutionPlan
    from elr_mri.engine.feeding import BatchFeeder
    from elr_mri.engine.methods import build_method
    from elr_mri.engine.split_scores import scores_on_test_sets

    cpu, columns = torch.device("cpu"), {}
    for count in (5, 6):
        write_image_folder(tmp_path / str(count), [f"c{k}" for k in range(count)], per_class=2)
        cfg = RunConfig(data=DataConfig(name="imagefolder", root=str(tmp_path / str(count)), augment=False),
                        model=ModelConfig(name="mlp", hidden=8))
        data = build_image_data(cfg.data)
        method = build_method(cfg, data.input_shape, data.num_classes, len(data.train),
                              ExecutionPlan.from_config(cfg.train, cpu))
        columns[count] = set(scores_on_test_sets(method, BatchFeeder(data, cfg, DistContext(), cpu), data))
    assert columns == {5: {"test_acc"}, 6: {"test_acc", "test_top5"}}


def test_a_random_crop_wider_than_its_image_is_refused_naming_both_sizes():
    """Only the width too large: torch's randint would have failed with words about its own bounds."""
    with pytest.raises(ValueError, match="^cannot crop 4×20 from an image of 10×12$"):
        RandomCrop((4, 20))(torch.zeros(3, 10, 12))


def test_load_resized_scales_the_shorter_side_and_truncates_the_longer_as_torchvision(tmp_path):
    """4×7 to a shorter side of 2: the longer 7 · 2 / 4 = 3.5 is cut to 3 (torchvision's Resize(int) truncates)."""
    for (width, height), shape in (((4, 7), (3, 3, 2)), ((7, 4), (3, 2, 3))):
        Image.new("RGB", (width, height), (90, 120, 150)).save(tmp_path / "image.png")
        assert tuple(load_resized(tmp_path / "image.png", 2).shape) == shape
