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
