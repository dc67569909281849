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
