"""``mjepa probe``: frozen-encoder probing of a checkpoint on a task, beside a random-init encoder of the same size."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from mjepa.data.batch import Batch
from mjepa.data.loading.dataset import SkippedItem
from mjepa.data.loading.samplers import DistributedShardSampler
from mjepa.distributed import detect_launch
from mjepa.eval.features import (
    FeatureSet,
    cached_features,
    encode_batches,
    encoder_fingerprint,
)
from mjepa.eval.items import EvalDataset, EvalItem, ViewSpec, eval_loader
from mjepa.eval.loading import LoadedModel
from mjepa.eval.metrics import accuracy_from_multi_hot, mean_average_precision
from mjepa.eval.probe import ProbeSettings, gather_items, predict, train_probe_grid
from mjepa.eval.tasks import TaskSpec, TaskSplits
from mjepa.terms import MODE_OF_MODALITY


@dataclass(frozen=True)
class FeatureSettings:
    """What features a probe reads and how they are computed."""

    modality: str  # "audio", "video" or "av"
    layer: int = -1
    encoder: str = "target"  # or "context"
    batch_size: int = 16  # items per encoding batch
    workers: int = 1  # decoding processes
    cache_dir: Path | None = None  # features are cached here, keyed by everything they depend on
    device: torch.device = torch.device("cpu")


@dataclass
class SplitFeatures:
    features: FeatureSet
    skipped: list[SkippedItem]
    from_cache: bool


@dataclass
class EncoderResult:
    encoder: str  # "trained" or "random-init"
    modality: str
    metric: str
    score: float  # the selected head's test score (mean over folds for ESC-50)
    selection_rule: str
    chosen_heads: list[dict] = field(default_factory=list)  # per fold: lr, wd, val/train score, test score
    all_heads: list[list[dict]] = field(default_factory=list)
    skipped_items: int = 0


def item_batches(items: list[EvalItem], modality: str, views: ViewSpec):
    """(Batch, labels) with views flattened into rows (audio windows stay separate rows, joined after encoding)."""
    audio = torch.cat([i.audio for i in items]) if modality != "video" else None
    video = torch.cat([i.video for i in items]) if modality != "audio" else None
    offset = torch.cat([i.video_offset for i in items]) if modality == "av" else None
    labels = torch.stack([i.labels for i in items])
    return (
        Batch(audio=audio, video=video, has_audio=None, video_offset=offset),
        labels,
        torch.tensor([i.index for i in items]),
    )


def probe_encoder(loaded: LoadedModel, modality: str, encoder: str = "target"):
    """The frozen encoder that serves this modality (the shared one, or the per-modality one): the EMA target by
    default, as in the paper; ``context`` probes the trained online encoder, to tell whether a change in the
    scores belongs to the EMA average or to what gradient descent learned."""
    return loaded.model.frozen_encoder(MODE_OF_MODALITY[modality], encoder)


def split_features(
    loaded: LoadedModel, task: TaskSpec, entries, vocabulary, settings: FeatureSettings, fingerprint: str
) -> SplitFeatures:
    views, modality = task.views, settings.modality
    if modality == "av" and views.audio_windows != 1:
        raise ValueError(f"task {task.name} concatenates audio windows; use --modality audio")
    fe = loaded.frontend
    dataset = EvalDataset(
        entries,
        vocabulary,
        fe.clip,
        fe.audio,
        fe.video,
        views,
        need_video=modality != "audio",
        need_audio=modality != "video",
    )
    skipped: list[SkippedItem] = []

    ctx = detect_launch(dict(os.environ))

    def compute() -> FeatureSet:
        # Under torchrun each rank encodes its own shard (no padding) and the features are gathered in order.
        sampler = (
            DistributedShardSampler(len(dataset), ctx.world_size, ctx.rank, shuffle=False, pad=False)
            if ctx.enabled
            else None
        )
        loader = eval_loader(dataset, settings.batch_size, settings.workers, sampler)

        def batches():
            for items, bad in loader:
                skipped.extend(bad)
                if items:
                    yield item_batches(items, modality, views)

        frozen = probe_encoder(loaded, modality, settings.encoder)
        features = encode_batches(frozen, modality, batches(), settings.layer, settings.device)  # this rank's shard
        if views.audio_windows > 1:  # concatenate each item's audio windows along the token axis
            t, d = features.tokens.shape[1:]
            features.tokens = features.tokens.view(-1, views.audio_windows * t, d)
            features.views = features.tokens.shape[0] // features.num_items
        if views.clips > 1:
            features = join_temporal_clips(features, views.clips, views.spatial_views)
        return features

    key = {
        "encoder": fingerprint,
        "modality": modality,
        "layer": settings.layer,
        "frontend": fe.to_dict(),
        "views": asdict(views),
        "items": [(e.path, e.start, e.end, e.labels) for e in entries],
        "layout": FEATURE_LAYOUT,
    }
    if ctx.enabled:  # each rank keeps, and caches, only its shard of the features
        key["shard"] = (ctx.rank, ctx.world_size)
    features, from_cache = cached_features(settings.cache_dir, key, compute)
    return SplitFeatures(features, gather_skipped(skipped) if ctx.enabled else skipped, from_cache)


# What a cached feature row is: the temporal clips of a spatial view joined into one row, video windows placed on
# the audio's time axis. Part of the cache key, so features cached under another layout are never read back.
FEATURE_LAYOUT = "clips-joined-per-view, video-offset"


def join_temporal_clips(features: FeatureSet, clips: int, spatial_views: int) -> FeatureSet:
    """V-JEPA 2's multi-clip protocol: the rows of each item, ``clips`` temporal clips x ``spatial_views`` crops
    (clips outer), become one row per spatial view holding the tokens of all its temporal clips in time order,
    so the probe reads one joined sequence per view and only the spatial views are averaged."""
    rows, tokens, dim = features.tokens.shape
    per_item = clips * spatial_views
    if rows != features.num_items * per_item:
        raise ValueError(
            f"expected {per_item} rows per item ({clips} clips x {spatial_views} views), got {rows} rows "
            f"for {features.num_items} items"
        )
    joined = (
        features.tokens.view(features.num_items, clips, spatial_views, tokens, dim)
        .transpose(1, 2)
        .reshape(features.num_items * spatial_views, clips * tokens, dim)
    )
    return FeatureSet(joined, features.labels, spatial_views, features.indices)


def gather_skipped(local: list[SkippedItem]) -> list[SkippedItem]:
    import torch.distributed as dist

    parts: list[list[SkippedItem] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return [item for part in parts for item in part]


def row_keys(features: FeatureSet) -> torch.Tensor:
    """A global key per training row (item index x views + view), the same on every rank."""
    indices = features.indices if features.indices is not None else torch.arange(features.num_items)
    return (indices.long().unsqueeze(1) * features.views + torch.arange(features.views)).reshape(-1)


def item_scores(probe, features: FeatureSet, multi_label: bool, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and labels of every item of the split (gathered from all ranks, in manifest order)."""
    indices = features.indices if features.indices is not None else torch.arange(features.num_items)
    probabilities = predict(probe, features.tokens, None, views=features.views, multi_label=multi_label)
    probabilities, _ = gather_items(probabilities, indices, device)
    labels, _ = gather_items(features.labels, indices, device)
    return probabilities, labels


def score(metric: str, probabilities: torch.Tensor, targets: torch.Tensor) -> float:
    """The task's metric on class probabilities (already averaged over views)."""
    if metric == "map":
        return mean_average_precision(probabilities, targets).map
    return accuracy_from_multi_hot(probabilities, targets)


def label_groups(vocabulary: list[str]) -> dict[str, list[int]]:
    """Class indices per label group, the part of a label before ``:`` (``game:pong`` -> ``game``), where the
    vocabulary has at least two groups; empty otherwise."""
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(vocabulary):
        if ":" in label:
            groups.setdefault(label.split(":", 1)[0], []).append(index)
    return groups if len(groups) > 1 else {}


def group_scores(probabilities: torch.Tensor, targets: torch.Tensor, groups: dict[str, list[int]]) -> dict:
    """mAP over the classes of each label group: a saturated group (the game tags of AtariAV) cannot hide another."""
    return {
        name: mean_average_precision(probabilities[:, idx], targets[:, idx]).map
        for name, idx in groups.items()
        if targets[:, idx].any()  # a group with no positive in the split has no mAP
    }


def probe_fold(
    settings: ProbeSettings,
    task: TaskSpec,
    train: SplitFeatures,
    val: SplitFeatures | None,
    test: SplitFeatures,
    device: torch.device | str = "cpu",
    vocabulary: list[str] | None = None,
) -> tuple[dict, list[dict]]:
    """Train the grid on ``device``, pick the head on validation (or on the training split without one), score on
    test. For mAP tasks whose labels come in groups (``game:*``, ``event:*``), each head also carries its test mAP
    per group (``test_group_scores``)."""
    groups = label_groups(vocabulary) if vocabulary is not None and task.metric == "map" else {}
    tr = train.features
    targets = tr.labels.repeat_interleave(tr.views, dim=0)
    probes = train_probe_grid(settings, tr.tokens, None, targets, task.multi_label, device, row_keys(tr))
    select_on = val.features if val is not None and val.features.num_items else tr
    heads = []
    for probe, (lr, wd) in zip(probes, settings.grid()):
        chosen_score = score(task.metric, *item_scores(probe, select_on, task.multi_label, device))
        test_probabilities, test_targets = item_scores(probe, test.features, task.multi_label, device)
        test_score = score(task.metric, test_probabilities, test_targets)
        head = {"lr": lr, "weight_decay": wd, "selection_score": chosen_score, "test_score": test_score}
        if groups:
            head["test_group_scores"] = group_scores(test_probabilities, test_targets, groups)
        heads.append(head)
    best = max(heads, key=lambda h: h["selection_score"])
    return best, heads


def selection_rule(has_val: bool) -> str:
    if has_val:
        return "head with the best validation-split score among the (lr, wd) grid; test score reported"
    return "no validation split: head with the best training-split score among the (lr, wd) grid; test score reported"


def evaluate(
    loaded: LoadedModel,
    label: str,
    task: TaskSpec,
    folds: list[TaskSplits],
    probe: ProbeSettings,
    features: FeatureSettings,
) -> EncoderResult:
    """Probe ``loaded`` on every fold of ``task``: the reported head per fold, every head's scores, and how many items
    were unreadable."""
    fingerprint = encoder_fingerprint(probe_encoder(loaded, features.modality, features.encoder))
    chosen, all_heads, skipped = [], [], 0
    for splits in folds:

        def get(entries, vocabulary=splits.vocabulary):
            return split_features(loaded, task, entries, vocabulary, features, fingerprint)

        train, test = get(splits.train), get(splits.test)
        val = get(splits.val) if splits.val else None
        skipped += len(train.skipped) + len(test.skipped) + (len(val.skipped) if val else 0)
        best, heads = probe_fold(probe, task, train, val, test, features.device, splits.vocabulary)
        chosen.append({"fold": splits.fold, **best})
        all_heads.append(heads)
    mean_score = sum(c["test_score"] for c in chosen) / len(chosen)
    return EncoderResult(
        label,
        features.modality,
        task.metric,
        mean_score,
        selection_rule(bool(folds[0].val)),
        chosen,
        all_heads,
        skipped,
    )


def evaluate_over_seeds(
    loaded: LoadedModel,
    label: str,
    task: TaskSpec,
    folds: list[TaskSplits],
    probe: ProbeSettings,
    features: FeatureSettings,
    seeds: Iterable[int],
) -> list[EncoderResult]:
    """``evaluate`` once per probe seed; with ``features.cache_dir`` set, the features are encoded once and each
    further seed only trains the probe again."""
    return [evaluate(loaded, label, task, folds, replace(probe, seed=seed), features) for seed in seeds]
