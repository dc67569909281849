"""Audio of any channel count decodes: every layout up to 7.1 and beyond, averaged to mono, never a crash."""

import subprocess
import sys

import av
import numpy as np
import pytest

DECODE = """
import sys
from mjepa.data.media.decode import decode_audio
waveform, _ = decode_audio(sys.argv[1], sample_rate=48000)
print(waveform.numel(), float(waveform.mean()), float(waveform.abs().max()))
"""


def _write(path, codec: str, container: str, layout: str, seconds: float = 1.0, rate: int = 48000) -> np.ndarray:
    """A clip whose channel k holds the constant 0.01 * (k + 1) plus a little noise; returns the expected mono mean."""
    channels = len(av.AudioLayout(layout).channels)
    count = int(rate * seconds)
    levels = 0.01 * (np.arange(channels) + 1)
    noise = 0.001 * np.random.default_rng(channels).standard_normal((count, channels))
    data = (levels + noise).astype(np.float32)
    sample_format = "s32" if codec.startswith("pcm_s32") or codec.startswith("pcm_s24") else "flt"
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate, layout=layout)
        for start in range(0, count, 1024):
            chunk = np.ascontiguousarray(data[start : start + 1024]).reshape(1, -1)
            if sample_format == "s32":
                chunk = (chunk * 2**31).astype(np.int32)
            frame = av.AudioFrame.from_ndarray(chunk, format=sample_format, layout=layout)
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return float(levels.mean())


@pytest.mark.parametrize(
    "codec,container,layout",
    [
        ("aac", "matroska", "mono"),
        ("aac", "matroska", "stereo"),
        ("aac", "matroska", "5.1"),
        ("aac", "matroska", "7.1"),
        ("aac", "mov", "7.1"),
        ("pcm_s24le", "mov", "7.1"),
        ("pcm_s32le", "matroska", "hexadecagonal"),  # 16 channels
    ],
    ids=lambda value: str(value),
)
def test_every_channel_layout_decodes_to_the_channels_mean(tmp_path, codec, container, layout):
    path = tmp_path / f"clip.{'mov' if container == 'mov' else 'mkv'}"
    expected = _write(path, codec, container, layout)
    # In a child process: a decoder crash would end it, not the test run.
    done = subprocess.run([sys.executable, "-c", DECODE, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the decoder died ({done.returncode}): {done.stderr[-300:]}"
    samples, mean, peak = done.stdout.split()
    assert abs(int(samples) - 48000) < 2100  # AAC adds up to two frames of priming
    assert abs(float(mean) - expected) < 0.003 and float(peak) < 1.0


def test_64_bit_integer_pcm_decodes(tmp_path):
    import struct

    rate = 16000
    samples = (0.25 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 2**63).astype(np.int64)
    header = b"RIFF" + struct.pack("<I", 36 + samples.nbytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 8, 8, 64) + b"data"
    (tmp_path / "pcm64.wav").write_bytes(header + struct.pack("<I", samples.nbytes) + samples.tobytes())
    done = subprocess.run(
        [sys.executable, "-c", DECODE, str(tmp_path / "pcm64.wav")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-300:]
    count, _, peak = done.stdout.split()
    assert int(count) == 48000 and abs(float(peak) - 0.25) < 0.01  # resampled to 48 kHz by the probe


OGGENC_PACKAGES = ["vorbis-tools", "libvorbisenc2", "libvorbis0a", "libflac12", "libogg0"]


@pytest.fixture(scope="module")
def oggenc(tmp_path_factory):
    """Debian's Vorbis encoder, fetched and unpacked in the test (FFmpeg's own Vorbis encoder is stereo-only)."""
    import os

    from debian_helpers import fetched_or_skip
    from mjepa.data.debian import fetch_package

    cache = tmp_path_factory.mktemp("oggenc")
    roots = fetched_or_skip(
        lambda: [fetch_package(name, cache).root for name in OGGENC_PACKAGES], "oggenc and its libraries"
    )
    libraries = os.pathsep.join(str(folder) for root in roots for folder in (root / "usr/lib").glob("*-linux-gnu*"))
    return roots[0] / "usr/bin/oggenc", {**os.environ, "LD_LIBRARY_PATH": libraries}


@pytest.mark.slow
def test_7_1_vorbis_in_ogg_decodes_to_the_channels_mean(tmp_path, oggenc):
    import soundfile

    program, env = oggenc
    rate = 48000
    t = np.arange(rate) / rate
    levels = 0.05 * (np.arange(8) + 1)
    data = np.stack([level * np.sin(2 * np.pi * 300 * t) for level in levels], axis=1).astype(np.float32)
    soundfile.write(tmp_path / "clip.wav", data, rate, subtype="PCM_16")
    encoded = subprocess.run(
        [str(program), "-Q", "-o", str(tmp_path / "clip.ogg"), str(tmp_path / "clip.wav")], env=env, timeout=120
    )
    if encoded.returncode != 0:
        pytest.skip("the fetched oggenc does not run on this system")
    assert av.open(str(tmp_path / "clip.ogg")).streams.audio[0].channels == 8
    done = subprocess.run(
        [sys.executable, "-c", DECODE, str(tmp_path / "clip.ogg")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"the decoder died ({done.returncode}): {done.stderr[-300:]}"
    samples, _, peak = done.stdout.split()
    assert int(samples) == rate and abs(float(peak) - levels.mean()) < 0.02  # the channels' mean tone
