"""Decode media files into a mono waveform and a window of RGB frames, with PyAV.

Inputs: video files with or without audio (mp4, mkv, webm, avi, ...) and audio-only files (wav, flac, ogg, mp3, ...).
PyAV probes the content, not the extension: a WAV file named ``.mp4`` decodes as the audio-only file it is.

Time conventions. All times in a :class:`DecodedClip` are *file* times in seconds (presentation timestamps as the
container stores them), except ``window_start``, which is relative to the segment start. A manifest's
``start`` / ``end`` bound the segment inside the file; the video window (``num_frames`` frames at
``frames_per_second``, 16 at 4 fps = 4 s by default) lies inside the segment.

Frame sampling. Target times are ``segment_start + window_start + k / frames_per_second``; for each target the frame
on screen at that time is returned (the last frame whose timestamp is <= the target), and ``frame_times`` holds that
frame's real timestamp. The decoder seeks to the key frame before the window instead of decoding the whole file.

Short clips. When the window reaches past the end of the video (or the segment), the missing frames repeat the last
frame; ``num_padded_frames`` says how many (``is_padded`` is true). Only a window with no frame at all raises
``MediaError(reason="too_short")``. A video that stops well before the duration its container declares is *not*
padded but raises ``MediaError(reason="truncated")``.

Audio. Resampled to ``sample_rate`` (16 kHz by default) with PyAV's ``AudioResampler``; channels are averaged to mono
(FFmpeg's own downmix scales stereo by 1/sqrt(2), which would shift the log-mel statistics). The audio window is the
whole segment (``audio_window="full"``) or the span of the video window (``"aligned"``). The waveform is not
padded: the audio front end pads or trims to its fixed frame count.

Errors are :class:`MediaError` with ``path``, ``reason`` (one of :data:`MEDIA_ERROR_REASONS`) and a one-line
``detail``; nothing is replaced by zeros silently.

Layout: this module holds the public API; file opening, probing and the errors live in
:mod:`mjepa.data.media.info`, the frame sampling in :mod:`mjepa.data.media.video_window` and the audio decoding in
:mod:`mjepa.data.media.audio_span`. Their public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from mjepa.config import dataclass_from_dict
from mjepa.data.manifests.manifest import ManifestEntry
from mjepa.data.media.audio_span import decode_audio_span, iter_mono_frames
from mjepa.data.media.info import (
    MEDIA_ERROR_REASONS,
    MediaError,
    MediaInfo,
    media_errors,
    open_media,
    probe_media,
    raise_if_truncated,
    stream_duration,
)
from mjepa.data.media.video_window import decode_video_window

__all__ = [
    "AUDIO_WINDOWS",
    "MEDIA_ERROR_REASONS",
    "ClipSpec",
    "DecodedClip",
    "MediaError",
    "MediaInfo",
    "choose_window_start",
    "decode_audio",
    "decode_clip",
    "decode_entry",
    "decode_entry_isolated",
    "probe_media",
]

AUDIO_WINDOWS = ("full", "aligned")


@dataclass(frozen=True)
class ClipSpec:
    """What to take from each media item. Stored with a run's config so evaluation decodes the same way."""

    num_frames: int = 16
    frames_per_second: float = 4.0
    audio_window: str = "full"  # "full": the whole segment; "aligned": the span of the video window
    sample_rate: int = 16000
    # Shorter image side after decoding (None keeps the native size); scaling inside FFmpeg is far cheaper than
    # scaling full-resolution tensors afterwards.
    short_side: int | None = None
    # With audio_window="full": the most audio the front end uses, in seconds (None: no limit). A longer segment
    # gives the span of this length centred on the video window (moved inside the segment), and only that span is
    # decoded, so audio and video of an untrimmed video come from the same moment.
    audio_seconds: float | None = None

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"ClipSpec.num_frames must be >= 1, got {self.num_frames}")
        if not self.frames_per_second > 0:
            raise ValueError(f"ClipSpec.frames_per_second must be > 0, got {self.frames_per_second}")
        if self.audio_window not in AUDIO_WINDOWS:
            raise ValueError(f"ClipSpec.audio_window must be one of {AUDIO_WINDOWS}, got {self.audio_window!r}")
        if self.sample_rate < 1:
            raise ValueError(f"ClipSpec.sample_rate must be a positive integer, got {self.sample_rate}")
        if self.short_side is not None and self.short_side < 2:
            raise ValueError(f"ClipSpec.short_side must be None or >= 2, got {self.short_side}")
        if self.audio_seconds is not None and not self.audio_seconds > 0:
            raise ValueError(f"ClipSpec.audio_seconds must be None or > 0, got {self.audio_seconds}")

    @property
    def window_duration(self) -> float:
        """Seconds covered by the video window: num_frames / frames_per_second."""
        return self.num_frames / self.frames_per_second

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ClipSpec:
        return dataclass_from_dict(cls, values)


@dataclass(frozen=True)
class DecodedClip:
    """One decoded item. ``frames`` / ``waveform`` are None when the file has no such stream."""

    path: str
    frames: torch.Tensor | None  # (T, H, W, 3) uint8 RGB
    frame_times: torch.Tensor | None  # (T,) float64, file time of each returned frame
    num_padded_frames: int  # frames that repeat the last frame because the window ran past the end
    waveform: torch.Tensor | None  # (N,) float32 mono in [-1, 1]
    sample_rate: int
    audio_start: float | None  # file time of waveform[0]
    segment_start: float  # file time where the segment begins
    duration: float | None  # segment duration in seconds, None when neither metadata nor decoding tells
    window_start: float  # video window start, relative to segment_start

    @property
    def has_video(self) -> bool:
        return self.frames is not None

    @property
    def has_audio(self) -> bool:
        return self.waveform is not None

    @property
    def video_offset(self) -> float:
        """Seconds from the first audio sample to the video window's start (0 without both streams): where the
        video window sits on the audio's time axis."""
        if self.frames is None or self.waveform is None or self.audio_start is None:
            return 0.0
        return self.segment_start + self.window_start - self.audio_start

    @property
    def is_padded(self) -> bool:
        return self.num_padded_frames > 0


def choose_window_start(
    segment_duration: float | None, window_duration: float, generator: torch.Generator | None
) -> float:
    """Window start (seconds from the segment start): uniform with ``generator`` (training), centred without it
    (evaluation). Windows longer than the segment start at 0; an unknown duration also gives 0."""
    if segment_duration is None:
        return 0.0
    room = max(0.0, segment_duration - window_duration)
    if generator is None:
        return room / 2.0
    return float(torch.rand((), generator=generator, dtype=torch.float64)) * room


def decode_audio(
    path: str | os.PathLike, start: float | None = None, end: float | None = None, sample_rate: int = 16000
) -> tuple[torch.Tensor, float]:
    """Mono float32 waveform of [start, end) seconds (None = file start / end) at ``sample_rate``, and the file
    time of its first sample. Raises MediaError (``no_audio_stream`` when the file has none)."""
    path = str(path)
    with media_errors(path), open_media(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no_audio_stream", "file has no audio stream")
        samples, audio_start = decode_audio_span(container, path, start, end, sample_rate)
    return torch.from_numpy(samples), audio_start


@dataclass(frozen=True)
class AudioStatistics:
    """What :func:`audio_statistics` measured over a file's audio span."""

    num_samples: int
    rms: float  # over the finite samples
    non_finite: int  # NaN or infinite samples
    end_time: float | None  # file time where the decoded audio ends


def audio_statistics(
    path: str | os.PathLike, start: float | None = None, end: float | None = None, sample_rate: int = 16000
) -> AudioStatistics:
    """RMS and sample counts of [start, end) seconds of a file's audio, decoded one chunk at a time: memory stays
    flat for hours of audio. Raises MediaError like :func:`decode_audio` (but not for non-finite samples)."""
    path = str(path)
    total = bad = 0
    squares = 0.0
    last_time = None
    with media_errors(path), open_media(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no_audio_stream", "file has no audio stream")
        stream = container.streams.audio[0]
        for time, samples in iter_mono_frames(container, stream, path, 0.0, end, sample_rate):
            if time is not None and start is not None and time < start:
                continue
            finite = np.isfinite(samples)
            bad += int(samples.size - np.count_nonzero(finite))
            good = samples[finite].astype(np.float64)
            squares += float(np.dot(good, good))
            total += samples.size
            if time is not None:
                last_time = time + samples.size / sample_rate
        if last_time is not None and end is None:
            raise_if_truncated(path, container, stream, last_time, "audio")
    rms = math.sqrt(squares / max(1, total - bad))
    return AudioStatistics(total, rms, bad, last_time)


def decode_clip(
    path: str | os.PathLike,
    spec: ClipSpec,
    window_start: float | None = None,
    generator: torch.Generator | None = None,
    segment_start: float | None = None,
    segment_end: float | None = None,
    audio_path: str | os.PathLike | None = None,
    require_video: bool = False,
    require_audio: bool = False,
) -> DecodedClip:
    """Decode a video window and its audio from one file (audio from ``audio_path`` when given).

    ``window_start``: seconds from the segment start; None picks it with :func:`choose_window_start` (random with
    ``generator``, centred without). ``segment_start`` / ``segment_end`` bound the usable part of the file.
    ``require_video`` / ``require_audio`` turn a missing stream into MediaError instead of a None field.
    """
    path = str(path)
    seg_start = segment_start or 0.0
    with media_errors(path), open_media(path) as container:
        main_stream = _main_stream(container, path, audio_path is not None, require_video)
        seg_end = _clipped_segment_end(container, main_stream, segment_end)
        duration = _segment_duration(path, seg_start, seg_end)
        window_start = _checked_window_start(path, window_start, duration, spec, generator)
        window_file_start = seg_start + window_start
        frames = frame_times = None
        num_padded = 0
        if container.streams.video:
            targets = [window_file_start + k / spec.frames_per_second for k in range(spec.num_frames)]
            frames, frame_times, num_padded = decode_video_window(
                container, path, targets, segment_end, spec.short_side
            )
        audio_from, audio_to = _audio_bounds(spec, segment_start, segment_end, window_file_start, seg_end)
        waveform = audio_start = None
        if audio_path is None and container.streams.audio:
            samples, audio_start = decode_audio_span(container, path, audio_from, audio_to, spec.sample_rate)
            waveform = torch.from_numpy(samples)

    if audio_path is not None:
        waveform, audio_start = decode_audio(audio_path, audio_from, audio_to, spec.sample_rate)
    if waveform is None and require_audio:
        raise MediaError(path, "no_audio_stream", "file has no audio stream")
    if duration is None and waveform is not None and spec.audio_window == "full":
        # Neither the request nor the container bounded the segment: the decoded audio is the whole of it.
        duration = waveform.shape[0] / spec.sample_rate
    return DecodedClip(
        path=path,
        frames=frames,
        frame_times=frame_times,
        num_padded_frames=num_padded,
        waveform=waveform,
        sample_rate=spec.sample_rate,
        audio_start=audio_start,
        segment_start=seg_start,
        duration=duration,
        window_start=float(window_start),
    )


def _main_stream(container, path: str, has_separate_audio: bool, require_video: bool):
    """The stream whose declared duration bounds the segment: the video, else the file's own audio.

    None when the file has no video and its audio comes from a separate file."""
    if container.streams.video:
        return container.streams.video[0]
    if require_video:
        raise MediaError(path, "no_video_stream", "file has no video stream")
    if has_separate_audio:
        return None
    if container.streams.audio:
        return container.streams.audio[0]
    raise MediaError(path, "unreadable", "file has neither a video nor an audio stream")


def _clipped_segment_end(container, main_stream, segment_end: float | None) -> float | None:
    """The requested segment end, capped at the main stream's declared duration (which fills in a missing one)."""
    file_duration = stream_duration(main_stream, container) if main_stream is not None else None
    if file_duration is None:
        return segment_end
    return file_duration if segment_end is None else min(segment_end, file_duration)


def _segment_duration(path: str, seg_start: float, seg_end: float | None) -> float | None:
    """Seconds from the segment start to its end (None when the end is unknown); ``too_short`` if not positive."""
    if seg_end is None:
        return None
    duration = seg_end - seg_start
    if duration <= 0:
        raise MediaError(path, "too_short", f"segment starts at {seg_start:.3f} s but the file ends at {seg_end:.3f} s")
    return duration


def _checked_window_start(
    path: str, window_start: float | None, duration: float | None, spec: ClipSpec, generator: torch.Generator | None
) -> float:
    """The caller's window start, checked against the segment, or one chosen by :func:`choose_window_start`."""
    if window_start is None:
        return choose_window_start(duration, spec.window_duration, generator)
    if window_start < 0 or (duration is not None and window_start >= duration):
        raise MediaError(path, "too_short", f"window start {window_start:.3f} s is outside the {duration} s segment")
    return window_start


def _audio_bounds(
    spec: ClipSpec,
    segment_start: float | None,
    segment_end: float | None,
    window_file_start: float,
    seg_end: float | None,
) -> tuple[float | None, float | None]:
    """File-time span of audio to decode: the requested segment (``"full"``) or the video window (``"aligned"``).

    ``"full"`` passes the request through as given (None = file start / end), not capped at the main stream's
    declared duration, unless the segment is longer than ``spec.audio_seconds``: then the span of that length
    centred on the video window, moved inside the segment."""
    if spec.audio_window == "full":
        seg_from = segment_start or 0.0
        if spec.audio_seconds is None or seg_end is None or seg_end - seg_from <= spec.audio_seconds:
            return segment_start, segment_end
        centre = window_file_start + spec.window_duration / 2.0
        start = min(max(centre - spec.audio_seconds / 2.0, seg_from), seg_end - spec.audio_seconds)
        return start, start + spec.audio_seconds
    audio_to = window_file_start + spec.window_duration
    if seg_end is not None:
        audio_to = min(audio_to, seg_end)
    return window_file_start, audio_to


_TENSOR_FIELDS = ("frames", "frame_times", "waveform")


def _state_bytes(generator: torch.Generator | None) -> bytes | None:
    return None if generator is None else generator.get_state().numpy().tobytes()


def _restore_state(generator: torch.Generator, state: bytes) -> None:
    generator.set_state(torch.from_numpy(np.frombuffer(state, dtype=np.uint8).copy()))


def _portable_decode(
    entry: ManifestEntry,
    spec: ClipSpec,
    window_start: float | None,
    generator_state: bytes | None,
    require_video: bool,
    require_audio: bool,
) -> tuple[dict, bytes | None]:
    """:func:`decode_entry` in a form that crosses a process boundary: NumPy arrays and bytes, no tensors."""
    generator = None
    if generator_state is not None:
        generator = torch.Generator()
        _restore_state(generator, generator_state)
    clip = decode_entry(entry, spec, window_start, generator, require_video, require_audio)
    fields = {f.name: getattr(clip, f.name) for f in dataclasses.fields(clip)}  # asdict would deep-copy the frames
    for name in _TENSOR_FIELDS:
        if fields[name] is not None:
            fields[name] = fields[name].numpy()
    return fields, _state_bytes(generator)


def decode_entry_isolated(
    runner,
    entry: ManifestEntry,
    spec: ClipSpec,
    window_start: float | None = None,
    generator: torch.Generator | None = None,
    require_video: bool = False,
    require_audio: bool = False,
) -> DecodedClip:
    """:func:`decode_entry` run by ``runner`` (a :class:`mjepa.data.media.isolation.IsolatedRunner`): a decoder crash or
    hang on this file raises MediaError (``crashed`` / ``timeout``) instead of taking the caller down. The same
    clip, and the same generator state afterwards, as the direct call."""
    fields, state = runner(
        entry.path, _portable_decode, entry, spec, window_start, _state_bytes(generator), require_video, require_audio
    )
    if generator is not None:
        _restore_state(generator, state)
    for name in _TENSOR_FIELDS:
        if fields[name] is not None:
            fields[name] = torch.from_numpy(fields[name])
    return DecodedClip(**fields)


def decode_entry(
    entry: ManifestEntry,
    spec: ClipSpec,
    window_start: float | None = None,
    generator: torch.Generator | None = None,
    require_video: bool = False,
    require_audio: bool = False,
) -> DecodedClip:
    """:func:`decode_clip` for a manifest entry (its path, audio_path and start/end bounds)."""
    return decode_clip(
        entry.path,
        spec,
        window_start=window_start,
        generator=generator,
        segment_start=entry.start,
        segment_end=entry.end,
        audio_path=entry.audio_path,
        require_video=require_video,
        require_audio=require_audio,
    )
