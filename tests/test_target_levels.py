"""Multi-level targets: each chosen encoder block is its own target level, predicted by its own predictor head and
logged as its own term; the intra-modal term is their mean."""

import dataclasses

import pytest
import torch

from mjepa.config import BlockMaskConfig, MaskConfig, ModelConfig, ObjectiveConfig, PredictorConfig
from mjepa.data.batch import Batch
from mjepa.masks import MaskSampler
from mjepa.models.encoder import gather_tokens, layer_normalise
from mjepa.models.mjepa import MJEPA
from mjepa.objective import compute_targets, mjepa_objective
from mjepa.pretrain_config import load_pretrain_config
from mjepa.terms import active_modes
from mjepa.typed_config import ConfigError


def _narrow(preset: str, overrides: list[str] = ()) -> tuple[ModelConfig, object]:
    """The preset's model at its real depth and grids, made narrow (width 48) so it runs in a test."""
    config = load_pretrain_config(preset, ["data.manifests=[x.jsonl]", *overrides])
    encoder = dataclasses.replace(config.model.encoder, width=48, num_heads=2)
    model = dataclasses.replace(
        config.model, encoder=encoder, predictor=PredictorConfig(width=48, depth=1, num_heads=2)
    )
    return model, config


def _real_batch(config) -> Batch:
    data = config.data
    return Batch(
        audio=torch.randn(1, data.audio_frames, data.mel_bins),
        video=torch.randn(1, 3, data.num_frames, data.image_size, data.image_size),
    )


def test_vitl_preset_predicts_four_levels_at_its_real_grids():
    model_config, config = _narrow("vitl16-as2m")
    model = MJEPA(model_config).eval()
    assert model.target_blocks == (17, 19, 21, 23)
    batch = _real_batch(config)
    targets = compute_targets(model, batch, ("A", "V", "AV"))
    encoder = model.target_encoder("AV")
    for mode, tokens in (("A", 512), ("V", 1568), ("AV", 2080)):
        assert len(targets[mode].levels) == 4
        assert all(level.shape == (1, tokens, 48) for level in targets[mode].levels)
    # Each level is that block's output (after the encoder's final norm), normalised without affine parameters.
    out = encoder("AV", batch.audio, batch.video, collect_layers=(19,))
    assert torch.allclose(targets["AV"].levels[1], layer_normalise(out.layers[0]), atol=1e-5)
    assert torch.allclose(targets["AV"].levels[3], layer_normalise(out.tokens), atol=1e-5)
    assert torch.equal(targets["AV"].last, targets["AV"].levels[3])

    audio_grid, video_grid = model.token_grids(batch.audio.shape, batch.video.shape)
    sampler = MaskSampler(config.masks, audio_grid, video_grid, active_modes(model_config.objective))
    masks = sampler.sample(1, seed=0)
    pair = masks["AV"][1]
    tokens, layout = encoder.embed("AV", batch.audio, batch.video)
    context = encoder.encode_tokens(gather_tokens(tokens, pair.context), layout.coords[pair.context]).tokens
    predictions = model.predictor("AV")(
        context,
        layout.coords[pair.context],
        layout.modality[pair.context],
        layout.coords[pair.target],
        layout.modality[pair.target],
    )
    assert len(predictions) == 4
    assert all(p.shape == (1, pair.target.shape[1], 48) for p in predictions)


def test_each_level_is_logged_and_the_intra_term_is_their_mean():
    model_config, config = _narrow(
        "vitg16-as2m-vm2m",
        [
            "data.manifests=[a,b,c,d]",
            "model.encoder.depth=40",
            "data.num_frames=4",
            "data.image_size=64",
            "data.audio_frames=256",
        ],
    )
    model = MJEPA(model_config)
    batch = _real_batch(config)
    audio_grid, video_grid = model.token_grids(batch.audio.shape, batch.video.shape)
    masks = MaskSampler(config.masks, audio_grid, video_grid).sample(1, seed=0)
    out = mjepa_objective(model, batch, masks)
    for mode in ("A", "V", "AV"):
        levels = [out.level_terms[f"intra_{mode}_layer{k}"] for k in (25, 30, 35, 40)]
        assert torch.allclose(out.terms[f"intra_{mode}"], torch.stack(levels).mean())
    assert len(out.level_terms) == 12 and len(out.terms) == 9


def test_each_level_trains_only_its_own_predictor_head():
    objective = ObjectiveConfig(target_layers=(0, -1))
    config = ModelConfig.from_size("tiny", objective)
    config = dataclasses.replace(
        config,
        encoder=dataclasses.replace(config.encoder, width=48, depth=2, num_heads=2),
        predictor=PredictorConfig(width=32, depth=1, num_heads=2),
    )
    model = MJEPA(config)
    batch = Batch(audio=torch.randn(2, 64, 32), video=torch.randn(2, 3, 4, 32, 32))
    audio_grid, video_grid = model.token_grids(batch.audio.shape, batch.video.shape)
    small = MaskConfig(video=(BlockMaskConfig(2, 0.15),), audio=(BlockMaskConfig(2, 0.15),))
    masks = MaskSampler(small, audio_grid, video_grid).sample(2, seed=1)
    out = mjepa_objective(model, batch, masks)
    first = out.level_terms["intra_A_layer1"]
    grad = torch.autograd.grad(first, model.predictors["shared"].proj.weight)[0]
    assert grad[:48].abs().sum() > 0  # rows of the first level's head
    assert grad[48:].abs().sum() == 0  # the other level's head gets nothing from this level


def test_target_layers_are_checked_against_the_encoder():
    with pytest.raises(ValueError, match="names a block twice"):
        MJEPA(ModelConfig.from_size("tiny", ObjectiveConfig(target_layers=(11, -1))))
    with pytest.raises(ValueError, match="outside an encoder of 12 blocks"):
        MJEPA(ModelConfig.from_size("tiny", ObjectiveConfig(target_layers=(12,))))
    with pytest.raises(ConfigError, match="outside an encoder of 12 blocks"):
        load_pretrain_config("tiny-cpu", ["model.objective.target_layers=[3,20]"])
    with pytest.raises(ValueError, match="at least one"):
        ObjectiveConfig(target_layers=())


def test_the_retired_layer_average_loads_from_saved_configs_and_is_refused_as_input():
    saved = ModelConfig.from_size("tiny").to_dict()
    saved["objective"].pop("target_layers")
    saved["objective"]["target_last_k_layers"] = 1
    assert ModelConfig.from_dict(saved).objective.target_layers == (-1,)
    with pytest.raises(ConfigError, match="objective.target_layers"):
        load_pretrain_config("tiny-cpu", ["model.objective.target_last_k_layers=4"])


def test_audio_padding_marks_whole_time_steps_of_the_real_av_sequence():
    """At the ViT-L preset's grids (8 x 196 video tubelets, then 64 x 8 audio patches of 16 frames): a 10 s clip
    in its 1,024-frame window holds audio in 63 of the 64 time steps; the video tokens always count."""
    from mjepa.objective import signal_token_weights

    model_config, config = _narrow("vitl16-as2m")
    encoder = MJEPA(model_config).encoder("AV")
    batch = dataclasses.replace(_real_batch(config), audio_valid_frames=torch.tensor([998]))
    _, layout = encoder.embed("AV", batch.audio, batch.video)
    weights = signal_token_weights(encoder, layout, batch)
    assert weights.shape == (1, 2080)
    assert weights[0, :1568].all() and weights[0, 1568:].sum() == 63 * 8
    assert not weights[0, -8:].any() and weights[0, -9] == 1  # the last time step starts at frame 1,008 > 998
