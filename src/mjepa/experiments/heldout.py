"""The pretraining loss of a checkpoint on held-out clips, with fixed masks.

The training log's per-step losses are noisy (one batch, fresh masks every step) and are measured on the training
data, so a small upward trend in them cannot be told from noise. Evaluating every checkpoint on the same held-out
clips with the same masks removes both sources of noise: what changes between checkpoints is only the model (its
context encoder, predictors and EMA target encoder).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from mjepa.data.batch import Batch
from mjepa.data.loading.dataset import SkippedItem
from mjepa.data.manifests.manifest import ManifestEntry
from mjepa.data.preprocess.frontend import Frontend
from mjepa.eval.items import EvalDataset, ViewSpec, eval_loader
from mjepa.eval.loading import LoadedModel
from mjepa.masks import Masks, MaskSampler, masks_to
from mjepa.objective import mjepa_objective
from mjepa.precision import resolve_amp_dtype
from mjepa.terms import active_modes
from mjepa.train.monitor import collapse_metrics, variance_shares
from mjepa.train.step import autocast_context

LEADING_DIRECTIONS = 8  # variance shares recorded per mode; the effective ranks seen on AtariAV are 3 to 10


def heldout_batches(
    entries: list[ManifestEntry], frontend: Frontend, batch_size: int, workers: int, max_items: int | None = None
) -> tuple[list[Batch], list[SkippedItem]]:
    """The held-out clips, decoded once with the checkpoint's preprocessing (centre crop, whole-clip audio).

    Items that fail to decode are skipped and returned, never substituted.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    entries = entries[:max_items] if max_items is not None else entries
    # Labels are not needed here; every entry's own labels form the vocabulary so multi-hot encoding cannot fail.
    vocabulary = sorted({label for entry in entries for label in entry.labels})
    dataset = EvalDataset(
        entries,
        vocabulary,
        frontend.clip,
        frontend.audio,
        frontend.video,
        ViewSpec(),
        need_video=True,
        need_audio=False,
    )
    loader = eval_loader(dataset, batch_size, workers)
    batches, skipped = [], []
    for items, bad in loader:
        skipped.extend(bad)
        if items:
            batches.append(
                Batch(
                    audio=torch.cat([i.audio for i in items]),
                    video=torch.cat([i.video for i in items]),
                    has_audio=torch.tensor([i.has_audio for i in items]),
                    video_offset=torch.cat([i.video_offset for i in items]),
                )
            )
    return batches, skipped


def fixed_masks(loaded: LoadedModel, batch: Batch, index: int, seed: int) -> Masks:
    """The masks of held-out batch ``index``: the same for every checkpoint of a run (drawn from ``seed``)."""
    config = loaded.config
    audio_grid, video_grid = loaded.model.token_grids(tuple(batch.audio.shape), tuple(batch.video.shape))
    sampler = MaskSampler(config.masks, audio_grid, video_grid, active_modes(config.model.objective))
    return sampler.sample(batch.batch_size, seed=seed, step=index)


@dataclass
class HeldoutResult:
    losses: dict[str, float]  # every active term and the weighted total, averaged over the held-out clips
    collapse: dict[str, float]  # target feature std and effective rank per mode, over all held-out clips at once
    variance_shares: dict[str, list[float]]  # per mode: variance share of the pooled targets' leading directions


@torch.no_grad()
def heldout_evaluation(
    loaded: LoadedModel, batches: list[Batch], mask_seed: int, device: torch.device, precision: str = "auto"
) -> HeldoutResult:
    """The checkpoint's loss terms on the held-out clips (each batch weighted by its size), and the collapse
    indicators of its target encoder computed over all the clips together (more clips than one training batch, so
    the effective rank can reach further)."""
    if not batches:
        raise ValueError("no held-out clips to evaluate the loss on")
    model = loaded.model.to(device).eval()
    amp_dtype = resolve_amp_dtype(precision, device.type)
    sums: dict[str, float] = defaultdict(float)
    pooled: dict[str, list[torch.Tensor]] = defaultdict(list)
    count = 0
    for index, batch in enumerate(batches):
        masks = masks_to(fixed_masks(loaded, batch, index, mask_seed), device)
        with autocast_context(device.type, amp_dtype):
            out = mjepa_objective(model, batch.to(device), masks)
        size = batch.batch_size
        sums["loss"] += float(out.loss) * size
        for name, value in {**out.terms, **out.level_terms}.items():
            sums[name] += float(value) * size
        for mode, features in out.pooled_targets.items():
            pooled[mode].append(features.float().cpu())
        count += size
    losses = {name: total / count for name, total in sums.items()}
    pooled_all = {mode: torch.cat(parts) for mode, parts in pooled.items()}
    shares = {mode: variance_shares(features, LEADING_DIRECTIONS) for mode, features in pooled_all.items()}
    return HeldoutResult(losses, collapse_metrics(pooled_all), shares)
