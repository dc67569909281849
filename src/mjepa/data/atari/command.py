"""``mjepa data atari``: generate (or reuse) the built-in AtariAV dataset."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from mjepa.data.atari.generate import (
    DEFAULT_GAMES,
    POLICIES,
    available_atari_games,
    generate_atari_av,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mjepa data atari",
        description="Generate the AtariAV dataset: real Atari 2600 gameplay with its real sound, as mp4 clips plus "
        "train/val/test manifests. A folder already holding the same settings is reused.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--games",
        default=",".join(DEFAULT_GAMES),
        help="comma-separated ROM ids, or 'all' for every game the installed ale-py can play "
        "(default: the 8 demo games)",
    )
    parser.add_argument(
        "--clips-per-game",
        type=int,
        default=40,
        help="clips per game; 15 %% each go to val and test, the rest to train (default 40)",
    )
    parser.add_argument(
        "--test-clips-per-game",
        type=int,
        default=None,
        help="test clips per game instead of 15 %% of --clips-per-game; train and val are unchanged "
        "(default: the 15 %% rule)",
    )
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--size", type=int, default=64, help="frame width and height in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy", choices=POLICIES, default="random")
    parser.add_argument("--workers", type=int, default=1, help="games played at once, one process each (default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        games = available_atari_games() if args.games == "all" else [g for g in args.games.split(",") if g]
        out = generate_atari_av(
            args.out,
            games=tuple(games),
            clips_per_game=args.clips_per_game,
            clip_seconds=args.clip_seconds,
            fps=args.fps,
            size=args.size,
            seed=args.seed,
            policy=args.policy,
            workers=args.workers,
            test_clips_per_game=args.test_clips_per_game,
        )
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"AtariAV ready in {out} ({time.perf_counter() - start:.1f} s)")
    return 0
