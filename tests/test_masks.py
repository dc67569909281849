import math

import pytest
import torch

from mjepa.config import BlockMaskConfig, MaskConfig
from mjepa.grids import TokenGrid
from mjepa.masks import MaskSampler, block_size, fixed_lengths, mask_generator, sample_block_mask, sample_blocks

AUDIO_GRID = TokenGrid(64, 8, 1)  # 1024 frames x 128 mel bins at 16x16 patches: (time, frequency, 1)
VIDEO_GRID = (8, 14, 14)  # 16 frames at 224 px, 2x16x16 tubelets (vitl16-as2m)
VIDEO_GRID_256 = (8, 16, 16)  # 16 frames at 256 px (vitg16-as2m-vm2m)


def _sampler(audio_grid=AUDIO_GRID, video_grid=VIDEO_GRID):
    return MaskSampler(MaskConfig(), audio_grid, video_grid)


def _sample(batch_size=4, seed=0, step=0, first_row=0):
    return _sampler().sample(batch_size, seed, step, first_row)


def test_context_and_target_disjoint_nonempty_of_the_fixed_lengths():
    sampler = _sampler()
    masks = sampler.sample(6, seed=0)
    sizes = {"A": 64 * 8, "V": 8 * 14 * 14, "AV": 64 * 8 + 8 * 14 * 14}
    assert set(masks) == {"A", "V", "AV"}
    for mode, pairs in masks.items():
        assert len(pairs) == 2  # one pair per mask configuration
        for pair, lengths in zip(pairs, sampler.lengths()[mode]):
            assert pair.context.dtype == torch.long and pair.target.dtype == torch.long
            assert tuple(pair.context.shape) == (6, lengths.context) and tuple(pair.target.shape) == (6, lengths.target)
            assert lengths.context > 0 and lengths.target > 0
            for ctx, tgt in zip(pair.context, pair.target):
                assert len(set(ctx.tolist()) & set(tgt.tolist())) == 0
                assert len(set(ctx.tolist())) == len(ctx) and len(set(tgt.tolist())) == len(tgt)
                assert torch.equal(ctx, ctx.sort().values) and torch.equal(tgt, tgt.sort().values)
                assert int(ctx.max()) < sizes[mode] and int(tgt.max()) < sizes[mode]


@pytest.mark.parametrize("video_grid", [VIDEO_GRID, VIDEO_GRID_256], ids=["vitl-224px", "vitg-256px"])
def test_lengths_do_not_depend_on_the_batch_size_at_the_presets_grids(video_grid):
    sampler = _sampler(video_grid=video_grid)
    expected = sampler.lengths()
    for batch in (16, 64, 512):
        masks = sampler.sample(batch, seed=1, step=3)
        for mode, pairs in masks.items():
            got = [(p.context.shape[1], p.target.shape[1]) for p in pairs]
            assert got == [(length.context, length.target) for length in expected[mode]], (batch, mode)
            assert all(p.context.shape[0] == batch for p in pairs)


def test_lengths_keep_the_methods_masking_ratios_at_the_vitl_grid():
    """Short-range configs keep about a quarter of the tokens as context, long-range ones under a tenth: what
    batch-16 runs of V-JEPA-style equalisation keep, and far more than equalising over 512 samples would."""
    lengths = _sampler().lengths()
    video_short, video_long = lengths["V"]
    audio_short, audio_long = lengths["A"]
    assert 0.2 < video_short.context / 1568 < 0.35 and 0.05 < video_long.context / 1568 < 0.12
    assert 0.15 < audio_short.context / 512 < 0.3 and 0.04 < audio_long.context / 512 < 0.12


def test_fixed_lengths_are_a_function_of_config_and_grid_only():
    fixed_lengths.cache_clear()
    first = fixed_lengths(BlockMaskConfig(8, 0.15), (8, 14, 14), 0.1, 4)
    fixed_lengths.cache_clear()
    assert fixed_lengths(BlockMaskConfig(8, 0.15), (8, 14, 14), 0.1, 4) == first
    assert fixed_lengths(BlockMaskConfig(8, 0.15), (8, 16, 16), 0.1, 4) != first


def test_a_sample_gets_the_same_masks_whatever_else_is_in_its_batch():
    sampler = _sampler()
    whole = sampler.sample(8, seed=3, step=7)
    part = sampler.sample_rows(3, 7, [5, 2])
    for mode in whole:
        for full, sub in zip(whole[mode], part[mode]):
            assert torch.equal(full.context[[5, 2]], sub.context) and torch.equal(full.target[[5, 2]], sub.target)


def test_deterministic_given_seed_step_and_row():
    a, b = _sample(seed=3, step=7), _sample(seed=3, step=7)
    for mode in a:
        for pa, pb in zip(a[mode], b[mode]):
            assert torch.equal(pa.context, pb.context) and torch.equal(pa.target, pb.target)
    for other in (_sample(seed=4, step=7), _sample(seed=3, step=8), _sample(seed=3, step=7, first_row=1)):
        assert not torch.equal(other["V"][0].target, a["V"][0].target)


def test_av_masks_cover_both_modalities_with_offset_audio_indices():
    num_video = 8 * 14 * 14
    for pair in _sample()["AV"]:
        for idx in (pair.context, pair.target):
            assert (idx < num_video).any(dim=1).all() and (idx >= num_video).any(dim=1).all()


def test_video_blocks_span_all_time():
    gen = mask_generator(0, 0, 0)
    mask = sample_block_mask(BlockMaskConfig(8, 0.15), VIDEO_GRID, gen).view(VIDEO_GRID)
    assert torch.equal(mask, mask[:1].expand_as(mask))


@pytest.mark.parametrize("scale,plane", [(0.15, (14, 14)), (0.70, (14, 14)), (0.15, (64, 8))])
def test_single_block_area_matches_scale_where_no_side_is_clamped(scale, plane):
    cfg = BlockMaskConfig(1, scale, (0.75, 1.5) if plane[0] == plane[1] else (0.75, 3.0))
    draws = torch.rand(400, generator=torch.Generator().manual_seed(1)).tolist()
    fractions = [math.prod(block_size(cfg, plane, u)) / math.prod(plane) for u in draws]
    assert abs(sum(fractions) / len(fractions) - scale) < 0.03


def test_block_sides_are_clamped_to_the_plane_not_stretched_to_keep_the_area():
    cfg = BlockMaskConfig(1, 0.70, (0.75, 3.0))
    # At the longest ratio the block would be 1.45 of the time axis: clamped to 64, its frequency extent stays
    # sqrt(0.7 / 3) of 8 rows instead of growing to keep 70 % of the area.
    assert block_size(cfg, (64, 8), 0.999999) == (64, 4)
    assert block_size(cfg, (64, 8), 0.0) == (46, 8)


def _block_widths(cfg: BlockMaskConfig, plane: tuple[int, int], draws: int) -> list[int]:
    gen = mask_generator(5, 0, 0)
    return [w for _ in range(draws) for _, _, _, w in sample_blocks(cfg, plane, gen)]


def test_audio_blocks_span_the_frequency_rows_their_scale_implies():
    """Over 1,000 draws on the 64 x 8 audio grid: a short-range block spans 2-4 of the 8 frequency rows, a
    long-range one 4-8, all those heights occur, and the full 8 rows are the exception, not the rule."""
    short, long = MaskConfig().audio
    short_widths, long_widths = _block_widths(short, (64, 8), 1000), _block_widths(long, (64, 8), 1000)
    assert set(short_widths) == {2, 3, 4}
    assert set(long_widths) == {4, 5, 6, 7, 8}
    assert long_widths.count(8) / len(long_widths) < 0.1


def test_long_range_audio_targets_mask_frequency_as_well_as_time():
    _, long = MaskConfig().audio
    gen = mask_generator(6, 0, 0)
    pure_time = 0
    for _ in range(1000):
        plane = sample_block_mask(long, (1, 64, 8), gen).view(64, 8)
        pure_time += bool(plane[plane.any(dim=1)].all())
    assert pure_time / 1000 < 0.1  # every draw was a pure time mask when block sides were sized in tokens


@pytest.mark.parametrize("num_blocks,scale", [(8, 0.15), (2, 0.70)])
def test_masked_fraction_of_multiblock_within_expected_range(num_blocks, scale):
    gen = mask_generator(2, 0, 0)
    cfg = BlockMaskConfig(num_blocks, scale)
    fractions = [float(sample_block_mask(cfg, VIDEO_GRID, gen).float().mean()) for _ in range(300)]
    mean = sum(fractions) / len(fractions)
    independent = 1 - (1 - scale) ** num_blocks  # union of independent uniformly placed blocks, no edge effects
    assert scale <= mean <= min(1.0, num_blocks * scale)
    assert abs(mean - independent) < 0.12


def test_mask_that_leaves_no_context_is_a_clear_error():
    whole_plane = BlockMaskConfig(1, 1.0, (1.0, 1.0))
    cfg = MaskConfig(video=(whole_plane,), audio=(whole_plane,))
    with pytest.raises(ValueError, match="min_context"):
        MaskSampler(cfg, None, (2, 4, 4), modes=("V",))


def test_mode_without_its_grid_is_an_error():
    with pytest.raises(ValueError, match="audio grid"):
        MaskSampler(MaskConfig(), None, VIDEO_GRID, modes=("A",))


def test_length_quantile_out_of_range_is_refused():
    with pytest.raises(ValueError, match="length_quantile"):
        MaskConfig(length_quantile=0.5)


def test_token_sized_blocks_remain_for_ablation_and_keep_their_area():
    _, long = MaskConfig().audio
    tokens = BlockMaskConfig(long.num_blocks, long.spatial_scale, long.aspect_ratio, sides="tokens")
    widths = _block_widths(tokens, (64, 8), 200)
    assert set(widths) == {8}  # the earlier sizing: every long-range audio block spans all frequencies
    assert block_size(tokens, (64, 8), 0.5) == (45, 8)  # 70 % of 512 tokens kept by growing the time side
    with pytest.raises(ValueError, match="mask.sides"):
        BlockMaskConfig(2, 0.7, sides="pixels")
