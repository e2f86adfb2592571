"""Noise models: realised rates, where flips go, determinism, and the error messages."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from elr_mri.config import NoiseConfig
from elr_mri.data.noise import (
    NOISE_MODES,
    apply_noise_config,
    inject_noise,
    load_human_labels,
    load_transition_matrix,
    require_cifar10_classes,
    torch_allows_named_globals,
    transition_matrix,
)

CIFAR10N = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar" / "CIFAR-10_human.npz"


def balanced_labels(num_classes: int, per_class: int) -> np.ndarray:
    """Shuffled labels with exactly `per_class` examples of each class."""
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(123).permutation(labels)


@pytest.fixture(scope="module")
def cifar10_like() -> np.ndarray:
    return balanced_labels(10, 5000)


@pytest.mark.parametrize("rate", [0.2, 0.4, 0.8])
def test_symmetric_includes_the_true_class(cifar10_like, rate):
    noisy, changed = inject_noise(cifar10_like, "symmetric", rate, 10, seed=0)
    # round(rate·N) are redrawn, one in ten of them lands back on its own class
    assert abs(changed.mean() - rate * 0.9) < 0.02


def test_symmetric_spreads_over_all_other_classes(cifar10_like):
    noisy, changed = inject_noise(cifar10_like, "symmetric", 0.4, 10, seed=1)
    flips = transition_matrix(noisy, cifar10_like, 10)
    off_diagonal = flips[~np.eye(10, dtype=bool)]
    np.testing.assert_allclose(off_diagonal, 0.04, atol=0.01)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.6, 1.0])
def test_symmetric_exclusive_changes_exactly_rate(cifar10_like, rate):
    noisy, changed = inject_noise(cifar10_like, "symmetric_exclusive", rate, 10, seed=0)
    assert changed.sum() == round(rate * cifar10_like.size)


def test_pair_moves_each_class_to_the_next(cifar10_like):
    noisy, changed = inject_noise(cifar10_like, "pair", 0.4, 10, seed=0)
    assert np.array_equal(noisy[changed], (cifar10_like[changed] + 1) % 10)
    for c in range(10):
        assert changed[cifar10_like == c].mean() == pytest.approx(0.4)


def test_asymmetric_cifar10_map_and_rate(cifar10_like):
    noisy, changed = inject_noise(cifar10_like, "asymmetric_cifar10", 0.4, 10, seed=0)
    expected = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    for c in range(10):
        members = cifar10_like == c
        if c in expected:
            assert changed[members].mean() == pytest.approx(0.4)
            assert set(noisy[members & changed]) == {expected[c]}
        else:
            assert not changed[members].any()
    # the official code's double flip leaves ≈24% of cats as dog; drawing from the clean labels gives 40%
    assert (noisy[cifar10_like == 3] == 5).mean() == pytest.approx(0.4)


def test_asymmetric_cifar10_official_flips_in_the_official_sequence(cifar10_like):
    """Cats flip first; dogs are then drawn from labels that include those cats, so some cats return."""
    noisy, changed = inject_noise(cifar10_like, "asymmetric_cifar10_official", 0.4, 10, seed=0)
    cats, dogs = cifar10_like == 3, cifar10_like == 5
    # 2000 cats to dog, then 40% of the 7000 "dogs" to cat: 800 of the cats (in expectation) go back
    assert (noisy[cats] == 5).mean() == pytest.approx(0.24, abs=0.02)
    assert (noisy[dogs] == 3).mean() == pytest.approx(0.4, abs=0.02)
    assert changed.mean() == pytest.approx(0.184, abs=0.005)
    for source, target in {9: 1, 2: 0, 4: 7}.items():  # no chain through these: exactly `rate`, as the other mode
        assert (noisy[cifar10_like == source] == target).mean() == pytest.approx(0.4)
    assert not changed[np.isin(cifar10_like, [0, 1, 6, 7, 8])].any()


def test_asymmetric_cifar100_stays_within_blocks_of_five():
    labels = balanced_labels(100, 50)
    noisy, changed = inject_noise(labels, "asymmetric_cifar100", 0.4, 100, seed=0)
    assert changed.mean() == pytest.approx(0.4)
    source, target = labels[changed], noisy[changed]
    assert np.array_equal(target // 5, source // 5)
    assert np.array_equal(target % 5, (source % 5 + 1) % 5)
    assert set(target[source == 4]) == {0} and set(target[source == 99]) == {95}
    with pytest.raises(ValueError, match="flips CIFAR-100's 100 classes in blocks of 5 by position, but this data "
                                         "set has 10"):  # digits trained with it, cycling 0→1→…→4→0
        inject_noise(balanced_labels(10, 50), "asymmetric_cifar100", 0.4, 10, seed=0)
    with pytest.raises(ValueError, match="but this data set has 200"):  # more classes than CIFAR-100's mean nothing too
        inject_noise(balanced_labels(200, 2), "asymmetric_cifar100", 0.4, 200, seed=0)


def test_transition_follows_the_matrix(cifar10_like):
    matrix = np.full((10, 10), 0.05) + 0.5 * np.eye(10)
    noisy, changed = inject_noise(cifar10_like, "transition", 0.0, 10, seed=0, transition=matrix)
    realised = transition_matrix(noisy, cifar10_like, 10)
    np.testing.assert_allclose(realised, matrix, atol=0.03)  # > 4 standard errors with 5,000 a class


@pytest.mark.parametrize("mode", [m for m in NOISE_MODES if m != "transition"])
def test_deterministic_mask_consistent_input_untouched(mode):
    classes = 100 if mode == "asymmetric_cifar100" else 10
    labels = balanced_labels(classes, 30)
    before = labels.copy()
    first, changed = inject_noise(labels, mode, 0.5, classes, seed=7)
    second, _ = inject_noise(labels, mode, 0.5, classes, seed=7)
    other, _ = inject_noise(labels, mode, 0.5, classes, seed=8)
    assert np.array_equal(first, second)
    assert np.array_equal(changed, first != labels)
    assert np.array_equal(labels, before)
    assert first.dtype == np.int64
    if mode != "none":
        assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.eye(3), "must be 10×10"),
        (np.full((10, 10), 0.2), "row 0 sums to 2"),
        (np.diag([1.0] * 3 + [0.99] + [1.0] * 6), "row 3 sums to 0.99"),  # a probability rounded down: 1% lost
        # the check's own words: numpy refuses such a row too, but only in a class that has examples
        (np.eye(10) * 2 - np.full((10, 10), 0.1), "transition matrix has negative entries"),
    ],
)
def test_transition_matrix_validation(matrix, message):
    with pytest.raises(ValueError, match=message):
        inject_noise(np.arange(10), "transition", 0.0, 10, seed=0, transition=matrix)


def test_transition_mode_needs_a_matrix():
    with pytest.raises(ValueError, match="needs a transition matrix"):
        inject_noise(np.arange(10), "transition", 0.0, 10, seed=0)


def test_bad_mode_rate_and_labels_are_value_errors():
    with pytest.raises(ValueError, match="allowed: none, symmetric, symmetric_exclusive, pair"):
        inject_noise(np.arange(10), "uniform", 0.4, 10, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inject_noise(np.arange(10), "symmetric", 1.5, 10, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        inject_noise(np.arange(11), "symmetric", 0.4, 10, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 10\), got -1\.\.9"):  # NumPy would index -1 as the last class
        inject_noise(np.arange(-1, 10), "pair", 0.4, 10, seed=0)
    for mode in ("asymmetric_cifar10", "asymmetric_cifar10_official"):
        with pytest.raises(ValueError, match=f"'{mode}' needs 10 classes"):
            inject_noise(np.arange(5), mode, 0.4, 5, seed=0)
        with pytest.raises(ValueError, match=f"'{mode}' needs 10 classes, got 100"):  # CIFAR-100: as meaningless
            inject_noise(np.arange(100), mode, 0.4, 100, seed=0)


def test_empirical_transition_matrix():
    clean = np.array([0, 0, 0, 0, 1, 1])
    noisy = np.array([0, 0, 0, 1, 1, 0])
    expected = np.array([[0.75, 0.25, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(transition_matrix(noisy, clean, 3), expected)


def test_human_labels_from_npz_and_pt(tmp_path):
    arrays = {"clean_label": np.array([0, 1, 2, 3]), "worse_label": np.array([1, 1, 2, 0])}
    np.savez(tmp_path / "human.npz", **arrays)
    torch.save(arrays, tmp_path / "human.pt")
    for name in ("human.npz", "human.pt"):
        labels = load_human_labels(tmp_path / name, "worse_label")
        assert labels.dtype == np.int64 and labels.tolist() == [1, 1, 2, 0]
    with pytest.raises(ValueError, match="no labels named 'worst'; available: clean_label, worse_label"):
        load_human_labels(tmp_path / "human.npz", "worst")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_human_labels(tmp_path / "missing.npz", "worse_label")


def test_a_human_label_pt_is_read_without_running_code_it_holds(tmp_path, code_in_a_pickle):
    """The .pt files were read with weights_only=False: a shared one ran whatever it held. Arrays of the release's
    NumPy 1 pickles (the shared copy), of NumPy 2's and of torch's legacy format load; anything else is refused."""
    arrays = {"clean_label": np.array([0, 1, 2]), "worse_label": np.array([1, 1, 0], dtype=np.uint8)}
    torch.save(arrays, tmp_path / "zipped.pt")
    torch.save(arrays, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("zipped.pt", "legacy.pt"):
        assert load_human_labels(tmp_path / name, "worse_label").tolist() == [1, 1, 0]
    release = CIFAR10N.with_suffix(".pt")
    if release.is_file():
        assert np.array_equal(load_human_labels(release, "worse_label"), load_human_labels(CIFAR10N, "worse_label"))
    code, ran = code_in_a_pickle
    torch.save({**arrays, "note": code}, tmp_path / "human.pt")
    with pytest.raises(ValueError) as refused:
        load_human_labels(tmp_path / "human.pt", "worse_label")
    assert str(refused.value) == (
        f"{tmp_path / 'human.pt'}: not loaded, as it holds Python objects ({os.mkdir.__module__}.mkdir) besides label "
        "arrays, which only running code from the file could make; use the official release (CIFAR-10N / "
        "CIFAR-100N), or save the arrays with numpy.savez as a .npz")
    assert not ran.exists()


@pytest.mark.parametrize(("version", "allows"), [("2.4.1", False), ("2.5.1+cu124", False), ("2.6.0", True),
                                                 ("2.13.0+cpu", True), ("3.0.0a0", True)])
def test_a_human_label_pt_needs_a_torch_that_allows_numpys_arrays_by_their_pickled_names(version, allows):
    """pyproject allows torch 2.4, whose safe globals take no (object, name) entries: a .pt load failed there as a
    damaged file ("download the label file again"); it is told which torch reads it."""
    assert torch_allows_named_globals(version) is allows


def test_a_human_label_file_under_the_other_suffix_is_told_to_be_renamed(tmp_path):
    """CIFAR-10N's .pt saved as .npz offered 'archive/data.pkl' as a human_key; its .npz saved as .pt was called
    damaged ('download the label file again'), though a rename was all it needed."""
    arrays = {"clean_label": np.array([0, 1]), "worse_label": np.array([1, 1])}
    torch.save(arrays, tmp_path / "zipped.npz")
    torch.save(arrays, tmp_path / "legacy.npz", _use_new_zipfile_serialization=False)
    np.savez(tmp_path / "human.pt", **arrays)
    (tmp_path / "human.pt.npz").rename(tmp_path / "human.pt")  # np.savez appends .npz to any other suffix
    for name in ("zipped.npz", "legacy.npz"):
        with pytest.raises(ValueError, match=rf"^{tmp_path / name}: holds a PyTorch file \(.pt\), not a NumPy archive "
                                             rf"\(.npz\); rename it to {name[:-4]}.pt$"):
            load_human_labels(tmp_path / name, "worse_label")
    with pytest.raises(ValueError, match=r"human.pt: holds a NumPy archive \(.npz\), not a PyTorch file \(.pt\); "
                                         r"rename it to human.npz$"):
        load_human_labels(tmp_path / "human.pt", "worse_label")


@pytest.mark.parametrize("worse", [[0.0, 0.5, 3.7], [0, -1, 2], ["0", "1", "2"]])
def test_human_labels_that_are_no_class_numbers_are_refused_naming_file_and_key(tmp_path, worse):
    """A cast to int64 read 3.7 as class 3 and 0.5 as class 0, silently training on other labels."""
    np.savez(tmp_path / "human.npz", worse_label=np.array(worse))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'human.npz'}: 'worse_label' holds .*not( a)? class number"):
        load_human_labels(tmp_path / "human.npz", "worse_label")


@pytest.mark.parametrize(("clean", "refusal"), [
    ([0.0, np.nan, 1.0], r"'clean_label' holds nan at position 1 \(1 such\), not a class number"),
    (["0", "1", "0"], r"'clean_label' holds <U1 values, not class numbers"),
    ([0, 1], r"'clean_label' holds 2 labels and 'worse_label' 3, where both label the release's training images"),
    ([0, 1, 0, 1], r"'clean_label' holds 4 labels and 'worse_label' 3, where both label the release's training"),
])
def test_a_damaged_clean_label_beside_the_human_labels_is_refused_naming_file_and_key(tmp_path, clean, refusal):
    """The file's clean_label, which checks the images' order, was used unchecked: a NaN stopped training with
    "cannot convert float NaN to integer", a shorter array with a bare IndexError, naming neither file nor key. It is
    refused by the first read too, which training makes before decoding an image."""
    np.savez(tmp_path / "human.npz", clean_label=np.array(clean), worse_label=np.array([1, 0, 1]))
    config = NoiseConfig(mode="human", human_labels=str(tmp_path / "human.npz"))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'human.npz'}: {refusal}"):
        apply_noise_config(config, np.array([0, 1, 0]), 2, release_index=np.arange(3))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'human.npz'}: {refusal}"):
        load_human_labels(tmp_path / "human.npz", "worse_label")


def test_a_human_label_past_the_last_class_is_refused_even_on_an_image_left_out(tmp_path):
    np.savez(tmp_path / "human.npz", worse_label=np.array([1, 0, 10]))
    config = NoiseConfig(mode="human", human_labels=str(tmp_path / "human.npz"))
    with pytest.raises(ValueError, match=r"human.npz: 'worse_label' holds label 10, outside the data set's 10 classes "
                                         r"\(0 to 9\)"):
        apply_noise_config(config, np.zeros(2, dtype=np.int64), 10, original_index=np.array([0, 1]))


def test_noise_config_human_uses_original_index(tmp_path):
    np.savez(tmp_path / "human.npz", worse_label=np.array([5, 6, 7, 8, 9]))
    config = NoiseConfig(mode="human", human_labels=str(tmp_path / "human.npz"))
    noisy = apply_noise_config(config, np.zeros(2, dtype=np.int64), 10, original_index=np.array([4, 1]))
    assert noisy.tolist() == [9, 6]
    with pytest.raises(ValueError, match="does not belong to this data set"):
        apply_noise_config(config, np.zeros(1, dtype=np.int64), 10, original_index=np.array([5]))


def test_a_human_label_file_longer_than_a_whole_data_set_is_not_called_a_partial_extraction(tmp_path):
    """A file of 50,010 labels on all 50,000 CIFAR-10 JPEGs was refused as 'extracted in part?; extract the data set
    again', which changes nothing: every image was there, and it is the file that runs past the last one."""
    np.savez(tmp_path / "human.npz", clean_label=np.array([0, 1, 0, 1, 0, 1]), worse_label=np.array([1, 1, 0, 0, 1, 1]))
    config = NoiseConfig(mode="human", human_labels=str(tmp_path / "human.npz"))
    with pytest.raises(ValueError, match=r"human.npz: holds 6 labels, 2 more than the data set's 4 training images "
                                         r"\(original index 0 to 3\); the label file belongs to another data set"):
        apply_noise_config(config, np.array([0, 1, 0, 1]), 2, release_index=np.arange(4))
    with pytest.raises(ValueError, match=r"but 1 of them are not in the data set \(e.g. original index 2; extracted "
                                         r"in part\?\)"):  # an image missing between others: the folder lacks it
        apply_noise_config(config, np.array([0, 1, 1, 0, 1]), 2, original_index=np.array([0, 1, 3, 4, 5]),
                           release_index=np.array([0, 1, 3, 4, 5]))
    with pytest.raises(ValueError, match=r"but 3 of them are not in the data set \(e.g. original index 2; extracted "
                                         r"in part\?\)"):  # one missing between others, two after: still a part
        apply_noise_config(config, np.array([0, 1, 1]), 2, original_index=np.array([0, 1, 3]),
                           release_index=np.array([0, 1, 3]))


def test_cifar100n_coarse_labels_are_refused_for_the_fine_classes(tmp_path):
    np.savez(tmp_path / "human.npz", noisy_coarse_label=np.array([3, 19]), noisy_label=np.array([40, 99]))
    config = NoiseConfig(mode="human", human_labels=str(tmp_path / "human.npz"), human_key="noisy_coarse_label")
    with pytest.raises(ValueError, match=r"coarse .* cannot label the 100 classes of this data set; use noisy_label"):
        apply_noise_config(config, np.zeros(2, dtype=np.int64), 100)
    with pytest.raises(ValueError, match=r"coarse .* cannot label the 10 classes of this data set"):
        apply_noise_config(config, np.zeros(2, dtype=np.int64), 10)  # nor CIFAR-10's: only 20 superclasses


def test_noise_config_transition_reads_csv_and_npy(tmp_path):
    matrix = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.savetxt(tmp_path / "t.csv", matrix, delimiter=",")
    np.save(tmp_path / "t.npy", matrix)
    for name in ("t.csv", "t.npy"):
        np.testing.assert_array_equal(load_transition_matrix(tmp_path / name), matrix)
        config = NoiseConfig(mode="transition", transition_matrix=str(tmp_path / name))
        assert apply_noise_config(config, np.array([0, 1, 1]), 2).tolist() == [1, 0, 0]
    (tmp_path / "words.csv").write_text("0.9,0.1\nhalf,0.5\n")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'words.csv'}: not a readable transition matrix"):
        load_transition_matrix(tmp_path / "words.csv")


def test_noise_config_symmetric_matches_inject_noise():
    labels = balanced_labels(10, 100)
    config = NoiseConfig(mode="symmetric", rate=0.4, seed=3)
    expected, _ = inject_noise(labels, "symmetric", 0.4, 10, seed=3)
    assert np.array_equal(apply_noise_config(config, labels, 10), expected)


@pytest.mark.skipif(not CIFAR10N.is_file(), reason="CIFAR-10N labels not in ../shared/data")
def test_real_cifar10n_worse_label():
    clean = load_human_labels(CIFAR10N, "clean_label")
    worse = load_human_labels(CIFAR10N, "worse_label")
    assert clean.shape == worse.shape == (50000,)
    assert (worse != clean).mean() == pytest.approx(0.402, abs=0.001)


def test_noise_config_human_refuses_misaligned_images(tmp_path):
    np.savez(tmp_path / "human.npz", clean_label=np.array([0, 1, 2]), worse_label=np.array([1, 1, 0]))
    config = NoiseConfig(mode="human", human_labels=str(tmp_path / "human.npz"))
    assert apply_noise_config(config, np.array([2, 0]), 3, original_index=np.array([2, 0])).tolist() == [0, 1]
    with pytest.raises(ValueError, match="disagrees with the data set's labels on 2 of 2 images"):
        apply_noise_config(config, np.array([0, 2]), 3, original_index=np.array([2, 0]))
    with pytest.raises(ValueError, match=r"its labels name 3 classes and the data set has 2; the file belongs "
                                         r"to another data set \(CIFAR-10N's file for CIFAR-10"):
        apply_noise_config(config, np.array([0, 1]), 2, original_index=np.array([0, 1]))  # CIFAR-100N on CIFAR-10
    with pytest.raises(ValueError, match=r"its labels name 3 classes and the data set has 4; the file belongs"):
        apply_noise_config(config, np.array([0, 1]), 4, original_index=np.array([0, 1]))  # CIFAR-10N on CIFAR-100


def test_an_empty_transition_matrix_file_names_the_setting(tmp_path, recwarn):
    from elr_mri.config import NoiseConfig
    from elr_mri.data.noise import apply_noise_config

    (tmp_path / "empty.csv").write_text("")
    noise = NoiseConfig(mode="transition", transition_matrix=str(tmp_path / "empty.csv"))
    with pytest.raises(ValueError, match=rf"data.noise.transition_matrix = {tmp_path / 'empty.csv'}: transition "
                                         r"matrix must be 10×10, got shape \(0, 1\)"):
        apply_noise_config(noise, np.arange(20) % 10, 10)
    assert not [w for w in recwarn if "loadtxt" in str(w.message)]


def test_symmetric_count_is_rounded_not_truncated() -> None:
    """0.5 · 7 = 3.5 labels: round gives 4 (Python rounds halves to even, and 4 is even), truncation 3. On small data
    sets the count must be round(rate·N), as the docstring and `test_symmetric_exclusive_changes_exactly_rate` say."""
    _, changed = inject_noise(np.zeros(7, dtype=np.int64), "symmetric_exclusive", 0.5, 10, seed=0)
    assert changed.sum() == 4


def test_symmetric_exclusive_lands_on_every_other_class_equally(cifar10_like):
    """The count alone would pass an offset that never reaches one class; 40% over nine others is 4.4% each."""
    noisy, _ = inject_noise(cifar10_like, "symmetric_exclusive", 0.4, 10, seed=0)
    flips = transition_matrix(noisy, cifar10_like, 10)
    np.testing.assert_allclose(flips[~np.eye(10, dtype=bool)], 0.4 / 9, atol=0.012)  # > 4 standard errors
    np.testing.assert_allclose(np.diag(flips), 0.6, atol=0.03)


def test_transition_redraws_each_label_from_its_own_row_not_column():
    """A cyclic matrix (each row sums to 1, and each column: transposed, it is still a valid matrix) sends every 0
    to 1, 1 to 2 and 2 to 0; read by column it would send them the other way round."""
    cycle = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    noisy, _ = inject_noise(np.array([0, 1, 2, 2]), "transition", 0.0, 3, seed=0, transition=cycle)
    assert noisy.tolist() == [1, 2, 0, 0]


def test_empirical_transition_matrix_rows_are_the_clean_class():
    """Row i is P(noisy | clean = i): class 1 kept, class 0 a quarter to 1. Transposed it would read a third of the
    1s as coming from 0, on data where no 1 ever changed."""
    clean = np.array([0, 0, 0, 0, 1, 1])
    noisy = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(transition_matrix(noisy, clean, 2), [[0.75, 0.25], [0.0, 1.0]])


def test_class_conditional_flip_counts_are_rounded_not_truncated() -> None:
    """round(rate·n_c) of each source class: 0.5 · 7 = 3.5 rounds to 4 (truncation: 3); 0.3 · 5 = 1.5 to 2 (1)."""
    _, changed = inject_noise(np.zeros(7, dtype=np.int64), "pair", 0.5, 10, seed=0)
    assert changed.sum() == 4
    cats = np.full(5, 3, dtype=np.int64)
    noisy, _ = inject_noise(cats, "asymmetric_cifar10", 0.3, 10, seed=0)
    assert (noisy == 5).sum() == 2


def test_symmetric_noise_falls_on_every_class_of_a_set_sorted_by_class():
    """An image folder lists its examples class by class: the round(rate·N) redrawn are drawn from the whole set,
    so each class loses ≈ rate·9/10 of its labels, not the first classes all of theirs."""
    by_class = np.repeat(np.arange(10), 1000)
    _, changed = inject_noise(by_class, "symmetric", 0.4, 10, seed=0)
    np.testing.assert_allclose([changed[by_class == c].mean() for c in range(10)], 0.36, atol=0.05)


@pytest.mark.parametrize("mode", ["asymmetric_cifar10", "asymmetric_cifar10_official"])
def test_both_cifar10_asymmetric_modes_need_cifar10s_classes_in_its_order(mode):
    """Each flips truck→automobile, bird→airplane, deer→horse, cat↔dog by class position: on other classes, or on
    CIFAR-10's in another order, the same positions would flip other pairs."""
    cifar10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    require_cifar10_classes(NoiseConfig(mode=mode, rate=0.4), cifar10)
    for names in ([f"c{k}" for k in range(10)], sorted(cifar10, reverse=True)):
        with pytest.raises(ValueError, match=f"noise mode '{mode}' flips CIFAR-10's classes by position"):
            require_cifar10_classes(NoiseConfig(mode=mode, rate=0.4), names)
