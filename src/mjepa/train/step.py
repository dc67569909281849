"""One MJEPA training step as a plain function: forward, backward, clip, optimiser step, EMA."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from mjepa.masks import Masks
from mjepa.models.mjepa import MJEPA
from mjepa.objective import Batch, mjepa_objective
from mjepa.train.ema import ema_update


@dataclass
class StepResult:
    loss: float
    terms: dict[str, float]
    grad_norm: float
    skipped: bool  # True when the loss or gradient was not finite and no update was made


def autocast_context(device_type: str, amp_dtype: torch.dtype | None):
    """bf16 autocast on ``device_type`` or a no-op for full precision. fp16 is refused (it overflows late in
    training); use bf16."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    if amp_dtype != torch.bfloat16:
        raise ValueError(f"amp_dtype must be torch.bfloat16 or None, got {amp_dtype}")
    return torch.autocast(device_type=device_type, dtype=amp_dtype)


def train_step(
    model: MJEPA,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    masks: Masks,
    ema_momentum: float,
    amp_dtype: torch.dtype | None = None,
    grad_clip: float | None = None,
) -> StepResult:
    """One optimisation step. A non-finite loss or gradient skips the update (and the EMA) and says so."""
    model.train()
    device_type = next(model.parameters()).device.type
    optimizer.zero_grad(set_to_none=True)
    with autocast_context(device_type, amp_dtype):
        out = mjepa_objective(model, batch, masks)
    out.loss.backward()
    params = [p for p in model.trainable_parameters() if p.grad is not None]
    max_norm = grad_clip if grad_clip is not None else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    loss = float(out.loss.detach())
    terms = {name: float(value.detach()) for name, value in out.terms.items()}
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        return StepResult(loss, terms, grad_norm, skipped=True)
    optimizer.step()
    ema_update(model.target_encoders, model.encoders, ema_momentum)
    return StepResult(loss, terms, grad_norm, skipped=False)
