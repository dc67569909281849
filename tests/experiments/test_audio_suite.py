"""``mjepa suite`` on a small open-audio folder of tones: folds, protocols, baselines and the report."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile
import torch

from mjepa.cli import main
from mjepa.data.manifests.manifest import ManifestEntry, write_manifest
from mjepa.data.preprocess.frontend import frontend_for
from mjepa.experiments import audio_suite
from mjepa.models.mjepa import MJEPA
from mjepa.packaging import save_model_dir
from mjepa.pretrain_config import load_pretrain_config

TONES = {"low": 300.0, "mid": 900.0, "high": 2700.0}  # one class per pitch, so log-mel statistics separate them


def _tone_folder(root):
    """A built open-audio folder: a leave-one-out task over 3 'languages' whose clips are tones of 3 pitches."""
    rng = np.random.default_rng(0)
    entries = []
    for language in ("aa", "bb", "cc"):
        for label, hz in TONES.items():
            for take in range(4):
                seconds = 0.5 + 0.1 * take
                t = np.arange(int(16000 * seconds)) / 16000
                wave = 0.3 * np.sin(2 * np.pi * hz * t) + 0.01 * rng.standard_normal(t.size)
                path = root / "clips" / f"{language}-{label}-{take}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(path, wave.astype(np.float32), 16000)
                entries.append(ManifestEntry(str(path), labels=(label,), meta=(("language", language),)))
    for held in ("aa", "bb", "cc"):
        fold = root / "tasks" / "tones" / f"fold-{held}"
        write_manifest(fold / "train.jsonl", [e for e in entries if e.meta_value("language") != held], root)
        write_manifest(fold / "test.jsonl", [e for e in entries if e.meta_value("language") == held], root)
    (root / "info.json").write_text(json.dumps({"sources": {}, "tasks": {"tones": {}}}))
    return root


@pytest.mark.slow
def test_suite_scores_every_protocol_and_feature_set_over_all_folds(tmp_path, monkeypatch):
    for protocol in audio_suite.PROBES:
        monkeypatch.setitem(audio_suite.PROBES, protocol, replace(audio_suite.PROBES[protocol], epochs=30))
    config = load_pretrain_config(
        "tiny-cpu", ["model.encoder.depth=2", "model.encoder.width=64", "model.encoder.num_heads=2"]
    )
    torch.manual_seed(0)
    model = save_model_dir(tmp_path / "model", MJEPA(config.model), frontend_for(config.data), None, 0, parts="target")
    data = _tone_folder(tmp_path / "open-audio")
    out = tmp_path / "out"
    assert main(["suite", "--model", str(model), "--data", str(data), "--probe-seeds", "2", "--out", str(out)]) == 0
    record = json.loads((out / "suite.json").read_text())
    (result,) = record["results"]
    assert result["task"] == "tones" and result["folds"] == 3 and result["test_clips"] == 36
    for protocol in ("linear", "attentive"):
        row = result["protocols"][protocol]
        assert set(row["scores"]) == {"model", "random-init", "log-mel stats"}
        assert all(len(score["values"]) == 2 for score in row["scores"].values())
        assert row["selection"].startswith("training split") and "validation" not in row  # no split to report
    # Three pitches, one per class: the log-mel statistics must tell them apart in any held-out language.
    assert result["protocols"]["linear"]["scores"]["log-mel stats"]["mean"] > 0.9
    table = (out / "suite.md").read_text()
    assert "| tones | linear | 36 | 3 |" in table and "| tones | attentive | 36 | 3 |" in table


def test_validation_accuracy_is_the_chosen_heads_mean_over_folds_per_seed():
    runs = {
        "model": [
            [{"selection_accuracy": 0.5}, {"selection_accuracy": 0.7}],
            [{"selection_accuracy": 0.3}, {"selection_accuracy": 0.1}],
        ]
    }
    spread = audio_suite._validation_spreads(runs, seeds=2)["model"]
    assert spread["values"] == pytest.approx([0.4, 0.4])


def test_a_folder_that_was_not_built_is_a_one_line_error(tmp_path, capsys):
    assert main(["suite", "--data", str(tmp_path)]) == 2
    assert "not an open-audio folder" in capsys.readouterr().err
