"""``mjepa extract MANIFEST --checkpoint CKPT --out FILE``: embeddings for every item of a manifest.

Each item is decoded whole (its segment bounds respected; video at the evaluation size) in loader workers
(``--workers``), cut into windows of the training clip length by
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
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from mjepa.api import MJEPAModel, load
from mjepa.commands import add_device_argument, resolve_device, run_reporting_errors
from mjepa.data.decode import ClipSpec, MediaError, decode_entry_isolated
from mjepa.data.isolation import IsolatedRunner
from mjepa.data.manifest import EntryTable, ManifestEntry, read_manifest
from mjepa.data.media_info import media_errors
from mjepa.models.mjepa import ENCODER_CHOICES

DECODE_TIMEOUT_S = 600.0  # whole files are decoded here: long ones take a while


@dataclass
class DecodedItem:
    """What the encoder needs of one manifest item, decoded in a loader worker."""

    path: str
    waveform: torch.Tensor | None
    sample_rate: int
    frames: torch.Tensor | None  # (T, H, W, 3) uint8 at the evaluation size, the whole segment


class ExtractItems(Dataset):
    """Manifest items decoded whole (segment bounds respected) for :func:`embed_item`; an unreadable item comes
    back as a MediaError (not raised), so a worker never stops on it. Decoding runs in an isolating helper process
    (:mod:`mjepa.data.isolation`)."""

    def __init__(self, entries: list[ManifestEntry], clip: ClipSpec, eval_short_side: int, modality: str) -> None:
        self.entries = EntryTable(entries)  # shared by forked loader workers, not copied
        self.clip, self.eval_short_side, self.modality = clip, eval_short_side, modality
        self.runner = IsolatedRunner(DECODE_TIMEOUT_S)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> DecodedItem | MediaError:
        entry = self.entries[index]
        try:
            with media_errors(entry.path):  # whatever one file makes the decoder raise skips that file
                return self._decode(entry)
        except MediaError as err:
            return err

    def _decode(self, entry: ManifestEntry) -> DecodedItem:
        need_video = self.modality != "audio"
        first = decode_entry_isolated(self.runner, entry, self.clip, window_start=0.0, require_video=need_video,
                                      require_audio=self.modality != "video")
        frames = None
        if need_video:
            fps = self.clip.frames_per_second
            duration = first.duration or self.clip.window_duration
            # Decoded at the evaluation size (FFmpeg scales while decoding): the transform resizes to it anyway.
            whole = ClipSpec(num_frames=max(1, math.ceil(duration * fps)), frames_per_second=fps,
                             audio_window="full", sample_rate=self.clip.sample_rate, short_side=self.eval_short_side)
            frames = decode_entry_isolated(self.runner, entry, whole, window_start=0.0, require_video=True).frames
        return DecodedItem(entry.path, first.waveform, first.sample_rate, frames)


def embed_item(model: MJEPAModel, item: DecodedItem, modality: str, layer: int, encoder: str, keep_tokens: bool):
    """Embeddings of one decoded item, on the model's device."""
    pooled, fps = not keep_tokens, model.clip.frames_per_second
    if modality == "audio":
        return model.encode_audio(item.waveform, item.sample_rate, pooled, layer, encoder)
    if modality == "video":
        return model.encode_video(item.frames, fps, pooled, layer, encoder)
    return model.encode_av(item.waveform, item.sample_rate, item.frames, fps, pooled, layer, encoder)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa extract", description="Embeddings for every item of a manifest.")
    parser.add_argument("manifest")
    parser.add_argument("--checkpoint", required=True, help="training checkpoint, model directory or Hub id")
    parser.add_argument("--out", required=True, help="output file (.pt)")
    parser.add_argument("--modality", choices=("audio", "video", "av"), default="av")
    parser.add_argument("--encoder", choices=ENCODER_CHOICES, default="target")
    parser.add_argument("--layer", type=int, default=-1)
    parser.add_argument("--tokens", action="store_true", help="also store token-level features")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default 2; 0 decodes here)")
    add_device_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    entries = read_manifest(args.manifest)
    model = load(args.checkpoint).to(resolve_device(args.device))
    paths, pooled, windows, tokens, skipped = [], [], [], [], []
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    items = ExtractItems(entries, model.clip, model.video_config.eval_short_side, args.modality)
    # Items are decoded ahead in worker processes while the encoder runs here.
    loader = DataLoader(items, batch_size=None, num_workers=args.workers, prefetch_factor=2 if args.workers else None)
    started = time.perf_counter()
    for number, item in enumerate(loader, start=1):
        if isinstance(item, MediaError):
            skipped.append({"path": str(item.path), "reason": item.reason, "detail": item.detail})
            continue
        try:
            with media_errors(item.path):  # a file whose content the encoder's input path cannot take
                emb = embed_item(model, item, args.modality, args.layer, args.encoder, args.tokens)
        except MediaError as err:
            skipped.append({"path": str(err.path), "reason": err.reason, "detail": err.detail})
            continue
        paths.append(item.path)
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
