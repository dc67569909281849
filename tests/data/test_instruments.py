"""GM-Instruments: the split by instrument, the clips and manifests, silent notes, reuse. A stand-in synth plays
sine tones so the test needs neither FluidSynth nor a SoundFont; the real render is recorded in docs/models.md."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from instrument_helpers import FakeFluidsynth
from mjepa.data.instruments import generate as instruments
from mjepa.data.instruments.generate import GM_FAMILIES, generate_instruments, split_programs
from mjepa.data.manifests.manifest import read_manifest


@pytest.fixture
def soundfont(tmp_path):
    path = tmp_path / "fake.sf2"
    path.write_bytes(b"RIFF")
    return path


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(instruments, "_import_fluidsynth", lambda: FakeFluidsynth)
    monkeypatch.setattr(instruments, "PITCHES", (60, 64))
    monkeypatch.setattr(instruments, "VELOCITIES", (100,))


def test_split_by_instrument_covers_every_program_once_with_every_family_in_each_split():
    splits = split_programs(seed=0)
    assert sorted(p for programs in splits.values() for p in programs) == list(range(80))
    for split, per_family in instruments.SPLIT_PROGRAMS.items():
        families = [p // 8 for p in splits[split]]
        assert all(families.count(f) == per_family for f in range(len(GM_FAMILIES))), split
    assert split_programs(seed=0) == splits and split_programs(seed=1) != splits


def test_renders_labelled_clips_and_leaves_silent_notes_out(tmp_path, soundfont, small):
    out = generate_instruments(tmp_path / "gm", soundfont=soundfont, progress=None)
    info = json.loads((out / "info.json").read_text())
    programs = split_programs(0)
    silent = 7 in programs["train"] + programs["val"] + programs["test"]
    assert silent and info["silent_notes"] == ["clips/007-60-100.flac", "clips/007-64-100.flac"]
    for split in ("train", "val", "test"):
        entries = read_manifest(out / f"{split}.jsonl")
        expected = 2 * len(programs[split]) - (2 if 7 in programs[split] else 0)
        assert len(entries) == expected == info["counts"][split]
        for entry in entries:
            program = int(entry.labels[1].split(":")[1])
            assert program in programs[split]
            assert entry.labels[0] == f"family:{GM_FAMILIES[program // 8]}"
        audio, rate = soundfile.read(entries[0].path)
        assert rate == 16000 and audio.shape == (32000,) and np.abs(audio).max() > 0.1


def test_reuses_a_finished_set_and_refuses_a_foreign_folder(tmp_path, soundfont, small, monkeypatch):
    out = generate_instruments(tmp_path / "gm", soundfont=soundfont, progress=None)
    messages = []
    monkeypatch.setattr(instruments, "_import_fluidsynth", lambda: pytest.fail("rendered again"))
    assert generate_instruments(out, soundfont=soundfont, progress=messages.append) == out
    assert messages == [f"GM-Instruments: reusing {out} (same settings)"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no GM-Instruments set"):
        generate_instruments(tmp_path / "other", soundfont=soundfont, progress=None)
    with pytest.raises(FileNotFoundError, match="missing.sf2: SoundFont not found; .*apt install fluid-soundfont-gm"):
        generate_instruments(tmp_path / "new", soundfont=tmp_path / "missing.sf2", progress=None)
