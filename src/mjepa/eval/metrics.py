"""Evaluation metrics: per-class average precision, mAP, top-k accuracy, and a padding-aware distributed gather.

Average precision follows scikit-learn's ``average_precision_score`` (non-interpolated): scores are ranked in
descending order, every *distinct* score value is one threshold, and

    AP = sum_n (R_n - R_{n-1}) * P_n

over those thresholds, where P_n and R_n are precision and recall of "score >= threshold_n". Samples with tied
scores therefore enter the ranking together (one precision value for the whole tie), not in an arbitrary order.

mAP (AudioSet's metric) is the mean of per-class AP over classes with at least one positive; classes without
positives have no defined AP, are excluded from the mean and reported as a count.

Distributed evaluation pads each rank's shard to a common length; ``gather_without_padding`` drops that padding
before metrics see the data, so duplicated samples are never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class MapResult:
    """Mean average precision over the classes that have at least one positive."""

    map: float
    per_class: list[float | None]  # None: the class has no positive, so its AP is undefined
    num_classes_scored: int
    num_classes_without_positives: int


def _check_finite(scores: torch.Tensor, name: str) -> None:
    if not torch.isfinite(scores).all():
        bad = int((~torch.isfinite(scores)).sum())
        raise ValueError(f"{name} has {bad} NaN/inf value(s); expected only finite values")


def _check_binary(targets: torch.Tensor, name: str) -> None:
    is_binary = (targets == 0) | (targets == 1)
    if not is_binary.all():
        example = targets[~is_binary].flatten()[0].item()
        raise ValueError(f"{name} has value {example}; expected binary targets (0 or 1)")


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Non-interpolated average precision of one class, with scikit-learn's handling of tied scores.

    ``scores`` and ``targets`` are 1-D of equal length; ``targets`` is binary (bool, int or float 0/1) and must
    contain at least one positive (AP is undefined otherwise).
    """
    if scores.dim() != 1 or scores.shape != targets.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must be 1-D of equal length")
    _check_finite(scores, "scores")
    _check_binary(targets, "targets")
    # float64 so that cumulative counts over large evaluation sets stay exact.
    positives = targets.to(torch.float64)
    if positives.sum() == 0:
        raise ValueError("targets has no positive; average precision needs at least one")

    order = torch.argsort(scores, descending=True, stable=True)
    ranked_scores = scores[order]
    ranked_positives = positives[order]
    true_positives = torch.cumsum(ranked_positives, dim=0)
    predicted_positives = torch.arange(1, len(order) + 1, dtype=torch.float64)

    # A threshold sits at the last position of each run of equal scores: all tied samples are in or out together.
    is_threshold = torch.ones(len(order), dtype=torch.bool)
    is_threshold[:-1] = ranked_scores[1:] != ranked_scores[:-1]
    true_positives = true_positives[is_threshold]
    precision = true_positives / predicted_positives[is_threshold]
    recall = true_positives / true_positives[-1]
    recall_increase = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((recall_increase * precision).sum())


def _check_same_2d_shape(scores: torch.Tensor, targets: torch.Tensor) -> None:
    if scores.dim() != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must both be (N, C) and equal"
        )


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> MapResult:
    """mAP of multi-label predictions: ``scores`` and binary ``targets`` are (N samples, C classes).

    Classes without any positive among the N samples are excluded from the mean and counted in
    ``num_classes_without_positives``; their ``per_class`` entry is None.
    """
    _check_same_2d_shape(scores, targets)
    _check_finite(scores, "scores")
    _check_binary(targets, "targets")
    if scores.shape[0] == 0:
        raise ValueError("scores has 0 samples; expected at least one")
    has_positive = (targets != 0).any(dim=0)
    per_class: list[float | None] = [
        average_precision(scores[:, c], targets[:, c]) if has_positive[c] else None for c in range(scores.shape[1])
    ]
    scored = [ap for ap in per_class if ap is not None]
    if not scored:
        raise ValueError(f"none of the {scores.shape[1]} classes has a positive; mAP is undefined")
    return MapResult(
        map=sum(scored) / len(scored),
        per_class=per_class,
        num_classes_scored=len(scored),
        num_classes_without_positives=len(per_class) - len(scored),
    )


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of samples whose label is among the k highest logits (ties resolved by ``torch.topk``).

    ``logits`` is (N, C); ``labels`` is (N,) integer class indices in [0, C).
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits {tuple(logits.shape)} must be (N, C) and labels {tuple(labels.shape)} (N,)")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels has dtype {labels.dtype}; expected integer class indices")
    num_samples, num_classes = logits.shape
    if num_samples == 0:
        raise ValueError("logits has 0 samples; expected at least one")
    if not 1 <= k <= num_classes:
        raise ValueError(f"k={k}; expected 1 <= k <= number of classes ({num_classes})")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels span [{int(labels.min())}, {int(labels.max())}]; expected [0, {num_classes})")
    _check_finite(logits, "logits")
    top_k_classes = logits.topk(k, dim=1).indices
    hits = (top_k_classes == labels.unsqueeze(1)).any(dim=1)
    return float(hits.to(torch.float64).mean())


def accuracy_from_multi_hot(logits: torch.Tensor, multi_hot: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy for a single-label dataset whose targets are stored as (N, C) multi-hot rows.

    Every row must hold exactly one positive: argmax of a row with several positives would silently pick one.
    """
    _check_same_2d_shape(logits, multi_hot)
    _check_binary(multi_hot, "multi_hot")
    positives_per_row = (multi_hot != 0).sum(dim=1)
    if (positives_per_row != 1).any():
        row = int((positives_per_row != 1).nonzero()[0])
        raise ValueError(
            f"multi_hot row {row} has {int(positives_per_row[row])} positives; expected exactly 1 (single-label)"
        )
    labels = multi_hot.to(torch.float32).argmax(dim=1)
    return top_k_accuracy(logits, labels, k=k)


def gather_without_padding(local: torch.Tensor, num_real_local: int) -> torch.Tensor:
    """Concatenate every rank's first ``num_real_local`` rows of ``local``, in rank order.

    Ranks may hold different numbers of real rows (and of padding rows). Sizes are exchanged first; each rank's
    real rows are then padded to the largest real size for ``all_gather`` (which needs equal shapes) and the
    padding is cut off again, so padded duplicate samples never reach a metric. Gather scores and targets with
    the same ``num_real_local`` and their rows stay aligned. Without an initialised process group this returns
    ``local[:num_real_local]``. The tensor must live on the device the process group's backend expects.
    """
    if local.dim() == 0:
        raise ValueError("local is a scalar; expected a tensor with a leading sample dimension")
    if not 0 <= num_real_local <= local.shape[0]:
        raise ValueError(f"num_real_local={num_real_local}; expected 0 <= num_real_local <= {local.shape[0]}")
    real = local[:num_real_local]
    if not (dist.is_available() and dist.is_initialized()):
        return real

    world_size = dist.get_world_size()
    local_size = torch.tensor([num_real_local], dtype=torch.int64, device=local.device)
    sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(sizes, local_size)
    real_sizes = [int(size.item()) for size in sizes]

    padded = local.new_zeros((max(real_sizes), *local.shape[1:]))
    padded[:num_real_local] = real
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(gathered, real_sizes)], dim=0)
