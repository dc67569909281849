"""A header that cannot be right is refused from the header, at once, never left to the decode watchdog."""

import struct
import subprocess
import sys
import time

import pytest

from mjepa.data.media.decode import decode_audio, probe_media
from mjepa.data.media.info import MediaError


def _wav(path, sample_rate: int, channels: int, data_bytes: int, written: int) -> None:
    """A 16-bit PCM WAV whose header declares ``data_bytes`` of samples at ``sample_rate``; ``written`` bytes follow
    (the file is made sparse up to the declared size)."""
    block = 2 * channels
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    with open(path, "wb") as handle:
        handle.write(header + b"\x01\x00" * (written // 2))
        handle.truncate(len(header) + data_bytes)


@pytest.mark.parametrize(
    "rate,channels,data_bytes,match",
    [
        (1, 1, 64_000, "a sample rate of 1 Hz"),
        (8000, 1, 4_000_000_000, "an audio stream of 69.4 h"),
    ],
    ids=["1 Hz rate", "4 GB declared"],
)
def test_a_lying_wav_header_is_refused_within_a_second(tmp_path, rate, channels, data_bytes, match):
    path = tmp_path / "lying.wav"
    _wav(path, rate, channels, data_bytes, written=64_000)
    start = time.perf_counter()
    with pytest.raises(MediaError) as refused:
        decode_audio(path)
    assert time.perf_counter() - start < 1.0
    assert refused.value.reason == "implausible" and match in refused.value.detail
    with pytest.raises(MediaError, match="its header declares"):
        probe_media(path)


def test_validate_names_the_implausible_file_quickly(tmp_path):
    path = tmp_path / "lying.wav"
    _wav(path, 1, 1, 64_000, written=64_000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(f'{{"path": "{path}"}}\n')
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mjepa.cli", "data", "validate", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.perf_counter() - start < 60
    assert "implausible" in done.stdout + done.stderr
