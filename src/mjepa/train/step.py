"""The MJEPA training step: forward and backward over micro-batches, clip, optimiser step, EMA.

:func:`accumulated_step` is the one implementation: ``mjepa pretrain`` runs it on the (possibly DDP / FSDP2)
wrapped model with the loader's micro-batches; :func:`train_step` runs it on one batch of a plain model (tests,
benchmarks, notebooks).

The step never waits for the device except once: to decide whether the loss and gradient are finite (the update
is skipped when they are not). Losses, terms and the gradient norm stay on the device as tensors;
:meth:`StepResult.values` reads them in one transfer, which the training loop does only on logging steps.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mjepa.data.batch import Batch
from mjepa.distributed import all_ranks_true
from mjepa.masks import Masks
from mjepa.models.mjepa import MJEPA
from mjepa.train.ema import ema_update
from mjepa.train.parallel import ParallelModel, unwrapped


@dataclass
class StepResult:
    loss: torch.Tensor  # () this rank's total loss, mean over micro-batches, detached, on the device
    terms: dict[str, torch.Tensor]  # every active term (and, with several target levels, each level's), as ``loss``
    grad_norm: torch.Tensor  # () total gradient norm before clipping (all ranks), on the device
    pooled_targets: dict[str, torch.Tensor]  # (B, E) per mode, last micro-batch, for collapse monitoring
    skipped: bool  # True when the loss or gradient was not finite on some rank and no update was made

    def names(self) -> list[str]:
        return ["loss", *sorted(self.terms), "grad_norm"]

    def stacked(self) -> torch.Tensor:
        """``(len(names()),)`` float64: loss, terms (sorted), gradient norm."""
        parts = [self.loss, *(self.terms[n] for n in sorted(self.terms)), self.grad_norm]
        return torch.stack([p.detach().to(torch.float64) for p in parts])

    def values(self) -> dict[str, float]:
        """Loss, terms and gradient norm as floats, in one device-to-host transfer."""
        return dict(zip(self.names(), self.stacked().tolist()))


def autocast_context(device_type: str, amp_dtype: torch.dtype | None):
    """bf16 autocast on ``device_type`` or a no-op for full precision. fp16 is refused (it overflows late in
    training); use bf16."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    if amp_dtype != torch.bfloat16:
        raise ValueError(f"amp_dtype must be torch.bfloat16 or None, got {amp_dtype}")
    return torch.autocast(device_type=device_type, dtype=amp_dtype)


def _full(value: torch.Tensor) -> torch.Tensor:
    """A DTensor (FSDP2's gradient norm) as a plain tensor; other tensors unchanged."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def accumulated_step(
    parallel: ParallelModel,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[tuple[Batch, Masks]],
    ema_momentum: float,
    amp_dtype: torch.dtype | None = None,
    grad_clip: float | None = None,
) -> StepResult:
    """One optimisation step over ``micro_batches`` (batches and masks already on the device).

    Gradients are averaged over the micro-batches and synchronised across ranks once, on the last one. A loss or
    gradient norm that is not finite on any rank skips the update and the EMA on every rank.
    """
    if not micro_batches:
        raise ValueError("a training step needs at least one micro-batch")
    model = parallel.model
    model.train()
    device_type = next(model.parameters()).device.type
    optimizer.zero_grad(set_to_none=True)
    count = len(micro_batches)
    loss_sum: torch.Tensor | None = None
    term_sums: dict[str, torch.Tensor] = {}
    pooled: dict[str, torch.Tensor] = {}
    for position, (batch, masks) in enumerate(micro_batches):
        last = position == count - 1
        with contextlib.nullcontext() if last else parallel.no_sync():
            with autocast_context(device_type, amp_dtype):
                out = parallel.objective(batch, masks)
            (out.loss / count).backward()
        loss = out.loss.detach().float() / count
        loss_sum = loss if loss_sum is None else loss_sum + loss
        for name, value in {**out.terms, **out.level_terms}.items():
            value = value.detach().float() / count
            term_sums[name] = value if name not in term_sums else term_sums[name] + value
        pooled = {mode: t.detach() for mode, t in out.pooled_targets.items()}
    params = [p for p in model.trainable_parameters() if p.grad is not None]
    max_norm = grad_clip if grad_clip is not None else math.inf
    grad_norm = _full(torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)).detach().float()
    finite_here = torch.isfinite(loss_sum) & torch.isfinite(grad_norm)
    # The step's only device-to-host read: every rank must agree on whether to update.
    finite = all_ranks_true(finite_here)
    if finite:
        optimizer.step()
        ema_update(model.target_encoders, model.encoders, ema_momentum)
    else:
        optimizer.zero_grad(set_to_none=True)
    return StepResult(loss_sum, term_sums, grad_norm, pooled, skipped=not finite)


def train_step(
    model: MJEPA,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    masks: Masks,
    ema_momentum: float,
    amp_dtype: torch.dtype | None = None,
    grad_clip: float | None = None,
) -> StepResult:
    """One optimisation step of a plain (unwrapped) model on one batch: :func:`accumulated_step` with one
    micro-batch. A non-finite loss or gradient skips the update (and the EMA) and says so in ``skipped``."""
    return accumulated_step(unwrapped(model), optimizer, [(batch, masks)], ema_momentum, amp_dtype, grad_clip)
