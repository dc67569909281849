"""Evaluation inputs: each manifest item decoded as several test views and/or concatenated audio windows.

- ``clips`` temporal windows evenly spaced over the segment x ``spatial_views`` crops (left / centre / right): each
  is encoded on its own; then the tokens of a spatial view's temporal clips are joined into one sequence
  (``run_probe.join_temporal_clips``), the probe scores each spatial view and the probabilities are averaged per
  item (V-JEPA 2's Kinetics / SSv2 protocol).
- ``audio_windows`` > 1 cuts audio longer than one training window into consecutive windows whose tokens are
  *concatenated* into one long input for the probe (FSD50K clips last up to 30 s).

Items that cannot be decoded are returned as ``SkippedItem`` and reported, never replaced. Decoding runs in a helper
process (:mod:`mjepa.data.media.isolation`), as in training: a file that crashes or hangs the decoder is skipped and
named (``crashed`` / ``timeout``), never the end of the evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mjepa.data.loading.dataset import SkippedItem, multi_hot
from mjepa.data.manifests.manifest import EntryTable, ManifestEntry
from mjepa.data.media.decode import ClipSpec, MediaError, decode_entry, decode_entry_isolated
from mjepa.data.media.isolation import IsolatedRunner, leave_inherited_garbage
from mjepa.data.preprocess.fbank import AudioFrontendConfig, fbank_for_config, fbank_windows
from mjepa.data.preprocess.video_transforms import (
    VideoTransformConfig,
    eval_video_transform,
    evenly_spaced_window_starts,
    spatial_views,
)


@dataclass(frozen=True)
class ViewSpec:
    clips: int = 1
    spatial_views: int = 1
    audio_windows: int = 1

    @property
    def views(self) -> int:
        return self.clips * self.spatial_views


@dataclass
class EvalItem:
    index: int
    audio: torch.Tensor  # (views * audio_windows, frames, bins)
    video: torch.Tensor | None  # (views, 3, T, S, S)
    labels: torch.Tensor
    has_audio: bool
    video_offset: torch.Tensor | None = None  # (views,) seconds from the audio's first sample to each view's window


def audio_window_features(waveform: torch.Tensor | None, config: AudioFrontendConfig, windows: int) -> torch.Tensor:
    """``windows`` consecutive normalised log-mel windows of ``target_frames`` each (zeros without audio)."""
    if waveform is None:
        return torch.zeros(windows, config.target_frames, config.num_mel_bins)
    return fbank_windows(fbank_for_config(waveform, config), config, count=windows)[0]


# Decoding an evaluation item (several windows for multi-clip tasks) longer than this is a hang: the item is skipped.
DEFAULT_DECODE_TIMEOUT_S = 300.0


class EvalDataset(Dataset):
    """Evaluation items: each manifest entry decoded once (and once per further temporal clip), in a helper process
    (``decode_timeout_s``; None decodes in the calling process)."""

    def __init__(
        self,
        entries: list[ManifestEntry],
        vocabulary: list[str],
        clip: ClipSpec,
        audio: AudioFrontendConfig,
        video: VideoTransformConfig,
        views: ViewSpec,
        need_video: bool,
        need_audio: bool,
        decode_timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S,
    ) -> None:
        self.entries = EntryTable(entries)  # shared by forked loader workers, not copied
        self.vocabulary = {label: i for i, label in enumerate(vocabulary)}
        self.clip, self.audio, self.video, self.views = clip, audio, video, views
        self.need_video, self.need_audio = need_video, need_audio
        self.runner = None if decode_timeout_s is None else IsolatedRunner(decode_timeout_s)

    def _decode(self, entry: ManifestEntry, **options):
        if self.runner is None:
            return decode_entry(entry, self.clip, **options)
        return decode_entry_isolated(self.runner, entry, self.clip, **options)

    def __len__(self) -> int:
        return len(self.entries)

    def _video_views(self, entry: ManifestEntry, first) -> tuple[list[torch.Tensor], list[float]]:
        """Every view's frames (temporal clips outer, spatial views inner) and its video offset: where its window
        starts on the time axis of ``first``'s audio, which every view is paired with."""
        starts = [first.window_start]
        if self.views.clips > 1 and first.duration is not None:
            starts = evenly_spaced_window_starts(first.duration, self.clip.window_duration, self.views.clips)
        out, offsets = [], []
        for start in starts:
            clip = first if len(starts) == 1 else self._decode(entry, window_start=start, require_video=True)
            offset = 0.0 if first.audio_start is None else clip.segment_start + clip.window_start - first.audio_start
            if self.views.spatial_views > 1:
                views = spatial_views(clip.frames, self.video, self.views.spatial_views).unbind(0)
            else:
                views = [eval_video_transform(clip.frames, self.video)]
            out.extend(views)
            offsets.extend([offset] * len(views))
        return out, offsets

    def __getitem__(self, index: int) -> EvalItem | SkippedItem:
        entry = self.entries[index]
        labels = multi_hot(entry.labels, self.vocabulary, f"manifest item {index} ({entry.path})")
        try:
            first = self._decode(entry, window_start=None, require_video=self.need_video, require_audio=self.need_audio)
            video = offsets = None
            if self.need_video:
                frames, offsets = self._video_views(entry, first)
                video, offsets = torch.stack(frames), torch.tensor(offsets, dtype=torch.float32)
        except MediaError as err:
            return SkippedItem(index, str(err.path), err.reason, err.detail)
        audio = audio_window_features(first.waveform, self.audio, self.views.audio_windows)
        views = video.shape[0] if video is not None else 1
        audio = audio.repeat(views, 1, 1)  # the full-clip audio is shared by every video view
        return EvalItem(index, audio, video, labels, first.has_audio, offsets)


def collate_eval(items: list[EvalItem | SkippedItem]) -> tuple[list[EvalItem], list[SkippedItem]]:
    return [i for i in items if isinstance(i, EvalItem)], [i for i in items if isinstance(i, SkippedItem)]


def eval_loader(dataset: EvalDataset, batch_size: int, workers: int, sampler: Sampler | None = None) -> DataLoader:
    """Batches of ``(items, skipped)`` in the dataset's order. Forked workers leave the garbage they inherit alone (a
    threaded decoder of the parent collected in a worker hangs it)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_eval,
        sampler=sampler,
        worker_init_fn=leave_inherited_garbage,
    )
