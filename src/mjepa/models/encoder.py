"""The ViT encoder shared by the three input modes A (audio), V (video) and AV (``[video ; audio]``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mjepa.config import MODES, EncoderConfig
from mjepa.models.positions import Rotary3D, grid_coordinates, sincos_embedding, token_time_scale
from mjepa.models.tokenizers import AudioPatchEmbed, VideoTubeletEmbed
from mjepa.models.vit import BlockStack

AUDIO_ID = 0
VIDEO_ID = 1
TOKENIZED_INPUTS = ("audio", "video")


@dataclass(frozen=True)
class TokenLayout:
    """Where each token of a mode's full sequence sits: coordinates ``(N, 3)`` and modality id ``(N,)``."""

    coords: torch.Tensor
    modality: torch.Tensor
    num_video: int
    num_audio: int

    @property
    def num_tokens(self) -> int:
        return self.num_video + self.num_audio


@dataclass
class EncoderOutput:
    tokens: torch.Tensor  # (B, n, width), after the final norm
    layers: list[torch.Tensor]  # requested intermediate layers, each after the final norm


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (``(B, n)``) of ``x`` (``(B, N, D)``) -> ``(B, n, D)``."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def gather_coords(coords: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Coordinates of the tokens ``index`` (``(B, n)``): from coordinates shared by the batch ``(N, 3)`` or per
    sample ``(B, N, 3)`` -> ``(B, n, 3)``."""
    return coords[index] if coords.dim() == 2 else gather_tokens(coords, index)


def init_vit_weights(module: nn.Module) -> None:
    """Truncated-normal linear/conv weights, zero biases, unit layer norms (the ViT convention)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def rescale_residual_projections(stack: BlockStack) -> None:
    """Shrink each block's residual output projections by ``sqrt(2 * layer)`` so deep stacks start stable."""
    for layer, block in enumerate(stack.blocks, start=1):
        block.attn.proj.weight.data.div_(math.sqrt(2.0 * layer))
        block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * layer))


class MultimodalEncoder(nn.Module):
    """Tokenizers + learned modality embeddings + pre-norm ViT + final norm.

    ``modalities`` limits the tokenizers built (``("audio",)`` for a separate audio-only encoder).
    """

    def __init__(self, config: EncoderConfig, modalities: tuple[str, ...] = TOKENIZED_INPUTS) -> None:
        super().__init__()
        unknown = [m for m in modalities if m not in TOKENIZED_INPUTS]
        if unknown or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {TOKENIZED_INPUTS}, got {modalities}")
        self.config = config
        self.modalities = tuple(modalities)
        self.audio_embed = (
            AudioPatchEmbed(config.width, config.audio_patch_time, config.audio_patch_freq)
            if "audio" in modalities
            else None
        )
        self.video_embed = (
            VideoTubeletEmbed(config.width, config.video_tubelet_time, config.video_patch_size, config.video_channels)
            if "video" in modalities
            else None
        )
        self.modality_embed = nn.Parameter(torch.zeros(len(TOKENIZED_INPUTS), config.width))
        head_dim = config.width // config.num_heads
        self.rope = Rotary3D(head_dim, config.rope_base) if config.position_embedding == "rope" else None
        self.blocks = BlockStack(config.width, config.depth, config.num_heads, config.mlp_ratio)
        self.norm = nn.LayerNorm(config.width, eps=1e-6)
        init_vit_weights(self)
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        rescale_residual_projections(self.blocks)
        # Token layouts per (mode, grids, device): built on the host once, then reused from the device, so a
        # training step neither rebuilds nor copies them. Not state: never saved, rebuilt after loading.
        self._layouts: dict[tuple, TokenLayout] = {}

    @property
    def depth(self) -> int:
        return len(self.blocks.blocks)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        self.blocks.activation_checkpointing = enabled

    # -- token layout -------------------------------------------------------------------------------------------
    def _audio_layout(self, audio_shape: tuple[int, ...]) -> torch.Tensor:
        grid = self.audio_embed.grid(audio_shape)
        cfg = self.config
        scale, offset = token_time_scale(cfg.audio_patch_time, cfg.audio_frame_shift_seconds, cfg.time_unit_seconds)
        return grid_coordinates(grid, scale, offset)

    def _video_layout(self, video_shape: tuple[int, ...]) -> torch.Tensor:
        grid = self.video_embed.grid(video_shape)
        cfg = self.config
        scale, offset = token_time_scale(cfg.video_tubelet_time, 1.0 / cfg.video_fps, cfg.time_unit_seconds)
        return grid_coordinates(grid, scale, offset)

    def layout(
        self,
        mode: str,
        audio_shape: tuple[int, ...] | None,
        video_shape: tuple[int, ...] | None,
        device: torch.device | str | None = None,
    ) -> TokenLayout:
        """Coordinates and modality ids of every token of ``mode`` for inputs of the given shapes, on ``device``
        (the CPU by default); cached per mode, token grids and device."""
        self._check_mode(mode, audio_shape is not None, video_shape is not None)
        device = torch.device("cpu") if device is None else torch.device(device)
        audio_grid = None if "A" not in mode else self.audio_embed.grid(audio_shape)
        video_grid = None if "V" not in mode else self.video_embed.grid(video_shape)
        key = (mode, audio_grid, video_grid, device)
        if key not in self._layouts:
            built = self._build_layout(mode, audio_shape, video_shape)
            self._layouts[key] = TokenLayout(
                built.coords.to(device), built.modality.to(device), built.num_video, built.num_audio
            )
        return self._layouts[key]

    def _build_layout(
        self, mode: str, audio_shape: tuple[int, ...] | None, video_shape: tuple[int, ...] | None
    ) -> TokenLayout:
        parts, ids = [], []
        num_video = num_audio = 0
        if "V" in mode:
            coords = self._video_layout(video_shape)
            parts.append(coords)
            ids.append(torch.full((coords.shape[0],), VIDEO_ID, dtype=torch.long))
            num_video = coords.shape[0]
        if "A" in mode:
            coords = self._audio_layout(audio_shape)
            parts.append(coords)
            ids.append(torch.full((coords.shape[0],), AUDIO_ID, dtype=torch.long))
            num_audio = coords.shape[0]
        return TokenLayout(torch.cat(parts), torch.cat(ids), num_video, num_audio)

    def _check_mode(self, mode: str, has_audio_input: bool, has_video_input: bool) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if "A" in mode and (self.audio_embed is None or not has_audio_input):
            why = "this encoder has no audio tokenizer" if self.audio_embed is None else "no audio input was given"
            raise ValueError(f"mode {mode!r} needs audio: {why}")
        if "V" in mode and (self.video_embed is None or not has_video_input):
            why = "this encoder has no video tokenizer" if self.video_embed is None else "no video input was given"
            raise ValueError(f"mode {mode!r} needs video: {why}")

    # -- forward ------------------------------------------------------------------------------------------------
    def embed(
        self, mode: str, audio: torch.Tensor | None, video: torch.Tensor | None
    ) -> tuple[torch.Tensor, TokenLayout]:
        """All tokens of ``mode`` ``(B, N, width)`` with modality (and, for sin-cos, position) embeddings added."""
        reference = video if video is not None else audio
        layout = self.layout(
            mode,
            None if audio is None else tuple(audio.shape),
            None if video is None else tuple(video.shape),
            None if reference is None else reference.device,
        )
        parts = []
        if "V" in mode:
            parts.append(self.video_embed(video) + self.modality_embed[VIDEO_ID])
        if "A" in mode:
            parts.append(self.audio_embed(audio) + self.modality_embed[AUDIO_ID])
        if mode == "AV" and audio.shape[0] != video.shape[0]:
            raise ValueError(
                f"AV mode needs audio and video of the same batch size, got {audio.shape[0]} and {video.shape[0]}"
            )
        tokens = torch.cat(parts, dim=1)
        if self.rope is None:
            tokens = tokens + sincos_embedding(layout.coords, tokens.shape[-1]).to(tokens.dtype)
        return tokens, layout

    def token_coords(self, layout: TokenLayout, video_offset: torch.Tensor | None) -> torch.Tensor:
        """The coordinates of ``layout``'s tokens: shared by the batch ``(N, 3)``, or, with ``video_offset``
        (``(B,)`` seconds from each sample's first audio sample to its first video frame), per sample
        ``(B, N, 3)`` with the video tokens moved to their place on the audio's time axis. Positions in token
        indices (``time_unit_seconds=None``) have no common clock, so the offset is not used there."""
        unit = self.config.time_unit_seconds
        if video_offset is None or unit is None or layout.num_video == 0:
            return layout.coords
        coords = layout.coords.unsqueeze(0).repeat(video_offset.shape[0], 1, 1)
        # Video tokens come first in every mode that has them ([video ; audio] in AV).
        coords[:, : layout.num_video, 0] += video_offset.to(coords.device, coords.dtype).unsqueeze(1) / unit
        return coords

    def encode_tokens(
        self, tokens: torch.Tensor, coords: torch.Tensor, collect_layers: tuple[int, ...] = ()
    ) -> EncoderOutput:
        """Run the blocks on already embedded tokens ``(B, n, width)`` with coordinates ``(B, n, 3)`` or ``(n, 3)``."""
        rope = self.rope.tables(coords.to(tokens.device)) if self.rope is not None else None
        x, layers = self.blocks(tokens, rope, collect=tuple(i % self.depth for i in collect_layers))
        return EncoderOutput(self.norm(x), [self.norm(layer) for layer in layers])

    def forward(
        self,
        mode: str,
        audio: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        keep_index: torch.Tensor | None = None,
        collect_layers: tuple[int, ...] = (),
        video_offset: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Encode ``mode``; with ``keep_index`` (``(B, n)`` indices into the mode's sequence) only those tokens.

        ``collect_layers`` are block indices (negative counts from the end) whose normalised outputs are returned.
        ``video_offset`` (``(B,)`` seconds, see :meth:`token_coords`) places the video window inside the audio
        window on the time axis; None puts both windows' starts at time 0.
        """
        tokens, layout = self.embed(mode, audio, video)
        coords = self.token_coords(layout, video_offset)
        if keep_index is not None:
            check_index(keep_index, tokens.shape[0], layout.num_tokens, "keep_index")
            tokens = gather_tokens(tokens, keep_index)
            coords = gather_coords(coords, keep_index)
        return self.encode_tokens(tokens, coords, collect_layers)


def check_index(index: torch.Tensor, batch: int, num_tokens: int, name: str, check_values: bool = True) -> None:
    """Shape and dtype of a ``(B, n)`` index; with ``check_values``, also its range (a host read: done for indices
    on the CPU only, as reading would stall an accelerator)."""
    if index.dim() != 2 or index.shape[0] != batch or index.dtype != torch.long:
        raise ValueError(f"{name} must be a LongTensor of shape ({batch}, n), got {index.dtype} {tuple(index.shape)}")
    if (
        check_values
        and index.device.type == "cpu"
        and index.numel()
        and (int(index.min()) < 0 or int(index.max()) >= num_tokens)
    ):
        raise ValueError(f"{name} holds indices outside [0, {num_tokens}) for a sequence of {num_tokens} tokens")


def layer_normalise(x: torch.Tensor) -> torch.Tensor:
    """Layer norm without affine parameters, in float32 for stable targets."""
    return F.layer_norm(x.float(), (x.shape[-1],))
