"""Video transforms: decoded uint8 frames (T, H, W, 3) -> normalised float (C, T, H, W).

Training: one random resized crop and one flip decision per clip (every frame gets the same crop, so motion is not
distorted), then ImageNet mean/std. Evaluation: resize the short side, centre crop. For multi-clip, multi-view
testing: :func:`evenly_spaced_window_starts` gives the temporal windows to decode, :func:`spatial_views` the
left / centre / right crops (top / centre / bottom for portrait video) of each.

Resizing uses bilinear interpolation with antialiasing when shrinking (plain bilinear aliases at large factors).
All randomness comes from an explicit ``torch.Generator``: the same generator state gives the same output.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from mjepa.config import dataclass_from_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's attempt count: after this many rejected samples a clamped centre crop is used.
_CROP_ATTEMPTS = 10


@dataclass(frozen=True)
class VideoTransformConfig:
    """Video preprocessing settings; saved with checkpoints via ``to_dict`` so evaluation matches training."""

    output_size: int = 224
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_aspect_ratio: tuple[float, float] = (0.75, 1.35)
    flip_probability: float = 0.5
    eval_short_side: int = 256  # evaluation resizes the short side to this, then centre-crops output_size
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if self.output_size < 1:
            raise ValueError(f"VideoTransformConfig.output_size must be >= 1, got {self.output_size}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(
                f"VideoTransformConfig.crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}"
            )
        if not 0 < self.crop_aspect_ratio[0] <= self.crop_aspect_ratio[1]:
            raise ValueError(
                f"VideoTransformConfig.crop_aspect_ratio must satisfy 0 < low <= high, got {self.crop_aspect_ratio}"
            )
        if not 0 <= self.flip_probability <= 1:
            raise ValueError(f"VideoTransformConfig.flip_probability must be in [0, 1], got {self.flip_probability}")
        if self.eval_short_side < self.output_size:
            raise ValueError(
                f"VideoTransformConfig.eval_short_side ({self.eval_short_side}) must be >= output_size "
                f"({self.output_size})"
            )

    def to_dict(self) -> dict:
        values = asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}

    @classmethod
    def from_dict(cls, values: dict) -> VideoTransformConfig:
        return dataclass_from_dict(cls, values)


def _check_frames(frames: torch.Tensor) -> None:
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(
            f"expected uint8 frames of shape (T, H, W, 3), got {frames.dtype} of shape {tuple(frames.shape)}"
        )


def _to_float_channels_first(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float32 in [0, 1]."""
    return frames.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of (T, C, H, W) float frames, antialiased when shrinking."""
    if frames.shape[-2:] == (height, width):
        return frames
    shrinking = height < frames.shape[-2] or width < frames.shape[-1]
    return F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking)


def normalize_frames(
    frames: torch.Tensor, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1] -> (3, T, H, W) normalised per channel."""
    mean_tensor = torch.tensor(mean, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    std_tensor = torch.tensor(std, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return ((frames - mean_tensor) / std_tensor).permute(1, 0, 2, 3).contiguous()


def sample_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    aspect_ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """A random crop (top, left, crop_height, crop_width) covering ``scale`` of the area with width/height in
    ``aspect_ratio`` (sampled log-uniformly); after 10 misses, the largest centred crop the ratio range allows."""
    area = height * width
    log_low, log_high = math.log(aspect_ratio[0]), math.log(aspect_ratio[1])
    for _ in range(_CROP_ATTEMPTS):
        draws = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * draws[0])
        ratio = math.exp(log_low + (log_high - log_low) * draws[1])
        crop_width = round(math.sqrt(target_area * ratio))
        crop_height = round(math.sqrt(target_area / ratio))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(torch.randint(0, height - crop_height + 1, (), generator=generator))
            left = int(torch.randint(0, width - crop_width + 1, (), generator=generator))
            return top, left, crop_height, crop_width
    image_ratio = width / height
    if image_ratio < aspect_ratio[0]:
        crop_width, crop_height = width, round(width / aspect_ratio[0])
    elif image_ratio > aspect_ratio[1]:
        crop_height, crop_width = height, round(height * aspect_ratio[1])
    else:
        crop_height, crop_width = height, width
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def train_video_transform(
    frames: torch.Tensor, config: VideoTransformConfig, generator: torch.Generator, normalise: bool = True
) -> torch.Tensor:
    """Random resized crop + horizontal flip + normalisation: (T, H, W, 3) uint8 -> (3, T, S, S) float32.

    ``normalise=False`` returns the crop as (3, T, S, S) uint8 (rounded): a quarter of the bytes to move from a
    loader worker to the device, normalised there by :func:`normalise_uint8_video`."""
    _check_frames(frames)
    height, width = frames.shape[1], frames.shape[2]
    top, left, crop_height, crop_width = sample_crop_box(
        height, width, config.crop_scale, config.crop_aspect_ratio, generator
    )
    # Crop before converting: only the kept pixels are turned into floats and resized.
    cropped = _to_float_channels_first(frames[:, top : top + crop_height, left : left + crop_width])
    resized = resize_frames(cropped, config.output_size, config.output_size)
    if float(torch.rand((), generator=generator)) < config.flip_probability:
        resized = resized.flip(-1)
    if not normalise:
        return resized.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 0, 2, 3).contiguous()
    return normalize_frames(resized, config.mean, config.std)


def normalise_uint8_video(video: torch.Tensor, config: VideoTransformConfig) -> torch.Tensor:
    """A batch of uint8 clips (B, 3, T, S, S) as the normalised float32 the model reads, computed where the batch
    is (on the device, after a uint8 copy); float input is returned as it is."""
    if video.dtype != torch.uint8:
        return video
    mean = torch.tensor(config.mean, dtype=torch.float32, device=video.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32, device=video.device).view(1, 3, 1, 1, 1)
    return (video.to(torch.float32).div_(255.0) - mean).div_(std)


def resize_short_side(frames: torch.Tensor, short_side: int) -> torch.Tensor:
    """Resize (T, C, H, W) so that min(H, W) == short_side, keeping the aspect ratio."""
    height, width = frames.shape[-2:]
    if height <= width:
        new_height, new_width = short_side, max(1, round(width * short_side / height))
    else:
        new_height, new_width = max(1, round(height * short_side / width)), short_side
    return resize_frames(frames, new_height, new_width)


def eval_video_transform(frames: torch.Tensor, config: VideoTransformConfig) -> torch.Tensor:
    """Resize the short side to ``eval_short_side``, centre-crop ``output_size``, normalise: (3, T, S, S)."""
    _check_frames(frames)
    resized = resize_short_side(_to_float_channels_first(frames), config.eval_short_side)
    size = config.output_size
    top = (resized.shape[-2] - size) // 2
    left = (resized.shape[-1] - size) // 2
    return normalize_frames(resized[..., top : top + size, left : left + size], config.mean, config.std)


def spatial_views(frames: torch.Tensor, config: VideoTransformConfig, num_views: int = 3) -> torch.Tensor:
    """Multi-view test crops: resize the short side to ``output_size`` and take ``num_views`` square crops evenly
    spaced along the long side (3 views: left / centre / right, or top / centre / bottom when portrait; 1 view:
    centre). Returns (num_views, 3, T, S, S)."""
    _check_frames(frames)
    if num_views < 1:
        raise ValueError(f"spatial_views: num_views must be >= 1, got {num_views}")
    size = config.output_size
    resized = resize_short_side(_to_float_channels_first(frames), size)
    height, width = resized.shape[-2:]
    long_extent = max(height, width) - size
    if num_views == 1:
        offsets = [long_extent // 2]
    else:
        offsets = [round(i * long_extent / (num_views - 1)) for i in range(num_views)]
    views = []
    for offset in offsets:
        if width >= height:
            crop = resized[..., :size, offset : offset + size]
        else:
            crop = resized[..., offset : offset + size, :size]
        views.append(normalize_frames(crop, config.mean, config.std))
    return torch.stack(views)


def evenly_spaced_window_starts(segment_duration: float, window_duration: float, num_clips: int) -> list[float]:
    """Multi-clip test windows: ``num_clips`` window starts (seconds from the segment start) spread evenly from the
    first possible start to the last; one clip is centred. Windows longer than the segment all start at 0."""
    if num_clips < 1:
        raise ValueError(f"evenly_spaced_window_starts: num_clips must be >= 1, got {num_clips}")
    room = max(0.0, segment_duration - window_duration)
    if num_clips == 1:
        return [room / 2.0]
    return [room * index / (num_clips - 1) for index in range(num_clips)]
