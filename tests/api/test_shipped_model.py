"""Shipped models: loadable by name from inside the package, with no network."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from mjepa import packaging
from mjepa.packaging import PretrainedFormatError, resolve_model_path


def test_a_name_that_is_not_shipped_stays_a_path(tmp_path):
    assert resolve_model_path(tmp_path / "mjepa-small") == tmp_path / "mjepa-small"
    with pytest.raises(PretrainedFormatError, match="'mjepa-huge' is not a shipped model; expected one of mjepa-tiny"):
        packaging.shipped_model_dir("mjepa-huge")


def test_a_local_folder_with_the_shipped_name_wins(tmp_path, monkeypatch):
    (tmp_path / "mjepa-tiny").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("mjepa-tiny") == tmp_path.joinpath("mjepa-tiny").relative_to(tmp_path)


def test_missing_shipped_weights_say_so(monkeypatch):
    monkeypatch.setattr(packaging, "WEIGHTS_PACKAGE", "mjepa.configs")  # a package without the weights
    with pytest.raises(
        PretrainedFormatError,
        match="'mjepa-tiny' names a shipped model, but this installation has no weights at .*; reinstall mjepa",
    ):
        resolve_model_path("mjepa-tiny")


REFERENCES = Path(__file__).parent / "shipped_references"  # NAME.json: the step and the fixed clip's embeddings


def reference_path(name: str) -> Path:
    return REFERENCES / f"{name}.json"


def fixed_clip() -> tuple[np.ndarray, np.ndarray]:
    """2 s of audio (two tones under an envelope) and 8 frames of a square moving over a gradient, both pure
    functions of nothing: the clip whose embeddings the reference file stores."""
    t = np.arange(32000, dtype=np.float64) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1320 * t)) * np.exp(-((t - 1.0) ** 2))
    frames = np.zeros((8, 64, 64, 3), dtype=np.uint8)
    frames[..., 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None, None, :]
    frames[..., 2] = np.linspace(255, 0, 64, dtype=np.uint8)[None, :, None]
    for index in range(8):
        frames[index, 20:36, 4 + 6 * index : 20 + 6 * index, 1] = 255
    return audio.astype(np.float32), frames


def reference_embeddings(model) -> dict[str, list[float]]:
    audio, frames = fixed_clip()
    return {
        "audio": model.encode_audio(audio, sample_rate=16000).mean.tolist(),
        "video": model.encode_video(frames, fps=4.0).mean.tolist(),
        "av": model.encode_av(audio, sample_rate=16000, video=frames, fps=4.0).mean.tolist(),
    }


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test; hub libraries are told they are offline."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("name", packaging.SHIPPED_MODELS)
def test_each_shipped_model_loads_offline_and_embeds_the_fixed_clip_as_stored(no_network, name):
    import mjepa

    model = mjepa.load(name)
    assert model.config["parts"] == "target" and model.embedding_dim == 192
    assert model.dtype == torch.float32
    stored = json.loads(reference_path(name).read_text())
    for modality, values in reference_embeddings(model).items():
        torch.testing.assert_close(
            torch.tensor(values),
            torch.tensor(stored[modality]),
            rtol=1e-3,
            atol=1e-3,
            msg=lambda text, m=modality: f"{name}: {m} embedding differs from the stored one: {text}",
        )


@pytest.mark.parametrize("name", packaging.SHIPPED_MODELS)
def test_each_shipped_model_reads_wherever_a_model_is_read(no_network, name):
    from mjepa.eval.loading import load_model

    loaded = load_model(name)
    assert loaded.step == json.loads(reference_path(name).read_text())["step"]
    # The recipe's own run config travels with the weights (the run folder it trained in, under runs/).
    assert loaded.run_config_saved and loaded.config.run.out_dir.startswith("runs/mjepa-tiny")


if __name__ == "__main__":  # python tests/api/test_shipped_model.py NAME: write NAME's reference after shipping it
    import sys

    import mjepa

    for shipped_name in sys.argv[1:] or packaging.SHIPPED_MODELS:
        shipped = mjepa.load(shipped_name)
        record = {"step": int(shipped.config["step"]), **reference_embeddings(shipped)}
        reference_path(shipped_name).parent.mkdir(exist_ok=True)
        reference_path(shipped_name).write_text(json.dumps(record) + "\n")
        print(f"wrote {reference_path(shipped_name)}")
