import json
import re
from pathlib import Path

from mjepa.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_pretrain_smoke_run_prints_terms_and_writes_metrics(tmp_path, capsys):
    metrics = tmp_path / "m.jsonl"
    assert main(["pretrain", "--steps", "2", "--batch-size", "2", "--metrics", str(metrics)]) == 0
    out = capsys.readouterr().out
    assert "step    2/2" in out and "cross_AV_to_V=" in out
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and "intra_AV" in records[0]


def test_pretrain_rejects_bad_values_with_one_line_error(capsys):
    assert main(["pretrain", "--steps", "1", "--precision", "fp32", "--lr", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "learning rate" in err[0]


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
        if "--help" in command:
            continue
        build_parser().parse_args(command.split())
