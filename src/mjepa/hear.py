"""The HEAR benchmark's model API (hear-eval-kit) for an mjepa model.

    from mjepa import hear
    model = hear.load_model("path/to/model_dir")        # a model folder, a checkpoint or a Hub id
    scene = hear.get_scene_embeddings(audio, model)      # audio: (n_sounds, n_samples) float32 at model.sample_rate
    emb, times = hear.get_timestamp_embeddings(audio, model)

Scene embeddings are each sound's mean embedding (the target encoder's last layer, pooled over the tokens that hold
sound, windows weighted by them): ``(n_sounds, D)``. Timestamp embeddings are one per time step of the token grid,
its frequency patches averaged and interpolated linearly between step centres: ``(n_sounds, T, D)`` every
``timestamp_hop_ms`` (50 ms by default, HEAR's suggested bound), from hop/2 to the end of the audio and never past it
(the final validator's rules, tested over many lengths). hear-eval-kit runs it with
``python -m heareval.embeddings.runner mjepa.hear --model PATH``.
"""

from __future__ import annotations

import torch

from mjepa.api import MJEPAModel, load

# HEAR suggests at most 50 ms between timestamps (its onset tolerance for transcription tasks).
HEAR_TIMESTAMP_HOP_MS = 50.0


def load_model(
    model_file_path: str = "",
    device: str | None = None,
    batch_size: int = 8,
    timestamp_hop_ms: float = HEAR_TIMESTAMP_HOP_MS,
) -> MJEPAModel:
    """The model, with HEAR's attributes: ``sample_rate``, ``scene_embedding_size``, ``timestamp_embedding_size``;
    its timestamp embeddings come every ``timestamp_hop_ms``."""
    if not model_file_path:
        raise ValueError("mjepa.hear.load_model needs model_file_path: a model folder, a checkpoint or a Hub id")
    model = load(model_file_path, device=device)
    model.scene_embedding_size = model.embedding_dim
    model.timestamp_embedding_size = model.embedding_dim
    model.hear_batch_size = batch_size
    model.hear_timestamp_hop_ms = timestamp_hop_ms
    return model


def _sounds(audio: torch.Tensor) -> torch.Tensor:
    audio = torch.as_tensor(audio)
    if audio.dim() != 2:
        raise ValueError(f"HEAR audio must be (n_sounds, n_samples), got shape {tuple(audio.shape)}")
    return audio.float()


def get_scene_embeddings(audio: torch.Tensor, model: MJEPAModel) -> torch.Tensor:
    """``(n_sounds, D)`` float32 on the model's device."""
    results = model.encode_audio(
        list(_sounds(audio)), model.sample_rate, batch_size=getattr(model, "hear_batch_size", 8)
    )
    return torch.stack([r.mean for r in results]).float()


def get_timestamp_embeddings(audio: torch.Tensor, model: MJEPAModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_sounds, T, D)`` float32 embeddings and ``(n_sounds, T)`` timestamps in milliseconds."""
    results = model.encode_audio(
        list(_sounds(audio)),
        model.sample_rate,
        timestamps=True,
        batch_size=getattr(model, "hear_batch_size", 8),
        timestamp_hop_ms=getattr(model, "hear_timestamp_hop_ms", HEAR_TIMESTAMP_HOP_MS),
    )
    embeddings = torch.stack([r.frames for r in results]).float()
    times = torch.stack([r.frame_times for r in results]).to(embeddings.device, torch.float32) * 1000.0
    return embeddings, times
