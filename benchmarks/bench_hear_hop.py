"""Timestamp hop against event-detection precision, on recorded game sounds.

HEAR's event tasks score timestamp embeddings. ``encode_audio(..., timestamps=True, timestamp_hop_ms=H)`` gives one
every H ms, interpolated between the token grid's 160 ms steps. This measures what the hop is worth: scenes of a
few seconds are made by placing 2-3 clips of the open-audio ``megaglest-event`` task (attack, death, hit, replies)
at random onsets in silence, scenes for training from the task's train factions and scenes for scoring from its
test factions (so no recording is in both). A linear probe learns the event (or "none") of each timestamp from the
training scenes; each test scene is then scored on a 10 ms grid, every grid point taking the prediction of the
nearest timestamp: frame accuracy, and the macro F1 over the event classes.

    python benchmarks/bench_hear_hop.py --data data/open-audio [--model mjepa-tiny] [--hops 160,50,40,20]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

import mjepa
from bench_json import write_record
from mjepa.data.media.decode import decode_audio
from mjepa.data.open_audio.build import task_folds

RATE = 16000
GRID_S = 0.01


def make_scenes(entries, count: int, seconds: float, seed: int) -> list[tuple[np.ndarray, list[tuple]]]:
    """``count`` scenes of ``seconds``: 2-3 clips each at random onsets, not overlapping; events (start, end, label)."""
    rng = np.random.default_rng(seed)
    clips = [(decode_audio(e.path, sample_rate=RATE)[0].numpy(), e.labels[0]) for e in entries]
    clips = [(w[: int(2.0 * RATE)], label) for w, label in clips if w.size >= int(0.1 * RATE)]  # at most 2 s each
    scenes = []
    for _ in range(count):
        scene = (0.001 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)
        events, cursor = [], rng.uniform(0.1, 0.8)
        for _ in range(int(rng.integers(2, 4))):
            waveform, label = clips[int(rng.integers(len(clips)))]
            start = int(cursor * RATE)
            if start + waveform.size > scene.size:
                break
            peak = max(float(np.abs(waveform).max()), 1e-6)
            scene[start : start + waveform.size] += 0.5 * waveform / peak
            events.append((start / RATE, (start + waveform.size) / RATE, label))
            cursor = (start + waveform.size) / RATE + rng.uniform(0.2, 1.0)
        scenes.append((scene, events))
    return scenes


def label_at(events, times: np.ndarray, classes: dict[str, int]) -> np.ndarray:
    out = np.zeros(times.size, dtype=np.int64)  # 0: no event
    for start, end, label in events:
        out[(times >= start) & (times < end)] = classes[label]
    return out


def frame_features(model, scenes, hop_ms: float | None):
    results = model.encode_audio([s for s, _ in scenes], RATE, timestamps=True, timestamp_hop_ms=hop_ms)
    return [(r.frames.float().numpy(), r.frame_times.numpy()) for r in results]


def train_probe(features: np.ndarray, labels: np.ndarray, classes: int, seed: int) -> torch.nn.Linear:
    torch.manual_seed(seed)
    x = torch.from_numpy(features)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    probe = torch.nn.Linear(x.shape[1], classes)
    optimiser = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    y = torch.from_numpy(labels)
    for _ in range(300):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(probe((x - mean) / std), y).backward()
        optimiser.step()
    probe.normalise = (mean, std)
    return probe


def score(probe, test, scenes, classes: dict[str, int], seconds: float) -> dict:
    mean, std = probe.normalise
    grid = np.arange(0.0, seconds, GRID_S) + GRID_S / 2
    truth, predicted = [], []
    for (features, times), (_, events) in zip(test, scenes):
        with torch.no_grad():
            per_stamp = probe((torch.from_numpy(features) - mean) / std).argmax(1).numpy()
        nearest = np.abs(grid[:, None] - times[None, :]).argmin(1)
        predicted.append(per_stamp[nearest])
        truth.append(label_at(events, grid, classes))
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    f1 = []
    for c in range(1, len(classes) + 1):
        tp = int(((predicted == c) & (truth == c)).sum())
        fp, fn = int(((predicted == c) & (truth != c)).sum()), int(((predicted != c) & (truth == c)).sum())
        if tp + fn:
            f1.append(2 * tp / max(1, 2 * tp + fp + fn))
    return {"frame_accuracy": float((truth == predicted).mean()), "event_macro_f1": float(np.mean(f1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/open-audio", help="a folder built by mjepa data open-audio")
    parser.add_argument("--model", default="mjepa-tiny")
    parser.add_argument("--hops", default="160,50,40,20", help="timestamp hops in ms (160: the token grid's steps)")
    parser.add_argument("--train-scenes", type=int, default=200)
    parser.add_argument("--test-scenes", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--probe-seeds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/bench_hear_hop.json")
    args = parser.parse_args()
    fold = task_folds(args.data, "megaglest-event")[0]
    classes = {label: i + 1 for i, label in enumerate(sorted({e.labels[0] for e in fold["train"]}))}
    train_scenes = make_scenes(fold["train"], args.train_scenes, args.seconds, seed=0)
    test_scenes = make_scenes([e for e in fold["test"] if e.labels[0] in classes], args.test_scenes, args.seconds, 1)
    model = mjepa.load(args.model)
    rows = []
    for hop in [float(h) for h in args.hops.split(",")]:
        start = time.perf_counter()
        native = hop == model.audio_hop_ms
        train = frame_features(model, train_scenes, None if native else hop)
        test = frame_features(model, test_scenes, None if native else hop)
        seconds = time.perf_counter() - start
        features = np.concatenate([f for f, _ in train])
        labels = np.concatenate([label_at(e, t, classes) for (_, t), (_, e) in zip(train, train_scenes)])
        runs = [
            score(train_probe(features, labels, len(classes) + 1, seed), test, test_scenes, classes, args.seconds)
            for seed in range(args.probe_seeds)
        ]
        row = {"hop_ms": hop, "embedding_seconds": round(seconds, 1), "timestamps_per_scene": len(train[0][1])}
        for key in runs[0]:
            values = [r[key] for r in runs]
            row[key] = round(100 * float(np.mean(values)), 2)
            row[f"{key}_std"] = round(100 * float(np.std(values)), 2)
        rows.append(row)
        print(row, flush=True)
    record = {
        "model": args.model,
        "task": "megaglest-event scenes",
        "classes": sorted(classes),
        "train_scenes": args.train_scenes,
        "test_scenes": args.test_scenes,
        "scene_seconds": args.seconds,
        "rows": rows,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    write_record(args.out, record)


if __name__ == "__main__":
    main()
