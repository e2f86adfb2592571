"""SeededItems and example_seed: a training example's augmentation comes from (epoch seed, index, draw)."""

import numpy as np
import pytest
import torch

from elr_mri.data.image_transforms import Compose, RandomCrop, ToFloat
from elr_mri.data.images import InMemoryImages
from elr_mri.data.seeded_items import SeededItems, _mix64, example_seed

GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment of its state


def random_crops() -> InMemoryImages:
    """Four random 3×8×8 images, each read as a random 8×8 crop of it padded by 4: 81 offsets an item."""
    images = np.random.default_rng(0).integers(0, 256, size=(4, 3, 8, 8), dtype=np.uint8)
    return InMemoryImages(images, np.arange(4), Compose([ToFloat(), RandomCrop(8, padding=4)]))


def test_the_mixer_is_splitmix64s_output_function():
    """SplitMix64 (Steele et al. 2014; Vigna's reference splitmix64.c) seeded with 1234567 outputs these five numbers,
    the output function applied to the state after each increment."""
    outputs = [_mix64((1234567 + k * GOLDEN_GAMMA) % 2**64) for k in range(5)]
    assert outputs == [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
                       16408922859458223821]


def test_example_seeds_take_all_32_bits_and_a_later_draw_another():
    """MONAI's NumPy random states take seeds below 2**32; a hash spread over all of them puts about half of 1,000
    at or above 2**31. Draw 0 is the seed an example had before draws were counted."""
    seeds = [example_seed(epoch, index) for epoch in range(10) for index in range(100)]
    assert max(seeds) < 2**32 and sum(seed >= 2**31 for seed in seeds) > 400
    assert len(set(seeds)) == len(seeds)
    assert example_seed(3, 5, draw=0) == example_seed(3, 5)
    assert len({example_seed(3, 5, draw) for draw in range(4)}) == 4


def test_an_item_is_augmented_from_its_keys_epoch_seed_else_the_views():
    """An index alone takes the view's epoch seed and draw 0; (index, draw) its draw; (index, draw, epoch seed) that
    epoch, whatever the view was made with: one DataLoader serves every epoch."""
    images = random_crops()
    view = SeededItems(images, epoch_seed=7)

    def augmented(index: int, seed: int) -> torch.Tensor:
        return images.item(index, seed)["image"]

    assert not torch.equal(augmented(2, example_seed(7, 2)), augmented(2, example_seed(9, 2)))  # crops differ
    assert torch.equal(view[2]["image"], augmented(2, example_seed(7, 2)))
    assert torch.equal(view[(2, 1)]["image"], augmented(2, example_seed(7, 2, draw=1)))
    assert torch.equal(view[(2, 1, 9)]["image"], augmented(2, example_seed(9, 2, draw=1)))
    assert torch.equal(SeededItems(images)[(2, 0, 9)]["image"], augmented(2, example_seed(9, 2)))


def test_an_item_without_an_epoch_seed_is_refused_in_words():
    with pytest.raises(ValueError, match=r"^SeededItems needs an epoch seed: one given when it is made, or one in each "
                                         r"key$"):
        SeededItems(random_crops())[1]
