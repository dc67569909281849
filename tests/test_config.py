import pytest

from mjepa.config import EncoderConfig, ModelConfig, ObjectiveConfig, dataclass_from_dict


def test_model_config_round_trips_through_dict():
    config = ModelConfig.from_size("small", ObjectiveConfig(cross_modal="av", term_weights=(("intra_V", 2.0),)))
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ValueError, match="unknown key 'widht'; did you mean 'width'"):
        dataclass_from_dict(EncoderConfig, {"widht": 64})
    with pytest.raises(ValueError, match="unknown key .encodr.; did you mean .encoder."):
        ModelConfig.from_dict({"encodr": {}})


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: EncoderConfig(width=100, num_heads=3), "not divisible"),
        (lambda: EncoderConfig(position_embedding="alibi"), "position_embedding"),
        (lambda: ObjectiveConfig(cross_modal="some"), "cross_modal"),
        (lambda: EncoderConfig.from_size("enormous"), "size='enormous'"),
    ],
)
def test_invalid_values_are_clear_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_presets_take_their_model_from_the_one_size_table(tmp_path):
    from mjepa.config import ModelConfig
    from mjepa.pretrain_config import load_pretrain_config
    from mjepa.typed_config import ConfigError

    sizes = {"tiny-cpu": "tiny", "vitl16-as2m": "large", "vitg16-as2m-vm2m": "giant"}
    for preset, size in sizes.items():
        model = load_pretrain_config(preset, ["data.source=synthetic", "data.mixture_weights=[]"]).model
        table = ModelConfig.from_size(size)
        assert model.encoder == table.encoder and model.predictor == table.predictor
    custom = tmp_path / "custom.yaml"
    custom.write_text("base: tiny-cpu\nmodel:\n  size: small\n  encoder: {depth: 4}\n")
    model = load_pretrain_config(str(custom), []).model
    assert (model.encoder.width, model.encoder.depth, model.predictor.width) == (384, 4, 192)  # given keys win
    custom.write_text("model: {size: enormous}\n")
    with pytest.raises(ConfigError, match="model.size 'enormous' is not one of tiny"):
        load_pretrain_config(str(custom), [])


def test_a_retired_key_loads_from_saved_configs_and_is_refused_in_new_ones(tmp_path):
    from mjepa.config import ModelConfig
    from mjepa.pretrain_config import PretrainConfig, load_pretrain_config
    from mjepa.typed_config import ConfigError, build, to_dict, without_retired_keys

    saved = to_dict(PretrainConfig())
    saved["model"]["encoder"]["activation_checkpointing"] = True  # as configs written by an older mjepa hold it
    assert build(PretrainConfig, without_retired_keys(PretrainConfig, saved)) == PretrainConfig()
    assert ModelConfig.from_dict(saved["model"]) == ModelConfig()
    custom = tmp_path / "custom.yaml"
    custom.write_text("base: tiny-cpu\nmodel:\n  encoder: {activation_checkpointing: true}\n")
    with pytest.raises(
        ConfigError, match="'model.encoder.activation_checkpointing' was retired; use 'run.activation_checkpointing'"
    ):
        load_pretrain_config(str(custom), [])
