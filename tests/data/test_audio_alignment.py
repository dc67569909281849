"""Audio of long, untrimmed videos comes from the moment of the video window, not from the file's start."""

from pathlib import Path

import pytest
from media_builders import VIDEO_FPS, write_video

from mjepa.data.loading.dataset import AudioVisualDataset
from mjepa.data.manifests.manifest import ManifestEntry
from mjepa.data.media.decode import ClipSpec, decode_clip
from mjepa.data.preprocess.fbank import AudioFrontendConfig
from mjepa.data.preprocess.video_transforms import VideoTransformConfig

TRAINING_AUDIO_S = AudioFrontendConfig(target_frames=1024).waveform_seconds()  # 10.255 s


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    # Key frames every second so the decoder seeks instead of decoding a minute of video.
    return write_video(
        tmp_path_factory.mktemp("long") / "long.mkv",
        "libx264",
        "flac",
        seconds=60.0,
        sample_rate=16000,
        keyframe_interval=VIDEO_FPS,
    )


def _span(clip):
    return clip.audio_start, clip.audio_start + clip.waveform.shape[0] / clip.sample_rate


def test_window_at_50s_of_a_60s_file_gets_audio_that_overlaps_it(long_video):
    spec = ClipSpec(num_frames=16, frames_per_second=4.0, audio_window="full", audio_seconds=TRAINING_AUDIO_S)
    clip = decode_clip(long_video, spec, window_start=50.0)
    start, end = _span(clip)
    assert end - start == pytest.approx(TRAINING_AUDIO_S, abs=0.05)  # only the span the front end uses
    assert start <= 50.0 and end >= 54.0  # the whole 4 s video window is inside the audio
    assert (start + end) / 2 == pytest.approx(52.0, abs=0.05)  # centred on the window


def test_a_window_near_the_end_gets_the_last_span_of_the_file(long_video):
    spec = ClipSpec(num_frames=16, frames_per_second=4.0, audio_window="full", audio_seconds=TRAINING_AUDIO_S)
    start, end = _span(decode_clip(long_video, spec, window_start=55.0))
    assert start == pytest.approx(60.0 - TRAINING_AUDIO_S, abs=0.05) and end == pytest.approx(60.0, abs=0.05)


def test_without_a_limit_full_means_the_whole_segment(long_video):
    clip = decode_clip(long_video, ClipSpec(num_frames=4, frames_per_second=4.0), window_start=50.0)
    start, end = _span(clip)
    assert start == pytest.approx(0.0, abs=0.05) and end == pytest.approx(60.0, abs=0.1)


def test_the_training_dataset_limits_full_audio_to_one_front_end_window(long_video):
    audio = AudioFrontendConfig(target_frames=1024)
    entry = ManifestEntry(path=str(long_video), labels=())
    dataset = AudioVisualDataset(
        [entry],
        [],
        ClipSpec(num_frames=16, audio_window="full"),
        audio,
        VideoTransformConfig(output_size=32),
        training=True,
    )
    assert dataset.clip.audio_seconds == pytest.approx(TRAINING_AUDIO_S)
    sample = dataset[(0, 5)]
    assert sample.audio_valid_frames == 1024  # a full window of real audio, wherever the video window fell
    evaluation = AudioVisualDataset(
        [entry],
        [],
        ClipSpec(num_frames=16, audio_window="full"),
        audio,
        VideoTransformConfig(output_size=32),
        training=False,
    )
    assert evaluation.clip.audio_seconds is None  # evaluation keeps every audio window of the clip
