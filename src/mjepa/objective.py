"""The MJEPA objective: 3 intra-modal latent-prediction terms and 6 cross-modal terms, all L1.

For each active mode m (A, V, AV):
- the target encoder sees the full input of m; the targets are its tokens at each target level (the outputs of the
  blocks ``objective.target_layers``, after its final norm), each layer-normalised without affine parameters;
- for each mask configuration, the context encoder sees the context tokens of m, the predictor predicts the target
  tokens of every level (one output head per level), and the level's term ``intra_m_layerK`` is the L1 distance,
  averaged over target tokens, channels and mask configurations. ``intra_m`` is the mean over levels, so the
  objective keeps its 9 terms and their balance whatever the number of levels.

For each active ordered pair (s, t) of distinct modes, the head ``s_to_t`` maps the mean of the context encoder's
output tokens of s (one per mask configuration) to the mean of the normalised last-layer target tokens of t;
``cross_s_to_t`` is their L1 distance averaged over channels and mask configurations.

Audio padding (``Batch.audio_valid_frames``): unless ``objective.predict_audio_padding``, an audio token whose patch
holds only the zero padding after a short clip is not a target (each sample's intra-modal term averages over its
target tokens that hold audio; a sample with none in a mask configuration is left out of that configuration), and
pooled contexts and targets average over the tokens that hold audio. Without padding this is the plain mean.

Samples flagged ``has_audio = False`` are left out of every term that involves audio (modes A and AV), and samples
flagged ``has_video = False`` (audio-only items trained beside audio-visual ones, with placeholder frames) of every
term that involves video (modes V and AV).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mjepa.data.batch import Batch
from mjepa.grids import audio_tokens_holding_signal
from mjepa.masks import Masks
from mjepa.models.crossmodal import head_key
from mjepa.models.encoder import check_index, gather_coords, gather_tokens, layer_normalise
from mjepa.models.mjepa import MJEPA
from mjepa.terms import active_cross_pairs, active_modes, cross_term, level_term, mode_uses_audio, mode_uses_video


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # weighted sum of the active terms
    terms: dict[str, torch.Tensor]  # every active term, unweighted, as a scalar tensor
    pooled_targets: dict[str, torch.Tensor]  # (B, E) mean normalised target tokens per mode, for monitoring
    # With several target levels: each level's intra-modal term (``intra_A_layer18``, ...), logged beside ``terms``
    # and already inside their ``intra_*`` means. Empty with one level.
    level_terms: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Targets:
    """One mode's targets: normalised tokens ``(B, N, E)`` (float32) per target level, and the normalised last
    layer, which the cross-modal terms pool."""

    levels: list[torch.Tensor]
    last: torch.Tensor


@torch.no_grad()
def compute_targets(model: MJEPA, batch: Batch, modes: tuple[str, ...]) -> dict[str, Targets]:
    """The targets of each mode from the EMA target encoder(s), on the full input."""
    blocks = model.target_blocks
    targets = {}
    for mode in modes:
        encoder = model.target_encoder(mode)
        last_block = encoder.depth - 1
        inner = tuple(b for b in blocks if b != last_block)
        out = encoder(mode, batch.audio, batch.video, collect_layers=inner, video_offset=batch.video_offset)
        last = layer_normalise(out.tokens)
        by_block = dict(zip(inner, (layer_normalise(x) for x in out.layers)))
        by_block[last_block] = last
        targets[mode] = Targets([by_block[b] for b in blocks], last)
    return targets


def _sample_weights(batch: Batch, mode_names: tuple[str, ...], device: torch.device) -> torch.Tensor | None:
    """Per-sample weights of a term touching ``mode_names``: 0 for samples without audio if audio is involved, and
    for samples without video if video is involved; None when every sample counts."""
    flags = []
    if batch.has_audio is not None and any(mode_uses_audio(m) for m in mode_names):
        flags.append(batch.has_audio)
    if batch.has_video is not None and any(mode_uses_video(m) for m in mode_names):
        flags.append(batch.has_video)
    if not flags:
        return None
    weights = flags[0].to(device=device, dtype=torch.float32)
    for flag in flags[1:]:
        weights = weights * flag.to(device=device, dtype=torch.float32)
    return weights


def _weighted_mean(per_sample: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_sample.mean()
    return (per_sample * weights).sum() / weights.sum().clamp_min(1.0)


def signal_token_weights(encoder, layout, batch: Batch) -> torch.Tensor | None:
    """``(B, N)`` float over a mode's ``[video ; audio]`` sequence: 0 for audio tokens whose patch starts in the
    padding after the clip, 1 for every other token; None when no sample of the batch is padded."""
    if layout.num_audio == 0 or batch.audio_valid_frames is None:
        return None
    grid = encoder.audio_embed.grid(tuple(batch.audio.shape))
    device = batch.audio.device
    audio = audio_tokens_holding_signal(batch.audio_valid_frames.to(device), grid, batch.audio.shape[1])
    video = torch.ones(audio.shape[0], layout.num_video, dtype=torch.bool, device=device)
    return torch.cat([video, audio], dim=1).float()


def _token_mean(x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` ``(B, n, ...)`` over dim 1, counting each token by ``weights`` ``(B, n)`` when given."""
    if weights is None:
        return x.mean(dim=1)
    w = weights.reshape(weights.shape + (1,) * (x.dim() - 2))
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


def _check_masks(masks: Masks, modes: tuple[str, ...], batch_size: int, num_tokens: dict[str, int]) -> None:
    """Shapes and dtypes only: reading index values would cost a host read per tensor in every step. Indices out
    of range still fail, in ``gather`` (the mask sampler never makes them)."""
    for mode in modes:
        if mode not in masks or not masks[mode]:
            raise ValueError(f"masks have no entry for active mode {mode!r}; got modes {sorted(masks)}")
        for pair in masks[mode]:
            for name, index in (("context", pair.context), ("target", pair.target)):
                check_index(index, batch_size, num_tokens[mode], f"masks[{mode!r}].{name}", check_values=False)


def mjepa_objective(model: MJEPA, batch: Batch, masks: Masks) -> ObjectiveOutput:
    """Total loss and every active term for one batch and its masks (see the module docstring)."""
    objective = model.config.objective
    modes = active_modes(objective)
    targets = compute_targets(model, batch, modes)
    _check_masks(masks, modes, batch.batch_size, {m: t.last.shape[1] for m, t in targets.items()})

    terms: dict[str, torch.Tensor] = {}
    level_terms: dict[str, torch.Tensor] = {}
    pooled_context: dict[str, list[torch.Tensor]] = {}
    token_weights_of: dict[str, torch.Tensor | None] = {}
    for mode in modes:
        encoder, predictor = model.encoder(mode), model.predictor(mode)
        tokens, layout = encoder.embed(mode, batch.audio, batch.video)  # embedded once, gathered per mask config
        coords = encoder.token_coords(layout, batch.video_offset)  # shared ones cached on the device
        modality = layout.modality
        weights = _sample_weights(batch, (mode,), tokens.device)
        token_weights = None if objective.predict_audio_padding else signal_token_weights(encoder, layout, batch)
        token_weights_of[mode] = token_weights
        per_config, config_counts, pooled_context[mode] = [], [], []
        for pair in masks[mode]:
            ctx_coords = gather_coords(coords, pair.context)
            context = encoder.encode_tokens(gather_tokens(tokens, pair.context), ctx_coords).tokens
            predictions = predictor(
                context, ctx_coords, modality[pair.context], gather_coords(coords, pair.target), modality[pair.target]
            )
            target_weights = None if token_weights is None else torch.gather(token_weights, 1, pair.target)
            # (levels, B): each level's L1 per sample, over its target tokens (those that hold signal)
            per_config.append(
                torch.stack(
                    [
                        _token_mean(
                            (prediction.float() - gather_tokens(level, pair.target)).abs().mean(dim=2), target_weights
                        )
                        for prediction, level in zip(predictions, targets[mode].levels)
                    ]
                )
            )
            if target_weights is not None:
                config_counts.append((target_weights.sum(dim=1) > 0).float())
            context_weights = None if token_weights is None else torch.gather(token_weights, 1, pair.context)
            pooled_context[mode].append(_token_mean(context, context_weights))
        if config_counts:  # each sample's mean over the configurations where it has a target that holds signal
            present = torch.stack(config_counts)  # (configs, B)
            per_sample = (torch.stack(per_config) * present.unsqueeze(1)).sum(0) / present.sum(0).clamp_min(1.0)
            has_target = (present.sum(0) > 0).float()
            weights = has_target if weights is None else weights * has_target
        else:
            per_sample = torch.stack(per_config).mean(0)
        per_level = [_weighted_mean(values, weights) for values in per_sample]
        terms[f"intra_{mode}"] = torch.stack(per_level).mean()
        if len(per_level) > 1:
            level_terms.update({level_term(mode, b): v for b, v in zip(model.target_blocks, per_level)})

    pooled_targets = {mode: _token_mean(t.last, token_weights_of[mode]) for mode, t in targets.items()}
    for source, target_mode in active_cross_pairs(objective):
        head = model.cross_heads[head_key(source, target_mode)]
        goal = pooled_targets[target_mode]
        per_config = [(head(p).float() - goal).abs().mean(dim=1) for p in pooled_context[source]]
        weights = _sample_weights(batch, (source, target_mode), goal.device)
        terms[cross_term(source, target_mode)] = _weighted_mean(torch.stack(per_config).mean(0), weights)

    loss = sum(objective.weight(name) * value for name, value in terms.items())
    return ObjectiveOutput(loss, terms, pooled_targets, level_terms)
