"""``mjepa transfer``: how a frozen model's audio embeddings transfer to real recorded audio, against two baselines.

A labelled set of real recorded audio is read by the model, by a random-init encoder of the same size and by a
no-network baseline; each set of pooled features is scored with the same linear probe.

Features per clip:
    ``model``        the model's audio embedding (``encode_audio(...).mean``: tokens averaged over the valid ones)
    ``random-init``  the same with the same architecture, freshly initialised (``--init-seed``)
    ``log-mel stats`` no network: the mean and the standard deviation over time of the normalised log-mel that the
                     model itself reads (2 x mel bins values)

Every feature is standardised with the training split's mean and standard deviation, then a linear probe (the
project's linear probe on one pooled token: layer norm, linear layer, softmax cross-entropy, AdamW) is trained for
each (learning rate, weight decay) of a small grid; the head with the best validation accuracy is scored on the test
split. Several probe seeds give the spread. The set is GM-Instruments (:mod:`mjepa.data.instruments.generate`):
instrument family, split by instrument.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile
import torch

from mjepa.api import MJEPAModel, load, resample
from mjepa.commands import run_reporting_errors
from mjepa.data.instruments.generate import DEFAULT_SOUNDFONT, generate_instruments
from mjepa.data.manifests.manifest import read_manifest
from mjepa.data.preprocess.fbank import fbank_for_config, fbank_windows
from mjepa.eval.loading import load_model
from mjepa.eval.probe import ProbeSettings, predict, train_probe_grid
from mjepa.eval.seed_spread import SeedSpread

SPLITS = ("train", "val", "test")
LABEL_PREFIX = "family:"
PROBE = ProbeSettings(
    protocol="linear",
    learning_rates=(3e-4, 1e-3, 3e-3),
    weight_decays=(1e-3, 1e-2, 1e-1),
    epochs=60,
    batch_size=64,
    warmup_epochs=1,
    heads_per_pass=1,
)
MODEL, RANDOM, LOGMEL = "model", "random-init", "log-mel stats"


@dataclass(frozen=True)
class LabelledAudio:
    waveforms: list[np.ndarray]
    labels: torch.Tensor  # (N,) class indices
    sample_rate: int


def read_split(root: Path, split: str, vocabulary: list[str] | None = None) -> tuple[LabelledAudio, list[str]]:
    """The clips of one split with their class indices (the vocabulary is taken from the first split read)."""
    entries = read_manifest(root / f"{split}.jsonl")
    names = [next(label for label in entry.labels if label.startswith(LABEL_PREFIX)) for entry in entries]
    vocabulary = vocabulary or sorted(set(names))
    unknown = sorted(set(names) - set(vocabulary))
    if unknown:
        raise ValueError(f"{root / f'{split}.jsonl'}: labels {unknown} are not in the training split")
    waveforms, rates = [], set()
    for entry in entries:
        audio, rate = soundfile.read(entry.path, dtype="float32", always_2d=True)
        waveforms.append(audio.mean(axis=1))
        rates.add(rate)
    if len(rates) != 1:
        raise ValueError(f"{root / f'{split}.jsonl'}: clips at several sample rates {sorted(rates)}; expected one")
    labels = torch.tensor([vocabulary.index(name) for name in names])
    return LabelledAudio(waveforms, labels, rates.pop()), vocabulary


def embedding_features(model: MJEPAModel, data: LabelledAudio, layer: int = -1, batch_size: int = 32) -> torch.Tensor:
    """(N, D) pooled audio embeddings."""
    embeddings = model.encode_audio(data.waveforms, sample_rate=data.sample_rate, layer=layer, batch_size=batch_size)
    return torch.stack([e.mean.float().cpu() for e in embeddings])


def logmel_statistics(model: MJEPAModel, data: LabelledAudio) -> torch.Tensor:
    """(N, 2 x mel bins): mean and standard deviation over the valid frames of the model's normalised log-mel."""
    rows = []
    for waveform in data.waveforms:
        mono = resample(waveform, data.sample_rate, model.audio_config.sample_rate)
        fbank = fbank_for_config(torch.from_numpy(mono), model.audio_config)
        windows, valid = fbank_windows(fbank, model.audio_config, count=1)
        frames = windows[0, : max(2, int(valid[0]))]
        rows.append(torch.cat([frames.mean(dim=0), frames.std(dim=0)]))
    return torch.stack(rows).float()


def probe_accuracies(
    train: torch.Tensor,
    val: torch.Tensor,
    test: torch.Tensor,
    labels: dict[str, torch.Tensor],
    num_classes: int,
    seeds: int,
) -> list[dict]:
    """Per probe seed: the chosen head (best validation accuracy) and its test accuracy."""
    mean, std = train.mean(dim=0), train.std(dim=0).clamp_min(1e-6)
    scaled = {split: ((x - mean) / std).unsqueeze(1) for split, x in (("train", train), ("val", val), ("test", test))}
    targets = torch.nn.functional.one_hot(labels["train"], num_classes).float()
    runs = []
    for seed in range(seeds):
        settings = replace(PROBE, seed=seed)
        probes = train_probe_grid(settings, scaled["train"], None, targets, multi_label=False)
        heads = []
        for probe, (lr, wd) in zip(probes, settings.grid(), strict=True):
            accuracy = {
                split: float(
                    (predict(probe, scaled[split], None, multi_label=False).argmax(dim=1) == labels[split])
                    .float()
                    .mean()
                )
                for split in ("val", "test")
            }
            heads.append(
                {"lr": lr, "weight_decay": wd, "val_accuracy": accuracy["val"], "test_accuracy": accuracy["test"]}
            )
        best = max(heads, key=lambda head: head["val_accuracy"])
        runs.append({"seed": seed, **best})
    return runs


def summary_rows(results: dict[str, list[dict]]) -> list[str]:
    lines = ["| features | test accuracy (%) | validation accuracy (%) |", "|---|---|---|"]
    for name, runs in results.items():
        test = SeedSpread(tuple(run["test_accuracy"] for run in runs))
        val = SeedSpread(tuple(run["val_accuracy"] for run in runs))
        lines.append(f"| {name} | {test} | {val} |")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa transfer", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="mjepa-tiny", help="shipped model name, model folder or checkpoint (default mjepa-tiny)"
    )
    parser.add_argument(
        "--data",
        default="data/instruments",
        help="GM-Instruments folder, rendered there on first use (default data/instruments)",
    )
    parser.add_argument(
        "--soundfont", default=DEFAULT_SOUNDFONT, help=f"SoundFont to render (default {DEFAULT_SOUNDFONT})"
    )
    parser.add_argument(
        "--out", default="runs/transfer", help="folder for transfer.json and transfer.md (default runs/transfer)"
    )
    parser.add_argument("--layer", type=int, default=-1, help="encoder block whose output is pooled (default -1)")
    parser.add_argument(
        "--probe-seeds",
        type=int,
        default=5,
        help="linear probes trained per feature set, to measure the spread (default 5)",
    )
    parser.add_argument(
        "--init-seed",
        type=int,
        default=None,
        help="seed of the random-init encoder (default: the model's run seed + 1)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    root = generate_instruments(args.data, soundfont=args.soundfont)
    train, vocabulary = read_split(root, "train")
    splits = {"train": train, **{split: read_split(root, split, vocabulary)[0] for split in ("val", "test")}}
    model = load(args.model)
    random_loaded = load_model(args.model, random_init=True, init_seed=args.init_seed)
    random_model = MJEPAModel(random_loaded)
    sources = {
        MODEL: lambda data: embedding_features(model, data, args.layer),
        RANDOM: lambda data: embedding_features(random_model, data, args.layer),
        LOGMEL: lambda data: logmel_statistics(model, data),
    }
    labels = {split: data.labels for split, data in splits.items()}
    results = {}
    for name, features_of in sources.items():
        mark = time.perf_counter()
        features = {split: features_of(data) for split, data in splits.items()}
        results[name] = probe_accuracies(
            features["train"], features["val"], features["test"], labels, len(vocabulary), args.probe_seeds
        )
        print(
            f"transfer: {name}: {len(features['train'][0])} features, "
            f"{summary_rows({name: results[name]})[-1]} ({time.perf_counter() - mark:.0f} s)",
            flush=True,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = json.loads((root / "info.json").read_text())
    record = {
        "model": args.model,
        "layer": args.layer,
        "probe_seeds": args.probe_seeds,
        "probe": {
            "protocol": PROBE.protocol,
            "learning_rates": list(PROBE.learning_rates),
            "weight_decays": list(PROBE.weight_decays),
            "epochs": PROBE.epochs,
            "batch_size": PROBE.batch_size,
        },
        "dataset": {
            "name": "GM-Instruments",
            "settings": info["settings"],
            "counts": info["counts"],
            "classes": vocabulary,
        },
        "chance_accuracy": float(torch.bincount(labels["test"]).max()) / len(labels["test"]),
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "transfer.json").write_text(json.dumps(record, indent=2) + "\n")
    table = summary_rows(results)
    (out / "transfer.md").write_text(
        "\n".join(["# Transfer: GM-Instruments instrument family (linear probe)", "", *table, ""])
    )
    print("\n".join(table), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting_errors("mjepa transfer", run, build_parser().parse_args(argv))
