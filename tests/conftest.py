import pytest
import torch

from mjepa.config import EncoderConfig, ModelConfig, ObjectiveConfig, PredictorConfig


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)


def tiny_model_config(objective: ObjectiveConfig | None = None, position_embedding: str = "rope") -> ModelConfig:
    """A model small enough for unit tests: width 64, depth 2."""
    return ModelConfig(
        EncoderConfig(width=64, depth=2, num_heads=2, position_embedding=position_embedding),
        PredictorConfig(width=64, depth=2, num_heads=2),
        objective or ObjectiveConfig(),
    )
