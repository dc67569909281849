"""Manifests are data, not a hazard: every malformed or hostile one is a one-line error naming the file and line."""

import os
import subprocess
import sys

import pytest

from mjepa.data.manifests.manifest import ManifestError, read_manifest

VALIDATE = [sys.executable, "-m", "mjepa.cli", "data", "validate"]


def _one_line_refusal(path, match: str) -> None:
    done = subprocess.run([*VALIDATE, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in done.stderr, done.stderr


def test_a_fifo_or_a_device_is_not_read_as_a_manifest(tmp_path):
    fifo = tmp_path / "manifest.jsonl"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    _one_line_refusal(fifo, "not a regular file")
    _one_line_refusal("/dev/zero", "not a regular file")  # reading it would fill the memory


@pytest.mark.parametrize(
    "line,match",
    [
        ('{"path": "a.wav", "start": ' + "9" * 5000 + "}", ":1: not a manifest entry"),
        ('{"path": "a.wav", "labels": ' + "[" * 100_000 + "]" * 100_000 + "}", ":1: not a manifest entry"),
        ('{"path": "a\\udfff.wav"}', ":1: key 'path' is not a valid file name"),
        ('{"path": "a.wav", "start": 1e999}', ":1: key 'start' must be a non-negative finite number"),
        ('{"path": "a.wav", "labels": "' + "x" * (1 << 20) + '"}', ":1: line longer than"),
    ],
    ids=["5000-digit number", "nested 100000 deep", "lone surrogate", "infinite start", "2 MB line"],
)
def test_malformed_lines_are_one_line_errors_with_their_line_number(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=match):
        read_manifest(path)
    _one_line_refusal(path, f"bad.jsonl{match}" if match.startswith(":") else match)


def test_a_byte_order_mark_is_read_past(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"path": "a.wav", "labels": ["x"]}\n')
    (entry,) = read_manifest(path, resolve_paths=False)
    assert entry.path == "a.wav" and entry.labels == ("x",)
