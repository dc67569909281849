"""One token-grid value from the tokenizers to the masks, the loop and the embedding API."""

import pytest
import torch

from mjepa.config import EncoderConfig, MaskConfig
from mjepa.grids import TokenGrid
from mjepa.masks import MaskSampler
from mjepa.models.encoder import MultimodalEncoder
from mjepa.pretrain_config import load_pretrain_config


@pytest.mark.parametrize("preset", ["tiny-cpu", "vitl16-as2m"])
def test_the_tokenizers_and_the_config_give_the_same_grids(preset):
    config = load_pretrain_config(preset, [] if preset == "tiny-cpu" else ["data.manifests=[a]"])
    encoder = MultimodalEncoder(EncoderConfig(width=48, depth=1, num_heads=2))
    data = config.data
    audio = encoder.audio_embed.grid((1, data.audio_frames, data.mel_bins))
    video = encoder.video_embed.grid((1, 3, data.num_frames, data.image_size, data.image_size))
    assert (audio, video) == config.token_grids()
    assert isinstance(audio, TokenGrid) and audio.width == 1 and audio.time == data.audio_frames // 16
    assert video.num_tokens == (data.num_frames // 2) * (data.image_size // 16) ** 2
    sampler = MaskSampler(MaskConfig(), audio, video)  # the mask sampler takes them as they come
    assert sampler.sample(1, seed=0)["AV"][0].context.shape[1] == sum(
        lengths.context for lengths in (sampler.audio_lengths[0], sampler.video_lengths[0])
    )
    layout = encoder.layout(
        "AV", (1, data.audio_frames, data.mel_bins), (1, 3, data.num_frames, data.image_size, data.image_size)
    )
    assert layout.num_tokens == audio.num_tokens + video.num_tokens


def test_a_grid_without_its_width_is_refused_with_the_rule():
    with pytest.raises(ValueError, match=r"\(time, frequency, 1\)"):
        MaskSampler(MaskConfig(), (64, 8), TokenGrid(8, 14, 14))
    with pytest.raises(ValueError, match=r"must be \(time, frequency, 1\)"):
        MaskSampler(MaskConfig(), TokenGrid(64, 8, 2), None, modes=("A",))
    assert torch.Size(TokenGrid(2, 3, 4)) == torch.Size([2, 3, 4])  # still a plain tuple where one is expected
