"""Patch embeddings: audio spectrogram patches (Conv2d) and video tubelets (Conv3d), time-major token order."""

from __future__ import annotations

import torch
from torch import nn

from mjepa.grids import TokenGrid, audio_grid, video_grid


class AudioPatchEmbed(nn.Module):
    """Log-mel spectrogram ``(B, time_frames, mel_bins)`` -> tokens ``(B, T'·F', dim)``, time-major.

    Any spectrogram whose time and frequency sizes are divisible by the patch works; the grid is derived from the
    input, so 5 s ESC-50 clips and 10 s AudioSet clips need no separate position tables.
    """

    def __init__(self, dim: int, patch_time: int = 16, patch_freq: int = 16) -> None:
        super().__init__()
        self.patch = (patch_time, patch_freq)
        self.proj = nn.Conv2d(1, dim, kernel_size=self.patch, stride=self.patch)

    def grid(self, spectrogram_shape: tuple[int, ...]) -> TokenGrid:
        """Token grid ``(time, frequency, 1)`` for a spectrogram of shape ``(B, time_frames, mel_bins)``."""
        if len(spectrogram_shape) != 3:
            raise ValueError(f"audio must have shape (batch, time_frames, mel_bins), got {tuple(spectrogram_shape)}")
        _, frames, bins = spectrogram_shape
        pt, pf = self.patch
        if frames % pt or bins % pf or frames == 0 or bins == 0:
            raise ValueError(
                f"audio of shape {tuple(spectrogram_shape)}: expected (batch, time_frames, mel_bins) with "
                f"time_frames a positive multiple of {pt} and mel_bins a positive multiple of {pf}"
            )
        return audio_grid(frames, bins, pt, pf)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        self.grid(tuple(spectrogram.shape))
        x = self.proj(spectrogram.unsqueeze(1))  # (B, dim, T', F')
        return x.flatten(2).transpose(1, 2)


class VideoTubeletEmbed(nn.Module):
    """Video ``(B, channels, frames, height, width)`` -> tokens ``(B, T'·H'·W', dim)``, time-major."""

    def __init__(self, dim: int, tubelet_time: int = 2, patch_size: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        self.tubelet = (tubelet_time, patch_size, patch_size)
        self.in_channels = in_channels
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=self.tubelet, stride=self.tubelet)

    def grid(self, video_shape: tuple[int, ...]) -> TokenGrid:
        """Token grid ``(time, height, width)`` for a video of shape ``(B, C, T, H, W)``."""
        tt, ph, pw = self.tubelet
        expected = (
            f"expected (batch, {self.in_channels}, frames, height, width) with frames a positive multiple of {tt} "
            f"and height, width positive multiples of {ph}"
        )
        if len(video_shape) != 5 or video_shape[1] != self.in_channels:
            raise ValueError(f"video of shape {tuple(video_shape)}: {expected}")
        _, _, t, h, w = video_shape
        if t % tt or h % ph or w % pw or 0 in (t, h, w):
            raise ValueError(f"video of shape {tuple(video_shape)}: {expected}")
        return video_grid(t, h, w, tt, ph)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        self.grid(tuple(video.shape))
        return self.proj(video).flatten(2).transpose(1, 2)
