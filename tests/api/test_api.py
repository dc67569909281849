import math
from pathlib import Path

import numpy as np
import pytest
import torch

import mjepa
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.loop import pretrain
from pretrain_helpers import synthetic_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    pretrain(
        load_pretrain_config(
            "tiny-cpu", synthetic_run(root / "run", 2, extra=("optim.warmup_steps=1", "optim.cooldown_steps=0"))
        )
    )
    return root / "run" / "checkpoints" / "latest.pt"


def _waveform(seconds, rate=22050):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.3 * t))).astype(np.float32)


@pytest.mark.slow
def test_encode_audio_windows_a_25_second_waveform(checkpoint):
    model = mjepa.load(str(checkpoint))
    emb = model.encode_audio(_waveform(25.0), sample_rate=22050)
    window_seconds = model.audio_config.target_frames * model.audio_config.frame_shift_ms / 1000
    windows = math.ceil(2498 / model.audio_config.target_frames)  # 25 s of 25 ms frames every 10 ms
    assert emb.pooled.shape == (windows, model.model.config.encoder.width)
    assert emb.window_starts[:2] == [0.0, pytest.approx(window_seconds)]
    assert emb.valid_tokens[0].all() and not emb.valid_tokens[-1].all()  # the last window is partly padding
    assert emb.mean.shape == (model.model.config.encoder.width,) and torch.isfinite(emb.pooled).all()


def test_padding_is_not_pooled(checkpoint):
    model = mjepa.load(str(checkpoint))
    short = model.encode_audio(_waveform(0.5), sample_rate=22050, pooled=False)
    valid = short.valid_tokens[0]
    assert 0 < int(valid.sum()) < valid.numel()
    assert torch.allclose(short.pooled[0], short.tokens[0][valid].mean(0), atol=1e-6)


def test_video_and_av_embeddings_and_encoder_choice(checkpoint):
    model = mjepa.load(str(checkpoint))
    frames = torch.randint(0, 256, (45, 48, 64, 3), dtype=torch.uint8)  # 3 s at 15 fps
    video = model.encode_video(frames, fps=15)
    assert video.pooled.shape[0] == math.ceil(3.0 / model.clip.window_duration)
    av = model.encode_av(_waveform(3.0), 22050, frames, fps=15, pooled=False)
    assert av.tokens.shape[0] == video.pooled.shape[0] and av.valid_tokens.shape == av.tokens.shape[:2]
    context = model.encode_video(frames, fps=15, encoder="context")
    assert not torch.allclose(context.pooled, video.pooled)
    middle = model.encode_video(frames, fps=15, layer=0)
    assert middle.pooled.shape == video.pooled.shape and not torch.allclose(middle.pooled, video.pooled)
    with pytest.raises(ValueError, match="'target'"):
        model.encode_video(frames, fps=15, encoder="online")
    with pytest.raises(ValueError, match="uint8"):
        model.encode_video(frames.float(), fps=15)


def test_save_and_load_round_trip_gives_identical_embeddings(checkpoint, tmp_path):
    model = mjepa.load(str(checkpoint))
    wave = _waveform(4.0)
    before = model.encode_audio(wave, 22050).pooled
    directory = model.save_pretrained(tmp_path / "model")
    assert {p.name for p in directory.iterdir()} == {"model.safetensors", "config.json", "frontend.json", "README.md"}
    reloaded = mjepa.load(str(directory))
    assert torch.equal(reloaded.encode_audio(wave, 22050).pooled, before)
    assert reloaded.frontend == model.frontend
    keys = set(reloaded.model.state_dict())
    assert any(k.startswith("target_encoders.") for k in keys) and any(k.startswith("predictors.") for k in keys)
    assert not any(k.startswith("module.") for k in keys)


def test_torch_hub_entry_point_loads_a_model_directory(checkpoint, tmp_path):
    directory = mjepa.load(str(checkpoint)).save_pretrained(tmp_path / "model")
    model = torch.hub.load(str(REPO), "mjepa", source="local", path=str(directory))
    assert model.encode_audio(_waveform(1.0), 22050).pooled.shape[0] == 1


def test_a_crafted_weights_file_cannot_run_code(checkpoint, tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    directory = mjepa.load(str(checkpoint)).save_pretrained(tmp_path / "model")
    (directory / "model.safetensors").write_bytes(pickle.dumps({"weights": Payload()}, protocol=2))
    from safetensors import SafetensorError

    with pytest.raises(SafetensorError):
        mjepa.load(str(directory))
    assert not (tmp_path / "pwned").exists()


def test_unknown_source_is_a_clear_error(tmp_path):
    shipped = "mjepa-tiny, mjepa-tiny-atari"
    with pytest.raises(ValueError, match=f"neither a shipped model \\({shipped}\\), an mjepa checkpoint"):
        mjepa.load(str(tmp_path / "nothing-here"))


def test_hub_repository_ids_download_a_model_directory(checkpoint, tmp_path, monkeypatch):
    import sys
    import types

    directory = mjepa.load(str(checkpoint)).save_pretrained(tmp_path / "snapshot")
    requests = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        requests.append((repo_id, revision, tuple(allow_patterns)))
        return str(directory)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    model = mjepa.load("some-org/mjepa-tiny", revision="v1")
    assert requests == [("some-org/mjepa-tiny", "v1", ("model.safetensors", "config.json", "frontend.json"))]
    assert model.encode_audio(_waveform(1.0), 22050).pooled.shape[0] == 1


def test_hub_id_without_huggingface_hub_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if it were not installed
    with pytest.raises(ValueError, match="pip install 'mjepa\\[hub\\]'"):
        mjepa.load("some-org/mjepa-tiny")


def test_a_target_only_folder_builds_the_target_only_and_has_a_card(tmp_path):
    import os

    full = mjepa.load("mjepa-tiny")
    folder = full.save_pretrained(tmp_path / "target", parts="target")
    assert {p.name for p in folder.iterdir()} == {"config.json", "frontend.json", "model.safetensors", "README.md"}
    assert all(os.stat(p).st_mode & 0o777 == 0o666 & ~_umask() for p in folder.iterdir())
    card = (folder / "README.md").read_text()
    assert "width 192, depth 12" in card and "parts | target" in card and "mjepa.load(" in card
    target = mjepa.load(str(folder))
    built = sum(p.numel() for p in target.model.parameters())
    assert built == sum(p.numel() for p in full.model.target_encoders.parameters())
    wave = torch.randn(16000).numpy()
    assert torch.allclose(target.encode_audio(wave, 16000).mean, full.encode_audio(wave, 16000).mean, atol=1e-6)
    with pytest.raises(ValueError, match="holds only its target encoder"):
        target.model.encoder("A")


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_version_is_one_flag_away(capsys):
    from mjepa.cli import main
    from mjepa.version import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"mjepa {__version__}"
