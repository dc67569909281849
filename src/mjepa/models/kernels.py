"""Linear layers and attention that stay on the fast paths of CPUs that emulate bf16.

On CPUs without native bf16 matrix instructions (AVX2 only; see ``mjepa.precision``), the speed of
PyTorch's emulated bf16 matrix products depends on the operands' memory layout by an order of magnitude: under
autocast the stock backward of a linear layer computes ``grad_input = grad_output @ weight`` with both operands
row-major, a path 5-10x slower than the best, and the bf16 backward of CPU flash attention is about 15x slower than
its fp32 backward (``benchmarks/bench_step.py --implementations ours,reference`` measures the whole step;
docs/performance.md).

So on such CPUs under bf16 autocast:

- :class:`Linear` computes its three products (output, input gradient, weight gradient) with the left operand
  column-major and the right one row-major, the layout the emulated bf16 kernels run fastest (about twice
  ``F.linear``'s; ``benchmarks/bench_step.py`` measures every layout). The transposed copies this needs cost one pass
  over an operand, little next to the product. Same products, same dtype;
- :func:`attention` runs scaled-dot-product attention in fp32 and casts the result back to bf16, as the fp32
  kernels are both faster and more accurate there.

Everywhere else (CUDA, fp32, CPUs with AVX512-BF16 or AMX) both are the stock operations. Inside
:func:`reference_kernels` they are stock everywhere: the plain implementation the benchmark and the equal-numerics
test compare against.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_REFERENCE = False  # set by reference_kernels()


@contextlib.contextmanager
def reference_kernels() -> Iterator[None]:
    """Within this block every layer uses the stock PyTorch kernels (for benchmarks and numerics tests)."""
    global _REFERENCE
    previous, _REFERENCE = _REFERENCE, True
    try:
        yield
    finally:
        _REFERENCE = previous


@functools.lru_cache(maxsize=1)
def _cpu_emulates_bf16() -> bool:
    from mjepa.precision import cpu_has_fast_bf16

    return not cpu_has_fast_bf16()


def emulated_bf16_autocast(x: torch.Tensor) -> bool:
    """True when ``x`` is computed under CPU bf16 autocast on a CPU without native bf16 (and not in reference mode)."""
    return (
        not _REFERENCE
        and x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and _cpu_emulates_bf16()
    )


def fast_layout_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` (2-D) with ``a`` column-major and ``b`` row-major: the fastest emulated-bf16 layout we measured
    (about 2x ``F.linear``'s, 10x+ the row-major ``a @ b``). Transposed copies are made only where needed."""
    if a.stride(0) != 1:
        a = a.t().contiguous().t()
    if b.stride(1) != 1:
        b = b.contiguous()
    return a @ b


class _FastLayoutLinear(torch.autograd.Function):
    """``F.linear`` whose backward keeps every bf16 product in a fast CPU layout."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        out = fast_layout_mm(x.reshape(-1, x.shape[-1]), weight.t())
        if bias is not None:
            out += bias
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_2d = grad_output.reshape(-1, grad_output.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = fast_layout_mm(grad_2d, weight).view(*grad_output.shape[:-1], weight.shape[1])
        if ctx.needs_input_grad[1]:
            grad_w = fast_layout_mm(grad_2d.t(), x.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_2d.sum(0, dtype=torch.float32).to(grad_output.dtype)
        return grad_x, grad_w, grad_b


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) with the fast-layout backward under emulated bf16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not emulated_bf16_autocast(x):
            return super().forward(x)
        dtype = torch.bfloat16
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast("cpu", enabled=False):
            return _FastLayoutLinear.apply(x.to(dtype), self.weight.to(dtype), bias)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled-dot-product attention of ``(B, heads, N, head_dim)`` tensors; fp32 under emulated bf16."""
    if not emulated_bf16_autocast(q):
        return F.scaled_dot_product_attention(q, k, v)
    with torch.autocast("cpu", enabled=False):
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    return out.to(torch.bfloat16)
