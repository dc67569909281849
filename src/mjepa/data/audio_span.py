"""Decoding a span of a file's audio stream to mono float32 samples at a chosen rate.

The resampling and downmix rules are described in :mod:`mjepa.data.decode`, which is the public entry point.
"""

from __future__ import annotations

import math

import av
import numpy as np

from mjepa.data.media_info import (
    TIME_EPSILON_S,
    TRUNCATION_TOLERANCE_S,
    MediaError,
    decode_failure,
    raise_if_truncated,
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
    return _trim_to_span(container, stream, path, samples, first_time, start, end, sample_rate)


def _decode_from(
    container, stream, path: str, seek_to: float, start: float | None, end: float | None, sample_rate: int
) -> tuple[list[np.ndarray], float]:
    """Seek to ``seek_to`` and decode mono chunks until ``end``; also returns the file time of the first one.

    Stops early (with the chunks so far) when the seek landed after ``start``, for the caller to retry."""
    if seek_to > 0:
        container.seek(max(0, math.floor(seek_to / stream.time_base)), stream=stream, backward=True)
    else:
        # Back to the file start through the container's default stream: a seek on an audio stream that has no
        # index entries (Matroska indexes only the video) can leave the demuxer where it was.
        container.seek(0, backward=True)
    # Keep the input layout: channels are averaged below, not downmixed by FFmpeg (see mjepa.data.decode).
    resampler = av.AudioResampler(format="fltp", rate=sample_rate)
    chunks: list[np.ndarray] = []
    first_time = None
    try:
        for frame in container.decode(stream):
            time = frame.time
            if first_time is None:
                first_time = time if time is not None else 0.0
                if start is not None and first_time > start + TIME_EPSILON_S and seek_to > 0:
                    break  # the seek overshot; the caller tries again from the file start
            if end is not None and time is not None and time >= end:
                break
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
    except av.error.FFmpegError as err:
        raise decode_failure(path, err, "in the audio stream") from None
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
