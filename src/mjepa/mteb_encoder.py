"""An mjepa model as an mteb encoder (audio and video tasks), with its ``ModelMeta``.

    import mteb
    from mjepa.mteb_encoder import model_meta
    meta = model_meta("path/to/model_dir")                 # a model folder, a checkpoint or a Hub id
    model = meta.load_model()
    results = mteb.evaluate(model, mteb.get_tasks(tasks=["ESC50"]))

Needs ``pip install mteb`` (it installs beside the CPU or CUDA torch you have). mjepa decodes and resamples audio and
video with its own FFmpeg-based decoder, so ``meta.load_model()`` asks for none of mteb's audio or video extras
(torchaudio, torchcodec; mteb's hosted datasets may still need them to be read). ``encode`` returns one ``(N, D)``
float32 array: each item's mean embedding (target encoder, last layer, pooled over the tokens that hold signal).
Rows with audio and video use the joint audio-visual input; audio-only and video-only rows use their own mode.
Audio is resampled by mjepa's own resampler (FFmpeg's), so mteb's torchaudio-based collator is not needed.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder

from mjepa.api import MJEPAModel, load


def _rows(batch: list[dict]) -> dict[str, list]:
    """Collate as plain lists: decoding and resampling happen in :meth:`MJEPAMtebEncoder.encode`."""
    return {key: [row.get(key) for row in batch] for key in batch[0]}


class MJEPAModelMeta(ModelMeta):
    """mteb's ``ModelMeta`` without the torchaudio / torchcodec requirement it derives from the modalities: mjepa
    decodes and resamples with FFmpeg itself."""

    def _resolve_extras_groups(self) -> list[str]:
        return list(self.extra_requirements_groups or [])


class MJEPAMtebEncoder(AbsEncoder):
    def __init__(
        self,
        model_name: str,
        revision: str | None = None,
        device: str | None = None,
        batch_size: int = 8,
        model: MJEPAModel | None = None,
        **kwargs: Any,
    ) -> None:
        self.model = model if model is not None else load(model_name, revision, device=device)
        self.batch_size = batch_size
        # mteb reads what a model can encode from its meta: without one it takes the model for a text encoder.
        self.mteb_model_meta = _meta_for(self.model, model_name, "mjepa/mjepa", revision, ("audio", "video"), {})

    def encode(
        self, inputs, *, task_metadata=None, hf_split: str = "", hf_subset: str = "", prompt_type=None, **kwargs: Any
    ) -> np.ndarray:
        inputs.collate_fn = _rows
        out = []
        for batch in inputs:
            audio, video = batch.get("audio"), batch.get("video")
            for index in range(len(next(iter(batch.values())))):
                clip_audio = None if audio is None else audio[index]
                clip_video = None if video is None else video[index]
                try:
                    out.append(self._embed(clip_audio, clip_video))
                except ValueError as err:  # name the row in the caller's terms, not the clip of one call
                    raise ValueError(f"row {len(out)} of the inputs: {str(err).removeprefix('clip 0: ')}") from None
        return np.stack(out).astype(np.float32)

    def _embed(self, audio: dict | None, video) -> np.ndarray:
        options = dict(batch_size=self.batch_size)
        if video is not None:
            frames = self._frames(video)
            fps = self.model.clip.frames_per_second
            if audio is not None:
                emb = self.model.encode_av(
                    np.asarray(audio["array"]), int(audio["sampling_rate"]), frames, fps, **options
                )
            else:
                emb = self.model.encode_video(frames, fps, **options)
        elif audio is not None:
            emb = self.model.encode_audio(np.asarray(audio["array"]), int(audio["sampling_rate"]), **options)
        else:
            raise ValueError("an mteb row holds neither audio nor video")
        return emb.mean.float().cpu().numpy()

    def _frames(self, video) -> torch.Tensor:
        """(time, height, width, 3) uint8 at the model's frame rate, from mteb's video decoder or frames."""
        if hasattr(video, "get_frames_at"):  # torchcodec's VideoDecoder, as mteb's datasets give it
            from mteb.models.modality_collators import FramesCollator

            video = FramesCollator.resample_video(video, fps=self.model.clip.frames_per_second)
        frames = torch.as_tensor(np.asarray(video))
        if frames.dim() == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
            frames = frames.permute(0, 2, 3, 1)  # (time, 3, height, width) -> channels last
        return frames.contiguous()


def _load_encoder(
    model_name: str, revision: str | None = None, *, path: str, device: str | None = None, **kwargs: Any
) -> MJEPAMtebEncoder:
    """mteb's loader call, ``loader(name, revision=..., **kwargs)``: ``name`` is the meta's label, ``path`` where
    the weights are."""
    return MJEPAMtebEncoder(path, revision, device=device, **kwargs)


def model_meta(
    path_or_repo: str,
    name: str = "mjepa/mjepa",
    revision: str | None = None,
    modalities: tuple[str, ...] = ("audio", "video"),
    **loader_kwargs: Any,
) -> ModelMeta:
    """The ``ModelMeta`` mteb runs an mjepa model by: ``model_meta(path).load_model()`` gives the encoder."""
    return _meta_for(load(path_or_repo, revision), path_or_repo, name, revision, modalities, loader_kwargs)


def _meta_for(
    model: MJEPAModel, path: str, name: str, revision: str | None, modalities: tuple[str, ...], loader_kwargs: dict
) -> ModelMeta:
    parameters = sum(p.numel() for p in model.model.frozen_encoder("A").parameters())
    return MJEPAModelMeta(
        loader=partial(_load_encoder, path=path, **loader_kwargs),
        name=name,
        revision=revision,
        release_date=None,
        languages=None,
        n_parameters=parameters,
        memory_usage_mb=parameters * 4 / 2**20,
        max_tokens=None,
        embed_dim=model.embedding_dim,
        license="apache-2.0",
        open_weights=True,
        public_training_code="https://github.com/mjepa/mjepa",
        public_training_data=None,
        framework=["PyTorch", "safetensors"],
        similarity_fn_name="cosine",
        use_instructions=False,
        training_datasets=None,
        modalities=list(modalities),
    )
