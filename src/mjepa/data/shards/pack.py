"""Packing manifest items into WebDataset tar shards: each item re-encoded small, its bytes' places recorded.

One shard is one tar file in WebDataset's layout: for each item, members ``KEY.mp4`` (the video, H.264, short side
at most ``max_short_side``, at the source frame rate capped at ``max_fps``, a key frame every ``keyframe_seconds``,
starting at the item's segment start), ``KEY.flac`` (the audio, 16 kHz mono, lossless) and ``KEY.json`` (labels, source
path and segment). Any WebDataset reader can iterate it. Beside it, ``shard-N.jsonl`` is an ordinary mjepa manifest of
the shard's items whose paths are member references (:mod:`mjepa.data.media.members`), so the training stream reads any
item directly; it is written last, so a shard with its manifest is complete. Items the decoder cannot read are left out
and listed in ``shard-N.skipped.jsonl``.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import tarfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from mjepa.data.manifests.manifest import ManifestEntry, write_manifest
from mjepa.data.media.decode import MediaError, decode_audio
from mjepa.data.media.info import TIME_EPSILON_S, media_errors, open_media, stream_duration
from mjepa.data.media.isolation import IsolatedRunner
from mjepa.data.media.members import MemberRef
from mjepa.data.media.video_window import iter_timed_frames

AUDIO_SAMPLE_RATE = 16000
TIME_TICKS_PER_SECOND = 90000  # MPEG's video clock: frames keep their source times to 11 microseconds


@dataclass(frozen=True)
class PackSettings:
    max_short_side: int = 256
    max_fps: float = 8.0  # twice the recipe's 4 fps: half a loose file's decoding work (docs/performance.md)
    crf: int = 23  # x264 quality: 23 is its default, visually close to the source at these sizes
    keyframe_seconds: float = 1.0  # a random training window decodes from the key frame before it
    preset: str = "fast"  # x264 speed / size trade-off
    decode_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_short_side < 16 or self.max_short_side % 2:
            raise ValueError(f"max_short_side must be an even number >= 16, got {self.max_short_side}")
        if not self.max_fps > 0:
            raise ValueError(f"max_fps must be > 0, got {self.max_fps}")
        if not self.keyframe_seconds > 0:
            raise ValueError(f"keyframe_seconds must be > 0, got {self.keyframe_seconds}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")

    def to_dict(self) -> dict:
        return asdict(self)


def video_codec() -> str:
    """libx264 where this PyAV build has it, mpeg4 otherwise."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def shard_name(number: int) -> str:
    return f"shard-{number:06d}"


def item_key(source_index: int) -> str:
    """WebDataset key of a manifest line (no dots: WebDataset splits member names at the first one)."""
    return f"{source_index:09d}"


def _output_size(width: int, height: int, max_short_side: int) -> tuple[int, int]:
    scale = min(1.0, max_short_side / min(width, height))
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def _output_rate(stream, max_fps: float) -> Fraction:
    rate = stream.average_rate
    if rate and float(rate) <= max_fps:
        return Fraction(rate)
    return Fraction(max_fps).limit_denominator(1001)


def encode_video(path: str, start: float | None, end: float | None, settings: PackSettings) -> bytes | None:
    """The segment's video as an mp4 (H.264, no audio) whose time 0 is the segment start; None without video.

    Frames keep their source times (shifted by the segment start), so any window decodes to the same frames as
    from the source; above ``max_fps``, frames are dropped."""
    seg_start = start or 0.0
    with media_errors(path), open_media(path) as container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = stream_duration(stream, container)
        seg_end = end if declared is None else (declared if end is None else min(end, declared))
        fps = _output_rate(stream, settings.max_fps)
        buffer = io.BytesIO()
        with av.open(buffer, mode="w", format="mp4") as output:
            out_stream = output.add_stream(video_codec(), rate=fps)
            out_stream.pix_fmt = "yuv420p"
            out_stream.time_base = out_stream.codec_context.time_base = Fraction(1, TIME_TICKS_PER_SECOND)
            if out_stream.codec_context.name == "libx264":
                out_stream.options = {"crf": str(settings.crf), "preset": settings.preset}
            out_stream.codec_context.gop_size = max(1, round(float(fps) * settings.keyframe_seconds))
            written = _write_frames(container, stream, output, out_stream, seg_start, seg_end, settings)
            if written:
                for packet in out_stream.encode(None):
                    output.mux(packet)
        if not written:
            raise MediaError(path, "too_short", f"no video frame in the segment from {seg_start:.3f} s")
    return buffer.getvalue()


def _write_frames(
    container, stream, output, out_stream, seg_start: float, seg_end: float | None, settings: PackSettings
) -> int:
    """Encode the segment's frames at their own times less the segment start (the frame on screen at the start at
    time 0), dropping frames closer than 1 / max_fps to the last one kept; returns how many were written."""
    written = 0
    on_screen_at_start = None
    next_kept = 0.0

    def put(frame, relative: float) -> None:
        nonlocal written, next_kept
        if not written:
            out_stream.width, out_stream.height = _output_size(frame.width, frame.height, settings.max_short_side)
        picture = frame.reformat(
            width=out_stream.width, height=out_stream.height, format="yuv420p", interpolation="AREA"
        )
        picture.pts = round(relative * TIME_TICKS_PER_SECOND)
        picture.time_base = out_stream.codec_context.time_base  # not the source's
        for packet in out_stream.encode(picture):
            output.mux(packet)
        written += 1
        next_kept = relative + 1.0 / settings.max_fps

    frames = iter_timed_frames(container, stream, seg_start)
    first = next(frames, None)
    if first is not None and seg_start > 0 and first[1] > seg_start + TIME_EPSILON_S:
        frames = iter_timed_frames(container, stream, 0.0)  # the seek overshot: decode from the start instead
        first = next(frames, None)
    for frame, time in [] if first is None else itertools.chain([first], frames):
        if seg_end is not None and time >= seg_end - TIME_EPSILON_S:
            break
        relative = time - seg_start
        if relative <= TIME_EPSILON_S:
            on_screen_at_start = frame
            continue
        if on_screen_at_start is not None:
            put(on_screen_at_start, 0.0)
            on_screen_at_start = None
        if relative >= next_kept - TIME_EPSILON_S:
            put(frame, relative)
    if on_screen_at_start is not None:
        put(on_screen_at_start, 0.0)
    return written


def encode_audio(path: str, start: float | None, end: float | None) -> bytes:
    """The segment's audio as 16 kHz mono FLAC (16-bit); MediaError ``no_audio_stream`` when there is none."""
    waveform, _ = decode_audio(path, start, end, AUDIO_SAMPLE_RATE)
    pcm = np.clip(np.round(waveform.numpy() * 32767.0), -32768, 32767).astype(np.int16)
    if pcm.size == 0:
        raise MediaError(path, "too_short", "the segment holds no audio samples")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="flac") as output:
        out_stream = output.add_stream("flac", rate=AUDIO_SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = 0
        for packet in [*out_stream.encode(frame), *out_stream.encode(None)]:
            output.mux(packet)
    return buffer.getvalue()


def encode_item(entry: ManifestEntry, settings: PackSettings) -> dict[str, bytes]:
    """An item's members (``mp4`` and / or ``flac``, as bytes); MediaError when the item cannot be packed."""
    members = {}
    video = encode_video(entry.path, entry.start, entry.end, settings)
    if video is not None:
        members["mp4"] = video
    if entry.has_audio is not False:
        audio_source = entry.audio_path or entry.path
        try:
            members["flac"] = encode_audio(audio_source, entry.start, entry.end)
        except MediaError as err:
            if err.reason != "no_audio_stream" or video is None:
                raise
    return members


@dataclass(frozen=True)
class ShardJob:
    number: int
    first_index: int  # manifest line of the first item
    entries: tuple[ManifestEntry, ...]


def shard_complete(out_dir: Path, number: int) -> bool:
    return (out_dir / f"{shard_name(number)}.jsonl").is_file()


def pack_shard(job: ShardJob, out_dir: str | os.PathLike, settings: PackSettings, progress=None) -> dict:
    """Write one shard, its skipped list and its manifest (last); returns its counts. ``progress``, a queue,
    receives a 1 per item done (packed or skipped)."""
    import webdataset

    out_dir = Path(out_dir)
    name = shard_name(job.number)
    runner = IsolatedRunner(settings.decode_timeout_s)
    packed, skipped = [], []
    tmp_tar = out_dir / f"{name}.tar.tmp"
    try:
        # mtime fixed: the same items and settings give the same bytes.
        with webdataset.TarWriter(str(tmp_tar), mtime=0.0) as writer:
            for offset, entry in enumerate(job.entries):
                key = item_key(job.first_index + offset)
                try:
                    members = runner(entry.path, encode_item, entry, settings)
                except MediaError as err:
                    skipped.append(
                        {
                            "index": job.first_index + offset,
                            "path": err.path,
                            "reason": err.reason,
                            "detail": err.detail,
                        }
                    )
                    members = None
                if progress is not None:
                    progress.put(1)
                if members is None:
                    continue
                record = {
                    "source": entry.path,
                    "audio_source": entry.audio_path,
                    "start": entry.start,
                    "end": entry.end,
                    "labels": list(entry.labels),
                }
                writer.write({"__key__": key, **members, "json": record})
                packed.append((key, entry, sorted(members)))
    finally:
        runner.close()
    tar_path = out_dir / f"{name}.tar"
    os.replace(tmp_tar, tar_path)
    places = _member_places(tar_path)
    entries = [_shard_entry(f"{name}.tar", key, entry, kinds, places) for key, entry, kinds in packed]
    _write_lines(out_dir / f"{name}.skipped.jsonl", skipped)
    write_manifest(out_dir / f"{name}.jsonl", entries, paths_from=out_dir)
    return {"shard": f"{name}.tar", "items": len(entries), "skipped": len(skipped), "bytes": tar_path.stat().st_size}


def _member_places(tar_path: Path) -> dict[str, tuple[int, int]]:
    with tarfile.open(tar_path) as archive:
        return {member.name: (member.offset_data, member.size) for member in archive if member.isfile()}


def _shard_entry(
    shard: str, key: str, source: ManifestEntry, kinds: list[str], places: dict[str, tuple[int, int]]
) -> ManifestEntry:
    refs = {kind: str(MemberRef(shard, f"{key}.{kind}", *places[f"{key}.{kind}"])) for kind in kinds}
    if "mp4" in refs:
        return ManifestEntry(refs["mp4"], refs.get("flac"), None, None, source.labels, "flac" in refs, source.meta)
    return ManifestEntry(refs["flac"], None, None, None, source.labels, True, source.meta)


def _write_lines(path: Path, records: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


def plan_shards(entries: list[ManifestEntry], items_per_shard: int) -> list[ShardJob]:
    """Consecutive manifest lines, ``items_per_shard`` to a shard: the plan depends on the manifest and the size
    only, so an interrupted packing resumes with the same shards."""
    if items_per_shard < 1:
        raise ValueError(f"items_per_shard must be >= 1, got {items_per_shard}")
    count = math.ceil(len(entries) / items_per_shard)
    return [
        ShardJob(n, n * items_per_shard, tuple(entries[n * items_per_shard : (n + 1) * items_per_shard]))
        for n in range(count)
    ]
