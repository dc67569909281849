"""The training data stream, indexed by optimisation step, so that resuming and re-sharding are exact.

The stream is an endless sequence of dataset indices made of consecutive "epochs" of ``N`` draws: a seeded
permutation of the dataset (uniform sampling) or ``N`` seeded draws with replacement from per-item weights
(class-balanced or mixture sampling). Micro-batch ``m`` of step ``s`` takes the ``B_micro`` stream positions from
``(s * accumulation + m) * B_micro``; rank ``r`` of ``R`` takes the contiguous rows ``r*b .. (r+1)*b`` of it.

So the global batch of a step does not depend on the number of ranks, and the stream position of a resumed run is
a function of its step: no sampler state needs saving. Each draw carries its stream position as the key of its
augmentations, so the same draw gets the same crop on any worker or rank.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from mjepa.pretrain_config import micro_batch_size
from mjepa.seeding import derived_generator

EPOCHS_KEPT = 4  # orders of epochs kept by a sampler: a step draws from at most two


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for each step from ``start_step`` and each micro-batch, this rank's ``[(index, position), ...]``."""

    def __init__(
        self,
        num_items: int,
        global_batch: int,
        accumulation: int,
        world_size: int,
        rank: int,
        seed: int,
        start_step: int,
        total_steps: int,
        weights: torch.Tensor | None = None,
    ) -> None:
        if num_items < 1:
            raise ValueError(f"the dataset is empty: num_items={num_items}")
        micro_batch_size(global_batch, accumulation, world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size})")
        if weights is not None and (weights.dim() != 1 or weights.numel() != num_items):
            raise ValueError(f"weights must have one value per item ({num_items}), got shape {tuple(weights.shape)}")
        self.num_items, self.accumulation = num_items, accumulation
        self.micro_global = global_batch // accumulation
        self.per_rank = self.micro_global // world_size
        self.rank, self.seed = rank, seed
        self.start_step, self.total_steps = start_step, total_steps
        self.weights = None if weights is None else weights.double()
        self._epochs: dict[int, torch.Tensor] = {}  # the few epochs a step's positions fall in

    def _epoch(self, epoch: int) -> torch.Tensor:
        if epoch not in self._epochs:
            if len(self._epochs) >= EPOCHS_KEPT:
                del self._epochs[min(self._epochs)]
            gen = derived_generator(self.seed, epoch)
            if self.weights is None:
                self._epochs[epoch] = torch.randperm(self.num_items, generator=gen)
            else:
                self._epochs[epoch] = torch.multinomial(self.weights, self.num_items, replacement=True, generator=gen)
        return self._epochs[epoch]

    def position_indices(self, start: int, count: int) -> list[tuple[int, int]]:
        """``(dataset index, stream position)`` for ``count`` stream positions from ``start``."""
        out = []
        for position in range(start, start + count):
            epoch, offset = divmod(position, self.num_items)
            out.append((int(self._epoch(epoch)[offset]), position))
        return out

    def micro_batch(self, step: int, micro: int) -> list[tuple[int, int]]:
        start = (step * self.accumulation + micro) * self.micro_global + self.rank * self.per_rank
        return self.position_indices(start, self.per_rank)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            for micro in range(self.accumulation):
                yield self.micro_batch(step, micro)

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * self.accumulation
