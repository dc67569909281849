import torch
from media_builders import media  # noqa: F401  (pytest fixture)

from mjepa.data.loading.dataset import SkippedItem
from mjepa.data.manifests.manifest import ManifestEntry
from mjepa.data.media.decode import ClipSpec
from mjepa.data.preprocess.fbank import AudioFrontendConfig
from mjepa.data.preprocess.video_transforms import VideoTransformConfig
from mjepa.eval.items import EvalDataset, ViewSpec

CLIP = ClipSpec(num_frames=4, frames_per_second=4.0)
AUDIO = AudioFrontendConfig(target_frames=64, num_mel_bins=32)
VIDEO = VideoTransformConfig(output_size=32, eval_short_side=32)


def _dataset(media, kind, views, need_video=True):
    return EvalDataset(
        [ManifestEntry(str(media[kind]), labels=("a",))],
        ["a", "b"],
        CLIP,
        AUDIO,
        VIDEO,
        views,
        need_video=need_video,
        need_audio=True,
    )


def test_multi_clip_multi_view_items(media):
    item = _dataset(media, "mkv", ViewSpec(clips=2, spatial_views=3))[0]
    assert item.video.shape == (6, 3, 4, 32, 32)  # 2 temporal clips x 3 crops
    assert item.audio.shape == (6, 64, 32)  # the clip's audio, shared by every view
    assert not torch.allclose(item.video[0], item.video[3])  # the two clips are different windows
    assert item.labels.tolist() == [1.0, 0.0]


def test_long_audio_as_concatenable_windows(media):
    item = _dataset(media, "wav", ViewSpec(audio_windows=3), need_video=False)[0]
    assert item.video is None and item.audio.shape == (3, 64, 32)
    assert not torch.allclose(item.audio[0], item.audio[1])


def test_unreadable_items_are_skipped_with_their_reason(media):
    item = _dataset(media, "garbage", ViewSpec())[0]
    assert isinstance(item, SkippedItem) and item.reason == "unreadable"


def test_each_view_carries_where_its_window_starts_on_the_audio_axis(media):
    item = _dataset(media, "mkv", ViewSpec(clips=2, spatial_views=3))[0]
    assert not isinstance(item, SkippedItem), item
    offsets = item.video_offset.tolist()
    assert len(offsets) == 6
    assert offsets[:3] == [offsets[0]] * 3 and offsets[3:] == [offsets[3]] * 3  # the crops of a clip share it
    assert offsets[0] == 0.0 and offsets[3] > offsets[0]  # the audio starts with the file, the second clip later


def _crash_on_crash_files(entry, *args):
    import os
    import signal

    if os.path.basename(entry.path).startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return _DIRECT_DECODE(entry, *args)


from mjepa.data.media import decode as _decode_module  # noqa: E402

_DIRECT_DECODE = _decode_module._portable_decode


def test_a_file_that_crashes_the_decoder_is_skipped_and_named_in_evaluation(media, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(_decode_module, "_portable_decode", _crash_on_crash_files)  # the helper inherits it
    crash = tmp_path / "crash.mp4"
    shutil.copy(media["mp4"], crash)
    dataset = EvalDataset(
        [ManifestEntry(str(crash)), ManifestEntry(str(media["mp4"]))],
        ["a"],
        CLIP,
        AUDIO,
        VIDEO,
        ViewSpec(),
        need_video=True,
        need_audio=True,
    )
    skipped, item = dataset[0], dataset[1]
    assert isinstance(skipped, SkippedItem) and skipped.reason == "crashed" and skipped.path == str(crash)
    assert item.video.shape == (1, 3, 4, 32, 32)  # the evaluation goes on with the next file
