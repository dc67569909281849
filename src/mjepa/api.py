"""Embeddings from a trained MJEPA model in three lines:

    import mjepa
    model = mjepa.load("runs/tiny-cpu/checkpoints/latest.pt")     # or a model directory, or a Hub repo id
    emb = model.encode_audio(waveform, sample_rate=44100)          # -> Embeddings; a list of clips -> a list

Defaults: the **target (EMA) encoder** (the one the paper probes; ``encoder="context"`` for the other), the last
layer after the final norm, mean pooling over tokens that hold signal (padding is never pooled). Inputs longer than
the training clip are cut into consecutive windows of the training length; each window gets its own embedding and
``Embeddings.mean`` averages them weighted by the tokens that hold signal. Windows of all the clips of a call run
through the encoder together, ``batch_size`` at a time. Preprocessing (sample rate, fbank settings and statistics,
frame rate, crop) comes from the checkpoint, so it cannot be mismatched. Accepted inputs: :mod:`mjepa.embedding_inputs`.

Audio token layout: each window of ``target_frames`` fbank frames (1024 at 10 ms: 10.24 s) becomes a time-major
grid of ``target_frames / audio_patch_time`` time steps x ``num_mel_bins / audio_patch_freq`` frequency patches
(64 x 8 by default), so a time step covers ``audio_hop_ms`` (160 ms). ``timestamps=True`` averages each time step's
frequency patches into one frame embedding, stamped at the centre of its span.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mjepa.data.media.info import MediaError
from mjepa.embedding_inputs import VideoFile, audio_clips, decode_audio_file, path_list, video_clips
from mjepa.embedding_windows import AudioSource, ClipWindows, VideoSource, resample
from mjepa.grids import audio_tokens_holding_signal
from mjepa.models.encoder import MultimodalEncoder
from mjepa.packaging import (
    PARTS,
    SHIPPED_MODELS,
    LoadedModel,
    download_from_hub,
    is_model_dir,
    load_model_dir,
    resolve_model_path,
    save_model_dir,
)


@dataclass
class Embeddings:
    """One clip's embeddings. With several ``layers``, a layer axis follows the window axis."""

    pooled: torch.Tensor  # (windows, D) or (windows, layers, D): one embedding per window
    tokens: torch.Tensor | None  # (windows, T, D) or (windows, layers, T, D) when tokens were asked for
    window_starts: list[float]  # seconds
    valid_tokens: torch.Tensor  # (windows, T) bool: tokens that hold signal
    frames: torch.Tensor | None = None  # timestamps=True: (N, D) or (N, layers, D) audio frame embeddings
    frame_times: torch.Tensor | None = None  # (N,) seconds: the centre of each frame's span

    @property
    def mean(self) -> torch.Tensor:
        """(D,) or (layers, D): the average over windows, each weighted by its tokens that hold signal (a nearly
        empty last window counts for little)."""
        counts = self.valid_tokens.sum(1).float()
        weights = (counts / counts.sum().clamp_min(1.0)).to(self.pooled.device)
        weights = weights.view(-1, *([1] * (self.pooled.dim() - 1)))
        return (self.pooled.float() * weights).sum(0).to(self.pooled.dtype)


class MJEPAModel(nn.Module):
    """A trained MJEPA model with its preprocessing, for embedding audio, video and both.

    An ``nn.Module``: ``.to(device)``, ``.to(torch.bfloat16)``, ``.eval()`` work as usual; outputs come back on the
    model's device in its dtype."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.model = loaded.model.eval()
        self.frontend = loaded.frontend
        self.clip = loaded.frontend.clip
        self.audio_config = loaded.frontend.audio
        self.video_config = loaded.frontend.video
        self.run_config, self.step, self.parts = loaded.config, loaded.step, loaded.parts
        self._saved_run_config = loaded.saved_run_config()

    @property
    def config(self) -> dict:
        """What the model was saved with: ``{"pretrain": run config or None, "step": int, "parts": str}``."""
        return {"pretrain": self._saved_run_config, "step": self.step, "parts": self.parts}

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> MJEPAModel:
        """A shipped model's name (``"mjepa-tiny"``, in the package: no download), a model directory
        (``save_pretrained``), a training checkpoint (``.pt``), or a Hub repository id; moved to ``device`` and cast
        to ``dtype`` when given."""
        path = resolve_model_path(path_or_repo)
        if path.is_file():
            from mjepa.eval.loading import load_model

            instance = cls(load_model(path))
        else:
            if not is_model_dir(path):
                if path.exists() or str(path_or_repo).count("/") != 1:
                    raise ValueError(
                        f"{path_or_repo!r} is neither a shipped model ({', '.join(SHIPPED_MODELS)}), "
                        "an mjepa checkpoint, a model directory nor a Hub id"
                    )
                path = download_from_hub(str(path_or_repo), revision)
            instance = cls(load_model_dir(path))
        return instance.to(device=device, dtype=dtype) if device is not None or dtype is not None else instance

    def save_pretrained(self, directory: str | Path, parts: str = "all", dtype: torch.dtype | None = None) -> Path:
        """A model directory: ``parts="all"`` (every part, to resume research from) or ``"target"`` (the target
        encoder only: what embedding needs, about a third of the size); ``dtype`` casts the stored weights."""
        if parts == "all" and self.parts == "target":
            raise ValueError("this model holds only its target encoder; save it with parts='target'")
        return save_model_dir(
            directory, self.model, self.frontend, self._saved_run_config, self.step, parts=parts, dtype=dtype
        )

    def push_to_hub(
        self,
        repo_id: str,
        parts: str = "target",
        dtype: torch.dtype | None = None,
        private: bool = False,
        token: str | None = None,
    ) -> str:
        """Upload a model directory to the Hugging Face Hub (needs ``pip install 'mjepa[hub]'``); returns the URL
        of the commit. Loading it back: ``mjepa.load(repo_id)``."""
        import tempfile

        try:
            from huggingface_hub import HfApi
        except ImportError:
            raise ImportError("push_to_hub needs huggingface_hub (pip install 'mjepa[hub]')") from None
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, parts=parts, dtype=dtype)
            info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="mjepa save_pretrained")
        return str(getattr(info, "commit_url", info))

    # -- properties ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def sample_rate(self) -> int:
        return self.audio_config.sample_rate

    @property
    def embedding_dim(self) -> int:
        return self.model.config.encoder.width

    @property
    def audio_hop_ms(self) -> float:
        """Milliseconds of audio per time step of the token grid (160 with the default front end)."""
        steps, _ = self._audio_grid()
        return self.audio_config.target_frames // steps * self.audio_config.frame_shift_ms

    def forward(self, *args, **kwargs):
        raise TypeError("call encode_audio, encode_video or encode_av")

    # -- audio -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_audio(
        self,
        audio,
        sample_rate: int | None = None,
        pooled: bool = True,
        layer: int | list[int] = -1,
        encoder: str = "target",
        batch_size: int = 8,
        timestamps: bool = False,
        timestamp_hop_ms: float | None = None,
        batch: bool = False,
        channels_first: bool | None = None,
    ):
        """Embeddings of one clip (-> :class:`Embeddings`) or several (a list of any lengths, a ``(clips, samples)``
        array with ``batch=True``, or file paths -> a list, in order). A 2-D array without ``batch`` is one clip with
        channels, ``(channels, samples)`` or ``(samples, channels)`` (``channels_first`` settles an ambiguous shape;
        :mod:`mjepa.embedding_inputs` gives the rule). ``timestamps=True`` adds frame-level embeddings with their
        times, never past the end of the audio: one per time step of the token grid (``audio_hop_ms``), or with
        ``timestamp_hop_ms`` one every that many milliseconds (at hop/2, 3 hop/2, ...), interpolated linearly
        between the time steps' embeddings. ``layer``: a block index (-1, the default, is the last; every block's
        output goes through the final norm), or a list of them."""
        if timestamp_hop_ms is not None and not timestamp_hop_ms > 0:
            raise ValueError(f"timestamp_hop_ms must be a positive number of milliseconds, got {timestamp_hop_ms!r}")
        clips = audio_clips(
            audio, sample_rate, self.sample_rate, self.audio_config.frame_length_ms / 1000.0, batch, channels_first
        )
        windows = [self._audio_windows(w, clips.sample_rate) for w in clips.waveforms]
        hop = timestamp_hop_ms if timestamps else None
        results = self._encode("A", windows, layer, encoder, batch_size, pooled, timestamps, hop)
        return results[0] if clips.single else results

    def _audio_source(self, waveform: np.ndarray, sample_rate: int, start_frames: list[int] | None = None):
        mono = resample(waveform, int(sample_rate), self.audio_config.sample_rate)
        return AudioSource(mono, self.audio_config, start_frames)

    def _audio_windows(self, waveform: np.ndarray, sample_rate: int) -> ClipWindows:
        cfg = self.audio_config
        source = self._audio_source(waveform, sample_rate)
        starts = [start * cfg.frame_shift_ms / 1000.0 for start in source.start_frames]
        return ClipWindows(starts, audio=source, duration=len(waveform) / sample_rate)

    # -- video -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_video(
        self,
        video,
        fps: float | None = None,
        pooled: bool = True,
        layer: int | list[int] = -1,
        encoder: str = "target",
        batch_size: int = 8,
    ):
        """Embeddings of RGB frames ``(time, height, width, 3)`` uint8 decoded at ``fps``, of a list or batch of
        them, or of video files (decoded at the model's frame rate)."""
        clips = video_clips(video, fps, self.clip, self.video_config.eval_short_side)
        windows = [self._video_windows(frames, clips.fps) for frames in clips.frames]
        results = self._encode("V", windows, layer, encoder, batch_size, pooled, False)
        return results[0] if clips.single else results

    def _video_source(self, frames: torch.Tensor | VideoFile, fps: float) -> tuple[VideoSource, list[float]]:
        """The clip's video windows (the training clip length each, the last one repeating its last frame past the
        end) as a source that builds them one at a time, and their start times."""
        window = self.clip.window_duration
        duration = frames.duration if isinstance(frames, VideoFile) else frames.shape[0] / fps
        count = max(1, math.ceil(duration / window - 1e-9))
        starts = [w * window for w in range(count)]
        if isinstance(frames, VideoFile):
            return VideoSource(frames, None, starts, self.video_config), starts
        indices = []
        for start in starts:
            times = start + torch.arange(self.clip.num_frames) / self.clip.frames_per_second
            indices.append((times * fps).floor().long().clamp(max=frames.shape[0] - 1))
        return VideoSource(frames, indices, starts, self.video_config), starts

    def _video_windows(self, frames: torch.Tensor, fps: float) -> ClipWindows:
        video, starts = self._video_source(frames, fps)
        return ClipWindows(starts, video=video)

    # -- audio-visual ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_av(
        self,
        audio,
        sample_rate: int | None = None,
        video=None,
        fps: float | None = None,
        pooled: bool = True,
        layer: int | list[int] = -1,
        encoder: str = "target",
        batch_size: int = 8,
    ):
        """Joint ``[video ; audio]`` embeddings of a waveform and its frames (or lists of both), or of video files
        with their sound (``encode_av("clip.mp4")`` or a list of paths). Video windows are the training clip
        length; each is paired with the audio window of the training audio length that starts at the same time
        (training used the full clip audio, so for clips up to that length this is the same input)."""
        paths = path_list(audio)
        if paths is not None:
            # The video is read a window at a time; the sound of each file is decoded once.
            video_clip_set = video_clips([str(p) for p in paths], None, self.clip, self.video_config.eval_short_side)
            audio_input = []
            for path in paths:
                try:
                    audio_input.append(decode_audio_file(path, self.clip.sample_rate))
                except MediaError as err:
                    if err.reason == "no_audio_stream":
                        raise ValueError(f"{path}: the file has no audio stream; use encode_video") from None
                    raise
            single = len(paths) == 1 and not isinstance(audio, (list, tuple))
            audio_clip_set = audio_clips(
                audio_input, self.clip.sample_rate, self.sample_rate, self.audio_config.frame_length_ms / 1000.0
            )
        else:
            if video is None:
                raise ValueError("encode_av needs the video frames too (or video file paths as the first argument)")
            audio_clip_set = audio_clips(
                audio, sample_rate, self.sample_rate, self.audio_config.frame_length_ms / 1000.0
            )
            video_clip_set = video_clips(video, fps, self.clip, self.video_config.eval_short_side)
            single = audio_clip_set.single and video_clip_set.single
        if len(audio_clip_set.waveforms) != len(video_clip_set.frames):
            raise ValueError(
                f"encode_av got {len(audio_clip_set.waveforms)} audio clips and {len(video_clip_set.frames)} videos"
            )
        windows = [
            self._av_windows(w, audio_clip_set.sample_rate, frames, video_clip_set.fps)
            for w, frames in zip(audio_clip_set.waveforms, video_clip_set.frames)
        ]
        results = self._encode("AV", windows, layer, encoder, batch_size, pooled, False)
        return results[0] if single else results

    def _av_windows(self, waveform: np.ndarray, sample_rate: int, frames: torch.Tensor, fps: float) -> ClipWindows:
        video, starts = self._video_source(frames, fps)
        frames_per_second = 1000.0 / self.audio_config.frame_shift_ms
        start_frames = [int(round(start * frames_per_second)) for start in starts]
        return ClipWindows(starts, audio=self._audio_source(waveform, sample_rate, start_frames), video=video)

    # -- shared ----------------------------------------------------------------------------------------------
    def _layers(self, layer: int | list[int]) -> list[int]:
        """Block indices, negative ones counted from the end (-1 = the last block); every block's output is
        normalised by the encoder's final norm, so -1 is the default output."""
        depth = self.model.config.encoder.depth
        layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
        if not layers:
            raise ValueError("layer=[] asks for no layer")
        for value in layers:
            if isinstance(value, bool) or not isinstance(value, int) or not -depth <= value < depth:
                raise ValueError(
                    f"layer {value!r} is outside this {depth}-block encoder: use 0..{depth - 1}, or "
                    f"-1..-{depth} counting from the last"
                )
        return [value % depth for value in layers]

    def _encoder(self, mode: str, encoder: str) -> MultimodalEncoder:
        if encoder != "target" and self.parts == "target":
            raise ValueError(f"encoder={encoder!r}: this model holds only its target encoder")
        return self.model.frozen_encoder(mode, encoder)

    def _encode(
        self,
        mode: str,
        clips: list[ClipWindows],
        layer,
        encoder: str,
        batch_size: int,
        pooled_only: bool,
        timestamps: bool,
        timestamp_hop_ms: float | None = None,
    ) -> list[Embeddings]:
        """All the clips' windows through the encoder ``batch_size`` at a time, split back into each clip's
        embeddings. Windows are built for their batch only and each window's tokens are reduced at once to what is
        asked for (pooled vectors, time steps, the tokens themselves), so memory stays that of one batch plus the
        outputs, however long the inputs."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        layers = self._layers(layer)
        net = self._encoder(mode, encoder)
        order = [(c, w) for c, clip in enumerate(clips) for w in range(clip.count)]
        kept: list[dict[str, list]] = [{"pooled": [], "steps": [], "tokens": []} for _ in clips]
        masks: dict[int, torch.Tensor] = {}
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            audio = _stack([clips[c].audio.window(w) for c, w in part]) if clips[0].audio is not None else None
            video = _stack([clips[c].video.window(w) for c, w in part]) if clips[0].video is not None else None
            tokens = self._run(
                net, mode, _to(audio, self.device, self.dtype), _to(video, self.device, self.dtype), layers
            )  # (batch, layers, T, D)
            for row, (c, w) in enumerate(part):
                if c not in masks:
                    masks[c] = self._token_mask(clips[c], mode, tokens.shape[2])
                window_tokens = tokens[row]
                weights = masks[c][w].to(window_tokens.device, torch.float32)[None, :, None]
                pooled = (window_tokens.float() * weights).sum(1) / weights.sum(1).clamp_min(1.0)
                kept[c]["pooled"].append(pooled.to(window_tokens.dtype))
                if timestamps:
                    kept[c]["steps"].append(self._time_steps(window_tokens))
                if not pooled_only:
                    kept[c]["tokens"].append(window_tokens)
        return [
            self._embeddings(kept[c], masks[c], clip, len(layers) > 1, timestamps, timestamp_hop_ms)
            for c, clip in enumerate(clips)
        ]

    def _run(self, net: MultimodalEncoder, mode: str, audio, video, layers: list[int]) -> torch.Tensor:
        last = self.model.config.encoder.depth - 1
        blocks = tuple(sorted({value for value in layers if value != last}))
        out = net(mode, audio, video, collect_layers=blocks)
        by_block = dict(zip(blocks, out.layers))
        return torch.stack([out.tokens if value == last else by_block[value] for value in layers], dim=1)

    def _token_mask(self, clip: ClipWindows, mode: str, num_tokens: int) -> torch.Tensor:
        if clip.valid_frames is None:
            return torch.ones(clip.count, num_tokens, dtype=torch.bool)
        shape = (1, self.audio_config.target_frames, self.audio_config.num_mel_bins)
        grid = self.model.token_grids(shape, None)[0]
        audio_mask = audio_tokens_holding_signal(clip.valid_frames, grid, self.audio_config.target_frames)
        video = torch.ones(clip.count, num_tokens - grid.num_tokens, dtype=torch.bool)
        return torch.cat([video, audio_mask], dim=1)  # the AV sequence is [video ; audio]

    def _audio_grid(self) -> tuple[int, int]:
        """(time steps, frequency patches) of one audio window, as the tokenizer cuts it."""
        shape = (1, self.audio_config.target_frames, self.audio_config.num_mel_bins)
        grid = self.model.token_grids(shape, None)[0]
        return grid.time, grid.height

    def _time_steps(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(layers, steps, D)`` float32: an audio window's tokens ``(layers, T, D)`` with each time step's frequency
        patches averaged."""
        steps, _ = self._audio_grid()
        n_layers, t, d = tokens.shape
        return tokens.float().view(n_layers, steps, t // steps, d).mean(2)

    def _embeddings(
        self,
        kept: dict[str, list],
        mask: torch.Tensor,
        clip: ClipWindows,
        several_layers: bool,
        timestamps: bool,
        timestamp_hop_ms: float | None = None,
    ) -> Embeddings:
        """One clip's embeddings from what its windows kept: pooled over the tokens that hold signal (in float32,
        returned in the model's dtype), its time steps' frames, and its tokens when asked for."""
        pooled = torch.stack(kept["pooled"])  # (W, layers, D)
        tokens = torch.stack(kept["tokens"]) if kept["tokens"] else None
        frames = frame_times = None
        if timestamps:
            frames, frame_times = self._frame_embeddings(torch.stack(kept["steps"]), clip, timestamp_hop_ms)
            frames = frames.to(pooled.dtype)
            frames = frames if several_layers else frames[:, 0]
        if not several_layers:
            pooled = pooled[:, 0]
            tokens = None if tokens is None else tokens[:, 0]
        return Embeddings(pooled, tokens, clip.starts, mask, frames, frame_times)

    def _frame_embeddings(
        self, per_step: torch.Tensor, clip: ClipWindows, hop_ms: float | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, layers, D) audio frame embeddings and their times in seconds, none past the end of the audio.

        A time step's embedding is its frequency patches averaged, placed at the centre of the step's span. Without
        ``hop_ms`` those are the frames (a last step centred past the end of the audio is left out); with it, frames
        sit every ``hop_ms`` from ``hop_ms / 2`` to the end, interpolated linearly between the steps around them."""
        steps, _ = self._audio_grid()
        patch_time = self.audio_config.target_frames // steps
        w = per_step.shape[0]  # (W, layers, steps, D) float32
        step_s = self.audio_hop_ms / 1000.0
        frames, centres = [], []
        for index in range(w):
            kept = max(1, int(math.ceil(int(clip.valid_frames[index]) / patch_time)))
            frames.append(per_step[index, :, :kept].transpose(0, 1))
            centres.append(clip.starts[index] + (torch.arange(kept, dtype=torch.float64) + 0.5) * step_s)
        frames, centres = torch.cat(frames), torch.cat(centres)
        duration = float(clip.duration) if clip.duration is not None else float(centres[-1] + step_s / 2)
        if hop_ms is None:
            inside = centres <= duration + 1e-9
            inside[0] = True  # a clip shorter than half a step still gets its one frame
            return frames[inside], centres[inside]
        times = _even_times(duration, hop_ms / 1000.0)
        return _interpolate(frames, centres, times), times


def _even_times(duration: float, hop: float) -> torch.Tensor:
    """``hop/2, 3 hop/2, ...`` up to ``duration`` (seconds, float64): evenly spaced, the last within a hop of the
    end and never past it; one time, at the middle, for audio shorter than half a hop."""
    count = int(math.floor(duration / hop + 0.5 + 1e-6))
    times = (torch.arange(max(count, 0), dtype=torch.float64) + 0.5) * hop
    times = times[times <= duration + 1e-9]  # rounding never puts the last one past the end
    return times if times.numel() else torch.tensor([duration / 2.0], dtype=torch.float64)


def _interpolate(values: torch.Tensor, at: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Rows of ``values`` (known at increasing ``at``) linearly interpolated at ``times``, held constant outside."""
    right = torch.searchsorted(at, times).clamp(max=len(at) - 1)
    left = (right - 1).clamp(min=0)
    span = (at[right] - at[left]).clamp_min(1e-12)
    weight = ((times - at[left]) / span).clamp(0.0, 1.0)
    weight = torch.where(right == left, torch.zeros_like(weight), weight).to(values.dtype)
    shape = (-1,) + (1,) * (values.dim() - 1)
    return values[left] * (1 - weight.view(shape)) + values[right] * weight.view(shape)


def _stack(windows: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(windows)


def _to(tensor: torch.Tensor | None, device, dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device, dtype)


def load(
    path_or_repo: str,
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> MJEPAModel:
    """A trained model from a shipped model's name (``"mjepa-tiny"``), a model directory, a training checkpoint
    (``.pt``) or a Hugging Face Hub id, on ``device`` in ``dtype`` when given."""
    return MJEPAModel.from_pretrained(path_or_repo, revision, device=device, dtype=dtype)


__all__ = ["Embeddings", "MJEPAModel", "PARTS", "load", "resample"]
