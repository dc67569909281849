"""DoomAV: frames and sound of a ViZDoom scenario, in sync, written as ordinary mp4 clips with manifests."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from debian_helpers import fetched_or_skip
from mjepa.data.manifests.manifest import read_manifest
from mjepa.data.media.decode import ClipSpec, decode_audio, decode_clip

vizdoom = pytest.importorskip("vizdoom", reason="the DoomAV source needs the vizdoom package (mjepa[vizdoom])")

if shutil.which("apt-get") is None:
    pytest.skip(
        "the engine's OpenAL library is fetched with apt-get download, which this system lacks", allow_module_level=True
    )


@pytest.fixture(scope="module")
def openal(tmp_path_factory):
    from mjepa.data.vizdoom.play import openal_library_dir

    return fetched_or_skip(lambda: openal_library_dir(tmp_path_factory.mktemp("debian")), "OpenAL")


def test_the_sound_of_a_shot_starts_in_the_step_that_fired_it(openal):
    from mjepa.data.vizdoom.play import SAMPLES_PER_STEP, ScenarioPlayer

    player = ScenarioPlayer("basic", seed=3, openal_dir=openal)
    try:
        clip = player.record_clip(35)
    finally:
        player.close()
    assert len(clip.frames) == 35 and clip.frames[0].shape == (120, 160, 3) and clip.frames[0].dtype == np.uint8
    assert clip.audio.shape == (35 * SAMPLES_PER_STEP, 2) and clip.audio.dtype == np.int16
    ammo = clip.counters["SELECTED_WEAPON_AMMO"]
    first_shot = next(k for k in range(34) if ammo[k + 1] < ammo[k])  # the step whose action fired
    loudness = np.abs(clip.audio.astype(np.int32)).reshape(35, SAMPLES_PER_STEP, 2).max(axis=(1, 2))
    assert loudness[:first_shot].max() < 100  # the level is silent until the pistol fires
    assert loudness[first_shot] > 5000  # and the shot is heard in the step that fired it
    assert "event:shot" in clip.labels and "scenario:basic" in clip.labels


def test_generated_clips_decode_with_frames_and_sound_of_the_stated_shapes(openal, tmp_path):
    from mjepa.data.vizdoom.generate import generate_doom_av

    out = generate_doom_av(
        tmp_path / "doom", scenarios=["basic"], clips_per_scenario=4, seed=0, size=64, cache=openal.parent.parent
    )
    entries = {split: read_manifest(out / f"{split}.jsonl") for split in ("train", "val", "test")}
    assert {split: len(e) for split, e in entries.items()} == {"train": 2, "val": 1, "test": 1}
    entry = entries["train"][0]
    assert entry.end == pytest.approx(4.0) and entry.meta_value("package") == "vizdoom"
    assert "BSD-3-Clause" in entry.meta_value("licence")
    path = str(out / entry.path)
    audio, start = decode_audio(path, sample_rate=16000)
    assert start == pytest.approx(0.0, abs=0.03) and abs(audio.shape[0] - 64000) <= 1024
    assert float(audio.abs().max()) > 0.05  # it is not silence
    clip = decode_clip(path, ClipSpec(num_frames=8, frames_per_second=4.0), window_start=0.0, require_video=True)
    assert tuple(clip.frames.shape) == (8, 64, 64, 3) and clip.num_padded_frames == 0
    # frame k of the file is at 4k / 35 s; the window's frames are the ones on screen at 0, 0.25, ... 1.75 s
    assert clip.frame_times.tolist() == pytest.approx([int(t * 35 / 4) * 4 / 35 for t in np.arange(8) / 4.0], abs=1e-3)
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert labels[0] == "scenario:basic" and "event:shot" in labels
    assert json.loads((out / "info.json").read_text())["counts"] == {"train": 2, "val": 1, "test": 1}
    # The correspondence task: each training clip with its own sound and with the other clip's.
    pairs = read_manifest(out / "avc-train.jsonl")
    first, second = (e.path for e in entries["train"])
    assert [(e.path, e.audio_path, e.labels) for e in pairs] == [
        (first, None, ("av:matched",)),
        (first, second, ("av:shifted",)),
        (second, None, ("av:matched",)),
        (second, first, ("av:shifted",)),
    ]
    assert not (out / "avc-test.jsonl").exists()  # one test clip has no other sound to pair with


def test_a_folder_that_holds_something_else_is_never_replaced(tmp_path):
    from mjepa.data.vizdoom.generate import generate_doom_av

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds no DoomAV set"):
        generate_doom_av(tmp_path / "mine", scenarios=["basic"], clips_per_scenario=3)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
