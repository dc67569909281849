import math

import pytest
import torch

from mjepa.config import BlockMaskConfig, MaskConfig
from mjepa.masks import MaskSampler, block_size, mask_generator, sample_block_mask

AUDIO_GRID = (64, 8)  # 1024 frames x 128 mel bins at 16x16 patches
VIDEO_GRID = (8, 14, 14)  # 16 frames at 224 px, 2x16x16 tubelets


def _sample(batch_size=4, seed=0, step=0, rank=0, worker=0):
    return MaskSampler(MaskConfig()).sample(batch_size, AUDIO_GRID, VIDEO_GRID, seed, rank, worker, step)


def test_context_and_target_disjoint_nonempty_equal_length():
    masks = _sample(batch_size=6)
    sizes = {"A": 64 * 8, "V": 8 * 14 * 14, "AV": 64 * 8 + 8 * 14 * 14}
    assert set(masks) == {"A", "V", "AV"}
    for mode, pairs in masks.items():
        assert len(pairs) == 2  # one pair per mask configuration
        for pair in pairs:
            assert pair.context.dtype == torch.long and pair.target.dtype == torch.long
            assert pair.context.shape[0] == pair.target.shape[0] == 6
            assert pair.context.shape[1] > 0 and pair.target.shape[1] > 0
            for ctx, tgt in zip(pair.context, pair.target):
                assert len(set(ctx.tolist()) & set(tgt.tolist())) == 0
                assert len(set(ctx.tolist())) == len(ctx) and len(set(tgt.tolist())) == len(tgt)
                assert int(ctx.max()) < sizes[mode] and int(tgt.max()) < sizes[mode]


def test_av_masks_cover_both_modalities_with_offset_audio_indices():
    num_video = 8 * 14 * 14
    for pair in _sample()["AV"]:
        for idx in (pair.context, pair.target):
            assert (idx < num_video).any(dim=1).all() and (idx >= num_video).any(dim=1).all()


def test_deterministic_given_seed_rank_worker_step():
    a, b = _sample(seed=3, step=7), _sample(seed=3, step=7)
    for mode in a:
        for pa, pb in zip(a[mode], b[mode]):
            assert torch.equal(pa.context, pb.context) and torch.equal(pa.target, pb.target)
    for other in (_sample(seed=4, step=7), _sample(seed=3, step=8), _sample(seed=3, step=7, rank=1),
                  _sample(seed=3, step=7, worker=1)):
        assert not torch.equal(other["V"][0].target, a["V"][0].target)


def test_video_blocks_span_all_time():
    gen = mask_generator(0, 0, 0, 0)
    mask = sample_block_mask(BlockMaskConfig(8, 0.15), VIDEO_GRID, gen).view(VIDEO_GRID)
    assert torch.equal(mask, mask[:1].expand_as(mask))


@pytest.mark.parametrize("scale,plane", [(0.15, (14, 14)), (0.70, (14, 14)), (0.15, (64, 8)), (0.70, (64, 8))])
def test_single_block_area_matches_scale(scale, plane):
    cfg = BlockMaskConfig(1, scale, (0.75, 1.5) if plane[0] == plane[1] else (0.75, 3.0))
    gen = mask_generator(1, 0, 0, 0)
    fractions = [math.prod(block_size(cfg, plane, gen)) / math.prod(plane) for _ in range(400)]
    assert abs(sum(fractions) / len(fractions) - scale) < 0.03


@pytest.mark.parametrize("num_blocks,scale", [(8, 0.15), (2, 0.70)])
def test_masked_fraction_of_multiblock_within_expected_range(num_blocks, scale):
    gen = mask_generator(2, 0, 0, 0)
    cfg = BlockMaskConfig(num_blocks, scale)
    fractions = [float(sample_block_mask(cfg, VIDEO_GRID, gen).float().mean()) for _ in range(300)]
    mean = sum(fractions) / len(fractions)
    independent = 1 - (1 - scale) ** num_blocks  # union of independent uniformly placed blocks, no edge effects
    assert scale <= mean <= min(1.0, num_blocks * scale)
    assert abs(mean - independent) < 0.12


def test_mask_that_leaves_no_context_is_a_clear_error():
    cfg = MaskConfig(video=(BlockMaskConfig(1, 1.0),), audio=(BlockMaskConfig(1, 1.0),))
    with pytest.raises(ValueError, match="min_context"):
        MaskSampler(cfg, modes=("V",)).sample(2, None, (2, 4, 4), seed=0)


def test_mode_without_its_grid_is_an_error():
    with pytest.raises(ValueError, match="audio grid"):
        MaskSampler(MaskConfig(), modes=("A",)).sample(2, None, VIDEO_GRID, seed=0)
