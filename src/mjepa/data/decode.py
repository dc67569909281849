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
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import av
import numpy as np
import torch

from mjepa.config import dataclass_from_dict
from mjepa.data.container_check import find_truncation
from mjepa.data.manifest import ManifestEntry

MEDIA_ERROR_REASONS = (
    "missing",
    "zero_length",
    "unreadable",
    "truncated",
    "no_video_stream",
    "no_audio_stream",
    "too_short",
)
AUDIO_WINDOWS = ("full", "aligned")

# Frame timestamps are compared with this slack: Matroska stores milliseconds, so 1/30 s becomes 0.033.
_TIME_EPSILON_S = 1e-3
# A stream that stops this much earlier than its declared duration is treated as truncated, not short.
_TRUNCATION_TOLERANCE_S = 0.5
# Audio seeks land on a packet boundary; starting a little earlier guarantees the first sample is covered.
_AUDIO_SEEK_MARGIN_S = 0.5


class MediaError(Exception):
    """A media file that cannot give what was asked of it; ``reason`` is one of ``MEDIA_ERROR_REASONS``."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str):
        if reason not in MEDIA_ERROR_REASONS:
            raise ValueError(f"MediaError reason {reason!r} is not one of {', '.join(MEDIA_ERROR_REASONS)}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason.replace('_', ' ')}: {detail}")

    def __reduce__(self):
        # Keeps the exception picklable, so it survives DataLoader worker and process-pool boundaries intact.
        return (MediaError, (self.path, self.reason, self.detail))


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

    @property
    def window_duration(self) -> float:
        """Seconds covered by the video window: num_frames / frames_per_second."""
        return self.num_frames / self.frames_per_second

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ClipSpec":
        return dataclass_from_dict(cls, values)


@dataclass(frozen=True)
class MediaInfo:
    """What the container declares about a file, without decoding it."""

    path: str
    size_bytes: int
    container_format: str
    duration: float | None  # seconds, longest stream as the container declares it
    has_video: bool
    has_audio: bool
    video_codec: str | None
    width: int | None
    height: int | None
    frame_rate: float | None
    video_duration: float | None
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    audio_duration: float | None


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
    def is_padded(self) -> bool:
        return self.num_padded_frames > 0


def _check_file(path: str) -> int:
    if not os.path.exists(path):
        raise MediaError(path, "missing", "file does not exist")
    if not os.path.isfile(path):
        raise MediaError(path, "unreadable", "path is not a regular file")
    size = os.path.getsize(path)
    if size == 0:
        raise MediaError(path, "zero_length", "file is empty (0 bytes)")
    return size


def _truncation_or_none(path: str) -> str | None:
    try:
        return find_truncation(path)
    except OSError:
        return None


def _open(path: str) -> av.container.InputContainer:
    _check_file(path)
    try:
        return av.open(path, mode="r")
    except av.error.FFmpegError as err:
        truncation = _truncation_or_none(path)
        if truncation is not None:
            raise MediaError(path, "truncated", truncation) from None
        raise MediaError(path, "unreadable", f"FFmpeg cannot open it ({err.strerror or err})") from None
    except OSError as err:
        raise MediaError(path, "unreadable", f"cannot open it ({err})") from None


def _seconds(value: int | None, time_base) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _container_duration(container) -> float | None:
    if container.duration is None:
        return None
    return container.duration / av.time_base


def _stream_duration(stream, container) -> float | None:
    """Declared stream duration; Matroska and WebM only declare it for the whole container."""
    duration = _seconds(stream.duration, stream.time_base)
    return duration if duration is not None else _container_duration(container)


def probe_media(path: str | os.PathLike) -> MediaInfo:
    """Open a file and read what its container declares (streams, codecs, durations). Raises MediaError."""
    path = str(path)
    size = _check_file(path)
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        return MediaInfo(
            path=path,
            size_bytes=size,
            container_format=container.format.name,
            duration=_container_duration(container),
            has_video=video is not None,
            has_audio=audio is not None,
            video_codec=video.codec_context.name if video is not None else None,
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            frame_rate=float(video.average_rate) if video is not None and video.average_rate else None,
            video_duration=_stream_duration(video, container) if video is not None else None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
            audio_duration=_stream_duration(audio, container) if audio is not None else None,
        )


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


def _frame_rgb(frame: av.VideoFrame, short_side: int | None) -> np.ndarray:
    if short_side is None or min(frame.width, frame.height) == short_side:
        return frame.to_ndarray(format="rgb24")
    scale = short_side / min(frame.width, frame.height)
    width = max(2, round(frame.width * scale))
    height = max(2, round(frame.height * scale))
    if frame.width <= frame.height:
        width = short_side
    else:
        height = short_side
    # AREA averages when shrinking (no aliasing); BILINEAR when enlarging.
    interpolation = "AREA" if scale < 1 else "BILINEAR"
    return frame.reformat(width=width, height=height, format="rgb24", interpolation=interpolation).to_ndarray()


def _raise_if_truncated(path: str, container, stream, decoded_end: float, kind: str) -> None:
    """Raise ``truncated`` when a stream stopped well before the end its headers declare.

    A stream-level duration (MP4, AVI, WAV, FLAC) is trusted on its own. A container-level one (Matroska, WebM)
    covers the longest stream, so a legitimately shorter stream would match it; there the structural check of
    :func:`find_truncation` must confirm it."""
    stream_end = _seconds(stream.duration, stream.time_base)
    if stream_end is not None:
        if decoded_end + _TRUNCATION_TOLERANCE_S < stream_end:
            detail = _truncation_or_none(path) or (
                f"{kind} stops at {decoded_end:.3f} s but the stream declares {stream_end:.3f} s"
            )
            raise MediaError(path, "truncated", detail)
        return
    container_end = _container_duration(container)
    if container_end is not None and decoded_end + _TRUNCATION_TOLERANCE_S < container_end:
        detail = _truncation_or_none(path)
        if detail is not None:
            raise MediaError(path, "truncated", detail)


def _decode_failure(path: str, err: Exception, where: str) -> MediaError:
    truncation = _truncation_or_none(path)
    if truncation is not None:
        return MediaError(path, "truncated", truncation)
    return MediaError(path, "unreadable", f"decoding failed {where} ({err})")


def _iter_frames_from(container, stream, start_time: float):
    """Decoded frames from the key frame before ``start_time`` (or the file start) on, with their times."""
    if start_time > 0:
        container.seek(max(0, math.floor(start_time / stream.time_base)), stream=stream, backward=True)
    step = 1.0 / float(stream.average_rate) if stream.average_rate else 0.04
    previous_time = None
    for frame in container.decode(stream):
        time = frame.time
        if time is None:  # timestamp-less streams: count frames at the declared rate
            time = 0.0 if previous_time is None else previous_time + step
        previous_time = time
        yield frame, time


def _decode_video_window(
    container, path: str, targets: list[float], segment_end: float | None, short_side: int | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    step = 1.0 / float(stream.average_rate) if stream.average_rate else None
    chosen: list[tuple[av.VideoFrame, float] | None] = [None] * len(targets)
    previous: tuple[av.VideoFrame, float] | None = None
    next_target = 0
    start = targets[0]
    try:
        frames = _iter_frames_from(container, stream, start)
        first = next(frames, None)
        if first is not None and first[1] > start + _TIME_EPSILON_S and start > 0:
            # The seek overshot (missing index or cues); decode from the beginning instead.
            frames = _iter_frames_from(container, stream, 0.0)
            first = next(frames, None)
        while first is not None:
            frame, time = first
            if segment_end is not None and time >= segment_end - _TIME_EPSILON_S:
                break
            while next_target < len(targets) and targets[next_target] < time - _TIME_EPSILON_S:
                # The target falls before this frame: the frame on screen then is the previous one.
                chosen[next_target] = previous if previous is not None else (frame, time)
                next_target += 1
            if next_target == len(targets):
                break
            previous = (frame, time)
            first = next(frames, None)
    except av.error.FFmpegError as err:
        raise _decode_failure(path, err, f"in the video stream near {start:.2f} s") from None

    if previous is None and next_target == 0:
        if start <= 0:
            raise MediaError(path, "unreadable", "video stream holds no decodable frame")
        raise MediaError(path, "too_short", f"no video frame in the window starting at {start:.3f} s")
    num_padded = 0
    if next_target < len(targets):
        _, last_time = previous
        video_end = last_time + (step or 0.0)
        stopped_early = segment_end is None or video_end < segment_end - _TIME_EPSILON_S
        if stopped_early:
            _raise_if_truncated(path, container, stream, video_end, "video")
        limit = video_end if segment_end is None else min(video_end, segment_end)
        for index in range(next_target, len(targets)):
            chosen[index] = previous
            if targets[index] >= limit - _TIME_EPSILON_S:
                num_padded += 1

    # Convert each distinct frame once; padded windows repeat the same frame object.
    converted: dict[int, np.ndarray] = {}
    arrays = []
    for frame, _ in chosen:
        key = id(frame)
        if key not in converted:
            converted[key] = _frame_rgb(frame, short_side)
        arrays.append(converted[key])
    frames_tensor = torch.from_numpy(np.stack(arrays))
    times_tensor = torch.tensor([time for _, time in chosen], dtype=torch.float64)
    return frames_tensor, times_tensor, num_padded


def _decode_audio_span(
    container, path: str, start: float | None, end: float | None, sample_rate: int
) -> tuple[np.ndarray, float]:
    """Mono float32 samples covering [start, end) in file time (None = file start / end), and the file time of the
    first returned sample."""
    stream = container.streams.audio[0]
    for attempt in ("seek", "from_start"):
        seek_to = 0.0 if attempt == "from_start" or start is None else max(0.0, start - _AUDIO_SEEK_MARGIN_S)
        container.seek(max(0, math.floor(seek_to / stream.time_base)), stream=stream, backward=True)
        # Keep the input layout: channels are averaged below, not downmixed by FFmpeg (see module docstring).
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_time = None
        try:
            for frame in container.decode(stream):
                time = frame.time
                if first_time is None:
                    first_time = time if time is not None else 0.0
                    if start is not None and first_time > start + _TIME_EPSILON_S and seek_to > 0:
                        break  # the seek overshot; try again from the file start
                if end is not None and time is not None and time >= end:
                    break
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
        except av.error.FFmpegError as err:
            raise _decode_failure(path, err, "in the audio stream") from None
        if first_time is None:
            raise MediaError(path, "too_short", f"no audio in the span starting at {start or 0.0:.3f} s")
        if start is not None and first_time > start + _TIME_EPSILON_S and seek_to > 0:
            continue
        break
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    decoded_samples = samples.shape[0]
    begin = 0 if start is None else max(0, round((start - first_time) * sample_rate))
    stop = decoded_samples if end is None else min(decoded_samples, max(begin, round((end - first_time) * sample_rate)))
    decoded_end = first_time + decoded_samples / sample_rate
    if end is None or decoded_end + _TRUNCATION_TOLERANCE_S < end:
        _raise_if_truncated(path, container, stream, decoded_end, "audio")
    if stop <= begin:
        raise MediaError(path, "too_short", f"no audio samples between {start or 0.0:.3f} s and {end} s")
    return np.ascontiguousarray(samples[begin:stop]), first_time + begin / sample_rate


def decode_audio(
    path: str | os.PathLike, start: float | None = None, end: float | None = None, sample_rate: int = 16000
) -> tuple[torch.Tensor, float]:
    """Mono float32 waveform of [start, end) seconds (None = file start / end) at ``sample_rate``, and the file
    time of its first sample. Raises MediaError (``no_audio_stream`` when the file has none)."""
    path = str(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no_audio_stream", "file has no audio stream")
        samples, audio_start = _decode_audio_span(container, path, start, end, sample_rate)
    return torch.from_numpy(samples), audio_start


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
    with _open(path) as container:
        has_video = bool(container.streams.video)
        if require_video and not has_video:
            raise MediaError(path, "no_video_stream", "file has no video stream")
        main_stream = container.streams.video[0] if has_video else None
        if main_stream is None and container.streams.audio and audio_path is None:
            main_stream = container.streams.audio[0]
        if main_stream is None and audio_path is None:
            raise MediaError(path, "unreadable", "file has neither a video nor an audio stream")
        file_duration = _stream_duration(main_stream, container) if main_stream is not None else None
        seg_end = segment_end
        if file_duration is not None:
            seg_end = file_duration if seg_end is None else min(seg_end, file_duration)
        duration = None if seg_end is None else seg_end - seg_start
        if duration is not None and duration <= 0:
            raise MediaError(
                path, "too_short", f"segment starts at {seg_start:.3f} s but the file ends at {seg_end:.3f} s"
            )
        if window_start is None:
            window_start = choose_window_start(duration, spec.window_duration, generator)
        elif window_start < 0 or (duration is not None and window_start >= duration):
            raise MediaError(
                path, "too_short", f"window start {window_start:.3f} s is outside the {duration} s segment"
            )

        frames = frame_times = None
        num_padded = 0
        if has_video:
            first = seg_start + window_start
            targets = [first + k / spec.frames_per_second for k in range(spec.num_frames)]
            frames, frame_times, num_padded = _decode_video_window(
                container, path, targets, segment_end, spec.short_side
            )

        if spec.audio_window == "full":
            audio_from, audio_to = segment_start, segment_end
        else:
            audio_from = seg_start + window_start
            audio_to = audio_from + spec.window_duration
            if seg_end is not None:
                audio_to = min(audio_to, seg_end)
        waveform = audio_start = None
        if audio_path is None and container.streams.audio:
            samples, audio_start = _decode_audio_span(container, path, audio_from, audio_to, spec.sample_rate)
            waveform = torch.from_numpy(samples)

    if audio_path is not None:
        waveform, audio_start = decode_audio(audio_path, audio_from, audio_to, spec.sample_rate)
    if waveform is None and require_audio:
        raise MediaError(path, "no_audio_stream", "file has no audio stream")
    if duration is None and waveform is not None and spec.audio_window == "full":
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
