"""Files whose clocks do not start at zero: an MPEG-TS capture starts anywhere in its 33-bit, 90 kHz cycle (26.5
hours), and one that wraps inside the file is unwrapped by FFmpeg to start at a negative time. Both decode like the
same content starting at zero, and the tools accept them."""

from __future__ import annotations

import fractions
import json

import av
import numpy as np
import pytest
from media_builders import frame_image, frame_index

from mjepa.data.media.decode import ClipSpec, decode_audio, decode_clip
from mjepa.data.media.info import time_origin

TICKS = 90000  # MPEG-TS timestamps: 90 kHz
WRAP = 2**33
FPS = 25
SECONDS = 4.0


def _write_ts(path, first_pts: int, seconds: float = SECONDS) -> None:
    """A TS with numbered frames (:func:`frame_image`) and a 440 Hz tone, its first timestamp at ``first_pts``."""
    base = fractions.Fraction(1, TICKS)
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("mpeg2video", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        video.codec_context.gop_size = 10
        audio = out.add_stream("mp2", rate=48000)
        audio.layout = "mono"
        for i in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
            frame.pts, frame.time_base = first_pts + i * TICKS // FPS, base
            out.mux(video.encode(frame))
        out.mux(video.encode())
        size = 1152
        for i in range(int(seconds * 48000 / size)):
            t = (np.arange(size) + i * size) / 48000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, first_pts + i * size * TICKS // 48000, base
            out.mux(audio.encode(frame))
        out.mux(audio.encode())


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    files = {
        "zero": (root / "zero.ts", 0),
        "late": (root / "late.ts", WRAP - 1000 * TICKS),  # 1,000 s before the wrap: large timestamps throughout
        "wraps": (root / "wraps.ts", WRAP - 2 * TICKS),  # wraps 2 s into the file
    }
    for path, first in files.values():
        _write_ts(path, first)
    return {name: path for name, (path, _) in files.items()}


def test_a_wrapping_file_is_read_from_its_first_timestamp(streams):
    with av.open(str(streams["wraps"])) as container:
        assert time_origin(container) < -1.0  # FFmpeg unwrapped the timestamps to negative ones
    with av.open(str(streams["late"])) as container:
        assert time_origin(container) > 90000.0


@pytest.mark.parametrize("name", ["late", "wraps"])
def test_audio_and_video_decode_as_if_the_clock_started_at_zero(streams, name):
    reference_audio, _ = decode_audio(streams["zero"])
    audio, first = decode_audio(streams[name])
    assert abs(first) < 1e-3 and audio.shape == reference_audio.shape
    assert np.allclose(audio.numpy(), reference_audio.numpy(), atol=1e-4)
    span, first = decode_audio(streams[name], 1.0, 3.0)  # across the wrap
    assert span.shape[0] == 32000 and abs(first - 1.0) < 1e-3
    spec = ClipSpec(num_frames=8, frames_per_second=4)
    for start in (0.0, 1.0, 2.5):  # the later windows go through a seek that overshoots on these TS files
        clip = decode_clip(streams[name], spec, window_start=start, require_video=True)
        reference = decode_clip(streams["zero"], spec, window_start=start, require_video=True)
        # Each file keeps its own small offset of the video after its first timestamp (encoder delay): the frame on
        # screen at a time may differ by one.
        got, expected = [frame_index(f) for f in clip.frames], [frame_index(f) for f in reference.frames]
        assert max(abs(a - b) for a, b in zip(got, expected)) <= 1, (got, expected)
        assert got[0] == pytest.approx(start * FPS, abs=1.5) and got[-1] >= got[0] + 10
        assert clip.duration == pytest.approx(SECONDS, abs=0.05)


def test_validate_accepts_files_whose_clock_starts_late_or_wraps(streams, tmp_path):
    from mjepa.data.manifests.validate import main

    manifest = tmp_path / "ts.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(path)}) + "\n" for path in streams.values()))
    assert main([str(manifest), "--json", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["ok"] == 3 and report["issues"] == []
