"""``mjepa extract MANIFEST --checkpoint CKPT --out FILE``: embeddings for every item of a manifest.

Each item is decoded whole (its segment bounds respected; video at the evaluation size; a video of more than
``WHOLE_VIDEO_MAX_FRAMES`` frames is read a window at a time instead) in loader workers
(``--workers``), cut into windows of the training clip length by :mod:`mjepa.api`, and embedded
``--items-per-batch`` items at a time, their windows ``--batch-size`` to a forward pass. ``--modality auto`` (the
default) embeds what the first readable item holds: audio and video, audio only, or video only. The output
(``torch.save``, loadable with ``weights_only=True``) holds: ``paths`` (list), ``pooled`` (N, D) — the mean over an
item's windows, weighted by the tokens that hold signal —, ``windows`` (list of (W_i, D)), ``tokens`` (list of (W_i, T,
D), with ``--tokens``), ``skipped`` (list of {path, reason, detail}) and the settings. Unreadable items are skipped and
listed, never replaced.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from mjepa.api import MJEPAModel, load
from mjepa.commands import add_device_argument, resolve_device, run_reporting_errors
from mjepa.data.manifests.manifest import EntryTable, ManifestEntry, read_manifest
from mjepa.data.media.decode import ClipSpec, MediaError, decode_entry_isolated, probe_media
from mjepa.data.media.info import media_errors
from mjepa.data.media.isolation import IsolatedRunner, leave_inherited_garbage
from mjepa.embedding_inputs import VideoFile
from mjepa.models.mjepa import ENCODER_CHOICES
from mjepa.terms import MODALITIES

DECODE_TIMEOUT_S = 600.0  # whole files are decoded here: long ones take a while
# Videos with more frames than this (at the model's rate: 2 minutes at 4 fps) are not decoded whole in the loader
# workers but a window at a time by the encoder, so a long file costs one window of memory, not the file's frames.
WHOLE_VIDEO_MAX_FRAMES = 480


@dataclass
class DecodedItem:
    """What the encoder needs of one manifest item, decoded in a loader worker."""

    path: str
    waveform: torch.Tensor | None
    sample_rate: int
    frames: torch.Tensor | VideoFile | None  # (T, H, W, 3) uint8 at the evaluation size, the whole segment; or,
    # for a long one, the file read a window at a time


class ExtractItems(Dataset):
    """Manifest items decoded whole (segment bounds respected) for :func:`embed_items`; an unreadable item comes
    back as a MediaError (not raised), so a worker never stops on it. Decoding runs in an isolating helper process
    (:mod:`mjepa.data.media.isolation`)."""

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
        first = decode_entry_isolated(
            self.runner,
            entry,
            self.clip,
            window_start=0.0,
            require_video=need_video,
            require_audio=self.modality != "video",
        )
        frames = None
        if need_video:
            fps = self.clip.frames_per_second
            duration = first.duration or self.clip.window_duration
            if duration * fps > WHOLE_VIDEO_MAX_FRAMES:
                # A long video is read a window at a time when it is embedded: memory stays that of one window.
                spec = replace(self.clip, short_side=self.eval_short_side)
                frames = VideoFile(entry.path, float(duration), spec, entry.start, entry.end)
                return DecodedItem(entry.path, first.waveform, first.sample_rate, frames)
            # Decoded at the evaluation size (FFmpeg scales while decoding): the transform resizes to it anyway.
            whole = ClipSpec(
                num_frames=max(1, math.ceil(duration * fps)),
                frames_per_second=fps,
                audio_window="full",
                sample_rate=self.clip.sample_rate,
                short_side=self.eval_short_side,
            )
            frames = decode_entry_isolated(self.runner, entry, whole, window_start=0.0, require_video=True).frames
        return DecodedItem(entry.path, first.waveform, first.sample_rate, frames)


def embed_items(
    model: MJEPAModel,
    items: list[DecodedItem],
    modality: str,
    layer: int,
    encoder: str,
    keep_tokens: bool,
    batch_size: int,
) -> list:
    """Embeddings of decoded items, their windows batched together, on the model's device."""
    pooled, fps = not keep_tokens, model.clip.frames_per_second
    options = dict(pooled=pooled, layer=layer, encoder=encoder, batch_size=batch_size)
    if modality == "audio":
        return model.encode_audio([i.waveform for i in items], items[0].sample_rate, **options)
    if modality == "video":
        return model.encode_video([i.frames for i in items], fps, **options)
    return model.encode_av([i.waveform for i in items], items[0].sample_rate, [i.frames for i in items], fps, **options)


def modality_of(entries, limit: int = 20) -> str:
    """``av``, ``audio`` or ``video``: what the first readable item holds (items lacking it are skipped later)."""
    for entry in list(entries)[:limit]:
        try:
            video = probe_media(entry.path)
            audio = probe_media(entry.audio_path) if entry.audio_path else video
        except MediaError:
            continue
        if video.has_video and audio.has_audio and entry.has_audio is not False:
            return "av"
        if video.has_video:
            return "video"
        if audio.has_audio:
            return "audio"
    raise ValueError(f"none of the first {limit} items could be opened to choose --modality; give it explicitly")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa extract", description="Embeddings for every item of a manifest.")
    parser.add_argument("manifest")
    parser.add_argument("--checkpoint", required=True, help="training checkpoint, model directory or Hub id")
    parser.add_argument("--out", required=True, help="output file (.pt)")
    parser.add_argument(
        "--modality",
        choices=("auto", *MODALITIES),
        default="auto",
        help="what to embed (default auto: what the first readable item holds)",
    )
    parser.add_argument("--encoder", choices=ENCODER_CHOICES, default="target")
    parser.add_argument("--layer", type=int, default=-1)
    parser.add_argument("--tokens", action="store_true", help="also store token-level features")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default 2; 0 decodes here)")
    parser.add_argument(
        "--items-per-batch", type=int, default=8, help="items embedded together (their windows share forward passes)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    add_device_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    entries = read_manifest(args.manifest)
    for name in ("workers", "items_per_batch", "batch_size"):
        minimum = 0 if name == "workers" else 1
        if getattr(args, name) < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
    modality = modality_of(entries) if args.modality == "auto" else args.modality
    if args.modality == "auto":
        print(f"extract: --modality {modality} (what the items hold)", file=sys.stderr)
    model = load(args.checkpoint, device=resolve_device(args.device))
    out = _Collected(args.tokens)
    items = ExtractItems(entries, model.clip, model.video_config.eval_short_side, modality)
    # Items are decoded ahead in worker processes while the encoder runs here.
    loader = DataLoader(
        items,
        batch_size=None,
        num_workers=args.workers,
        prefetch_factor=2 if args.workers else None,
        worker_init_fn=leave_inherited_garbage,
    )
    started, pending = time.perf_counter(), []
    for number, item in enumerate(loader, start=1):
        if isinstance(item, MediaError):
            out.skip(item)
        else:
            pending.append(item)
        if len(pending) == args.items_per_batch or (number == len(entries) and pending):
            _embed_group(model, pending, modality, args, out)
            pending = []
        if number % max(1, len(entries) // 20) == 0 or number == len(entries):
            rate = number / (time.perf_counter() - started)
            print(
                f"extract {number}/{len(entries)} ({rate:.1f} items/s, {len(out.skipped)} skipped)",
                file=sys.stderr,
                flush=True,
            )
    record = {
        "paths": out.paths,
        "pooled": torch.stack(out.pooled) if out.pooled else torch.zeros(0),
        "windows": out.windows,
        "skipped": out.skipped,
        "modality": modality,
        "encoder": args.encoder,
        "layer": args.layer,
        "checkpoint": args.checkpoint,
    }
    if args.tokens:
        record["tokens"] = out.tokens
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, args.out)
    print(
        f"wrote {len(out.paths)} embeddings to {args.out}; {len(out.skipped)} unreadable items skipped"
        + "".join(f"\n  skipped {s['path']}: {s['reason']}" for s in out.skipped)
    )
    return 0


class _Collected:
    def __init__(self, keep_tokens: bool) -> None:
        self.keep_tokens = keep_tokens
        self.paths, self.pooled, self.windows, self.tokens, self.skipped = [], [], [], [], []

    def skip(self, err: MediaError) -> None:
        self.skipped.append({"path": str(err.path), "reason": err.reason, "detail": err.detail})

    def add(self, item: DecodedItem, emb) -> None:
        self.paths.append(item.path)
        self.pooled.append(emb.mean.float().cpu())
        self.windows.append(emb.pooled.float().cpu())
        if self.keep_tokens:
            self.tokens.append(emb.tokens.float().cpu())


def _embed_group(
    model: MJEPAModel, items: list[DecodedItem], modality: str, args: argparse.Namespace, out: _Collected
) -> None:
    """Embed the items together; when the group fails, one by one, so only the item at fault is skipped."""
    embed = lambda group: embed_items(
        model,
        group,
        modality,
        args.layer,
        args.encoder,
        args.tokens,  # noqa: E731
        args.batch_size,
    )
    try:
        results = embed(items)
    except ValueError:
        results = None
    if results is not None:
        for item, emb in zip(items, results):
            out.add(item, emb)
        return
    for item in items:
        try:
            with media_errors(item.path):  # a file whose content the encoder's input path cannot take
                (emb,) = embed([item])
        except MediaError as err:
            out.skip(err)
            continue
        out.add(item, emb)


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting_errors("mjepa extract", run, build_parser().parse_args(argv))
