"""Exponential moving average of the online encoder(s) into the target encoder(s)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for every parameter, with fused foreach ops.

    Buffers (none in the encoder today) are copied. Both modules must have identical structure.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    if len(target_params) != len(online_params):
        raise ValueError(
            f"EMA target has {len(target_params)} parameter tensors but the online model has {len(online_params)}"
        )
    if target_params:
        # lerp(t, o, w) = t + w (o - t) = (1 - w) t + w o
        torch._foreach_lerp_(target_params, [p.detach() for p in online_params], 1.0 - momentum)
    for tb, ob in zip(target.buffers(), online.buffers()):
        tb.copy_(ob)
