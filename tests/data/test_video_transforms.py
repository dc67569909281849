import math

import pytest
import torch

from mjepa.data.preprocess.video_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoTransformConfig,
    eval_video_transform,
    evenly_spaced_window_starts,
    resize_frames,
    sample_crop_box,
    spatial_views,
    train_video_transform,
)


def random_frames(seed: int, frames: int = 4, height: int = 90, width: int = 160) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (frames, height, width, 3), generator=generator, dtype=torch.uint8)


def halves(frames: int = 2, height: int = 60, width: int = 120) -> torch.Tensor:
    """Left third red, right third blue, middle green: tells crops apart."""
    video = torch.zeros(frames, height, width, 3, dtype=torch.uint8)
    video[:, :, : width // 3, 0] = 255
    video[:, :, width // 3 : 2 * width // 3, 1] = 255
    video[:, :, 2 * width // 3 :, 2] = 255
    return video


def unnormalise(clip: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return clip * std + mean


def test_train_transform_shape_and_determinism():
    frames = random_frames(0)
    config = VideoTransformConfig(output_size=32)
    first = train_video_transform(frames, config, torch.Generator().manual_seed(11))
    again = train_video_transform(frames, config, torch.Generator().manual_seed(11))
    other = train_video_transform(frames, config, torch.Generator().manual_seed(12))
    assert first.shape == (3, 4, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_same_crop_for_every_frame_of_a_clip():
    frame = random_frames(1, frames=1)
    config = VideoTransformConfig(output_size=24)
    clip = train_video_transform(frame.repeat(5, 1, 1, 1), config, torch.Generator().manual_seed(2))
    for index in range(1, 5):
        assert torch.equal(clip[:, 0], clip[:, index])


def test_crop_boxes_respect_scale_and_aspect_ranges():
    generator = torch.Generator().manual_seed(4)
    for _ in range(200):
        top, left, height, width = sample_crop_box(90, 160, (0.3, 1.0), (0.75, 1.35), generator)
        assert 0 <= top and top + height <= 90 and 0 <= left and left + width <= 160
        assert 0.3 * 90 * 160 * 0.9 <= height * width <= 90 * 160
        assert 0.75 * 0.9 <= width / height <= 1.35 * 1.1


def test_impossible_ratio_falls_back_to_centre_crop():
    # A 10:1 strip cannot hold a crop of ratio <= 1.35 at 90 % of its area: after 10 misses, a centred crop.
    box = sample_crop_box(10, 100, (0.9, 1.0), (0.75, 1.35), torch.Generator().manual_seed(0))
    assert box == (0, (100 - 14) // 2, 10, 14)


def test_flip_mirrors_the_image():
    frames = halves()
    whole = dict(output_size=60, crop_scale=(1.0, 1.0), crop_aspect_ratio=(2.0, 2.0))
    never = VideoTransformConfig(flip_probability=0.0, **whole)
    always = VideoTransformConfig(flip_probability=1.0, **whole)
    plain = train_video_transform(frames, never, torch.Generator().manual_seed(0))
    flipped = train_video_transform(frames, always, torch.Generator().manual_seed(0))
    assert torch.allclose(flipped, plain.flip(-1))
    assert unnormalise(plain)[0, 0, 30, 2] > 0.9 and unnormalise(flipped)[2, 0, 30, 2] > 0.9


def test_normalisation_uses_imagenet_statistics():
    mean_grey = torch.tensor([round(m * 255) for m in IMAGENET_MEAN], dtype=torch.uint8)
    frames = mean_grey.view(1, 1, 1, 3).expand(2, 40, 40, 3).contiguous()
    out = eval_video_transform(frames, VideoTransformConfig(output_size=16, eval_short_side=20))
    assert out.abs().max() < 0.01


def test_eval_transform_resizes_short_side_then_centre_crops():
    frames = halves(height=60, width=120)
    out = eval_video_transform(frames, VideoTransformConfig(output_size=20, eval_short_side=40))
    assert out.shape == (3, 2, 20, 20)
    # 60x120 -> 40x80, green in columns 26.7-53.3; the centre 20x20 crop (columns 30-50) is all green.
    assert torch.allclose(unnormalise(out)[1], torch.ones(2, 20, 20), atol=1e-3)


def test_spatial_views_cover_left_centre_right():
    views = spatial_views(halves(height=60, width=120), VideoTransformConfig(output_size=30), num_views=3)
    assert views.shape == (3, 3, 2, 30, 30)
    colours = [int(unnormalise(view).mean(dim=(1, 2, 3)).argmax()) for view in views]
    assert colours == [0, 1, 2]  # red left, green centre, blue right
    portrait = halves(height=60, width=120).transpose(1, 2).contiguous()  # 120 high, 60 wide: red at the top
    views = spatial_views(portrait, VideoTransformConfig(output_size=30), num_views=3)
    assert [int(unnormalise(view).mean(dim=(1, 2, 3)).argmax()) for view in views] == [0, 1, 2]
    assert spatial_views(portrait, VideoTransformConfig(output_size=30), num_views=1).shape == (1, 3, 2, 30, 30)


def test_downscaling_is_antialiased():
    checker = ((torch.arange(64).view(-1, 1) + torch.arange(64).view(1, -1)) % 2).float()
    frames = checker.expand(1, 3, 64, 64)
    small = resize_frames(frames, 8, 8)
    # Antialiased: every output pixel averages many input pixels, so the checkerboard becomes flat grey.
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.02)


def test_evenly_spaced_window_starts():
    assert evenly_spaced_window_starts(10.0, 4.0, 3) == [0.0, 3.0, 6.0]
    assert evenly_spaced_window_starts(10.0, 4.0, 1) == [3.0]
    assert evenly_spaced_window_starts(3.0, 4.0, 2) == [0.0, 0.0]
    with pytest.raises(ValueError):
        evenly_spaced_window_starts(10.0, 4.0, 0)


def test_rejects_non_uint8_frames_and_bad_config():
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        eval_video_transform(torch.zeros(2, 3, 8, 8), VideoTransformConfig())
    with pytest.raises(ValueError, match="crop_scale"):
        VideoTransformConfig(crop_scale=(0.0, 1.0))
    config = VideoTransformConfig(output_size=160, eval_short_side=182)
    assert VideoTransformConfig.from_dict(config.to_dict()) == config
    assert not math.isnan(train_video_transform(random_frames(3), config, torch.Generator().manual_seed(0)).sum())


def test_uint8_crops_normalised_on_the_device_match_the_float_path():
    from mjepa.data.preprocess.video_transforms import normalise_uint8_video

    config = VideoTransformConfig(output_size=32)
    frames = random_frames(3)
    floats = train_video_transform(frames, config, torch.Generator().manual_seed(11))
    small = train_video_transform(frames, config, torch.Generator().manual_seed(11), normalise=False)
    assert small.dtype == torch.uint8 and small.shape == floats.shape
    assert small.numel() * small.element_size() * 4 == floats.numel() * floats.element_size()  # a quarter the bytes
    back = normalise_uint8_video(small.unsqueeze(0), config)[0]
    assert back.dtype == torch.float32
    # Rounding to 8 bits moves a pixel by at most half a level: 0.5 / 255 / std in normalised units.
    assert float((back - floats).abs().max()) <= 0.5 / 255 / min(IMAGENET_STD) + 1e-6
    assert normalise_uint8_video(floats, config) is floats  # float batches (synthetic data) pass through


def test_the_training_loss_is_the_same_from_uint8_video():
    from mjepa.config import MaskConfig
    from mjepa.data.batch import Batch
    from mjepa.data.preprocess.video_transforms import normalise_uint8_video
    from mjepa.masks import MaskSampler
    from mjepa.models.mjepa import MJEPA
    from mjepa.objective import mjepa_objective
    from mjepa.pretrain_config import load_pretrain_config

    config = load_pretrain_config(
        "tiny-cpu",
        ["model.encoder.depth=2", "model.encoder.width=64", "model.encoder.num_heads=2", "model.predictor.depth=1"],
    )
    transform = VideoTransformConfig(output_size=config.data.image_size)
    clips = [random_frames(seed, frames=config.data.num_frames, height=96, width=128) for seed in range(2)]
    floats = torch.stack([train_video_transform(c, transform, torch.Generator().manual_seed(5)) for c in clips])
    small = torch.stack(
        [train_video_transform(c, transform, torch.Generator().manual_seed(5), normalise=False) for c in clips]
    )
    torch.manual_seed(0)
    model = MJEPA(config.model).eval()
    audio = torch.randn(2, config.data.audio_frames, config.data.mel_bins)
    grids = config.token_grids()
    masks = MaskSampler(MaskConfig(), grids[0], grids[1]).sample(2, seed=0)
    with torch.no_grad():
        reference = mjepa_objective(model, Batch(audio, floats), masks).loss
        from_uint8 = mjepa_objective(model, Batch(audio, normalise_uint8_video(small, transform)), masks).loss
    assert abs(float(from_uint8) - float(reference)) <= 1e-3 * abs(float(reference))
