"""The ``mjepa`` command."""

from __future__ import annotations

import argparse
import sys

from mjepa.config import ENCODER_SIZES
from mjepa.train.precision import PRECISIONS


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa", description="MJEPA audio-visual self-supervised learning")
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser(
        "pretrain",
        help="pretrain an MJEPA model (for now: a smoke run on built-in synthetic audio-visual data)",
        description="Pretrain MJEPA with the full 9-term objective on built-in synthetic audio-visual clips "
        "(spectrogram 128 frames x 64 mel bins, video 8 frames at 64 px). Prints every term per step.",
    )
    pre.add_argument("--size", choices=tuple(ENCODER_SIZES), default="tiny", help="encoder size (default: tiny)")
    pre.add_argument("--steps", type=_positive_int, default=30, help="optimisation steps (default: 30)")
    pre.add_argument("--batch-size", type=_positive_int, default=8, help="clips per step (default: 8)")
    pre.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (default: 5e-4)")
    pre.add_argument("--weight-decay", type=float, default=0.04, help="AdamW weight decay (default: 0.04)")
    pre.add_argument("--ema", type=float, default=0.996, help="EMA momentum of the target (default: 0.996)")
    pre.add_argument("--precision", choices=PRECISIONS, default="auto",
                     help="auto = bf16 on CUDA and on CPUs with native bf16, else fp32 (default: auto)")
    pre.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    pre.add_argument("--seed", type=int, default=0, help="seed for weights, data and masks (default: 0)")
    pre.add_argument("--metrics", default=None, help="also write per-step metrics as JSON lines to this file")

    data = sub.add_parser("data", help="data tools: validate a manifest, fbank statistics, built-in AtariAV data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    # The tools parse their own arguments; these entries only make them show up in --help.
    data_sub.add_parser("validate", help="scan every file of a manifest and report the bad ones", add_help=False)
    data_sub.add_parser("stats", help="fbank mean / std over a manifest", add_help=False)
    data_sub.add_parser("atari", help="generate the built-in AtariAV dataset", add_help=False)
    return parser


DATA_TOOLS = {"validate": "mjepa.data.validate", "stats": "mjepa.data.stats", "atari": "mjepa.data.atari_command"}


def _run_data_tool(argv: list[str]) -> int:
    if argv and argv[0] in DATA_TOOLS:
        import importlib

        return importlib.import_module(DATA_TOOLS[argv[0]]).main(argv[1:])
    build_parser().parse_args(["data", *argv])  # prints usage and exits for a missing or unknown tool
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["data"]:
        return _run_data_tool(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "pretrain":
        from mjepa.train.smoke import run_smoke_pretraining

        try:
            run_smoke_pretraining(
                size=args.size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                weight_decay=args.weight_decay, ema_momentum=args.ema, precision=args.precision,
                device=args.device, seed=args.seed, metrics_path=args.metrics,
            )
        except ValueError as err:
            print(f"mjepa pretrain: error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
