import functools
import json

import pytest
import torch
from media_builders import media  # noqa: F401  (pytest fixture)
from torch.utils.data import DataLoader

from mjepa.data.loading.dataset import AudioVisualDataset, Sample, SkipLog, SkippedItem, collate_samples
from mjepa.data.loading.samplers import DistributedShardSampler, seed_worker
from mjepa.data.manifests.manifest import ManifestEntry
from mjepa.data.media.decode import ClipSpec
from mjepa.data.preprocess.fbank import AudioFrontendConfig
from mjepa.data.preprocess.video_transforms import VideoTransformConfig

CLIP = ClipSpec(num_frames=4, frames_per_second=4.0)
AUDIO = AudioFrontendConfig(target_frames=192, num_mel_bins=64)
VIDEO = VideoTransformConfig(output_size=32, eval_short_side=32)


def _dataset(entries, training=True, missing_audio="flag", require_video=True, **options):
    return AudioVisualDataset(
        entries,
        ["a", "b"],
        CLIP,
        AUDIO,
        VIDEO,
        training=training,
        seed=0,
        require_video=require_video,
        missing_audio=missing_audio,
        **options,
    )


def test_sample_shapes_labels_and_flags(media):
    ds = _dataset([ManifestEntry(str(media["mp4"]), labels=("b",))])
    sample = ds[0]
    assert sample.audio.shape == (192, 64) and sample.video.shape == (3, 4, 32, 32)
    assert sample.labels.tolist() == [0.0, 1.0] and sample.has_audio and sample.index == 0
    assert 0 < sample.audio_valid_frames <= 192


def test_training_samples_are_a_function_of_seed_epoch_index(media):
    ds = _dataset([ManifestEntry(str(media["mkv"]))])
    first, again = ds[0], ds[0]
    assert torch.equal(first.video, again.video) and torch.equal(first.audio, again.audio)
    ds.set_epoch(1)
    assert not torch.equal(ds[0].video, first.video)


def test_clip_without_audio_is_flagged_or_skipped(media):
    entry = ManifestEntry(str(media["video_only"]))
    flagged = _dataset([entry])[0]
    assert not flagged.has_audio and flagged.audio_valid_frames == 0 and flagged.audio.abs().sum() == 0
    skipped = _dataset([entry], missing_audio="skip")[0]
    assert isinstance(skipped, SkippedItem) and skipped.reason == "no_audio_stream"


@pytest.mark.parametrize("uint8_video", [False, True])
def test_audio_only_items_get_placeholder_frames_and_a_flag_beside_video_items(media, uint8_video):
    entries = [ManifestEntry(str(media["mp4"])), ManifestEntry(str(media["wav"]))]
    ds = _dataset(entries, missing_video="flag", uint8_video=uint8_video)
    with_video, audio_only = ds[0], ds[1]
    assert with_video.has_video and not audio_only.has_video and audio_only.has_audio
    assert audio_only.video.shape == with_video.video.shape and audio_only.video.dtype == with_video.video.dtype
    assert audio_only.video.abs().sum() == 0
    loaded = collate_samples([with_video, audio_only])
    assert loaded.batch.video.shape[0] == 2 and loaded.batch.has_video.tolist() == [True, False]
    assert collate_samples([with_video, with_video]).batch.has_video is None  # every sample has video
    skipped = _dataset(entries, missing_video="skip")[1]
    assert isinstance(skipped, SkippedItem)
    assert _dataset(entries, missing_video="none")[1].video is None
    with pytest.raises(ValueError, match="missing_video='drop' is not valid"):
        _dataset(entries, missing_video="drop")


def test_unknown_label_is_a_clear_error(media):
    with pytest.raises(ValueError, match="label 'zebra'"):
        _dataset([ManifestEntry(str(media["mp4"]), labels=("zebra",))])[0]


def test_loader_over_mixed_manifest_runs_to_the_end_and_reports_each_bad_item(media, tmp_path):
    kinds = ["mp4", "missing", "zero", "cut_mp4", "garbage", "webm", "video_only", "short", "flac", "avi"]
    entries = [ManifestEntry(str(media[k])) for k in kinds]
    ds = _dataset(entries, missing_audio="flag")
    loader = DataLoader(
        ds,
        batch_size=3,
        sampler=DistributedShardSampler(len(ds), shuffle=False, pad=False),
        num_workers=2,
        collate_fn=collate_samples,
        worker_init_fn=functools.partial(seed_worker, seed=0, rank=0),
    )
    log, seen = SkipLog(), []
    for loaded in loader:
        log.add(loaded.skipped)
        if loaded.batch is not None:
            seen.extend(loaded.indices.tolist())
            assert loaded.batch.video.shape[0] == loaded.batch.audio.shape[0] == len(loaded.indices)
    expected_skips = {
        "missing": "missing",
        "zero": "zero_length",
        "cut_mp4": "truncated",
        "garbage": "unreadable",
        "flac": "no_video_stream",
    }
    got = {kinds[item.index]: item.reason for item in log.items}
    assert got == expected_skips
    assert sorted(seen) == sorted(i for i, k in enumerate(kinds) if k not in expected_skips)
    log.write(tmp_path / "skipped.json")
    record = json.loads((tmp_path / "skipped.json").read_text())
    assert record["num_skipped"] == 5 and record["counts"]["missing"] == 1
    assert "5 items skipped" in log.summary()


def test_audio_only_dataset_yields_audio_batches(media):
    ds = _dataset(
        [ManifestEntry(str(media["wav"])), ManifestEntry(str(media["ogg"]))], training=False, require_video=False
    )
    loaded = collate_samples([ds[0], ds[1]])
    assert loaded.batch.video is None and loaded.batch.audio.shape == (2, 192, 64)
    assert loaded.batch.has_audio.all()


def test_entry_table_gives_back_the_entries_in_a_fraction_of_the_memory():
    import sys

    from mjepa.data.manifests.manifest import EntryTable, ManifestEntry

    entries = [
        ManifestEntry(
            f"/data/shards/shard-{i // 1000:06d}.tar#{i:09d}.mp4@{1536 + i}:{400000 + i}",
            f"/data/shards/shard-{i // 1000:06d}.tar#{i:09d}.flac@{512 + i}:{250000 + i}",
            None if i % 2 else 1.5,
            None if i % 2 else 11.5,
            ("/m/09x0r", "Dog") if i % 3 else (),
            [True, False, None][i % 3],
        )
        for i in range(3000)
    ]
    table = EntryTable(entries)
    assert len(table) == len(entries) and list(table) == entries and table[-1] == entries[-1]
    with pytest.raises(IndexError):
        table[len(entries)]
    as_objects = sum(
        sys.getsizeof(e) + sys.getsizeof(e.__dict__) + sys.getsizeof(e.path) + sys.getsizeof(e.audio_path)
        for e in entries
    )
    assert table.nbytes < 0.6 * as_objects  # and none of it is Python objects whose reference counts workers touch


def test_training_samples_place_their_video_window_inside_their_audio_window(media):
    """The 1.92 s of audio a training sample reads is centred on its 1 s video window (moved inside the 5 s clip):
    the sample's video offset is the window's start on that audio's time axis."""
    ds = _dataset([ManifestEntry(str(media["mkv"]))])
    offsets = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        sample = ds[0]
        offsets.append(sample.video_offset)
        assert -1e-6 <= sample.video_offset <= 1.92 - 1.0 + 1e-6
    assert len({round(o, 3) for o in offsets}) > 1  # windows near the clip's ends sit off the audio's centre
    batch = collate_samples([ds[0], ds[0]]).batch
    assert batch.video_offset.dtype == torch.float32 and batch.video_offset.shape == (2,)


def test_the_batch_says_which_audio_frames_are_padding_only_when_some_are():
    def sample(valid: int) -> Sample:
        return Sample(0, torch.zeros(64, 8), valid, torch.zeros(3, 2, 4, 4), torch.zeros(2), True)

    assert collate_samples([sample(64), sample(64)]).batch.audio_valid_frames is None
    assert collate_samples([sample(64), sample(20)]).batch.audio_valid_frames.tolist() == [64, 20]
    pinned = collate_samples([sample(64), sample(20)]).batch.map_tensors(torch.Tensor.clone)
    assert pinned.audio_valid_frames.tolist() == [64, 20] and pinned.video.shape == (2, 3, 2, 4, 4)
