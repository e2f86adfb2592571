"""Device-resident batches against the per-item reference transforms (CPU; CUDA when marked gpu).

Every augmented image of either path must be exactly one of the 9 × 9 crop offsets × {flipped,
not} of its source image, computed here from the zero-padded image. That identifies the draw, so
the two paths' distributions are compared cell by cell.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from test_image_data import write_cifar10

from elr_mri.config import DataConfig, NoiseConfig
from elr_mri.data.device_batches import AugmentSpec, DeviceImageBatches, supports_device_batches
from elr_mri.data.image_transforms import CenterCrop, Compose, Normalize, RandomCrop, ToFloat
from elr_mri.data.images import CIFAR_PADDING, ImageFiles, NoisyImageData, build_image_data
from elr_mri.distributed import GlobalBatchSampler

CELLS = (2 * CIFAR_PADDING + 1) ** 2 * 2  # 81 offsets × {not flipped, flipped}
DRAWS = 100 * CELLS  # about 100 expected per cell
# Two-sample chi-square over the 162 cells, 161 degrees of freedom: a correct implementation exceeds
# this with probability 1e-4 (the draws are seeded, so the test itself is deterministic), while a
# flip probability of 0.6 instead of 0.5 alone adds about DRAWS · 0.04 / 2 ≈ 320 to the statistic.
CHI2_LIMIT = stats.chi2.ppf(1 - 1e-4, CELLS - 1)
devices = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> NoisyImageData:
    """The real CIFAR-10 pipeline on 200 random images: 160 train (augmented), 40 val, 40 test."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, per_batch=40)
    noise = NoiseConfig(mode="symmetric", rate=0.4, seed=3)
    return build_image_data(DataConfig(name="cifar10", root=str(root), val_fraction=0.2, noise=noise))


def candidates(image: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """All (CELLS, C, H, W) outputs the train pipeline can give for `image`; cell = 2·(9·top + left) + flip."""
    channels, height, width = image.shape
    padded = F.pad(ToFloat()(image), [spec.padding] * 4)
    windows = padded.unfold(1, height, 1).unfold(2, width, 1)  # (C, tops, lefts, H, W)
    crops = windows.permute(1, 2, 0, 3, 4).reshape(-1, channels, height, width)
    outputs = torch.stack([crops, crops.flip(-1)], dim=1).flatten(0, 1)
    return Normalize(spec.mean, spec.std)(outputs)


def identify(outputs: torch.Tensor, options: torch.Tensor) -> torch.Tensor:
    """The cell of each output among `options` (same source image), checking exact equality."""
    direction = torch.randn(options[0].numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    keys = options.flatten(1).double() @ direction
    cells = (outputs.flatten(1).double() @ direction)[:, None].sub(keys).abs().argmin(1)
    assert torch.equal(outputs, options[cells]), "an output is not a crop/flip of its source image"
    return cells


def device_cells(cifar: NoisyImageData, spec: AugmentSpec, seed: int) -> torch.Tensor:
    """Cells of DRAWS device-path augmentations of training image 0."""
    batches = DeviceImageBatches(cifar.train.images, cifar.train.labels, spec, "cpu")
    index_batches = [[0] * 1800] * (DRAWS // 1800)
    images = torch.cat([b["image"] for b in batches.batches(index_batches, batches.generator(seed))])
    return identify(images, candidates(cifar.train.images[0], AugmentSpec.from_transform(cifar.train.transform)))


@pytest.fixture(scope="module")
def reference_cells(cifar: NoisyImageData) -> torch.Tensor:
    """Cells of DRAWS per-item augmentations of training image 0 (torch's global generator)."""
    torch.manual_seed(0)
    images = torch.stack([cifar.train[0]["image"] for _ in range(DRAWS)])
    return identify(images, candidates(cifar.train.images[0], AugmentSpec.from_transform(cifar.train.transform)))


def two_sample_chi2(first: torch.Tensor, second: torch.Tensor) -> float:
    """Σ (a − b)² / (a + b) over cells: chi-square with CELLS − 1 df for two equal-sized samples."""
    a, b = (torch.bincount(cells, minlength=CELLS).double() for cells in (first, second))
    seen = (a + b) > 0
    return float(((a - b)[seen] ** 2 / (a + b)[seen]).sum())


def test_spec_is_read_from_the_data_sets_transforms(cifar):
    train = AugmentSpec.from_transform(cifar.train.transform)
    assert (train.crop_size, train.padding, train.flip_p) == ((32, 32), CIFAR_PADDING, 0.5)
    assert torch.equal(torch.tensor(train.mean), cifar.train.transform.steps[-1].mean.flatten())
    assert replace(train, crop_size=None, padding=0, flip_p=0.0) == AugmentSpec.from_transform(cifar.val.transform)
    assert not AugmentSpec.from_transform(cifar.test.transform).augments
    with pytest.raises(ValueError, match="CenterCrop"):
        AugmentSpec.from_transform(Compose([ToFloat(), CenterCrop(24)]))
    with pytest.raises(ValueError, match="expected ToFloat"):
        AugmentSpec.from_transform(Compose([cifar.train.transform.steps[-1], ToFloat()]))


@pytest.mark.parametrize("steps", [[RandomCrop(4)], [Normalize([0.5], [0.5])], [ToFloat(), ToFloat()],
                                   [ToFloat(), RandomCrop(4), RandomCrop(2)]])
def test_a_pipeline_not_starting_with_to_float_or_repeating_a_step_is_refused(steps: list) -> None:
    """The device path always scales to [0, 1] first and runs each step once: a transform that leaves uint8 pixels
    unscaled, or crops twice, would get other pixels on the device than per item, so it is refused."""
    with pytest.raises(ValueError, match="expected ToFloat"):
        AugmentSpec.from_transform(Compose(steps))


@pytest.mark.parametrize("given", [{"mean": (0.5,)}, {"std": (0.25,)}])
def test_a_normalisation_needs_its_mean_and_std_together(given: dict) -> None:
    with pytest.raises(ValueError, match="give the normalisation's mean and std together, or neither"):
        AugmentSpec(**given)


def test_which_data_sets_are_supported(cifar):
    assert supports_device_batches(cifar)
    assert supports_device_batches(build_image_data(DataConfig(name="digits")))  # float32 pixels, no Normalize
    files = ImageFiles(np.array(["a.jpg", "b.jpg"]), np.array([0, 1]), cifar.val.transform, 256)
    assert not supports_device_batches(replace(cifar, test=files))
    assert not supports_device_batches(replace(cifar, val=None, test=None, train=files))
    cropped = build_image_data(DataConfig(name="digits"))
    cropped.test.transform = Compose([ToFloat(), CenterCrop(6)])
    assert not supports_device_batches(cropped)


def test_crop_offsets_and_flips_have_the_reference_distribution(cifar, reference_cells):
    spec = AugmentSpec.from_transform(cifar.train.transform)
    device, reference = device_cells(cifar, spec, seed=0), reference_cells
    uniform = 1e-4  # both paths draw every offset and flip with equal probability
    assert stats.chisquare(torch.bincount(device, minlength=CELLS).numpy()).pvalue > uniform
    assert stats.chisquare(torch.bincount(reference, minlength=CELLS).numpy()).pvalue > uniform
    assert two_sample_chi2(device, reference) < CHI2_LIMIT
    flips = (device % 2).double().mean()
    assert abs(flips - 0.5) < 4 * (0.25 / DRAWS) ** 0.5


def test_the_comparison_catches_a_biased_flip(cifar, reference_cells):
    biased = replace(AugmentSpec.from_transform(cifar.train.transform), flip_p=0.6)
    assert two_sample_chi2(device_cells(cifar, biased, seed=0), reference_cells) > CHI2_LIMIT


def test_pixel_statistics_match_the_reference(cifar):
    """Per-channel mean and std of 30 augmented epochs agree within 5 standard errors.

    Both paths see each image 30 times, so only the augmentation differs; the standard error of
    the difference is taken over per-image-draw statistics (conservative: it includes between-image
    spread, which the two paths share).
    """
    epochs, train = 30, cifar.train
    torch.manual_seed(1)
    reference = torch.stack([train[i]["image"] for _ in range(epochs) for i in range(len(train))])
    batches = DeviceImageBatches.from_dataset(train, "cpu")
    order = [list(range(len(train)))] * epochs
    device = torch.cat([b["image"] for b in batches.batches(order, batches.generator(1))])
    for statistic in (torch.mean, torch.std):
        ref, dev = statistic(reference, dim=(2, 3)), statistic(device, dim=(2, 3))  # (draws, C)
        error = (ref.var(0) / len(ref) + dev.var(0) / len(dev)).sqrt()
        assert ((ref.mean(0) - dev.mean(0)).abs() < 5 * error).all()
    padded = (device == (-torch.tensor(batches.spec.mean) / torch.tensor(batches.spec.std)).view(1, 3, 1, 1))
    assert padded.all(1).any((1, 2)).float().mean() > 0.5  # zero padding shows in most crops, as in the reference


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_evaluation_is_bitwise_the_per_item_evaluation_transform(cifar, split):
    dataset = getattr(cifar, split)
    batches = DeviceImageBatches(dataset.images, dataset.labels, AugmentSpec.from_transform(cifar.val.transform), "cpu")
    expected = torch.stack([cifar.val.transform(image) for image in dataset.images])
    in_order = list(batches.in_order(batch_size=16))
    assert [len(b["index"]) for b in in_order] == [min(16, len(dataset) - s) for s in range(0, len(dataset), 16)]
    assert torch.equal(torch.cat([b["image"] for b in in_order]), expected)
    assert torch.equal(torch.cat([b["index"] for b in in_order]), torch.arange(len(dataset)))
    assert torch.equal(torch.cat([b["label"] for b in in_order]), torch.from_numpy(dataset.labels))
    shuffled = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    (batch,) = batches.batches([shuffled])  # without augmentation no generator is needed
    assert torch.equal(batch["image"], expected[shuffled]) and torch.equal(batch["index"], shuffled)


def test_digits_float_pixels_pass_through_like_the_per_item_path():
    data = build_image_data(DataConfig(name="digits"))
    batches = DeviceImageBatches.from_dataset(data.train, "cpu")
    (batch,) = batches.in_order(batch_size=len(data.train))
    assert torch.equal(batch["image"], torch.stack([data.train[i]["image"] for i in range(len(data.train))]))


@pytest.mark.parametrize("device", devices)
def test_an_epoch_of_global_batches_lines_up_with_the_data_set(cifar, device):
    train, world = cifar.train, 2
    spec = AugmentSpec.from_transform(train.transform)
    batches = DeviceImageBatches.from_dataset(train, device)
    seen = []
    for rank in range(world):
        sampler = GlobalBatchSampler(len(train), 48, torch.Generator().manual_seed(7), rank, world)
        produced = list(batches.batches(sampler, batches.generator(rank)))
        assert len(produced) == len(sampler) == 4  # 160 = 3 × 48 + 16: the short tail is kept
        assert [b["index"].tolist() for b in produced] == list(sampler)
        for batch in produced:
            assert batch["image"].device.type == batch["label"].device.type == batch["index"].device.type == device
            assert batch["image"].dtype == torch.float32 and batch["label"].dtype == batch["index"].dtype == torch.int64
            index = batch["index"].cpu()
            assert torch.equal(batch["label"].cpu(), torch.from_numpy(train.labels)[index])
            for position, image in zip(index.tolist(), batch["image"].cpu()):
                identify(image[None], candidates(train.images[position], spec))  # a crop of its own image
            seen += index.tolist()
    assert sorted(seen) == list(range(len(train)))  # every index of the epoch exactly once


@pytest.mark.parametrize("device", devices)
def test_serving_an_epoch_never_waits_for_the_device(cifar, device, no_host_waits):
    batches = DeviceImageBatches.from_dataset(cifar.train, device)
    sampler = GlobalBatchSampler(len(cifar.train), 32, torch.Generator().manual_seed(1))
    generator = batches.generator(0)
    next(batches.batches(sampler.parts_on(device), generator))  # first-call set-up is not what we look at
    with no_host_waits(device):  # the feeder's index tensors: the epoch's order copied to the device once
        served = list(batches.batches(sampler.parts_on(device), generator)) + list(batches.in_order(64))
    assert len(served) == len(sampler) + 3
    assert torch.equal(torch.cat([batch["index"] for batch in served[:len(sampler)]]).cpu(), sampler.order)


def test_a_seeded_generator_reproduces_the_epoch(cifar):
    batches = DeviceImageBatches.from_dataset(cifar.train, "cpu")
    order = [list(range(0, 80)), list(range(80, 160))]

    def epoch(seed: int) -> torch.Tensor:
        return torch.cat([b["image"] for b in batches.batches(order, batches.generator(seed))])

    assert torch.equal(epoch(5), epoch(5))
    assert not torch.equal(epoch(5), epoch(6))
    with pytest.raises(ValueError, match="generator"):
        next(batches.batches(order))


def test_channels_last_output(cifar):
    plain = DeviceImageBatches.from_dataset(cifar.train, "cpu")
    last = DeviceImageBatches.from_dataset(cifar.train, "cpu", channels_last=True)
    order = [list(range(32))]
    (a,), (b,) = plain.batches(order, plain.generator(0)), last.batches(order, last.generator(0))
    assert a["image"].is_contiguous() and b["image"].is_contiguous(memory_format=torch.channels_last)
    assert not b["image"].is_contiguous()
    assert torch.equal(a["image"], b["image"])


@pytest.mark.parametrize("channels_last", [False, True])
def test_compiled_assembly_gives_the_eager_batches(cifar: NoisyImageData, channels_last: bool) -> None:
    """`train.compile_step` compiles the augmented batches' assembly: the same pixels from the same draws, in one
    graph for the full batch size (a short last batch is assembled eagerly)."""
    from torch._dynamo.utils import counters

    from elr_mri.engine.execution import ExecutionPlan

    torch._dynamo.reset()
    counters.clear()
    eager = DeviceImageBatches.from_dataset(cifar.train, "cpu", channels_last)
    plan = ExecutionPlan(torch.device("cpu"), None, compile=True, channels_last=channels_last, compile_step=True)
    compiled = DeviceImageBatches.from_dataset(cifar.train, "cpu", channels_last, plan.compiled_function)
    order = [torch.randperm(len(eager), generator=torch.Generator().manual_seed(seed))[:32] for seed in range(3)]
    order.append(order[0][:7])
    for batch, other in zip(eager.batches(order, eager.generator(5)), compiled.batches(order, compiled.generator(5)),
                            strict=True):
        assert torch.equal(batch["image"], other["image"]) and torch.equal(batch["index"], other["index"])
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert batch["image"].is_contiguous(memory_format=layout)
        assert other["image"].stride() == batch["image"].stride()
    assert counters["stats"]["unique_graphs"] == 1


def flipped_share(flip_p: float, count: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, which were flipped) for `count` 4×4 images whose columns read 0, 1, 2, 3, augmented by a flip alone
    (no crop): a flipped image reads 3, 2, 1, 0, so its first column is brighter than its last."""
    images = torch.arange(4, dtype=torch.uint8).repeat(count, 1, 4, 1)
    batches = DeviceImageBatches(images, [0] * count, AugmentSpec(flip_p=flip_p), "cpu")
    (batch,) = batches.batches([list(range(count))], batches.generator(0))
    return batch["image"], batch["image"][:, 0, 0, 0] > batch["image"][:, 0, 0, -1]


def test_flip_probability_is_the_share_of_flipped_images() -> None:
    """flip_p is the chance of a flip, not of keeping the image: at 1 every image is mirrored, and at 0.25 about a
    quarter are (the CIFAR tests use 0.5, where the two readings cannot be told apart)."""
    images, flipped = flipped_share(1.0)
    unflipped = torch.arange(4, dtype=torch.float32).div(255).repeat(len(images), 1, 4, 1)
    assert flipped.all() and torch.equal(images, unflipped.flip(-1))
    _, flipped = flipped_share(0.25)
    assert abs(flipped.float().mean().item() - 0.25) < 0.05  # 4.7 standard deviations of 1000 draws


def test_a_non_square_crop_keeps_its_height_and_width_apart() -> None:
    """RandomCrop((h, w)) crops h rows and w columns at uniform offsets, per item and on the device alike: an 8×8
    image cropped (3, 5) gives 3×5 windows of it, at all 6 × 4 offsets."""
    image = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8)
    spec = AugmentSpec.from_transform(Compose([ToFloat(), RandomCrop((3, 5))]))
    batches = DeviceImageBatches(image.repeat(200, 1, 1, 1), [0] * 200, spec, "cpu")
    windows = {(t, l): image[0, :, t : t + 3, l : l + 5].float() / 255 for t in range(6) for l in range(4)}
    (batch,) = batches.batches([list(range(200))], batches.generator(0))
    hits = [[o for o, window in windows.items() if torch.equal(crop, window)] for crop in batch["image"]]
    assert all(hits) and {o for found in hits for o in found} == set(windows)


@pytest.mark.parametrize("shape", [(1, 1, 8, 4), (1, 1, 4, 8)])
def test_a_crop_wider_or_higher_than_the_padded_image_is_refused_in_words(shape: tuple[int, ...]) -> None:
    """A crop that does not fit along one axis is refused naming both sizes, not left to torch's randint error."""
    crop = (6, 6)
    batches = DeviceImageBatches(torch.zeros(shape, dtype=torch.uint8), [0], AugmentSpec(crop_size=crop), "cpu")
    with pytest.raises(ValueError, match=f"^cannot crop 6×6 from an image of {shape[2]}×{shape[3]}$"):
        next(batches.batches([[0]], batches.generator(0)))


def test_each_ranks_slice_of_a_global_batch_gets_the_crops_one_process_gives_it(cifar) -> None:
    """Under torchrun each rank draws the crops of the whole global batch and keeps its slice's (`slice_positions`):
    an example is cropped and flipped alike whichever rank holds it, so K processes train on 1 process's batches."""
    batches = DeviceImageBatches.from_dataset(cifar.train, "cpu")

    def sampler(rank: int, world: int) -> GlobalBatchSampler:
        return GlobalBatchSampler(len(batches), 48, torch.Generator().manual_seed(7), rank, world)

    alone = [b["image"] for b in batches.batches(sampler(0, 1), batches.generator(3))]
    for rank in range(3):
        ranks = sampler(rank, 3)
        served = batches.batches(ranks, batches.generator(3), ranks.slice_positions())
        for whole, (size, start), batch in zip(alone, ranks.slice_positions(), served, strict=True):
            assert len(whole) == size and torch.equal(batch["image"], whole[start : start + len(batch["image"])])


def test_a_data_set_without_a_validation_split_is_still_served_on_the_device(cifar) -> None:
    """data.val_fraction 0 leaves no validation set: the train and test sets alone decide, so such a run is not
    sent back to the per-item loader, which spends most of a small-image step feeding the GPU."""
    assert supports_device_batches(replace(cifar, val=None))
