"""Files given to the embedding API are read as training reads them: in a helper process, refused quickly when a
header or a container cannot be right, and a file that crashes the decoder costs an error, not the interpreter."""

from __future__ import annotations

import os
import signal
import struct
import time

import numpy as np
import pytest
import soundfile

import mjepa
from mjepa import embedding_inputs
from mjepa.data.media.info import MediaError


@pytest.fixture(scope="module")
def model():
    return mjepa.load("mjepa-tiny")


@pytest.fixture()
def fresh_decoder():
    """A helper forked after the test's patches (and one without them for the tests after it)."""
    embedding_inputs.file_decoder().close()
    yield
    embedding_inputs.file_decoder().close()


def _lying_wav(path) -> None:
    """A WAV whose header declares a 1 Hz sample rate (64,000 samples would take 17.8 hours)."""
    header = b"RIFF" + struct.pack("<I", 36 + 64_000) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 1, 2, 2, 16)
    header += b"data" + struct.pack("<I", 64_000)
    path.write_bytes(header + b"\x01\x00" * 32_000)


def test_a_playlist_or_a_lying_header_is_an_error_within_seconds(model, tmp_path):
    canary = tmp_path / "canary.fifo"
    os.mkfifo(canary)  # a decoder that followed the playlist would block here forever
    playlist = tmp_path / "clip.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{canary}\n#EXT-X-ENDLIST\n")
    lying = tmp_path / "lying.wav"
    _lying_wav(lying)
    for call, path in [
        (model.encode_audio, playlist),
        (model.encode_video, playlist),
        (model.encode_av, playlist),
        (model.encode_audio, lying),
    ]:
        start = time.perf_counter()
        with pytest.raises(MediaError) as refused:
            call(str(path))
        assert time.perf_counter() - start < 5.0, call.__name__
        assert refused.value.reason in ("unreadable", "implausible") and str(path) in str(refused.value)


def _crash(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGSEGV)


def test_a_file_that_crashes_the_decoder_is_an_error_and_the_caller_goes_on(
    model, tmp_path, fresh_decoder, monkeypatch
):
    path = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    expected = model.encode_audio(str(path)).mean
    embedding_inputs.file_decoder().close()
    monkeypatch.setattr(embedding_inputs, "decode_audio", _crash)  # in the helper forked next
    with pytest.raises(MediaError) as crashed:
        model.encode_audio(str(path))
    assert crashed.value.reason == "crashed" and "SIGSEGV" in crashed.value.detail
    monkeypatch.undo()
    assert np.array_equal(model.encode_audio(str(path)).mean.numpy(), expected.numpy())  # a fresh helper
