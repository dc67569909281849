"""Index sampling: evaluation shards per rank, AudioSet class-balance weights, dataset-mixture weights, worker seeding.

The training stream (:mod:`mjepa.data.loading.stream`) draws with the weights from here. The evaluation sampler is a
pure function of ``(seed, epoch)``, yields this rank's share of the indices, and with ``pad=False`` never pads, so no
sample is counted twice in a metric.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from mjepa.seeding import derived_generator, derived_seed


def _check_rank(rank: int, num_replicas: int) -> None:
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(
            f"rank must be in [0, num_replicas) with num_replicas >= 1, got rank={rank}, num_replicas={num_replicas}"
        )


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return derived_generator(seed, epoch)


class DistributedShardSampler(Sampler[int]):
    """This rank's indices of ``range(num_items)``: rank r takes positions r, r + R, r + 2R, ... of the order.

    ``pad=True`` (training) wraps around so every rank gets ``ceil(N / R)`` indices; ``pad=False`` (evaluation)
    gives each index to exactly one rank and ranks may differ by one.
    """

    def __init__(
        self,
        num_items: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        pad: bool = True,
    ) -> None:
        _check_rank(rank, num_replicas)
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.num_items, self.num_replicas, self.rank = num_items, num_replicas, rank
        self.shuffle, self.seed, self.pad = shuffle, seed, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            return torch.randperm(self.num_items, generator=_epoch_generator(self.seed, self.epoch)).tolist()
        return list(range(self.num_items))

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        if self.pad:
            total = -(-self.num_items // self.num_replicas) * self.num_replicas
            order = (order * (-(-total // len(order))))[:total]
        return iter(order[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        if self.pad:
            return -(-self.num_items // self.num_replicas)
        return len(range(self.rank, self.num_items, self.num_replicas))


def class_balance_weights(label_matrix: torch.Tensor) -> torch.Tensor:
    """Per-item sampling weight = sum over its labels of 1 / (items with that label) (the AudioSet convention).

    Items without labels get the smallest weight found, so they are rare but not impossible.
    """
    if label_matrix.dim() != 2:
        raise ValueError(f"label_matrix must be (num_items, num_classes), got shape {tuple(label_matrix.shape)}")
    labels = label_matrix.float()
    per_class = labels.sum(0)
    inverse = torch.where(per_class > 0, 1.0 / per_class.clamp_min(1.0), torch.zeros_like(per_class))
    weights = labels @ inverse
    positive = weights[weights > 0]
    floor = float(positive.min()) if positive.numel() else 1.0
    return torch.where(weights > 0, weights, torch.full_like(weights, floor))


def mixture_weights(dataset_sizes: list[int], dataset_weights: list[float]) -> torch.Tensor:
    """Per-item weights over a concatenation of datasets so that dataset d is drawn with probability
    ``dataset_weights[d] / sum(dataset_weights)`` whatever its size (VideoMix-style mixtures)."""
    if len(dataset_sizes) != len(dataset_weights) or not dataset_sizes:
        raise ValueError(
            f"need one weight per dataset, got {len(dataset_sizes)} sizes and {len(dataset_weights)} weights"
        )
    parts = []
    for size, weight in zip(dataset_sizes, dataset_weights):
        if size < 1 or weight < 0:
            raise ValueError(f"dataset sizes must be >= 1 and weights >= 0, got size {size}, weight {weight}")
        parts.append(torch.full((size,), weight / size, dtype=torch.float64))
    return torch.cat(parts)


def seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """Seed Python, NumPy and torch in a loader worker from (seed, rank, worker id)."""
    value = derived_seed(seed, rank, worker_id)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
