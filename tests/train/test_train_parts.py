import json

import pytest
import torch

from mjepa.data.loading.stream import StepBatchSampler
from mjepa.train.monitor import collapse_warnings, effective_rank, feature_std, variance_shares
from mjepa.train.plot import main as plot_main
from mjepa.train.schedules import LearningRateSchedule, LinearSchedule, ema_initial_weight


def test_learning_rate_schedule_warms_up_holds_and_reaches_its_end_value():
    lr = LearningRateSchedule(
        start_lr=1e-4, peak_lr=1e-3, final_lr=1e-6, warmup_steps=10, cooldown_steps=20, total_steps=100
    )
    assert lr(0) == pytest.approx(1e-4) and lr(5) == pytest.approx(5.5e-4)
    assert lr(10) == lr(50) == lr(80) == pytest.approx(1e-3)
    assert lr(99) == pytest.approx(1e-6)  # the last step is exactly the end value
    values = [lr(s) for s in range(80, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_linear_schedule_reaches_end_on_last_step():
    ema = LinearSchedule(0.99, 0.999, 50)
    assert ema(0) == pytest.approx(0.99) and ema(49) == pytest.approx(0.999)


def test_ema_initial_weight_is_the_product_of_the_momenta_applied():
    assert ema_initial_weight(LinearSchedule(0.99, 0.99, 50), 50) == pytest.approx(0.99**50)
    assert ema_initial_weight(LinearSchedule(0.9, 0.99, 10), 0) == 1.0
    ramp = LinearSchedule(0.9, 0.99, 10)
    product = 1.0
    for step in range(10):
        product *= ramp(step)
    assert ema_initial_weight(ramp, 10) == pytest.approx(product)
    # The tiny-cpu momentum over the demo's 93 steps leaves the target mostly at its initialisation.
    assert ema_initial_weight(LinearSchedule(0.998, 0.9995, 93), 93) > 0.85


def test_pretraining_says_how_much_of_its_start_the_target_keeps():
    from mjepa.pretrain_config import load_pretrain_config
    from mjepa.train.loop import ema_notice

    config = load_pretrain_config(
        "tiny-cpu", ["run.steps=100", "optim.cooldown_steps=20", "optim.ema_start=0.999", "optim.ema_end=0.999"]
    )
    notice = ema_notice(config, LinearSchedule(config.optim.ema_start, config.optim.ema_end, config.run.steps))
    assert "after 100 steps" in notice and "90.5 %" in notice  # 0.999 ** 100


def test_impossible_schedule_is_rejected():
    with pytest.raises(ValueError, match="exceed total_steps"):
        LearningRateSchedule(1e-4, 1e-3, 0.0, warmup_steps=60, cooldown_steps=60, total_steps=100)


def test_collapse_indicators_separate_collapsed_from_spread_features():
    gen = torch.Generator().manual_seed(0)
    spread = torch.randn(64, 32, generator=gen)
    collapsed = torch.ones(64, 32) + 1e-6 * torch.randn(64, 32, generator=gen)
    line = torch.randn(64, 1, generator=gen) * torch.randn(1, 32, generator=gen)
    assert feature_std(spread) > 0.1 and feature_std(collapsed) < 1e-4
    assert effective_rank(spread) > 20 and effective_rank(line) == pytest.approx(1.0, abs=1e-3)
    warnings = collapse_warnings(
        {"target_std_A": feature_std(collapsed), "effective_rank_A": 1.0},
        width=32,
        batch=64,
        std_threshold=0.01,
        rank_fraction=0.1,
    )
    assert len(warnings) == 2


def test_variance_shares_tell_one_dominant_direction_from_an_even_spread():
    gen = torch.Generator().manual_seed(0)
    line = torch.randn(64, 1, generator=gen) * torch.randn(1, 32, generator=gen)
    two = torch.cat(
        [3 * torch.randn(64, 1, generator=gen), torch.randn(64, 1, generator=gen), torch.zeros(64, 6)], dim=1
    )  # variances 9 : 1 along two orthogonal axes
    assert variance_shares(line, 4)[0] == pytest.approx(1.0, abs=1e-4)
    shares = variance_shares(two, 8)
    assert len(shares) == 8 and sum(shares) == pytest.approx(1.0, abs=1e-5)
    assert shares[0] / shares[1] == pytest.approx(9.0, rel=0.3) and shares[2] < 1e-6
    assert variance_shares(torch.randn(1, 8), 4) == [] and variance_shares(torch.ones(5, 8), 4) == []


def test_step_stream_is_rank_invariant_and_resumable():
    one = StepBatchSampler(
        10, global_batch=4, accumulation=1, world_size=1, rank=0, seed=3, start_step=0, total_steps=6
    )
    ranks = [StepBatchSampler(10, 4, 1, 2, r, 3, 0, 6) for r in range(2)]
    for step in range(6):
        assert one.micro_batch(step, 0) == ranks[0].micro_batch(step, 0) + ranks[1].micro_batch(step, 0)
    resumed = StepBatchSampler(10, 4, 1, 1, 0, 3, start_step=4, total_steps=6)
    assert list(resumed) == list(one)[4:]
    first_epoch = [index for batch in list(one)[:2] for index, _ in batch] + [i for i, _ in one.micro_batch(2, 0)][:2]
    assert sorted(first_epoch) == list(range(10))  # one pass over the data before any repeat


def test_plot_draws_png_from_metrics(tmp_path):
    lines = [json.dumps({"step": s, "loss": 5.0 - s, "intra_A": 1.0, "lr": 1e-3}) for s in range(1, 5)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert plot_main([str(tmp_path)]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_main([str(tmp_path / "missing")]) == 2


def test_metrics_go_to_jsonl_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mjepa.train.monitor import MetricsWriter

    writer = MetricsWriter(tmp_path, tensorboard=True)
    writer.write(1, {"loss": 2.5, "intra_A": 0.7})
    writer.write(2, {"loss": 2.0, "intra_A": 0.6})
    writer.close()
    assert [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2.5, 2.0]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 2.5), (2, 2.0)]


def test_evaluation_resizes_to_256_over_224_of_the_crop_before_centre_cropping():
    from mjepa.data.preprocess.frontend import frontend_for
    from mjepa.pretrain_config import DataConfig

    assert frontend_for(DataConfig(image_size=224)).video.eval_short_side == 256
    assert frontend_for(DataConfig(image_size=256)).video.eval_short_side == 293
    assert frontend_for(DataConfig(image_size=64)).video.eval_short_side == 73


def test_class_balanced_pretraining_draws_each_class_about_equally(tmp_path):
    """AudioSet-like imbalance (1000 / 100 / 10 items per class): with data.class_balanced=true the training stream,
    split over 2 ranks, draws each class about a third of the time; uniformly, the rarest about 1 %."""
    from mjepa.data.manifests.manifest import ManifestEntry, write_manifest
    from mjepa.pretrain_config import DataConfig
    from mjepa.train.data_pipeline import training_items

    entries = [
        ManifestEntry(f"{label}-{i}.mp4", labels=(label,))
        for label, count in (("speech", 1000), ("dog", 100), ("yodel", 10))
        for i in range(count)
    ]
    manifest = tmp_path / "as.jsonl"
    write_manifest(manifest, entries)
    for balanced, expected in (
        (True, {"speech": 1 / 3, "dog": 1 / 3, "yodel": 1 / 3}),
        (False, {"speech": 1000 / 1110, "dog": 100 / 1110, "yodel": 10 / 1110}),
    ):
        items, vocabulary, weights = training_items(
            DataConfig(source="manifest", manifests=(str(manifest),), class_balanced=balanced)
        )
        draws = []
        for rank in range(2):
            sampler = StepBatchSampler(
                len(items), 64, 1, 2, rank, seed=0, start_step=0, total_steps=200, weights=weights
            )
            draws += [items[index].labels[0] for batch in sampler for index, _ in batch]
        for label, share in expected.items():
            assert abs(draws.count(label) / len(draws) - share) < 0.02, (balanced, label)
