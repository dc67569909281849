"""Every `mjepa` command written in the README and docs/ must parse, and its pretraining overrides must validate,
so documented commands cannot rot silently."""

import importlib
import re
import shlex
from pathlib import Path

import pytest

from mjepa.cli import DATA_TOOLS, TOOLS, build_parser
from mjepa.pretrain_config import load_pretrain_config

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_commands():
    found = []
    for document in DOCUMENTS:
        for block in re.findall(r"```bash\n(.*?)```", document.read_text(), flags=re.S):
            text = re.sub(r"\\\n\s*", " ", block)  # join continued lines
            for line in text.splitlines():
                line = line.split(" #")[0].strip()
                match = re.search(r"(?:^|\s)(?:\S*/)?(?:mjepa|-m mjepa\.cli)\s+(.*)$", line)
                if match and not line.startswith("#"):
                    found.append((document.name, match.group(1)))
    return found


COMMANDS = documented_commands()


def test_the_docs_hold_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("document,command", COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_documented_command_parses(document, command):
    words = shlex.split(command)
    if "--help" in words:
        return
    if words[0] == "data":
        importlib.import_module(DATA_TOOLS[words[1]]).build_parser().parse_args(words[2:])
    elif words[0] in TOOLS:
        importlib.import_module(TOOLS[words[0]]).build_parser().parse_args(words[1:])
    else:
        args = build_parser().parse_args(words)
        assert args.command == "pretrain"
        load_pretrain_config(args.config, args.overrides)
