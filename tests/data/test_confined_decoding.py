"""The decoder reads the file it is given and nothing else: playlists and concat lists named as media are refused
before FFmpeg opens any path they name."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from mjepa.data.media.decode import decode_audio
from mjepa.data.media.info import REFUSED_CONTAINER

PROBE = """
import sys, time
from mjepa.data.media.decode import decode_audio
from mjepa.data.media.info import MediaError
start = time.perf_counter()
try:
    decode_audio(sys.argv[1])
    print("decoded")
except MediaError as err:
    print(f"refused {time.perf_counter() - start:.3f} {err.detail}")
"""


@pytest.fixture()
def fifo(tmp_path):
    path = tmp_path / "canary.fifo"
    os.mkfifo(path)  # opening it to read blocks until a writer comes: a decoder that follows the list would hang
    return path


@pytest.mark.parametrize(
    "name,text",
    [
        ("concat.mp4", "ffconcat version 1.0\nfile '{target}'\n"),
        ("playlist.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n"),
        ("playlist.mp4", "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile://{target}\n#EXT-X-ENDLIST\n"),
    ],
)
def test_lists_that_name_other_paths_are_refused_without_opening_them(tmp_path, fifo, name, text):
    path = tmp_path / name
    path.write_text(text.format(target=fifo))
    done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    verdict, seconds, detail = done.stdout.strip().split(" ", 2)
    assert verdict == "refused" and float(seconds) < 1.0
    # Refused by the allow-list of containers, or (a playlist in a name no allowed demuxer reads) as unreadable.
    assert detail == REFUSED_CONTAINER or detail.startswith("FFmpeg cannot open it")


def test_a_relative_path_that_looks_like_a_protocol_is_that_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    soundfile.write(tmp_path / "x.wav", np.zeros(1600, dtype=np.float32), 16000)  # what the protocol would read
    soundfile.write(tmp_path / "file:x.wav", np.full(3200, 0.5, dtype=np.float32), 16000)  # the file named
    waveform, _ = decode_audio("file:x.wav")
    assert waveform.numel() == 3200 and float(waveform.mean()) > 0.4
