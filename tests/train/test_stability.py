"""Drift and collapse numbers of a run's metrics."""

import json

import pytest

from mjepa.train.plot import main as plot_main
from mjepa.train.stability import collapse_indicators, loss_drift, smoothed


def _records(intra_v, rank_v):
    return {s: {"step": s, "intra_V": v, "effective_rank_V": r} for s, (v, r) in enumerate(zip(intra_v, rank_v), 1)}


def test_smoothing_is_a_trailing_mean():
    assert smoothed([1, 2, 3, 4], [4.0, 2.0, 0.0, 2.0], 2) == [4.0, 3.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="window"):
        smoothed([1], [1.0], 0)


def test_a_loss_that_comes_back_up_is_reported_as_drift():
    down_then_up = [1.0 - 0.01 * i for i in range(50)] + [0.5 + 0.01 * i for i in range(50)]
    ranks = [10.0] * 50 + [10.0 - 0.1 * i for i in range(50)]
    records = _records(down_then_up, ranks)
    (drift,) = loss_drift(records, window=5)
    assert drift.key == "intra_V" and 49 <= drift.min_step <= 53
    assert drift.rise == pytest.approx((sum(0.5 + 0.01 * i for i in range(45, 50)) / 5) / drift.min_value - 1)
    assert drift.rise > 0.7
    (rank,) = collapse_indicators(records, window=5)
    assert rank.final_over_best < 0.6


def test_a_falling_loss_has_no_drift():
    records = _records([1.0 / (1 + i) for i in range(40)], [5.0] * 40)
    (drift,) = loss_drift(records, window=4)
    assert drift.rise == 0.0 and drift.min_step == 40


def test_plot_summary_prints_the_tables(tmp_path, capsys):
    lines = [json.dumps({"step": s, "loss": 1.0, "intra_A": 1.0 / s, "effective_rank_A": 3.0}) for s in range(1, 30)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert plot_main([str(tmp_path), "--summary", "--window", "3"]) == 0
    out = capsys.readouterr().out
    assert "| intra_A |" in out and "| effective_rank_A |" in out and (tmp_path / "curves.png").is_file()
