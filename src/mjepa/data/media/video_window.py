"""Decoding the video window of a clip: the frame on screen at each target time, padded past the end.

The sampling and padding rules are described in :mod:`mjepa.data.media.decode`, which is the public entry point.
"""

from __future__ import annotations

import math

import av
import numpy as np
import torch

from mjepa.data.media.info import (
    TIME_EPSILON_S,
    MediaError,
    decode_failure,
    raise_if_truncated,
    time_origin,
)

# A frame together with its file time in seconds.
TimedFrame = tuple[av.VideoFrame, float]


def decode_video_window(
    container, path: str, targets: list[float], segment_end: float | None, short_side: int | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """RGB frames (T, H, W, 3) on screen at each target file time, their real times, and how many are padding."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    chosen, last_decoded, num_found = _frames_on_screen(container, stream, path, targets, segment_end)
    num_padded = 0
    if num_found < len(targets):
        num_padded = _pad_past_end(container, stream, path, targets, segment_end, chosen, num_found, last_decoded)
    frames_tensor = torch.from_numpy(_stack_rgb(chosen, short_side))
    times_tensor = torch.tensor([time for _, time in chosen], dtype=torch.float64)
    return frames_tensor, times_tensor, num_padded


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


def iter_timed_frames(container, stream, start_time: float, rewind: bool = False):
    """Decoded frames from the key frame before ``start_time`` (or, for 0, from where a freshly opened file is,
    unless ``rewind`` seeks back to the file's first timestamp) on, with their times."""
    origin = time_origin(container)
    if start_time > 0 or rewind:
        container.seek(math.floor((start_time + origin) / stream.time_base), stream=stream, backward=True)
    step = 1.0 / float(stream.average_rate) if stream.average_rate else 0.04
    previous_time = None
    for frame in container.decode(stream):
        time = None if frame.time is None else frame.time - origin
        if time is None:  # timestamp-less streams: count frames at the declared rate
            time = 0.0 if previous_time is None else previous_time + step
        previous_time = time
        yield frame, time


def _frames_on_screen(
    container, stream, path: str, targets: list[float], segment_end: float | None
) -> tuple[list[TimedFrame | None], TimedFrame | None, int]:
    """Decode up to the last target (or the segment end) and pick the frame on screen at each target.

    Returns the picks (None for targets past the last decoded frame), the last decoded frame before the segment
    end, and the number of targets picked. Raises MediaError when the window holds no frame at all."""
    chosen: list[TimedFrame | None] = [None] * len(targets)
    previous: TimedFrame | None = None
    next_target = 0
    start = targets[0]
    try:
        frames = iter_timed_frames(container, stream, start)
        current = next(frames, None)
        if current is not None and current[1] > start + TIME_EPSILON_S and start > 0:
            # The seek overshot (missing index or cues): decode from the first frame instead, the one place a seek
            # always lands.
            frames.close()
            frames = iter_timed_frames(container, stream, 0.0, rewind=True)
            current = next(frames, None)
        while current is not None:
            frame, time = current
            if segment_end is not None and time >= segment_end - TIME_EPSILON_S:
                break
            while next_target < len(targets) and targets[next_target] < time - TIME_EPSILON_S:
                # The target falls before this frame: the frame on screen then is the previous one.
                chosen[next_target] = previous if previous is not None else (frame, time)
                next_target += 1
            if next_target == len(targets):
                break
            previous = (frame, time)
            current = next(frames, None)
    except av.error.FFmpegError as err:
        raise decode_failure(path, err, f"in the video stream near {start:.2f} s") from None

    if previous is None and next_target == 0:
        if start <= 0:
            raise MediaError(path, "unreadable", "video stream holds no decodable frame")
        raise MediaError(path, "too_short", f"no video frame in the window starting at {start:.3f} s")
    return chosen, previous, next_target


def _pad_past_end(
    container,
    stream,
    path: str,
    targets: list[float],
    segment_end: float | None,
    chosen: list[TimedFrame | None],
    num_found: int,
    last_decoded: TimedFrame,
) -> int:
    """Fill the targets after ``num_found`` with the last frame and return how many of them lie past the end.

    Raises ``truncated`` when the video stopped well before the end its headers declare."""
    step = 1.0 / float(stream.average_rate) if stream.average_rate else None
    _, last_time = last_decoded
    video_end = last_time + (step or 0.0)
    stopped_early = segment_end is None or video_end < segment_end - TIME_EPSILON_S
    if stopped_early:
        raise_if_truncated(path, container, stream, video_end, "video")
    limit = video_end if segment_end is None else min(video_end, segment_end)
    num_padded = 0
    for index in range(num_found, len(targets)):
        chosen[index] = last_decoded
        if targets[index] >= limit - TIME_EPSILON_S:
            num_padded += 1
    return num_padded


def _stack_rgb(chosen: list[TimedFrame], short_side: int | None) -> np.ndarray:
    # Convert each distinct frame once; padded windows repeat the same frame object.
    converted: dict[int, np.ndarray] = {}
    arrays = []
    for frame, _ in chosen:
        key = id(frame)
        if key not in converted:
            converted[key] = _frame_rgb(frame, short_side)
        arrays.append(converted[key])
    return np.stack(arrays)
