import pytest
import torch

from mjepa.config import ENCODER_SIZES, EncoderConfig, ModelConfig, PredictorConfig
from mjepa.models.encoder import MultimodalEncoder
from mjepa.models.mjepa import MJEPA


def _encoder(position_embedding="rope"):
    return MultimodalEncoder(EncoderConfig(width=64, depth=2, num_heads=2, position_embedding=position_embedding))


@pytest.mark.parametrize("position_embedding", ["rope", "sincos"])
@pytest.mark.parametrize("mode", ["A", "V", "AV"])
def test_kept_token_path_equals_dropping_tokens_from_full_sequence(mode, position_embedding):
    enc = _encoder(position_embedding).eval()
    audio, video = torch.randn(3, 64, 32), torch.randn(3, 3, 4, 32, 32)
    tokens, layout = enc.embed(mode, audio, video)
    num_tokens = layout.num_tokens
    gen = torch.Generator().manual_seed(1)
    keep = torch.stack([torch.randperm(num_tokens, generator=gen)[: num_tokens // 2] for _ in range(3)])
    fast = enc(mode, audio, video, keep_index=keep).tokens

    # Reference: per sample, a boolean drop of the other tokens from the full sequence, in sequence order.
    for b in range(3):
        keep_mask = torch.zeros(num_tokens, dtype=torch.bool)
        keep_mask[keep[b]] = True
        ref = enc.encode_tokens(tokens[b : b + 1, keep_mask], layout.coords[keep_mask]).tokens[0]
        order = keep[b].argsort()  # position of each kept token in sequence order
        assert torch.allclose(fast[b, order], ref, atol=1e-5)


def test_full_sequence_differs_from_subset_so_the_check_above_has_teeth():
    enc = _encoder().eval()
    audio = torch.randn(1, 64, 32)
    full = enc("A", audio).tokens
    keep = torch.arange(4).unsqueeze(0)
    assert not torch.allclose(enc("A", audio, keep_index=keep).tokens, full[:, :4], atol=1e-4)


def test_intermediate_layers_are_normalised_and_last_equals_output():
    enc = _encoder().eval()
    out = enc("V", video=torch.randn(2, 3, 4, 32, 32), collect_layers=(0, -1))
    assert len(out.layers) == 2
    assert torch.allclose(out.layers[1], out.tokens)
    for layer in out.layers:
        assert torch.allclose(layer.mean(-1), enc.norm.bias.mean().expand(layer.shape[:2]), atol=1e-4)


def test_giant_has_one_billion_parameters():
    with torch.device("meta"):
        enc = MultimodalEncoder(EncoderConfig.from_size("giant"))
    count = sum(p.numel() for p in enc.parameters())
    assert abs(count - 1.0e9) <= 0.05e9, count
    assert ENCODER_SIZES["giant"][:3] == (1408, 40, 22)


@pytest.mark.parametrize("size,expected_millions", [("tiny", 5.5), ("small", 21.5), ("base", 85.5), ("large", 303)])
def test_standard_sizes_parameter_counts(size, expected_millions):
    with torch.device("meta"):
        enc = MultimodalEncoder(EncoderConfig.from_size(size))
    count = sum(p.numel() for p in enc.parameters()) / 1e6
    assert abs(count - expected_millions) / expected_millions < 0.05, count


@pytest.mark.parametrize(
    "mode,audio_shape,video_shape,expected",
    [
        ("A", (2, 100, 32), None, "time_frames a positive multiple of 16"),
        ("A", (2, 64), None, r"\(batch, time_frames, mel_bins\)"),
        ("V", None, (2, 3, 5, 32, 32), r"\(batch, 3, frames, height, width\)"),
        ("V", None, (2, 1, 4, 32, 32), r"\(batch, 3, frames, height, width\)"),
        ("V", None, (2, 3, 4, 30, 32), "multiples of 16"),
        ("A", None, (2, 3, 4, 32, 32), "needs audio"),
        ("AV", (3, 64, 32), (2, 3, 4, 32, 32), "same batch size"),
    ],
)
def test_wrong_input_shapes_name_the_expected_shape(mode, audio_shape, video_shape, expected):
    enc = _encoder()
    audio = None if audio_shape is None else torch.randn(audio_shape)
    video = None if video_shape is None else torch.randn(video_shape)
    with pytest.raises(ValueError, match=expected):
        enc(mode, audio, video)


def test_bad_keep_index_is_a_clear_error():
    enc = _encoder()
    with pytest.raises(ValueError, match="keep_index"):
        enc("A", torch.randn(2, 64, 32), keep_index=torch.tensor([[0, 99], [1, 2]]))


def test_activation_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = MJEPA(ModelConfig(EncoderConfig(width=64, depth=2, num_heads=2), PredictorConfig(64, 1, 2)))
    audio = torch.randn(2, 64, 32)
    grads = []
    for enabled in (False, True):
        model.zero_grad()
        model.set_activation_checkpointing(enabled)
        model.encoders["shared"]("A", audio).tokens.square().mean().backward()
        grads.append(model.encoders["shared"].blocks.blocks[0].attn.qkv.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
