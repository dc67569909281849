"""AtariAV generation: determinism, splits, decodable clips, labels, caching and atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from mjepa.data.atari import generate as atari
from mjepa.data.atari.generate import (
    EVENT_LABELS,
    SPLITS,
    atari_av_manifest_path,
    generate_atari_av,
    read_atari_av_labels,
)
from mjepa.data.manifests.manifest import read_manifest  # noqa: E402

# Tiny but real: two games with different sound, one clip per split each.
TINY = dict(games=("pong", "space_invaders"), clips_per_game=3, clip_seconds=2.0, fps=15, size=32, seed=0)


def _generate(out_dir, messages=None, seed=TINY["seed"], workers=1, test_clips_per_game=None):
    return generate_atari_av(
        out_dir,
        games=TINY["games"],
        clips_per_game=TINY["clips_per_game"],
        clip_seconds=TINY["clip_seconds"],
        fps=TINY["fps"],
        size=TINY["size"],
        seed=seed,
        policy="random",
        progress=None if messages is None else messages.append,
        workers=workers,
        test_clips_per_game=test_clips_per_game,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp("atari") / "tiny")


def _small_files(root):
    return {name: (root / name).read_bytes() for name in ["train.jsonl", "val.jsonl", "test.jsonl", "labels.json"]}


@pytest.mark.slow
def test_same_seed_gives_byte_identical_manifests(dataset, tmp_path):
    again = _generate(tmp_path / "again")
    assert _small_files(again) == _small_files(dataset)


@pytest.mark.slow
def test_parallel_generation_writes_the_same_dataset(dataset, tmp_path):
    messages = []
    parallel = _generate(tmp_path / "parallel", messages, workers=2)
    assert _small_files(parallel) == _small_files(dataset)
    assert len(messages) == len(TINY["games"])
    for split in SPLITS:
        for serial_entry, parallel_entry in zip(
            read_manifest(atari_av_manifest_path(dataset, split)),
            read_manifest(atari_av_manifest_path(parallel, split)),
            strict=True,
        ):
            with av.open(serial_entry.path) as one, av.open(parallel_entry.path) as other:
                audio_one = np.concatenate([f.to_ndarray() for f in one.decode(audio=0)], axis=1)
                audio_other = np.concatenate([f.to_ndarray() for f in other.decode(audio=0)], axis=1)
            np.testing.assert_array_equal(audio_one, audio_other)


def test_different_seed_gives_different_play(dataset, tmp_path):
    other = _generate(tmp_path / "other", seed=1)
    info = json.loads((other / "info.json").read_text())
    assert info["settings"]["seed"] == 1
    other_clip = read_manifest(atari_av_manifest_path(other, "train"))[0].path
    base_clip = read_manifest(atari_av_manifest_path(dataset, "train"))[0].path
    with av.open(other_clip) as other_file, av.open(base_clip) as base_file:
        other_audio = np.concatenate([f.to_ndarray() for f in other_file.decode(audio=0)], axis=1)
        base_audio = np.concatenate([f.to_ndarray() for f in base_file.decode(audio=0)], axis=1)
    assert other_audio.shape != base_audio.shape or not np.array_equal(other_audio, base_audio)


def test_splits_are_disjoint_and_each_holds_every_game(dataset):
    seen = {}
    for split in SPLITS:
        entries = read_manifest(atari_av_manifest_path(dataset, split), resolve_paths=False)
        assert entries, f"split {split} is empty"
        games = {label for entry in entries for label in entry.labels if label.startswith("game:")}
        assert games == {f"game:{game}" for game in TINY["games"]}
        for entry in entries:
            assert entry.path not in seen, f"{entry.path} is in {seen.get(entry.path)} and {split}"
            seen[entry.path] = split
            assert entry.path.startswith(f"clips/{split}/")  # relative to the manifest folder
    assert len(seen) == len(TINY["games"]) * TINY["clips_per_game"]


def test_labels_follow_the_vocabulary(dataset):
    vocabulary = read_atari_av_labels(dataset)
    assert vocabulary == [f"game:{game}" for game in TINY["games"]] + list(EVENT_LABELS)
    for split in SPLITS:
        for entry in read_manifest(atari_av_manifest_path(dataset, split)):
            game_labels = [label for label in entry.labels if label.startswith("game:")]
            assert len(game_labels) == 1
            assert set(entry.labels) <= set(vocabulary)
            assert entry.has_audio is True
            assert (entry.start, entry.end) == (0.0, TINY["clip_seconds"])


def test_every_clip_decodes_with_expected_lengths(dataset):
    expected_frames = round(TINY["clip_seconds"] * TINY["fps"])
    expected_samples = TINY["clip_seconds"] * atari.AUDIO_SAMPLE_RATE
    loudest = 0.0
    for split in SPLITS:
        for entry in read_manifest(atari_av_manifest_path(dataset, split)):
            with av.open(entry.path) as container:
                frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
            with av.open(entry.path) as container:
                stream = container.streams.audio[0]
                assert (stream.sample_rate, stream.channels) == (atari.AUDIO_SAMPLE_RATE, 1)
                audio = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)
            assert abs(len(frames) - expected_frames) <= 1, entry.path
            assert frames[0].shape == (TINY["size"], TINY["size"], 3)
            assert abs(audio.shape[1] - expected_samples) <= 0.05 * expected_samples, entry.path
            assert np.isfinite(audio).all()
            loudest = max(loudest, float(np.abs(audio).max()))
    assert loudest > 0.01, "every clip is silent: emulator sound was lost"


def test_info_records_settings_and_counts(dataset):
    info = json.loads((dataset / "info.json").read_text())
    assert info["settings"]["games"] == list(TINY["games"])
    assert info["emulator_audio"] == {"sample_rate": 30720, "samples_per_frame": 512, "dtype": "uint8", "channels": 1}
    assert sum(info["counts"][split]["clips"] for split in SPLITS) == 6
    assert info["versions"]["ale_py"]


def test_a_larger_test_split_extends_test_and_leaves_train_and_val_alone(dataset, tmp_path):
    larger = _generate(tmp_path / "larger", test_clips_per_game=3)
    for split in ("train", "val"):
        assert (larger / f"{split}.jsonl").read_bytes() == (dataset / f"{split}.jsonl").read_bytes()
    base_test = read_manifest(atari_av_manifest_path(dataset, "test"))
    larger_test = read_manifest(atari_av_manifest_path(larger, "test"))
    assert len(larger_test) == 3 * len(TINY["games"])
    # Each game's test segment is played the same way, only longer: its first clip is the shorter split's clip.
    first_clips = {Path(e.path).name: e.labels for e in larger_test if e.path.endswith("-0000.mp4")}
    assert first_clips == {Path(e.path).name: e.labels for e in base_test}
    info = json.loads((larger / "info.json").read_text())
    assert info["settings"]["test_clips_per_game"] == 3 and info["counts"]["test"]["clips"] == 6
    assert "test_clips_per_game" not in json.loads((dataset / "info.json").read_text())["settings"]


def test_second_call_reuses_the_cache(tmp_path):
    messages = []
    out_dir = _generate(tmp_path / "cached", messages)
    assert len(messages) == len(TINY["games"])  # one progress line per game
    stamps = {path: path.stat().st_mtime_ns for path in out_dir.rglob("*")}
    messages.clear()
    assert _generate(tmp_path / "cached", messages) == out_dir
    assert len(messages) == 1 and "reusing" in messages[0]
    assert {path: path.stat().st_mtime_ns for path in out_dir.rglob("*")} == stamps


@pytest.mark.slow
def test_other_settings_replace_an_old_dataset(tmp_path):
    out_dir = _generate(tmp_path / "data", seed=0)
    _generate(out_dir, seed=3)
    assert json.loads((out_dir / "info.json").read_text())["settings"]["seed"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # nothing partial or retired left behind


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def broken_write(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(atari, "write_clip", broken_write)
    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds no AtariAV dataset"):
        _generate(tmp_path / "mine")


def test_bad_arguments_name_the_value_and_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown Atari game 'pongg'.*pong"):
        generate_atari_av(tmp_path / "x", games=("pongg",), progress=None)
    with pytest.raises(ValueError, match="'combat' cannot be played"):
        generate_atari_av(tmp_path / "x", games=("combat",), progress=None)
    assert "combat" not in atari.available_atari_games()
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        generate_atari_av(tmp_path / "x", workers=0, progress=None)
    with pytest.raises(ValueError, match="fps must divide"):
        generate_atari_av(tmp_path / "x", fps=7, progress=None)
    with pytest.raises(ValueError, match="unknown policy 'greedy'"):
        generate_atari_av(tmp_path / "x", policy="greedy", progress=None)
    with pytest.raises(ValueError, match="clips_per_game"):
        generate_atari_av(tmp_path / "x", clips_per_game=2, progress=None)
    with pytest.raises(ValueError, match="test_clips_per_game must be an integer >= 1 or None, got 0"):
        generate_atari_av(tmp_path / "x", test_clips_per_game=0, progress=None)
    with pytest.raises(ValueError, match="unknown AtariAV split 'dev'"):
        atari_av_manifest_path(tmp_path, "dev")
    assert not (tmp_path / "x").exists()
