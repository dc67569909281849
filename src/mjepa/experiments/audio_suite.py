"""``mjepa suite``: a model's frozen audio features on the open-audio tasks, beside random init and log-mel statistics.

Every task of a built open-audio folder (``mjepa data open-audio``) is probed with each protocol on three feature
sets: the model's target encoder, the same architecture freshly initialised (``--init-seed``), and a no-network
baseline, the mean and standard deviation over time of the normalised log-mel the model itself reads.

- ``linear``: each clip's tokens averaged over those that hold signal, standardised with the training split's
  statistics, read by the linear probe (layer norm, linear layer) over a 3 x 3 (lr, weight decay) grid;
- ``attentive``: the clip's tokens (padding masked) read by the attentive probe (3 self-attention blocks, one
  query), one (lr, weight decay); the log-mel baseline enters as a single token.

The head is chosen on the validation split, or on the training split where a task has none (leave-one-language-out
folds), and scored on the test split; a task with several folds reports the accuracy over all its folds' test clips.
Each score is the mean ± standard deviation over probe seeds, beside the number of test clips. Clips are short
(0.3-6 s): each is one window of the model's input, zero-padded, its padding never pooled or attended.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from mjepa.api import MJEPAModel, load
from mjepa.commands import comma_choices, run_reporting_errors
from mjepa.data.manifests.manifest import ManifestEntry
from mjepa.data.media.decode import decode_audio
from mjepa.data.open_audio.build import read_info, task_folds
from mjepa.data.preprocess.fbank import fbank_for_config, fbank_windows
from mjepa.eval.loading import load_model
from mjepa.eval.probe import ProbeSettings, predict, train_probe_grid
from mjepa.eval.seed_spread import SeedSpread, beats

PROTOCOLS = ("linear", "attentive")
MODEL, RANDOM, LOGMEL = "model", "random-init", "log-mel stats"
FEATURE_SETS = (MODEL, RANDOM, LOGMEL)
PROBES = {
    "linear": ProbeSettings(
        protocol="linear",
        learning_rates=(3e-4, 1e-3, 3e-3),
        weight_decays=(1e-3, 1e-2, 1e-1),
        epochs=60,
        batch_size=64,
        warmup_epochs=1,
        heads_per_pass=1,
    ),
    "attentive": ProbeSettings(
        protocol="attentive",
        learning_rates=(1e-3,),
        weight_decays=(0.05,),
        epochs=20,
        batch_size=32,
        warmup_epochs=1,
        num_heads=4,
        heads_per_pass=1,
    ),
}


@dataclass
class Features:
    """One split's features: ``tokens`` (N, T, D) with ``valid`` (N, T), and class indices (N,)."""

    tokens: torch.Tensor
    valid: torch.Tensor
    labels: torch.Tensor

    def pooled(self) -> torch.Tensor:
        weights = self.valid.float().unsqueeze(-1)
        return (self.tokens.float() * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def waveforms(entries: list[ManifestEntry], sample_rate: int) -> list:
    return [decode_audio(entry.path, sample_rate=sample_rate)[0].numpy() for entry in entries]


def encoder_features(model: MJEPAModel, audio: list, labels: torch.Tensor, batch_size: int = 32) -> Features:
    """The target encoder's tokens of each clip's first (for these clips, only) window."""
    embeddings = model.encode_audio(
        audio, sample_rate=model.audio_config.sample_rate, pooled=False, batch_size=batch_size
    )
    tokens = torch.stack([e.tokens[0].float().cpu() for e in embeddings])
    valid = torch.stack([e.valid_tokens[0].cpu() for e in embeddings])
    return Features(tokens, valid, labels)


def logmel_features(model: MJEPAModel, audio: list, labels: torch.Tensor) -> Features:
    """One token per clip: the mean and standard deviation over its valid frames of the model's normalised log-mel."""
    rows = []
    for waveform in audio:
        fbank = fbank_for_config(torch.from_numpy(waveform), model.audio_config)
        windows, valid = fbank_windows(fbank, model.audio_config, count=1)
        frames = windows[0, : max(2, int(valid[0]))]
        rows.append(torch.cat([frames.mean(dim=0), frames.std(dim=0)]))
    tokens = torch.stack(rows).float().unsqueeze(1)
    return Features(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool), labels)


def probe_runs(
    protocol: str, train: Features, select: Features, tests: list[Features], num_classes: int, seeds: int
) -> list[dict]:
    """Per probe seed: the head chosen on ``select`` and its accuracy over all ``tests`` (one per fold)."""
    if protocol == "linear":
        mean, std = train.pooled().mean(0), train.pooled().std(0).clamp_min(1e-6)
        prepare = lambda f: (((f.pooled() - mean) / std).unsqueeze(1), None)  # noqa: E731
    else:
        prepare = lambda f: (f.tokens, f.valid)  # noqa: E731
    x, valid = prepare(train)
    targets = torch.nn.functional.one_hot(train.labels, num_classes).float()
    runs = []
    for seed in range(seeds):
        settings = replace(PROBES[protocol], seed=seed)
        probes = train_probe_grid(settings, x, valid, targets, multi_label=False)
        heads = []
        for probe, (lr, wd) in zip(probes, settings.grid(), strict=True):
            select_accuracy = _accuracy(probe, *prepare(select), select.labels)
            correct = sum(_accuracy(probe, *prepare(t), t.labels) * len(t.labels) for t in tests)
            heads.append(
                {
                    "lr": lr,
                    "weight_decay": wd,
                    "selection_accuracy": select_accuracy,
                    "test_accuracy": correct / sum(len(t.labels) for t in tests),
                }
            )
        runs.append({"seed": seed, **max(heads, key=lambda head: head["selection_accuracy"])})
    return runs


def _accuracy(probe, x: torch.Tensor, valid: torch.Tensor | None, labels: torch.Tensor) -> float:
    return float((predict(probe, x, valid, multi_label=False).argmax(dim=1) == labels).float().mean())


def run_task(
    task: str, data: Path, models: dict[str, MJEPAModel], protocols: Sequence[str], seeds: int, report=print
) -> dict:
    folds = task_folds(data, task)
    vocabulary = sorted({e.labels[0] for fold in folds for e in fold["train"]})
    index = {label: i for i, label in enumerate(vocabulary)}
    reference = models[MODEL]
    result = {"task": task, "classes": len(vocabulary), "folds": len(folds), "test_clips": 0, "protocols": {}}
    per_set: dict[str, dict[str, list]] = {p: {name: [] for name in FEATURE_SETS} for p in protocols}
    fold_features = []
    for fold in folds:
        audio = {split: waveforms(entries, reference.audio_config.sample_rate) for split, entries in fold.items()}
        labels = {split: torch.tensor([index[e.labels[0]] for e in entries]) for split, entries in fold.items()}
        features = {MODEL: {}, RANDOM: {}, LOGMEL: {}}
        for split in fold:
            features[MODEL][split] = encoder_features(models[MODEL], audio[split], labels[split])
            features[RANDOM][split] = encoder_features(models[RANDOM], audio[split], labels[split])
            features[LOGMEL][split] = logmel_features(reference, audio[split], labels[split])
        fold_features.append(features)
        result["test_clips"] += len(fold["test"])
    for protocol in protocols:
        for name in FEATURE_SETS:
            for features in fold_features:
                splits = features[name]
                select = splits.get("val", splits["train"])
                per_set[protocol][name].append(
                    probe_runs(protocol, splits["train"], select, [splits["test"]], len(vocabulary), seeds)
                )
        rows = {}
        for name in FEATURE_SETS:
            # Over folds: each seed's test accuracy weighted by its fold's test clips.
            sizes = [len(fold["test"]) for fold in folds]
            scores = tuple(
                sum(runs[seed]["test_accuracy"] * size for runs, size in zip(per_set[protocol][name], sizes))
                / sum(sizes)
                for seed in range(seeds)
            )
            rows[name] = SeedSpread(scores)
        result["protocols"][protocol] = {
            "scores": {name: spread.to_dict() for name, spread in rows.items()},
            # The chosen heads' accuracy on the validation split: what recipe choices may be made on.
            **({"validation": _validation_spreads(per_set[protocol], seeds)} if "val" in folds[0] else {}),
            "beats_random_init": beats(rows[MODEL], rows[RANDOM]),
            "beats_logmel": beats(rows[MODEL], rows[LOGMEL]),
            "selection": "validation split" if "val" in folds[0] else "training split (no validation split)",
        }
        validation = result["protocols"][protocol].get("validation")
        report(
            f"suite: {task} ({protocol}, {result['test_clips']} test clips): "
            + ", ".join(f"{name} {rows[name]}" for name in FEATURE_SETS)
            + (f"; validation: model {SeedSpread(tuple(validation[MODEL]['values']))}" if validation else "")
        )
    return result


def _validation_spreads(runs_by_set: dict[str, list[list[dict]]], seeds: int) -> dict[str, dict]:
    """Per feature set: each seed's validation accuracy (the mean over folds) as a spread."""
    return {
        name: SeedSpread(
            tuple(sum(runs[seed]["selection_accuracy"] for runs in folds) / len(folds) for seed in range(seeds))
        ).to_dict()
        for name, folds in runs_by_set.items()
    }


def markdown(results: list[dict]) -> str:
    lines = [
        "| task | protocol | test clips | classes | model | random init | log-mel stats | model ahead of both |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for protocol, row in result["protocols"].items():
            cells = [str(SeedSpread(tuple(row["scores"][n]["values"]))) for n in FEATURE_SETS]
            ahead = "yes" if row["beats_random_init"] and row["beats_logmel"] else "no"
            lines.append(
                f"| {result['task']} | {protocol} | {result['test_clips']} | {result['classes']} | "
                + " | ".join(cells)
                + f" | {ahead} |"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa suite", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mjepa-tiny", help="shipped model, model folder or checkpoint")
    parser.add_argument("--data", default="data/open-audio", help="a folder built by mjepa data open-audio")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task the folder has)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help="linear, attentive or both (default)")
    parser.add_argument("--probe-seeds", type=int, default=3, help="probes per feature set (default 3)")
    parser.add_argument("--init-seed", type=int, default=None, help="seed of the random-init encoder")
    parser.add_argument("--out", default="runs/suite", help="folder for suite.json and suite.md")
    return parser


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    data = Path(args.data)
    info = read_info(data)
    if info is None:
        raise ValueError(f"{data}: not an open-audio folder (no info.json); build it with mjepa data open-audio")
    tasks = comma_choices(args.tasks, "--tasks", "task", list(info["tasks"])) if args.tasks else list(info["tasks"])
    protocols = comma_choices(args.protocols, "--protocols", "protocol", list(PROTOCOLS))
    if args.probe_seeds < 1:
        raise ValueError(f"--probe-seeds must be >= 1, got {args.probe_seeds}")
    models = {
        MODEL: load(args.model),
        RANDOM: MJEPAModel(load_model(args.model, random_init=True, init_seed=args.init_seed)),
    }
    results = [run_task(task, data, models, protocols, args.probe_seeds) for task in tasks]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "model": args.model,
        "data": str(data),
        "probe_seeds": args.probe_seeds,
        "sources": info["sources"],
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "suite.json").write_text(json.dumps(record, indent=2))
    table = markdown(results)
    (out / "suite.md").write_text(table + "\n")
    print(table)
    print(f"suite: wrote {out / 'suite.json'}, {out / 'suite.md'} ({record['seconds']:.0f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_errors("mjepa suite", run, args)


if __name__ == "__main__":
    sys.exit(main())
