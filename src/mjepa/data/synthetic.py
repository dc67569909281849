"""A tiny in-process synthetic audio-visual generator for unit tests and smoke runs.

Each clip has a class ``c`` and an event time. The spectrogram holds a harmonic stack whose pitch depends on ``c``
and which swells at the event; the video shows a square whose colour depends on ``c``, moving across the frame,
flashing at the same event time. So audio and video share content (class) and timing (the event), which gives the
cross-modal terms something real to predict. Everything is a pure function of ``(seed, index)``.

:class:`SyntheticDataset` serves the same clips to the training loader (``data.source=synthetic``), so synthetic
runs go through the real loader, collate and mask path.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from mjepa.data.batch import Batch
from mjepa.data.loading.dataset import Sample


def synthetic_clip(
    seed: int, index: int, audio_frames: int, mel_bins: int, video_frames: int, size: int, num_classes: int = 4
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One clip: log-mel ``(audio_frames, mel_bins)``, video ``(3, video_frames, size, size)``, class id."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    label = int(torch.randint(0, num_classes, (), generator=gen))
    event = float(torch.rand((), generator=gen)) * 0.6 + 0.2  # event time as a fraction of the clip

    t_audio = torch.linspace(0, 1, audio_frames).unsqueeze(1)
    bins = torch.arange(mel_bins, dtype=torch.float32).unsqueeze(0)
    base_bin = (label + 1) * mel_bins / (2 * num_classes + 2)
    spec = torch.zeros(audio_frames, mel_bins)
    for harmonic in (1, 2, 3):
        spec += torch.exp(-0.5 * ((bins - base_bin * harmonic) / 1.5) ** 2) / harmonic
    swell = 1.0 + 2.0 * torch.exp(-0.5 * ((t_audio - event) / 0.04) ** 2)
    spec = spec * swell + 0.1 * torch.randn(audio_frames, mel_bins, generator=gen)

    colour = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0], [1.0, 1.0, 0.2]])[label % 4]
    video = 0.1 * torch.randn(3, video_frames, size, size, generator=gen)
    side = max(2, size // 4)
    start = float(torch.rand((), generator=gen)) * (size - side)
    ys = int(torch.randint(0, size - side + 1, (), generator=gen))
    for f in range(video_frames):
        frac = f / max(1, video_frames - 1)
        x = int(start + (size - side - start) * frac)
        flash = 2.0 if abs(frac - event) < 0.5 / video_frames + 1e-6 else 1.0
        video[:, f, ys : ys + side, x : x + side] += colour.view(3, 1, 1) * flash
    return spec, video, label


def synthetic_batch(
    seed: int,
    start_index: int,
    batch_size: int,
    audio_frames: int = 128,
    mel_bins: int = 64,
    video_frames: int = 8,
    size: int = 64,
    num_classes: int = 4,
) -> tuple[Batch, torch.Tensor]:
    """A batch of consecutive synthetic clips and their class labels ``(B,)``."""
    clips = [
        synthetic_clip(seed, start_index + i, audio_frames, mel_bins, video_frames, size, num_classes)
        for i in range(batch_size)
    ]
    audio = torch.stack([c[0] for c in clips])
    video = torch.stack([c[1] for c in clips])
    labels = torch.tensor([c[2] for c in clips])
    return Batch(audio=audio, video=video, has_audio=torch.ones(batch_size, dtype=torch.bool)), labels


class SyntheticDataset(Dataset):
    """Synthetic clips as loader samples. Keyed by ``(index, position)`` from the training stream, the clip is that
    of the stream position (so each step sees new clips); keyed by an index alone, the clip of that index."""

    def __init__(
        self,
        seed: int,
        num_items: int,
        audio_frames: int,
        mel_bins: int,
        video_frames: int,
        size: int,
        num_classes: int = 4,
    ) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.seed, self.num_items, self.num_classes = seed, num_items, num_classes
        self.shape = (audio_frames, mel_bins, video_frames, size)

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        index, position = key if isinstance(key, tuple) else (key, None)
        clip_index = index if position is None else position
        audio, video, label = synthetic_clip(self.seed, clip_index, *self.shape, num_classes=self.num_classes)
        labels = torch.zeros(self.num_classes)
        labels[label] = 1.0
        return Sample(index, audio, audio.shape[0], video, labels, True, position)
