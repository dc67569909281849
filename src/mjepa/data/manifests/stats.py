"""``mjepa data stats``: fbank normalisation statistics over a manifest (for datasets other than AudioSet)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence

import torch

from mjepa.data.manifests.manifest import ManifestEntry, ManifestError, read_manifest
from mjepa.data.media.decode import MediaError, decode_audio
from mjepa.data.media.isolation import IsolatedRunner
from mjepa.data.preprocess.fbank import AudioFrontendConfig, compute_fbank_stats

# Audio is decoded this many seconds at a time, so an hours-long file takes the memory of one chunk; each chunk's
# log-mel frames are its own (its mean removed, a frame or so fewer per chunk than the whole file would give).
STATS_CHUNK_S = 60.0
DECODE_TIMEOUT_S = 300.0  # per chunk, in the helper process


def _samples(path: str, start: float, end: float, sample_rate: int):
    return decode_audio(path, start, end, sample_rate)[0].numpy()


def segment_chunks(runner: IsolatedRunner, entry: ManifestEntry, sample_rate: int) -> Iterator[torch.Tensor]:
    """The entry's audio segment, ``STATS_CHUNK_S`` seconds at a time, decoded by ``runner`` (a helper process, so
    a file that crashes or hangs the decoder raises MediaError instead of stopping the command)."""
    path = entry.audio_path or entry.path
    first = start = entry.start or 0.0
    while entry.end is None or start < entry.end:
        stop = start + STATS_CHUNK_S if entry.end is None else min(entry.end, start + STATS_CHUNK_S)
        try:
            samples = runner(path, _samples, path, start, stop, sample_rate)
        except MediaError as err:
            if err.reason == "too_short" and start > first:
                return  # the previous chunk ended where the audio does
            raise
        yield torch.from_numpy(samples)
        if samples.shape[0] < (stop - start) * sample_rate - 1:
            return
        start = stop


def manifest_waveforms(
    entries: list[ManifestEntry], sample_rate: int, failures: list[tuple[str, str]]
) -> Iterator[torch.Tensor]:
    """The entries' audio segments in chunks; unreadable items are appended to ``failures`` and passed over (the
    chunks of a file that fails part way through have been counted)."""
    runner = IsolatedRunner(DECODE_TIMEOUT_S)
    try:
        for entry in entries:
            try:
                yield from segment_chunks(runner, entry, sample_rate)
            except MediaError as err:
                failures.append((str(err.path), err.reason))
    finally:
        runner.close()


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
