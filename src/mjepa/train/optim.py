"""AdamW with the usual parameter groups: no weight decay on biases, norms, embeddings and mask tokens."""

from __future__ import annotations

import torch
from torch import nn

# Parameter names (substrings) that are embeddings or learned tokens rather than weight matrices.
_NO_DECAY_NAMES = ("modality_embed", "mask_token")


def uses_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Weight matrices and conv kernels decay; biases, norm scales, embeddings and mask tokens do not."""
    if param.ndim <= 1:
        return False
    return not any(key in name for key in _NO_DECAY_NAMES)


def parameter_groups(named_params: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    decay = [p for n, p in named_params if p.requires_grad and uses_weight_decay(n, p)]
    no_decay = [p for n, p in named_params if p.requires_grad and not uses_weight_decay(n, p)]
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def build_optimizer(
    named_params: list[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    if lr <= 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
    # The fused kernel keeps its step counters on the parameters' device: the foreach and per-tensor versions read
    # a host counter per parameter every step, which a GPU run would pay for in host time.
    fused = all(_fused_supported(p) for _, p in named_params)
    return torch.optim.AdamW(
        parameter_groups(named_params, weight_decay),
        lr=lr,
        betas=betas,
        eps=eps,
        fused=fused or None,
        foreach=None if fused else True,
    )


def _fused_supported(param: torch.Tensor) -> bool:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return param.is_floating_point() and param.device.type in _get_fused_kernels_supported_devices()
