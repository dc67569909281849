"""Loader throughput on the recorded-sound corpus: samples per second per core, as pretraining reads it.

Reads ``--items`` entries of a manifest (default: the open-audio ``pretrain.jsonl``) through the training dataset of
a preset (default ``mjepa-tiny-stage1``: decoding isolated in a helper process, a random window, the log-mel front end,
and, for these audio-only clips, placeholder frames), in one process with one torch thread: one loader worker's
rate, i.e. per CPU core. Prints the figures and writes JSON.

    python benchmarks/bench_real_audio_loader.py [--manifest data/open-audio/pretrain.jsonl] [--items 400]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time

import torch

from bench_json import write_record
from mjepa.data.loading.dataset import AudioVisualDataset, Sample
from mjepa.data.manifests.manifest import read_manifest
from mjepa.data.preprocess.frontend import frontend_for
from mjepa.pretrain_config import load_pretrain_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default="data/open-audio/pretrain.jsonl")
    parser.add_argument("--preset", default="mjepa-tiny-stage1")
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--out", default="benchmarks/results/bench_real_audio_loader.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_pretrain_config(args.preset, [])
    data = config.data
    entries = read_manifest(args.manifest)
    chosen = random.Random(0).sample(entries, min(args.items, len(entries)))
    frontend = frontend_for(data)
    dataset = AudioVisualDataset(
        chosen,
        sorted({label for entry in chosen for label in entry.labels}),
        frontend.clip,
        frontend.audio,
        frontend.video,
        training=True,
        seed=0,
        missing_video=data.missing_video,
        decode_timeout_s=data.decode_timeout_s if data.isolate_decoding else None,
        uint8_video=True,
    )
    dataset[0]  # the helper process starts here, not inside the timing
    start = time.perf_counter()
    samples = [dataset[(i, i)] for i in range(len(dataset))]
    seconds = time.perf_counter() - start
    good = sum(isinstance(s, Sample) for s in samples)
    audio_seconds = sum(float(e.meta_value("duration_s") or 0.0) for e in chosen)
    record = {
        "manifest": args.manifest,
        "preset": args.preset,
        "items": len(chosen),
        "loaded": good,
        "seconds": round(seconds, 2),
        "samples_per_second_per_core": round(len(chosen) / seconds, 1),
        "mean_clip_seconds": round(audio_seconds / len(chosen), 2),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    print(record)
    write_record(args.out, record)


if __name__ == "__main__":
    main()
