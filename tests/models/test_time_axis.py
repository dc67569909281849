"""One time axis for audio and video: token times in seconds, the video window placed inside the audio window."""

import dataclasses

import pytest
import torch

from mjepa.config import EncoderConfig
from mjepa.models.encoder import MultimodalEncoder
from mjepa.pretrain_config import load_pretrain_config


def _preset_encoder(preset: str) -> tuple[MultimodalEncoder, tuple, tuple]:
    """The preset's encoder, made narrow, and its real input shapes."""
    config = load_pretrain_config(
        preset,
        ["data.manifests=[a,b,c,d]"] if "vitg" in preset else ["data.manifests=[a]"] if preset != "tiny-cpu" else [],
    )
    encoder = MultimodalEncoder(dataclasses.replace(config.model.encoder, width=48, depth=1, num_heads=2))
    data = config.data
    return encoder, (1, data.audio_frames, data.mel_bins), (1, 3, data.num_frames, data.image_size, data.image_size)


@pytest.mark.parametrize("preset", ["vitl16-as2m", "vitg16-as2m-vm2m", "vitg16-as2m-vm2m-cooldown64", "tiny-cpu"])
def test_token_times_are_seconds_on_one_axis_at_the_presets_grids(preset):
    encoder, audio_shape, video_shape = _preset_encoder(preset)
    cfg = encoder.config
    unit = cfg.time_unit_seconds
    assert unit is not None  # seconds are the default
    layout = encoder.layout("AV", audio_shape, video_shape)
    offsets = torch.tensor([0.0, 3.0, 6.24])
    coords = encoder.token_coords(layout, offsets)
    assert coords.shape == (3, layout.num_tokens, 3)
    video_grid = encoder.video_embed.grid(video_shape)
    audio_grid = encoder.audio_embed.grid(audio_shape)
    tubelet_s = cfg.video_tubelet_time / cfg.video_fps
    patch_s = cfg.audio_patch_time * cfg.audio_frame_shift_seconds
    video_times = coords[:, : layout.num_video, 0].view(3, video_grid[0], -1) * unit
    audio_times = coords[:, layout.num_video :, 0].view(3, audio_grid[0], -1) * unit
    for row, offset in enumerate(offsets.tolist()):
        expected_video = offset + (torch.arange(video_grid[0]) + 0.5) * tubelet_s
        assert torch.allclose(video_times[row], expected_video.unsqueeze(1).expand_as(video_times[row]), atol=1e-4)
        expected_audio = (torch.arange(audio_grid[0]) + 0.5) * patch_s
        assert torch.allclose(audio_times[row], expected_audio.unsqueeze(1).expand_as(audio_times[row]), atol=1e-4)
    # The instant a video tubelet is centred on falls inside the audio patch that covers it.
    first_tubelet = float(video_times[1, 0, 0])
    patch = int(first_tubelet // patch_s)
    assert abs(float(audio_times[1, patch, 0]) - first_tubelet) <= patch_s / 2 + 1e-4


def test_joint_tokens_see_where_the_video_sits_and_unimodal_tokens_do_not():
    encoder = MultimodalEncoder(EncoderConfig(width=48, depth=2, num_heads=2)).eval()
    audio, video = torch.randn(2, 64, 32), torch.randn(2, 3, 4, 32, 32)
    audio, video = torch.cat([audio[:1], audio[:1]]), torch.cat([video[:1], video[:1]])  # one clip twice
    offsets = torch.tensor([0.0, 2.0])
    with torch.no_grad():
        joint = encoder("AV", audio, video, video_offset=offsets).tokens
        alone = encoder("V", None, video, video_offset=offsets).tokens
    assert not torch.allclose(joint[0], joint[1], atol=1e-4)  # rotary attention reads audio-video time offsets
    assert torch.allclose(alone[0], alone[1], atol=1e-5)  # within one modality only relative times matter


def test_index_positions_stay_available_for_saved_models():
    encoder = MultimodalEncoder(EncoderConfig(width=48, depth=1, num_heads=2, time_unit_seconds=None))
    layout = encoder.layout("AV", (1, 64, 32), (1, 3, 4, 32, 32))
    assert encoder.token_coords(layout, torch.tensor([3.0])) is layout.coords  # token indices, no offset
