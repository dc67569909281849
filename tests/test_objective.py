from dataclasses import replace

import pytest
import torch

from conftest import tiny_model_config
from mjepa.config import BlockMaskConfig, MaskConfig, ObjectiveConfig
from mjepa.data.batch import Batch
from mjepa.data.synthetic import synthetic_batch
from mjepa.masks import MaskSampler
from mjepa.models.mjepa import MJEPA
from mjepa.objective import mjepa_objective
from mjepa.terms import ALL_TERMS, active_modes, active_terms
from mjepa.train.ema import ema_update
from mjepa.train.optim import build_optimizer
from mjepa.train.step import train_step

SMALL_MASKS = MaskConfig(video=(BlockMaskConfig(4, 0.15),), audio=(BlockMaskConfig(4, 0.15),))


def _setup(objective=None, batch_size=2, mask_config=MaskConfig(), seed=0):
    model = MJEPA(tiny_model_config(objective))
    batch, _ = synthetic_batch(seed, 0, batch_size)
    audio_grid, video_grid = model.token_grids(batch.audio.shape, batch.video.shape)
    masks = MaskSampler(mask_config, audio_grid, video_grid, active_modes(model.config.objective)).sample(
        batch_size, seed=seed
    )
    return model, batch, masks


def test_full_objective_returns_all_nine_terms_and_their_sum():
    model, batch, masks = _setup()
    out = mjepa_objective(model, batch, masks)
    assert tuple(out.terms) == ALL_TERMS and len(ALL_TERMS) == 9
    assert torch.allclose(out.loss, sum(out.terms.values()))
    assert all(torch.isfinite(v) and v > 0 for v in out.terms.values())


ABLATIONS = [
    (ObjectiveConfig(), set(ALL_TERMS)),
    (ObjectiveConfig(joint_av=False), {"intra_A", "intra_V", "cross_A_to_V", "cross_V_to_A"}),
    (ObjectiveConfig(cross_modal="none"), {"intra_A", "intra_V", "intra_AV"}),
    (ObjectiveConfig(cross_modal="av"), {"intra_A", "intra_V", "intra_AV", "cross_A_to_V", "cross_V_to_A"}),
    (ObjectiveConfig(joint_av=False, cross_modal="none"), {"intra_A", "intra_V"}),
    (ObjectiveConfig(shared_encoder=False, joint_av=False, cross_modal="none"), {"intra_A", "intra_V"}),
    (
        ObjectiveConfig(shared_encoder=False, joint_av=False, cross_modal="av"),
        {"intra_A", "intra_V", "cross_A_to_V", "cross_V_to_A"},
    ),
]


@pytest.mark.parametrize("objective,expected", ABLATIONS)
def test_each_ablation_switch_changes_exactly_its_terms(objective, expected):
    assert set(active_terms(objective)) == expected
    model, batch, masks = _setup(objective)
    out = mjepa_objective(model, batch, masks)
    assert set(out.terms) == expected
    assert {k.replace("_to_", "->") for k in model.cross_heads} == {
        t.removeprefix("cross_").replace("_to_", "->") for t in expected if t.startswith("cross_")
    }


def test_separate_encoders_build_one_model_per_modality():
    model = MJEPA(tiny_model_config(ObjectiveConfig(shared_encoder=False, joint_av=False)))
    assert set(model.encoders) == {"audio", "video"} and set(model.predictors) == {"audio", "video"}
    assert model.encoders["audio"].video_embed is None and model.encoders["video"].audio_embed is None


def test_joint_av_needs_the_shared_encoder():
    with pytest.raises(ValueError, match="shared_encoder"):
        ObjectiveConfig(shared_encoder=False, joint_av=True)


def test_unknown_term_weight_is_rejected_and_weights_apply():
    with pytest.raises(ValueError, match="intra_X"):
        ObjectiveConfig(term_weights=(("intra_X", 1.0),))
    model, batch, masks = _setup(ObjectiveConfig(term_weights=(("intra_V", 3.0), ("cross_A_to_V", 0.0))))
    out = mjepa_objective(model, batch, masks)
    expected = sum(v for k, v in out.terms.items()) + 2 * out.terms["intra_V"] - out.terms["cross_A_to_V"]
    assert torch.allclose(out.loss, expected)


def test_gradients_reach_trainable_parts_and_never_the_target():
    model, batch, masks = _setup()
    mjepa_objective(model, batch, masks).loss.backward()
    for name, param in model.named_parameters():
        if name.startswith("target_encoders."):
            assert param.grad is None and not param.requires_grad, name
    for prefix in ("encoders.shared.", "predictors.shared.", "cross_heads."):
        params = [(n, p) for n, p in model.named_parameters() if n.startswith(prefix)]
        assert params
        for name, param in params:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_ema_update_matches_formula_and_train_step_applies_it():
    model, batch, masks = _setup()
    online = [p.detach().clone() for p in model.encoders.parameters()]
    for p in model.encoders.parameters():
        p.data.add_(torch.randn_like(p))
    before = [p.detach().clone() for p in model.target_encoders.parameters()]
    moved = [p.detach().clone() for p in model.encoders.parameters()]
    ema_update(model.target_encoders, model.encoders, 0.9)
    for t_old, o, t_new in zip(before, moved, model.target_encoders.parameters()):
        assert torch.allclose(t_new, 0.9 * t_old + 0.1 * o, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(online, moved))

    opt = build_optimizer(model.named_trainable_parameters(), 1e-3, 0.04)
    target_before = [p.detach().clone() for p in model.target_encoders.parameters()]
    train_step(model, opt, batch, masks, ema_momentum=0.5)
    for t_old, o, t_new in zip(target_before, model.encoders.parameters(), model.target_encoders.parameters()):
        assert torch.allclose(t_new, 0.5 * t_old + 0.5 * o.detach(), atol=1e-6)


def test_samples_without_audio_are_left_out_of_audio_terms():
    model, batch, masks = _setup(batch_size=3)
    full = mjepa_objective(model, batch, masks)
    flagged = Batch(batch.audio.clone(), batch.video, torch.tensor([True, False, True]))
    flagged.audio[1] = 1e3  # garbage audio in the flagged sample must not matter to any term
    out = mjepa_objective(model, flagged, masks)
    assert torch.allclose(out.terms["intra_V"], full.terms["intra_V"], atol=1e-6)
    clean = Batch(batch.audio.clone(), batch.video, torch.tensor([True, False, True]))
    reference = mjepa_objective(model, clean, masks)
    for name in ("intra_A", "cross_A_to_V", "cross_V_to_A"):
        assert torch.allclose(out.terms[name], reference.terms[name], atol=1e-5), name
    assert not torch.allclose(reference.terms["intra_A"], full.terms["intra_A"])


def test_samples_without_video_are_left_out_of_every_video_term():
    """An audio-only item trained beside audio-visual ones (placeholder frames, has_video False) changes no term
    that involves video: those equal the terms of the batch without it; its audio counts in intra_A."""
    from mjepa.masks import MaskPair
    from mjepa.terms import mode_uses_video

    model, batch, masks = _setup(batch_size=3)
    full = mjepa_objective(model, batch, masks)
    flagged = Batch(batch.audio, batch.video.clone(), has_video=torch.tensor([True, False, True]))
    flagged.video[1] = 1e3  # whatever the placeholder holds must not matter to any video term
    out = mjepa_objective(model, flagged, masks)
    keep = torch.tensor([0, 2])
    subset = Batch(batch.audio[keep], batch.video[keep])
    sub_masks = {m: [MaskPair(p.context[keep], p.target[keep]) for p in pairs] for m, pairs in masks.items()}
    reference = mjepa_objective(model, subset, sub_masks)
    video_terms = [name for name in out.terms if any(mode_uses_video(m) for m in name.split("_")[1:] if m)]
    assert set(video_terms) == set(ALL_TERMS) - {"intra_A"}
    for name in video_terms:
        assert torch.allclose(out.terms[name], reference.terms[name], atol=1e-5), name
    assert torch.allclose(out.terms["intra_A"], full.terms["intra_A"], atol=1e-6)
    assert not torch.allclose(out.terms["intra_V"], full.terms["intra_V"])


def test_missing_mask_for_active_mode_is_a_clear_error():
    model, batch, masks = _setup()
    del masks["AV"]
    with pytest.raises(ValueError, match="'AV'"):
        mjepa_objective(model, batch, masks)


def test_train_step_under_bf16_autocast_on_cpu():
    model, batch, masks = _setup(mask_config=SMALL_MASKS)
    opt = build_optimizer(model.named_trainable_parameters(), 1e-3, 0.04)
    before = [p.detach().clone() for p in model.encoders.parameters()]
    result = train_step(model, opt, batch, masks, ema_momentum=0.99, amp_dtype=torch.bfloat16, grad_clip=1.0)
    assert not result.skipped and set(result.terms) == set(ALL_TERMS)
    assert result.grad_norm > 0 and torch.isfinite(result.loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.encoders.parameters()))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 master weights


def test_fp16_autocast_is_refused():
    model, batch, masks = _setup(mask_config=SMALL_MASKS)
    opt = build_optimizer(model.named_trainable_parameters(), 1e-3, 0.04)
    with pytest.raises(ValueError, match="bfloat16"):
        train_step(model, opt, batch, masks, ema_momentum=0.99, amp_dtype=torch.float16)


def test_non_finite_loss_skips_the_update():
    model, batch, masks = _setup(mask_config=SMALL_MASKS)
    opt = build_optimizer(model.named_trainable_parameters(), 1e-3, 0.04)
    before = [p.detach().clone() for p in model.parameters()]
    bad = Batch(batch.audio.clone(), batch.video, batch.has_audio)
    bad.audio[0, 0, 0] = float("nan")
    result = train_step(model, opt, bad, masks, ema_momentum=0.99)
    assert result.skipped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.slow
def test_tiny_model_overfits_one_fixed_batch():
    model, batch, masks = _setup(mask_config=SMALL_MASKS)
    opt = build_optimizer(model.named_trainable_parameters(), 3e-3, 0.0)
    losses = [train_step(model, opt, batch, masks, ema_momentum=0.99).values()["loss"] for _ in range(50)]
    assert losses[-1] <= 0.5 * losses[0], losses


def _padded(batch: Batch, valid_frames: list[int]) -> Batch:
    """``batch`` with each sample's audio after ``valid_frames`` set to what the front end pads with."""
    audio = batch.audio.clone()
    pad_value = audio.min()
    for row, frames in enumerate(valid_frames):
        audio[row, frames:] = pad_value
    return replace(batch, audio=audio, audio_valid_frames=torch.tensor(valid_frames))


def test_unpadded_samples_give_the_plain_objective():
    model, batch, masks = _setup(batch_size=2)
    plain = mjepa_objective(model, batch, masks)
    marked = mjepa_objective(model, replace(batch, audio_valid_frames=torch.tensor([128, 128])), masks)
    for name, value in plain.terms.items():
        assert torch.allclose(marked.terms[name], value, atol=1e-6), name


def test_audio_padding_is_never_a_target_and_never_pooled():
    """The intra-modal loss has no gradient at a predicted token whose patch is padding, and has one at every
    predicted token that holds audio; pooled targets average over the tokens that hold audio."""
    from mjepa.objective import compute_targets, signal_token_weights

    model, batch, masks = _setup(batch_size=2, mask_config=SMALL_MASKS)
    padded = _padded(batch, [40, 128])  # 16-frame patches: sample 0 holds audio in its first 3 time steps
    kept = {}

    def keep_predictions(module, args, output):
        for prediction in output:
            prediction.retain_grad()
        kept.setdefault("predictions", []).append(output)

    handle = model.predictor("A").register_forward_hook(keep_predictions)
    out = mjepa_objective(model, padded, masks)
    handle.remove()
    out.terms["intra_A"].backward()
    encoder = model.encoder("A")
    _, layout = encoder.embed("A", padded.audio, None)
    weights = signal_token_weights(encoder, layout, padded)
    steps, freq = model.token_grids(batch.audio.shape, batch.video.shape)[0][:2]
    assert weights.shape == (2, steps * freq) and weights[0].sum() == 3 * freq and weights[1].all()
    predictions = kept["predictions"][0]  # mode A runs first (a shared predictor also serves V and AV after it)
    grad = predictions[0].grad.abs().sum(dim=2)  # (B, targets)
    holds_audio = torch.gather(weights, 1, masks["A"][0].target).bool()
    assert (~holds_audio[0]).any() and holds_audio[0].any()  # the mask puts targets on both sides
    assert (grad[~holds_audio] == 0).all()
    assert (grad[holds_audio] > 0).all()
    with torch.no_grad():
        last = compute_targets(model, padded, ("A",))["A"].last
    assert torch.allclose(out.pooled_targets["A"][0], last[0, weights[0].bool()].mean(0), atol=1e-6)
    assert torch.allclose(out.pooled_targets["A"][1], last[1].mean(0), atol=1e-6)


def test_padding_counts_when_asked():
    model, batch, masks = _setup(batch_size=2)
    padded = _padded(batch, [40, 128])
    counting = MJEPA(tiny_model_config(ObjectiveConfig(predict_audio_padding=True)))
    counting.load_state_dict(model.state_dict())
    everything = mjepa_objective(counting, padded, masks)
    plain = mjepa_objective(counting, replace(padded, audio_valid_frames=None), masks)
    skipping = mjepa_objective(model, padded, masks)
    assert torch.allclose(everything.terms["intra_A"], plain.terms["intra_A"], atol=1e-6)
    assert not torch.allclose(skipping.terms["intra_A"], plain.terms["intra_A"])
