"""The preprocessing a model is trained with (clip, audio front end, video transforms), stored in every checkpoint
and model folder so that evaluation and embedding decode the same way."""

from __future__ import annotations

from dataclasses import dataclass

from mjepa.data.media.decode import ClipSpec
from mjepa.data.preprocess.fbank import AudioFrontendConfig
from mjepa.data.preprocess.video_transforms import VideoTransformConfig
from mjepa.pretrain_config import DataConfig


@dataclass(frozen=True)
class Frontend:
    """Preprocessing settings; stored in every checkpoint so evaluation and embedding decode the same way."""

    clip: ClipSpec
    audio: AudioFrontendConfig
    video: VideoTransformConfig

    def to_dict(self) -> dict:
        return {"clip": self.clip.to_dict(), "audio": self.audio.to_dict(), "video": self.video.to_dict()}


def eval_short_side(crop: int) -> int:
    """The evaluation resize for a ``crop``-pixel centre crop: 256 for 224, the same ratio otherwise."""
    return int(round(crop * 256 / 224))


def frontend_for(data: DataConfig) -> Frontend:
    return Frontend(
        ClipSpec(num_frames=data.num_frames, frames_per_second=data.frames_per_second, audio_window=data.audio_window),
        AudioFrontendConfig(
            target_frames=data.audio_frames, num_mel_bins=data.mel_bins, mean=data.fbank_mean, std=data.fbank_std
        ),
        # Evaluation resizes the short side to 256/224 of the crop, then centre-crops (V-JEPA 2's protocol).
        VideoTransformConfig(output_size=data.image_size, eval_short_side=eval_short_side(data.image_size)),
    )


def frontend_from_dict(data: dict) -> Frontend:
    return Frontend(
        ClipSpec.from_dict(data["clip"]),
        AudioFrontendConfig.from_dict(data["audio"]),
        VideoTransformConfig.from_dict(data["video"]),
    )
