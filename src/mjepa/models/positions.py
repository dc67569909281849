"""Token positions: coordinates on (time, height, width), 3D rotary embeddings and a fixed sin-cos alternative.

Every token carries a float coordinate triple ``(t, h, w)``:

- video tubelet ``(ti, hi, wi)`` of a ``T×H×W`` grid -> ``(ti, hi, wi)``;
- audio patch ``(ti, fi)`` of a ``T×F`` spectrogram grid -> ``(ti, fi, 0)``: frequency sits on the height axis and
  the width axis is unused (always 0), so the audio grid is never forced to be square.

Time is either the tubelet/patch index (``time_unit_seconds=None``) or the centre time of the token in seconds
divided by ``time_unit_seconds``, so that an audio patch and a video tubelet covering the same instant get the same
time coordinate (useful for the joint AV sequence).

Rotary pairing: the head dimension ``d`` is viewed as ``d/2`` channel pairs ``(2p, 2p+1)``. The first ``P`` pairs
rotate with time, the next ``P`` with height, the next ``P`` with width, where ``P = floor(d/6)``; the remaining
``d/2 - 3P`` pairs (if any) are not rotated. Within an axis, pair ``j`` turns by ``pos * base**(-j/P)``. Because
each pair is a 2D rotation by an angle linear in the position, ``q·k`` depends only on the offset between the
two tokens' coordinates.
"""

from __future__ import annotations

import math

import torch


def grid_coordinates(grid: tuple[int, int, int], time_scale: float = 1.0, time_offset: float = 0.0) -> torch.Tensor:
    """Coordinates ``(N, 3)`` of a ``T×H×W`` grid in time-major (row-major) order.

    Time coordinate = ``time_offset + index * time_scale``; height and width are integer indices.
    """
    if len(grid) != 3 or any(int(g) < 1 for g in grid):
        raise ValueError(f"grid must be three positive sizes (T, H, W), got {tuple(grid)}")
    t, h, w = (int(g) for g in grid)
    tt = torch.arange(t, dtype=torch.float32) * time_scale + time_offset
    hh = torch.arange(h, dtype=torch.float32)
    ww = torch.arange(w, dtype=torch.float32)
    mesh = torch.meshgrid(tt, hh, ww, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


class Rotary3D(torch.nn.Module):
    """3D rotary position embedding applied to queries and keys of shape ``(B, heads, N, head_dim)``."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"rotary head_dim must be even, got {head_dim}")
        self.head_dim = head_dim
        self.pairs_per_axis = head_dim // 6
        if self.pairs_per_axis < 1:
            raise ValueError(f"rotary head_dim must be at least 6 for three axes, got {head_dim}")
        j = torch.arange(self.pairs_per_axis, dtype=torch.float32)
        self.register_buffer("inv_freq", base ** (-j / self.pairs_per_axis), persistent=False)

    def angles(self, coords: torch.Tensor) -> torch.Tensor:
        """Rotation angle per channel pair: ``(..., N, 3)`` coordinates -> ``(..., N, head_dim/2)``."""
        if coords.shape[-1] != 3:
            raise ValueError(f"coords must have shape (..., N, 3), got {tuple(coords.shape)}")
        per_axis = coords.float().unsqueeze(-1) * self.inv_freq  # (..., N, 3, P)
        ang = per_axis.flatten(-2)  # (..., N, 3P): time pairs, then height, then width
        unrotated = self.head_dim // 2 - ang.shape[-1]
        if unrotated:
            ang = torch.nn.functional.pad(ang, (0, unrotated))
        return ang

    def tables(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)`` tables shaped ``(B, 1, N, head_dim/2)`` for ``coords`` ``(B, N, 3)`` or ``(N, 3)``."""
        ang = self.angles(coords)
        if ang.dim() == 2:
            ang = ang.unsqueeze(0)
        ang = ang.unsqueeze(1)
        return ang.cos(), ang.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs ``(2p, 2p+1)`` of ``x`` (``..., head_dim``) by the tabulated angles."""
    pairs = x.unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    cos = cos.to(x.dtype)
    sin = sin.to(x.dtype)
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2)


def sincos_embedding(coords: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Fixed 3D sin-cos embedding ``(..., N, dim)`` from coordinates ``(..., N, 3)``.

    The channels are split in three equal groups (time, height, width) of ``2*floor(dim/6)`` channels, each half
    sine and half cosine; leftover channels are zero. Works for any grid because it is computed from coordinates.
    """
    freqs_per_axis = dim // 6
    if freqs_per_axis < 1:
        raise ValueError(f"sin-cos embedding needs dim >= 6, got {dim}")
    j = torch.arange(freqs_per_axis, dtype=torch.float32, device=coords.device)
    inv_freq = base ** (-j / freqs_per_axis)
    ang = coords.float().unsqueeze(-1) * inv_freq  # (..., N, 3, F)
    emb = torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)  # (..., N, 6F)
    missing = dim - emb.shape[-1]
    if missing:
        emb = torch.nn.functional.pad(emb, (0, missing))
    return emb


def token_time_scale(patch_time: int, step_seconds: float, time_unit_seconds: float | None) -> tuple[float, float]:
    """(scale, offset) that turn a token's time index into its time coordinate.

    ``patch_time`` input steps per token, each ``step_seconds`` long. With ``time_unit_seconds=None`` the coordinate
    is the token index; otherwise it is the token's centre time in units of ``time_unit_seconds``.
    """
    if time_unit_seconds is None:
        return 1.0, 0.0
    if time_unit_seconds <= 0 or not math.isfinite(time_unit_seconds):
        raise ValueError(f"time_unit_seconds must be a positive number or None, got {time_unit_seconds}")
    token_seconds = patch_time * step_seconds
    return token_seconds / time_unit_seconds, 0.5 * token_seconds / time_unit_seconds
