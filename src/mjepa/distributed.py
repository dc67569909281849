"""Process-group set-up for torchrun, SLURM or a single process, and model wrapping for DDP / FSDP2.

Launch detection (in this order):
- torchrun (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
- SLURM ``srun`` (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``; the master is the first host of
  ``SLURM_JOB_NODELIST`` and the port ``MASTER_PORT`` or 29500);
- otherwise a single process.
With more than one process, a failure to initialise the process group is an error, never a silent fallback to one
process.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


class DistributedInitError(RuntimeError):
    """The run was launched with several processes but the process group could not be set up."""


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    launcher: str  # "single", "torchrun" or "slurm"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def first_slurm_host(nodelist: str) -> str:
    """First host name of a SLURM node list such as ``gpu[003-005,010],cpu01`` -> ``gpu003``."""
    match = re.match(r"^([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise DistributedInitError(f"cannot read SLURM_JOB_NODELIST={nodelist!r}")
    prefix, ranges = match.group(1), match.group(3)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def detect_launch(env: dict[str, str]) -> DistributedContext:
    """Rank, world size and local rank from the environment (see the module docstring)."""
    try:
        if "RANK" in env and "WORLD_SIZE" in env:
            return DistributedContext(
                int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), "torchrun"
            )
        if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
            return DistributedContext(
                int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)), "slurm"
            )
    except ValueError as err:
        raise DistributedInitError(f"malformed launcher environment: {err}") from None
    return DistributedContext(0, 1, 0, "single")


def init_distributed(device_type: str, timeout_minutes: float = 30.0) -> DistributedContext:
    """Initialise the default process group when launched with several processes."""
    ctx = detect_launch(dict(os.environ))
    if not ctx.enabled or dist.is_initialized():
        return ctx
    if ctx.launcher == "slurm":
        os.environ.setdefault("MASTER_ADDR", first_slurm_host(os.environ.get("SLURM_JOB_NODELIST", "")))
        os.environ.setdefault("MASTER_PORT", "29500")
        os.environ["RANK"], os.environ["WORLD_SIZE"] = str(ctx.rank), str(ctx.world_size)
        os.environ["LOCAL_RANK"] = str(ctx.local_rank)
    backend = "nccl" if device_type == "cuda" else "gloo"
    try:
        if device_type == "cuda":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend, init_method="env://", timeout=timedelta(minutes=timeout_minutes))
    except Exception as err:  # noqa: BLE001 - any failure here must stop the run with its reason
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DistributedInitError(
            f"{ctx.launcher} launched rank {ctx.rank} of {ctx.world_size} but the {backend} process group failed to "
            f"initialise: {reason}"
        ) from None
    return ctx


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (identity without a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= dist.get_world_size()
    return values


def _several_ranks() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


_HOST_GROUP = None


def _host_group():
    """A gloo group for host-side flags, so agreeing on them never waits for a GPU stream (the default group is
    NCCL on CUDA). Created on first use; every rank reaches that use at the same point of the loop."""
    global _HOST_GROUP
    if dist.get_backend() == "gloo":
        return None
    if _HOST_GROUP is None:
        _HOST_GROUP = dist.new_group(backend="gloo")
    return _HOST_GROUP


def any_rank(flag: bool) -> bool:
    """True when the host-side ``flag`` is true on any rank (a CPU collective; the device is not touched)."""
    if not _several_ranks():
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_host_group())
    return bool(value[0] > 0)


def all_ranks_true(flag: torch.Tensor) -> bool:
    """True when the boolean device tensor ``flag`` is true on every rank: one collective, one device read."""
    value = flag.to(torch.int32).reshape(1)
    if _several_ranks():
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    global _HOST_GROUP
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _HOST_GROUP = None
