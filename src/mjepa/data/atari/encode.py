"""AtariAV clip writing: played clips to ``.mp4`` files with H.264 (or mpeg4) video and AAC 16 kHz mono audio.

The audio conditioning (offset removal, resampling) is described in the module docstring of
:mod:`mjepa.data.atari.generate`, which drives this module.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from mjepa.data.atari.play import ALE_AUDIO_RATE

AUDIO_SAMPLE_RATE = 16000
# The mjepa audio front end works at 16 kHz; AAC at 16 kHz mono needs far less than this, but Atari square waves
# are harsh and we want the encoder to keep them.
AUDIO_BIT_RATE = 64000
AAC_FRAME_SAMPLES = 1024  # the AAC encoder takes exactly this many samples per frame
DC_WINDOW_SAMPLES = ALE_AUDIO_RATE // 30  # 1/30 s moving average: removes the chip's offset, keeps audible sound


def write_clip(path: Path, clip: dict, fps: int, size: int, codec: str, reformatter: VideoReformatter) -> None:
    """Encode a clip from :func:`mjepa.data.atari.play.play_segment` to ``path`` as a size x size mp4."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        video = _add_video_stream(container, codec, fps, size)
        audio = _add_audio_stream(container)
        _encode_video(container, video, clip["frames"], size, reformatter)
        _encode_audio(container, audio, clip["audio"])


def _add_video_stream(container, codec: str, fps: int, size: int):
    video = container.add_stream(codec, rate=fps)
    video.width = size
    video.height = size
    video.pix_fmt = "yuv420p"
    video.time_base = Fraction(1, fps)
    video.thread_count = 1  # clips are tiny; threads cost more than they save
    if codec == "libx264":
        video.options = {"crf": "20", "preset": "veryfast"}
    else:
        video.bit_rate = 400_000
    return video


def _add_audio_stream(container):
    audio = container.add_stream("aac", rate=AUDIO_SAMPLE_RATE)
    audio.layout = "mono"
    audio.bit_rate = AUDIO_BIT_RATE
    # ffmpeg's default AAC search is twice as slow for no audible gain on 8-bit chip sound.
    audio.options = {"aac_coder": "fast"}
    return audio


def _encode_video(container, video, screens: list[np.ndarray], size: int, reformatter: VideoReformatter) -> None:
    for index, screen in enumerate(screens):
        frame = av.VideoFrame.from_ndarray(screen, format="rgb24")
        # Area averaging keeps thin Atari sprites (balls, bullets) visible when shrinking 210x160 screens.
        frame = reformatter.reformat(frame, width=size, height=size, format="yuv420p", interpolation="AREA")
        frame.pts = index
        container.mux(video.encode(frame))
    container.mux(video.encode(None))


def _encode_audio(container, audio, emulator_audio: np.ndarray) -> None:
    waveform = _emulator_audio_to_float(emulator_audio)
    source = av.AudioFrame.from_ndarray(waveform[None, :], format="flt", layout="mono")
    source.sample_rate = ALE_AUDIO_RATE
    source.pts = 0
    # libswresample low-passes before decimating; Atari square waves would alias badly otherwise.
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_SAMPLE_RATE, frame_size=AAC_FRAME_SAMPLES)
    for resampled in resampler.resample(source) + resampler.resample(None):
        container.mux(audio.encode(resampled))
    container.mux(audio.encode(None))


def _remove_dc(signal: np.ndarray, window: int) -> np.ndarray:
    """Subtract a centred moving average (a cheap high-pass); edges are padded with the edge value."""
    padded = np.pad(signal.astype(np.float64), (window // 2, window - 1 - window // 2), mode="edge")
    running = np.concatenate([[0.0], np.cumsum(padded)])
    local_mean = (running[window:] - running[:-window]) / window
    return signal - local_mean


def _emulator_audio_to_float(audio: np.ndarray) -> np.ndarray:
    """Unipolar uint8 chip samples to float32 in [-1, 1] with the slowly varying offset removed."""
    centred = (audio.astype(np.float64) - 128.0) / 128.0
    return np.clip(_remove_dc(centred, DC_WINDOW_SAMPLES), -1.0, 1.0).astype(np.float32)
