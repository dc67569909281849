"""Small media files built with PyAV / soundfile once per test session, and the ``media`` fixture that holds them.

Test modules import the fixture (``from media_builders import media``) rather than getting it from a
``conftest.py``: a second ``conftest`` module under tests/ would shadow the top-level one for ``from conftest
import ...``.

Video frames carry their own index: the top half holds 8 vertical stripes, stripe b white when bit b of the frame
index is set, so a decoded frame can be identified despite lossy compression. The bottom-left quarter is red
(checks RGB channel order). Audio is a 440 Hz tone in the left channel and silence in the right, so that a
channel-average downmix has amplitude half the left channel's.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

WIDTH, HEIGHT = 64, 48
VIDEO_FPS = 8
CLIP_SECONDS = 5
TONE_HZ = 440.0
TONE_AMPLITUDE = 0.5


def frame_image(index: int) -> np.ndarray:
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    for bit in range(8):
        if (index >> bit) & 1:
            image[: HEIGHT // 2, bit * 8 : (bit + 1) * 8] = 255
    image[HEIGHT // 2 :, : WIDTH // 2, 0] = 220
    return image


def frame_index(image) -> int:
    """Read back the index written by :func:`frame_image` from an (H, W, 3) uint8 array or tensor."""
    image = np.asarray(image)
    return sum(1 << bit for bit in range(8) if image[: HEIGHT // 2, bit * 8 + 4].mean() > 128)


def tone(sample_rate: int, seconds: float, stereo: bool) -> np.ndarray:
    """(channels, samples) float32: the tone in channel 0, silence in channel 1 when stereo."""
    t = np.arange(int(round(sample_rate * seconds))) / sample_rate
    left = (TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    return np.stack([left, np.zeros_like(left)]) if stereo else left[None]


def write_video(
    path: Path,
    video_codec: str,
    audio_codec: str | None,
    seconds: float = CLIP_SECONDS,
    sample_rate: int = 48000,
    pix_fmt: str = "yuv420p",
    container_options: dict | None = None,
    keyframe_interval: int = 250,
) -> Path:
    with av.open(str(path), "w", options=container_options or {}) as container:
        video = container.add_stream(video_codec, rate=VIDEO_FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, pix_fmt
        video.codec_context.gop_size = keyframe_interval
        audio = container.add_stream(audio_codec, rate=sample_rate, layout="stereo") if audio_codec else None
        for index in range(int(seconds * VIDEO_FPS)):
            frame = av.VideoFrame.from_ndarray(frame_image(index), format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            samples = tone(sample_rate, seconds, stereo=True)
            for offset in range(0, samples.shape[1], 1024):
                chunk = np.ascontiguousarray(samples[:, offset : offset + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = sample_rate, offset
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return path


def write_audio_av(path: Path, codec: str, sample_rate: int, seconds: float = 3.0) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sample_rate, layout="stereo")
        samples = tone(sample_rate, seconds, stereo=True)
        for offset in range(0, samples.shape[1], 1152):
            chunk = np.ascontiguousarray(samples[:, offset : offset + 1152])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = sample_rate, offset
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cut_in_half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


_BUILT: dict[Path, dict[str, Path]] = {}


def _build_media_set(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "mp4": write_video(root / "clip.mp4", "libx264", "aac"),
        # moov box at the front, as streaming sites serve it; a cut copy then opens and stops early.
        "mp4_faststart": write_video(
            root / "faststart.mp4", "libx264", "aac", container_options={"movflags": "faststart"}
        ),
        # Key frames every second, so that windows after the start are reached by a real seek.
        "mkv": write_video(root / "clip.mkv", "libx264", "flac", keyframe_interval=VIDEO_FPS),
        "webm": write_video(root / "clip.webm", "libvpx-vp9", "libopus", keyframe_interval=VIDEO_FPS),
        "avi": write_video(root / "clip.avi", "mjpeg", "pcm_s16le", pix_fmt="yuvj420p"),
        "video_only": write_video(root / "video_only.mp4", "libx264", None),
        "short": write_video(root / "short.mp4", "libx264", "aac", seconds=1.5),
        "ogg": write_audio_av(root / "tone.ogg", "libopus", 48000),
        "mp3": write_audio_av(root / "tone.mp3", "mp3", 44100),
    }
    soundfile.write(root / "tone.wav", tone(44100, 3.0, stereo=True).T, 44100, subtype="PCM_16")
    soundfile.write(root / "tone.flac", tone(22050, 3.0, stereo=True).T, 22050)
    soundfile.write(root / "silent.wav", np.zeros(16000 * 2, dtype=np.float32), 16000)
    # A click (one full-scale sample) at exactly 2.000 s, to check that seeks land sample-accurately.
    click = np.zeros(16000 * 4, dtype=np.float32)
    click[32000] = 1.0
    soundfile.write(root / "click.wav", click, 16000, subtype="FLOAT")
    files.update(wav=root / "tone.wav", flac=root / "tone.flac", silent=root / "silent.wav", click=root / "click.wav")
    files["wav_named_mp4"] = root / "wav_content.mp4"
    files["wav_named_mp4"].write_bytes(files["wav"].read_bytes())
    files["cut_mp4"] = cut_in_half(files["mp4"], root / "cut.mp4")
    files["cut_faststart"] = cut_in_half(files["mp4_faststart"], root / "cut_faststart.mp4")
    files["cut_mkv"] = cut_in_half(files["mkv"], root / "cut.mkv")
    files["zero"] = root / "zero.mp4"
    files["zero"].write_bytes(b"")
    files["garbage"] = root / "garbage.mp4"
    files["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["missing"] = root / "does_not_exist.mp4"
    return files


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Name -> path of every test media file (see :func:`_build_media_set`); built once per session even though
    several modules import the fixture."""
    root = tmp_path_factory.getbasetemp() / "mjepa_media"
    if root not in _BUILT:
        _BUILT[root] = _build_media_set(root)
    return _BUILT[root]
