"""The embedding API's model inputs, one window at a time: a clip's audio and video are cut into windows of the
training length and each window's log-mel or frames are built only when the encoder needs them, so memory does not
grow with the clip's length."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from mjepa.data.preprocess.fbank import AudioFrontendConfig, fbank_for_config, fbank_windows
from mjepa.data.preprocess.video_transforms import VideoTransformConfig, eval_video_transform
from mjepa.embedding_inputs import VideoFile


def resample(waveform: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling with FFmpeg's resampler (through PyAV), mono float32."""
    if sample_rate == target_rate:
        return waveform.astype(np.float32)
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
    frame = av.AudioFrame.from_ndarray(waveform.astype(np.float32)[None, :], format="flt", layout="mono")
    frame.sample_rate = sample_rate
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


class AudioSource:
    """One clip's audio model inputs, a window at a time: each window's log-mel is computed from the samples it
    covers only, so memory does not grow with the clip's length. The result equals cutting the whole clip's log-mel
    (its frames depend only on their own samples once the clip's mean is removed, which is done here once)."""

    def __init__(self, waveform: np.ndarray, config: AudioFrontendConfig, start_frames: list[int] | None = None):
        mono = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
        if config.subtract_waveform_mean:
            mono = mono - mono.mean()
        self.waveform = mono
        self.config = replace(config, subtract_waveform_mean=False)
        self.shift = int(round(config.sample_rate * config.frame_shift_ms / 1000.0))
        self.length = int(round(config.sample_rate * config.frame_length_ms / 1000.0))
        total = 1 + (mono.numel() - self.length) // self.shift if mono.numel() >= self.length else 0
        if start_frames is None:
            count = max(1, math.ceil(total / config.target_frames))
            start_frames = [i * config.target_frames for i in range(count)]
        self.start_frames = start_frames
        self.valid_frames = torch.tensor(
            [min(max(total - start, 0), config.target_frames) for start in start_frames], dtype=torch.long
        )

    def window(self, index: int) -> torch.Tensor:
        """``(target_frames, bins)``: window ``index``'s normalised log-mel, padded past the end of the audio."""
        first = self.start_frames[index] * self.shift
        chunk = self.waveform[first : first + (self.config.target_frames - 1) * self.shift + self.length]
        if chunk.numel() >= self.length:
            fbank = fbank_for_config(chunk, self.config)
        else:
            fbank = torch.zeros(0, self.config.num_mel_bins)
        return fbank_windows(fbank, self.config, count=1)[0][0]


@dataclass
class VideoSource:
    """One clip's video model inputs, a window at a time: window ``i`` is the frames on screen at its times, taken
    from frames in memory (``indices``) or decoded from a file for that window only (``starts``)."""

    frames: torch.Tensor | VideoFile  # (time, height, width, 3) uint8, or a file read by windows
    indices: list[torch.Tensor] | None  # in memory: per window, the frame index of each of its frames
    starts: list[float]
    config: VideoTransformConfig

    def window(self, index: int) -> torch.Tensor:
        if isinstance(self.frames, VideoFile):
            return eval_video_transform(self.frames.window(self.starts[index]), self.config)
        return eval_video_transform(self.frames[self.indices[index]], self.config)


@dataclass
class ClipWindows:
    """Model inputs of one clip, built a window at a time, and what is needed to turn its tokens back into its
    embeddings."""

    starts: list[float]  # seconds
    audio: AudioSource | None = None
    video: VideoSource | None = None
    duration: float | None = None  # seconds of audio the clip holds (audio only)

    @property
    def count(self) -> int:
        return len(self.starts)

    @property
    def valid_frames(self) -> torch.Tensor | None:  # (W,) fbank frames holding audio
        return None if self.audio is None else self.audio.valid_frames
