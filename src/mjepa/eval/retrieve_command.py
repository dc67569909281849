"""``mjepa retrieve``: audio->video and video->audio retrieval recall of a checkpoint on paired clips.

Two methods (see ``mjepa.eval.retrieval``): through the cross-modal predictors with L1 nearest neighbours (the
paper's method: the head reads the context encoder's pooled output of the query modality and the gallery is the
target encoder's pooled, layer-normalised output of the other modality, as in training), and cosine similarity of
the target encoder's pooled audio and video features.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from mjepa.commands import add_device_argument, resolve_device, run_reporting_errors
from mjepa.data.manifests.manifest import read_manifest
from mjepa.eval.items import EvalDataset, ViewSpec, eval_loader
from mjepa.eval.loading import LoadedModel, load_model
from mjepa.eval.retrieval import cross_modal_retrieval
from mjepa.models.crossmodal import head_key
from mjepa.models.encoder import layer_normalise


@torch.no_grad()
@torch.no_grad()
def pooled_features(
    loaded: LoadedModel, entries, workers: int, batch_size: int, device: torch.device = torch.device("cpu")
) -> tuple[dict, int]:
    """Per modality: context-encoder pooled output and target-encoder pooled normalised output (on the CPU), and
    the number of skipped items. The encoders run on ``device``."""
    fe = loaded.frontend
    vocabulary = sorted({label for entry in entries for label in entry.labels})  # labels are not used here
    dataset = EvalDataset(
        entries, vocabulary, fe.clip, fe.audio, fe.video, ViewSpec(), need_video=True, need_audio=True
    )
    loader = eval_loader(dataset, batch_size, workers)
    out = {"context_A": [], "context_V": [], "target_A": [], "target_V": []}
    skipped = 0
    loaded.model.to(device).eval()
    for items, bad in loader:
        skipped += len(bad)
        if not items:
            continue
        audio = torch.cat([i.audio for i in items]).to(device, non_blocking=True)
        video = torch.cat([i.video for i in items]).to(device, non_blocking=True)
        for mode, kwargs in (("A", {"audio": audio}), ("V", {"video": video})):
            out[f"context_{mode}"].append(loaded.model.encoder(mode)(mode, **kwargs).tokens.mean(1).float().cpu())
            target = loaded.model.target_encoder(mode)(mode, **kwargs).tokens
            out[f"target_{mode}"].append(layer_normalise(target).mean(1).cpu())
    if not out["target_A"]:
        raise ValueError("no item could be decoded: nothing to retrieve")
    return {k: torch.cat(v) for k, v in out.items()}, skipped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa retrieve", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--manifest", help="paired audio-visual items (default: AtariAV test split)")
    parser.add_argument("--atari-dir", default="data/atari")
    parser.add_argument("--ks", default="1,5,10")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default=None, help="JSON output (default: retrieval.json next to the checkpoint)")
    add_device_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.manifest:
        entries = read_manifest(args.manifest)
    else:
        from mjepa.eval.tasks import atari_splits

        entries = atari_splits(args.atari_dir).test
    loaded = load_model(args.checkpoint)
    heads = loaded.model.cross_heads
    if head_key("A", "V") not in heads or head_key("V", "A") not in heads:
        raise ValueError("this checkpoint has no A->V / V->A predictors (model.objective.cross_modal='none')")
    features, skipped = pooled_features(loaded, entries, args.workers, args.batch_size, resolve_device(args.device))
    heads = heads.cpu()
    ks = tuple(int(k) for k in args.ks.split(","))
    results = cross_modal_retrieval(
        features["target_A"],
        features["target_V"],
        heads[head_key("A", "V")],
        heads[head_key("V", "A")],
        ks,
        audio_queries=features["context_A"],
        video_queries=features["context_V"],
    )
    record = {
        "checkpoint": args.checkpoint,
        "items": int(features["target_A"].shape[0]),
        "skipped_items": skipped,
        "chance_recall_at_1": 1.0 / features["target_A"].shape[0],
        "results": {name: r.as_flat_dict() for name, r in results.items()},
    }
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "retrieval.json"
    out.write_text(json.dumps(record, indent=2))
    print("| method | direction | " + " | ".join(f"R@{k}" for k in ks) + " |")
    print("|---|---|" + "---|" * len(ks))
    for name, r in results.items():
        for direction, recalls in (("A->V", r.audio_to_video), ("V->A", r.video_to_audio)):
            print(f"| {name} | {direction} | " + " | ".join(f"{100 * recalls[k]:.1f}" for k in ks) + " |")
    print(f"{record['items']} items ({skipped} skipped); wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting_errors("mjepa retrieve", run, build_parser().parse_args(argv))
