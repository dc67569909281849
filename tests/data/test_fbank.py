import math

import numpy as np
import pytest
import torch

from mjepa.data.preprocess.fbank import (
    AUDIOSET_FBANK_MEAN,
    AUDIOSET_FBANK_STD,
    AudioFrontendConfig,
    audio_features,
    compute_fbank_stats,
    fbank_for_config,
    kaldi_fbank,
    normalize_fbank,
    pad_or_trim,
)

LOG_FLOOR = math.log(np.finfo(np.float32).eps)


def htk_mel(freq_hz: float) -> float:
    return 1127.0 * math.log(1.0 + freq_hz / 700.0)


def reference_signal() -> np.ndarray:
    """0.25 s: two tones, a chirp and a DC offset (which per-frame DC removal must cancel)."""
    t = np.arange(4000) / 16000
    return (
        0.3 * np.sin(2 * np.pi * 440 * t)
        + 0.1 * np.sin(2 * np.pi * 3000 * t)
        + 0.05 * np.sin(2 * np.pi * (200 * t + 4000 * t * t))
        + 0.02
    )


def reference_fbank(signal: np.ndarray, sample_rate: int = 16000, num_bins: int = 128) -> np.ndarray:
    """Kaldi fbank written out in float64 numpy, frame by frame, filter by filter, independently of the module."""
    window, shift, nfft = 400, 160, 512
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / (window - 1)) for i in range(window)])
    low, high = htk_mel(20.0), htk_mel(sample_rate / 2)
    step = (high - low) / (num_bins + 1)
    weights = np.zeros((num_bins, nfft // 2 + 1))
    for m in range(num_bins):
        left, centre, right = low + m * step, low + (m + 1) * step, low + (m + 2) * step
        for k in range(nfft // 2):  # Kaldi gives the Nyquist bin no weight
            f_mel = htk_mel(k * sample_rate / nfft)
            if left < f_mel <= centre:
                weights[m, k] = (f_mel - left) / (centre - left)
            elif centre < f_mel < right:
                weights[m, k] = (right - f_mel) / (right - centre)
    rows = []
    for i in range(1 + (len(signal) - window) // shift):
        frame = np.array(signal[i * shift : i * shift + window], dtype=np.float64)
        frame = frame - frame.mean()
        emphasised = frame.copy()
        emphasised[1:] -= 0.97 * frame[:-1]
        emphasised[0] -= 0.97 * frame[0]
        power = np.abs(np.fft.rfft(emphasised * hann, nfft)) ** 2
        rows.append(np.log(np.maximum(weights @ power, np.finfo(np.float32).eps)))
    return np.array(rows)


def test_matches_independent_numpy_reference():
    signal = reference_signal()
    ours = kaldi_fbank(torch.tensor(signal, dtype=torch.float32))
    assert ours.dtype == torch.float32 and ours.shape == (23, 128)
    expected = reference_fbank(signal)
    # float32 vs float64: near the log floor (energies ~1e-7) the log amplifies rounding to ~1e-3.
    np.testing.assert_allclose(ours.numpy(), expected, atol=5e-3)


def test_value_regression():
    # Values from reference_fbank above (float64); torchaudio.compliance.kaldi.fbank with the AudioMAE settings
    # agrees with them to 1e-3.
    ours = kaldi_fbank(torch.tensor(reference_signal(), dtype=torch.float32))
    stored = {
        (0, 0): -9.754203519178224,
        (3, 17): -7.713084547208964,
        (10, 40): -8.514087237020512,
        (17, 90): -11.995269439532398,
        (22, 110): LOG_FLOOR,
    }
    for (frame, mel_bin), value in stored.items():
        assert ours[frame, mel_bin].item() == pytest.approx(value, abs=2e-3)


@pytest.mark.parametrize("freq_hz", [250.0, 1000.0, 4000.0])
def test_pure_tone_peaks_in_its_mel_bin(freq_hz):
    t = torch.arange(16000, dtype=torch.float64) / 16000
    fbank = kaldi_fbank((0.5 * torch.sin(2 * math.pi * freq_hz * t)).to(torch.float32))
    profile = fbank.mean(dim=0)
    low, high = htk_mel(20.0), htk_mel(8000.0)
    step = (high - low) / 129
    centres = [low + (m + 1) * step for m in range(128)]
    expected = min(range(128), key=lambda m: abs(centres[m] - htk_mel(freq_hz)))
    assert abs(int(profile.argmax()) - expected) <= 1
    assert profile.max() - profile.median() > 8.0  # a clear peak, not noise


@pytest.mark.parametrize("num_samples,frames", [(16000, 98), (160000, 998), (400, 1), (559, 1), (560, 2), (399, 0)])
def test_frame_count_follows_snip_edges(num_samples, frames):
    assert kaldi_fbank(torch.zeros(num_samples)).shape == (frames, 128)


def test_silence_is_the_log_floor():
    assert torch.allclose(kaldi_fbank(torch.zeros(1600)), torch.full((8, 128), LOG_FLOOR))


def test_batch_and_single_paths_agree():
    generator = torch.Generator().manual_seed(3)
    batch = 0.1 * torch.randn(3, 8000, generator=generator)
    batched = kaldi_fbank(batch)
    assert batched.shape == (3, 48, 128)
    for index in range(3):
        torch.testing.assert_close(batched[index], kaldi_fbank(batch[index]), rtol=0, atol=1e-5)


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(N,\) or \(B, N\)"):
        kaldi_fbank(torch.zeros(2, 2, 400))


def test_pad_or_trim_and_normalise():
    fbank = torch.arange(6.0).view(3, 2)
    padded = pad_or_trim(fbank, 5)
    assert padded.shape == (5, 2) and torch.equal(padded[:3], fbank) and torch.all(padded[3:] == 0)
    assert torch.equal(pad_or_trim(fbank, 2), fbank[:2])
    assert pad_or_trim(torch.zeros(4, 7, 3), 5).shape == (4, 5, 3)
    assert normalize_fbank(torch.tensor([1.0]), mean=-1.0, std=2.0).item() == pytest.approx(0.5)


def test_audio_features_shape_valid_frames_and_normalisation():
    config = AudioFrontendConfig()
    waveform = 0.1 * torch.randn(5 * 16000, generator=torch.Generator().manual_seed(1))  # a 5 s ESC-50-length clip
    features, valid = audio_features(waveform, config)
    assert features.shape == (1024, 128) and valid == 498
    raw = fbank_for_config(waveform, config)
    torch.testing.assert_close(features[:valid], (raw - AUDIOSET_FBANK_MEAN) / (2 * AUDIOSET_FBANK_STD))
    # Padding happens before normalisation, as in AST: padded frames sit at -mean / (2 std).
    assert torch.allclose(features[valid:], torch.tensor(-AUDIOSET_FBANK_MEAN / (2 * AUDIOSET_FBANK_STD)))


def test_waveform_mean_subtraction_is_configurable():
    waveform = torch.full((1600,), 0.5)
    with_removal = fbank_for_config(waveform, AudioFrontendConfig())
    without = fbank_for_config(waveform, AudioFrontendConfig(subtract_waveform_mean=False, remove_frame_dc=False))
    assert torch.allclose(with_removal, torch.tensor(LOG_FLOOR)) and without.max() > LOG_FLOOR + 5


def test_config_round_trip_and_validation():
    config = AudioFrontendConfig(target_frames=512, mean=-5.0, std=4.0, high_freq_hz=7600.0)
    assert AudioFrontendConfig.from_dict(config.to_dict()) == config
    assert config.window_length == 400 and config.window_shift == 160
    with pytest.raises(ValueError, match="unknown key 'num_mels'"):
        AudioFrontendConfig.from_dict({"num_mels": 64})
    with pytest.raises(ValueError, match="Nyquist"):
        AudioFrontendConfig(high_freq_hz=9000.0)
    with pytest.raises(ValueError, match="std"):
        AudioFrontendConfig(std=0.0)


def test_compute_fbank_stats_over_all_values():
    generator = torch.Generator().manual_seed(5)
    waveforms = [0.2 * torch.randn(n, generator=generator) for n in (4000, 8000, 1200)]
    config = AudioFrontendConfig()
    mean, std = compute_fbank_stats(waveforms, config)
    values = torch.cat([fbank_for_config(w, config).flatten() for w in waveforms]).double()
    assert mean == pytest.approx(values.mean().item(), abs=1e-6)
    assert std == pytest.approx(values.std(unbiased=False).item(), abs=1e-5)
    with pytest.raises(ValueError, match="no fbank values"):
        compute_fbank_stats([torch.zeros(10)], config)
