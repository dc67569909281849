"""``mjepa data doom-av``: generate DoomAV, audio-visual clips of ViZDoom scenarios with the game's real sound."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from mjepa.commands import run_reporting_errors
from mjepa.data.vizdoom.generate import DEFAULT_SCENARIOS, generate_doom_av


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mjepa data doom-av",
        description="Play ViZDoom scenarios (pip install 'mjepa[vizdoom]') with a seeded policy and write 4 s "
        "mp4 clips "
        "of the first-person view and the game's stereo sound, with manifests labelled by scenario and by what "
        "happened (shot, hurt, kill, pickup). The engine's OpenAL library is fetched from Debian with apt-get "
        "download (nothing is installed, no root needed).",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated ViZDoom scenarios (default: {','.join(DEFAULT_SCENARIOS)})",
    )
    parser.add_argument("--clips-per-scenario", type=int, default=40, help="clips per scenario (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the engine and the policy (default 0)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    parser.add_argument(
        "--cache", default=None, help="where the OpenAL packages are kept (default ~/.cache/mjepa/debian)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    scenarios = [s for s in args.scenarios.split(",") if s]
    out = generate_doom_av(args.out, scenarios, args.clips_per_scenario, args.seed, args.size, args.cache)
    print(f"doom-av: {out} ready in {time.perf_counter() - start:.0f} s (manifests {out}/{{train,val,test}}.jsonl)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_errors("mjepa data doom-av", run, args)


if __name__ == "__main__":
    sys.exit(main())
