"""``mjepa transfer`` end to end on a small GM-Instruments (stand-in synth) with a narrow model folder."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import torch

from instrument_helpers import FakeFluidsynth
from mjepa.cli import main
from mjepa.data.instruments import generate as instruments
from mjepa.data.preprocess.frontend import frontend_for
from mjepa.experiments import transfer
from mjepa.models.mjepa import MJEPA
from mjepa.packaging import save_model_dir
from mjepa.pretrain_config import load_pretrain_config


def test_probe_accuracies_pick_the_head_on_validation_and_separate_separable_features():
    torch.manual_seed(0)
    centres = torch.randn(3, 8) * 3
    labels = {split: torch.arange(3).repeat(n) for split, n in (("train", 20), ("val", 5), ("test", 5))}
    features = {split: centres[y] + 0.3 * torch.randn(len(y), 8) for split, y in labels.items()}
    runs = transfer.probe_accuracies(features["train"], features["val"], features["test"], labels, 3, seeds=2)
    assert [run["seed"] for run in runs] == [0, 1]
    for run in runs:
        assert run["test_accuracy"] == 1.0 and run["val_accuracy"] == 1.0
        assert (run["lr"], run["weight_decay"]) in transfer.PROBE.grid()


@pytest.mark.slow
def test_transfer_command_writes_the_three_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(instruments, "_import_fluidsynth", lambda: FakeFluidsynth)
    monkeypatch.setattr(instruments, "PITCHES", (60, 67))
    monkeypatch.setattr(instruments, "VELOCITIES", (100,))
    monkeypatch.setattr(transfer, "PROBE", replace(transfer.PROBE, epochs=2))
    soundfont = tmp_path / "fake.sf2"
    soundfont.write_bytes(b"RIFF")
    config = load_pretrain_config(
        "tiny-cpu", ["model.encoder.depth=2", "model.encoder.width=64", "model.encoder.num_heads=2"]
    )
    torch.manual_seed(0)
    model_dir = save_model_dir(
        tmp_path / "model", MJEPA(config.model), frontend_for(config.data), None, 0, parts="target"
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "transfer",
                "--model",
                str(model_dir),
                "--data",
                str(tmp_path / "gm"),
                "--soundfont",
                str(soundfont),
                "--out",
                str(out),
                "--probe-seeds",
                "2",
            ]
        )
        == 0
    )
    table = (out / "transfer.md").read_text()
    for name in ("model", "random-init", "log-mel stats"):
        assert re.search(rf"^\| {name} \| [0-9.]+ ± [0-9.]+ \| [0-9.]+ ± [0-9.]+ \|$", table, flags=re.M), table
    record = json.loads((out / "transfer.json").read_text())
    assert record["dataset"]["classes"] == sorted(f"family:{f}" for f in instruments.GM_FAMILIES)
    assert {name: len(runs) for name, runs in record["results"].items()} == {
        "model": 2,
        "random-init": 2,
        "log-mel stats": 2,
    }
