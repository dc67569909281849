"""Open-audio: Debian packages fetched at run time, their clips labelled, split without leaks between groups."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from debian_helpers import fetched_or_skip
from mjepa.data import debian
from mjepa.data.debian import PackageFetchError, fetch_package
from mjepa.data.manifests.manifest import ManifestEntry, read_manifest
from mjepa.data.media.decode import decode_audio
from mjepa.data.open_audio.build import build_open_audio, task_folds
from mjepa.data.open_audio.sources import hedgewars_clips, ktuberling_clips, phrase_of, resolve_sources
from mjepa.data.open_audio.tasks import TASK_RULES, split_task

SMALL = ["asterisk-en", "asterisk-it", "asterisk-fr"]  # the gsm prompts: about 2.4 MB per language


@pytest.fixture(scope="module")
def small_open_audio(tmp_path_factory):
    """The spoken-digit sources built from the real (gsm) Debian packages, fetched in the test."""
    out = tmp_path_factory.mktemp("open-audio")
    fetched_or_skip(lambda: build_open_audio(out, SMALL, codec="gsm", progress=None), "the Asterisk prompt packages")
    return out


@pytest.mark.slow
def test_every_item_says_where_it_comes_from_and_decodes(small_open_audio):
    entries = read_manifest(small_open_audio / "clips.jsonl")
    info = json.loads((small_open_audio / "info.json").read_text())
    assert len(entries) == info["clips"] > 1500
    licences = {e.meta_value("source"): e.meta_value("licence") for e in entries}
    assert licences == {"asterisk-en": "CC-BY-SA-3.0", "asterisk-it": "CC-BY-3.0", "asterisk-fr": "CC-BY-SA-3.0"}
    for entry in entries:
        assert entry.meta_value("package").startswith("asterisk-core-sounds-")
        assert entry.meta_value("version") == info["sources"][entry.meta_value("source")]["version"] != ""
        assert entry.meta_value("duration_s") > 0 and entry.meta_value("language") in ("en", "it", "fr")
    for entry in entries[::200]:
        waveform, _ = decode_audio(entry.path, sample_rate=16000)
        assert abs(waveform.numel() / 16000 - entry.meta_value("duration_s")) < 0.01
    skipped = json.loads((small_open_audio / "skipped.json").read_text())
    assert len(skipped) == info["skipped"] and all(s["reason"] and s["path"] for s in skipped)
    assert "reusing" in _built_again(small_open_audio)


def _built_again(out: Path) -> str:
    lines = []
    build_open_audio(out, SMALL, codec="gsm", progress=lines.append)
    return "\n".join(lines)


@pytest.mark.slow
def test_spoken_digit_holds_each_language_out_of_training(small_open_audio):
    folds = task_folds(small_open_audio, "spoken-digit")
    assert len(folds) == 3
    held_out = set()
    for fold in folds:
        train = {e.meta_value("language") for e in fold["train"]}
        test = {e.meta_value("language") for e in fold["test"]}
        assert len(test) == 1 and not train & test and len(train) == 2
        assert sorted(e.labels[0] for e in fold["test"]) == [str(d) for d in range(10)]
        held_out |= test
    assert held_out == {"en", "it", "fr"}


@pytest.mark.slow
def test_the_pretraining_manifest_holds_no_clip_of_any_task(small_open_audio):
    info = json.loads((small_open_audio / "info.json").read_text())
    pretrain = read_manifest(small_open_audio / "pretrain.jsonl")
    scored = {e.path for fold in task_folds(small_open_audio, "spoken-digit") for split in fold.values() for e in split}
    assert pretrain and len(pretrain) == info["pretrain"]["clips"]
    assert not {e.path for e in pretrain} & scored
    everything = {e.path for e in read_manifest(small_open_audio / "clips.jsonl")}
    assert {e.path for e in pretrain} | scored == everything  # every clip is scored or pretrains, never both


def test_a_licence_grant_is_checked_where_the_copyright_file_is_not_machine_readable(tmp_path):
    from mjepa.data.debian import copyright_grants
    from mjepa.data.open_audio.sources import GPL_2_GRANT

    doc = tmp_path / "usr/share/doc/some-data"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "This package is free software; you can redistribute it and/or modify\n   it under the terms of the GNU "
        "General Public License as published by\n   the Free Software Foundation; version 2 dated June, 1991.\n"
    )
    assert copyright_grants(tmp_path, "some-data", GPL_2_GRANT)
    assert not copyright_grants(tmp_path, "some-data", "Creative Commons Attribution-ShareAlike 3.0")
    assert not copyright_grants(tmp_path, "other-data", GPL_2_GRANT)


@pytest.mark.slow
def test_fetched_packages_are_reused_without_apt(small_open_audio, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    package = fetch_package("asterisk-core-sounds-it-gsm", small_open_audio)
    assert package.version and "CC-BY-3.0" in package.licences and package.root.is_dir()


def test_without_apt_get_the_error_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(debian.shutil, "which", lambda tool: None)
    with pytest.raises(PackageFetchError, match="needs apt-get and dpkg-deb, which this system lacks") as err:
        fetch_package("hedgewars-data", tmp_path)
    assert "\n" not in str(err.value)


def _entries(rows):
    return [ManifestEntry(f"{i}.ogg", meta=tuple(row.items())) for i, row in enumerate(rows)]


def test_holdout_tasks_keep_their_groups_apart_and_drop_unseen_classes():
    rule = TASK_RULES["hedgewars-phrase"]
    voices = [f"voice{v}" for v in range(15)]
    rows = [{"source": "hedgewars-voices", "voice": v, "phrase": p} for v in voices for p in ("fire", "ouch", "hello")]
    rows.append({"source": "hedgewars-voices", "voice": "voice3", "phrase": "rare"})  # one voice only
    (fold,) = split_task(_entries(rows), rule)
    groups = {name: fold.groups(name, "voice") for name in ("train", "val", "test")}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["val"]
    assert not groups["val"] & groups["test"] and set().union(*groups.values()) == set(voices)
    assert len(groups["test"]) == len(groups["val"]) == 3
    trained = {e.labels[0] for e in fold.splits["train"]}
    assert all(e.labels[0] in trained for name in ("val", "test") for e in fold.splits[name])
    assert fold.dropped == (0 if "voice3" in groups["train"] else 1)
    assert split_task(_entries(rows), rule)[0].splits == fold.splits  # seeded: the same split every time


def test_sources_label_their_files(tmp_path):
    voices = tmp_path / "usr/share/games/hedgewars/Data/Sounds/voices"
    for voice, name in (("Pirate", "Firepunch3"), ("Robot", "Ouch"), ("Robot", "Firepunch1")):
        (voices / voice).mkdir(parents=True, exist_ok=True)
        (voices / voice / f"{name}.ogg").write_bytes(b"")
    clips = hedgewars_clips(tmp_path)
    assert [(c.value("voice"), c.labels) for c in clips] == [
        ("Pirate", ("firepunch",)),
        ("Robot", ("firepunch",)),
        ("Robot", ("ouch",)),
    ]
    assert phrase_of("Ow4") == "ow"
    sounds = tmp_path / "usr/share/ktuberling/sounds"
    (sounds / "fr").mkdir(parents=True)
    soundfile.write(sounds / "fr" / "patate_ballon.wav", np.zeros(800, dtype=np.float32), 8000)
    (sounds / "fr.soundtheme").write_text(
        '<language code="fr">\n  <sound name="ball" file="fr/patate_ballon.wav" />\n'
        '  <sound name="bow" file="fr/missing.wav" />\n</language>\n'
    )
    (clip,) = ktuberling_clips(tmp_path)
    assert clip.labels == ("ball",) and clip.value("language") == "fr"
    with pytest.raises(ValueError, match="unknown open-audio source 'hedgehogs'"):
        resolve_sources(["hedgehogs"])
    assert resolve_sources(["asterisk-ru"], codec="gsm")[0].package == "asterisk-core-sounds-ru-gsm"


def test_megaglest_sounds_are_labelled_by_event_and_faction(tmp_path):
    from mjepa.data.open_audio.sources import megaglest_clips

    tech = tmp_path / "usr/share/games/megaglest/techs/megapack"
    for relative in (
        "factions/norsemen/units/spearman/sounds/swordman_attack7.wav",
        "factions/magic/units/daemon/sounds/daemon_die2.ogg",
        "commondata/sounds/worker_harvest_wood3.wav",
    ):
        (tech / relative).parent.mkdir(parents=True, exist_ok=True)
        (tech / relative).write_bytes(b"")
    clips = {c.value("sound"): c for c in megaglest_clips(tmp_path)}
    assert clips["swordman_attack"].labels == ("attack",) and clips["swordman_attack"].value("faction") == "norsemen"
    assert clips["daemon_die"].labels == ("die",) and clips["daemon_die"].value("faction") == "magic"
    assert clips["worker_harvest_wood"].labels == () and clips["worker_harvest_wood"].value("faction") == "common"
