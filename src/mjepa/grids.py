"""Token grids: how many tokens a tokenizer cuts an input into, along time, height and width.

One value serves every stage: the tokenizers return it, the mask sampler, the token layouts, the training loop and the
embedding API take it. Video: tubelets over ``(time, height, width)``. Audio: patches over ``(time, frequency, 1)``,
frequency on the height axis and a width of 1, the same convention as the tokens' positions
(``mjepa.models.positions``). The sequence is time-major in both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class TokenGrid(NamedTuple):
    time: int
    height: int
    width: int

    @property
    def num_tokens(self) -> int:
        return self.time * self.height * self.width


def audio_grid(frames: int, mel_bins: int, patch_time: int, patch_freq: int) -> TokenGrid:
    """The grid of a ``frames`` x ``mel_bins`` spectrogram cut into ``patch_time`` x ``patch_freq`` patches (the sizes
    must divide; the tokenizer checks its inputs)."""
    return TokenGrid(frames // patch_time, mel_bins // patch_freq, 1)


def video_grid(frames: int, height: int, width: int, tubelet_time: int, patch_size: int) -> TokenGrid:
    """The grid of ``frames`` frames of ``height`` x ``width`` pixels cut into tubelets."""
    return TokenGrid(frames // tubelet_time, height // patch_size, width // patch_size)


def audio_tokens_holding_signal(valid_frames: torch.Tensor, grid: TokenGrid, frames: int) -> torch.Tensor:
    """``(B, grid.num_tokens)`` bool over an audio window of ``frames`` log-mel frames cut into ``grid``: True for
    the tokens whose patch starts before each sample's ``valid_frames`` (``(B,)``), False for those that start in
    the zero padding after a short clip. The grid is time-major: each time step's frequency patches share its
    value."""
    starts = torch.arange(grid.time, device=valid_frames.device) * (frames // grid.time)
    per_step = starts.unsqueeze(0) < valid_frames.unsqueeze(1)
    return per_step.repeat_interleave(grid.height * grid.width, dim=1)
