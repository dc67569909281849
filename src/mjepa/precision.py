"""Choosing the compute precision: bf16 autocast where the hardware runs it fast, fp32 elsewhere."""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX).

    Without them bf16 matrix products are emulated: on the AVX2-only CPU of docs/performance.md, bf16 linear layers
    run at about 17-19 GFLOP/s and batched products (attention) at about 1 GFLOP/s, against 120-140 GFLOP/s in
    fp32, so bf16 autocast makes the training step several times slower there.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_amp_dtype(precision: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device_type`` (``None`` = full fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not valid; expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device_type == "cuda":
        return torch.bfloat16
    if device_type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None
