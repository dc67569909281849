"""Rebuild a model and its preprocessing from a training checkpoint (no unpickling of arbitrary objects)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from mjepa.checkpoint_file import CheckpointError, load_checkpoint
from mjepa.data.preprocess.frontend import frontend_from_dict
from mjepa.models.mjepa import MJEPA
from mjepa.packaging import LoadedModel, is_model_dir, load_model_dir, resolve_model_path
from mjepa.pretrain_config import PretrainConfig
from mjepa.typed_config import ConfigError, build, without_retired_keys


def load_model(path: str | Path, random_init: bool = False, init_seed: int | None = None) -> LoadedModel:
    """The model of a training checkpoint or a model folder (``save_pretrained``); with ``random_init`` the same
    architecture, freshly initialised from ``init_seed`` (default: the run's seed + 1, a baseline the run never saw).
    With the run's own seed (``config.run.seed``) it is the run's step-0 model: pretraining initialises from that seed
    the same way. ``path`` may also name a shipped model (``mjepa-tiny``)."""
    path = resolve_model_path(path)
    if is_model_dir(path):
        return _load_model_dir(Path(path), random_init, init_seed)
    if Path(path).is_dir():
        raise CheckpointError(
            f"{path} is a folder but not an mjepa model folder (it needs config.json and "
            "model.safetensors, as save_pretrained writes them)"
        )
    payload = load_checkpoint(path)
    try:
        config = build(PretrainConfig, without_retired_keys(PretrainConfig, payload["config"]))
        frontend = frontend_from_dict(payload["frontend"])
    except (KeyError, ConfigError) as err:
        raise CheckpointError(f"checkpoint {path} has no usable config/frontend: {err}") from None
    torch.manual_seed(config.run.seed + 1 if init_seed is None else init_seed)
    model = MJEPA(config.model)
    if not random_init:
        missing, unexpected = model.load_state_dict(payload["model"], strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint {path} does not fit its own config: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
    model.eval()
    return LoadedModel(model, frontend, config, int(payload["step"]), str(path))


def _load_model_dir(path: Path, random_init: bool, init_seed: int | None) -> LoadedModel:
    """A ``save_pretrained`` folder; with ``random_init`` its architecture freshly initialised."""
    loaded = load_model_dir(path)
    if random_init:
        torch.manual_seed(loaded.config.run.seed + 1 if init_seed is None else init_seed)
        loaded = replace(loaded, model=MJEPA(loaded.config.model).eval(), parts="all")
    return loaded
