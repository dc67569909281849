"""The audio front end: Kaldi-compatible log-mel filterbank in pure torch, fixed length, normalised.

This reproduces the AudioMAE / AST convention (``torchaudio.compliance.kaldi.fbank`` with ``htk_compat=True``,
``use_energy=False``, ``window_type="hanning"``, ``dither=0``) so that statistics and checkpoints from that line of
work apply unchanged:

1. (optional, on by default) subtract the waveform mean ("DC removed" in the recipe);
2. cut 25 ms frames every 10 ms, keeping only whole frames (Kaldi's ``snip_edges=True``);
3. per frame: remove the frame mean, pre-emphasis 0.97 (the first sample is pre-emphasised against itself),
   multiply by Kaldi's "hanning" window ``0.5 - 0.5 cos(2 pi n / (N - 1))``, zero-pad to the next power of two;
4. power spectrum, triangular mel filters on the HTK mel scale ``1127 ln(1 + f / 700)`` between 20 Hz and
   Nyquist, ``log(max(energy, float32 eps))``.

The input waveform is expected in [-1, 1] (what the decoder returns); Kaldi's tools scale by 32768 instead, which
would shift every value by ``2 ln 32768`` and break the AudioSet statistics.

``htk_compat`` only moves the energy coefficient, and energy is not used, so it needs no code here.
Everything runs in float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch

from mjepa.config import dataclass_from_dict

AUDIOSET_FBANK_MEAN = -4.2677393
AUDIOSET_FBANK_STD = 4.5689974
_LOG_FLOOR = torch.finfo(torch.float32).eps


@dataclass(frozen=True)
class AudioFrontendConfig:
    """Every setting that turns a waveform into model input; saved in checkpoints via ``to_dict``."""

    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    low_freq_hz: float = 20.0
    high_freq_hz: float | None = None  # None = Nyquist
    preemphasis: float = 0.97
    remove_frame_dc: bool = True  # Kaldi's remove_dc_offset, per frame
    subtract_waveform_mean: bool = True  # AST / AudioMAE subtract the clip mean before the fbank
    target_frames: int = 1024
    mean: float = AUDIOSET_FBANK_MEAN
    std: float = AUDIOSET_FBANK_STD

    def waveform_seconds(self) -> float:
        """Seconds of waveform that fill ``target_frames`` frames (the last frame ends there)."""
        return ((self.target_frames - 1) * self.frame_shift_ms + self.frame_length_ms) / 1000.0

    def __post_init__(self):
        if self.sample_rate <= 0:
            raise ValueError(f"AudioFrontendConfig.sample_rate must be > 0, got {self.sample_rate}")
        if self.num_mel_bins <= 0:
            raise ValueError(f"AudioFrontendConfig.num_mel_bins must be > 0, got {self.num_mel_bins}")
        if not 0 < self.frame_shift_ms <= self.frame_length_ms:
            raise ValueError(
                f"AudioFrontendConfig: need 0 < frame_shift_ms <= frame_length_ms, got "
                f"{self.frame_shift_ms} and {self.frame_length_ms}"
            )
        nyquist = self.sample_rate / 2
        high = nyquist if self.high_freq_hz is None else self.high_freq_hz
        if not 0 <= self.low_freq_hz < high <= nyquist:
            raise ValueError(
                f"AudioFrontendConfig: need 0 <= low_freq_hz < high_freq_hz <= {nyquist} (Nyquist), got "
                f"{self.low_freq_hz} and {self.high_freq_hz}"
            )
        if self.target_frames <= 0:
            raise ValueError(f"AudioFrontendConfig.target_frames must be > 0, got {self.target_frames}")
        if not self.std > 0:
            raise ValueError(f"AudioFrontendConfig.std must be > 0, got {self.std}")

    @property
    def window_length(self) -> int:
        """Samples per analysis frame."""
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def window_shift(self) -> int:
        """Samples between frame starts."""
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AudioFrontendConfig:
        return dataclass_from_dict(cls, values)


def _round_to_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _mel(freq_hz: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(freq_hz, torch.Tensor):
        return 1127.0 * torch.log1p(freq_hz / 700.0)
    return 1127.0 * math.log1p(freq_hz / 700.0)


@lru_cache(maxsize=16)
def mel_filterbank(
    num_mel_bins: int, fft_size: int, sample_rate: int, low_freq_hz: float, high_freq_hz: float
) -> torch.Tensor:
    """Kaldi's triangular mel filters as a (fft_size // 2 + 1, num_mel_bins) float32 matrix (Nyquist column 0).

    Cached; callers must not modify the result in place."""
    num_fft_bins = fft_size // 2
    bin_width_hz = sample_rate / fft_size
    mel_low = _mel(low_freq_hz)
    mel_high = _mel(high_freq_hz)
    mel_step = (mel_high - mel_low) / (num_mel_bins + 1)
    index = torch.arange(num_mel_bins, dtype=torch.float64).unsqueeze(1)
    left = mel_low + index * mel_step
    centre = left + mel_step
    right = centre + mel_step
    fft_mel = _mel(bin_width_hz * torch.arange(num_fft_bins, dtype=torch.float64)).unsqueeze(0)
    rising = (fft_mel - left) / (centre - left)
    falling = (right - fft_mel) / (right - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)  # (num_mel_bins, num_fft_bins)
    # Kaldi leaves the Nyquist bin out of every filter.
    weights = torch.nn.functional.pad(weights, (0, 1))
    return weights.T.contiguous().to(torch.float32)


@lru_cache(maxsize=16)
def _kaldi_hanning(window_length: int) -> torch.Tensor:
    return torch.hann_window(window_length, periodic=False, dtype=torch.float32)


def kaldi_fbank(
    waveform: torch.Tensor,
    sample_rate: int = 16000,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    low_freq_hz: float = 20.0,
    high_freq_hz: float | None = None,
    preemphasis: float = 0.97,
    remove_frame_dc: bool = True,
) -> torch.Tensor:
    """Log-mel filterbank of a (N,) or (B, N) waveform: (frames, num_mel_bins) or (B, frames, num_mel_bins).

    ``frames = 1 + (N - window_length) // window_shift`` (0 when N is shorter than one window)."""
    if waveform.dim() not in (1, 2):
        raise ValueError(f"kaldi_fbank: waveform must be (N,) or (B, N), got shape {tuple(waveform.shape)}")
    single = waveform.dim() == 1
    signal = waveform.unsqueeze(0) if single else waveform
    signal = signal.to(torch.float32)
    window_length = int(sample_rate * frame_length_ms * 0.001)
    window_shift = int(sample_rate * frame_shift_ms * 0.001)
    fft_size = _round_to_power_of_two(window_length)
    high = sample_rate / 2 if high_freq_hz is None else high_freq_hz

    num_samples = signal.shape[-1]
    if num_samples < window_length:
        empty = signal.new_zeros((signal.shape[0], 0, num_mel_bins))
        return empty[0] if single else empty
    frames = signal.unfold(-1, window_length, window_shift)  # (B, frames, window_length), a view
    if remove_frame_dc:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    if preemphasis != 0.0:
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames - preemphasis * previous
    frames = frames * _kaldi_hanning(window_length).to(frames.device)
    spectrum = torch.fft.rfft(frames, n=fft_size, dim=-1)
    power = spectrum.real.square() + spectrum.imag.square()
    filters = mel_filterbank(num_mel_bins, fft_size, sample_rate, float(low_freq_hz), float(high))
    energies = power @ filters.to(power.device)
    log_mel = torch.clamp(energies, min=_LOG_FLOOR).log()
    return log_mel[0] if single else log_mel


def pad_or_trim(fbank: torch.Tensor, target_frames: int) -> torch.Tensor:
    """Zero-pad or cut the time axis (dim -2) to ``target_frames``. Padding is applied before normalisation, as in
    AST / AudioMAE, so padded frames end up at ``-mean / (2 std)`` after :func:`normalize_fbank`."""
    frames = fbank.shape[-2]
    if frames == target_frames:
        return fbank
    if frames > target_frames:
        return fbank[..., :target_frames, :]
    return torch.nn.functional.pad(fbank, (0, 0, 0, target_frames - frames))


def normalize_fbank(fbank: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(x - mean) / (2 std), the AST / AudioMAE normalisation."""
    return (fbank - mean) / (2.0 * std)


def fbank_for_config(waveform: torch.Tensor, config: AudioFrontendConfig) -> torch.Tensor:
    """Unpadded, unnormalised log-mel of a (N,) or (B, N) waveform with the settings in ``config``."""
    if config.subtract_waveform_mean:
        waveform = waveform - waveform.mean(dim=-1, keepdim=True)
    return kaldi_fbank(
        waveform,
        sample_rate=config.sample_rate,
        num_mel_bins=config.num_mel_bins,
        frame_length_ms=config.frame_length_ms,
        frame_shift_ms=config.frame_shift_ms,
        low_freq_hz=config.low_freq_hz,
        high_freq_hz=config.high_freq_hz,
        preemphasis=config.preemphasis,
        remove_frame_dc=config.remove_frame_dc,
    )


def fbank_windows(
    fbank: torch.Tensor, config: AudioFrontendConfig, starts: list[int] | None = None, count: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model input windows from an unpadded, unnormalised log-mel ``(frames, bins)``: ``(W, target_frames, bins)``
    normalised, each padded or cut to ``target_frames``, and the frames of each that hold audio ``(W,)``.

    Windows start at the frames in ``starts``; without them, ``count`` consecutive windows from frame 0 (default:
    as many as cover the log-mel, at least one). The one path from audio to model input: training, evaluation and
    the embedding API all cut their windows here."""
    frames = config.target_frames
    if starts is None:
        count = max(1, math.ceil(fbank.shape[0] / frames)) if count is None else count
        starts = [i * frames for i in range(count)]
    pieces = [fbank[start : start + frames] for start in starts]
    valid = torch.tensor([piece.shape[0] for piece in pieces], dtype=torch.long)
    windows = torch.stack([pad_or_trim(piece, frames) for piece in pieces])
    return normalize_fbank(windows, config.mean, config.std), valid


def audio_features(waveform: torch.Tensor, config: AudioFrontendConfig) -> tuple[torch.Tensor, int]:
    """Model input from a (N,) waveform: (target_frames, num_mel_bins) normalised log-mel, and the number of frames
    that hold audio (the rest is padding) so that pooling can ignore padded frames."""
    if waveform.dim() != 1:
        raise ValueError(f"audio_features: waveform must be (N,), got shape {tuple(waveform.shape)}")
    windows, valid = fbank_windows(fbank_for_config(waveform, config), config, count=1)
    return windows[0], int(valid[0])


def compute_fbank_stats(waveforms: Iterable[torch.Tensor], config: AudioFrontendConfig) -> tuple[float, float]:
    """Mean and standard deviation of every log-mel value (unpadded, unnormalised) over ``waveforms``.

    Accumulated in float64, so millions of clips do not lose precision. Note: AST computed its published
    statistics over padded inputs; unpadded values describe the audio itself."""
    count = 0
    total = 0.0
    total_sq = 0.0
    for waveform in waveforms:
        values = fbank_for_config(waveform, config).to(torch.float64)
        count += values.numel()
        total += float(values.sum())
        total_sq += float(values.square().sum())
    if count == 0:
        raise ValueError("compute_fbank_stats: no fbank values (no waveforms, or all shorter than one window)")
    mean = total / count
    variance = max(0.0, total_sq / count - mean * mean)
    return mean, math.sqrt(variance)
