import json
import re

import pytest
import torch

from mjepa.cli import main
from mjepa.data.preprocess.frontend import frontend_for
from mjepa.eval.run_probe import EncoderResult
from mjepa.eval.seed_spread import SeedSpread, beats
from mjepa.experiments.demo import RANDOM, SHIPPED, TRAINED, comparison_lines
from mjepa.models.mjepa import MJEPA
from mjepa.packaging import save_model_dir
from mjepa.pretrain_config import load_pretrain_config


def _result(encoder: str, modality: str, score: float) -> EncoderResult:
    return EncoderResult(encoder, modality, "map", score, "rule")


def test_beats_needs_a_margin_above_the_spread_and_no_overlapping_seeds():
    random = SeedSpread((0.60, 0.62, 0.61))
    assert beats(SeedSpread((0.70, 0.71, 0.69)), random)
    assert not beats(SeedSpread((0.63, 0.60, 0.66)), random)  # mean ahead, but seeds overlap
    assert not beats(SeedSpread((0.55, 0.56, 0.57)), random)
    assert not beats(SeedSpread((0.612, 0.613)), SeedSpread((0.60, 0.62)))  # ahead by less than the std
    assert str(SeedSpread((0.5, 0.7))) == "60.0 ± 14.1"


def test_comparison_table_has_a_row_per_input_with_the_margin_over_random():
    results = []
    for seed_offset in (0.0, 0.01, 0.02):
        for modality, (shipped, trained, random) in {
            "audio": (0.8, 0.6, 0.6),
            "video": (0.9, 0.85, 0.86),
            "av": (0.95, 0.8, 0.91),
        }.items():
            results += [
                _result(SHIPPED, modality, shipped + seed_offset),
                _result(TRAINED, modality, trained + seed_offset),
                _result(RANDOM, modality, random + seed_offset),
            ]
    lines = comparison_lines(results, probe_seeds=3)
    assert lines[0].startswith("| input | shipped mjepa-tiny-atari | trained here | random-init |")
    assert "| audio | 81.0 ± 1.0 | 61.0 ± 1.0 | 61.0 ± 1.0 | +20.0 (beats random) | +0.0 (within the spread) |" in lines
    assert "| video | 91.0 ± 1.0 | 86.0 ± 1.0 | 87.0 ± 1.0 | +4.0 (beats random) | -1.0 (within the spread) |" in lines
    assert "| av | 96.0 ± 1.0 | 81.0 ± 1.0 | 92.0 ± 1.0 | +4.0 (beats random) | -11.0 (behind random) |" in lines


@pytest.fixture
def shipped_stand_in(tmp_path):
    """A model folder of the shipped model's architecture (random weights) for the demo to compare."""
    config = load_pretrain_config("tiny-cpu", [])
    torch.manual_seed(5)
    return save_model_dir(tmp_path / "shipped", MJEPA(config.model), frontend_for(config.data), None, 0, parts="target")


@pytest.mark.slow
def test_demo_end_to_end_with_a_tiny_budget(tmp_path, capsys, shipped_stand_in):
    out = tmp_path / "demo"
    args = [
        "demo",
        "--steps",
        "2",
        "--out",
        str(out),
        "--atari-dir",
        str(tmp_path / "atari"),
        "--games",
        "pong,breakout",
        "--clips-per-game",
        "4",
        "--test-clips-per-game",
        "2",
        "--probe-epochs",
        "1",
        "--probe-seeds",
        "2",
        "--shipped",
        str(shipped_stand_in),
    ]
    assert main(args) == 0
    # The probes are scored on the larger test split; the pretraining reused that folder rather than regenerating it.
    info = json.loads((tmp_path / "atari" / "info.json").read_text())
    assert info["settings"]["test_clips_per_game"] == 2 and info["counts"]["test"]["clips"] == 4
    report = (out / "report.md").read_text()
    spread = r"[0-9.]+ ± [0-9.]+"
    for modality in ("audio", "video", "av"):
        verdict = r"[+-][0-9.]+ \((beats random|behind random|within the spread)\)"
        row = re.search(
            rf"^\| {modality} \| {spread} \| {spread} \| {spread} \| {verdict} \| {verdict} \|$", report, flags=re.M
        )
        assert row, f"no {modality} row with three encoders and two margins in:\n{report}"
    assert "over 2 probe seeds" in report
    assert re.search(r"^\| predictor_l1 \| A->V \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$", report, flags=re.M)
    assert (out / "curves.png").is_file() and (out / "probe" / "results.png").is_file()
    assert "demo: report in" in capsys.readouterr().out


def test_event_tags_get_their_own_table_beside_the_whole_map():
    from mjepa.eval.report import common_label_groups

    results = []
    for seed_offset in (0.0, 0.01):
        for modality in ("audio", "video", "av"):
            for encoder, event in ((SHIPPED, 0.5), (TRAINED, 0.4), (RANDOM, 0.3)):
                result = _result(encoder, modality, 0.9 + seed_offset)
                result.chosen_heads = [{"test_group_scores": {"game": 1.0, "event": event + seed_offset}}]
                results.append(result)
    assert common_label_groups(results) == ["event", "game"]
    lines = comparison_lines(results, probe_seeds=2, label_group="event")
    assert "| audio | 50.5 ± 0.7 | 40.5 ± 0.7 | 30.5 ± 0.7 | +20.0 (beats random) | +10.0 (beats random) |" in lines
    whole = comparison_lines(results, probe_seeds=2)
    assert (
        "| audio | 90.5 ± 0.7 | 90.5 ± 0.7 | 90.5 ± 0.7 | +0.0 (within the spread) | +0.0 (within the spread) |"
        in whole
    )
