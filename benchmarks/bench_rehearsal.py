"""Rehearsal of a preset's training step at production shapes, on a CPU, with a narrow model.

Runs the preset's real token grids, global batch and per-rank split (rank 0 of ``--world-size`` simulated ranks)
through the real loader (workers, collate, masks) and the real ``mjepa pretrain`` step (``mjepa.train.loop.run_step``)
with a model narrowed to ``--width`` / ``--depth`` so that it fits on a CPU. Data is the synthetic source at the
preset's input size (its decoding cost is not what is measured here; ``bench_data.py`` measures decoding).

It reports, per mode and mask configuration, the context and target lengths at the preset's batch and at batch 16
(measured from loader batches), and per step, on the training process:

- ``host_ms_per_step``: host work outside the model: receiving the micro-batches once the workers have them,
  moving them and their masks to the device, the schedules, token-layout look-ups and any mask drawing;
- ``syncs_per_step``: device-to-host reads (``.item()``, ``bool(t)``, ...) counted with a TorchDispatchMode;
- ``h2d_bytes_per_step``: bytes of the batch and masks the step copies host-to-device;
- ``mask_draws_in_training_process``: must be 0 (the loader workers draw the masks).

``predicted_h100_step_ms`` is the cost model's step time of the real model at the per-rank batch (analytic FLOPs at
40 % of an H100's 989 TFLOP/s bf16 peak): a prediction, not a measurement.

    python benchmarks/bench_rehearsal.py --preset vitl16-as2m --json benchmarks/results/rehearsal_vitl16.json
    python benchmarks/bench_rehearsal.py --preset vitg16-as2m-vm2m --width 64 --depth 1 --world-size 8
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from contextlib import contextmanager

import torch

from bench_json import write_record
from mjepa.cost_model import step_flops_per_gpu
from mjepa.distributed import DistributedContext
from mjepa.masks import MaskSampler, masks_nbytes
from mjepa.models.encoder import MultimodalEncoder
from mjepa.pretrain_config import PretrainConfig, load_pretrain_config
from mjepa.train import loop
from mjepa.train.data_pipeline import build_train_stream
from mjepa.train.device_reads import DeviceReadCounter

H100_BF16_TFLOPS = 989.0
ASSUMED_MFU = 0.4


def rehearsal_config(
    preset: str, width: int, depth: int, workers: int, batch_size: int | None = None
) -> PretrainConfig:
    """The preset with its data shapes, batch and mask settings, a narrow model, synthetic data, on the CPU."""
    heads = max(1, width // 32)
    overrides = [
        "data.source=synthetic",
        "data.mixture_weights=[]",
        f"data.num_workers={workers}",
        f"model.encoder.width={width}",
        f"model.encoder.depth={depth}",
        f"model.encoder.num_heads={heads}",
        f"model.predictor.width={width}",
        "model.predictor.depth=1",
        f"model.predictor.num_heads={heads}",
        "run.device=cpu",
        "run.precision=fp32",
        "run.distributed=none",
        "run.activation_checkpointing=false",
        "optim.warmup_steps=1",
        "optim.cooldown_steps=0",
        "run.steps=100000",
    ]
    if batch_size is not None:
        overrides.append(f"run.batch_size={batch_size}")
    return load_pretrain_config(preset, overrides)


def measured_lengths(config: PretrainConfig, world_size: int) -> dict[str, list[tuple[int, int]]]:
    """(context, target) lengths per mode and mask configuration, read off the first loader batch of rank 0."""
    stream = build_train_stream(config, DistributedContext(0, world_size, 0, "simulated"), 0)
    loaded = next(stream)
    return {mode: [(p.context.shape[1], p.target.shape[1]) for p in pairs] for mode, pairs in loaded.masks.items()}


def wait_until_ready(stream, timeout: float = 300.0) -> None:
    """Block until the loader has a finished batch waiting, so timing ``next`` measures receiving, not waiting."""
    ready = getattr(stream, "_data_queue", None)
    deadline = time.perf_counter() + timeout
    while ready is not None and time.perf_counter() < deadline:
        try:
            if ready.qsize() > 0:
                return
        except (NotImplementedError, AttributeError):
            break
        time.sleep(0.01)
    if ready is None:
        time.sleep(2.0)


@contextmanager
def timed(target, name: str, totals: dict[str, float], key: str):
    """Wrap ``target.name`` so that its wall time adds up in ``totals[key]``."""
    original = getattr(target, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - started

    setattr(target, name, wrapper)
    try:
        yield
    finally:
        setattr(target, name, original)


@contextmanager
def counted_mask_draws(totals: dict[str, float]):
    """Count (and time) mask draws made by this process; loader workers are other processes."""
    pid = os.getpid()
    original = MaskSampler.sample_one

    def wrapper(sampler, *args):
        if os.getpid() != pid:
            return original(sampler, *args)
        started = time.perf_counter()
        try:
            return original(sampler, *args)
        finally:
            totals["mask_draws"] = totals.get("mask_draws", 0.0) + 1
            totals["mask_draw_s"] = totals.get("mask_draw_s", 0.0) + time.perf_counter() - started

    MaskSampler.sample_one = wrapper
    try:
        yield
    finally:
        MaskSampler.sample_one = original


def rehearse_steps(config: PretrainConfig, world_size: int, steps: int, warmup: int) -> list[dict[str, float]]:
    trainer = loop.build_trainer(config, DistributedContext(0, 1, 0, "single"))
    with counted_mask_draws(totals := {}):  # the stream's workers fork with the counter installed
        stream = build_train_stream(config, DistributedContext(0, world_size, 0, "simulated"), 0)
        clock = loop.IntervalClock()
        records = []
        for step in range(warmup + steps):
            totals.clear()
            wait_until_ready(stream)
            started = time.perf_counter()
            micro_batches = [next(stream) for _ in range(config.run.grad_accumulation)]
            receive = time.perf_counter() - started
            replay = iter(micro_batches)
            with (
                timed(loop, "accumulated_step", totals, "model_s"),
                timed(MultimodalEncoder, "layout", totals, "layout_s"),
                DeviceReadCounter() as reads,
            ):
                started = time.perf_counter()
                outcome, _ = loop.run_step(trainer, replay, step, clock)
                step_wall = time.perf_counter() - started
            outside_model = step_wall - totals.get("model_s", 0.0)
            layout = totals.get("layout_s", 0.0)
            h2d = sum(
                mb.batch.audio.nbytes + mb.batch.video.nbytes + mb.batch.has_audio.nbytes + masks_nbytes(mb.masks)
                for mb in micro_batches
                if mb.batch is not None
            )
            if step >= warmup:
                records.append(
                    {
                        "receive_ms": 1e3 * receive,
                        "outside_model_ms": 1e3 * outside_model,
                        "layout_ms": 1e3 * layout,
                        "mask_draw_ms": 1e3 * totals.get("mask_draw_s", 0.0),
                        "host_ms": 1e3 * (receive + outside_model + layout),
                        "model_ms_narrow_cpu": 1e3 * (totals.get("model_s", 0.0) - layout),
                        "syncs": reads.count,
                        "mask_draws": int(totals.get("mask_draws", 0)),
                        "h2d_bytes": h2d,
                        "skipped": bool(outcome.skipped) if outcome is not None else None,
                    }
                )
    return records


def predicted_step_ms(preset: str, per_rank_batch: int) -> float:
    real = load_pretrain_config(preset, ["data.source=synthetic", "data.mixture_weights=[]"])
    data = real.data
    audio_grid, video_grid = real.token_grids()
    sampler = MaskSampler(real.masks, audio_grid, video_grid)
    masks = sampler.sample(2, seed=0)
    flops = step_flops_per_gpu(
        real.model,
        per_rank_batch,
        (1, data.audio_frames, data.mel_bins),
        (1, 3, data.num_frames, data.image_size, data.image_size),
        masks,
    )
    return 1e3 * flops / (H100_BF16_TFLOPS * 1e12 * ASSUMED_MFU)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="a shipped preset, e.g. vitl16-as2m")
    parser.add_argument("--width", type=int, default=64, help="narrow encoder/predictor width (default 64)")
    parser.add_argument("--depth", type=int, default=1, help="narrow encoder depth (default 1)")
    parser.add_argument("--world-size", type=int, default=8, help="simulated ranks; rank 0 is run (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="loader workers (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (default 1)")
    parser.add_argument("--json", default=None, help="output JSON (default benchmarks/results/rehearsal_PRESET.json)")
    args = parser.parse_args()
    torch.manual_seed(0)

    config = rehearsal_config(args.preset, args.width, args.depth, args.workers)
    global_batch = config.run.batch_size
    per_rank = global_batch // (args.world_size * config.run.grad_accumulation)
    at_batch = measured_lengths(config, args.world_size)
    at_16 = measured_lengths(rehearsal_config(args.preset, args.width, args.depth, 0, batch_size=16), 1)
    audio_grid, video_grid = config.token_grids()
    tokens = {"A": audio_grid[0] * audio_grid[1], "V": video_grid[0] * video_grid[1] * video_grid[2]}
    tokens["AV"] = tokens["A"] + tokens["V"]
    masks = {
        mode: [
            {
                "config": k,
                "context_at_batch": int(c),
                "target_at_batch": int(t),
                "context_at_16": int(at_16[mode][k][0]),
                "target_at_16": int(at_16[mode][k][1]),
                "tokens": tokens[mode],
                "context_fraction": round(c / tokens[mode], 4),
                "target_fraction": round(t / tokens[mode], 4),
            }
            for k, (c, t) in enumerate(pairs)
        ]
        for mode, pairs in at_batch.items()
    }

    records = rehearse_steps(config, args.world_size, args.steps, args.warmup)
    median = lambda key: statistics.median(r[key] for r in records)  # noqa: E731
    predicted = predicted_step_ms(args.preset, per_rank)
    result = {
        "preset": args.preset,
        "global_batch": global_batch,
        "world_size_simulated": args.world_size,
        "per_rank_batch": per_rank,
        "grad_accumulation": config.run.grad_accumulation,
        "narrow_model": {"width": args.width, "depth": args.depth},
        "grids": {"audio": list(audio_grid), "video": list(video_grid)},
        "loader_workers": args.workers,
        "masks": masks,
        "host_ms_per_step": median("host_ms"),
        "host_ms_breakdown": {k: median(k) for k in ("receive_ms", "outside_model_ms", "layout_ms", "mask_draw_ms")},
        "syncs_per_step": max(r["syncs"] for r in records),
        "mask_draws_in_training_process": sum(r["mask_draws"] for r in records),
        "h2d_bytes_per_step": int(median("h2d_bytes")),
        "model_ms_narrow_cpu": median("model_ms_narrow_cpu"),
        "predicted_h100_step_ms": predicted,
        "host_share_of_predicted_step": median("host_ms") / predicted,
        "steps": records,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        },
        "command": "python benchmarks/bench_rehearsal.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
    }
    out = write_record(args.json or f"benchmarks/results/rehearsal_{args.preset}.json", result, announce=False)
    print(f"{args.preset}: global batch {global_batch}, {args.world_size} simulated ranks x {per_rank} clips")
    for mode, rows in masks.items():
        text = ", ".join(
            f"config {r['config']}: context {r['context_at_batch']} (at 16: {r['context_at_16']}), "
            f"target {r['target_at_batch']} (at 16: {r['target_at_16']})"
            for r in rows
        )
        print(f"  masks {mode:2s} of {tokens[mode]} tokens: {text}")
    print(
        f"  host work {result['host_ms_per_step']:.1f} ms/step ({100 * result['host_share_of_predicted_step']:.2f} % "
        f"of the predicted H100 step, {predicted:.0f} ms); {result['syncs_per_step']} device reads/step; "
        f"{result['h2d_bytes_per_step'] / 2**20:.0f} MiB host->device/step; "
        f"{result['mask_draws_in_training_process']} mask draws in the training process"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
