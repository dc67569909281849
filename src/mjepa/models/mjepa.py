"""The MJEPA model: context encoder(s), EMA target encoder(s), predictor(s) and cross-modal heads."""

from __future__ import annotations

import copy

import torch
from torch import nn

from mjepa.config import ModelConfig
from mjepa.models.crossmodal import CrossModalHead, head_key
from mjepa.models.encoder import MultimodalEncoder
from mjepa.models.predictor import Predictor
from mjepa.terms import active_cross_pairs

# Which encoder a frozen-feature user reads: the EMA target (the paper's choice) or the online context encoder.
ENCODER_CHOICES = ("target", "context")
# What a model holds: every part, or (a model folder saved for embedding) only the EMA target encoder(s).
MODEL_PARTS = ("all", "target")


class MJEPA(nn.Module):
    """All trainable parts plus the EMA target.

    With ``objective.shared_encoder`` (the default) one encoder and one predictor serve every mode (key
    ``"shared"``). Without it, the ablation's separate unimodal models are built: an audio encoder and predictor
    (key ``"audio"``) for mode A and a video encoder and predictor (key ``"video"``) for mode V.

    ``parts="target"`` builds the target encoder(s) only, for a model folder that holds nothing else (what
    embedding needs, about 45 % of the parameters): the context encoder, predictor and heads are not built.
    """

    def __init__(self, config: ModelConfig, parts: str = "all") -> None:
        super().__init__()
        if parts not in MODEL_PARTS:
            raise ValueError(f"parts={parts!r} is not valid; expected one of {MODEL_PARTS}")
        self.config = config
        self.parts = parts
        enc_cfg, obj = config.encoder, config.objective
        if obj.shared_encoder:
            keys_modalities = {"shared": ("audio", "video")}
        else:
            keys_modalities = {"audio": ("audio",), "video": ("video",)}
        self.encoders = nn.ModuleDict({k: MultimodalEncoder(enc_cfg, m) for k, m in keys_modalities.items()})
        self.target_blocks = obj.target_blocks(enc_cfg.depth)  # checked against the depth here, at construction
        if parts == "target":
            self.target_encoders = self.encoders
            self.target_encoders.requires_grad_(False)
            self.encoders = nn.ModuleDict()
            self.predictors = nn.ModuleDict()
            self.cross_heads = nn.ModuleDict()
            return
        self.predictors = nn.ModuleDict(
            {
                k: Predictor(
                    enc_cfg.width,
                    config.predictor,
                    enc_cfg.position_embedding,
                    enc_cfg.rope_base,
                    num_levels=len(self.target_blocks),
                )
                for k in keys_modalities
            }
        )
        hidden = max(1, int(round(enc_cfg.width * obj.cross_modal_hidden_ratio)))
        self.cross_heads = nn.ModuleDict(
            {head_key(s, t): CrossModalHead(enc_cfg.width, hidden) for s, t in active_cross_pairs(obj)}
        )
        # The target starts as an exact copy and is only ever moved by the EMA update.
        self.target_encoders = copy.deepcopy(self.encoders)
        self.target_encoders.requires_grad_(False)

    def part_key(self, mode: str) -> str:
        """Which encoder/predictor serves ``mode``."""
        if self.config.objective.shared_encoder:
            return "shared"
        if mode == "A":
            return "audio"
        if mode == "V":
            return "video"
        raise ValueError(f"mode {mode!r} needs the shared encoder (objective.shared_encoder=True)")

    def encoder(self, mode: str) -> MultimodalEncoder:
        if self.parts == "target":
            raise ValueError(
                "this model holds only its target encoder (parts='target'): its context encoder, "
                "predictor and cross-modal heads were not saved"
            )
        return self.encoders[self.part_key(mode)]

    def target_encoder(self, mode: str) -> MultimodalEncoder:
        return self.target_encoders[self.part_key(mode)]

    def frozen_encoder(self, mode: str, which: str = "target") -> MultimodalEncoder:
        """The encoder that serves ``mode`` for feature extraction: ``which`` is one of ``ENCODER_CHOICES``."""
        if which not in ENCODER_CHOICES:
            raise ValueError(f"encoder={which!r} is not valid; expected 'target' (the default) or 'context'")
        return self.target_encoder(mode) if which == "target" else self.encoder(mode)

    def predictor(self, mode: str) -> Predictor:
        if self.parts == "target":
            raise ValueError("this model holds only its target encoder (parts='target'): it has no predictor")
        return self.predictors[self.part_key(mode)]

    def named_trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Parameters the optimiser updates: everything except the target encoder(s)."""
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("target_encoders.")]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_trainable_parameters()]

    def train(self, mode: bool = True) -> MJEPA:
        super().train(mode)
        self.target_encoders.eval()  # the target never runs in training mode (no checkpointing, no dropout)
        return self

    def set_activation_checkpointing(self, enabled: bool) -> None:
        for enc in self.encoders.values():
            enc.set_activation_checkpointing(enabled)
        for pred in self.predictors.values():
            pred.blocks.activation_checkpointing = enabled

    @torch.no_grad()
    def token_grids(self, audio_shape: tuple[int, ...] | None, video_shape: tuple[int, ...] | None):
        """``(audio_grid, video_grid)`` token grids for the given input shapes (``None`` where absent)."""
        audio_grid = video_grid = None
        if audio_shape is not None:
            audio_grid = self.target_encoder("A").audio_embed.grid(audio_shape)
        if video_shape is not None:
            video_grid = self.target_encoder("V").video_embed.grid(video_shape)
        return audio_grid, video_grid
