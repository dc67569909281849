import math
import pickle

import numpy as np
import pytest
import torch
from media_builders import (
    CLIP_SECONDS,
    HEIGHT,
    TONE_AMPLITUDE,
    TONE_HZ,
    VIDEO_FPS,
    WIDTH,
    frame_index,
    media,  # noqa: F401  (pytest fixture)
)

from mjepa.data.manifests.manifest import ManifestEntry
from mjepa.data.media.decode import (
    ClipSpec,
    MediaError,
    choose_window_start,
    decode_audio,
    decode_clip,
    decode_entry,
    probe_media,
)

SPEC = ClipSpec(num_frames=8, frames_per_second=4.0)


def dominant_frequency(waveform: torch.Tensor, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform.numpy() * np.hanning(waveform.shape[0])))
    return float(np.argmax(spectrum)) * sample_rate / waveform.shape[0]


def expected_indices(first_time: float, count: int, fps: float) -> list[int]:
    # The frame on screen at time t is the one with the largest timestamp <= t.
    return [math.floor((first_time + k / fps) * VIDEO_FPS + 1e-6) for k in range(count)]


@pytest.mark.parametrize("kind", ["mp4", "mp4_faststart", "mkv", "webm", "avi"])
@pytest.mark.parametrize("window_start", [0.0, 1.3, 3.0])
def test_video_window_frames_times_and_audio(media, kind, window_start):
    clip = decode_clip(media[kind], SPEC, window_start=window_start)
    assert clip.frames.shape == (8, HEIGHT, WIDTH, 3) and clip.frames.dtype == torch.uint8
    indices = expected_indices(window_start, 8, 4.0)
    assert [frame_index(frame) for frame in clip.frames] == indices
    assert torch.allclose(clip.frame_times, torch.tensor(indices, dtype=torch.float64) / VIDEO_FPS, atol=1e-3)
    assert clip.num_padded_frames == 0 and not clip.is_padded
    assert clip.frames[0, HEIGHT - 4, 4, 0] > 150 and clip.frames[0, HEIGHT - 4, 4, 2] < 80  # red stays in channel 0
    # Full-clip audio: 16 kHz mono, the whole file (codec priming may add a few ms).
    assert clip.sample_rate == 16000 and clip.waveform.dtype == torch.float32
    assert abs(clip.waveform.shape[0] - CLIP_SECONDS * 16000) < 0.03 * 16000
    assert abs(dominant_frequency(clip.waveform, 16000) - TONE_HZ) < 2.0
    assert clip.duration == pytest.approx(CLIP_SECONDS, abs=0.15)


def test_aligned_audio_window_matches_video_window(media):
    spec = ClipSpec(num_frames=8, frames_per_second=4.0, audio_window="aligned")
    clip = decode_clip(media["mp4"], spec, window_start=1.3)
    assert clip.audio_start == pytest.approx(1.3, abs=1e-3)
    assert clip.waveform.shape[0] == pytest.approx(spec.window_duration * 16000, abs=2)


def test_random_window_is_seeded_and_inside_the_clip(media):
    starts = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(7)
        starts.append([decode_clip(media["mp4"], SPEC, generator=generator).window_start for _ in range(3)])
    assert starts[0] == starts[1]
    assert all(0.0 <= s <= CLIP_SECONDS - SPEC.window_duration for s in starts[0])
    assert len(set(starts[0])) == 3
    # Without a generator the window is centred (evaluation).
    assert decode_clip(media["mp4"], SPEC).window_start == pytest.approx((CLIP_SECONDS - 2.0) / 2)


def test_choose_window_start_edge_cases():
    assert choose_window_start(None, 4.0, None) == 0.0
    assert choose_window_start(3.0, 4.0, torch.Generator().manual_seed(0)) == 0.0
    assert choose_window_start(10.0, 4.0, None) == 3.0


def test_short_clip_repeats_last_frame_and_reports_padding(media):
    clip = decode_clip(media["short"], SPEC, window_start=0.0)  # 1.5 s of video, 2 s window
    indices = [frame_index(frame) for frame in clip.frames]
    assert indices == [0, 2, 4, 6, 8, 10, 11, 11]
    assert clip.num_padded_frames == 2 and clip.is_padded
    assert torch.equal(clip.frames[-1], clip.frames[-2])
    assert clip.frame_times[-1].item() == pytest.approx(11 / VIDEO_FPS, abs=1e-3)


def test_segment_bounds_limit_window_and_audio(media):
    entry = ManifestEntry(path=str(media["mp4"]), start=1.0, end=2.5)
    clip = decode_entry(entry, SPEC, window_start=0.0)
    assert clip.segment_start == 1.0 and clip.duration == pytest.approx(1.5)
    assert [frame_index(frame) for frame in clip.frames] == [8, 10, 12, 14, 16, 18, 19, 19]
    assert clip.num_padded_frames == 2
    assert clip.audio_start == pytest.approx(1.0, abs=1e-3)
    assert clip.waveform.shape[0] == pytest.approx(1.5 * 16000, abs=2)


@pytest.mark.parametrize("kind,rate", [("wav", 44100), ("flac", 22050), ("ogg", 48000), ("mp3", 44100)])
def test_audio_only_files_resample_and_average_channels(media, kind, rate):
    info = probe_media(media[kind])
    assert info.has_audio and not info.has_video and info.audio_sample_rate == rate
    clip = decode_clip(media[kind], SPEC)
    assert clip.frames is None and clip.frame_times is None and clip.has_audio
    assert abs(clip.waveform.shape[0] - 3.0 * 16000) < 0.06 * 16000
    assert abs(dominant_frequency(clip.waveform, 16000) - TONE_HZ) < 2.0
    # Left = tone, right = silence: the channel mean has half the tone's amplitude (FFmpeg's downmix would give 0.71).
    middle = clip.waveform[8000:40000]
    assert middle.abs().max().item() == pytest.approx(TONE_AMPLITUDE / 2, rel=0.06)


def test_audio_seek_is_sample_accurate(media):
    waveform, start = decode_audio(media["click"], start=1.5, end=2.5)
    assert start == pytest.approx(1.5, abs=1 / 16000)
    assert waveform.shape[0] == 16000
    assert int(waveform.abs().argmax()) == 8000


def test_short_side_scaling_in_decoder(media):
    clip = decode_clip(media["mp4"], ClipSpec(num_frames=2, frames_per_second=4.0, short_side=24), window_start=0.0)
    assert clip.frames.shape == (2, 24, 32, 3)


def test_video_without_audio(media):
    clip = decode_clip(media["video_only"], SPEC, window_start=0.0)
    assert clip.waveform is None and not clip.has_audio and clip.frames.shape[0] == 8
    with pytest.raises(MediaError) as raised:
        decode_clip(media["video_only"], SPEC, require_audio=True)
    assert raised.value.reason == "no_audio_stream"


def test_audio_file_where_video_is_required(media):
    with pytest.raises(MediaError) as raised:
        decode_clip(media["wav"], SPEC, require_video=True)
    assert raised.value.reason == "no_video_stream"


def test_wrong_extension_decodes_by_content(media):
    # PyAV probes the bytes: a WAV named .mp4 is an audio-only item, not an error.
    clip = decode_clip(media["wav_named_mp4"], SPEC)
    assert clip.frames is None and clip.waveform.shape[0] == pytest.approx(48000, abs=100)


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("missing", "missing"),
        ("zero", "zero_length"),
        ("garbage", "unreadable"),
        ("cut_mp4", "truncated"),  # moov box at the end never arrived: FFmpeg cannot open it
        ("cut_faststart", "truncated"),  # opens, then the streams stop early
        ("cut_mkv", "truncated"),
    ],
)
def test_bad_files_raise_media_error_with_reason(media, kind, reason):
    with pytest.raises(MediaError) as raised:
        decode_clip(media[kind], SPEC, window_start=0.0)
    err = raised.value
    assert err.reason == reason and err.path == str(media[kind])
    assert "\n" not in str(err) and str(media[kind]) in str(err)


def test_window_start_outside_clip_is_too_short(media):
    with pytest.raises(MediaError) as raised:
        decode_clip(media["mp4"], SPEC, window_start=6.0)
    assert raised.value.reason == "too_short"


def test_media_error_pickles_and_rejects_unknown_reason():
    err = pickle.loads(pickle.dumps(MediaError("a.mp4", "truncated", "cut")))
    assert (err.path, err.reason, err.detail) == ("a.mp4", "truncated", "cut")
    with pytest.raises(ValueError):
        MediaError("a.mp4", "bad", "x")


def test_clip_spec_round_trip_and_checks():
    spec = ClipSpec(num_frames=4, frames_per_second=2.0, audio_window="aligned", short_side=128)
    assert ClipSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown key 'fps'"):
        ClipSpec.from_dict({"fps": 4})
    with pytest.raises(ValueError, match="audio_window"):
        ClipSpec(audio_window="left")
