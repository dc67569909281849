"""``mjepa data instruments``: render (or reuse) the GM-Instruments transfer set."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mjepa.data.instruments.generate import DEFAULT_SOUNDFONT, generate_instruments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mjepa data instruments",
        description="Render GM-Instruments: notes of the recorded instruments of a General MIDI SoundFont, labelled "
        "by instrument family and split by instrument (needs FluidSynth: pip install 'mjepa[instruments]'). A folder "
        "already holding the same settings is reused.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--soundfont", default=DEFAULT_SOUNDFONT, help=f"SoundFont file (default {DEFAULT_SOUNDFONT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split by instrument (default 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = generate_instruments(args.out, soundfont=args.soundfont, seed=args.seed)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"GM-Instruments ready in {out}")
    return 0
