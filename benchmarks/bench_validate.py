"""`mjepa data validate` throughput on a mixed folder: valid files in many containers and codecs, and broken ones.

The folder is generated here (PyAV and soundfile): per round, a WAV, FLAC, MP3, Ogg/Opus, an 8-channel MKV/AAC,
an FLV with AAC, MP4 (H.264/AAC), MKV (H.264/FLAC), WebM (VP9/Opus), AVI (MJPEG/PCM) and a silent WAV, all 3 s;
and a truncated MP4, a zero-length file, random bytes, a WAV whose header declares a 1 Hz sample rate and an HLS
playlist named ``.mp4``. The command runs in a child process (``python -m mjepa.cli data validate``) so the same
script times another checkout of mjepa by ``PYTHONPATH``; it prints files per second and the verdict counts.

    python benchmarks/bench_validate.py [--rounds 10] [--workers 2] [--out benchmarks/results/bench_validate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import soundfile

from bench_json import write_record

SECONDS = 3.0


def _tone(rate: int, channels: int) -> np.ndarray:
    t = np.arange(int(rate * SECONDS)) / rate
    return np.stack([0.2 * np.sin(2 * np.pi * (300 + 40 * c) * t) for c in range(channels)]).astype(np.float32)


def _write_av(path: Path, container: str, video: str | None, audio: str | None, layout: str = "stereo") -> Path:
    rate = 48000 if audio != "mp3" else 44100
    with av.open(str(path), "w", format=container) as out:
        vstream = astream = None
        if video is not None:
            vstream = out.add_stream(video, rate=15)
            vstream.width, vstream.height = 96, 64
            vstream.pix_fmt = "yuvj420p" if video == "mjpeg" else "yuv420p"
        if audio is not None:
            astream = out.add_stream(audio, rate=rate, layout=layout)
        if vstream is not None:
            for i in range(int(SECONDS * 15)):
                image = np.full((64, 96, 3), (i * 5) % 255, np.uint8)
                out.mux(vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(vstream.encode())
        if astream is not None:
            samples = _tone(rate, len(av.AudioLayout(layout).channels))
            for start in range(0, samples.shape[1], 1024):
                chunk = np.ascontiguousarray(samples[:, start : start + 1024].T).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout=layout)
                frame.sample_rate, frame.pts = rate, start
                out.mux(astream.encode(frame))
            out.mux(astream.encode())
    return path


def _lying_wav(path: Path) -> Path:
    header = b"RIFF" + struct.pack("<I", 36 + 64_000) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 1, 2, 2, 16) + b"data" + struct.pack("<I", 64_000)
    path.write_bytes(header + b"\x01\x00" * 32_000)
    return path


def build_folder(root: Path, rounds: int) -> list[Path]:
    files = []
    for r in range(rounds):
        folder = root / f"round{r}"
        folder.mkdir()
        soundfile.write(folder / "tone.wav", _tone(44100, 2).T, 44100, subtype="PCM_16")
        soundfile.write(folder / "tone.flac", _tone(22050, 2).T, 22050)
        soundfile.write(folder / "silent.wav", np.zeros(int(16000 * SECONDS), np.float32), 16000)
        files += [folder / "tone.wav", folder / "tone.flac", folder / "silent.wav"]
        files.append(_write_av(folder / "tone.mp3", "mp3", None, "mp3"))
        files.append(_write_av(folder / "tone.ogg", "ogg", None, "libopus"))
        files.append(_write_av(folder / "surround.mkv", "matroska", None, "aac", layout="7.1"))
        files.append(_write_av(folder / "clip.flv", "flv", "flv", "aac"))
        mp4 = _write_av(folder / "clip.mp4", "mp4", "libx264", "aac")
        files += [mp4, _write_av(folder / "clip.mkv", "matroska", "libx264", "flac")]
        files.append(_write_av(folder / "clip.webm", "webm", "libvpx-vp9", "libopus"))
        files.append(_write_av(folder / "clip.avi", "avi", "mjpeg", "pcm_s16le"))
        cut = folder / "cut.mp4"
        cut.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
        (folder / "zero.mp4").write_bytes(b"")
        (folder / "garbage.mp4").write_bytes(np.random.default_rng(r).integers(0, 256, 4096, np.uint8).tobytes())
        playlist = folder / "playlist.mp4"
        playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n{mp4}\n#EXT-X-ENDLIST\n")
        files += [cut, folder / "zero.mp4", folder / "garbage.mp4", _lying_wav(folder / "lying.wav"), playlist]
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="copies of the 16-file mix (default 10: 160 files)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up on the command after this long")
    parser.add_argument("--out", default="benchmarks/results/bench_validate.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = build_folder(root, args.rounds)
        manifest = root / "mixed.jsonl"
        manifest.write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in files))
        report = root / "report.json"
        command = [sys.executable, "-m", "mjepa.cli", "data", "validate", str(manifest), "--workers"]
        command += [str(args.workers), "--json", str(report)]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=os.environ)
            seconds = time.perf_counter() - start
            counts = json.loads(report.read_text())["counts"] if report.exists() else {}
            status = done.returncode
        except subprocess.TimeoutExpired:
            seconds, counts, status = args.timeout, {}, "timeout"
    record = {
        "files": len(files),
        "workers": args.workers,
        "seconds": round(seconds, 2),
        "files_per_second": round(len(files) / seconds, 2),
        "exit_status": status,
        "counts": {k: v for k, v in counts.items() if v},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    print(json.dumps(record, indent=2))
    write_record(args.out, record)


if __name__ == "__main__":
    main()
