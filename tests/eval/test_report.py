"""The probe report's chart: one group per input, one bar per encoder, seeds as error bars."""

import struct

from mjepa.eval.report import grouped_scores, write_results
from mjepa.eval.run_probe import EncoderResult


def _results():
    out = []
    for modality in ("audio", "video", "av"):
        for encoder, base in (("shipped", 0.7), ("trained", 0.6), ("random-init", 0.5)):
            for seed in range(3):
                out.append(EncoderResult(encoder, modality, "map", base + 0.01 * seed, "rule"))
    return out


def test_seeds_of_an_encoder_share_one_bar_per_input(tmp_path):
    groups = grouped_scores(_results())
    assert list(groups) == ["audio", "video", "av"]
    assert list(groups["video"]) == ["shipped", "trained", "random-init"]
    assert [round(v, 6) for v in groups["av"]["trained"]] == [60.0, 61.0, 62.0]
    paths = write_results(tmp_path, "atari", {"protocol": "attentive"}, _results())
    width, height = struct.unpack(">II", paths["png"].read_bytes()[16:24])  # the PNG header's IHDR size
    assert width < 1200 and height < 500  # three groups of three bars, not 27 bars side by side


def test_tag_groups_get_a_column_each_when_every_head_was_scored_on_them():
    from mjepa.eval.report import markdown_table
    from mjepa.eval.run_probe import EncoderResult

    heads = [{"lr": 1e-3, "weight_decay": 0.05, "test_group_scores": {"game": 1.0, "event": 0.42}}]
    table = markdown_table("atari", [EncoderResult("trained", "audio", "map", 0.8, "rule", heads)])
    assert "| task | encoder | modality | mAP | mAP `event:*` | mAP `game:*` | chosen head (lr, wd) |" in table
    assert "| atari | trained | audio | 80.00 | 42.00 | 100.00 | 0.001, 0.05 | 0 |" in table
    plain = markdown_table(
        "esc50", [EncoderResult("trained", "audio", "top1", 0.8, "rule", [{"lr": 1e-3, "weight_decay": 0.05}])]
    )
    assert "| task | encoder | modality | top-1 accuracy | chosen head (lr, wd) | skipped items |" in plain
