"""Opening media files, what their containers declare, and the errors decoding them raises.

Shared by :mod:`mjepa.data.media.decode` and its decoding internals (:mod:`mjepa.data.media.video_window`,
:mod:`mjepa.data.media.audio_span`); the public names are re-exported from :mod:`mjepa.data.media.decode`.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av

from mjepa.data.media.container_check import find_truncation
from mjepa.data.media.members import MemberReadError, parse_member, read_member

MEDIA_ERROR_REASONS = (
    "missing",
    "zero_length",
    "unreadable",
    "truncated",
    "no_video_stream",
    "no_audio_stream",
    "too_short",
    "non_finite",
    "decoder_error",
    "crashed",
    "timeout",
    "implausible",
)

# Frame timestamps are compared with this slack: Matroska stores milliseconds, so 1/30 s becomes 0.033.
TIME_EPSILON_S = 1e-3
# A stream that stops this much earlier than its declared duration is treated as truncated, not short.
TRUNCATION_TOLERANCE_S = 0.5


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


def unexpected_error(path: str | os.PathLike, err: Exception) -> MediaError:
    """The MediaError for an exception that is not a MediaError, raised while reading one file: the decoder's
    bindings raise many kinds (UnicodeDecodeError, ValueError, av's own), all of them about that file."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return MediaError(path, "decoder_error", f"{type(err).__name__}: {message}"[:500])


@contextmanager
def media_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn any exception but MediaError and MemoryError raised inside into a MediaError naming ``path``."""
    try:
        yield
    except (MediaError, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - converted, counted and named by the caller, never swallowed
        raise unexpected_error(path, err) from None


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


def check_file(path: str) -> int:
    """Size in bytes of an existing, non-empty regular file (or shard member); MediaError otherwise."""
    member = parse_member(path)
    if member is not None:
        if member.size == 0:
            raise MediaError(path, "zero_length", "shard member is empty (0 bytes)")
        return member.size
    if not os.path.exists(path):
        raise MediaError(path, "missing", "file does not exist")
    if not os.path.isfile(path):
        raise MediaError(path, "unreadable", "path is not a regular file")
    size = os.path.getsize(path)
    if size == 0:
        raise MediaError(path, "zero_length", "file is empty (0 bytes)")
    return size


def truncation_or_none(path: str) -> str | None:
    """:func:`find_truncation`'s finding, or None when there is none or the file cannot be read for it (shard
    members are not checked: packing decoded every one of them)."""
    if parse_member(path) is not None:
        return None
    try:
        return find_truncation(path)
    except OSError:
        return None


# The demuxers a media file may be read with: audio and video containers. Left out are those that open other paths
# or URLs a file names (concat lists, HLS and DASH playlists, image sequences, tee, SDP/RTSP, lavfi graphs): with them
# a dataset file could make the decoder read any local file, a device or a FIFO, or reach the network.
ALLOWED_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "flv",
    "mpegts",
    "mpeg",
    "mxf",
    "nut",
    "asf",
    "rm",
    "dv",
    "ogg",
    "wav",
    "w64",
    "flac",
    "mp3",
    "aac",
    "ac3",
    "eac3",
    "dts",
    "truehd",
    "mlp",
    "gsm",
    "aiff",
    "caf",
    "au",
    "amr",
    "wv",
    "ape",
    "tta",
    "voc",
    "ivf",
    "h264",
    "hevc",
    "m4v",
    "mjpeg",
    "yuv4mpegpipe",
)
# Options of every open: the demuxers above, and no protocol but the local file (object-store and shard members are
# read by Python and handed over as bytes).
CONFINED_OPEN_OPTIONS = {"format_whitelist": ",".join(ALLOWED_DEMUXERS), "protocol_whitelist": "file"}
REFUSED_CONTAINER = (
    "not an allowed media container (playlists, concat lists and image sequences, which make FFmpeg open the paths "
    "they name, are refused)"
)


@dataclass(frozen=True)
class MediaLimits:
    """What a media file's header may declare before any decoding. The defaults are far beyond real datasets (clips of
    seconds, videos of hours); a header past them is lying or the file is not what a dataset holds, and it is refused
    at once (reason ``implausible``) instead of being decoded until a watchdog stops it."""

    max_seconds: float = 12 * 3600.0
    min_sample_rate: int = 1000
    max_sample_rate: int = 768_000
    max_channels: int = 64
    max_side: int = 16_384  # pixels, width or height


DEFAULT_LIMITS = MediaLimits()


def check_header(path: str, container, limits: MediaLimits = DEFAULT_LIMITS) -> None:
    """Refuse a file whose declared duration, sample rate, channel count or frame size is past ``limits``."""
    problems = []
    for stream in (*container.streams.audio[:1], *container.streams.video[:1]):
        duration = stream_duration(stream, container)
        if duration is not None and duration > limits.max_seconds:
            article = "an" if stream.type == "audio" else "a"
            problems.append(
                f"{article} {stream.type} stream of {duration / 3600:.1f} h (more than {limits.max_seconds / 3600:g} h)"
            )
    if container.streams.audio:
        context = container.streams.audio[0].codec_context
        if context.sample_rate and not limits.min_sample_rate <= context.sample_rate <= limits.max_sample_rate:
            problems.append(
                f"a sample rate of {context.sample_rate} Hz (outside {limits.min_sample_rate}-"
                f"{limits.max_sample_rate} Hz)"
            )
        if context.channels > limits.max_channels:
            problems.append(f"{context.channels} audio channels (more than {limits.max_channels})")
    if container.streams.video:
        context = container.streams.video[0].codec_context
        if max(context.width, context.height) > limits.max_side:
            problems.append(f"frames of {context.width} x {context.height} (a side over {limits.max_side} px)")
    if problems:
        raise MediaError(path, "implausible", "its header declares " + " and ".join(problems))


def open_media(path: str) -> av.container.InputContainer:
    """Open a file for decoding, its header checked against :data:`DEFAULT_LIMITS`; failures become MediaError
    (``truncated`` when the structure shows why)."""
    check_file(path)
    # An absolute path: FFmpeg reads "file:x.wav" or "concat:a|b" in a relative path as a protocol, never "/...".
    source = os.path.abspath(path)
    member = parse_member(path)
    if member is not None:
        try:
            source = io.BytesIO(read_member(member))
        except MemberReadError as err:
            raise MediaError(path, err.reason, err.detail) from None
    try:
        # Tags are free text in any encoding (Latin-1 is common in AVI and WAV): never a reason to reject a file.
        container = av.open(source, mode="r", metadata_errors="replace", options=CONFINED_OPEN_OPTIONS)
    except av.error.FFmpegError as err:
        truncation = truncation_or_none(path)
        if truncation is not None:
            raise MediaError(path, "truncated", truncation) from None
        if getattr(err, "errno", None) == errno.EINVAL:
            raise MediaError(path, "unreadable", REFUSED_CONTAINER) from None
        raise MediaError(path, "unreadable", f"FFmpeg cannot open it ({err.strerror or err})") from None
    except OSError as err:
        raise MediaError(path, "unreadable", f"cannot open it ({err})") from None
    try:
        check_header(path, container)
    except MediaError:
        container.close()
        raise
    return container


def seconds(value: int | None, time_base) -> float | None:
    """A timestamp or duration in ``time_base`` units as seconds (None when either is unknown)."""
    if value is None or time_base is None:
        return None
    return float(value * time_base)


# Files whose timestamps start this far from zero are read with times counted from their first timestamp (what
# FFmpeg's own tools do with -ss): an MPEG-TS capture's clock starts anywhere in its 26.5-hour cycle, and one that
# wraps past 2^33 inside the file starts at a negative time once FFmpeg has unwrapped it. Smaller offsets (encoder
# delay, edit lists) stay as the file declares them, which keeps its audio and video aligned as authored.
TIME_ORIGIN_MIN_S = 1.0


def time_origin(container) -> float:
    """The file time that counts as 0 s: the container's first timestamp when it is at least ``TIME_ORIGIN_MIN_S``
    from zero, else 0."""
    if container.start_time is None:
        return 0.0
    start = container.start_time / av.time_base
    return start if abs(start) >= TIME_ORIGIN_MIN_S else 0.0


def container_duration(container) -> float | None:
    if container.duration is None:
        return None
    return container.duration / av.time_base


def stream_duration(stream, container) -> float | None:
    """Declared stream duration; Matroska and WebM only declare it for the whole container."""
    duration = seconds(stream.duration, stream.time_base)
    return duration if duration is not None else container_duration(container)


def probe_media(path: str | os.PathLike) -> MediaInfo:
    """Open a file and read what its container declares (streams, codecs, durations). Raises MediaError."""
    path = str(path)
    size = check_file(path)
    with media_errors(path), open_media(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        return MediaInfo(
            path=path,
            size_bytes=size,
            container_format=container.format.name,
            duration=container_duration(container),
            has_video=video is not None,
            has_audio=audio is not None,
            video_codec=video.codec_context.name if video is not None else None,
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            frame_rate=float(video.average_rate) if video is not None and video.average_rate else None,
            video_duration=stream_duration(video, container) if video is not None else None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
            audio_duration=stream_duration(audio, container) if audio is not None else None,
        )


def raise_if_truncated(path: str, container, stream, decoded_end: float, kind: str) -> None:
    """Raise ``truncated`` when a stream stopped well before the end its headers declare.

    A stream-level duration (MP4, AVI, WAV, FLAC) is trusted on its own. A container-level one (Matroska, WebM)
    covers the longest stream, so a legitimately shorter stream would match it; there the structural check of
    :func:`find_truncation` must confirm it."""
    # ``decoded_end`` counts from the file's time origin; declared durations count from the stream's or the
    # container's own first timestamp.
    origin = time_origin(container)
    stream_end = seconds(stream.duration, stream.time_base)
    if stream_end is not None:
        stream_end += (seconds(stream.start_time, stream.time_base) or 0.0) - origin
        if decoded_end + TRUNCATION_TOLERANCE_S < stream_end:
            detail = truncation_or_none(path) or (
                f"{kind} stops at {decoded_end:.3f} s but the stream declares {stream_end:.3f} s"
            )
            raise MediaError(path, "truncated", detail)
        return
    end_of_container = container_duration(container)
    if end_of_container is not None and container.start_time is not None:
        end_of_container += container.start_time / av.time_base - origin
    if end_of_container is not None and decoded_end + TRUNCATION_TOLERANCE_S < end_of_container:
        detail = truncation_or_none(path)
        if detail is not None:
            raise MediaError(path, "truncated", detail)


def decode_failure(path: str, err: Exception, where: str) -> MediaError:
    """The MediaError for an FFmpeg error mid-decode: ``truncated`` when the structure explains it."""
    truncation = truncation_or_none(path)
    if truncation is not None:
        return MediaError(path, "truncated", truncation)
    return MediaError(path, "unreadable", f"decoding failed {where} ({err})")
