"""Cross-modal predictors: one 3-layer MLP per ordered pair of distinct modes, on mean-pooled features."""

from __future__ import annotations

import torch
from torch import nn

from mjepa.models.encoder import init_vit_weights


class CrossModalHead(nn.Module):
    """Pooled source-mode features ``(B, E)`` -> predicted pooled target-mode features ``(B, E)``."""

    def __init__(self, width: int, hidden_width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(width, hidden_width),
            nn.GELU(),
            nn.Linear(hidden_width, hidden_width),
            nn.GELU(),
            nn.Linear(hidden_width, width),
        )
        init_vit_weights(self)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


def head_key(source: str, target: str) -> str:
    """ModuleDict key of the head predicting ``target`` from ``source`` (e.g. ``"A_to_AV"``)."""
    return f"{source}_to_{target}"
