"""``mjepa probe --checkpoint CKPT --task TASK --modality {audio,video,av}``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from mjepa.commands import resolve_device, run_reporting_errors
from mjepa.distributed import barrier, init_distributed, shutdown
from mjepa.eval.loading import load_model
from mjepa.eval.probe import (
    ATARI_PROBE_HEADS,
    PROBE_VARIANTS,
    VJEPA2_LEARNING_RATES,
    VJEPA2_PROBE_HEADS,
    VJEPA2_WEIGHT_DECAYS,
    ProbeSettings,
    vjepa2_probe_settings,
)
from mjepa.eval.report import markdown_table, write_results
from mjepa.eval.run_probe import FeatureSettings, evaluate
from mjepa.eval.tasks import TASKS, TaskSpec, atari_splits, esc50_folds, manifest_splits
from mjepa.models.mjepa import ENCODER_CHOICES
from mjepa.terms import MODALITIES


def _heads_per_pass(text: str):
    if text in ("auto", "all"):
        return None if text == "all" else text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, all or a number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected auto, all or a number >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mjepa probe",
        description="Score a checkpoint's frozen target encoder with an attentive (or linear) probe on a task, "
        "beside the same probe on a randomly initialised encoder of the same size. Writes results.json, "
        "results.md and results.png.",
    )
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (.pt)")
    parser.add_argument("--task", required=True, choices=sorted(TASKS), help="task (see docs/evaluation.md)")
    parser.add_argument("--modality", required=True, choices=MODALITIES)
    parser.add_argument("--protocol", choices=("attentive", "linear"), default="attentive")
    parser.add_argument("--train-manifest", help="training items (manifest-based tasks)")
    parser.add_argument("--val-manifest", help="validation items, used to choose the head (optional)")
    parser.add_argument("--test-manifest", help="test items (manifest-based tasks)")
    parser.add_argument("--esc50-root", help="ESC-50 folder holding meta/esc50.csv and audio/")
    parser.add_argument("--atari-dir", default="data/atari", help="AtariAV folder (generated when missing)")
    parser.add_argument("--metric", choices=("map", "top1"), default=None, help="metric of the manifest task")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="probe training batch (default: 32; 256 with --probe-variant vjepa2)",
    )
    parser.add_argument(
        "--probe-variant",
        choices=PROBE_VARIANTS,
        default="mjepa",
        help="attentive probe: mjepa's, or V-JEPA 2's classifier with its batch and schedule, to "
        "compare with published V-JEPA 2 probes (docs/evaluation.md)",
    )
    parser.add_argument(
        "--lrs", default=None, help="learning rates of the head grid (default: V-JEPA 2's five; atari: 1e-3)"
    )
    parser.add_argument(
        "--wds", default=None, help="weight decays of the head grid (default: V-JEPA 2's four; atari: 0.05)"
    )
    parser.add_argument(
        "--balanced", action="store_true", help="draw the probe's training rows with AudioSet's class-balanced weights"
    )
    parser.add_argument(
        "--heads-per-pass",
        default="auto",
        type=_heads_per_pass,
        help="grid heads trained together: auto (one at a time on a CPU, as many as fit on a GPU), all, or a number",
    )
    parser.add_argument(
        "--probe-heads",
        type=int,
        default=None,
        help="attention heads of the attentive probe (default: V-JEPA 2's 16; atari: 4)",
    )
    parser.add_argument("--clips", type=int, default=None, help="temporal clips per test item (default: the task's)")
    parser.add_argument(
        "--spatial-views", type=int, default=None, help="spatial crops per clip at test time (default: the task's)"
    )
    parser.add_argument("--layer", type=int, default=-1, help="encoder block whose output is probed (default: last)")
    parser.add_argument(
        "--encoder",
        choices=ENCODER_CHOICES,
        default="target",
        help="probe the EMA target encoder (default, as in the paper) or the context encoder",
    )
    parser.add_argument("--encode-batch", type=int, default=8, help="items encoded at once")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes")
    parser.add_argument("--cache-dir", default="cache/features", help="feature cache ('' disables it)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the random-init encoder row")
    parser.add_argument("--out", default=None, help="output folder (default: next to the checkpoint)")
    return parser


def task_folds(task: TaskSpec, args: argparse.Namespace):
    if task.name == "atari":
        return [atari_splits(args.atari_dir)]
    if task.name == "esc50":
        if not args.esc50_root:
            raise ValueError("--task esc50 needs --esc50-root (the folder with meta/esc50.csv)")
        return esc50_folds(args.esc50_root)
    if not (args.train_manifest and args.test_manifest):
        raise ValueError(f"--task {task.name} needs --train-manifest and --test-manifest (see docs/data.md)")
    return [manifest_splits(args.train_manifest, args.val_manifest, args.test_manifest)]


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x)
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    task = TASKS[args.task]
    if args.task == "manifest" and args.metric:
        task = replace(task, metric=args.metric)
    if task.audio_only and args.modality != "audio":
        raise ValueError(f"task {task.name} has no video; use --modality audio")
    if args.clips is not None or args.spatial_views is not None:
        views = replace(
            task.views,
            clips=args.clips or task.views.clips,
            spatial_views=args.spatial_views or task.views.spatial_views,
        )
        task = replace(task, views=views)
    # The paper tasks default to V-JEPA 2's grid; the built-in AtariAV task to the small probe of the CPU demo.
    small = task.name == "atari"
    lrs = _floats(args.lrs, "--lrs") if args.lrs else ((1e-3,) if small else VJEPA2_LEARNING_RATES)
    wds = _floats(args.wds, "--wds") if args.wds else ((0.05,) if small else VJEPA2_WEIGHT_DECAYS)
    heads = args.probe_heads or (ATARI_PROBE_HEADS if small else VJEPA2_PROBE_HEADS)
    chosen = dict(
        protocol=args.protocol,
        learning_rates=lrs,
        weight_decays=wds,
        epochs=args.epochs,
        num_heads=heads,
        class_balanced=args.balanced,
        heads_per_pass=args.heads_per_pass,
    )
    if args.batch_size is not None:
        chosen["batch_size"] = args.batch_size
    if args.probe_variant == "vjepa2":
        if args.protocol != "attentive":
            raise ValueError("--probe-variant vjepa2 is an attentive probe; drop --protocol linear")
        settings = vjepa2_probe_settings(**chosen)
    else:
        settings = ProbeSettings(**chosen)
    folds = task_folds(task, args)
    # Under torchrun / SLURM every rank encodes and keeps a shard of each split; the probes train data-parallel on
    # the shards, and rank 0 writes the results.
    ctx = init_distributed(resolve_device().type)
    device = resolve_device(local_rank=ctx.local_rank)
    try:
        status = _probe_and_report(args, task, settings, folds, device, ctx.is_main)
        # Rank 0 writes the results alone; the other ranks wait for it here, so that none tears the process group
        # down while a peer is still inside it (a rank that left early was seen to abort under load).
        barrier()
        return status
    finally:
        shutdown()


def _probe_and_report(
    args: argparse.Namespace, task: TaskSpec, settings: ProbeSettings, folds, device, is_main: bool
) -> int:
    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    features = FeatureSettings(
        args.modality, args.layer, args.encoder, args.encode_batch, args.workers, cache_dir, device
    )
    encoders = [("trained", False)] + ([] if args.no_baseline else [("random-init", True)])
    results = []
    for label, random_init in encoders:
        loaded = load_model(args.checkpoint, random_init=random_init)
        if is_main:
            print(
                f"probing {label} {args.encoder} encoder on {task.name} ({args.modality}, {args.protocol})", flush=True
            )
        results.append(evaluate(loaded, label, task, folds, settings, features))
    suffix = "" if args.encoder == "target" else f"-{args.encoder}"  # a context probe never overwrites the target's
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"probe-{task.name}-{args.modality}{suffix}"
    header = {
        "task": task.name,
        "description": task.description,
        "checkpoint": args.checkpoint,
        "encoder": args.encoder,
        "protocol": args.protocol,
        "probe_settings": asdict(settings),
        "views": asdict(task.views),
        "folds": len(folds),
    }
    if is_main:
        write_results(out, task.name, header, results)
        print(markdown_table(task.name, results), end="")
        print(f"wrote {out}/results.json, results.md, results.png", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting_errors("mjepa probe", run, build_parser().parse_args(argv))
