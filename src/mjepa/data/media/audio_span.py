"""Decoding a span of a file's audio stream to mono float32 samples at a chosen rate.

The resampling and downmix rules are described in :mod:`mjepa.data.media.decode`, which is the public entry point.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import av
import numpy as np

from mjepa.data.media.info import (
    TIME_EPSILON_S,
    TRUNCATION_TOLERANCE_S,
    MediaError,
    decode_failure,
    open_media,
    raise_if_truncated,
    time_origin,
)

# Audio seeks land on a packet boundary; starting a little earlier guarantees the first sample is covered.
_AUDIO_SEEK_MARGIN_S = 0.5


def decode_audio_span(
    container, path: str, start: float | None, end: float | None, sample_rate: int
) -> tuple[np.ndarray, float]:
    """Mono float32 samples covering [start, end) in file time (None = file start / end), and the file time of the
    first returned sample."""
    stream = container.streams.audio[0]
    for attempt in ("seek", "from_start"):
        seek_to = 0.0 if attempt == "from_start" or start is None else max(0.0, start - _AUDIO_SEEK_MARGIN_S)
        chunks, first_time = _decode_from(container, stream, path, seek_to, start, end, sample_rate)
        if start is not None and first_time > start + TIME_EPSILON_S and seek_to > 0:
            continue  # the seek overshot; try again from the file start
        break
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    samples, first = _trim_to_span(container, stream, path, samples, first_time, start, end, sample_rate)
    check_finite(path, samples)
    return samples, first


def check_finite(path: str, samples: np.ndarray) -> None:
    """NaN or infinite samples (a float WAV can hold them) are a bad file, never silently passed to the model."""
    bad = int(samples.size - np.count_nonzero(np.isfinite(samples)))
    if bad:
        raise MediaError(path, "non_finite", f"{bad} of {samples.size} audio samples are NaN or infinite")


# Packets that fail to decode are dropped (FFmpeg's own tools do the same, with a warning) as long as they are this
# share of the packets read at most; past it the file is unreadable.
MAX_BAD_PACKET_SHARE = 0.05
_BAD_PACKET_FLOOR = 2  # so one bad packet in a short span is tolerated too

_SAMPLE_DTYPES = {
    "u8": np.uint8,
    "s16": np.int16,
    "s32": np.int32,
    "s64": np.int64,
    "flt": np.float32,
    "dbl": np.float64,
}
_INTEGER_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def mono_samples(frame) -> np.ndarray:
    """A decoded audio frame's channels averaged, as float32 in [-1, 1], for any sample format, planar or packed.

    Averaging here, before resampling, keeps FFmpeg's resampler on one channel whatever the file's layout (its
    rematrixing of 8 and more channels is where decoding crashed) and avoids FFmpeg's downmix scaling."""
    channels = max(1, len(frame.layout.channels))
    name = frame.format.name.rstrip("p")
    # The samples are read from the frame's planes by hand, for every format: PyAV's to_ndarray counts one plane too
    # many for 8-channel planar frames (7.1 AAC, Vorbis) and reads past the last, which crashed the process, and it
    # does not convert 64-bit integer PCM at all.
    dtype = _SAMPLE_DTYPES[name]
    if frame.format.is_planar:
        planes = [np.frombuffer(memoryview(plane), dtype=dtype)[: frame.samples] for plane in frame.planes[:channels]]
        data = np.stack(planes)
    else:
        interleaved = np.frombuffer(memoryview(frame.planes[0]), dtype=dtype)[: frame.samples * channels]
        data = interleaved.reshape(-1, channels).T
    data = data.astype(np.float32)
    if name == "u8":
        data = (data - 128.0) / _INTEGER_SCALE["u8"]
    elif name in _INTEGER_SCALE:
        data = data / _INTEGER_SCALE[name]
    return data.mean(axis=0, dtype=np.float32)


def _seek(container, stream, seek_to: float, origin: float) -> bool:
    """Seek to ``seek_to`` seconds after the file's time ``origin``; returns False when a seek back to the start was
    refused or cannot be expressed (then the caller reads the file from a fresh open, which starts there)."""
    if seek_to > 0:
        container.seek(math.floor((seek_to + origin) / stream.time_base), stream=stream, backward=True)
        return True
    if origin != 0.0:
        return False  # timestamps that FFmpeg unwrapped to negative values: a fresh open is the sure way back
    try:
        # Back to the file start through the container's default stream: a seek on an audio stream that has no
        # index entries (Matroska indexes only the video) can leave the demuxer where it was.
        container.seek(0, backward=True)
    except av.error.FFmpegError:
        # A short stream without an index (a FLAC of a few frames, as a shard member) refuses any seek, EPERM,
        # even to where a freshly opened file already is.
        return False
    return True


def iter_mono_frames(
    container, stream, path: str, seek_to: float, end: float | None, sample_rate: int
) -> Iterator[tuple[float | None, np.ndarray]]:
    """Seek to ``seek_to`` and yield ``(file time, mono samples at sample_rate)`` for each decoded frame until ``end``,
    then ``(None, the resampler's tail)``. One chunk at a time, so a caller can measure hours of audio without
    holding it. Isolated undecodable packets are dropped (``MAX_BAD_PACKET_SHARE``); FFmpeg errors become
    MediaError."""
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=sample_rate)
    packets = bad_packets = 0
    reopened = None
    origin = time_origin(container)
    try:
        if not _seek(container, stream, seek_to, origin):
            # The stream refused to go back to its start (or cannot be sent there): read it from a fresh open.
            reopened = open_media(path)
            container, stream = reopened, reopened.streams.audio[stream.index - _first_audio_index(container)]
        for packet in container.demux(stream):
            packets += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError as err:
                bad_packets += 1
                if bad_packets > max(_BAD_PACKET_FLOOR, MAX_BAD_PACKET_SHARE * packets):
                    detail = f"in the audio stream ({bad_packets} of {packets} packets)"
                    raise decode_failure(path, err, detail) from None
                continue
            for frame in frames:
                time = None if frame.time is None else frame.time - origin
                if end is not None and time is not None and time >= end:
                    yield None, _resampled(resampler, None)
                    return
                mono = av.AudioFrame.from_ndarray(mono_samples(frame)[None, :], format="fltp", layout="mono")
                mono.sample_rate = frame.sample_rate
                yield time, _resampled(resampler, mono)
        yield None, _resampled(resampler, None)
    except av.error.FFmpegError as err:
        raise decode_failure(path, err, "in the audio stream") from None
    finally:
        if reopened is not None:
            reopened.close()


def _first_audio_index(container) -> int:
    return container.streams.audio[0].index if container.streams.audio else 0


def _resampled(resampler, frame) -> np.ndarray:
    parts = [out.to_ndarray()[0].astype(np.float32, copy=False) for out in resampler.resample(frame)]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _decode_from(
    container, stream, path: str, seek_to: float, start: float | None, end: float | None, sample_rate: int
) -> tuple[list[np.ndarray], float]:
    """Seek to ``seek_to`` and decode mono chunks until ``end``; also returns the file time of the first one.

    Stops early (with the chunks so far) when the seek landed after ``start``, for the caller to retry."""
    chunks: list[np.ndarray] = []
    first_time = None
    for time, samples in iter_mono_frames(container, stream, path, seek_to, end, sample_rate):
        if first_time is None:
            if time is None and not samples.size:
                break
            first_time = time if time is not None else 0.0
            if start is not None and first_time > start + TIME_EPSILON_S and seek_to > 0:
                return chunks, first_time  # the seek overshot; the caller tries again from the file start
        chunks.append(samples)
    if first_time is None:
        raise MediaError(path, "too_short", f"no audio in the span starting at {start or 0.0:.3f} s")
    return chunks, first_time


def _trim_to_span(
    container,
    stream,
    path: str,
    samples: np.ndarray,
    first_time: float,
    start: float | None,
    end: float | None,
    sample_rate: int,
) -> tuple[np.ndarray, float]:
    """Cut decoded samples to [start, end); raises ``truncated`` when the stream ended well before it should."""
    decoded_samples = samples.shape[0]
    begin = 0 if start is None else max(0, round((start - first_time) * sample_rate))
    stop = decoded_samples if end is None else min(decoded_samples, max(begin, round((end - first_time) * sample_rate)))
    decoded_end = first_time + decoded_samples / sample_rate
    if end is None or decoded_end + TRUNCATION_TOLERANCE_S < end:
        raise_if_truncated(path, container, stream, decoded_end, "audio")
    if stop <= begin:
        raise MediaError(path, "too_short", f"no audio samples between {start or 0.0:.3f} s and {end} s")
    return np.ascontiguousarray(samples[begin:stop]), first_time + begin / sample_rate
