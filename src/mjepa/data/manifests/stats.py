"""``mjepa data stats``: fbank normalisation statistics over a manifest (for datasets other than AudioSet)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence

import torch

from mjepa.data.manifests.manifest import ManifestEntry, ManifestError, read_manifest
from mjepa.data.media.decode import MediaError, decode_audio
from mjepa.data.preprocess.fbank import AudioFrontendConfig, compute_fbank_stats


def manifest_waveforms(
    entries: list[ManifestEntry], sample_rate: int, failures: list[tuple[str, str]]
) -> Iterator[torch.Tensor]:
    """Waveforms of the entries' segments; unreadable items are appended to ``failures`` and passed over."""
    for entry in entries:
        try:
            waveform, _ = decode_audio(entry.audio_path or entry.path, entry.start, entry.end, sample_rate)
        except MediaError as err:
            failures.append((str(err.path), err.reason))
            continue
        yield waveform


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mjepa data stats",
        description="Mean and standard deviation of the log-mel fbank values over a manifest's audio "
        "(unpadded), to use as AudioFrontendConfig.mean / std.",
    )
    parser.add_argument("manifest", help="JSON-lines manifest")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="use only the first N items")
    parser.add_argument("--json", metavar="OUT", help="also write the statistics as JSON to OUT")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        entries = read_manifest(args.manifest)
    except ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.limit is not None:
        entries = entries[: args.limit]
    config = AudioFrontendConfig()
    failures: list[tuple[str, str]] = []
    try:
        mean, std = compute_fbank_stats(manifest_waveforms(entries, config.sample_rate, failures), config)
    except ValueError as err:
        print(f"error: {args.manifest}: {err}", file=sys.stderr)
        return 1
    used = len(entries) - len(failures)
    print(f"fbank statistics over {used} of {len(entries)} items: mean={mean:.7f} std={std:.7f}")
    for path, reason in failures:
        print(f"  skipped {path}: {reason}")
    if args.json:
        record = {
            "mean": mean,
            "std": std,
            "items_used": used,
            "skipped": [list(f) for f in failures],
            "frontend": config.to_dict(),
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)
    return 0
