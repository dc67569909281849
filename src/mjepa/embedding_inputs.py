"""What the embedding API accepts, turned into checked mono float waveforms and uint8 frame stacks.

Audio, one rule for arrays (NumPy or torch):

- ``(samples,)`` is one clip;
- a 2-D array is one clip with several channels, averaged to mono: ``(channels, samples)`` or ``(samples,
  channels)`` as soundfile reads it, told apart by which side is at most ``MAX_CHANNELS`` (64) long; where both or
  neither are, the shape is ambiguous and an error names this rule and ``channels_first=`` (True: channels are the
  first axis), which settles it;
- several clips come as a list (of any lengths, each by the rules above) or as a ``(clips, samples)`` array with
  ``batch=True``;
- a file path or a list of them is decoded with the project's decoder, at the model's sample rate.

Files are decoded as training decodes them: in a helper process (``mjepa.data.media.isolation``), so a file that
crashes FFmpeg or decodes past ``FILE_DECODE_TIMEOUT_S`` raises ``MediaError`` naming it and the caller's
interpreter goes on; video files are read a window at a time.

Integer PCM is scaled by its type's range (int16 by 1/32768, uint8 centred on 128); floats are taken as they are,
nominally in [-1, 1], and float samples beyond ``FLOAT_SCALE_LIMIT`` (8) are refused as integer-scale PCM stored in
floats. An empty clip, one shorter than one analysis frame, or one holding NaN or infinite samples is a one-line
error naming the clip.

Video: frames ``(time, height, width, 3)`` uint8; a batch ``(clips, time, height, width, 3)``; a list of those; a
file path or a list of them (decoded at the model's frame rate and evaluation size).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mjepa.data.manifests.manifest import ManifestEntry
from mjepa.data.media.decode import ClipSpec, DecodedClip, decode_audio, decode_entry_isolated
from mjepa.data.media.isolation import IsolatedRunner

PathLike = (str, os.PathLike)
MAX_CHANNELS = 64  # the most channels a clip may have (MediaLimits allows no more in files either)
# Float audio is nominally in [-1, 1] and a real mix may clip a little past it; samples this far out are int16 (or
# other integer) PCM stored in a float array, which would reach the model 32,768 times too loud.
FLOAT_SCALE_LIMIT = 8.0
FILE_DECODE_TIMEOUT_S = 300.0  # per call: a whole audio file, or one video window

_file_decoder: IsolatedRunner | None = None


def file_decoder() -> IsolatedRunner:
    """This process's helper for decoding files given to the API (started on first use, reused after)."""
    global _file_decoder
    if _file_decoder is None:
        _file_decoder = IsolatedRunner(FILE_DECODE_TIMEOUT_S)
    return _file_decoder


def _audio_samples(path: str, sample_rate: int) -> np.ndarray:
    return decode_audio(path, sample_rate=sample_rate)[0].numpy()


def decode_audio_file(path, sample_rate: int) -> np.ndarray:
    """A file's whole audio, mono float32 at ``sample_rate``, decoded in the helper process."""
    return file_decoder()(str(path), _audio_samples, str(path), sample_rate)


def decode_clip_file(
    path, spec: ClipSpec, window_start: float, segment_start: float | None = None, segment_end: float | None = None
) -> DecodedClip:
    """The window of a video file from ``window_start`` seconds into its segment (the whole file by default), with
    its audio per ``spec``, decoded in the helper process."""
    entry = ManifestEntry(path=str(path), start=segment_start, end=segment_end)
    return decode_entry_isolated(file_decoder(), entry, spec, window_start=window_start, require_video=True)


@dataclass
class AudioClips:
    waveforms: list[np.ndarray]  # mono float32 at ``sample_rate``
    sample_rate: int
    single: bool  # one clip was given (not a list or a batch): one result is returned


@dataclass(frozen=True)
class VideoFile:
    """A video file to be read a window at a time (never decoded whole): its path, duration and how to decode it."""

    path: str
    duration: float  # seconds (of the segment, when bounded)
    spec: ClipSpec  # the model's clip, decoded at the evaluation size
    segment_start: float | None = None  # file seconds bounding the part to read (a manifest entry's start / end)
    segment_end: float | None = None

    def window(self, start: float) -> torch.Tensor:
        """``(num_frames, height, width, 3)`` uint8: the frames on screen from ``start`` seconds (into the segment),
        at the clip's rate (the last one repeated past the end)."""
        return decode_clip_file(self.path, self.spec, start, self.segment_start, self.segment_end).frames


@dataclass
class VideoClips:
    frames: list[torch.Tensor | VideoFile]  # (time, height, width, 3) uint8 in memory, or a file read by windows
    fps: float
    single: bool


def _is_path(value) -> bool:
    return isinstance(value, PathLike)


def pcm_to_float(array: np.ndarray, where: str) -> np.ndarray:
    """Float32 samples from float or integer PCM (scaled by the integer type's range)."""
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.number)):
        raise ValueError(f"{where}: audio samples must be numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating):
        peak = float(np.nanmax(np.abs(array[np.isfinite(array)]))) if np.isfinite(array).any() else 0.0
        if peak > FLOAT_SCALE_LIMIT:
            raise ValueError(
                f"{where}: float samples reach {peak:.6g}, far outside [-1, 1]: integer PCM stored as floats? "
                f"Divide by 32768 (int16) or pass the integer array itself"
            )
        return array.astype(np.float32, copy=False)
    info = np.iinfo(array.dtype)
    if info.min == 0:  # unsigned PCM (8-bit WAV): centred on the middle of its range
        middle = (info.max + 1) / 2
        return ((array.astype(np.float64) - middle) / middle).astype(np.float32)
    return (array.astype(np.float64) / -info.min).astype(np.float32)


def _as_array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


LAYOUT_RULE = (
    "one clip is (samples,), (channels, samples) or (samples, channels) with at most 64 channels "
    "(channels_first=True or False says which); several clips are a list or a (clips, samples) array with batch=True"
)


def channels_axis(shape: tuple[int, ...], channels_first: bool | None, where: str) -> int:
    """The channel axis of a 2-D clip: given by ``channels_first``, or the side of at most ``MAX_CHANNELS``."""
    if channels_first is not None:
        return 0 if channels_first else 1
    rows, columns = shape
    if rows <= MAX_CHANNELS < columns:
        return 0
    if columns <= MAX_CHANNELS < rows:
        return 1
    raise ValueError(f"{where}: audio of shape {shape} is ambiguous; {LAYOUT_RULE}")


def _mono(array: np.ndarray, where: str, channels_first: bool | None) -> np.ndarray:
    if array.ndim == 2:
        array = array.mean(axis=channels_axis(array.shape, channels_first, where))
    if array.ndim != 1:
        raise ValueError(f"{where}: audio of shape {array.shape} is not a clip; {LAYOUT_RULE}")
    return array


def check_waveform(waveform: np.ndarray, sample_rate: int, min_seconds: float, where: str) -> np.ndarray:
    if waveform.size == 0:
        raise ValueError(f"{where}: the audio is empty (0 samples)")
    if not np.isfinite(waveform).all():
        bad = int((~np.isfinite(waveform)).sum())
        raise ValueError(f"{where}: {bad} of {waveform.size} audio samples are NaN or infinite")
    if waveform.size < math.ceil(min_seconds * sample_rate):
        raise ValueError(
            f"{where}: {waveform.size} samples at {sample_rate} Hz is shorter than one analysis frame "
            f"({min_seconds * 1000:g} ms)"
        )
    return waveform


def audio_clips(
    audio,
    sample_rate: int | None,
    model_rate: int,
    min_seconds: float,
    batch: bool = False,
    channels_first: bool | None = None,
) -> AudioClips:
    """Checked mono float32 waveforms from any accepted audio input (see the module docstring)."""
    if _is_path(audio):
        items, single = [audio], True
    elif isinstance(audio, (list, tuple)):
        items, single = list(audio), False
    else:
        array = _as_array(audio)
        if batch:
            if array.ndim != 2:
                raise ValueError(f"batch=True needs a (clips, samples) array, got shape {array.shape}")
            items, single = list(array), False
        elif array.ndim in (1, 2):
            items, single = [array], True
        else:
            raise ValueError(f"audio of shape {array.shape} is not a clip; {LAYOUT_RULE}")
    if not items:
        raise ValueError("no audio clips were given (an empty list)")
    if any(_is_path(item) for item in items):
        if not all(_is_path(item) for item in items):
            raise ValueError("give either file paths or waveforms, not a mix of both")
        waveforms = [decode_audio_file(item, model_rate) for item in items]
        rate = model_rate
    else:
        if sample_rate is None:
            raise ValueError("sample_rate is needed for waveforms (it is read from the file for paths)")
        waveforms = [
            _mono(pcm_to_float(_as_array(item), f"clip {i}"), f"clip {i}", channels_first)
            for i, item in enumerate(items)
        ]
        rate = int(sample_rate)
    checked = [
        check_waveform(w, rate, min_seconds, f"clip {i}" if not _is_path(items[i]) else str(items[i]))
        for i, w in enumerate(waveforms)
    ]
    return AudioClips(checked, rate, single)


def _check_frames(frames: torch.Tensor, where: str) -> torch.Tensor:
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(
            f"{where}: frames must be uint8 (time, height, width, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    if frames.shape[0] == 0:
        raise ValueError(f"{where}: the video has no frames")
    return frames


def video_file(path, spec: ClipSpec, short_side: int) -> VideoFile:
    """A video file, probed (its first window decoded, which checks it has video), to be read window by window."""
    first = decode_clip_file(path, spec, 0.0)
    duration = first.duration or spec.window_duration
    return VideoFile(str(path), float(duration), replace(spec, short_side=short_side))


def decode_video_file(path, spec: ClipSpec, short_side: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The whole file's frames at ``spec.frames_per_second`` (short side ``short_side``) and its audio (None when
    it has none)."""
    first = decode_clip_file(path, spec, 0.0)
    duration = first.duration or spec.window_duration
    whole = ClipSpec(
        num_frames=max(1, math.ceil(duration * spec.frames_per_second)),
        frames_per_second=spec.frames_per_second,
        audio_window="full",
        sample_rate=spec.sample_rate,
        short_side=short_side,
    )
    return decode_clip_file(path, whole, 0.0).frames, first.waveform


def video_clips(video, fps: float | None, spec: ClipSpec, short_side: int) -> VideoClips:
    """Checked frame stacks from any accepted video input (see the module docstring)."""
    single = _is_path(video) or (not isinstance(video, (list, tuple)) and torch.as_tensor(video).dim() == 4)
    items = [video] if single else list(video) if isinstance(video, (list, tuple)) else list(torch.as_tensor(video))
    if not items:
        raise ValueError("no videos were given (an empty list)")
    if any(_is_path(item) for item in items):
        if not all(_is_path(item) for item in items):
            raise ValueError("give either file paths or frames, not a mix of both")
        return VideoClips([video_file(item, spec, short_side) for item in items], spec.frames_per_second, single)
    if fps is None:
        raise ValueError("fps is needed for frames (it is read from the file for paths)")
    return VideoClips(
        [
            item if isinstance(item, VideoFile) else _check_frames(torch.as_tensor(item), f"video {i}")
            for i, item in enumerate(items)
        ],
        float(fps),
        single,
    )


def path_list(value) -> list[Path] | None:
    """The paths of a path or list of paths; None for in-memory inputs."""
    if _is_path(value):
        return [Path(value)]
    if isinstance(value, (list, tuple)) and value and all(_is_path(v) for v in value):
        return [Path(v) for v in value]
    return None
