import json

import pytest
from media_builders import media  # noqa: F401  (pytest fixture)

from mjepa.data.manifests.manifest import ManifestEntry, read_manifest, write_manifest
from mjepa.data.manifests.validate import main, validate_manifest


@pytest.fixture
def mixed_entries(media) -> list[tuple[ManifestEntry, str]]:
    """(entry, expected verdict) for one of every kind of item."""

    def entry(kind, **fields):
        return ManifestEntry(path=str(media[kind]), **fields)

    return [
        (entry("mp4"), "ok"),
        (entry("webm"), "ok"),
        (entry("flac"), "ok"),
        (entry("wav_named_mp4"), "ok"),  # content decides, not the extension
        (entry("video_only", has_audio=False), "ok"),  # declared audio-less (SSv2-style): not required
        (entry("missing"), "missing"),
        (entry("zero"), "zero_length"),
        (entry("cut_mp4"), "truncated"),
        (entry("cut_faststart"), "truncated"),
        (entry("cut_mkv"), "truncated"),
        (entry("garbage"), "unreadable"),
        (entry("video_only"), "no_audio_stream"),
        (entry("short"), "too_short"),
        (entry("mp4", start=3.0, end=4.0), "too_short"),
        (entry("silent"), "silent_audio"),
    ]


def test_every_item_gets_its_verdict_and_the_run_reaches_the_end(mixed_entries):
    entries = [entry for entry, _ in mixed_entries]
    report = validate_manifest(entries, min_duration_s=2.0)
    # Issues come in manifest order, so they line up with the expected bad items one to one.
    expected_bad = [(entry.path, verdict) for entry, verdict in mixed_entries if verdict != "ok"]
    assert [(issue.path, issue.reason) for issue in report.issues] == expected_bad
    assert report.total == len(entries)
    assert report.counts["ok"] == 5 and report.counts["truncated"] == 3 and report.counts["too_short"] == 2
    assert sum(report.counts.values()) == len(entries) and report.num_bad == len(entries) - 5
    assert all(issue.detail and "\n" not in issue.detail for issue in report.issues)
    good = {entry.path: entry.has_audio for entry in report.good_entries}
    assert good[entries[0].path] is True and good[entries[4].path] is False
    text = report.format_report()
    assert text.startswith(f"validated {len(entries)} items: 5 ok, {len(entries) - 5} bad")
    assert "truncated" in text and "silent_audio" in text
    assert json.loads(report.to_json())["counts"]["missing"] == 1


def test_audio_can_be_optional(media):
    report = validate_manifest([ManifestEntry(path=str(media["video_only"]))], require_audio=False)
    assert report.all_ok and report.good_entries[0].has_audio is False


def test_parallel_workers_give_the_same_report(mixed_entries):
    entries = [entry for entry, _ in mixed_entries]
    serial = validate_manifest(entries, min_duration_s=2.0)
    parallel = validate_manifest(entries, min_duration_s=2.0, num_workers=2)
    assert parallel.to_dict() == serial.to_dict()


def test_command_line(tmp_path, media, capsys):
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [ManifestEntry(path=str(media["mp4"])), ManifestEntry(path=str(media["zero"]))])
    report_path, clean_path = tmp_path / "report.json", tmp_path / "clean.jsonl"
    arguments = [str(manifest), "--min-duration", "1", "--json", str(report_path), "--clean-manifest", str(clean_path)]
    status = main(arguments)
    assert status == 1
    assert "zero_length" in capsys.readouterr().out
    assert json.loads(report_path.read_text())["counts"] == {
        "ok": 1,
        "missing": 0,
        "zero_length": 1,
        "truncated": 0,
        "implausible": 0,
        "unreadable": 0,
        "no_audio_stream": 0,
        "too_short": 0,
        "non_finite": 0,
        "decoder_error": 0,
        "crashed": 0,
        "timeout": 0,
        "silent_audio": 0,
    }
    clean = read_manifest(clean_path)
    assert [entry.path for entry in clean] == [str(media["mp4"])] and clean[0].has_audio is True
    write_manifest(manifest, [ManifestEntry(path=str(media["mp4"]))])
    assert main([str(manifest)]) == 0
    (tmp_path / "broken.jsonl").write_text("{not json}\n")
    assert main([str(tmp_path / "broken.jsonl")]) == 2
    assert "broken.jsonl:1" in capsys.readouterr().err
