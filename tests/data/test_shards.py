"""Tar shards: packing AtariAV and reading it back (same clips, same labels), through WebDataset's own reader, a
file:// URL and the training dataset; resumable and deterministic packing; bad files skipped and listed."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from mjepa.data.atari.generate import atari_av_manifest_path, generate_atari_av
from mjepa.data.loading.dataset import AudioVisualDataset, Sample
from mjepa.data.manifests.manifest import ManifestEntry, read_manifest, write_manifest
from mjepa.data.media.decode import ClipSpec, MediaError, decode_entry
from mjepa.data.media.members import MemberRef, parse_member
from mjepa.data.preprocess.fbank import AudioFrontendConfig
from mjepa.data.preprocess.video_transforms import VideoTransformConfig
from mjepa.data.shards.command import main as shard_main

SPEC = ClipSpec(num_frames=4, frames_per_second=4.0)


@pytest.fixture(scope="module")
def atari_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("atari")
    generate_atari_av(root, games=("pong", "breakout"), clips_per_game=6, clip_seconds=2.0, progress=None)
    return atari_av_manifest_path(root, "train")


@pytest.fixture(scope="module")
def packed(atari_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "train"
    # At the source's 15 fps, so that every frame is kept and windows decode to the same frames.
    assert (
        shard_main(
            [str(atari_manifest), "--out", str(out), "--items-per-shard", "2", "--workers", "2", "--max-fps", "15"]
        )
        == 0
    )
    return out


@pytest.mark.slow
def test_packing_keeps_every_item_its_labels_and_its_order(atari_manifest, packed):
    source, shards = read_manifest(atari_manifest), read_manifest(packed)
    info = json.loads((packed / "info.json").read_text())
    assert info["num_items"] == len(source) == len(shards) and info["num_skipped"] == 0
    assert info["num_shards"] == -(-len(source) // 2)
    assert [e.labels for e in shards] == [e.labels for e in source]
    assert all(e.has_audio and parse_member(e.path).name.endswith(".mp4") for e in shards)
    assert all(parse_member(e.audio_path).name.endswith(".flac") for e in shards)


def test_shard_clips_decode_to_the_source_clips(atari_manifest, packed):
    for source, shard in zip(read_manifest(atari_manifest), read_manifest(packed)):
        for start in (0.0, 0.9):
            a, b = decode_entry(source, SPEC, window_start=start), decode_entry(shard, SPEC, window_start=start)
            assert torch.equal(a.frame_times, b.frame_times)  # the same frames: the timing survives re-encoding
            assert (a.frames.float() - b.frames.float()).abs().mean() < 3.0  # H.264 at crf 23, out of 255
            assert a.waveform.shape == b.waveform.shape
            assert (a.waveform - b.waveform).abs().max() < 1e-4  # FLAC is lossless; 16-bit rounding only


def test_shards_are_plain_webdataset_tars(atari_manifest, packed):
    import webdataset

    urls = sorted(str(p) for p in packed.glob("shard-*.tar"))
    samples = list(webdataset.WebDataset(urls, shardshuffle=False))
    source = read_manifest(atari_manifest)
    assert len(samples) == len(source)
    for sample, entry in zip(samples, source):
        record = json.loads(sample["json"])
        assert record["labels"] == list(entry.labels) and record["source"] == entry.path
        assert sample["mp4"][4:8] == b"ftyp" and sample["flac"][:4] == b"fLaC"


def test_a_file_url_reads_the_same_items_as_the_folder(packed):
    local, remote = read_manifest(packed), read_manifest(f"file://{packed}")
    assert len(local) == len(remote)
    assert remote[0].path.startswith(f"file://{packed}/shard-000000.tar#")
    frames_local = decode_entry(local[-1], SPEC, window_start=0.5)
    frames_remote = decode_entry(remote[-1], SPEC, window_start=0.5)
    assert torch.equal(frames_local.frames, frames_remote.frames)
    assert torch.equal(frames_local.waveform, frames_remote.waveform)


def test_the_training_dataset_reads_shards_in_isolated_workers(packed):
    entries = read_manifest(packed)
    vocabulary = sorted({label for e in entries for label in e.labels})
    dataset = AudioVisualDataset(
        entries,
        vocabulary,
        SPEC,
        AudioFrontendConfig(target_frames=128, num_mel_bins=64),
        VideoTransformConfig(output_size=32),
        training=True,
        seed=0,
        decode_timeout_s=60,
    )
    sample = dataset[(2, 17)]
    assert isinstance(sample, Sample) and sample.video.shape == (3, 4, 32, 32) and sample.has_audio
    again = dataset[(2, 17)]
    assert torch.equal(sample.video, again.video) and torch.equal(sample.audio, again.audio)


def test_a_damaged_shard_names_the_member_and_why(packed, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(packed, copy)
    entries = read_manifest(copy)
    last = parse_member(entries[-1].path)
    with open(last.shard, "r+b") as handle:
        handle.truncate(last.offset + 10)
    with pytest.raises(MediaError) as err:
        decode_entry(entries[-1], SPEC)
    assert err.value.reason == "truncated" and err.value.path == entries[-1].path
    os.remove(parse_member(entries[0].path).shard)
    with pytest.raises(MediaError) as err:
        decode_entry(entries[0], SPEC)
    assert err.value.reason == "missing" and "shard-000000.tar" in err.value.detail
    assert str(MemberRef("a/b.tar", "000000001.mp4", 512, 10)) == "a/b.tar#000000001.mp4@512:10"
    assert parse_member("clips/x.mp4") is None


def test_bad_files_are_skipped_and_listed_and_packing_resumes(atari_manifest, packed, tmp_path):
    entries = read_manifest(atari_manifest)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    manifest = tmp_path / "with_bad.jsonl"
    write_manifest(manifest, [*entries[:3], ManifestEntry(str(broken), labels=("game:pong",)), *entries[3:]])
    out = tmp_path / "out"
    args = [str(manifest), "--out", str(out), "--items-per-shard", "2", "--workers", "1", "--max-fps", "15"]
    assert shard_main(args) == 0
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["index"], s["path"]) for s in skipped] == [(3, str(broken))] and skipped[0]["reason"]
    assert len(read_manifest(out)) == len(entries)
    first = (out / "shard-000001.tar").read_bytes()
    whole = (out / "manifest.jsonl").read_text()

    # An interrupted packing: one shard unfinished, one half-written temporary. The rerun packs only that shard,
    # to the same bytes.
    (out / "shard-000001.jsonl").unlink()
    (out / "shard-000001.tar").unlink()
    (out / "shard-000002.tar.tmp").write_bytes(b"partial")
    mtime = (out / "shard-000000.tar").stat().st_mtime_ns
    assert shard_main(args) == 0
    assert (out / "shard-000001.tar").read_bytes() == first and (out / "manifest.jsonl").read_text() == whole
    assert (out / "shard-000000.tar").stat().st_mtime_ns == mtime and not list(out.glob("*.tmp"))
    assert shard_main([*args, "--max-short-side", "128"]) == 2  # other settings: refused


def test_a_segment_is_packed_from_its_own_span(atari_manifest, tmp_path):
    source = read_manifest(atari_manifest)[0]
    segment = ManifestEntry(source.path, None, 0.5, 1.5, source.labels, True)
    manifest = tmp_path / "segment.jsonl"
    write_manifest(manifest, [segment])
    assert shard_main([str(manifest), "--out", str(tmp_path / "out"), "--workers", "1", "--max-fps", "15"]) == 0
    packed = read_manifest(tmp_path / "out")[0]
    a = decode_entry(segment, SPEC, window_start=0.0)
    b = decode_entry(packed, SPEC, window_start=0.0)
    assert b.duration == pytest.approx(1.0, abs=0.07) and b.waveform.shape[0] == 16000
    assert torch.allclose((a.frame_times - 0.5).clamp_min(0), b.frame_times, atol=1e-3)
    assert (a.frames.float() - b.frames.float()).abs().mean() < 3.0
    assert (a.waveform - b.waveform).abs().max() < 1e-4


def test_the_frame_rate_cap_drops_frames_and_keeps_their_times(atari_manifest, tmp_path):
    source = read_manifest(atari_manifest)[0]  # 15 fps
    manifest = tmp_path / "one.jsonl"
    write_manifest(manifest, [source])
    out = tmp_path / "out"
    assert shard_main([str(manifest), "--out", str(out), "--workers", "1", "--max-fps", "5"]) == 0
    packed = read_manifest(out)[0]
    dense = decode_entry(packed, ClipSpec(num_frames=10, frames_per_second=15.0), window_start=0.0)
    kept = dense.frame_times.unique()
    assert len(kept) == 4  # 10 targets over 0.6 s: frames at 0, 0.2, 0.4 (and 0.6 for the last target)
    assert torch.allclose(kept.diff(), torch.full((3,), 0.2, dtype=torch.float64), atol=1e-3)


def test_an_object_store_url_reads_through_fsspec(packed):
    """fsspec's in-memory filesystem stands in for s3:// or gs:// (the same fsspec calls: cat_file with a byte
    range); the items decode to the same clips as from the local folder."""
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in packed.iterdir():
        memory.pipe(f"/bucket/train/{path.name}", path.read_bytes())
    try:
        remote, local = read_manifest("memory://bucket/train"), read_manifest(packed)
        assert len(remote) == len(local) and remote[0].path.startswith("memory://bucket/train/shard-000000.tar#")
        a = decode_entry(local[1], SPEC, window_start=0.3)
        b = decode_entry(remote[1], SPEC, window_start=0.3)
        assert torch.equal(a.frames, b.frames) and torch.equal(a.waveform, b.waveform)
        memory.rm("/bucket/train/shard-000000.tar")
        with pytest.raises(MediaError) as err:
            decode_entry(remote[0], SPEC)
        assert err.value.reason == "missing"
    finally:
        memory.rm("/bucket", recursive=True)


def test_very_short_clips_packed_as_flac_read_back_whole(tmp_path):
    """A FLAC member of a few frames has no seek table and refuses even a seek to its start; it is read from a fresh
    open instead, whole, and from any start."""
    import numpy as np
    import soundfile

    from mjepa.data.media.decode import decode_audio

    lengths = (0.05, 0.1, 0.3, 1.0)
    entries = []
    for index, seconds in enumerate(lengths):
        path = tmp_path / f"short{index}.wav"
        samples = (0.1 * np.random.default_rng(index).standard_normal(int(16000 * seconds))).astype(np.float32)
        soundfile.write(path, samples, 16000)
        entries.append(ManifestEntry(str(path), labels=(f"clip{index}",)))
    write_manifest(tmp_path / "short.jsonl", entries)
    assert shard_main([str(tmp_path / "short.jsonl"), "--out", str(tmp_path / "shards")]) == 0
    members = read_manifest(tmp_path / "shards")
    assert len(members) == len(lengths)
    for seconds, member in zip(lengths, members):
        waveform, _ = decode_audio(member.path, sample_rate=16000)
        assert waveform.numel() == int(16000 * seconds)
        later, start = decode_audio(member.path, start=0.02, sample_rate=16000)
        assert later.numel() == int(16000 * seconds) - 320 and abs(start - 0.02) < 1e-6
