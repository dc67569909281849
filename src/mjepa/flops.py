"""Analytic FLOP counts of the MJEPA training step (multiply-add = 2 FLOPs).

Counted: every matrix product (linear layers, patch embeddings, attention scores and values). Not counted:
element-wise work (norms, activations, rotary, softmax, the loss), which is small next to the products. The
backward pass of a trained part costs twice its forward (gradients with respect to inputs and to weights);
the target encoder runs forward only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mjepa.config import ModelConfig
from mjepa.masks import Masks
from mjepa.terms import active_cross_pairs, active_modes


def transformer_forward_flops(batch: int, tokens: int, width: int, depth: int, mlp_hidden: int) -> float:
    """Forward FLOPs of ``depth`` pre-norm blocks on ``batch`` sequences of ``tokens`` tokens."""
    linear = 2 * tokens * width * (3 * width + width + 2 * mlp_hidden)  # qkv, out projection, MLP in and out
    return float(batch * depth * linear) + attention_forward_flops(batch, tokens, width, depth)


def attention_forward_flops(batch: int, tokens: int, width: int, depth: int) -> float:
    """The attention part of :func:`transformer_forward_flops`: q·k scores and the weighted sum of values."""
    return float(batch * depth * 2 * 2 * tokens * tokens * width)


def _mlp_hidden(width: int, ratio: float) -> int:
    return int(round(width * ratio))


@dataclass(frozen=True)
class StepFlops:
    target_forward: float
    context_embed_forward: float  # patch embeddings of the context side (their backward needs no input gradient)
    context_forward: float
    predictor_forward: float
    cross_heads_forward: float
    attention_target_forward: float = 0.0  # the attention products inside target_forward
    attention_trained_forward: float = 0.0  # the attention products inside context_forward + predictor_forward

    @property
    def attention_training_step(self) -> float:
        """The attention products' share of :attr:`training_step` (quadratic in tokens; the rest is linear)."""
        return self.attention_target_forward + 3 * self.attention_trained_forward

    @property
    def forward(self) -> float:
        return (
            self.target_forward
            + self.context_embed_forward
            + self.context_forward
            + self.predictor_forward
            + self.cross_heads_forward
        )

    @property
    def training_step(self) -> float:
        """Forward of everything plus backward of the trained parts: 2x forward, 1x for the patch embeddings."""
        trained = self.context_forward + self.predictor_forward + self.cross_heads_forward
        return self.target_forward + 3 * trained + 2 * self.context_embed_forward


def step_flops(
    config: ModelConfig, batch: int, audio_shape: tuple[int, ...], video_shape: tuple[int, ...], masks: Masks
) -> StepFlops:
    """FLOPs of one training step for inputs of these shapes and these masks."""
    enc, pred, obj = config.encoder, config.predictor, config.objective
    enc_hidden, pred_hidden = _mlp_hidden(enc.width, enc.mlp_ratio), _mlp_hidden(pred.width, pred.mlp_ratio)
    audio_tokens = (audio_shape[1] // enc.audio_patch_time) * (audio_shape[2] // enc.audio_patch_freq)
    video_tokens = math.prod(
        s // p for s, p in zip(video_shape[2:], (enc.video_tubelet_time, enc.video_patch_size, enc.video_patch_size))
    )
    audio_patch = enc.audio_patch_time * enc.audio_patch_freq
    video_patch = enc.video_channels * enc.video_tubelet_time * enc.video_patch_size**2
    target = context_embed = context = predictor = attention_target = attention_trained = 0.0
    for mode in active_modes(obj):
        embed = 0.0
        if "A" in mode:
            embed += 2.0 * batch * audio_tokens * audio_patch * enc.width
        if "V" in mode:
            embed += 2.0 * batch * video_tokens * video_patch * enc.width
        full = audio_tokens * ("A" in mode) + video_tokens * ("V" in mode)
        target += embed + transformer_forward_flops(batch, full, enc.width, enc.depth, enc_hidden)
        attention_target += attention_forward_flops(batch, full, enc.width, enc.depth)
        context_embed += embed  # tokens are embedded once per mode, then gathered for every mask configuration
        for pair in masks[mode]:
            n_ctx, n_tgt = pair.context.shape[1], pair.target.shape[1]
            context += transformer_forward_flops(batch, n_ctx, enc.width, enc.depth, enc_hidden)
            predictor += transformer_forward_flops(batch, n_ctx + n_tgt, pred.width, pred.depth, pred_hidden)
            predictor += 2.0 * batch * (n_ctx * enc.width * pred.width + n_tgt * pred.width * enc.width)
            attention_trained += attention_forward_flops(batch, n_ctx, enc.width, enc.depth)
            attention_trained += attention_forward_flops(batch, n_ctx + n_tgt, pred.width, pred.depth)
    hidden = max(1, int(round(enc.width * obj.cross_modal_hidden_ratio)))
    head = 2.0 * batch * (enc.width * hidden + hidden * hidden + hidden * enc.width)
    num_configs = len(next(iter(masks.values())))
    heads = head * num_configs * len(active_cross_pairs(obj))
    return StepFlops(target, context_embed, context, predictor, heads, attention_target, attention_trained)
