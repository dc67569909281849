"""Where a model's audio-visual probe score comes from: the AV output probed whole, by its video tokens only and by its
audio tokens only, with each label's test average precision, beside a random-init encoder of the same size.

The joint mode reads ``[video tokens ; audio tokens]``; each output token has seen the whole clip. Probing a part of
the output tells how much of the clip's information the encoder has spread over that part: an encoder whose video
tokens alone score what the whole output scores has mixed the modalities; one whose parts score far apart keeps them
separate and leaves combining them to the probe. Per-label AP shows which tags make up a difference in mAP (on small
test splits a tag with a handful of positive clips can carry all of it).

Same probe as ``mjepa demo`` (attentive, one head of 4 attention heads, 4 epochs, lr 1e-3, wd 0.05; epochs and lr can
be changed) on the AtariAV folder given, mean ± std over the probe seeds; the head is trained on train and scored on
test (val is reported). The whole-output row is the demo's AV score.

    python benchmarks/av_probe_parts.py --atari-dir data/atari --model mjepa-tiny
    # results: benchmarks/results/av_probe_parts.json
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench_json import write_record
from mjepa.eval.features import FeatureSet, encoder_fingerprint
from mjepa.eval.loading import load_model
from mjepa.eval.metrics import mean_average_precision
from mjepa.eval.probe import ATARI_PROBE_HEADS, ProbeSettings, train_probe_grid
from mjepa.eval.run_probe import FeatureSettings, item_scores, probe_encoder, row_keys, score, split_features
from mjepa.eval.seed_spread import SeedSpread
from mjepa.eval.tasks import TASKS, atari_splits

PARTS = ("all", "video", "audio")


def token_part(features: FeatureSet, part: str, video_tokens: int) -> FeatureSet:
    """The rows' tokens of one part of the AV output (video tokens come first)."""
    tokens = {
        "all": features.tokens,
        "video": features.tokens[:, :video_tokens],
        "audio": features.tokens[:, video_tokens:],
    }[part]
    return FeatureSet(tokens.contiguous(), features.labels, features.views, features.indices)


def video_token_count(loaded) -> int:
    """Tokens of one clip's video input under the model's config (the AV output's leading part)."""
    data = loaded.config.data
    _, grid = loaded.model.token_grids(None, (1, 3, data.num_frames, data.image_size, data.image_size))
    return grid[0] * grid[1] * grid[2]


def measure(loaded, splits, settings: ProbeSettings, seeds: range, cache_dir: Path | None) -> dict:
    task = TASKS["atari"]
    features = FeatureSettings("av", cache_dir=cache_dir)
    fingerprint = encoder_fingerprint(probe_encoder(loaded, "av"))
    train, val, test = (
        split_features(loaded, task, entries, splits.vocabulary, features, fingerprint).features
        for entries in (splits.train, splits.val, splits.test)
    )
    video_tokens = video_token_count(loaded)
    record = {}
    for part in PARTS:
        tr, va, te = (token_part(f, part, video_tokens) for f in (train, val, test))
        test_scores, val_scores, per_label = [], [], torch.zeros(len(splits.vocabulary))
        for seed in seeds:
            probe = train_probe_grid(
                replace(settings, seed=seed), tr.tokens, None, tr.labels, True, "cpu", row_keys(tr)
            )[0]
            probabilities, labels = item_scores(probe, te, True, "cpu")
            test_scores.append(score("map", probabilities, labels))
            val_scores.append(score("map", *item_scores(probe, va, True, "cpu")))
            aps = mean_average_precision(probabilities, labels).per_class
            per_label += torch.tensor([float("nan") if ap is None else ap for ap in aps]) / len(seeds)
        record[part] = {
            "test_map": SeedSpread(tuple(test_scores)).to_dict(),
            "val_map": SeedSpread(tuple(val_scores)).to_dict(),
            "test_ap_per_label": dict(zip(splits.vocabulary, per_label.tolist())),
        }
        print(
            f"  {part:5s} tokens: test mAP {SeedSpread(tuple(test_scores))}, val {SeedSpread(tuple(val_scores))}",
            flush=True,
        )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atari-dir", default="data/atari", help="AtariAV folder (default data/atari)")
    parser.add_argument("--model", default="mjepa-tiny", help="shipped model name, model folder or checkpoint")
    parser.add_argument("--probe-epochs", type=int, default=4, help="as the demo (default 4)")
    parser.add_argument("--probe-lr", type=float, default=1e-3, help="as the demo (default 1e-3)")
    parser.add_argument("--probe-seeds", type=int, default=3, help="(default 3)")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder (default: none)")
    parser.add_argument("--out", default="benchmarks/results/av_probe_parts.json")
    args = parser.parse_args()
    splits = atari_splits(args.atari_dir)
    settings = ProbeSettings(
        protocol="attentive",
        learning_rates=(args.probe_lr,),
        weight_decays=(0.05,),
        epochs=args.probe_epochs,
        batch_size=32,
        num_heads=ATARI_PROBE_HEADS,
    )
    started = time.perf_counter()
    encoders = {}
    for label, random_init in (("model", False), ("random-init", True)):
        print(f"{label}:", flush=True)
        encoders[label] = measure(
            load_model(args.model, random_init=random_init),
            splits,
            settings,
            range(args.probe_seeds),
            Path(args.cache_dir) if args.cache_dir else None,
        )
    write_record(
        args.out,
        {
            "benchmark": "av_probe_parts",
            "model": args.model,
            "atari_dir": args.atari_dir,
            "test_clips": len(splits.test),
            "probe_epochs": args.probe_epochs,
            "probe_lr": args.probe_lr,
            "probe_seeds": args.probe_seeds,
            "machine": platform.processor() or platform.machine(),
            "seconds": round(time.perf_counter() - started, 1),
            "encoders": encoders,
        },
    )


if __name__ == "__main__":
    main()
