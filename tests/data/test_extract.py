import pytest
import torch
from media_builders import media  # noqa: F401  (pytest fixture)

from mjepa.cli import main
from mjepa.data.manifests.manifest import ManifestEntry, write_manifest
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.loop import pretrain


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    pretrain(
        load_pretrain_config(
            "tiny-cpu",
            [
                "data.source=synthetic",
                "model.encoder.depth=2",
                "model.encoder.width=64",
                "model.encoder.num_heads=2",
                "model.predictor.depth=1",
                "model.predictor.width=64",
                "model.predictor.num_heads=2",
                "data.audio_frames=128",
                "data.mel_bins=64",
                "data.image_size=64",
                "data.num_frames=4",
                "run.steps=1",
                "run.batch_size=2",
                "optim.warmup_steps=0",
                "optim.cooldown_steps=0",
                "run.precision=fp32",
                f"run.out_dir={root / 'run'}",
            ],
        )
    )
    return root / "run" / "checkpoints" / "latest.pt"


@pytest.mark.parametrize("modality", ["audio", "video", "av"])
def test_extract_embeds_every_readable_item_and_lists_the_rest(media, checkpoint, tmp_path, modality, capsys):
    manifest = tmp_path / "items.jsonl"
    write_manifest(
        manifest,
        [
            ManifestEntry(str(media["mp4"])),
            ManifestEntry(str(media["missing"])),
            ManifestEntry(str(media["webm"])),
            ManifestEntry(str(media["garbage"])),
        ],
    )
    out = tmp_path / "features.pt"
    args = ["extract", str(manifest), "--checkpoint", str(checkpoint), "--out", str(out), "--modality", modality]
    assert main(args + (["--tokens"] if modality == "av" else [])) == 0
    record = torch.load(out, weights_only=True)
    assert record["paths"] == [str(media["mp4"]), str(media["webm"])]
    assert record["pooled"].shape == (2, 64) and torch.isfinite(record["pooled"]).all()
    assert [s["reason"] for s in record["skipped"]] == ["missing", "unreadable"]
    assert len(record["windows"]) == 2 and record["windows"][0].dim() == 2
    if modality == "av":
        assert record["tokens"][0].dim() == 3
    assert "2 unreadable items skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_extract_with_decoding_workers_matches_decoding_in_process(media, checkpoint, tmp_path):
    manifest = tmp_path / "items.jsonl"
    write_manifest(manifest, [ManifestEntry(str(media[k])) for k in ("mp4", "missing", "mkv", "webm")])
    records = {}
    for workers in (0, 2):
        out = tmp_path / f"features-{workers}.pt"
        assert (
            main(
                [
                    "extract",
                    str(manifest),
                    "--checkpoint",
                    str(checkpoint),
                    "--out",
                    str(out),
                    "--modality",
                    "av",
                    "--workers",
                    str(workers),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
        records[workers] = torch.load(out, weights_only=True)
    assert records[0]["paths"] == records[2]["paths"]  # manifest order, whichever worker decoded an item
    assert torch.allclose(records[0]["pooled"], records[2]["pooled"], atol=1e-5)
    assert records[0]["skipped"] == records[2]["skipped"]


def test_extract_on_a_model_folder_picks_the_items_modality(media, checkpoint, tmp_path, capsys):
    import mjepa

    folder = mjepa.load(str(checkpoint)).save_pretrained(tmp_path / "model", parts="target")
    manifest = tmp_path / "audio_only.jsonl"
    write_manifest(manifest, [ManifestEntry(str(media[k])) for k in ("wav", "flac")])
    out = tmp_path / "features.pt"
    assert main(["extract", str(manifest), "--checkpoint", str(folder), "--out", str(out), "--workers", "0"]) == 0
    record = torch.load(out, weights_only=True)
    assert record["modality"] == "audio" and record["pooled"].shape == (2, 64) and not record["skipped"]
    assert "--modality audio" in capsys.readouterr().err


def test_probe_loading_accepts_a_model_folder(checkpoint, tmp_path):
    import mjepa
    from mjepa.eval.loading import load_model

    folder = mjepa.load(str(checkpoint)).save_pretrained(tmp_path / "model")
    from_folder, from_checkpoint = load_model(folder), load_model(checkpoint)
    assert from_folder.step == from_checkpoint.step and from_folder.frontend == from_checkpoint.frontend
    state = from_checkpoint.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in from_folder.model.state_dict().items())
    baseline = load_model(folder, random_init=True).model.state_dict()
    assert any(not torch.equal(v, state[k]) for k, v in baseline.items())  # the random-init baseline of the probes


def test_long_videos_read_a_window_at_a_time_give_the_same_embeddings(media, checkpoint, tmp_path, monkeypatch):
    from mjepa import extract

    manifest = tmp_path / "items.jsonl"
    entries = [ManifestEntry(str(media["mp4"])), ManifestEntry(str(media["mkv"]), start=0.5, end=2.5)]
    write_manifest(manifest, entries)
    from mjepa.embedding_inputs import VideoFile

    windows_read = []
    read_window = VideoFile.window
    monkeypatch.setattr(VideoFile, "window", lambda self, start: windows_read.append(start) or read_window(self, start))
    records = []
    for limit in (extract.WHOLE_VIDEO_MAX_FRAMES, 2):  # decoded whole; then read by windows (every item is longer)
        monkeypatch.setattr(extract, "WHOLE_VIDEO_MAX_FRAMES", limit)
        out = tmp_path / f"features-{limit}.pt"
        args = ["extract", str(manifest), "--checkpoint", str(checkpoint), "--out", str(out), "--modality", "av"]
        assert main([*args, "--device", "cpu"]) == 0
        records.append(torch.load(out, weights_only=True))
        assert bool(windows_read) == (limit == 2)
    assert records[0]["paths"] == records[1]["paths"] and not records[1]["skipped"]
    assert torch.allclose(records[0]["pooled"], records[1]["pooled"], atol=1e-5)
