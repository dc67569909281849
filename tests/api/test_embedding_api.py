"""The embedding API at the batch level: lists and batches of clips, files, dtypes, input checks, layers,
timestamps, target-only export, and the HEAR and X-ARES adapters' contracts."""

import sys
import types

import numpy as np
import pytest
import torch

import mjepa
from mjepa import hear
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.loop import pretrain
from mjepa.xares import MJEPAEncoder
from pretrain_helpers import synthetic_run


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedding_api")
    pretrain(
        load_pretrain_config(
            "tiny-cpu", synthetic_run(root / "run", 2, extra=("optim.warmup_steps=1", "optim.cooldown_steps=0"))
        )
    )
    return str(root / "run" / "checkpoints" / "latest.pt")


@pytest.fixture(scope="module")
def model(checkpoint):
    return mjepa.load(checkpoint)


def _tone(seconds, rate=16000, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * (300 + 100 * seed) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_a_list_of_unequal_clips_equals_each_clip_alone(model):
    clips = [_tone(0.7, seed=0), _tone(3.1, seed=1), _tone(1.3, seed=2)]
    together = model.encode_audio(clips, sample_rate=16000, batch_size=2, pooled=False)
    assert isinstance(together, list) and len(together) == 3
    for clip, batched in zip(clips, together):
        alone = model.encode_audio(clip, sample_rate=16000, pooled=False)
        assert batched.pooled.shape == alone.pooled.shape and batched.window_starts == alone.window_starts
        assert torch.allclose(batched.pooled, alone.pooled, atol=1e-5)
        assert torch.allclose(batched.tokens, alone.tokens, atol=1e-5)
    checked = model.encode_audio([np.zeros(16000, np.float32), np.zeros(32000, np.float32)], sample_rate=16000)
    assert len(checked) == 2 and all(torch.isfinite(e.mean).all() for e in checked)


def test_a_2d_array_is_one_clip_with_channels_and_a_batch_is_said(model):
    pair = np.stack([_tone(1.0, seed=0), _tone(1.0, seed=3)])
    mono = model.encode_audio(pair.mean(0), sample_rate=16000)
    channels_first = model.encode_audio(pair, sample_rate=16000)  # (channels, samples): one stereo clip
    soundfile_layout = model.encode_audio(pair.T, sample_rate=16000)  # (samples, channels), as soundfile reads
    assert isinstance(channels_first, mjepa.api.Embeddings) and isinstance(soundfile_layout, mjepa.api.Embeddings)
    assert torch.allclose(channels_first.mean, mono.mean, atol=1e-6)
    assert torch.allclose(soundfile_layout.mean, mono.mean, atol=1e-6)
    rows = model.encode_audio(pair, sample_rate=16000, batch=True)  # two clips, said so
    assert len(rows) == 2 and not torch.allclose(rows[0].mean, rows[1].mean)
    listed = model.encode_audio([pair[0], pair[1].T[:, None]], sample_rate=16000)  # a list; an element may be 2-D
    assert len(listed) == 2 and torch.allclose(listed[0].mean, rows[0].mean, atol=1e-6)
    assert torch.allclose(listed[1].mean, rows[1].mean, atol=1e-6)


def test_an_ambiguous_shape_names_the_rule_and_the_switch(model):
    square = np.zeros((100, 300), dtype=np.float32)  # 100 channels or 100 clips? neither side is a channel count
    with pytest.raises(ValueError, match=r"\(100, 300\) is ambiguous;.*channels_first=True or False"):
        model.encode_audio(square, sample_rate=16000)
    forced = model.encode_audio(np.stack([_tone(1.0)] * 100), sample_rate=16000, channels_first=True)
    assert torch.allclose(forced.mean, model.encode_audio(_tone(1.0), sample_rate=16000).mean, atol=1e-5)


def test_integer_scale_floats_are_flagged(model):
    loud = _tone(1.0) * 32768.0
    with pytest.raises(ValueError, match="clip 0: float samples reach .* integer PCM stored as floats"):
        model.encode_audio(loud, sample_rate=16000)
    model.encode_audio(_tone(1.0) * 1.5, sample_rate=16000)  # a mix clipping past full scale is still audio


def test_video_and_av_lists_equal_each_clip_alone(model):
    gen = torch.Generator().manual_seed(0)
    videos = [torch.randint(0, 256, (n, 48, 64, 3), dtype=torch.uint8, generator=gen) for n in (20, 45)]
    waves = [_tone(n / 15, seed=i) for i, n in enumerate((20, 45))]
    together = model.encode_video(videos, fps=15, batch_size=3)
    av = model.encode_av(waves, 16000, videos, fps=15, batch_size=1)
    for i in range(2):
        assert torch.allclose(together[i].pooled, model.encode_video(videos[i], fps=15).pooled, atol=1e-5)
        assert torch.allclose(av[i].pooled, model.encode_av(waves[i], 16000, videos[i], fps=15).pooled, atol=1e-5)


def test_file_paths_equal_the_decoded_arrays(model, tmp_path):
    from mjepa.data.atari.generate import atari_av_manifest_path, generate_atari_av
    from mjepa.data.manifests.manifest import read_manifest
    from mjepa.data.media.decode import decode_audio
    from mjepa.embedding_inputs import decode_video_file

    generate_atari_av(tmp_path / "atari", games=("pong",), clips_per_game=3, clip_seconds=2.0, progress=None)
    path = read_manifest(atari_av_manifest_path(tmp_path / "atari", "train"))[0].path
    waveform = decode_audio(path, sample_rate=16000)[0].numpy()
    frames, _ = decode_video_file(path, model.clip, model.video_config.eval_short_side)
    assert torch.equal(model.encode_audio(path).pooled, model.encode_audio(waveform, 16000).pooled)
    assert torch.equal(
        model.encode_video([path])[0].pooled, model.encode_video(frames, model.clip.frames_per_second).pooled
    )
    assert torch.allclose(
        model.encode_av(path).pooled,
        model.encode_av(waveform, 16000, frames, model.clip.frames_per_second).pooled,
        atol=1e-6,
    )


def test_integer_pcm_is_scaled_by_its_range(model):
    wave = _tone(1.0)
    as_int16 = np.round(wave * 32767).astype(np.int16)
    as_uint8 = np.round(wave * 127 + 128).astype(np.uint8)
    reference = model.encode_audio(wave, 16000).mean
    for pcm in (as_int16, as_uint8):
        cosine = torch.nn.functional.cosine_similarity(model.encode_audio(pcm, 16000).mean, reference, dim=0)
        assert cosine > 0.995  # unscaled int16 gives about 0.8


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros(0, np.float32), "clip 0: the audio is empty"),
        (np.full(16000, np.nan, np.float32), "clip 0: 16000 of 16000 audio samples are NaN or infinite"),
        (np.zeros(100, np.float32), "shorter than one analysis frame"),
        (np.zeros((2, 3, 4), np.float32), "of shape \\(2, 3, 4\\) is not a clip"),
    ],
)
def test_bad_audio_is_a_one_line_error(model, bad, message):
    with pytest.raises(ValueError, match=message):
        model.encode_audio(bad, 16000)


def test_layers_are_checked_and_several_come_back_together(model):
    depth = model.model.config.encoder.depth
    for layer in (depth, -depth - 1, 50):
        with pytest.raises(ValueError, match=f"layer {layer} is outside"):
            model.encode_audio(_tone(1.0), 16000, layer=layer)
    assert torch.equal(
        model.encode_audio(_tone(1.0), 16000, layer=-depth).pooled,
        model.encode_audio(_tone(1.0), 16000, layer=0).pooled,
    )
    assert torch.equal(
        model.encode_audio(_tone(1.0), 16000, layer=depth - 1).pooled, model.encode_audio(_tone(1.0), 16000).pooled
    )
    several = model.encode_audio(_tone(1.0), 16000, layer=[0, -1])
    assert several.pooled.shape == (1, 2, model.embedding_dim) and several.mean.shape == (2, model.embedding_dim)
    assert torch.allclose(several.pooled[:, 0], model.encode_audio(_tone(1.0), 16000, layer=0).pooled, atol=1e-6)
    assert torch.allclose(several.pooled[:, 1], model.encode_audio(_tone(1.0), 16000).pooled, atol=1e-6)


def test_mean_weights_windows_by_the_tokens_that_hold_sound(model):
    window = model.audio_config.target_frames * model.audio_config.frame_shift_ms / 1000
    emb = model.encode_audio(_tone(window + 0.1), 16000)  # a full window and a nearly empty one
    counts = emb.valid_tokens.sum(1).float()
    expected = (emb.pooled * (counts / counts.sum())[:, None]).sum(0)
    assert counts[1] < counts[0] / 5 and torch.allclose(emb.mean, expected, atol=1e-6)


def _final_hear_rules(times_ms: torch.Tensor, length_s: float) -> list[str]:
    """HEAR's final validator (2021.0.6), its timestamp checks: errors for uneven spacing (over 1 ms) or a timestamp
    past the end; what it only warns about is returned too, prefixed "warning"."""
    problems = []
    times = times_ms.double()
    if times.numel() > 1:
        diffs = times.diff()
        average = float(diffs.mean())
        if float((diffs - average).abs().max()) > 1:
            problems.append("uneven")
        if float(times.min()) > average:
            problems.append("warning: late start")
        if float(times.max()) < 1000 * length_s - average or float(times.max()) < 1000 * length_s - 50:
            problems.append("warning: early end")
    if float(times.max()) > 1000 * length_s:
        problems.append("past the end")
    return problems


LENGTHS = [0.2, 0.31, 1.07, 1.98, 2.0, 4.0, 10.24, 10.3, 12.9] + [0.5 + 0.137 * k for k in range(45)]


def test_timestamps_follow_the_final_hear_rules_at_every_length(model):
    assert len(LENGTHS) >= 50
    clips = [_tone(seconds, seed=k % 3) for k, seconds in enumerate(LENGTHS)]
    native = model.encode_audio(clips, 16000, timestamps=True, batch_size=16)
    fine = model.encode_audio(clips, 16000, timestamps=True, timestamp_hop_ms=50, batch_size=16)
    for seconds, step, hop in zip(LENGTHS, native, fine):
        assert [p for p in _final_hear_rules(step.frame_times * 1000, seconds) if "warning" not in p] == []
        assert _final_hear_rules(hop.frame_times * 1000, seconds) == [], seconds  # not even a warning at 50 ms
        assert hop.frames.shape == (hop.frame_times.shape[0], model.embedding_dim)
        assert torch.allclose(hop.frame_times.diff(), torch.full_like(hop.frame_times[1:], 0.05))


def test_timestamp_frames_are_the_steps_interpolated(model):
    emb = model.encode_audio(_tone(3.3), 16000, timestamps=True)
    step = model.audio_hop_ms / 1000
    assert torch.allclose(emb.frame_times.diff(), torch.full_like(emb.frame_times[1:], step))
    assert abs(float(emb.frame_times[0]) - step / 2) < 1e-9 and 3.3 - step <= float(emb.frame_times[-1]) <= 3.3
    # A third of a step: every third frame (the 2nd, 5th, ...) lands on a step centre and is that step itself.
    fine = model.encode_audio(_tone(3.3), 16000, timestamps=True, timestamp_hop_ms=model.audio_hop_ms / 3)
    on_steps = fine.frames[1::3][: emb.frames.shape[0]]
    assert torch.allclose(on_steps, emb.frames[: on_steps.shape[0]], atol=1e-5)
    with pytest.raises(ValueError, match="timestamp_hop_ms must be a positive number"):
        model.encode_audio(_tone(1.0), 16000, timestamps=True, timestamp_hop_ms=0)


def test_a_bf16_model_embeds_in_bf16(checkpoint):
    model = mjepa.load(checkpoint, device="cpu", dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and isinstance(model, torch.nn.Module)
    emb = model.encode_audio(_tone(1.0), 16000)
    video = model.encode_video(torch.randint(0, 256, (20, 48, 64, 3), dtype=torch.uint8), fps=15)
    assert emb.pooled.dtype == video.pooled.dtype == torch.bfloat16 and torch.isfinite(emb.pooled.float()).all()
    reference = mjepa.load(checkpoint).encode_audio(_tone(1.0), 16000).mean
    assert torch.nn.functional.cosine_similarity(emb.mean.float(), reference, dim=0) > 0.99


def test_target_only_bf16_export_loads_and_embeds_the_same(model, tmp_path):
    directory = model.save_pretrained(tmp_path / "target", parts="target", dtype=torch.bfloat16)
    full = model.save_pretrained(tmp_path / "full")
    assert (directory / "model.safetensors").stat().st_size < (full / "model.safetensors").stat().st_size / 3
    small = mjepa.load(str(directory))
    assert small.dtype == torch.bfloat16
    cosine = torch.nn.functional.cosine_similarity(
        small.encode_audio(_tone(1.0), 16000).mean.float(), model.encode_audio(_tone(1.0), 16000).mean, dim=0
    )
    assert cosine > 0.99
    with pytest.raises(ValueError, match="only its target encoder"):
        small.encode_audio(_tone(1.0), 16000, encoder="context")


def test_push_to_hub_uploads_a_model_folder(model, monkeypatch):
    calls = []

    class HfApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, commit_message):
            from pathlib import Path

            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            return types.SimpleNamespace(commit_url=f"https://hub/{repo_id}/commit/1")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=HfApi))
    assert model.push_to_hub("org/mjepa-tiny") == "https://hub/org/mjepa-tiny/commit/1"
    assert calls[1] == ("create", "org/mjepa-tiny", False, True)
    assert calls[2] == ("upload", "org/mjepa-tiny", ["README.md", "config.json", "frontend.json", "model.safetensors"])


def test_hear_contract(checkpoint):
    model = hear.load_model(checkpoint)
    assert isinstance(model, torch.nn.Module) and model.sample_rate == 16000
    audio = torch.stack([torch.from_numpy(_tone(2.0, seed=s)) for s in range(3)])
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (3, model.scene_embedding_size) and scene.dtype == torch.float32
    assert hear.get_scene_embeddings(torch.zeros(2, 32000), model).shape == (2, model.scene_embedding_size)
    embeddings, times = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.shape[:2] == times.shape and embeddings.shape[0] == 3
    assert embeddings.shape[2] == model.timestamp_embedding_size and embeddings.dtype == torch.float32
    steps = times.diff(dim=1)
    assert torch.allclose(steps, torch.full_like(steps, hear.HEAR_TIMESTAMP_HOP_MS))  # evenly spaced, in ms
    assert _final_hear_rules(times[0], 2.0) == [] and torch.equal(times[0], times[2])


def test_hears_runner_loads_a_shipped_model_by_its_model_options():
    """hear-eval-kit's runner takes only an existing path in --model; without it, it calls
    ``load_model(**json.loads(--model-options))`` and moves the model to its device, as here."""
    import json

    model = hear.load_model(**json.loads('{"model_file_path": "mjepa-tiny", "timestamp_hop_ms": 40}'))
    assert isinstance(model, torch.nn.Module) and model.to("cpu") is model
    embeddings, times = hear.get_timestamp_embeddings(torch.zeros(1, 16000), model)
    assert torch.allclose(times.diff(dim=1), torch.full_like(times[:, 1:], 40.0))


def test_xares_contract(model):
    encoder = MJEPAEncoder(model=model, batch_size=4)
    assert type(encoder).__name__.endswith("Encoder") and isinstance(encoder, torch.nn.Module)
    assert (encoder.sampling_rate, encoder.output_dim, encoder.hop_size_in_ms) == (16000, model.embedding_dim, 160.0)
    seconds = 30.0
    out = encoder(torch.from_numpy(np.stack([_tone(seconds, seed=0), _tone(seconds, seed=1)])))
    assert out.shape[0] == 2 and out.shape[2] == model.embedding_dim
    assert abs(out.shape[1] - seconds * 1000 / encoder.hop_size_in_ms) <= 2
    mask = torch.ones(2, 32000, dtype=torch.long)
    mask[1, 16000:] = 0  # the second row holds 1 s of sound, then padding
    masked = encoder(torch.from_numpy(np.stack([_tone(2.0), _tone(2.0)])), mask)
    assert masked[0, -1].abs().sum() > 0 and masked[1, -1].abs().sum() == 0
    # What X-ARES's encoder checker does: a device attribute, output_dim, and a call with the sample rate.
    assert encoder.device == model.device
    checked = encoder(torch.randn(2, 50000) * 0.1, 16000)
    assert isinstance(checked, torch.Tensor) and checked.ndim == 3 and checked.shape[-1] == encoder.output_dim
    with pytest.raises(ValueError, match="44100 Hz"):
        encoder(torch.randn(2, 50000), 44100)


def test_the_real_xares_checker_accepts_the_encoder(model):
    # X-ARES 0.1.3's own checker module (installed without the torchaudio its package asks for: make install).
    checker = pytest.importorskip("xares.audio_encoder_checker", reason="xares 0.1.3 is installed by make install")
    encoder = MJEPAEncoder(model=model, batch_size=4)
    assert checker.check_audio_encoder(encoder) is True  # it calls encoder(audio) on (2, 50000) random audio


@pytest.mark.slow
def test_mteb_encoder_contract(checkpoint):
    mteb = pytest.importorskip("mteb")
    from torch.utils.data import DataLoader

    from mjepa.mteb_encoder import model_meta

    meta = model_meta(checkpoint, name="mjepa/mjepa-test")
    assert isinstance(meta, mteb.models.ModelMeta) and meta.embed_dim == 64 and meta.modalities == ["audio", "video"]
    encoder = meta.loader(meta.name, revision=meta.revision)  # how mteb's ModelMeta.load_model calls it
    assert isinstance(encoder, mteb.models.abs_encoder.AbsEncoder)
    rows = [{"audio": {"array": _tone(0.5 + i, rate=22050, seed=i), "sampling_rate": 22050}} for i in range(5)]
    embeddings = encoder.encode(
        DataLoader(rows, batch_size=2), task_metadata=None, hf_split="test", hf_subset="default"
    )
    assert embeddings.shape == (5, 64) and embeddings.dtype == np.float32
    alone = encoder.model.encode_audio(rows[3]["audio"]["array"], 22050).mean.numpy()
    assert np.allclose(embeddings[3], alone, atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    videos = [{"video": torch.randint(0, 256, (12, 3, 48, 64), dtype=torch.uint8, generator=gen)} for _ in range(2)]
    assert encoder.encode(
        DataLoader(videos, batch_size=2, collate_fn=list), task_metadata=None, hf_split="test", hf_subset="default"
    ).shape == (2, 64)
