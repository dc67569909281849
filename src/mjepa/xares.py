"""An X-ARES audio encoder (``xares``'s encoder interface) for an mjepa model.

    from mjepa.xares import MJEPAEncoder
    encoder = MJEPAEncoder("path/to/model_dir")
    frames = encoder(audio)          # audio: (batch, samples) float at 16 kHz -> (batch, frames, D)

X-ARES looks for an ``nn.Module`` whose class name ends in ``Encoder`` with ``sampling_rate``, ``output_dim`` and
``hop_size_in_ms``, whose ``forward`` maps ``(B, T)`` audio to ``(B, T', D)`` frame embeddings. Inputs of any length
(X-ARES feeds up to 10 minutes) are cut into the model's windows, which run ``batch_size`` at a time, so memory does
not grow with the input. Frames are the token grid's time steps (160 ms by default), frequency patches averaged.
"""

from __future__ import annotations

import torch
from torch import nn

from mjepa.api import MJEPAModel, load


class MJEPAEncoder(nn.Module):
    def __init__(
        self, model_path: str | None = None, model: MJEPAModel | None = None, batch_size: int = 8, layer: int = -1
    ) -> None:
        super().__init__()
        if (model_path is None) == (model is None):
            raise ValueError("MJEPAEncoder needs either model_path or model")
        self.model = model if model is not None else load(model_path)
        self.sampling_rate = self.model.sample_rate
        self.output_dim = self.model.embedding_dim
        self.hop_size_in_ms = self.model.audio_hop_ms
        self.batch_size, self.layer = batch_size, layer

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, audio_attention_mask: torch.Tensor | int | None = None) -> torch.Tensor:
        """``(B, T)`` (or ``(T,)``) audio at ``sampling_rate`` -> ``(B, T', output_dim)``; with a ``(B, T)``
        attention mask (1 = sample), each row is cut to its samples and the shorter rows' frames padded with
        zeros. X-ARES's encoder checker passes the sample rate in that place instead: it must be ours."""
        if isinstance(audio_attention_mask, int):
            if audio_attention_mask != self.sampling_rate:
                raise ValueError(f"audio at {audio_attention_mask} Hz; this encoder takes {self.sampling_rate} Hz")
            audio_attention_mask = None
        audio = torch.as_tensor(audio)
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        if audio.dim() != 2:
            raise ValueError(f"audio must be (batch, samples), got shape {tuple(audio.shape)}")
        rows = list(audio.float())
        if audio_attention_mask is not None:
            rows = [row[: int(mask.sum())] for row, mask in zip(rows, audio_attention_mask)]
        results = self.model.encode_audio(
            rows, self.sampling_rate, layer=self.layer, batch_size=self.batch_size, timestamps=True
        )
        length = max(r.frames.shape[0] for r in results)
        out = torch.zeros(
            len(results), length, self.output_dim, dtype=results[0].frames.dtype, device=results[0].frames.device
        )
        for index, result in enumerate(results):
            out[index, : result.frames.shape[0]] = result.frames
        return out
