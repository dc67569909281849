import pytest
import torch

from mjepa.config import EncoderConfig
from mjepa.models.encoder import AUDIO_ID, VIDEO_ID, MultimodalEncoder
from mjepa.models.positions import Rotary3D, apply_rotary, grid_coordinates, sincos_embedding


def _encoder(**changes):
    cfg = EncoderConfig(width=48, depth=1, num_heads=2, **changes)
    return MultimodalEncoder(cfg)


def test_audio_positions_follow_patch_order_on_non_square_grid():
    enc = _encoder(time_unit_seconds=None)  # the token-index clock: time coordinates are the grid's indices
    layout = enc.layout("A", (1, 64 * 16, 8 * 16), None)  # 1024 frames x 128 bins -> 64 x 8 patches
    assert layout.coords.shape == (512, 3) and layout.num_audio == 512
    for i in (0, 1, 7, 8, 9, 200, 511):
        assert layout.coords[i].tolist() == [i // 8, i % 8, 0]  # (time, frequency, 0), time-major
    assert (layout.modality == AUDIO_ID).all()


def test_audio_patch_order_matches_the_spectrogram():
    enc = _encoder(time_unit_seconds=None)
    spec = torch.zeros(1, 64, 32)
    spec[0, 16:32, 16:32] = 1.0  # exactly patch (time=1, freq=1) of a 4 x 2 grid
    tokens = enc.audio_embed(spec) - enc.audio_embed(torch.zeros_like(spec))
    changed = tokens.abs().sum(-1)[0].nonzero().squeeze(1).tolist()
    assert changed == [1 * 2 + 1]
    assert enc.layout("A", tuple(spec.shape), None).coords[3].tolist() == [1, 1, 0]


def test_video_positions_follow_tubelet_order():
    enc = _encoder(time_unit_seconds=None)
    layout = enc.layout("V", None, (1, 3, 8, 48, 64))  # grid 4 x 3 x 4
    assert layout.coords.shape == (48, 3)
    for i in (0, 1, 4, 12, 47):
        assert layout.coords[i].tolist() == [i // 12, (i // 4) % 3, i % 4]
    video = torch.zeros(1, 3, 8, 48, 64)
    video[0, :, 2:4, 16:32, 48:64] = 1.0  # tubelet (t=1, h=1, w=3)
    tokens = enc.video_embed(video) - enc.video_embed(torch.zeros_like(video))
    assert tokens.abs().sum(-1)[0].nonzero().squeeze(1).tolist() == [1 * 12 + 1 * 4 + 3]


def test_av_sequence_is_video_then_audio():
    layout = _encoder().layout("AV", (1, 64, 32), (1, 3, 4, 32, 32))
    assert layout.num_video == 8 and layout.num_audio == 8
    assert (layout.modality[:8] == VIDEO_ID).all() and (layout.modality[8:] == AUDIO_ID).all()


def test_time_in_seconds_aligns_audio_and_video_tokens():
    # 50 fbank frames of 10 ms = 0.5 s per audio patch; 2 frames at 4 fps = 0.5 s per tubelet.
    enc = _encoder(time_unit_seconds=0.5, audio_patch_time=50)
    layout = enc.layout("AV", (1, 200, 32), (1, 3, 8, 32, 32))
    video_times = layout.coords[: layout.num_video, 0].unique()
    audio_times = layout.coords[layout.num_video :, 0].unique()
    assert torch.allclose(video_times, audio_times)
    assert torch.allclose(audio_times, torch.tensor([0.5, 1.5, 2.5, 3.5]))  # token centres in 0.5 s units


@pytest.mark.parametrize("head_dim", [64, 32, 48])
def test_rotary_score_depends_only_on_relative_offset(head_dim):
    rope = Rotary3D(head_dim)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(head_dim, generator=gen, dtype=torch.float64)
    k = torch.randn(head_dim, generator=gen, dtype=torch.float64)

    def score(pos_q, pos_k):
        coords = torch.tensor([pos_q, pos_k], dtype=torch.float32)
        cos, sin = rope.tables(coords)
        rq = apply_rotary(q.view(1, 1, 1, -1), cos[:, :, :1].double(), sin[:, :, :1].double())
        rk = apply_rotary(k.view(1, 1, 1, -1), cos[:, :, 1:].double(), sin[:, :, 1:].double())
        return float((rq * rk).sum())

    offset = [2.0, -1.0, 3.0]
    for base in ([0.0, 0.0, 0.0], [5.0, 3.0, 1.0], [11.0, 7.0, 2.0]):
        shifted = [b + o for b, o in zip(base, offset)]
        assert score(shifted, base) == pytest.approx(score(offset, [0.0, 0.0, 0.0]), rel=1e-5)
    assert score([1.0, 0.0, 0.0], [0.0, 0.0, 0.0]) != pytest.approx(score([0.0, 1.0, 0.0], [0.0, 0.0, 0.0]))


def test_rotary_channel_pairs_are_grouped_by_axis():
    rope = Rotary3D(64)  # 10 pairs per axis, 2 pairs unrotated
    x = torch.randn(1, 1, 1, 64)
    for axis in range(3):
        coords = torch.zeros(1, 3)
        coords[0, axis] = 3.0
        cos, sin = rope.tables(coords)
        changed = (apply_rotary(x, cos, sin) - x).abs().view(32, 2).sum(-1) > 1e-6
        expected = torch.zeros(32, dtype=torch.bool)
        expected[axis * 10 : (axis + 1) * 10] = True
        assert torch.equal(changed, expected)


def test_rotation_preserves_norm():
    rope = Rotary3D(32)
    x = torch.randn(2, 4, 10, 32)
    cos, sin = rope.tables(grid_coordinates((2, 5, 1)))
    assert torch.allclose(apply_rotary(x, cos, sin).norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_sincos_alternative_is_distinct_per_position_and_any_grid():
    coords = grid_coordinates((3, 5, 2))
    emb = sincos_embedding(coords, 48)
    assert emb.shape == (30, 48)
    assert torch.cdist(emb, emb).add(torch.eye(30) * 10).min() > 1e-3
    enc = _encoder(position_embedding="sincos")
    assert enc.rope is None
    out = enc("A", audio=torch.randn(2, 48, 32)).tokens  # a grid size never seen before
    assert out.shape == (2, 6, 48)
