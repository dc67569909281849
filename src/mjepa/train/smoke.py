"""A short pretraining run on built-in synthetic clips: the quickest end-to-end check of an installation."""

from __future__ import annotations

import json
import time

import torch

from mjepa.config import EncoderConfig, MaskConfig, ModelConfig, PredictorConfig
from mjepa.data.synthetic import synthetic_batch
from mjepa.masks import MaskSampler
from mjepa.models.mjepa import MJEPA
from mjepa.terms import active_modes
from mjepa.train.optim import build_optimizer
from mjepa.train.precision import resolve_amp_dtype
from mjepa.train.step import train_step


def run_smoke_pretraining(
    size: str, steps: int, batch_size: int, lr: float, weight_decay: float, ema_momentum: float,
    precision: str, device: str | None, seed: int, metrics_path: str | None,
) -> list[float]:
    """Train ``steps`` steps and print every loss term; returns the per-step total losses."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp_dtype = resolve_amp_dtype(precision, device.type)
    torch.manual_seed(seed)
    config = ModelConfig(EncoderConfig.from_size(size), PredictorConfig.for_size(size))
    model = MJEPA(config).to(device)
    optimizer = build_optimizer(model.named_trainable_parameters(), lr, weight_decay)
    sampler = MaskSampler(MaskConfig(), active_modes(config.objective))
    params = sum(p.numel() for p in model.encoders.parameters()) / 1e6
    print(f"mjepa pretrain: {size} encoder ({params:.1f} M parameters) on {device}, "
          f"{'bf16 autocast' if amp_dtype else 'fp32'}, {steps} steps of {batch_size} synthetic clips", flush=True)
    losses = []
    metrics_file = open(metrics_path, "w", encoding="utf-8") if metrics_path else None
    try:
        for step in range(steps):
            batch, _ = synthetic_batch(seed, step * batch_size, batch_size)
            audio_grid, video_grid = model.token_grids(batch.audio.shape, batch.video.shape)
            masks = sampler.sample(batch_size, audio_grid[:2], video_grid, seed=seed, step=step)
            masks = {m: [p.to(device) for p in pairs] for m, pairs in masks.items()}
            start = time.perf_counter()
            result = train_step(model, optimizer, batch.to(device), masks, ema_momentum, amp_dtype, grad_clip=1.0)
            seconds = time.perf_counter() - start
            losses.append(result.loss)
            terms = " ".join(f"{k}={v:.3f}" for k, v in result.terms.items())
            flag = " SKIPPED (non-finite)" if result.skipped else ""
            print(f"step {step + 1:4d}/{steps} loss={result.loss:.4f} {terms} ({seconds:.2f}s){flag}", flush=True)
            if metrics_file:
                record = {"step": step + 1, "loss": result.loss, "grad_norm": result.grad_norm,
                          "skipped": result.skipped, "seconds": seconds, **result.terms}
                metrics_file.write(json.dumps(record) + "\n")
    finally:
        if metrics_file:
            metrics_file.close()
    print(f"mjepa pretrain: loss {losses[0]:.4f} -> {losses[-1]:.4f} over {steps} steps", flush=True)
    return losses
