import json

import pytest
from media_builders import media  # noqa: F401  (pytest fixture)

from mjepa.cli import main
from mjepa.data.manifests.manifest import ManifestEntry, write_manifest


def test_data_validate_through_the_mjepa_command(media, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [ManifestEntry(str(media["mp4"])), ManifestEntry(str(media["missing"]))])
    assert main(["data", "validate", str(manifest), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "missing" in out and str(media["missing"]) in out
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["missing"] == 1


def test_data_stats_reports_mean_std_and_skips_bad_items(media, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    write_manifest(
        manifest,
        [ManifestEntry(str(media["wav"])), ManifestEntry(str(media["flac"])), ManifestEntry(str(media["garbage"]))],
    )
    assert main(["data", "stats", str(manifest), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "over 2 of 3 items" in out and "skipped" in out
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["std"] > 0 and record["items_used"] == 2 and record["frontend"]["num_mel_bins"] == 128


def test_data_stats_on_a_bad_manifest_is_a_one_line_error(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": 3}\n')
    assert main(["data", "stats", str(manifest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'path'" in err[0] and "m.jsonl:1" in err[0]


def test_data_atari_generates_then_reuses(tmp_path, capsys):
    argv = [
        "data",
        "atari",
        "--out",
        str(tmp_path / "atari"),
        "--games",
        "pong",
        "--clips-per-game",
        "3",
        "--clip-seconds",
        "1",
        "--size",
        "32",
    ]
    assert main(argv) == 0
    assert (tmp_path / "atari" / "train.jsonl").is_file()
    capsys.readouterr()
    assert main(argv) == 0
    assert "AtariAV ready" in capsys.readouterr().out


def test_data_atari_unknown_game_is_a_one_line_error(tmp_path, capsys):
    assert main(["data", "atari", "--out", str(tmp_path / "a"), "--games", "notagame"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notagame" in err[0]


def test_data_import_esc50_writes_manifest_and_missing_list(tmp_path, capsys):
    import numpy as np
    import soundfile

    from mjepa.data.manifests.manifest import read_manifest

    root = tmp_path / "ESC-50"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    (root / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-100-A-0.wav,1,0,dog,True,100,A\n"
        "2-200-A-1.wav,2,1,rooster,False,200,A\n"
    )
    soundfile.write(root / "audio" / "1-100-A-0.wav", np.zeros(8000, dtype=np.float32), 16000)
    out = tmp_path / "esc50.jsonl"
    assert main(["data", "import", "esc50", str(root), "--out", str(out)]) == 0
    entries = read_manifest(out)
    assert [e.labels for e in entries] == [("dog",)]
    assert (tmp_path / "esc50.jsonl.missing.txt").read_text().split() == ["2-200-A-1.wav"]
    assert "1 of 2 items found" in capsys.readouterr().out


def test_data_import_bad_metadata_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "dev.csv"
    bad.write_text("fname,labels\n1,Dog\n")
    assert (
        main(
            [
                "data",
                "import",
                "fsd50k",
                str(bad),
                "--audio-dir",
                str(tmp_path),
                "--split",
                "train",
                "--out",
                str(tmp_path / "m.jsonl"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dev.csv" in err[0]


def test_data_stats_decodes_in_chunks_in_a_helper_process(media, monkeypatch):
    import os
    import signal

    from mjepa.data.manifests import stats
    from mjepa.data.preprocess.fbank import AudioFrontendConfig, compute_fbank_stats

    config = AudioFrontendConfig()
    entries = [ManifestEntry(str(media["wav"])), ManifestEntry(str(media["flac"]), start=0.5, end=2.5)]
    failures = []
    whole = compute_fbank_stats(stats.manifest_waveforms(entries, config.sample_rate, failures), config)
    monkeypatch.setattr(stats, "STATS_CHUNK_S", 0.7)
    chunks = list(stats.manifest_waveforms(entries, config.sample_rate, failures))
    chunked = compute_fbank_stats(iter(chunks), config)
    assert not failures
    assert chunked == pytest.approx(whole, rel=0.02)  # chunk edges: each chunk's own mean, a frame fewer each
    assert max(c.shape[0] for c in chunks) == round(0.7 * config.sample_rate)
    assert sum(c.shape[0] for c in chunks[-3:]) == 2 * config.sample_rate  # the bounded segment, 2 s

    monkeypatch.setattr(stats, "decode_audio", lambda *a, **k: os.kill(os.getpid(), signal.SIGSEGV))
    assert list(stats.manifest_waveforms(entries[:1], config.sample_rate, failures)) == []
    assert failures == [(str(media["wav"]), "crashed")]
