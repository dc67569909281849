"""Writing a benchmark's record: one JSON file, its folder created, its path printed."""

from __future__ import annotations

import json
from pathlib import Path


def write_record(path: str | Path, record: dict, announce: bool = True) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    if announce:
        print(f"wrote {out}")
    return out
