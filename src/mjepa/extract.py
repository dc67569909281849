"""``mjepa extract MANIFEST --checkpoint CKPT --out FILE``: embeddings for every item of a manifest.

Each item is decoded whole (its segment bounds respected), cut into windows of the training clip length by
:mod:`mjepa.api`, and embedded. The output (``torch.save``, loadable with ``weights_only=True``) holds:
``paths`` (list), ``pooled`` (N, D) — the mean over an item's windows —, ``windows`` (list of (W_i, D)),
``tokens`` (list of (W_i, T, D), with ``--tokens``), ``skipped`` (list of {path, reason, detail}) and the settings.
Unreadable items are skipped and listed, never replaced.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from mjepa.api import MJEPAModel, load
from mjepa.commands import add_device_argument, resolve_device, run_reporting_errors
from mjepa.data.decode import ClipSpec, MediaError, decode_entry_isolated
from mjepa.data.isolation import IsolatedRunner
from mjepa.data.manifest import ManifestEntry, read_manifest
from mjepa.data.media_info import media_errors
from mjepa.models.mjepa import ENCODER_CHOICES

DECODE_TIMEOUT_S = 600.0  # whole files are decoded here: long ones take a while


def embed_entry(model: MJEPAModel, entry: ManifestEntry, modality: str, layer: int, encoder: str,
                keep_tokens: bool, runner: IsolatedRunner):
    """Embeddings of one item (raises MediaError for unreadable media). Decoding runs in ``runner``'s helper
    process, so a file that crashes or hangs the decoder is skipped like any other bad file."""
    need_video = modality != "audio"
    first = decode_entry_isolated(runner, entry, model.clip, window_start=0.0, require_video=need_video,
                                  require_audio=modality != "video")
    frames, fps = None, model.clip.frames_per_second
    if need_video:
        duration = first.duration or model.clip.window_duration
        # Decoded at the evaluation size (FFmpeg scales while decoding): the transform resizes to it anyway.
        whole = ClipSpec(num_frames=max(1, math.ceil(duration * fps)), frames_per_second=fps,
                         audio_window="full", sample_rate=model.clip.sample_rate,
                         short_side=model.video_config.eval_short_side)
        frames = decode_entry_isolated(runner, entry, whole, window_start=0.0, require_video=True).frames
    pooled = not keep_tokens
    if modality == "audio":
        return model.encode_audio(first.waveform, first.sample_rate, pooled, layer, encoder)
    if modality == "video":
        return model.encode_video(frames, fps, pooled, layer, encoder)
    return model.encode_av(first.waveform, first.sample_rate, frames, fps, pooled, layer, encoder)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa extract", description="Embeddings for every item of a manifest.")
    parser.add_argument("manifest")
    parser.add_argument("--checkpoint", required=True, help="training checkpoint, model directory or Hub id")
    parser.add_argument("--out", required=True, help="output file (.pt)")
    parser.add_argument("--modality", choices=("audio", "video", "av"), default="av")
    parser.add_argument("--encoder", choices=ENCODER_CHOICES, default="target")
    parser.add_argument("--layer", type=int, default=-1)
    parser.add_argument("--tokens", action="store_true", help="also store token-level features")
    add_device_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    entries = read_manifest(args.manifest)
    model = load(args.checkpoint).to(resolve_device(args.device))
    paths, pooled, windows, tokens, skipped = [], [], [], [], []
    runner = IsolatedRunner(DECODE_TIMEOUT_S)
    started = time.perf_counter()
    for number, entry in enumerate(entries, start=1):
        try:
            with media_errors(entry.path):  # whatever one file makes the decoder raise skips that file
                emb = embed_entry(model, entry, args.modality, args.layer, args.encoder, args.tokens, runner)
        except MediaError as err:
            skipped.append({"path": str(err.path), "reason": err.reason, "detail": err.detail})
            continue
        paths.append(entry.path)
        pooled.append(emb.mean)
        windows.append(emb.pooled)
        if args.tokens:
            tokens.append(emb.tokens)
        if number % max(1, len(entries) // 20) == 0 or number == len(entries):
            rate = number / (time.perf_counter() - started)
            print(f"extract {number}/{len(entries)} ({rate:.1f} items/s, {len(skipped)} skipped)", file=sys.stderr,
                  flush=True)
    record = {"paths": paths, "pooled": torch.stack(pooled) if pooled else torch.zeros(0), "windows": windows,
              "skipped": skipped, "modality": args.modality, "encoder": args.encoder, "layer": args.layer,
              "checkpoint": args.checkpoint}
    if args.tokens:
        record["tokens"] = tokens
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, args.out)
    print(f"wrote {len(paths)} embeddings to {args.out}; {len(skipped)} unreadable items skipped"
          + "".join(f"\n  skipped {s['path']}: {s['reason']}" for s in skipped))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting_errors("mjepa extract", run, build_parser().parse_args(argv))
