"""Recorded audio-only items train beside audio-visual clips (``data.missing_video=flag``): the run uses both and
leaves the audio-only items out of the video terms; by default they are skipped and named."""

from __future__ import annotations

import json
import math

import pytest
from media_builders import media  # noqa: F401  (pytest fixture)

from mjepa.data.manifests.manifest import ManifestEntry, write_manifest
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.loop import pretrain
from pretrain_helpers import TINY_RUN


def _run(media, tmp_path, name: str, extra: tuple[str, ...] = ()):
    manifest = tmp_path / "mixed.jsonl"
    kinds = ("mp4", "mkv", "wav", "flac", "ogg", "mp3")
    write_manifest(manifest, [ManifestEntry(str(media[k])) for k in kinds])
    run_dir = tmp_path / name
    args = [
        *TINY_RUN,
        "data.source=manifest",
        f"data.manifests=[{manifest}]",
        "data.num_workers=0",
        "data.max_skip_fraction=1.0",
        "run.steps=3",
        "optim.warmup_steps=1",
        "optim.cooldown_steps=1",
        "run.batch_size=6",
        f"run.out_dir={run_dir}",
        *extra,
    ]
    pretrain(load_pretrain_config("tiny-cpu", args))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    skipped_path = run_dir / "skipped_items.jsonl"
    skipped = [json.loads(line) for line in skipped_path.read_text().splitlines()] if skipped_path.exists() else []
    return records, skipped


def test_audio_only_items_train_beside_video_items_when_flagged(media, tmp_path):
    records, skipped = _run(media, tmp_path, "flagged", ("data.missing_video=flag",))
    assert not skipped
    assert len(records) == 3 and all(math.isfinite(r["loss"]) for r in records)
    assert all(r["intra_V"] > 0 and r["intra_A"] > 0 for r in records)


@pytest.mark.slow
def test_audio_only_items_are_skipped_and_named_by_default(media, tmp_path):
    records, skipped = _run(media, tmp_path, "default")
    assert len(records) == 3
    assert {item["path"] for item in skipped} == {str(media[k]) for k in ("wav", "flac", "ogg", "mp3")}
