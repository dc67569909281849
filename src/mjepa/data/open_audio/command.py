"""``mjepa data open-audio``: fetch real recorded speech and sound effects from Debian's packages and build
manifests and probing tasks from them."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from mjepa.commands import run_reporting_errors
from mjepa.data.open_audio.build import build_open_audio
from mjepa.data.open_audio.sources import ASTERISK_CODECS, DEFAULT_SOURCES, SOURCES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mjepa data open-audio",
        description="Download Debian packages of recorded speech and sound effects (apt-get download, unpacked with "
        "dpkg-deb: nothing is installed, no root needed), decode every clip and write manifests with each item's "
        "package, version, licence and labels, plus probing tasks split by voice or language. The audio stays in "
        "--out: its licences (GPL, GFDL, CC-BY-SA) do not allow committing it.",
    )
    parser.add_argument("--out", required=True, help="output folder (also the package cache)")
    parser.add_argument(
        "--sources", default="all", help=f"comma-separated sources, or 'all' (default): {', '.join(SOURCES)}"
    )
    parser.add_argument(
        "--codec",
        choices=tuple(ASTERISK_CODECS),
        default="wav",
        help="Asterisk prompts as wav (default) or gsm (a tenth of the download)",
    )
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    return parser


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    names = list(DEFAULT_SOURCES) if args.sources == "all" else [s for s in args.sources.split(",") if s]
    out = build_open_audio(args.out, names, args.codec, args.workers)
    print(
        f"open-audio: {out} ready in {time.perf_counter() - start:.0f} s (manifest {out / 'clips.jsonl'}, "
        f"tasks in {out / 'tasks'})"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_errors("mjepa data open-audio", run, args)


if __name__ == "__main__":
    sys.exit(main())
