"""Data-parallel training with PyTorch's own engine (torchrun + DistributedDataParallel).

`elr-mri train` started by `torchrun --nproc-per-node K` runs one process per GPU (NCCL) or per
CPU worker (gloo). Three things keep a K-process run equal to a 1-process run with the same
global batches: every rank walks the same global batch order and takes its own slice of each
batch (`GlobalBatchSampler`); each rank's loss is scaled by its share of the global batch, so
DDP's gradient average is the global mean even when slices differ in size; and the ELR target
table is updated with the whole global batch's predictions (`gather_rows`), so every rank holds
the same, exact table. Evaluation is shared out too: each rank scores its own run of whole evaluation
batches (`evaluation_rows`) with rank 0's BatchNorm statistics (`share_rank0_buffers`), and the predictions are
joined in the split's order, so every score is rank 0's alone over the whole split, as it was when every rank scored
all of it.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from elr_mri.stopping import terminating_by_default

__all__ = ["DistContext", "init_distributed", "gather_rows", "gather_objects", "scaled_to_global_batch",
           "mean_over_ranks", "GlobalBatchSampler", "NumberedDraws", "slice_bounds", "barrier", "leave_distributed",
           "part_rank_streams", "evaluation_rows", "share_rank0_buffers", "lost_another_process"]

RANK_SEED_STRIDE = 1_000_003  # between ranks' torch seeds; epochs step by 1, so no two (rank, epoch) pairs meet


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files (checkpoints, metrics, reports); the others only compute."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes in the environment; a plain run is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        with terminating_by_default():  # until every rank has joined, torchrun's SIGTERM must end a waiting one
            dist.init_process_group(backend=backend)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def gather_rows(*tensors: torch.Tensor, global_size: int | None = None) -> tuple[torch.Tensor, ...]:
    """Concatenate each tensor's rows over all ranks, in rank order; identity alone.

    With `global_size`, the size of the global batch these rows are this rank's slice of, every rank's
    slice length follows from `slice_bounds` on the host. Without it the ranks exchange their lengths,
    and reading those back makes the host wait for the device at every call."""
    if not _distributed():
        return tensors
    world = dist.get_world_size()
    lengths = _exchanged_lengths(tensors[0]) if global_size is None else _slice_lengths(tensors[0], global_size)
    longest = max(lengths)
    gathered = []
    for tensor in tensors:
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        gathered.append(torch.cat([part[:length] for part, length in zip(parts, lengths)]))
    return tuple(gathered)


def _slice_lengths(rows: torch.Tensor, global_size: int) -> list[int]:
    """Every rank's slice length of a global batch of `global_size`, as `GlobalBatchSampler` cut it."""
    world, rank = dist.get_world_size(), dist.get_rank()
    lengths = [stop - start for start, stop in (slice_bounds(global_size, r, world) for r in range(world))]
    if rows.shape[0] != lengths[rank]:
        raise ValueError(f"rank {rank} holds {rows.shape[0]} rows of a global batch of {global_size}, but "
                         f"GlobalBatchSampler gives it {lengths[rank]}: pass the global_batch_size its batches "
                         "came with")
    return lengths


def _exchanged_lengths(rows: torch.Tensor) -> list[int]:
    """Every rank's number of rows, exchanged through the process group and read back to the host."""
    length = torch.tensor([rows.shape[0]], device=rows.device)
    lengths = [torch.zeros_like(length) for _ in range(dist.get_world_size())]
    dist.all_gather(lengths, length)
    return [int(n.item()) for n in lengths]


def gather_objects(value: Any) -> list[Any]:
    """`value` of every rank, in rank order (picklable objects; a list of one alone)."""
    if not _distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def scaled_to_global_batch(loss: torch.Tensor, local_size: int, global_size: int | None) -> torch.Tensor:
    """A rank's mean loss × local/global batch size × world size: that makes DDP's gradient average equal the mean
    over the global batch, also when the slices are uneven. The global size comes with the batch
    (`GlobalBatchSampler.global_batch_sizes`) rather than from an all-reduce, whose read-back would make the host
    wait for the GPU at every step. A share of 1 (one process, or even slices) returns `loss` itself: the product
    would be the same bits for a kernel, and one in the backward pass, that the host queues every step."""
    if not _distributed():
        return loss
    if global_size is None:
        raise ValueError("under torchrun every training batch must carry its global_batch_size")
    share = local_size * dist.get_world_size() / global_size
    return loss if share == 1.0 else loss * share


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over all ranks (itself alone): one collective, for what is logged once an epoch."""
    if not _distributed():
        return tensor
    summed = tensor.clone()
    dist.all_reduce(summed)
    return summed / dist.get_world_size()


def evaluation_rows(num_examples: int, batch_size: int, context: DistContext) -> range:
    """The examples of this rank's run of whole evaluation batches of a split: a process scores each example in the
    batch one process puts it in, so its prediction is the same bits (a batch cut elsewhere could round otherwise).
    Rank order is the split's order; with fewer batches than ranks the last ranks get none."""
    batches = -(-num_examples // batch_size)
    first, last = slice_bounds(batches, context.rank, context.world_size)
    return range(first * batch_size, min(last * batch_size, num_examples))


def share_rank0_buffers(modules: list[torch.nn.Module]) -> None:
    """Give every rank rank 0's buffers (BatchNorm's running statistics), which rank 0 checkpoints: under DDP each
    rank's last training step updated its own from its own slice, so ranks scoring parts of a split would score
    them with different networks. Training is unchanged: DDP gives every forward pass rank 0's buffers anyway."""
    if not _distributed():
        return
    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    if _distributed():
        dist.barrier()


def leave_distributed() -> None:
    """Destroy the process group before the process exits, once the caller has dropped its DDP wrappers.

    A DDP wrapper still alive when the interpreter shut down aborted a rank that had finished, after the
    group was destroyed ("terminate called without an active exception", SIGABRT; a few 2-process gloo
    runs in a hundred on a 2-core CPU); freed beforehand, it did not.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # torch.compile's wrapper holds the DDP one in reference cycles: free it now, not at exit
        dist.destroy_process_group()


# what gloo's RuntimeError says when the rank at the other end of a collective has gone (2.13: "[.../gloo/transport/
# tcp/pair.cc:553] Connection closed by peer" when it exited, "pair.cc:537] Read error [...]: Connection reset by peer"
# when it was killed)
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer")


def lost_another_process(err: BaseException) -> bool:
    """Whether `err` is a collective that failed because another rank of the job ended (its own error, a kill, the
    out-of-memory killer) or its connection dropped: this rank's traceback would bury that rank's line. Only gloo's
    transport says so: a socket of this process's own (a DataLoader worker's) raises ConnectionResetError instead."""
    text = str(err)
    return isinstance(err, RuntimeError) and "gloo/transport" in text and any(gone in text for gone in _PEER_GONE)


def part_rank_streams(seed: int, epoch: int, context: DistContext) -> None:
    """Under torchrun, reseed torch's generators of every rank but the first, once the networks are built (every
    rank builds the same ones): from one seed each rank drew the same dropout masks and mixup pairings for the same
    positions of its slice, correlated noise a single process does not have. Rank 0 keeps a plain run's stream;
    NumPy's and Python's stay shared, so ELR+'s mixup weight is one per global batch, as in one process. `epoch`:
    where the streams part (a run's start, or a resume that could not give each rank its own saved state)."""
    if context.rank > 0:
        torch.manual_seed(seed + context.rank * RANK_SEED_STRIDE + epoch)


def slice_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank `rank`'s [start, stop) of a global batch of `size`: sizes differ by at most one, so no rank is left
    without examples (a ceil-sized share left the last of 4 ranks none of a batch of 9)."""
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class NumberedDraws(Sampler[list[tuple[int, int]]]):
    """The batches of `batches` with each index paired with how often the epoch's order drew that example before
    (0 unless drawn with replacement, as class-balanced batches are): counted over the global order, so the pair is
    the same on any rank, for `SeededItems` to augment a repeat draw anew."""

    def __init__(self, batches: GlobalBatchSampler) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.batches.order
        draws = _earlier_draws(order)
        for part in self.batches.own_parts():
            yield list(zip(order[part].tolist(), draws[part].tolist()))


def _earlier_draws(order: torch.Tensor) -> torch.Tensor:
    """For each position of `order`, how many earlier positions hold the same example: a stable sort groups each
    example's positions in order, and a position's draw is its distance from its group's first."""
    examples, positions = torch.sort(order, stable=True)
    ranked = torch.arange(len(order))
    first = torch.ones(len(order), dtype=torch.bool)
    first[1:] = examples[1:] != examples[:-1]
    group_start = torch.cummax(torch.where(first, ranked, torch.zeros_like(ranked)), dim=0).values
    draws = torch.empty_like(ranked)
    draws[positions] = ranked - group_start
    return draws


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's slice of each global batch of one epoch's order.

    The order is a permutation of the data set (or of `subset`, example indices), or `num_samples`
    class-balanced draws when `weights` are given; it depends only on `generator`, which the engine
    seeds with (seed, epoch), so every rank sees the same global batches and a resumed run sees the
    same ones again.
    """

    def __init__(self, num_examples: int, global_batch: int, generator: torch.Generator, rank: int = 0,
                 world_size: int = 1, weights: torch.Tensor | None = None, num_samples: int | None = None,
                 subset: torch.Tensor | None = None) -> None:
        if global_batch < world_size:
            raise ValueError(f"train.batch_size ({global_batch}) is the global batch; it must be at least "
                             f"the number of processes ({world_size})")
        if subset is not None:
            self.order = subset[torch.randperm(len(subset), generator=generator)]
        elif weights is None:
            self.order = torch.randperm(num_examples, generator=generator)
        else:
            self.order = torch.multinomial(weights, num_samples or num_examples, replacement=True, generator=generator)
        self.global_batch = global_batch
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[list[int]]:
        for part in self.own_parts():
            yield self.order[part].tolist()

    def parts_on(self, device: torch.device | str) -> Iterator[torch.Tensor]:
        """This rank's slices as index tensors on `device`, views of the epoch's order copied there once. Why not
        `iter(self)` for device-resident batches: each batch's list turned back into a tensor cost ~33 µs of host time
        (CIFAR's 128 indices, this CPU) and a copy from pageable memory, which CUDA may hold until the queue drains.
        Non-blocking, so torch adds no wait of its own (a blocking copy to a GPU waits for its queue to empty)."""
        order = self.order.to(device, non_blocking=True)
        for part in self.own_parts():
            yield order[part]

    def own_parts(self) -> Iterator[slice]:
        """This rank's slice of each global batch, as positions in the epoch's order."""
        for start, stop in self._batch_bounds():
            first, last = slice_bounds(stop - start, self.rank, self.world_size)
            yield slice(start + first, start + last)

    def __len__(self) -> int:
        return len(self.global_batch_sizes())

    def slice_positions(self) -> list[tuple[int, int]]:
        """(global batch size, where this rank's slice starts in that batch) for each batch, in order."""
        return [(size, slice_bounds(size, self.rank, self.world_size)[0]) for size in self.global_batch_sizes()]

    def global_batch_sizes(self) -> list[int]:
        """The size of each global batch this rank gets a slice of, in order."""
        return [stop - start for start, stop in self._batch_bounds()]

    def _batch_bounds(self) -> list[tuple[int, int]]:
        """[start, stop) of each global batch in the epoch's order. A tail too short to give every rank an example
        joins the batch before it: every rank must step together, and skipping it left those examples untrained
        that epoch (so K processes equal 1 unless the training set leaves such a tail)."""
        size = len(self.order)
        bounds = [(start, min(start + self.global_batch, size)) for start in range(0, size, self.global_batch)]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < self.world_size:
            bounds[-2:] = [(bounds[-2][0], size)]
        return [(start, stop) for start, stop in bounds if stop - start >= self.world_size]
