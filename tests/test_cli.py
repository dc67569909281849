import json
import re
from pathlib import Path

import pytest

from mjepa.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_pretrain_smoke_run_on_synthetic_data(tmp_path, capsys):
    out_dir = tmp_path / "run"
    args = [
        "pretrain",
        "data.source=synthetic",
        "run.steps=2",
        "run.batch_size=2",
        "optim.warmup_steps=1",
        "optim.cooldown_steps=0",
        "model.encoder.depth=2",
        f"run.out_dir={out_dir}",
        "run.log_every=1",
    ]
    assert main(args) == 0
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and "intra_AV" in records[0] and "cross_AV_to_V" in records[0]
    assert (out_dir / "checkpoints" / "latest.pt").is_file() and (out_dir / "config.yaml").is_file()


def test_print_config_shows_overrides(capsys):
    assert main(["pretrain", "--print-config", "run.steps=500"]) == 0
    assert "steps: 500" in capsys.readouterr().out


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path, monkeypatch):
    """The README's Python blocks, run in a folder where the demo's checkpoint path exists (a tiny real run)."""
    from mjepa.pretrain_config import load_pretrain_config
    from mjepa.train.loop import pretrain

    monkeypatch.chdir(tmp_path)
    pretrain(
        load_pretrain_config(
            "tiny-cpu",
            [
                "data.source=synthetic",
                "model.encoder.depth=2",
                "run.steps=1",
                "run.batch_size=2",
                "optim.warmup_steps=0",
                "optim.cooldown_steps=0",
                "run.out_dir=runs/demo/pretrain",
            ],
        )
    )
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "README lost its Python examples"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {})


def test_device_flag_resolves_or_fails_with_one_line():
    import pytest
    import torch

    from mjepa.commands import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
