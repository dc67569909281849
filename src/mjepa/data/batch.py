"""The model's input batch: log-mel audio, video clips, and which samples have audio and which have video."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch


@dataclass
class Batch:
    """One training batch. ``audio``: log-mel ``(B, time_frames, mel_bins)``; ``video``: ``(B, C, T, H, W)``,
    normalised float, or uint8 crops on their way to the device (normalised there by the training loop)."""

    audio: torch.Tensor | None
    video: torch.Tensor | None
    has_audio: torch.Tensor | None = None  # (B,) bool; None means every sample has audio
    # (B,) float32: seconds from the first audio sample to the first video frame of each sample (the video window's
    # place inside the audio window), which puts both on one time axis; None means 0 for every sample.
    video_offset: torch.Tensor | None = None
    # (B,) bool; None means every sample has video. A sample without it carries placeholder frames (zeros) so that
    # the batch keeps one shape, and the objective leaves it out of every term that involves video.
    has_video: torch.Tensor | None = None
    # (B,) long: the log-mel frames of each sample that hold audio (the rest of its window is zero padding); None
    # means every frame of every sample holds audio. Padding is neither predicted nor pooled by the objective.
    audio_valid_frames: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        ref = self.video if self.video is not None else self.audio
        if ref is None:
            raise ValueError("a batch needs audio, video or both")
        return ref.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        return self.map_tensors(lambda t: t.to(device, non_blocking=True))

    def map_tensors(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """A batch of ``fn(t)`` for each tensor field that is set (a field that is None stays None)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{name: None if value is None else fn(value) for name, value in values.items()})
