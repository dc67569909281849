import re

from mjepa.cli import main


def test_demo_end_to_end_with_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--steps", "2", "--out", str(out), "--atari-dir", str(tmp_path / "atari"), "--games",
            "pong,breakout", "--clips-per-game", "4", "--probe-epochs", "1"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for modality in ("audio", "video", "av"):
        row = re.search(rf"^\| {modality} \| ([0-9.]+) \| ([0-9.]+) \|$", report, flags=re.M)
        assert row, f"no {modality} row with numbers for both encoders in:\n{report}"
        assert 0 <= float(row.group(1)) <= 100 and 0 <= float(row.group(2)) <= 100
    assert re.search(r"^\| predictor_l1 \| A->V \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$", report, flags=re.M)
    assert (out / "curves.png").is_file() and (out / "probe" / "results.png").is_file()
    assert "demo: report in" in capsys.readouterr().out
