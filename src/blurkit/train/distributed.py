"""Data-parallel helpers: process-group set-up from ``torchrun`` variables, rank-sliced sampling, reductions.

``torchrun --nproc_per_node=N -m blurkit train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` then starts the process group (NCCL on CUDA,
gloo on CPU). Only rank 0 writes files; metrics are summed over ranks with :func:`all_reduce_sums`.

Blur and augmentation randomness is drawn for the *global* batch from a generator that every rank
seeds identically, and each rank keeps its own slice (:class:`StepRandom`), so an N-process run sees
exactly the images, blurs and flips of a 1-process run with the same global batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

__all__ = ["DistInfo", "setup", "teardown", "all_reduce_sums", "ResumableSampler", "StepRandom", "step_seed"]


@dataclass
class DistInfo:
    """Rank, world size and device of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available; use 'cpu' or 'auto'")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def setup(device: str = "auto") -> DistInfo:
    """Start (or join) the process group when ``WORLD_SIZE > 1`` and pick this rank's device.

    Backend: NCCL when the device is CUDA, gloo otherwise. An already initialised group is reused.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = _pick_device(device, local_rank)
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, False)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, False)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank, dev, True)


def teardown(info: DistInfo, finished: bool = True) -> None:
    """Destroy the process group if :func:`setup` created it.

    After a run that ``finished`` normally, the ranks meet at a barrier first, so that no rank tears
    its gloo connections down while a peer is still using them (a peer's transport thread would
    then abort the process). After an error there is no barrier: the other ranks may never reach it.
    """
    if info.initialized_here and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sums(values: list[float], info: DistInfo) -> list[float]:
    """Sum a list of numbers over ranks (float64 on the rank's device); identity for one process."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (same permutation per epoch and rank) that can start mid-epoch.

    With ``drop_last=True`` each rank's index list is cut to a multiple of ``per_rank_batch`` so
    that every optimizer step sees a full global batch on every rank. :meth:`set_start` skips the
    first ``n`` per-rank indices (used by ``--resume`` from a mid-epoch checkpoint).

    Rank ``r`` receives ``perm[r::world]``; its ``j``-th image is image ``j * world + r`` of the
    global ordering, so the global batch of step ``s`` is ``perm[s*G:(s+1)*G]`` for any world size.
    """

    def __init__(self, dataset_len: int, num_replicas: int, rank: int, *, seed: int, shuffle: bool = True,
                 per_rank_batch: int = 1, drop_last: bool = True) -> None:
        super().__init__(range(dataset_len), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.per_rank_batch = per_rank_batch
        self.cut = drop_last
        self.start = 0

    def set_start(self, n: int) -> None:
        self.start = int(n)

    def indices(self) -> list[int]:
        idx = list(super().__iter__())
        if self.cut:
            idx = idx[: len(idx) // self.per_rank_batch * self.per_rank_batch]
        return idx[self.start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        n = self.num_samples
        if self.cut:
            n = n // self.per_rank_batch * self.per_rank_batch
        return max(0, n - self.start)


_MASK = (1 << 63) - 1


def step_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed mixed from ``seed`` and integer keys (epoch, step, micro-step, purpose)."""
    h = (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK
    for k in keys:
        h ^= (int(k) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2)) & _MASK
        h = (h * 0xBF58476D1CE4E5B9) & _MASK
    return h


class StepRandom:
    """Random draws for one micro-batch, made for the step's global batch and sliced to this micro-batch.

    Args:
        seed: run seed; ``epoch``, ``step``: position in training (the same on every rank).
        micro: micro-batch index within the step (gradient accumulation), ``0 <= micro < accumulate``.
        local_batch: images in this rank's micro-batch; ``world_size``, ``rank``: as in DDP.
        device: where returned tensors live.
        accumulate: micro-batches per optimizer step.

    ``draw(fn)`` calls ``fn(global_batch, generator)`` with ``global_batch = local_batch * accumulate *
    world_size`` and a CPU ``torch.Generator`` seeded from ``(seed, epoch, step, call number)``, then
    keeps this micro-batch's rows. Image ``i`` of micro-batch ``m`` on rank ``r`` is row
    ``(m * local_batch + i) * world_size + r`` of the global batch, which is where
    :class:`ResumableSampler` puts it, so the draws of an image do not depend on the world size or
    on gradient accumulation (only on the global batch per optimizer step).
    """

    def __init__(self, seed: int, epoch: int, step: int, micro: int, local_batch: int, world_size: int = 1,
                 rank: int = 0, device: torch.device | str = "cpu", accumulate: int = 1) -> None:
        if not 0 <= micro < accumulate:
            raise ValueError(f"micro must be in [0, accumulate={accumulate}); got {micro}")
        self.seed, self.epoch, self.step, self.micro = seed, epoch, step, micro
        self.local_batch, self.world_size, self.rank, self.accumulate = local_batch, world_size, rank, accumulate
        self.device = torch.device(device)
        self._calls = 0

    @property
    def global_batch(self) -> int:
        return self.local_batch * self.accumulate * self.world_size

    def next_call(self) -> int:
        """Number of the next draw (1, 2, ...); keys fresh seeds for transforms with their own generator."""
        self._calls += 1
        return self._calls

    def generator(self) -> torch.Generator:
        """A fresh CPU generator for the next draw (identical on every rank and micro-batch)."""
        return torch.Generator().manual_seed(step_seed(self.seed, self.epoch, self.step, self.next_call()))

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """This micro-batch's rows of a global-batch tensor ``(global_batch, ...)``, on ``device``."""
        if t.shape[0] != self.global_batch:
            raise ValueError(f"expected {self.global_batch} rows (the global batch); got {t.shape[0]}")
        t = t.reshape(self.local_batch * self.accumulate, self.world_size, *t.shape[1:])
        lo = self.micro * self.local_batch
        return t[lo: lo + self.local_batch, self.rank].to(self.device)

    def draw(self, fn: Callable[[int, torch.Generator], torch.Tensor]) -> torch.Tensor:
        return self.take(fn(self.global_batch, self.generator()))

    def uniform(self, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """``(local_batch,)`` float32 uniform in ``[low, high)``."""
        return self.draw(lambda n, g: torch.rand(n, generator=g) * (high - low) + low)

    def choice(self, weights: torch.Tensor) -> torch.Tensor:
        """``(local_batch,)`` int64 indices drawn with probabilities ``weights`` (with replacement)."""
        w = torch.as_tensor(weights, dtype=torch.float64)
        return self.draw(lambda n, g: torch.multinomial(w, n, replacement=True, generator=g))
