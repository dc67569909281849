"""Token grids: how many tokens a tokenizer cuts an input into, along time, height and width.

One value serves every stage: the tokenizers return it, the mask sampler, the token layouts, the training loop and the
embedding API take it. Video: tubelets over ``(time, height, width)``. Audio: patches over ``(time, frequency, 1)``,
frequency on the height axis and a width of 1, the same convention as the tokens' positions
(``mjepa.models.positions``). The sequence is time-major in both.
"""

from __future__ import annotations

from typing import NamedTuple


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
