import json
import re
from pathlib import Path

from mjepa.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_pretrain_smoke_run_on_synthetic_data(tmp_path, capsys):
    out_dir = tmp_path / "run"
    args = ["pretrain", "data.source=synthetic", "run.steps=2", "run.batch_size=2", "optim.warmup_steps=1",
            "optim.cooldown_steps=0", "model.encoder.depth=2", f"run.out_dir={out_dir}", "run.log_every=1"]
    assert main(args) == 0
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and "intra_AV" in records[0] and "cross_AV_to_V" in records[0]
    assert (out_dir / "checkpoints" / "latest.pt").is_file() and (out_dir / "config.yaml").is_file()


def test_print_config_shows_overrides(capsys):
    assert main(["pretrain", "--print-config", "run.steps=500"]) == 0
    assert "steps: 500" in capsys.readouterr().out


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {})


def test_readme_cli_examples_parse():
    from mjepa.cli import build_parser

    commands = re.findall(r"^\.venv/bin/mjepa (.+?)(?:\s+#.*)?$", README.read_text(), flags=re.M)
    assert commands
    for command in commands:
        words = command.split()
        if "--help" in words:
            continue
        import importlib

        from mjepa.cli import DATA_TOOLS, TOOLS

        if words[0] == "data":
            importlib.import_module(DATA_TOOLS[words[1]]).build_parser().parse_args(words[2:])
            continue
        if words[0] in TOOLS:
            importlib.import_module(TOOLS[words[0]]).build_parser().parse_args(words[1:])
            continue
        args = build_parser().parse_args(words)
        if args.command == "pretrain":
            from mjepa.train.pretrain_config import load_pretrain_config

            load_pretrain_config(args.config, args.overrides)  # every documented override is valid
