"""Hundreds of damaged files of every container mjepa reads, through `data validate`, pretraining with loader
workers and `extract`: nothing hangs or crashes, every bad file is named with a reason, the good ones are used."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from media_builders import tone, write_audio_av, write_video

from mjepa.data.manifests.manifest import ManifestEntry, read_manifest, write_manifest
from mjepa.data.manifests.validate import VERDICTS
from pretrain_helpers import TINY_RUN, cli_env

SAMPLE_RATE = 16000
GOOD_KINDS = ("mp4", "mkv", "webm", "avi", "wav", "flac", "ogg", "mp3")
HARD_TIMEOUT_S = 300


def _good_files(root: Path) -> dict[str, Path]:
    files = {
        "mp4": write_video(root / "good.mp4", "libx264", "aac", seconds=3),
        "mkv": write_video(root / "good.mkv", "libx264", "flac", seconds=3, keyframe_interval=8),
        "webm": write_video(root / "good.webm", "libvpx-vp9", "libopus", seconds=3, keyframe_interval=8),
        "avi": write_video(root / "good.avi", "mjpeg", "pcm_s16le", seconds=3, pix_fmt="yuvj420p"),
        "ogg": write_audio_av(root / "good.ogg", "libopus", 48000),
        "mp3": write_audio_av(root / "good.mp3", "mp3", 44100),
    }
    soundfile.write(root / "good.wav", tone(44100, 3.0, stereo=True).T, 44100, subtype="PCM_16")
    soundfile.write(root / "good.flac", tone(22050, 3.0, stereo=True).T, 22050)
    files.update(wav=root / "good.wav", flac=root / "good.flac")
    return files


def _latin1_wav(path: Path) -> Path:
    """A valid WAV whose LIST/INFO title is Latin-1, not UTF-8 ("café")."""
    soundfile.write(path, tone(SAMPLE_RATE, 2.0, stereo=False).T, SAMPLE_RATE, subtype="PCM_16")
    data = path.read_bytes()
    title = b"INAM" + struct.pack("<I", 6) + b"caf\xe9 \x00"
    chunk = b"LIST" + struct.pack("<I", 4 + len(title)) + b"INFO" + title
    path.write_bytes(data[:4] + struct.pack("<I", len(data) - 8 + len(chunk)) + data[8:] + chunk)
    return path


def _sparse_wav(path: Path, hours: float) -> Path:
    """A 16-bit mono WAV of ``hours`` of silence, written as a sparse file (header, then a hole)."""
    data_bytes = int(hours * 3600 * SAMPLE_RATE) * 2
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + data_bytes)
    return path


def _special_files(root: Path) -> dict[str, Path]:
    eight = np.stack([tone(SAMPLE_RATE, 2.0, stereo=False)[0]] * 8, axis=1)
    soundfile.write(root / "ch8.wav", eight, SAMPLE_RATE)
    soundfile.write(root / "ch8.flac", eight, SAMPLE_RATE)
    non_finite = tone(SAMPLE_RATE, 2.0, stereo=False)[0].copy()
    non_finite[100:200], non_finite[500] = np.nan, np.inf
    soundfile.write(root / "nan.wav", non_finite, SAMPLE_RATE, subtype="FLOAT")
    (root / "zero.mp4").write_bytes(b"")
    return {
        "ch8_wav": root / "ch8.wav",
        "ch8_flac": root / "ch8.flac",
        "latin1": _latin1_wav(root / "latin1.wav"),
        "nan": root / "nan.wav",
        "zero": root / "zero.mp4",
        "sparse": _sparse_wav(root / "long.wav", 1.0),
    }


def _damaged_copies(root: Path, good: dict[str, Path], rng: np.random.Generator) -> list[Path]:
    """Per container: truncations, random byte corruption, garbage after the header, a header alone."""
    out = []
    for kind, source in good.items():
        data = source.read_bytes()
        for k, fraction in enumerate((0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97)):
            path = root / f"{kind}-cut{k}.{kind}"
            path.write_bytes(data[: int(len(data) * fraction)])
            out.append(path)
        for k in range(14):
            corrupted = bytearray(data)
            for offset in rng.integers(0, len(data), size=int(rng.integers(1, 40))):
                corrupted[offset] = int(rng.integers(0, 256))
            path = root / f"{kind}-flip{k}.{kind}"
            path.write_bytes(bytes(corrupted))
            out.append(path)
        for k, header in enumerate((64, 512)):
            path = root / f"{kind}-garbage{k}.{kind}"
            path.write_bytes(data[:header] + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
            out.append(path)
        path = root / f"{kind}-header.{kind}"
        path.write_bytes(data[:32])
        out.append(path)
    return out


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("damaged")
    rng = np.random.default_rng(0)
    good = _good_files(root)
    special = _special_files(root)
    damaged_files = _damaged_copies(root, good, rng)
    files = [*good.values(), *special.values(), *damaged_files]
    manifest = root / "all.jsonl"
    write_manifest(manifest, [ManifestEntry(str(p)) for p in files])
    return {"root": root, "good": good, "special": special, "files": files, "manifest": manifest}


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mjepa.cli", *args],
        capture_output=True,
        text=True,
        timeout=HARD_TIMEOUT_S,
        env=cli_env(),
        cwd=cwd,
    )


def test_the_fuzz_set_is_large_and_covers_every_container(damaged):
    assert len(damaged["files"]) >= 200
    assert {p.suffix for p in damaged["files"]} >= {".mp4", ".mkv", ".webm", ".avi", ".wav", ".flac", ".ogg", ".mp3"}


@pytest.mark.slow
def test_validate_names_every_bad_file_and_passes_the_good_ones(damaged, tmp_path):
    report_path = tmp_path / "report.json"
    result = _run(
        ["data", "validate", str(damaged["manifest"]), "--workers", "2", "--allow-no-audio", "--json", str(report_path)]
    )
    assert result.returncode == 1, result.stderr[-3000:]  # bad files found, reported, no crash
    report = json.loads(report_path.read_text())
    assert report["total"] == len(damaged["files"]) == sum(report["counts"].values())
    bad = {Path(issue["path"]).name: issue for issue in report["issues"]}
    assert all(issue["reason"] in VERDICTS and issue["detail"] for issue in report["issues"])
    for kind, path in damaged["good"].items():
        assert path.name not in bad, (kind, bad.get(path.name))
    for name in ("ch8_wav", "ch8_flac", "latin1", "sparse"):
        assert (
            damaged["special"][name].name not in bad or bad[damaged["special"][name].name]["reason"] == "silent_audio"
        ), (name, bad.get(damaged["special"][name].name))
    assert bad["nan.wav"]["reason"] == "non_finite"
    assert bad["zero.mp4"]["reason"] == "zero_length"
    assert bad["long.wav"]["reason"] == "silent_audio"  # decoded whole, a chunk at a time
    assert sum(1 for issue in report["issues"] if issue["reason"] == "truncated") >= 20


@pytest.mark.slow
def test_pretraining_with_workers_skips_and_names_bad_files_and_uses_good_ones(damaged, tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "pretrain",
        *TINY_RUN,
        "data.source=manifest",
        f"data.manifests=[{damaged['manifest']}]",
        "data.num_workers=2",
        "data.max_skip_fraction=1.0",
        "run.steps=4",
        "run.batch_size=16",
        f"run.out_dir={run_dir}",
    ]
    result = _run(args)
    assert result.returncode == 0, result.stderr[-3000:]
    skipped = [json.loads(line) for line in (run_dir / "skipped_items.jsonl").read_text().splitlines()]
    assert skipped and all(item["reason"] and item["path"] for item in skipped)
    names = {Path(item["path"]).name for item in skipped}
    assert not names & {p.name for kind, p in damaged["good"].items() if kind in ("mp4", "mkv", "webm", "avi")}
    summary = json.loads((run_dir / "skipped_items.json").read_text())
    assert summary["num_skipped"] < 4 * 16  # the good clips trained
    assert len({(i["path"], i["reason"]) for i in skipped}) == len(skipped)  # each file once


@pytest.mark.slow
def test_extract_skips_and_names_bad_files(damaged, tmp_path):
    run_dir = tmp_path / "run"
    synthetic = _run(
        [
            "pretrain",
            *TINY_RUN,
            "data.source=synthetic",
            "run.steps=4",
            "run.batch_size=4",
            "data.num_workers=0",
            f"run.out_dir={run_dir}",
        ]
    )
    assert synthetic.returncode == 0, synthetic.stderr[-2000:]
    entries = [e for e in read_manifest(damaged["manifest"]) if Path(e.path).name != "long.wav"]
    manifest = tmp_path / "audio.jsonl"
    write_manifest(manifest, entries)
    out = tmp_path / "features.pt"
    result = _run(
        [
            "extract",
            str(manifest),
            "--checkpoint",
            str(run_dir / "checkpoints" / "latest.pt"),
            "--out",
            str(out),
            "--modality",
            "audio",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import torch

    record = torch.load(out, weights_only=True)
    assert len(record["paths"]) + len(record["skipped"]) == len(entries)
    assert all(s["reason"] and s["path"] for s in record["skipped"])
    kept = {Path(p).name for p in record["paths"]}
    assert {p.name for p in damaged["good"].values()} <= kept
    assert "nan.wav" not in kept and torch.isfinite(record["pooled"]).all()
