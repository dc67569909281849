"""Mask generators: (context, target) index tensors for the A, V and AV token sequences.

A mask configuration places ``num_blocks`` rectangles, each covering ``spatial_scale`` of a 2D plane, with aspect
ratio (height/width) drawn log-uniformly from ``aspect_ratio``; their union is the *target* (tokens to predict)
and the rest is the *context* (tokens the context encoder sees).

- Video: the plane is (height, width) of the tubelet grid and each block spans all time (V-JEPA 2 tubes).
- Audio: the plane is (time, frequency) of the patch grid (a block's height is its time extent).
- AV: video and audio are masked by their own generators and the two index sets are joined, audio indices offset
  by the number of video tokens (the AV sequence is ``[video ; audio]``).

Within a batch every sample's context has the same length, and every target too: each sample keeps a random
subset of its context (and target) of the smallest size found in the batch, so indices can be stacked and
applied by ``gather``. Dropped tokens are neither seen nor predicted; context and target stay disjoint.

Everything is drawn from a generator seeded by ``(seed, rank, worker, step)``, so masks are reproducible on
resume and differ across ranks and workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mjepa.config import BlockMaskConfig, MaskConfig
from mjepa.seeding import derived_generator


@dataclass(frozen=True)
class MaskPair:
    context: torch.Tensor  # (B, Nc) long, sorted per row
    target: torch.Tensor  # (B, Nt) long, sorted per row

    def to(self, device: torch.device | str) -> "MaskPair":
        return MaskPair(self.context.to(device, non_blocking=True), self.target.to(device, non_blocking=True))


Masks = dict[str, list[MaskPair]]


def mask_generator(seed: int, rank: int, worker: int, step: int) -> torch.Generator:
    """A torch generator whose state depends only on (seed, rank, worker, step)."""
    return derived_generator(seed, rank, worker, step)


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def block_size(cfg: BlockMaskConfig, plane: tuple[int, int], gen: torch.Generator) -> tuple[int, int]:
    """(height, width) of one block: area ``spatial_scale·H·W``, log-uniform aspect ratio, kept inside the plane.

    When the aspect ratio asks for more than the plane allows on one side, the other side grows so that the area
    still matches the configured scale where possible.
    """
    height, width = plane
    area = cfg.spatial_scale * height * width
    ratio = math.exp(_uniform(gen, math.log(cfg.aspect_ratio[0]), math.log(cfg.aspect_ratio[1])))
    h = int(round(math.sqrt(area * ratio)))
    w = int(round(math.sqrt(area / ratio)))
    if h > height:
        h, w = height, int(round(area / height))
    if w > width:
        w, h = width, int(round(area / width))
    return min(max(h, 1), height), min(max(w, 1), width)


def sample_block_mask(
    cfg: BlockMaskConfig, grid: tuple[int, int, int], gen: torch.Generator
) -> torch.Tensor:
    """Boolean target mask ``(T·H·W,)`` over a time-major grid: union of blocks on the (H, W) plane, all T."""
    t, height, width = grid
    plane = torch.zeros(height, width, dtype=torch.bool)
    for _ in range(cfg.num_blocks):
        h, w = block_size(cfg, (height, width), gen)
        top = int(torch.randint(0, height - h + 1, (), generator=gen))
        left = int(torch.randint(0, width - w + 1, (), generator=gen))
        plane[top:top + h, left:left + w] = True
    return plane.reshape(1, -1).expand(t, -1).reshape(-1)


def _sample_with_context(
    cfg: BlockMaskConfig, grid: tuple[int, int, int], min_context: int, gen: torch.Generator, max_tries: int = 50
) -> torch.Tensor:
    num_tokens = grid[0] * grid[1] * grid[2]
    for _ in range(max_tries):
        target = sample_block_mask(cfg, grid, gen)
        if num_tokens - int(target.sum()) >= min_context:
            return target
    raise ValueError(
        f"mask config {cfg} on grid {grid} left fewer than min_context={min_context} context tokens in "
        f"{max_tries} draws; lower num_blocks or spatial_scale, or use a larger input"
    )


def _equalise(rows: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """Stack index rows after cutting each to the shortest length by a random subset (kept sorted)."""
    length = min(len(r) for r in rows)
    out = []
    for row in rows:
        if len(row) > length:
            keep = torch.randperm(len(row), generator=gen)[:length]
            row = row[keep.sort().values]
        out.append(row)
    return torch.stack(out)


def sample_mask_pair(
    cfg: BlockMaskConfig, grid: tuple[int, int, int], batch_size: int, min_context: int, gen: torch.Generator
) -> MaskPair:
    """One (context, target) pair for a batch on a time-major ``(T, H, W)`` grid."""
    contexts, targets = [], []
    for _ in range(batch_size):
        target = _sample_with_context(cfg, grid, min_context, gen)
        targets.append(target.nonzero().squeeze(1))
        contexts.append((~target).nonzero().squeeze(1))
    return MaskPair(_equalise(contexts, gen), _equalise(targets, gen))


def join_pairs(video: MaskPair, audio: MaskPair, num_video_tokens: int) -> MaskPair:
    """The AV pair: video indices first, audio indices shifted past the video tokens."""
    return MaskPair(
        torch.cat([video.context, audio.context + num_video_tokens], dim=1),
        torch.cat([video.target, audio.target + num_video_tokens], dim=1),
    )


class MaskSampler:
    """Draws the masks of every mode and mask configuration for one batch.

    ``audio_grid`` is the audio patch grid ``(time, freq)``; ``video_grid`` the tubelet grid ``(T, H, W)``.
    """

    def __init__(self, config: MaskConfig, modes: tuple[str, ...] = ("A", "V", "AV")) -> None:
        self.config = config
        self.modes = modes

    def sample(
        self,
        batch_size: int,
        audio_grid: tuple[int, int] | None,
        video_grid: tuple[int, int, int] | None,
        seed: int,
        rank: int = 0,
        worker: int = 0,
        step: int = 0,
    ) -> Masks:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        gen = mask_generator(seed, rank, worker, step)
        cfg = self.config
        audio_plane = None if audio_grid is None else (1, int(audio_grid[0]), int(audio_grid[1]))
        video = None if video_grid is None else tuple(int(g) for g in video_grid)
        masks: Masks = {}
        for mode in self.modes:
            if "A" in mode and audio_plane is None:
                raise ValueError(f"mode {mode!r} needs an audio grid")
            if "V" in mode and video is None:
                raise ValueError(f"mode {mode!r} needs a video grid")
            pairs = []
            for video_cfg, audio_cfg in zip(cfg.video, cfg.audio):
                if mode == "A":
                    pairs.append(sample_mask_pair(audio_cfg, audio_plane, batch_size, cfg.min_context, gen))
                elif mode == "V":
                    pairs.append(sample_mask_pair(video_cfg, video, batch_size, cfg.min_context, gen))
                else:
                    v = sample_mask_pair(video_cfg, video, batch_size, cfg.min_context, gen)
                    a = sample_mask_pair(audio_cfg, audio_plane, batch_size, cfg.min_context, gen)
                    pairs.append(join_pairs(v, a, math.prod(video)))
            masks[mode] = pairs
        return masks


def masks_to(masks: Masks, device: torch.device | str) -> Masks:
    return {mode: [pair.to(device) for pair in pairs] for mode, pairs in masks.items()}
