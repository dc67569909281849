"""Wrapping the model for data-parallel training: none, DDP (up to ViT-L) or FSDP2 (huge, giant).

The objective is not a ``forward`` of ``MJEPA``, so DDP wraps a thin :class:`ObjectiveModule` whose forward is the
objective. FSDP2 (``fully_shard``) shards every transformer block and then each encoder, predictor and
cross-modal head; the encoder's ``embed`` / ``encode_tokens`` methods are registered as forward methods so their
parameters are gathered when the objective calls them. The target encoder is sharded the same way but never
receives gradients; the EMA update then works shard by shard.

State dicts are always taken through ``torch.distributed.checkpoint.state_dict`` with full, CPU-offloaded tensors,
so checkpoints have the same plain keys (no ``module.`` prefixes) whatever the strategy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from mjepa.data.batch import Batch
from mjepa.distributed import DistributedContext
from mjepa.masks import Masks
from mjepa.models.mjepa import MJEPA
from mjepa.objective import ObjectiveOutput, mjepa_objective

STRATEGIES = ("auto", "ddp", "fsdp", "none")


class ObjectiveModule(nn.Module):
    """``forward(batch, masks)`` = the MJEPA objective of the wrapped model."""

    def __init__(self, model: MJEPA) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, masks: Masks) -> ObjectiveOutput:
        return mjepa_objective(self.model, batch, masks)


@dataclass
class ParallelModel:
    """The model as the training step runs it: plain, under DDP or sharded by FSDP2."""

    model: MJEPA  # the unwrapped model (its parameters may be DTensors under FSDP2)
    strategy: str  # "none", "ddp" or "fsdp"
    ddp: nn.Module | None = None  # DistributedDataParallel around ObjectiveModule(model), under DDP
    sharded: tuple[nn.Module, ...] = ()  # the modules FSDP2 manages, under FSDP2

    def objective(self, batch: Batch, masks: Masks) -> ObjectiveOutput:
        """The MJEPA objective of one micro-batch; under DDP through its wrapper, whose backward synchronises the
        gradients."""
        if self.ddp is not None:
            return self.ddp(batch, masks)
        return mjepa_objective(self.model, batch, masks)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Skip the gradient synchronisation of the backward passes inside (accumulation micro-steps but the last)."""
        if self.ddp is not None:
            with self.ddp.no_sync():
                yield
            return
        for module in self.sharded:
            module.set_requires_gradient_sync(False, recurse=False)
        try:
            yield
        finally:
            for module in self.sharded:
                module.set_requires_gradient_sync(True, recurse=False)


def resolve_strategy(requested: str, ctx: DistributedContext) -> str:
    if requested not in STRATEGIES:
        raise ValueError(f"run.distributed={requested!r} is not valid; expected one of {', '.join(STRATEGIES)}")
    if not ctx.enabled:
        return "none"
    if requested == "none":
        raise ValueError(f"launched with {ctx.world_size} processes but run.distributed='none'; use ddp or fsdp")
    return "ddp" if requested == "auto" else requested


def _shard_encoder(encoder: nn.Module, mesh) -> None:
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    for block in encoder.blocks.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(encoder, mesh=mesh)
    register_fsdp_forward_method(encoder, "embed")
    register_fsdp_forward_method(encoder, "encode_tokens")


def apply_fsdp(model: MJEPA, device_type: str, world_size: int) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device_type, (world_size,))
    for encoder in list(model.encoders.values()) + list(model.target_encoders.values()):
        _shard_encoder(encoder, mesh)
    for predictor in model.predictors.values():
        for block in predictor.blocks.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(predictor, mesh=mesh)
    for head in model.cross_heads.values():
        fully_shard(head, mesh=mesh)


def unwrapped(model: MJEPA) -> ParallelModel:
    """The plain model as a :class:`ParallelModel` (one process, no gradient synchronisation)."""
    return ParallelModel(model, "none")


def parallelize(model: MJEPA, ctx: DistributedContext, requested: str, device: torch.device) -> ParallelModel:
    strategy = resolve_strategy(requested, ctx)
    if strategy == "none":
        return unwrapped(model)
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(
            ObjectiveModule(model),
            device_ids=[ctx.local_rank] if device.type == "cuda" else None,
            broadcast_buffers=False,
            gradient_as_bucket_view=True,  # gradients live in the all-reduce buckets: no second fp32 copy
        )
        return ParallelModel(model, strategy, ddp=ddp)
    apply_fsdp(model, device.type, ctx.world_size)
    sharded = tuple(m for m in model.modules() if hasattr(m, "set_requires_gradient_sync") and m is not model)
    return ParallelModel(model, strategy, sharded=sharded)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU state dict with plain keys; empty on non-zero ranks under FSDP2."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=True))


def load_partial_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load the given entries (full tensors) into a plain, DDP or FSDP2 model; the others keep their values."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
