"""The MJEPA objective: 3 intra-modal latent-prediction terms and 6 cross-modal terms, all L1.

For each active mode m (A, V, AV):
- the target encoder sees the full input of m; targets are its output tokens, layer-normalised (optionally the
  mean of its last k layers, each normalised);
- for each mask configuration, the context encoder sees the context tokens of m, the predictor predicts the target
  tokens, and ``intra_m`` is the L1 distance, averaged over target tokens, channels and mask configurations.

For each active ordered pair (s, t) of distinct modes, the head ``s_to_t`` maps the mean of the context encoder's
output tokens of s (one per mask configuration) to the mean of the normalised target tokens of t;
``cross_s_to_t`` is their L1 distance averaged over channels and mask configurations.

Samples flagged ``has_audio = False`` are left out of every term that involves audio (modes A and AV).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mjepa.data.batch import Batch
from mjepa.masks import Masks
from mjepa.models.encoder import check_index, gather_tokens, layer_normalise
from mjepa.models.mjepa import MJEPA
from mjepa.models.crossmodal import head_key
from mjepa.terms import active_cross_pairs, active_modes, cross_term, mode_uses_audio


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # weighted sum of the active terms
    terms: dict[str, torch.Tensor]  # every active term, unweighted, as a scalar tensor
    pooled_targets: dict[str, torch.Tensor]  # (B, E) mean normalised target tokens per mode, for monitoring


@torch.no_grad()
def compute_targets(model: MJEPA, batch: Batch, modes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Normalised target tokens ``(B, N, E)`` (float32) of each mode from the EMA target encoder(s)."""
    k = model.config.objective.target_last_k_layers
    targets = {}
    for mode in modes:
        encoder = model.target_encoder(mode)
        if k > encoder.depth:
            raise ValueError(f"objective.target_last_k_layers={k} exceeds the encoder depth {encoder.depth}")
        if k == 1:
            out = encoder(mode, batch.audio, batch.video)
            targets[mode] = layer_normalise(out.tokens)
        else:
            out = encoder(mode, batch.audio, batch.video, collect_layers=tuple(range(-k, 0)))
            targets[mode] = torch.stack([layer_normalise(x) for x in out.layers]).mean(0)
    return targets


def _sample_weights(batch: Batch, mode_names: tuple[str, ...], device: torch.device) -> torch.Tensor | None:
    """Per-sample weights of a term touching ``mode_names``: 0 for samples without audio if audio is involved."""
    if batch.has_audio is None or not any(mode_uses_audio(m) for m in mode_names):
        return None
    return batch.has_audio.to(device=device, dtype=torch.float32)


def _weighted_mean(per_sample: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_sample.mean()
    return (per_sample * weights).sum() / weights.sum().clamp_min(1.0)


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
    _check_masks(masks, modes, batch.batch_size, {m: t.shape[1] for m, t in targets.items()})

    terms: dict[str, torch.Tensor] = {}
    pooled_context: dict[str, list[torch.Tensor]] = {}
    for mode in modes:
        encoder, predictor = model.encoder(mode), model.predictor(mode)
        tokens, layout = encoder.embed(mode, batch.audio, batch.video)  # embedded once, gathered per mask config
        coords, modality = layout.coords, layout.modality  # cached on the device
        weights = _sample_weights(batch, (mode,), tokens.device)
        per_config, pooled_context[mode] = [], []
        for pair in masks[mode]:
            ctx_coords = coords[pair.context]
            context = encoder.encode_tokens(gather_tokens(tokens, pair.context), ctx_coords).tokens
            prediction = predictor(context, ctx_coords, modality[pair.context], coords[pair.target],
                                   modality[pair.target])
            target = gather_tokens(targets[mode], pair.target)
            per_config.append((prediction.float() - target).abs().mean(dim=(1, 2)))
            pooled_context[mode].append(context.mean(dim=1))
        terms[f"intra_{mode}"] = _weighted_mean(torch.stack(per_config).mean(0), weights)

    pooled_targets = {mode: t.mean(dim=1) for mode, t in targets.items()}
    for source, target_mode in active_cross_pairs(objective):
        head = model.cross_heads[head_key(source, target_mode)]
        goal = pooled_targets[target_mode]
        per_config = [(head(p).float() - goal).abs().mean(dim=1) for p in pooled_context[source]]
        weights = _sample_weights(batch, (source, target_mode), goal.device)
        terms[cross_term(source, target_mode)] = _weighted_mean(torch.stack(per_config).mean(0), weights)

    loss = sum(objective.weight(name) * value for name, value in terms.items())
    return ObjectiveOutput(loss, terms, pooled_targets)
