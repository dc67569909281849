"""Cross-modal retrieval: Recall@k of paired audio and video clips.

Query i's one correct item is gallery item i (the other modality of the same clip); every other gallery item is
a distractor. Ranking is computed in chunks of queries, so a 20k x 20k evaluation needs only a
``chunk_size x N`` distance matrix at a time.

Tie rule (pessimistic): a gallery item whose distance equals the correct item's distance (or whose cosine
similarity equals it) ranks *ahead of* the correct item. Query i counts as a hit at k only if fewer than k other
gallery items are at least as close as the correct one. A degenerate embedding (e.g. all queries mapped to one
point) therefore scores as badly as it deserves instead of winning ties by index order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

METRICS = ("l1", "cosine")
DEFAULT_KS = (1, 5, 10)
DEFAULT_CHUNK_SIZE = 1024


def _check_embeddings(query: torch.Tensor, gallery: torch.Tensor) -> None:
    if query.dim() != 2 or query.shape != gallery.shape:
        raise ValueError(f"query {tuple(query.shape)} and gallery {tuple(gallery.shape)} must both be (N, D) and equal")
    if query.shape[0] == 0:
        raise ValueError("query has 0 rows; expected at least one query/gallery pair")
    for name, embeddings in (("query", query), ("gallery", gallery)):
        if not torch.isfinite(embeddings).all():
            raise ValueError(f"{name} embeddings contain NaN/inf; expected finite values")


def _check_ks(ks: Sequence[int]) -> None:
    if len(ks) == 0 or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks={tuple(ks)}; expected a non-empty sequence of integers >= 1")


def _closeness(query_chunk: torch.Tensor, gallery: torch.Tensor, metric: str) -> torch.Tensor:
    """(chunk, N) matrix where larger means closer, so both metrics share one ranking rule."""
    if metric == "l1":
        return -torch.cdist(query_chunk, gallery, p=1)
    return query_chunk @ gallery.T  # rows are already unit-normalised: this is cosine similarity


def _unit_rows(embeddings: torch.Tensor, name: str) -> torch.Tensor:
    norms = embeddings.norm(dim=1)
    if (norms == 0).any():
        raise ValueError(f"{name} row {int((norms == 0).nonzero()[0])} is all zeros; cosine needs non-zero rows")
    return embeddings / norms.unsqueeze(1)


def correct_item_ranks(
    query_embeddings: torch.Tensor,
    gallery_embeddings: torch.Tensor,
    metric: str = "l1",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """(N,) int64: for each query, how many *other* gallery items are at least as close as its correct item.

    0 means the correct item is the unique nearest neighbour; ties count against the query (pessimistic rule).
    """
    _check_embeddings(query_embeddings, gallery_embeddings)
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; expected one of {METRICS}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size}; expected >= 1")
    if metric == "cosine":
        query_embeddings = _unit_rows(query_embeddings, "query")
        gallery_embeddings = _unit_rows(gallery_embeddings, "gallery")

    num_queries = query_embeddings.shape[0]
    ranks = torch.empty(num_queries, dtype=torch.int64)
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        closeness = _closeness(query_embeddings[start:stop], gallery_embeddings, metric)
        rows = torch.arange(stop - start, device=closeness.device)
        correct = closeness[rows, rows + start]
        # The correct item is compared with itself too (always "at least as close"): subtract that one.
        ranks[start:stop] = (closeness >= correct.unsqueeze(1)).sum(dim=1).cpu() - 1
    return ranks


def recall_at_k(
    query_embeddings: torch.Tensor,
    gallery_embeddings: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    metric: str = "l1",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[int, float]:
    """Recall@k for each k: the fraction of queries i whose gallery item i ranks within the top k.

    ``metric="l1"``: closeness is negative L1 distance; ``metric="cosine"``: cosine similarity. Ties follow the
    module's pessimistic rule. A k larger than N gives 1.0.
    """
    _check_ks(ks)
    ranks = correct_item_ranks(query_embeddings, gallery_embeddings, metric=metric, chunk_size=chunk_size)
    return {int(k): float((ranks < k).to(torch.float64).mean()) for k in ks}


@dataclass(frozen=True)
class RetrievalResult:
    """Recall@k in both directions for one retrieval method."""

    method: str
    audio_to_video: dict[int, float]
    video_to_audio: dict[int, float]

    def as_flat_dict(self) -> dict[str, float]:
        """Metric names for logs, e.g. ``retrieval/predictor_l1/a2v/R@1``."""
        flat = {}
        for direction, recalls in (("a2v", self.audio_to_video), ("v2a", self.video_to_audio)):
            for k, recall in recalls.items():
                flat[f"retrieval/{self.method}/{direction}/R@{k}"] = recall
        return flat


def _apply_head(
    head: Callable[[torch.Tensor], torch.Tensor], pooled: torch.Tensor, expected_shape: torch.Size, name: str
) -> torch.Tensor:
    with torch.no_grad():
        predicted = head(pooled)
    if predicted.shape != expected_shape:
        raise ValueError(
            f"{name} output {tuple(predicted.shape)}; expected the target modality's shape {tuple(expected_shape)}"
        )
    return predicted


def cross_modal_retrieval(
    audio_pooled: torch.Tensor,
    video_pooled: torch.Tensor,
    head_a_to_v: Callable[[torch.Tensor], torch.Tensor],
    head_v_to_a: Callable[[torch.Tensor], torch.Tensor],
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    audio_queries: torch.Tensor | None = None,
    video_queries: torch.Tensor | None = None,
) -> dict[str, RetrievalResult]:
    """Audio->video and video->audio Recall@k of N paired clips, two ways.

    ``audio_pooled`` and ``video_pooled`` are (N, E): row i of both is clip i (pooled encoder output).
    ``audio_queries`` / ``video_queries`` (default: the pooled features themselves) are what the heads read: for
    MJEPA, the context encoder's pooled output, while the gallery is the target encoder's pooled, normalised
    output — the pairing the heads were trained on.

    - ``"predictor_l1"`` (the MJEPA paper's protocol): A->V maps each audio query through ``head_a_to_v`` (the
      cross-modal predictor, (N, E) -> (N, E)) and ranks all N *pooled video* features by L1 distance to that
      prediction; V->A likewise maps video through ``head_v_to_a`` and ranks pooled audio features.
    - ``"cosine"`` (head-free baseline): A->V ranks pooled video by cosine similarity to the raw pooled audio
      query, V->A the reverse; it needs both modalities in one space of equal width.

    Heads run under ``torch.no_grad()``; putting a module in eval mode is the caller's job. Ties: pessimistic
    (see the module docstring). Returns ``{"predictor_l1": RetrievalResult, "cosine": RetrievalResult}``.
    """
    if audio_pooled.dim() != 2 or video_pooled.shape != audio_pooled.shape:
        raise ValueError(
            f"audio_pooled {tuple(audio_pooled.shape)} and video_pooled {tuple(video_pooled.shape)} "
            "must both be (N, E) and equal"
        )
    audio_queries = audio_pooled if audio_queries is None else audio_queries
    video_queries = video_pooled if video_queries is None else video_queries
    predicted_video = _apply_head(head_a_to_v, audio_queries, video_pooled.shape, "head_a_to_v")
    predicted_audio = _apply_head(head_v_to_a, video_queries, audio_pooled.shape, "head_v_to_a")
    predictor_l1 = RetrievalResult(
        method="predictor_l1",
        audio_to_video=recall_at_k(predicted_video, video_pooled, ks, metric="l1", chunk_size=chunk_size),
        video_to_audio=recall_at_k(predicted_audio, audio_pooled, ks, metric="l1", chunk_size=chunk_size),
    )
    cosine = RetrievalResult(
        method="cosine",
        audio_to_video=recall_at_k(audio_pooled, video_pooled, ks, metric="cosine", chunk_size=chunk_size),
        video_to_audio=recall_at_k(video_pooled, audio_pooled, ks, metric="cosine", chunk_size=chunk_size),
    )
    return {"predictor_l1": predictor_l1, "cosine": cosine}
