"""Long videos become fixed-length manifest segments whose audio and video come from the same span."""

from __future__ import annotations

import pytest
from media_builders import VIDEO_FPS, write_video

from mjepa.data.manifests.import_command import main as import_main
from mjepa.data.manifests.manifest import ManifestEntry, read_manifest
from mjepa.data.manifests.segments import segment_entries
from mjepa.data.media.decode import ClipSpec, decode_entry


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("howto")
    (root / "a").mkdir()
    write_video(
        root / "a" / "long.mkv", "libx264", "flac", seconds=25.0, sample_rate=16000, keyframe_interval=VIDEO_FPS
    )
    write_video(root / "short.mp4", "libx264", "aac", seconds=4.0)
    return root


def test_files_import_cuts_long_videos_into_segments(long_videos, tmp_path, capsys):
    out = tmp_path / "howto.jsonl"
    assert import_main(["files", str(long_videos), "--out", str(out), "--segment-seconds", "10"]) == 0
    entries = read_manifest(out)
    spans = sorted((e.path.rsplit("/", 1)[-1], e.start, e.end) for e in entries)
    assert spans == [
        ("long.mkv", 0.0, 10.0),
        ("long.mkv", 10.0, 20.0),
        ("long.mkv", 20.0, 25.0),
        ("short.mp4", None, None),
    ]  # the 5 s tail is kept (>= 10/2); the short file stays whole
    assert "segmented 2 items into 4 entries" in capsys.readouterr().out


def test_a_segment_gets_audio_and_video_of_its_own_span(long_videos):
    entry = ManifestEntry(str(long_videos / "a" / "long.mkv"), start=10.0, end=20.0)
    clip = decode_entry(entry, ClipSpec(num_frames=8, frames_per_second=4.0, audio_window="full"), window_start=3.0)
    assert 13.0 <= float(clip.frame_times[0]) < 13.2 and float(clip.frame_times[-1]) < 20.0
    audio_end = clip.audio_start + clip.waveform.shape[0] / clip.sample_rate
    assert clip.audio_start == pytest.approx(10.0, abs=0.05) and audio_end == pytest.approx(20.0, abs=0.05)


def test_segmenting_respects_existing_bounds_and_drops_short_tails():
    entries = [ManifestEntry("x.mp4", start=5.0, end=32.0), ManifestEntry("y.mp4", start=0.0, end=8.0)]
    out, unknown = segment_entries(entries, 10.0, min_seconds=8.0)
    assert [(e.path, e.start, e.end) for e in out] == [
        ("x.mp4", 5.0, 15.0),
        ("x.mp4", 15.0, 25.0),
        ("y.mp4", 0.0, 8.0),
    ]  # the 7 s tail of x is dropped
    assert unknown == 0
    with pytest.raises(ValueError, match="segment-seconds"):
        segment_entries(entries, 0.0)
