"""Seeds derived from a base seed and a key (rank, worker, step, epoch, item index, ...)."""

from __future__ import annotations

import numpy as np
import torch


def derived_seed(seed: int, *key: int) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``key``; distinct keys give independent streams."""
    for value in (seed, *key):
        if value < 0:
            raise ValueError(f"seeds and seed keys must be >= 0, got {(seed, *key)}")
    state = np.random.SeedSequence(entropy=seed, spawn_key=key).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def derived_generator(seed: int, *key: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, *key))
