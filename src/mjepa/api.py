"""Embeddings from a trained MJEPA model in three lines:

    import mjepa
    model = mjepa.load("runs/tiny-cpu/checkpoints/latest.pt")     # or a model directory, or a Hub repo id
    emb = model.encode_audio(waveform, sample_rate=44100)          # -> Embeddings

Defaults: the **target (EMA) encoder** (the one the paper probes; ``encoder="context"`` for the other), the last
layer after the final norm, mean pooling over tokens that hold signal (padding is never pooled). Inputs longer than
the training clip are cut into consecutive windows of the training length; each window gets its own embedding and
``Embeddings.mean`` averages them. Preprocessing (sample rate, fbank settings and statistics, frame rate, crop) comes
from the checkpoint, so it cannot be mismatched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mjepa.data.decode import ClipSpec
from mjepa.data.fbank import AudioFrontendConfig, fbank_for_config, normalize_fbank, pad_or_trim
from mjepa.data.video_transforms import VideoTransformConfig, eval_video_transform
from mjepa.models.encoder import MultimodalEncoder
from mjepa.models.mjepa import MJEPA
from mjepa.packaging import download_from_hub, is_model_dir, load_model_dir, save_model_dir

@dataclass
class Embeddings:
    pooled: torch.Tensor  # (windows, D): one embedding per window
    tokens: torch.Tensor | None  # (windows, T, D) when tokens were asked for
    window_starts: list[float]  # seconds
    valid_tokens: torch.Tensor  # (windows, T) bool: tokens that hold signal

    @property
    def mean(self) -> torch.Tensor:
        """(D,) the average over windows."""
        return self.pooled.mean(dim=0)


def resample(waveform: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling with FFmpeg's resampler (through PyAV), mono float32."""
    if sample_rate == target_rate:
        return waveform.astype(np.float32)
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
    frame = av.AudioFrame.from_ndarray(waveform.astype(np.float32)[None, :], format="flt", layout="mono")
    frame.sample_rate = sample_rate
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _as_mono(waveform) -> np.ndarray:
    array = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if array.ndim == 2:  # (channels, samples)
        array = array.mean(axis=0)
    if array.ndim != 1:
        raise ValueError(f"waveform must be (samples,) or (channels, samples), got shape {array.shape}")
    return array.astype(np.float32)


class MJEPAModel:
    """A trained MJEPA model with its preprocessing, for embedding audio, video and both."""

    def __init__(self, model: MJEPA, frontend: dict, config: dict) -> None:
        self.model = model.eval()
        self.clip = ClipSpec.from_dict(frontend["clip"])
        self.audio_config = AudioFrontendConfig.from_dict(frontend["audio"])
        self.video_config = VideoTransformConfig.from_dict(frontend["video"])
        self.frontend = frontend
        self.config = config
        self.device = torch.device("cpu")

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_repo: str, revision: str | None = None) -> "MJEPAModel":
        """A model directory (``save_pretrained``), a training checkpoint (``.pt``), or a Hub repository id."""
        path = Path(path_or_repo)
        if path.is_file():
            from mjepa.eval.loading import load_model

            from mjepa.typed_config import to_dict

            loaded = load_model(path)
            config = {"pretrain": to_dict(loaded.config), "step": loaded.step}
            return cls(loaded.model, loaded.frontend.to_dict(), config)
        if not is_model_dir(path):
            if path.exists() or path_or_repo.count("/") != 1:
                raise ValueError(f"{path_or_repo!r} is neither an mjepa checkpoint, a model directory nor a Hub id")
            path = download_from_hub(path_or_repo, revision)
        model, frontend, config = load_model_dir(path)
        return cls(model, frontend, config)

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_model_dir(directory, self.model, self.frontend, self.config.get("pretrain"),
                              int(self.config.get("step", 0)))

    def to(self, device: str | torch.device) -> "MJEPAModel":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def _encoder(self, mode: str, encoder: str) -> MultimodalEncoder:
        return self.model.frozen_encoder(mode, encoder)

    # -- audio -----------------------------------------------------------------------------------------------
    def _audio_windows(self, waveform, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """(windows, frames, bins) normalised log-mel, valid frames per window, window start times."""
        cfg = self.audio_config
        mono = resample(_as_mono(waveform), int(sample_rate), cfg.sample_rate)
        fbank = fbank_for_config(torch.from_numpy(mono), cfg)
        frames = cfg.target_frames
        count = max(1, math.ceil(fbank.shape[0] / frames))
        padded = pad_or_trim(fbank, count * frames)
        windows = normalize_fbank(padded, cfg.mean, cfg.std).view(count, frames, -1)
        valid = torch.tensor([min(frames, max(0, fbank.shape[0] - i * frames)) for i in range(count)])
        starts = [i * frames * cfg.frame_shift_ms / 1000.0 for i in range(count)]
        return windows, valid, starts

    def _audio_token_mask(self, valid_frames: torch.Tensor, num_tokens: int) -> torch.Tensor:
        patch_time = self.model.config.encoder.audio_patch_time
        freq_tokens = num_tokens // (self.audio_config.target_frames // patch_time)
        time_index = torch.arange(num_tokens) // freq_tokens
        return (time_index.unsqueeze(0) * patch_time) < valid_frames.unsqueeze(1)

    @torch.no_grad()
    def encode_audio(self, waveform, sample_rate: int, pooled: bool = True, layer: int = -1,
                     encoder: str = "target") -> Embeddings:
        """Embeddings of a waveform ``(samples,)`` or ``(channels, samples)`` at ``sample_rate``."""
        windows, valid, starts = self._audio_windows(waveform, sample_rate)
        tokens = self._run(self._encoder("A", encoder), "A", windows, None, layer)
        mask = self._audio_token_mask(valid, tokens.shape[1])
        return _embeddings(tokens, mask, starts, pooled)

    # -- video -----------------------------------------------------------------------------------------------
    def _video_windows(self, frames, fps: float) -> tuple[torch.Tensor, list[float]]:
        frames = torch.as_tensor(frames)
        if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 (time, height, width, 3), got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        duration = frames.shape[0] / fps
        window = self.clip.window_duration
        count = max(1, math.ceil(duration / window - 1e-9))
        out, starts = [], []
        for w in range(count):
            start = w * window
            times = start + torch.arange(self.clip.num_frames) / self.clip.frames_per_second
            index = (times * fps).floor().long().clamp(max=frames.shape[0] - 1)  # repeats the last frame at the end
            out.append(eval_video_transform(frames[index], self.video_config))
            starts.append(start)
        return torch.stack(out), starts

    @torch.no_grad()
    def encode_video(self, frames, fps: float, pooled: bool = True, layer: int = -1,
                     encoder: str = "target") -> Embeddings:
        """Embeddings of RGB frames ``(time, height, width, 3)`` uint8 decoded at ``fps``."""
        video, starts = self._video_windows(frames, fps)
        tokens = self._run(self._encoder("V", encoder), "V", None, video, layer)
        return _embeddings(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool), starts, pooled)

    # -- audio-visual ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_av(self, waveform, sample_rate: int, frames, fps: float, pooled: bool = True, layer: int = -1,
                  encoder: str = "target") -> Embeddings:
        """Joint ``[video ; audio]`` embeddings. Video windows are the training clip length; each is paired with
        the audio window of the training audio length that starts at the same time (training used the full clip
        audio, so for clips up to that length this is the same input)."""
        video, starts = self._video_windows(frames, fps)
        cfg = self.audio_config
        mono = resample(_as_mono(waveform), int(sample_rate), cfg.sample_rate)
        fbank = fbank_for_config(torch.from_numpy(mono), cfg)
        frames_per_second = 1000.0 / cfg.frame_shift_ms
        audio, valid = [], []
        for start in starts:
            first = int(round(start * frames_per_second))
            piece = fbank[first:first + cfg.target_frames]
            valid.append(piece.shape[0])
            audio.append(normalize_fbank(pad_or_trim(piece, cfg.target_frames), cfg.mean, cfg.std))
        tokens = self._run(self._encoder("AV", encoder), "AV", torch.stack(audio), video, layer)
        num_video = tokens.shape[1] - self._audio_tokens()
        audio_mask = self._audio_token_mask(torch.tensor(valid), self._audio_tokens())
        mask = torch.cat([torch.ones(len(starts), num_video, dtype=torch.bool), audio_mask], dim=1)
        return _embeddings(tokens, mask, starts, pooled)

    def _audio_tokens(self) -> int:
        enc = self.model.config.encoder
        return (self.audio_config.target_frames // enc.audio_patch_time) * (
            self.audio_config.num_mel_bins // enc.audio_patch_freq)

    def _run(self, encoder: MultimodalEncoder, mode: str, audio, video, layer: int) -> torch.Tensor:
        move = lambda t: None if t is None else t.to(self.device)  # noqa: E731
        out = encoder(mode, move(audio), move(video), collect_layers=() if layer == -1 else (layer,))
        return (out.tokens if layer == -1 else out.layers[0]).float().cpu()


def _embeddings(tokens: torch.Tensor, mask: torch.Tensor, starts: list[float], pooled_only: bool) -> Embeddings:
    """Mean over the tokens that hold signal; the tokens themselves too unless only pooled output was asked for."""
    weights = mask.float().unsqueeze(-1)
    pooled = (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    return Embeddings(pooled, None if pooled_only else tokens, starts, mask)


def load(path_or_repo: str, revision: str | None = None) -> MJEPAModel:
    """A trained model from a model directory, a training checkpoint (``.pt``) or a Hugging Face Hub id."""
    return MJEPAModel.from_pretrained(path_or_repo, revision)
