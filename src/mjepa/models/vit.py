"""Pre-norm transformer blocks with optional rotary positions, shared by the encoder and the predictor."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mjepa.models.kernels import Linear, attention
from mjepa.models.positions import apply_rotary

RopeTables = tuple[torch.Tensor, torch.Tensor] | None


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: RopeTables = None) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        if rope is not None:
            cos, sin = rope
            q = apply_rotary(q, cos, sin)
            k = apply_rotary(k, cos, sin)
        out = attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(round(dim * mlp_ratio)))

    def forward(self, x: torch.Tensor, rope: RopeTables = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


class BlockStack(nn.Module):
    """A sequence of blocks with an optional activation-checkpointing switch.

    ``forward`` returns the output of the last block and, when ``collect`` names block indices, the raw outputs of
    those blocks (normalisation is the caller's choice).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.activation_checkpointing = False

    def forward(
        self, x: torch.Tensor, rope: RopeTables = None, collect: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        collected = []
        use_checkpoint = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            if use_checkpoint:
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope)
            if i in collect:
                collected.append(x)
        return x, collected
