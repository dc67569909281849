"""Mask generators: (context, target) index tensors for the A, V and AV token sequences.

A mask configuration places ``num_blocks`` rectangles, each covering ``spatial_scale`` of a 2D plane, with aspect
ratio (height/width, in units of the plane's sides) drawn log-uniformly from ``aspect_ratio`` and each side clamped
to the plane (:func:`block_size`); their union is the *target* (tokens to predict) and the rest is the *context*
(tokens the context encoder sees).

- Video: the plane is (height, width) of the tubelet grid and each block spans all time (V-JEPA 2 tubes).
- Audio: the plane is (time, frequency) of the patch grid (a block's height is its time extent, its width its
  extent over frequency).
- AV: video and audio are masked by their own generators and the two index sets are joined, audio indices offset
  by the number of video tokens (the AV sequence is ``[video ; audio]``).

Fixed lengths. For each mask configuration and grid, the context keeps exactly ``context`` tokens and the target
holds exactly ``target`` tokens (:func:`fixed_lengths`): the ``length_quantile`` and ``1 - length_quantile``
quantiles of the union's size over a fixed, seeded set of draws. A sample whose union falls outside that range is
redrawn; one inside it keeps a random subset of its context and of its target of the fixed sizes (dropped tokens are
neither seen nor predicted; context and target stay disjoint). The lengths depend on the grid and the configuration
only, never on the batch size, the number of ranks or loader workers, so index rows stack for ``gather`` and a run at
batch 512 masks exactly like one at batch 16.

Per-sample generators. Every sample's masks come from a generator keyed by ``(seed, step, index)``, where ``index``
is the sample's row in the step's global batch: the same sample gets the same masks at any world size, worker
count or accumulation split, and on resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from mjepa.config import BlockMaskConfig, MaskConfig
from mjepa.grids import TokenGrid
from mjepa.seeding import derived_generator

# Key tags that keep mask draws apart from every other seeded stream (augmentations use (seed, position)).
MASK_STREAM_KEY = 0x4D41534B  # "MASK"
CALIBRATION_SEED = 0x4C454E  # the lengths are a property of (config, grid), not of a run's seed
CALIBRATION_DRAWS = 1000


@dataclass(frozen=True)
class MaskPair:
    context: torch.Tensor  # (B, Nc) long, sorted per row
    target: torch.Tensor  # (B, Nt) long, sorted per row

    def to(self, device: torch.device | str) -> MaskPair:
        return MaskPair(self.context.to(device, non_blocking=True), self.target.to(device, non_blocking=True))

    def pin_memory(self) -> MaskPair:
        return MaskPair(self.context.pin_memory(), self.target.pin_memory())


Masks = dict[str, list[MaskPair]]
# One sample's masks: per mode, per mask configuration, (context, target) 1-D index tensors.
SampleMasks = dict[str, list[tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class MaskLengths:
    context: int
    target: int


def mask_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of one sample's masks: a function of (seed, step, row in the step's global batch) only."""
    return derived_generator(seed, MASK_STREAM_KEY, step, index)


def block_size(cfg: BlockMaskConfig, plane: tuple[int, int], ratio_draw: float) -> tuple[int, int]:
    """(height, width) of one block on a ``plane`` of (height, width) tokens, at the uniform draw ``ratio_draw``.

    The block covers ``spatial_scale`` of the plane with aspect ratio ``r`` drawn log-uniformly from
    ``cfg.aspect_ratio``, both measured in the plane's own units: its sides are ``sqrt(scale * r)`` of the plane's
    height and ``sqrt(scale / r)`` of its width. Each side is then clamped to the plane, without growing the other
    to keep the area. On a square grid (video) this is V-JEPA 2's block; on the 64 x 8 audio grid a block's extent
    over frequency follows its scale and ratio (a long-range block spans 4 to 8 of the 8 rows, a short-range one 2
    to 4), where sizing the sides in tokens would make every long-range block span all frequencies.
    """
    height, width = plane
    low, high = math.log(cfg.aspect_ratio[0]), math.log(cfg.aspect_ratio[1])
    ratio = math.exp(low + (high - low) * ratio_draw)
    if cfg.sides == "tokens":
        return _token_sized_block(cfg.spatial_scale, ratio, plane)
    h = int(round(math.sqrt(cfg.spatial_scale * ratio) * height))
    w = int(round(math.sqrt(cfg.spatial_scale / ratio) * width))
    return min(max(h, 1), height), min(max(w, 1), width)


def _token_sized_block(scale: float, ratio: float, plane: tuple[int, int]) -> tuple[int, int]:
    """The earlier sizing (``sides="tokens"``, kept for ablation): the ratio in tokens, and a side clamped to the
    plane grows the other so the block keeps its area."""
    height, width = plane
    area = scale * height * width
    h = int(round(math.sqrt(area * ratio)))
    w = int(round(math.sqrt(area / ratio)))
    if h > height:
        h, w = height, int(round(area / height))
    if w > width:
        w, h = width, int(round(area / width))
    return min(max(h, 1), height), min(max(w, 1), width)


def sample_block_mask(cfg: BlockMaskConfig, grid: tuple[int, int, int], gen: torch.Generator) -> torch.Tensor:
    """Boolean target mask ``(T·H·W,)`` over a time-major grid: union of blocks on the (H, W) plane, all T."""
    t, height, width = grid
    plane = torch.zeros(height, width, dtype=torch.bool)
    for top, left, h, w in sample_blocks(cfg, (height, width), gen):
        plane[top : top + h, left : left + w] = True
    return plane.reshape(1, -1).expand(t, -1).reshape(-1)


def sample_blocks(
    cfg: BlockMaskConfig, plane: tuple[int, int], gen: torch.Generator
) -> list[tuple[int, int, int, int]]:
    """The ``num_blocks`` blocks of one draw on a ``plane`` of (height, width): ``(top, left, height, width)``."""
    height, width = plane
    # One draw of (aspect ratio, top, left) per block, read on the host: a few calls instead of three per block.
    draws = torch.rand(cfg.num_blocks, 3, generator=gen, dtype=torch.float64).tolist()
    blocks = []
    for ratio_draw, top_draw, left_draw in draws:
        h, w = block_size(cfg, plane, ratio_draw)
        top = min(int(top_draw * (height - h + 1)), height - h)
        left = min(int(left_draw * (width - w + 1)), width - w)
        blocks.append((top, left, h, w))
    return blocks


@lru_cache(maxsize=64)
def fixed_lengths(cfg: BlockMaskConfig, grid: tuple[int, int, int], quantile: float, min_context: int) -> MaskLengths:
    """Context and target lengths of ``cfg`` on ``grid``: a pure function of the two (and the quantile).

    Over ``CALIBRATION_DRAWS`` seeded draws of the union, the target length is its ``quantile``-quantile and the
    context length what the ``1 - quantile``-quantile leaves (at least ``min_context``). About ``2·quantile`` of
    draws fall outside and are redrawn by :func:`sample_fixed_pair`.
    """
    num_tokens = math.prod(grid)
    gen = derived_generator(CALIBRATION_SEED, *grid)
    sizes = sorted(int(sample_block_mask(cfg, grid, gen).sum()) for _ in range(CALIBRATION_DRAWS))
    low = sizes[int(math.floor(quantile * (CALIBRATION_DRAWS - 1)))]
    high = sizes[int(math.ceil((1.0 - quantile) * (CALIBRATION_DRAWS - 1)))]
    context = max(num_tokens - high, min_context)
    target = min(low, num_tokens - context)
    accepted = sum(1 for size in sizes if size >= target and num_tokens - size >= context)
    if target < 1 or accepted < 0.01 * CALIBRATION_DRAWS:
        raise ValueError(
            f"mask config {cfg} on grid {grid} leaves no room for both {min_context} context tokens "
            f"(masks.min_context) and a target; lower num_blocks or spatial_scale, or use a larger input"
        )
    return MaskLengths(context, target)


def _random_subset(index: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    if index.numel() == length:
        return index
    keep = torch.randperm(index.numel(), generator=gen)[:length]
    return index[keep.sort().values]


def sample_fixed_pair(
    cfg: BlockMaskConfig, grid: tuple[int, int, int], lengths: MaskLengths, gen: torch.Generator, max_tries: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample's ``(context, target)`` 1-D index tensors of exactly ``lengths`` on a time-major grid."""
    num_tokens = math.prod(grid)
    for _ in range(max_tries):
        target = sample_block_mask(cfg, grid, gen)
        size = int(target.sum())
        if size >= lengths.target and num_tokens - size >= lengths.context:
            context_index = (~target).nonzero().squeeze(1)
            target_index = target.nonzero().squeeze(1)
            return _random_subset(context_index, lengths.context, gen), _random_subset(
                target_index, lengths.target, gen
            )
    raise ValueError(
        f"mask config {cfg} on grid {grid}: no draw in {max_tries} left {lengths.context} context and "
        f"{lengths.target} target tokens; lower num_blocks or spatial_scale, or use a larger input"
    )


def stack_sample_masks(samples: list[SampleMasks]) -> Masks:
    """Per-sample masks (equal lengths by construction) -> batch masks ``(B, n)`` per mode and configuration."""
    if not samples:
        raise ValueError("no sample masks to stack")
    out: Masks = {}
    for mode, pairs in samples[0].items():
        out[mode] = [
            MaskPair(torch.stack([s[mode][k][0] for s in samples]), torch.stack([s[mode][k][1] for s in samples]))
            for k in range(len(pairs))
        ]
    return out


class MaskSampler:
    """Draws every mode's masks for one sample (or a batch of samples) on fixed token grids.

    ``audio_grid`` and ``video_grid`` are the token grids the tokenizers give (:class:`mjepa.grids.TokenGrid`:
    audio ``(time, frequency, 1)``, video ``(time, height, width)``); a grid may be None when no active mode needs it.
    Audio blocks lie on the (time, frequency) plane, video blocks on the (height, width) plane across all time. The
    fixed lengths are computed here, once.
    """

    def __init__(
        self,
        config: MaskConfig,
        audio_grid: TokenGrid | None,
        video_grid: TokenGrid | None,
        modes: tuple[str, ...] = ("A", "V", "AV"),
    ) -> None:
        self.config = config
        self.modes = tuple(modes)
        self.audio_grid = None if audio_grid is None else _checked_grid(audio_grid, "audio_grid")
        self.video_grid = None if video_grid is None else _checked_grid(video_grid, "video_grid")
        if self.audio_grid is not None and self.audio_grid.width != 1:
            raise ValueError(
                f"audio_grid {tuple(self.audio_grid)} must be (time, frequency, 1), as the audio tokenizer gives it"
            )
        # The audio plane as the block sampler reads grids: one time slice of a (time, frequency) plane.
        self._audio_plane = None if self.audio_grid is None else (1, self.audio_grid.time, self.audio_grid.height)
        for mode in self.modes:
            if "A" in mode and self.audio_grid is None:
                raise ValueError(f"mode {mode!r} needs an audio grid")
            if "V" in mode and self.video_grid is None:
                raise ValueError(f"mode {mode!r} needs a video grid")
        q, floor = config.length_quantile, config.min_context
        self.audio_lengths = (
            None if self.audio_grid is None else [fixed_lengths(c, self._audio_plane, q, floor) for c in config.audio]
        )
        self.video_lengths = (
            None if self.video_grid is None else [fixed_lengths(c, self.video_grid, q, floor) for c in config.video]
        )

    @property
    def num_video_tokens(self) -> int:
        return self.video_grid.num_tokens

    def lengths(self) -> dict[str, list[MaskLengths]]:
        """Per mode and mask configuration, the context and target lengths every sample gets."""
        out = {}
        for mode in self.modes:
            per_config = []
            for k in range(len(self.config.video)):
                parts = ([self.video_lengths[k]] if "V" in mode else []) + (
                    [self.audio_lengths[k]] if "A" in mode else []
                )
                per_config.append(MaskLengths(sum(p.context for p in parts), sum(p.target for p in parts)))
            out[mode] = per_config
        return out

    def sample_one(self, seed: int, step: int, index: int) -> SampleMasks:
        """The masks of the sample at row ``index`` of step ``step``'s global batch."""
        gen = mask_generator(seed, step, index)
        cfg = self.config
        out: SampleMasks = {}
        for mode in self.modes:
            pairs = []
            for k, (video_cfg, audio_cfg) in enumerate(zip(cfg.video, cfg.audio)):
                if mode == "A":
                    pairs.append(sample_fixed_pair(audio_cfg, self._audio_plane, self.audio_lengths[k], gen))
                elif mode == "V":
                    pairs.append(sample_fixed_pair(video_cfg, self.video_grid, self.video_lengths[k], gen))
                else:
                    vc, vt = sample_fixed_pair(video_cfg, self.video_grid, self.video_lengths[k], gen)
                    ac, at = sample_fixed_pair(audio_cfg, self._audio_plane, self.audio_lengths[k], gen)
                    offset = self.num_video_tokens
                    pairs.append((torch.cat([vc, ac + offset]), torch.cat([vt, at + offset])))
            out[mode] = pairs
        return out

    def sample_rows(self, seed: int, step: int, rows: list[int]) -> Masks:
        """Batch masks for the samples at ``rows`` of step ``step``'s global batch."""
        return stack_sample_masks([self.sample_one(seed, step, row) for row in rows])

    def sample(self, batch_size: int, seed: int, step: int = 0, first_row: int = 0) -> Masks:
        """Batch masks for rows ``first_row .. first_row + batch_size`` of step ``step``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return self.sample_rows(seed, step, list(range(first_row, first_row + batch_size)))


def _checked_grid(grid, name: str) -> TokenGrid:
    if len(grid) != 3:
        raise ValueError(
            f"{name} {tuple(grid)} must be a token grid (time, height, width), as the tokenizers give it "
            f"(audio: (time, frequency, 1))"
        )
    return TokenGrid(*(int(g) for g in grid))


def masks_to(masks: Masks, device: torch.device | str) -> Masks:
    return {mode: [pair.to(device) for pair in pairs] for mode, pairs in masks.items()}


def masks_nbytes(masks: Masks) -> int:
    """Bytes of every index tensor in ``masks`` (what moving them to a device copies)."""
    return sum(t.numel() * t.element_size() for pairs in masks.values() for p in pairs for t in (p.context, p.target))
