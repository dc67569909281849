"""The narrow ViT predictor shared by the A, V and AV modes."""

from __future__ import annotations

import torch
from torch import nn

from mjepa.config import PredictorConfig
from mjepa.models.encoder import TOKENIZED_INPUTS, init_vit_weights, rescale_residual_projections
from mjepa.models.kernels import Linear
from mjepa.models.positions import Rotary3D, sincos_embedding
from mjepa.models.vit import BlockStack


class Predictor(nn.Module):
    """Predicts target-encoder tokens at masked positions from the context encoder's visible tokens.

    Input sequence = ``[projected context tokens ; one mask token per target position]``. Each mask token is the
    single learned mask vector plus the predictor's modality embedding of its position; its position enters through
    the rotary phase of its coordinates (or a sin-cos embedding). The outputs at the mask tokens are projected back
    to the encoder width once per target level (``num_levels``): one output head per level of the target encoder
    the objective predicts, stored as one linear layer whose output rows are split by level (the same as separate
    heads, in one product; with one level, the single head of earlier checkpoints).
    """

    def __init__(
        self,
        encoder_width: int,
        config: PredictorConfig,
        position_embedding: str = "rope",
        rope_base: float = 10000.0,
        num_levels: int = 1,
    ) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        self.config = config
        self.num_levels = num_levels
        self.embed = Linear(encoder_width, config.width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.modality_embed = nn.Parameter(torch.zeros(len(TOKENIZED_INPUTS), config.width))
        head_dim = config.width // config.num_heads
        self.rope = Rotary3D(head_dim, rope_base) if position_embedding == "rope" else None
        self.blocks = BlockStack(config.width, config.depth, config.num_heads, config.mlp_ratio)
        self.norm = nn.LayerNorm(config.width, eps=1e-6)
        self.proj = Linear(config.width, encoder_width * num_levels)
        init_vit_weights(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        rescale_residual_projections(self.blocks)

    def forward(
        self,
        context: torch.Tensor,
        context_coords: torch.Tensor,
        context_modality: torch.Tensor,
        target_coords: torch.Tensor,
        target_modality: torch.Tensor,
    ) -> list[torch.Tensor]:
        """``context`` ``(B, Nc, E)``; coords ``(B, N, 3)``; modality ids ``(B, N)`` -> one prediction ``(B, Nt, E)``
        per target level."""
        b, num_context, _ = context.shape
        num_target = target_coords.shape[1]
        if context_coords.shape[:2] != (b, num_context) or target_modality.shape != (b, num_target):
            raise ValueError(
                f"predictor inputs disagree: context {tuple(context.shape)}, context_coords "
                f"{tuple(context_coords.shape)}, target_coords {tuple(target_coords.shape)}, target_modality "
                f"{tuple(target_modality.shape)}; expected (B, Nc, E), (B, Nc, 3), (B, Nt, 3), (B, Nt)"
            )
        ctx = self.embed(context) + self.modality_embed[context_modality]
        queries = self.mask_token.expand(b, num_target, -1) + self.modality_embed[target_modality]
        x = torch.cat([ctx, queries.to(ctx.dtype)], dim=1)
        coords = torch.cat([context_coords, target_coords], dim=1)
        if self.rope is None:
            x = x + sincos_embedding(coords, x.shape[-1]).to(x.dtype)
            rope = None
        else:
            rope = self.rope.tables(coords)
        x, _ = self.blocks(x, rope)
        out = self.proj(self.norm(x[:, num_context:]))
        return list(out.chunk(self.num_levels, dim=-1))
