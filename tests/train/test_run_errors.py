"""Bad data, full or read-only disks and interrupted writes: one line, the right exit status, nothing lost."""

from __future__ import annotations

import json
import os
from collections import namedtuple

import pytest

from mjepa.checkpoint_file import load_checkpoint
from mjepa.data.manifests.manifest import ManifestEntry, read_manifest, write_manifest
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train import checkpoint
from mjepa.train.checkpoint import CheckpointManager
from mjepa.train.loop import TrainingStopped, pretrain
from pretrain_helpers import TINY_RUN, run_cli, synthetic_run


@pytest.mark.slow
def test_a_manifest_whose_files_are_all_missing_stops_the_run(tmp_path):
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [ManifestEntry(str(tmp_path / f"gone{i}.mp4")) for i in range(20)])
    result = run_cli(
        [
            "pretrain",
            *TINY_RUN,
            "data.source=manifest",
            f"data.manifests=[{manifest}]",
            "data.num_workers=0",
            "run.steps=10",
            "run.batch_size=4",
            f"run.out_dir={tmp_path / 'run'}",
        ]
    )
    assert result.returncode == 3, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert "4 of the 4 items drawn so far were skipped" in lines[-1] and "missing (e.g." in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints" / "latest.pt").exists()
    names = [json.loads(line)["path"] for line in (tmp_path / "run" / "skipped_items.jsonl").read_text().splitlines()]
    assert len(names) == 4 and all("gone" in n for n in names)  # appended as they happened


def test_written_manifests_point_at_the_same_files_from_any_folder(tmp_path, monkeypatch):
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.mp4").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    write_manifest("media/list.jsonl", [ManifestEntry("a.mp4")], paths_from="media")  # relative to its folder
    entries = read_manifest("media/list.jsonl")  # paths now relative to the current folder
    write_manifest("sub/deeper/clean.jsonl", entries)
    assert json.loads((tmp_path / "sub/deeper/clean.jsonl").read_text())["path"] == "../../media/a.mp4"
    again = read_manifest("sub/deeper/clean.jsonl")
    assert os.path.samefile(again[0].path, media / "a.mp4")


def test_too_little_disk_for_a_checkpoint_stops_the_run_with_the_previous_one_intact(tmp_path, monkeypatch):
    config = load_pretrain_config(
        "tiny-cpu", synthetic_run(tmp_path / "run", 4, extra=("data.num_workers=0", "run.checkpoint_every=2"))
    )
    real = checkpoint.shutil.disk_usage
    Usage = namedtuple("Usage", "total used free")
    saves = []

    def shrinking(path):
        saves.append(path)
        usage = real(path)
        return usage if len(saves) == 1 else Usage(usage.total, usage.total, 1024)

    monkeypatch.setattr(checkpoint.shutil, "disk_usage", shrinking)
    with pytest.raises(TrainingStopped, match="GiB free on its disk") as stopped:
        pretrain(config)
    assert "previous checkpoint is intact" in str(stopped.value)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 2
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_a_read_only_run_folder_is_one_line_and_exit_2(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the run folder should go")
    result = run_cli(["pretrain", *synthetic_run(blocked / "run", 4)])
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "blocked" in lines[0] and "Traceback" not in result.stderr


def test_a_resumed_run_keeps_each_step_once_and_drops_stale_temporaries(tmp_path):
    run_dir = tmp_path / "run"
    first = load_pretrain_config(
        "tiny-cpu", synthetic_run(run_dir, 4, extra=("data.num_workers=0", "run.checkpoint_every=2"))
    )
    pretrain(first)
    checkpoints = run_dir / "checkpoints"
    # A kill after step 3 was logged but before step 4's checkpoint: the run resumes from step 2's checkpoint.
    os.replace(checkpoints / "step_00000002.pt", checkpoints / "latest.pt")
    (checkpoints / "step_00000004.pt").unlink()
    stale = checkpoints / ".latest.pt.tmp-999999"
    stale.write_bytes(b"half a checkpoint")
    state = load_checkpoint(checkpoints / "latest.pt")
    assert set(state["skipped_items"]) == {"counts", "draws"}  # counts only, never the list of files
    pretrain(first)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 4
    assert not stale.exists()


def test_checkpoint_manager_removes_only_temporaries(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for name in (".latest.pt.tmp-12", ".step_00000002.pt.tmp-7", ".latest.pt.link-3", "latest.pt", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    removed = sorted(p.name for p in manager.remove_stale_temporaries())
    assert removed == [".latest.pt.link-3", ".latest.pt.tmp-12", ".step_00000002.pt.tmp-7"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "notes.txt"]
