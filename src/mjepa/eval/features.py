"""Frozen-encoder features for probing, computed once and cached on disk.

Features are the target (EMA) encoder's output tokens (optionally another layer), one row per item and view.
The cache key hashes everything that changes them: the encoder weights, the modality, the layer, the
preprocessing, the items and the views. A second run with the same key reads the file instead of encoding.
Tokens are stored in float16 (``N x T x D``); for large tasks that is big (AudioSet-20K with ViT-L: about
20k x 2080 x 1024 x 2 bytes = 85 GB), so point ``--cache-dir`` at a large disk, or use the linear protocol's
pooled features.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from mjepa.data.batch import Batch
from mjepa.models.encoder import MultimodalEncoder
from mjepa.terms import MODE_OF_MODALITY


@dataclass
class FeatureSet:
    tokens: torch.Tensor  # (N * views, T, D) float16
    labels: torch.Tensor  # (N, C) multi-hot
    views: int
    indices: torch.Tensor | None = None  # (N,) manifest index of each item

    @property
    def num_items(self) -> int:
        return self.labels.shape[0]


def encoder_fingerprint(encoder: MultimodalEncoder) -> str:
    """A hash of the encoder's weights (cheap: a strided sample of every tensor plus shapes and sums)."""
    digest = hashlib.sha256()
    for name, tensor in encoder.state_dict().items():
        flat = tensor.detach().float().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)]
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(sample.numpy().tobytes())
        digest.update(str(float(flat.double().sum())).encode())
    return digest.hexdigest()[:16]


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


@torch.no_grad()
def encode_batches(
    encoder: MultimodalEncoder,
    modality: str,
    batches: Iterable[tuple[Batch, torch.Tensor, torch.Tensor]],
    layer: int,
    device: torch.device,
) -> FeatureSet:
    """Encode every batch; ``batches`` yields (Batch, multi-hot labels, item indices) with views already expanded
    in the batch."""
    mode = MODE_OF_MODALITY[modality]
    encoder.eval().to(device)
    tokens, labels, indices, views = [], [], [], 1
    for batch, batch_labels, batch_indices in batches:
        batch = batch.to(device)
        out = encoder(
            mode,
            batch.audio if "A" in mode else None,
            batch.video if "V" in mode else None,
            collect_layers=(layer,) if layer != -1 else (),
            video_offset=batch.video_offset,
        )
        chosen = out.tokens if layer == -1 else out.layers[0]
        tokens.append(chosen.to(torch.float16).cpu())
        labels.append(batch_labels)
        indices.append(batch_indices)
        views = chosen.shape[0] // batch_labels.shape[0]
    if not tokens:
        raise ValueError("no item of this split could be decoded; see the skipped items")
    return FeatureSet(torch.cat(tokens), torch.cat(labels), views, torch.cat(indices))


def cached_features(
    cache_dir: Path | None, key_parts: dict, compute: Callable[[], FeatureSet], write: bool = True
) -> tuple[FeatureSet, bool]:
    """Features from ``cache_dir`` when a file with this key exists, else computed and (if ``write``) stored.
    Under torchrun each rank's key names its shard, so each rank reads and writes only its own features.
    Returns ``(features, came_from_cache)``."""
    if cache_dir is None:
        return compute(), False
    path = Path(cache_dir) / f"features-{cache_key(key_parts)}.pt"
    if path.is_file():
        data = torch.load(path, weights_only=True)
        return FeatureSet(data["tokens"], data["labels"], int(data["views"]), data.get("indices")), True
    features = compute()
    if not write:
        return features, False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "tokens": features.tokens,
            "labels": features.labels,
            "views": features.views,
            "indices": features.indices,
            "key": json.dumps(key_parts, sort_keys=True, default=str),
        },
        tmp,
    )
    tmp.replace(path)
    return features, False
